"""Aggregate ``images.jsonl`` into ``results.json``, ``images.csv`` and the evaluation figures."""

from __future__ import annotations

import csv
import json
import math
import statistics
from pathlib import Path
from typing import Any

from ...metrics import spearman
from ..figures import write_figures
from .config import RECORDS
from .features import fid_summary

METRICS = ("psnr", "ssim", "lpips")


def read_records(out: Path) -> list[dict]:
    path = out / RECORDS
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return float(statistics.fmean(values)) if values else None


def summarize(records: list[dict]) -> dict[str, dict[str, Any]]:
    """Per method: mean PSNR/SSIM/LPIPS (LPIPS ``None`` when unavailable), NFE mean/std, seconds."""
    methods = list(records[0]["psnr"]) if records else []
    out = {}
    for m in methods:
        nfe = [r["nfe"][m] for r in records]
        seconds = sum(r["seconds"][m] for r in records)
        out[m] = {
            **{metric: _mean([r[metric][m] for r in records]) for metric in METRICS},
            "nfe_mean": float(statistics.fmean(nfe)),
            "nfe_std": float(statistics.pstdev(nfe)),
            # decoder forward passes inside the solver steps (ReSample's optimisation, DPS gradients)
            "decoder_calls_mean": _mean([r.get("decoder_calls", {}).get(m) for r in records]),
            "seconds_total": seconds,
            "seconds_per_image": seconds / len(records),
        }
    return out


def severity_summary(records: list[dict]) -> dict[str, float | None]:
    """Spearman(σ̂, t) over the images' draws and over the pooled ordering grid, and the mean
    ordering accuracy; each ``None`` where fewer than two distinct levels leave nothing to rank."""
    import torch

    oa = [r["ordering_accuracy"] for r in records if r["ordering_accuracy"] is not None]
    levels = torch.tensor([r["severity"] for r in records])
    rho = None
    if len(records) > 2 and len(set(levels.tolist())) > 1:
        rho = spearman(levels, torch.tensor([r["sigma_hat"] for r in records]))
    # the ordering-accuracy grid: every image at OA_LEVELS levels × OA_SEEDS noise draws, pooled
    grid_rho, pairs = None, 0
    if records and all("ordering_sigma_hat" in r and "ordering_levels" in r for r in records):
        t = torch.tensor([lv for r in records for _ in r["ordering_sigma_hat"] for lv in r["ordering_levels"]])
        s = torch.tensor([v for r in records for seed in r["ordering_sigma_hat"] for v in seed])
        pairs = len(t)
        grid_rho = spearman(t, s) if pairs > 2 and len(set(t.tolist())) > 1 else None
    return {
        "spearman": None if rho is None or math.isnan(rho) else rho,
        "spearman_grid": None if grid_rho is None or math.isnan(grid_rho) else grid_rho,
        "spearman_grid_pairs": pairs,
        "ordering_accuracy": _mean(oa),
        "ordering_accuracy_std": float(statistics.pstdev(oa)) if oa else None,
    }


def order_kept(sigma_hat: list[float], starts: list[int]) -> bool:
    """Pairwise: no image with a smaller σ̂ starts later than one with a larger σ̂."""
    pairs = sorted(zip(sigma_hat, starts))
    return all(a[1] <= b[1] for a, b in zip(pairs, pairs[1:]) if a[0] < b[0]) and all(
        a[1] == b[1] for a, b in zip(pairs, pairs[1:]) if a[0] == b[0])


def budget_summary(records: list[dict], budget: dict | None) -> dict[str, Any] | None:
    """``--nfe-budget``: the calibrated scale, the achieved mean NFE beside the unbudgeted one, the
    PSNR of both, and whether the budgeted start steps keep the order by σ̂ (``None`` without a budget)."""
    if budget is None:
        return None
    methods = summarize(records)
    done, free = methods.get("flash_budget", {}), methods.get("flash", {})
    starts = [r["start_step_budget"] for r in records]
    return {**budget, "nfe_mean": done.get("nfe_mean"), "nfe_mean_unbudgeted": free.get("nfe_mean"),
            "psnr": done.get("psnr"), "psnr_unbudgeted": free.get("psnr"),
            "within_budget": done.get("nfe_mean", 0.0) <= budget["nfe_budget"],
            "order_kept": order_kept([r["sigma_hat"] for r in records], starts)}


def write_csv(records: list[dict], path: Path) -> None:
    methods = list(records[0]["psnr"]) if records else []
    columns = ["name", "severity", "severity_physical", "sigma_hat", "start_step", "ordering_accuracy", "out_of_range"]
    per_method = (*METRICS, "nfe", "decoder_calls", "seconds")
    columns += [f"{metric}_{m}" for m in methods for metric in per_method]
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for r in records:
            row = [r.get(c) for c in columns[:7]]
            row += [r.get(metric, {}).get(m) for m in methods for metric in per_method]
            writer.writerow(row)


def write_report(out: Path, config, model, solver, baseline_solver=None, *, budget: dict | None = None) -> dict:
    """Write ``results.json``, ``images.csv`` and figures for the records in ``out``.

    ``baseline_solver`` is the bare run's solver when it has its own grid (default: ``solver``);
    ``budget`` the calibrated ``--nfe-budget`` (:func:`~.budget.dataset_snr_scale`)."""
    records = read_records(out)
    baseline_solver = baseline_solver or solver
    result = {
        "task": config.task,
        "solver": config.solver,
        "model": config.model,
        "severity_from": config.severity_from,
        "steps": solver.grid.steps,
        "scheduler": solver.grid.kind,
        "ddim_eta": solver.grid.eta,
        "grid": solver.grid.label(),  # Flash's and the fixed starts' grid
        "path": model.path,  # "vp" (DDPM schedule) or "flow" (rectified flow on its σ grid)
        "seed": config.seed,
        "batching": {"flash": config.batching, "slots": config.batch_size, "unit": config.unit},
        "n_images": len(records),
        "image_size": model.image_size,
        "severity_range": list(config.severity_range) if config.severity_range else None,
        # the bare run's grid: the run's own unless --baseline-steps/--baseline-scheduler gave it another
        "baseline_grid": {"steps": baseline_solver.grid.steps, "scheduler": baseline_solver.grid.kind,
                          "ddim_eta": baseline_solver.grid.eta, "label": baseline_solver.grid.label()}
        if config.baseline else None,
        # what each method ran with: Flash's tuned values, and the bare run's (baseline_defaults on its grid)
        "hyperparameters": {"flash": solver.hyperparameters(config.task),
                            "baseline": baseline_solver.hyperparameters(config.task, baseline=True)},
        "methods": summarize(records),
        "severity": severity_summary(records),
        "nfe_budget": budget_summary(records, budget),
        # σ̂ outside the range the severity encoder recorded on its training data (None: it records none)
        "out_of_range": None if not records or records[0].get("out_of_range") is None
        else sum(bool(r["out_of_range"]) for r in records),
        # FID/KID per method with their image count (None without --fid-weights)
        "fid": fid_summary(out, records),
        "images": records,
    }
    (out / "results.json").write_text(json.dumps(result, indent=2))
    write_csv(records, out / "images.csv")
    if records:
        write_figures(out, result)
    return result
