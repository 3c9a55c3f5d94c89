"""Resumable training checkpoints without pickle: safetensors for tensors, JSON for the rest.

A checkpoint is a folder ``checkpoint-<step>/`` holding ``model.safetensors`` (trainable
weights), ``optimizer.safetensors`` + ``optimizer.json`` (Adam moments and param groups) and
``state.json`` (step, configuration, metrics), plus any named extra tensor sets (e.g. EMA
weights) as ``<name>.safetensors``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ...errors import InvalidInput

_CKPT = re.compile(r"^checkpoint-(\d+)$")


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    for index, slots in state["state"].items():
        for slot, value in slots.items():
            value = value if isinstance(value, torch.Tensor) else torch.tensor(value)
            tensors[f"{index}.{slot}"] = value.detach().cpu().contiguous()
    return tensors, {"param_groups": state["param_groups"]}


def save_checkpoint(
    folder: Path,
    step: int,
    module: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    state: dict[str, Any],
    extra: dict[str, dict[str, torch.Tensor]] | None = None,
) -> Path:
    """Write ``folder/checkpoint-<step>`` atomically (a temporary folder renamed at the end)."""
    target = folder / f"checkpoint-{step}"
    tmp = folder / f".tmp-checkpoint-{step}"
    tmp.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}, tmp / "model.safetensors")
    tensors, meta = _optimizer_tensors(optimizer)
    save_file(tensors, tmp / "optimizer.safetensors")
    (tmp / "optimizer.json").write_text(json.dumps(meta))
    for name, named in (extra or {}).items():
        save_file({k: v.detach().cpu().contiguous() for k, v in named.items()}, tmp / f"{name}.safetensors")
    (tmp / "state.json").write_text(json.dumps({**state, "step": step}, indent=2))
    if target.exists():
        for f in target.iterdir():
            f.unlink()
        target.rmdir()
    tmp.rename(target)
    return target


def latest_checkpoint(folder: Path) -> Path | None:
    """The checkpoint with the highest step in ``folder``, or ``None``."""
    if not folder.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _CKPT.match(p.name)) and p.is_dir()]
    return max(found)[1] if found else None


def load_checkpoint(
    path: Path, module: torch.nn.Module, optimizer: torch.optim.Optimizer
) -> dict[str, Any]:
    """Restore ``module`` and ``optimizer`` from ``path``; returns the saved ``state.json``."""
    try:
        module.load_state_dict(load_file(path / "model.safetensors"))
        tensors = load_file(path / "optimizer.safetensors")
    except (SafetensorError, OSError, RuntimeError) as err:
        raise InvalidInput(f"checkpoint {path} is corrupt or does not match the model: {err}") from err
    meta = json.loads((path / "optimizer.json").read_text())
    slots: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        index, slot = key.split(".", 1)
        slots.setdefault(int(index), {})[slot] = value
    optimizer.load_state_dict({"state": slots, "param_groups": meta["param_groups"]})
    return json.loads((path / "state.json").read_text())


def load_extra(path: Path, name: str) -> dict[str, torch.Tensor]:
    """A named extra tensor set saved with :func:`save_checkpoint`."""
    try:
        return load_file(path / f"{name}.safetensors")
    except (SafetensorError, OSError) as err:
        raise InvalidInput(f"checkpoint {path} has a corrupt or missing {name}.safetensors: {err}") from err


def prune_checkpoints(folder: Path, keep: int) -> None:
    """Delete all but the ``keep`` most recent checkpoints."""
    found = sorted((int(m.group(1)), p) for p in folder.iterdir() if (m := _CKPT.match(p.name)))
    for _, path in found[:-keep] if keep > 0 else []:
        for f in path.iterdir():
            f.unlink()
        path.rmdir()


#: Settings that may differ on resume without changing what is being trained.
#: ``flow_shift`` only sets the written bundle's sampling grid, not what is trained.
RESUME_FREE = frozenset({"checkpoint_every", "keep_checkpoints", "cpu", "workers", "resume", "force", "output",
                         "flow_shift"})


def check_resume(saved: dict[str, Any], current: dict[str, Any], checkpoint: Path, *, paths: tuple[str, ...] = ()) -> None:
    """Refuse to resume ``checkpoint`` with other training settings than it was written with.

    ``steps`` may grow (train longer), not shrink below the checkpoint; the settings in
    :data:`RESUME_FREE` may change; for ``paths`` (folders) the resolved paths are compared.
    Everything else must be equal, or the optimizer state and the recorded settings would disagree.
    """
    changed = []
    for key in sorted(set(saved) | set(current)):
        if key in RESUME_FREE or key == "steps":
            continue
        before, now = saved.get(key), current.get(key)
        if key in paths and before is not None and now is not None:
            before, now = str(Path(before).resolve()), str(Path(now).resolve())
        if before != now:
            changed.append(f"--{key.replace('_', '-')} {saved.get(key)!r} → {current.get(key)!r}")
    if changed:
        raise InvalidInput(
            f"cannot resume {checkpoint} with other settings ({'; '.join(changed)}); rerun with the checkpoint's "
            "settings, or start over with --no-resume (or another --save-to)"
        )
