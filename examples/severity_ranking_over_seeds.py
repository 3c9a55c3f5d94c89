"""How much does eval's one-draw-per-image Spearman(σ̂, t) move with the eval seed? (model-card study)

``flash-wrap eval`` draws one level t per image from the image's name and ``--seed``, and reports
Spearman(σ̂, t) over those draws: 10 draws on the 10 development faces. With so few draws the
figure is mostly the luck of the draw. This script repeats exactly eval's degradation
(:func:`flash_wrap.degradation.degrade`: the same levels, kernels and noise as an
``eval --seed S`` run) for seeds 0 … N−1, runs only the severity encoder, and prints the
distribution of that Spearman over the seeds (seed 0 is eval's default, so its value is the one
``eval`` prints).

    python examples/severity_ranking_over_seeds.py --faces ../shared/data/faces_dev --seeds 100
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

from flash_wrap import LatentDiffusion, get_task
from flash_wrap.degradation import degrade
from flash_wrap.images import list_images, load_image
from flash_wrap.metrics import spearman


@torch.no_grad()
def spearman_over_seeds(model: LatentDiffusion, task_name: str, faces_dir: str | Path, seeds: int, *,
                        limit: int | None = None) -> list[float]:
    """Spearman(σ̂, t) over eval's one draw per face, for ``eval --seed`` 0 … ``seeds``−1."""
    task = get_task(task_name)
    files = list_images(faces_dir)[:limit]
    if len(files) < 3:
        raise ValueError(f"{faces_dir} holds {len(files)} images; a rank correlation needs at least 3")
    names = [f.name for f in files]
    x = torch.stack([load_image(f, model.image_size) for f in files]).to(model.device)
    encoder = model.severity_encoder(task_name).eval()
    rhos = []
    for seed in range(seeds):
        _, levels, operator, y = degrade(task, names, x, task.eval_range, seed)
        sigma_hat = encoder(operator.to_image(y))[1].flatten().cpu()
        rhos.append(float(spearman(levels, sigma_hat)))
    return rhos


def describe(rhos: list[float], target: float) -> dict:
    """Mean, median, 10th and 90th percentiles (nearest rank) and the share of seeds at or above ``target``."""
    ranked = sorted(rhos)
    at = lambda p: ranked[round(p * (len(ranked) - 1))]  # noqa: E731
    return {"seeds": len(rhos), "seed_0": rhos[0], "mean": statistics.fmean(rhos), "median": statistics.median(rhos),
            "p10": at(0.1), "p90": at(0.9), "target": target,
            "share_at_or_above_target": sum(r >= target for r in rhos) / len(rhos)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="demo", help="bundle with a severity encoder for --task")
    parser.add_argument("--task", default="gaussian-blur")
    parser.add_argument("--faces", required=True, help="folder of evaluation faces (e.g. ../shared/data/faces_dev)")
    parser.add_argument("--seeds", type=int, default=100, help="eval seeds 0 … N−1")
    parser.add_argument("--limit", type=int, help="use only the first N faces")
    parser.add_argument("--target", type=float, default=0.85, help="the Spearman to count seeds against")
    parser.add_argument("--out", type=Path, help="also write the summary and every seed's value to this JSON file")
    args = parser.parse_args()
    if args.seeds < 1:
        parser.error(f"--seeds must be at least 1, got {args.seeds}")
    if args.limit is not None and args.limit < 3:
        parser.error(f"--limit must be at least 3 (a rank correlation needs 3 faces), got {args.limit}")
    if args.out is not None and args.out.is_dir():
        parser.error(f"--out {args.out} is a folder; give a file name such as {args.out / 'spearman.json'}")

    model = LatentDiffusion.from_pretrained(args.model)
    rhos = spearman_over_seeds(model, args.task, args.faces, args.seeds, limit=args.limit)
    d = describe(rhos, args.target)
    n = len(list_images(args.faces)[: args.limit])
    print(f"{args.task}, model {args.model}: Spearman(σ̂, t) over eval's one draw per face ({n} faces), "
          f"eval seeds 0…{args.seeds - 1}")
    print("| seeds | seed 0 (eval's default) | mean | median | 10th–90th percentile | seeds ≥ target |")
    print("|---|---|---|---|---|---|")
    print(f"| {d['seeds']} | {d['seed_0']:.3f} | {d['mean']:.3f} | {d['median']:.3f} | {d['p10']:.3f}–{d['p90']:.3f} "
          f"| {100 * d['share_at_or_above_target']:.0f} % (≥ {d['target']:g}) |")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({**d, "task": args.task, "model": args.model, "per_seed": rhos}, indent=2))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
