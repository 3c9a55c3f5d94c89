"""Tuned hyper-parameters (step sizes η, Flash's correction c, ...): their key, store, precedence,
validation and (de)serialisation, all here.

A model bundle carries its tuned values as an opaque JSON table
(:attr:`flash_wrap.models.LatentDiffusion.tuned_values`, saved in ``model_index.json``); this module
alone interprets it. Each entry is keyed by a :class:`TunedKey`: solver, task, and either no grid
(the solver-wide values) or a grid (:class:`~flash_wrap.grid.GridSpec`: kind, steps, DDIM η) for
Flash or for the bare solver on that grid.

The one precedence rule (:func:`resolve`), later sources winning:

1. the plugin's defaults for the task (``Solver.defaults[task]``, else ``Solver.fallback``);
2. the bundle's solver-wide values for (solver, task): what ``tune`` found on the solver's own grid;
3. the bundle's values for (solver, task, this grid): Flash's for a Flash run, the bare solver's
   for a whole bare run from noise;
4. the call's keyword arguments (``Solver(model, eta=...)``).

A bare run has no noise correction, so its resolution leaves ``c`` out.

Storage (bundle format 1 and 2, unchanged): three sections of the index,
``solver_defaults[solver][task] = {name: value}`` (solver-wide),
``flash_defaults[solver][task][grid] = {...}`` (Flash on a grid other than the solver's own) and
``baseline_defaults[solver][task][grid] = {...}`` (the bare solver on a grid), with grids written
``"ddpm-1000"`` or ``"ddim-100 (η=0)"``. Values are finite numbers; a grid must be one the model's
schedule has; ``c`` never appears in ``baseline_defaults``; ``flash_defaults`` never hold the
solver's own grid (its values are the solver-wide ones).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from ._numbers import is_finite_number
from .errors import InvalidInput, WrongType
from .grid import GridSpec, SamplerKind, grid_for
from .models._validate import check_task_name

if TYPE_CHECKING:
    from .models import LatentDiffusion

#: the index sections, per kind of key: solver-wide, Flash on a grid, the bare solver on a grid
SOLVER_WIDE, FLASH, BARE = "solver_defaults", "flash_defaults", "baseline_defaults"
SECTIONS = (SOLVER_WIDE, FLASH, BARE)
#: what an error about the bundle's values suggests
FIX = "fix model_index.json, or the flash_wrap.tuning.record call that wrote it"


class TunablePlugin(Protocol):
    """What the rule reads from a solver class (:class:`flash_wrap.Solver` has all of it)."""

    name: str
    defaults: Mapping[str, Mapping[str, float]]
    fallback: Mapping[str, float]
    sampler_kind: SamplerKind
    default_steps: int | None
    ddim_eta: float

    @classmethod
    def hyperparameter_names(cls) -> set[str]: ...

    @classmethod
    def check_values(cls, values: Mapping[str, float], where: str, *, fix: str = "") -> None: ...


def _stored_grid(grid: GridSpec) -> GridSpec:
    """``grid`` as a stored key reads back: DDIM η to the 6 significant digits it is written with
    (``-0`` as ``0``), so a solver on η = 1/3 finds the values tuned on it."""
    return grid if grid.eta is None else GridSpec(grid.kind, grid.steps, float(f"{grid.eta + 0.0:g}"))


@dataclass(frozen=True)
class TunedKey:
    """Which run tuned values serve.

    Attributes:
        solver: registry name (``"latent-dps"``).
        task: task name (``"gaussian-blur"``).
        grid: ``None`` for the solver-wide values (every grid without an entry of its own), else the
            grid they serve.
        bare: the bare solver's values for a whole run from noise on ``grid`` (``grid`` required);
            otherwise Flash's.
    """

    solver: str
    task: str
    grid: GridSpec | None = None
    bare: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.solver, str) or not self.solver:
            raise InvalidInput(f"tuned values: the solver must be a non-empty name, got {self.solver!r}")
        check_task_name(self.task)
        if self.grid is not None and not isinstance(self.grid, GridSpec):
            raise WrongType(f"tuned values: grid must be a GridSpec (solver.grid) or None, got {self.grid!r}")
        if self.bare and self.grid is None:
            raise InvalidInput("tuned values of a bare run are per grid: give the grid it runs (solver.grid)")
        if self.grid is not None:
            object.__setattr__(self, "grid", _stored_grid(self.grid))

    @property
    def section(self) -> str:
        """The ``model_index.json`` section that stores this key."""
        return SOLVER_WIDE if self.grid is None else BARE if self.bare else FLASH

    def describe(self) -> str:
        """``"flash_defaults[…] (grid 'ddim-4 (η=0)') for 'latent-dps' (task 'gaussian-blur')"``-like
        name of the entry, for messages."""
        grid = "" if self.grid is None else f" (grid {_grid_text(self.grid)!r})"
        return f"{self.section}{grid} for {self.solver!r} (task {self.task!r})"


# -- grids as stored -------------------------------------------------------------------------------
_GRID_TEXT = re.compile(r"ddpm-([1-9][0-9]*)|ddim-([1-9][0-9]*) \(η=([^)]+)\)")


def _grid_text(grid: GridSpec) -> str:
    name = f"{grid.kind}-{grid.steps}"
    return name if grid.eta is None else f"{name} (η={grid.eta + 0.0:g})"


def parse_grid(text: object, where: str, total: int | None = None) -> GridSpec:
    """The grid a stored key names (``"ddpm-1000"``, ``"ddim-100 (η=0)"``). Refused: any other
    spelling (``"ddim-100 (eta=0)"``, ``"ddim-100"``, ``"ddim-100 (η=0.0)"``, ``"ddim-100 (η=inf)"``),
    and with ``total`` (the schedule's training timesteps) a grid that schedule does not have
    (``"ddpm-500"`` or ``"ddim-1000 (η=0)"`` for 1000): nothing would read values under it."""
    match = _GRID_TEXT.fullmatch(text) if isinstance(text, str) else None
    grid = None
    if match is not None and match.group(1) is not None:
        grid = GridSpec("ddpm", int(match.group(1)), None)
    elif match is not None:
        eta_text = match.group(3)
        try:
            eta = float(eta_text)
        except ValueError:
            eta = float("nan")
        if not eta_text.startswith("-") and 0 <= eta < float("inf") and f"{eta:g}" == eta_text:
            grid = GridSpec("ddim", int(match.group(2)), eta)
    if grid is None:
        raise InvalidInput(f"{where}: {text!r} is not a grid label; grids are labelled like 'ddpm-1000' or "
                         "'ddim-100 (η=0)' (GridSpec.label(), the label flash-wrap tune writes)")
    if total is not None and ((grid.kind == "ddpm" and grid.steps != total) or (grid.kind == "ddim" and grid.steps >= total)):
        grids = f"'ddpm-{total}' or 'ddim-N (η=…)' with N < {total}"
        raise InvalidInput(f"{where}: {text!r} is no grid of this model's schedule ({total} training "
                         f"timesteps: {grids}), so nothing would read the values under it")
    return grid


# -- the store -------------------------------------------------------------------------------------
def _numbers(values: object, where: str) -> dict[str, float]:
    if not isinstance(values, dict):
        raise InvalidInput(f"{where} must be an object, got {values!r}")
    for name, value in values.items():
        if not is_finite_number(value):
            raise InvalidInput(f"{where}[{name!r}] must be a finite number, got {value!r}")
    return dict(values)


def _per_task(table: Mapping[str, Any], section: str, where: str, what: str) -> Iterable[tuple[str, str, object]]:
    """``(solver, task, entry)`` of a ``{solver: {task: entry}}`` section, its names checked."""
    held = table.get(section, {})
    if not isinstance(held, dict):
        raise InvalidInput(f"{where}: {section} must be an object, got {type(held).__name__}")
    for solver, tasks in held.items():
        if not isinstance(solver, str) or not solver:
            raise InvalidInput(f"{where}: {section}: solver names must be non-empty strings, got {solver!r}")
        if not isinstance(tasks, dict):
            raise InvalidInput(f"{where}: {section}[{solver!r}] must map task names to {what}, got {tasks!r}")
        for task, entry in tasks.items():
            try:
                check_task_name(task)
            except ValueError as err:
                raise InvalidInput(f"{where}: {section}[{solver!r}]: {err}") from None
            yield solver, task, entry


class TunedValues:
    """The tuned values of one model: :class:`TunedKey` → ``{hyper-parameter: finite number}``.

    Build it with :meth:`from_json` (which validates) or :func:`read`; write it with :meth:`to_json`.
    """

    def __init__(self, entries: Mapping[TunedKey, Mapping[str, float]] | None = None) -> None:
        self._entries: dict[TunedKey, dict[str, float]] = {k: dict(v) for k, v in (entries or {}).items()}

    @classmethod
    def from_json(cls, table: object, where: str, total: int | None = None) -> TunedValues:
        """Read the sections of a bundle's index (``{"solver_defaults": ..., "flash_defaults": ...,
        "baseline_defaults": ...}``; missing sections are empty). ``where`` names the source in
        errors; with ``total`` (training timesteps) grids the schedule lacks are refused."""
        if not isinstance(table, Mapping):
            raise InvalidInput(f"{where}: the tuned values must be an object, got {type(table).__name__}")
        entries: dict[TunedKey, dict[str, float]] = {}
        for solver, task, values in _per_task(table, SOLVER_WIDE, where, "values"):
            entries[TunedKey(solver, task)] = _numbers(values, f"{where}: {SOLVER_WIDE}[{solver!r}][{task!r}]")
        for section in (FLASH, BARE):
            for solver, task, grids in _per_task(table, section, where, "grids"):
                if not isinstance(grids, dict):
                    raise InvalidInput(f"{where}: {section}[{solver!r}][{task!r}] must map grid labels "
                                     f"(e.g. 'ddpm-1000') to values, got {grids!r}")
                for text, values in grids.items():
                    grid = parse_grid(text, f"{where}: {section}[{solver!r}][{task!r}]", total)
                    entry = f"{where}: {section}[{solver!r}][{task!r}][{text!r}]"
                    if not isinstance(values, dict):
                        raise InvalidInput(f"{entry} must be an object of values ({section} map solver, task, "
                                         f"then grid labels (e.g. 'ddpm-1000') to values), got {values!r}")
                    if section == BARE and "c" in values:
                        raise InvalidInput(f"{entry} sets c, the noise correction of Flash, which a bare run never "
                                         f"uses; put it in {SOLVER_WIDE}")
                    entries[TunedKey(solver, task, grid, bare=section == BARE)] = _numbers(values, entry)
        return cls(entries)

    def to_json(self) -> dict[str, Any]:
        """The index sections (all three, empty ones included), JSON-able."""
        table: dict[str, Any] = {section: {} for section in SECTIONS}
        for key, values in self._entries.items():
            per_task = table[key.section].setdefault(key.solver, {})
            if key.grid is None:
                per_task[key.task] = dict(values)
            else:
                per_task.setdefault(key.task, {})[_grid_text(key.grid)] = dict(values)
        return table

    def get(self, key: TunedKey) -> dict[str, float]:
        """The values stored under exactly ``key`` (``{}`` if none)."""
        return dict(self._entries.get(key, {}))

    def keys(self, solver: str | None = None, task: str | None = None) -> list[TunedKey]:
        """The keys held, optionally only those of ``solver`` and/or ``task``."""
        return [k for k in self._entries if solver in (None, k.solver) and task in (None, k.task)]

    def merged(self, key: TunedKey, values: Mapping[str, float], where: str = "tuned values") -> TunedValues:
        """A copy with ``values`` merged into what ``key`` holds (finite numbers; no ``c`` for a bare run)."""
        new = {**self.get(key), **_numbers(dict(values), f"{where}: {key.describe()}")}
        if key.bare and "c" in new:
            raise InvalidInput(f"{where}: {key.describe()} sets c, the noise correction of Flash, which a bare run "
                             f"never uses; record it without a grid ({SOLVER_WIDE})")
        return TunedValues({**self._entries, key: new})

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TunedValues) and self._entries == other._entries

    def __repr__(self) -> str:
        return f"TunedValues({self._entries!r})"


# -- a model's values ------------------------------------------------------------------------------
def read(model: LatentDiffusion) -> TunedValues:
    """The tuned values ``model`` carries, validated against its schedule."""
    return TunedValues.from_json(model.tuned_values, model.tuned_source, model.num_train_timesteps)


def record(model: LatentDiffusion, key: TunedKey, values: Mapping[str, float]) -> None:
    """Merge ``values`` into ``model``'s tuned values under ``key`` (e.g. what ``tune`` found);
    saved with the bundle (``save_pretrained`` or ``save_tuned_values``)."""
    if key.grid is not None:
        parse_grid(_grid_text(key.grid), f"tuned values: {key.describe()}", model.num_train_timesteps)
    model.tuned_values = read(model).merged(key, values).to_json()


def key_for(
    plugin: TunablePlugin, task: str, grid: GridSpec, total: int, *, bare: bool = False, path: str = "vp"
) -> TunedKey:
    """Where values tuned for a run on ``grid`` belong: Flash's on the solver's own grid are
    solver-wide (they serve every grid without its own entry); Flash's on another grid, and the bare
    solver's, serve that grid only."""
    own = not bare and _stored_grid(grid) == _own_grid(plugin, total, path)
    return TunedKey(plugin.name, task, None if own else grid, bare=bare)


