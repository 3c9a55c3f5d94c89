"""``flash-wrap compare``: the paper-style table from one or more ``results.json`` files."""

from __future__ import annotations

import json
from pathlib import Path


def _fmt(value, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _label(method: str, solver: str, baseline_grid: str | None = None) -> str:
    """A method's row name; the bare solver's names its grid when that is not the run's."""
    if method == "flash":
        return f"Flash({solver})"
    if method == "baseline":
        return solver if baseline_grid is None else f"{solver} on {baseline_grid}"
    if method.startswith("fixed_start_"):
        return f"fixed start {method.rsplit('_', 1)[1]}"
    return {"autoencoder": "AE (decode ẑ)"}.get(method, method)


def own_baseline_grid(results: dict) -> str | None:
    """The bare run's grid label where it is not Flash's (``eval --baseline-steps``); else ``None``,
    also for results written before the baseline's grid was recorded."""
    own = (results.get("baseline_grid") or {}).get("label")
    return own if own and own != results.get("grid") else None


def table(results: dict) -> str:
    """Markdown rows = methods; speed-up = baseline seconds per image / method's (same run)."""
    methods = results["methods"]
    base = methods.get("baseline")
    eta = results.get("ddim_eta")  # results written before "grid" was recorded have only its parts
    grid = results.get("grid") or f"{results['scheduler']}-{results['steps']}" + ("" if eta is None else f" (η={eta:g})")
    own = own_baseline_grid(results)
    grids = grid if own is None else f"Flash on {grid}, baseline on {own}"
    head = (f"**{results['task']}**, {results['solver']}, {grids}, "
            f"{results['n_images']} images, model `{results['model']}`")
    lines = [head, "", "| method | PSNR ↑ | SSIM ↑ | LPIPS ↓ | NFE | s / image | speed-up |", "|---|---|---|---|---|---|---|"]
    for name, m in methods.items():
        speed = "–"
        if base and name != "autoencoder" and m["seconds_per_image"] > 0:
            speed = f"{base['seconds_per_image'] / m['seconds_per_image']:.1f}x"
        nfe = "–" if name == "autoencoder" else f"{m['nfe_mean']:.1f}"
        lines.append(f"| {_label(name, results['solver'], own)} | {_fmt(m['psnr'], 2)} | {_fmt(m['ssim'], 4)} "
                     f"| {_fmt(m['lpips'], 4)} | {nfe} | {_fmt(m['seconds_per_image'], 2)} | {speed} |")
    sev = results["severity"]
    if sev.get("spearman_grid") is not None:
        rho = (f"{_fmt(sev['spearman'], 3)} over one draw per image, {_fmt(sev['spearman_grid'], 3)} over the "
               f"ordering grid ({sev['spearman_grid_pairs']} draws)")
    else:  # results written before the grid was recorded
        rho = _fmt(sev["spearman"], 3)
    lines += ["", f"Severity encoder: Spearman(σ̂, t) = {rho}; ordering accuracy = {_fmt(sev['ordering_accuracy'], 3)}"]
    params = results.get("hyperparameters")  # absent from results written before it was recorded
    if params:
        shown = [f"{_label(m, results['solver'], own)} {_values(params[m])}" for m in ("flash", "baseline")
                 if m in params and m in methods]
        lines.append(f"Hyper-parameters: {'; '.join(shown)}")
    return "\n".join(lines)


def _values(values: dict) -> str:
    """``η=0.4, c=0.6`` (the step size as the paper writes it), in name order."""
    return ", ".join(f"{'η' if k == 'eta' else k}={v:g}" for k, v in sorted(values.items()))


#: Fields ``table`` reads from a ``results.json``.
REQUIRED = ("task", "solver", "scheduler", "steps", "n_images", "model", "methods", "severity")


def compare(folders: list[str | Path]) -> str:
    """The tables of every ``RESULTS_DIR/results.json`` given, separated by blank lines."""
    parts = []
    for folder in folders:
        path = Path(folder) / "results.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist (run flash-wrap eval --out {folder} first)")
        try:
            results = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not valid JSON ({err}); was it written by flash-wrap eval?") from None
        missing = [k for k in REQUIRED if k not in results] if isinstance(results, dict) else list(REQUIRED)
        if missing:
            raise ValueError(f"{path} is not an eval results file (missing {', '.join(missing)})")
        try:
            parts.append(table(results))
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise ValueError(f"{path} is not a well-formed eval results file ({type(err).__name__}: {err})") from None
    return "\n\n".join(parts)
