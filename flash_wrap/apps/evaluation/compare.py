"""``flash-wrap compare``: the paper-style table from one or more ``results.json`` files."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

from ..._numbers import is_finite_number
from ...errors import InvalidInput, NotFound
from ..progress import plural


def _fmt(value, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


#: rows that run no solver step: the decoded estimate D(ẑ) and the degraded input itself
#: (``operator.to_image(y)``: bicubic upsampling for super-resolution)
FREE = ("autoencoder", "degraded")


def _label(method: str, solver: str, baseline_grid: str | None = None) -> str:
    """A method's row name; the bare solver's names its grid when that is not the run's."""
    if method == "flash":
        return f"Flash({solver})"
    if method == "flash_budget":
        return f"Flash({solver}) within NFE budget"
    if method == "baseline":
        return solver if baseline_grid is None else f"{solver} on {baseline_grid}"
    if method.startswith("fixed_start_"):
        return f"fixed start {method.rsplit('_', 1)[1]}"
    return {"autoencoder": "AE (decode ẑ)", "degraded": "degraded input"}.get(method, method)


def own_baseline_grid(results: dict) -> str | None:
    """The bare run's grid label where it is not Flash's (``eval --baseline-steps``); else ``None``,
    also for results written before the baseline's grid was recorded."""
    own = (results.get("baseline_grid") or {}).get("label")
    return own if own and own != results.get("grid") else None


def run_grid(results: dict) -> str:
    """Flash's grid label, rebuilt from its parts for results written before ``grid`` was recorded."""
    eta = results.get("ddim_eta")
    return results.get("grid") or f"{results['scheduler']}-{results['steps']}" + ("" if eta is None else f" (η={eta:g})")


def _grids(results: dict, bare: str) -> str:
    """The run's grid, or ``Flash on G, {bare} on H`` when the bare solver had its own."""
    grid, own = run_grid(results), own_baseline_grid(results)
    return grid if own is None else f"Flash on {grid}, {bare} on {own}"


def table(results: dict) -> str:
    """Markdown rows = methods; speed-up = baseline seconds per image / method's (same run)."""
    methods = results["methods"]
    base = methods.get("baseline")
    own = own_baseline_grid(results)
    grids = _grids(results, "baseline")
    head = (f"**{results['task']}**, {results['solver']}, {grids}, "
            f"{results['n_images']} images, model `{results['model']}`")
    lines = [head, "", "| method | PSNR ↑ | SSIM ↑ | LPIPS ↓ | NFE | s / image | speed-up |", "|---|---|---|---|---|---|---|"]
    for name, m in methods.items():
        speed = "–"
        if base and name not in FREE and m["seconds_per_image"] > 0:
            speed = f"{base['seconds_per_image'] / m['seconds_per_image']:.1f}x"
        nfe = "–" if name in FREE else f"{m['nfe_mean']:.1f}"
        lines.append(f"| {_label(name, results['solver'], own)} | {_fmt(m['psnr'], 2)} | {_fmt(m['ssim'], 4)} "
                     f"| {_fmt(m['lpips'], 4)} | {nfe} | {_fmt(m['seconds_per_image'], 2)} | {speed} |")
    sev = results["severity"]
    levels = results.get("severity_range")
    if levels and levels[0] == levels[1]:  # one level: nothing to rank (earlier versions wrote OA 0 here)
        sev = {**sev, "spearman": None, "spearman_grid": None, "ordering_accuracy": None}
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
    pair = paired(results)
    if pair is not None:
        lines.append(f"Flash − bare: {_paired_text(pair)}")
    budget = results.get("nfe_budget")  # absent from results written before the option existed
    if budget:
        lines.append(f"NFE budget {budget['nfe_budget']:g}: SNR scale λ = {budget['snr_scale']:.4g} (calibrated on "
                     f"{plural(budget['calibrated_on'], 'image')}), mean NFE {_fmt(budget['nfe_mean'], 1)} against "
                     f"{_fmt(budget['nfe_mean_unbudgeted'], 1)} unbudgeted, PSNR {_fmt(budget['psnr'], 2)} against "
                     f"{_fmt(budget['psnr_unbudgeted'], 2)} dB; order of start steps by σ̂ "
                     f"{'kept' if budget['order_kept'] else 'NOT kept'}")
    if results.get("out_of_range"):
        lines.append(f"σ̂ outside the severity encoder's training range: {plural(results['out_of_range'], 'image')}")
    return "\n".join(lines)