def readers(key: TunedKey, tuned_on: GridSpec) -> str:
    """Which runs read the values under ``key`` (``tuned_on``: the grid ``tune`` ran), for messages:
    ``"solver_defaults of latent-dps for gaussian-blur: read by Flash on every grid ..."``."""
    grid = "" if key.grid is None else f" on {_grid_text(key.grid)}"
    if key.grid is None:
        served = f"Flash on every grid without its own entry; tuned on {tuned_on.label()}, {key.solver}'s own"
    else:
        served = f"{'bare runs' if key.bare else 'Flash'} on {_grid_text(key.grid)} only"
    return f"{key.section} of {key.solver} for {key.task}{grid}: read by {served}"


def _own_grid(plugin: TunablePlugin, total: int, path: str = "vp") -> GridSpec | None:
    try:
        return _stored_grid(grid_for(plugin, total, path=path))
    except ValueError:  # the solver's own grid does not fit this schedule
        return None


def check(model: LatentDiffusion, plugin: TunablePlugin) -> TunedValues:
    """``model``'s tuned values, refusing those for ``plugin`` it cannot use: unknown names, values
    the plugin's ``check_values`` refuses, Flash entries under the solver's own grid."""
    tuned = read(model)
    own = _own_grid(plugin, model.num_train_timesteps, model.path)
    known = plugin.hyperparameter_names()
    for key in tuned.keys(plugin.name):
        if key.grid is not None and key.grid == own and not key.bare:
            raise InvalidInput(
                f"the model bundle's {FLASH} for {plugin.name!r} (task {key.task!r}) hold values for "
                f"{_grid_text(own)}, the solver's own grid, whose values are {SOLVER_WIDE} ({FIX}: move them there)"
            )
        values = tuned.get(key)
        wrong = sorted(set(values) - known)
        if wrong:
            raise WrongType(f"the model bundle's {key.describe()} name unknown hyper-parameter(s) {wrong}; "
                            f"{getattr(plugin, '__name__', plugin.name)} knows {sorted(known)} ({FIX})")
        plugin.check_values(values, f"the model bundle's {key.describe()}", fix=FIX)
    return tuned


