"""The settings of one ``flash-wrap eval`` run and the file names of its results folder (the
per-image seed rule is :func:`flash_wrap.degradation.image_seed`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Literal

from ...errors import InvalidInput
from ..arguments import check_settings

if TYPE_CHECKING:
    from ...samplers import SamplerKind

#: how Flash batches in ``eval`` (``--batching``, :mod:`.batching`), the default first
Batching = Literal["stream", "buckets", "fixed"]
BATCHING: tuple[Batching, ...] = ("stream", "buckets", "fixed")

RECORDS = "images.jsonl"
#: The run's identity: arguments and fingerprints of the model and of the image files.
RUN_FILE = "run.json"
#: Number of severity levels and noise seeds per image for the ordering accuracy [P App. D].
OA_LEVELS, OA_SEEDS = 10, 3
#: Images whose reconstructions are saved for the example grid.
EXAMPLES = 4


@dataclass
class EvalConfig:
    """One evaluation run (``flash-wrap eval`` arguments)."""

    data: str
    task: str
    solver: str
    out: str
    model: str = "demo"
    steps: int | None = None
    scheduler: SamplerKind | None = None
    baseline: bool = False
    fixed_start: list[int] = field(default_factory=list)
    severity_range: tuple[float, float] | None = None
    seed: int = 0
    limit: int | None = None
    batch_size: int = 4
    device: str | None = None
    channels_last: bool = False
    skip_unreadable: bool = False
    #: a bundle whose severity encoder for ``task`` is used as it is (``--severity-from``), e.g.
    #: for a diffusers pipeline folder, which has none; its latent space must be the model's.
    severity_from: str | None = None
    #: the bare solver's own grid (``--baseline-steps``, ``--baseline-scheduler``), each defaulting to the
    #: run's ``steps``/``scheduler`` (``baseline_scheduler="ddpm"`` alone: every timestep, DDPM's one grid):
    #: e.g. Flash on DDIM-100 against the paper's 1000-step baseline
    baseline_steps: int | None = None
    baseline_scheduler: SamplerKind | None = None
    #: mean NFE allowed (``--nfe-budget``): Flash also runs with one SNR scale calibrated on every
    #: image's σ̂ first (ALGORITHMS.md §3.1), as the method ``flash_budget`` beside the unbudgeted ``flash``
    nfe_budget: float | None = None
    #: how Flash batches (``--batching``, :mod:`.batching`): ``stream`` (continuous batching over
    #: ``batch_size`` slots), ``buckets`` (fixed batches of similar start steps) or ``fixed`` (fixed
    #: batches in file order); the bare solver and fixed starts always run fixed batches
    batching: Batching = "stream"
    #: images per unit of work with ``stream``/``buckets``: what a process is dealt, a stream runs
    #: through and ``--resume`` keeps whole (``None``: 8 × ``batch_size``); ``fixed``: one batch
    window: int | None = None
    #: safetensors file of the FID InceptionV3 (``--fid-weights``): FID and KID per method against the
    #: clean images over the run (:mod:`.features`); a path, so not part of a resumed run's identity
    fid_weights: str | None = None

    def __post_init__(self) -> None:
        check_settings(self, {"steps": (1, None), "seed": (0, 2**63 - 1), "limit": (1, None), "batch_size": (1, None),
                              "baseline_steps": (1, None), "nfe_budget": (1e-12, None), "window": (1, None)})
        if self.batching not in BATCHING:
            raise InvalidInput(f"batching must be one of {', '.join(BATCHING)}, got {self.batching!r}")
        if self.window is not None and self.batching == "fixed":
            raise InvalidInput("--window sets the unit of --batching stream or buckets; with --batching fixed a unit "
                               "is one batch of --batch-size: drop --window")
        own_grid = [f"--baseline-{k}" for k in ("steps", "scheduler") if getattr(self, f"baseline_{k}") is not None]
        if own_grid and not self.baseline:
            raise InvalidInput(f"{' and '.join(own_grid)} set the bare solver's grid, but the run has no baseline: "
                             "add --baseline, or drop them")
        if any(isinstance(k, bool) or not isinstance(k, int) or k < 0 for k in self.fixed_start):
            raise InvalidInput(f"fixed_start must hold grid indices >= 0, got {self.fixed_start}")
        self.fixed_start = sorted(set(self.fixed_start))

    @property
    def unit(self) -> int:
        """Images per unit of work (dealt to a process, appended and resumed whole)."""
        if self.batching == "fixed":
            return self.batch_size
        return self.window if self.window is not None else 8 * self.batch_size

    def comparable(self) -> dict:
        """The arguments a resumed run must share with the original one: not the speed-only ones,
        and not the paths of the model, the data and ``severity_from`` (compared by content, see ``run.json``)."""
        keep = asdict(self)
        for name in ("out", "channels_last", "model", "data", "device", "severity_from", "fid_weights"):
            keep.pop(name)
        for name in ("baseline_steps", "baseline_scheduler", "nfe_budget", "window"):  # absent when unset: earlier runs still resume
            if keep[name] is None:
                keep.pop(name)
        if keep["batching"] == "fixed":  # how runs from before --batching ran
            keep.pop("batching")
        keep["severity_range"] = list(self.severity_range) if self.severity_range else None
        return keep