def paired(results: dict) -> dict | None:
    """Flash against the bare solver of the same run, image by image (``None`` without a baseline
    or without per-image records, as in results written before they were kept).

    Returns ``difference`` (mean of Flash's PSNR minus the bare solver's over the images where
    both are finite, dB; ``None`` if there are none), ``standard_error`` (of that mean: the
    differences' sample standard deviation / √n; ``None`` below two images), ``above`` (images
    where Flash's PSNR is higher), ``n`` (images with both PSNRs finite), ``left_out`` (images
    where either is missing or not finite, e.g. a diverged run) and ``nfe_ratio`` (the bare
    solver's mean NFE / Flash's; ``None`` when either is 0)."""
    methods = results["methods"]
    images = results.get("images") or []
    if "flash" not in methods or "baseline" not in methods or not images:
        return None
    pairs = [(r["psnr"].get("flash"), r["psnr"].get("baseline")) for r in images]
    diffs = [f - b for f, b in pairs if is_finite_number(f) and is_finite_number(b)]
    flash_nfe, base_nfe = methods["flash"]["nfe_mean"], methods["baseline"]["nfe_mean"]
    return {
        "difference": math.fsum(diffs) / len(diffs) if diffs else None,
        "standard_error": statistics.stdev(diffs) / math.sqrt(len(diffs)) if len(diffs) > 1 else None,
        "above": sum(d > 0 for d in diffs),
        "n": len(diffs),
        "left_out": len(pairs) - len(diffs),
        "nfe_ratio": base_nfe / flash_nfe if flash_nfe > 0 and base_nfe > 0 else None,
    }


def _nfe_text(ratio: float | None) -> str:
    """``6.0× fewer NFE``, ``1.5× more NFE`` or ``the same NFE`` (``ratio`` = bare / Flash)."""
    if ratio is None:
        return "–"
    if math.isclose(ratio, 1.0, rel_tol=1e-9):
        return "the same NFE"
    return f"{ratio:.1f}× fewer NFE" if ratio > 1 else f"{1 / ratio:.1f}× more NFE"


def _paired_text(pair: dict) -> str:
    if pair["difference"] is None:
        return f"no image with a finite PSNR from both ({plural(pair['left_out'], 'image')} left out)"
    se = "" if pair["standard_error"] is None else f" (paired standard error {pair['standard_error']:.2f} dB)"
    nfe = "" if pair["nfe_ratio"] is None else f", at {_nfe_text(pair['nfe_ratio'])}"
    left = "" if not pair["left_out"] else f"; {plural(pair['left_out'], 'image')} without a finite PSNR left out"
    return (f"{pair['difference']:+.2f} dB PSNR{se}, above on {pair['above']} of "
            f"{plural(pair['n'], 'image')}{nfe}{left}")