def resolve(model: LatentDiffusion, plugin: TunablePlugin, task: str | None, grid: GridSpec, *, bare: bool = False,
            overrides: Mapping[str, float] | None = None) -> dict[str, Any]:
    """The hyper-parameters a run of ``plugin`` on ``grid`` uses for ``task`` (the module's one
    precedence rule: plugin default < solver-wide tuned value < tuned value for this grid < call
    argument); ``bare`` for a whole bare run from noise, which has no ``c``."""
    tuned = check(model, plugin)
    params = dict(plugin.defaults.get(task, plugin.fallback)) if task is not None else dict(plugin.fallback)
    if task is not None:
        params.update(tuned.get(TunedKey(plugin.name, task)))
        params.update(tuned.get(TunedKey(plugin.name, task, grid, bare=bare)))
    params.update(overrides or {})
    if bare:
        params.pop("c", None)
    return params


def unread(model: LatentDiffusion, solvers: Iterable[str], tasks: Iterable[str]) -> dict[str, list[str]]:
    """Per section, the entries no installed solver or known task reads (a misspelt ``latent-dsp``
    or ``gausian-blur`` would otherwise be ignored without a word)."""
    installed, known = set(solvers), set(tasks)
    found: dict[str, list[str]] = {}
    for key in read(model).keys():
        what = (f"solver {key.solver!r} (not installed)" if key.solver not in installed
                else f"task {key.task!r} of {key.solver!r} (unknown task)" if key.task not in known else None)
        if what is not None and what not in found.get(key.section, []):
            found.setdefault(key.section, []).append(what)
    return found


def grids_tuned(model: LatentDiffusion, solver: str, task: str, *, bare: bool) -> list[GridSpec]:
    """The grids with values of their own for (``solver``, ``task``): the bare solver's or Flash's."""
    return [k.grid for k in read(model).keys(solver, task) if k.grid is not None and k.bare == bare]


def describe_values(model: LatentDiffusion, solver: str, task: str) -> dict[str, dict[str, Any]]:
    """Per section, what ``model`` holds for (``solver``, ``task``), as stored (for messages)."""
    table = read(model).to_json()
    return {section: table[section][solver][task] for section in SECTIONS
            if task in table[section].get(solver, {})}