def summary(all_results: list[dict]) -> str | None:
    """One row per run that has a bare baseline: solver, model, grids, Flash's and the bare solver's
    mean PSNR, their paired difference and its standard error, the NFE ratio, the images where
    Flash is above, the AE row and the degraded input (``–`` for results written without it); ``None`` when no run has a baseline. Results written before
    per-image records were kept get ``–`` in the paired columns."""
    rows = []
    for results in all_results:
        methods = results["methods"]
        if "flash" not in methods or "baseline" not in methods:
            continue
        pair = paired(results) or {}
        grids = _grids(results, "bare")
        ae = (methods.get("autoencoder") or {}).get("psnr")
        degraded = (methods.get("degraded") or {}).get("psnr")
        diff = "–" if pair.get("difference") is None else f"{pair['difference']:+.2f} dB"
        se = "–" if pair.get("standard_error") is None else f"{pair['standard_error']:.2f}"
        above = "–" if not pair.get("n") else f"{pair['above']} / {pair['n']}"
        base_nfe, flash_nfe = methods["baseline"]["nfe_mean"], methods["flash"]["nfe_mean"]
        ratio = f"{base_nfe / flash_nfe:.1f}" if flash_nfe > 0 and base_nfe > 0 else "–"
        rows.append(f"| {results['task']} | {results['solver']} | `{results['model']}` | {grids} "
                    f"| {_fmt(methods['flash']['psnr'], 2)} | {_fmt(methods['baseline']['psnr'], 2)} | {diff} | {se} "
                    f"| {ratio} | {above} | {_fmt(ae, 2)} | {_fmt(degraded, 2)} |")
    if not rows:
        return None
    head = ["**Flash against the bare solver** (PSNR in dB; the difference is paired, image by image, over the "
            "images where both PSNRs are finite)", "",
            "| task | solver | model | grids | Flash | bare | difference | standard error | NFE bare / Flash "
            "| images where Flash is above | AE (decode ẑ) | degraded input |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    return "\n".join(head + rows)


def _values(values: dict) -> str:
    """``η=0.4, c=0.6`` (the step size as the paper writes it), in name order."""
    return ", ".join(f"{'η' if k == 'eta' else k}={v:g}" for k, v in sorted(values.items()))


def paper_table(all_results: list[dict]) -> str:
    """The layout of the paper's Table 1: one row per method, per task the PSNR, SSIM, LPIPS, FID and
    KID (×10³, mean ± std over subsets) with the number of images they used (``–`` for a run without
    ``--fid-weights``), and the mean NFE. Two runs with the same task and method label are refused."""
    tasks = list(dict.fromkeys(r["task"] for r in all_results))
    cells: dict[str, dict[str, str]] = {}
    for results in all_results:
        fid = results.get("fid") or {}
        for name, m in results["methods"].items():
            label = _label(name, results["solver"], own_baseline_grid(results))
            row = cells.setdefault(label, {})
            if results["task"] in row:
                raise InvalidInput(f"two runs give {label} on {results['task']}: pass one results folder per "
                                   "task and method")
            f = fid.get(name)
            fid_cell = "–" if f is None else f"{f['fid']:.2f} (n={f['images']})"
            kid_cell = "–" if f is None else f"{1e3 * f['kid']:.2f} ± {1e3 * f['kid_std']:.2f} (n={f['images']})"
            nfe = "–" if name in FREE else f"{m['nfe_mean']:.1f}"
            row[results["task"]] = (f"{_fmt(m['psnr'], 2)} | {_fmt(m['ssim'], 4)} | {_fmt(m['lpips'], 4)} | {fid_cell} "
                                    f"| {kid_cell} | {nfe}")
    group = "PSNR ↑ | SSIM ↑ | LPIPS ↓ | FID ↓ | KID×10³ ↓ | NFE"
    lines = ["| method | " + " | ".join(f"{t}: {group}" for t in tasks) + " |",
             "|---|" + "---|" * (6 * len(tasks))]
    empty = " | ".join(["–"] * 6)
    lines += [f"| {label} | " + " | ".join(row.get(t, empty) for t in tasks) + " |" for label, row in cells.items()]
    return "\n".join(lines)


#: Fields ``table`` reads from a ``results.json``.
REQUIRED = ("task", "solver", "scheduler", "steps", "n_images", "model", "methods", "severity")


def _load(folders: list[str | Path]) -> tuple[list[str], list[dict]]:
    """Every ``RESULTS_DIR/results.json`` given, checked, and its :func:`table`."""
    parts, loaded = [], []
    for folder in folders:
        path = Path(folder) / "results.json"
        if not path.is_file():
            raise NotFound(f"{path} does not exist (run flash-wrap eval --out {folder} first)")
        try:
            results = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise InvalidInput(f"{path} is not valid JSON ({err}); was it written by flash-wrap eval?") from None
        missing = [k for k in REQUIRED if k not in results] if isinstance(results, dict) else list(REQUIRED)
        if missing:
            raise InvalidInput(f"{path} is not an eval results file (missing {', '.join(missing)})")
        try:
            parts.append(table(results))
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError, ZeroDivisionError) as err:
            raise InvalidInput(f"{path} is not a well-formed eval results file ({type(err).__name__}: {err})") from None
        loaded.append(results)
    return parts, loaded


def compare(folders: list[str | Path]) -> str:
    """The tables of every ``RESULTS_DIR/results.json`` given, separated by blank lines; with more
    than one folder, then ``summary``'s table of Flash against the bare solver."""
    parts, loaded = _load(folders)
    overview = summary(loaded) if len(loaded) > 1 else None
    return "\n\n".join(parts + ([overview] if overview else []))


def compare_paper(folders: list[str | Path]) -> str:
    """:func:`paper_table` of every ``RESULTS_DIR/results.json`` given (``compare --table paper``)."""
    return paper_table(_load(folders)[1])
