"""Grid-search a solver's data-consistency step size η for one model and task, as the paper did
([P App. A]: η over {0.5, 1, 1.5, 2, 5, 7, 10} on held-out images), and optionally store the best
value in the bundle (``model_index.json`` → ``solver_defaults``), where every solver picks it up.

    python examples/tune_step_size.py --model runs/demo --data ../shared/data/celeba_train \\
        --task gaussian-blur --from-end 8 --etas 0.25 0.5 1 2 4 --write
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from flash_wrap import Flash, LatentDiffusion, get_solver
from flash_wrap.apps.images import list_images, load_image
from flash_wrap.apps.metrics import psnr
from flash_wrap.models.bundle_io import DEMO_PATH
from flash_wrap.operators import get_task


def score(model, solver_name, task_name, images, eta, seed=0) -> float:
    task = get_task(task_name)
    op, _ = task.sample(images.shape[0], model.image_size, torch.Generator().manual_seed(seed),
                        level_range=task.eval_range)
    y = op.measure(images, generator=torch.Generator().manual_seed(seed + 1))
    solver = get_solver(solver_name)(model, eta=eta)
    gens = [torch.Generator().manual_seed(seed + 2 + i) for i in range(images.shape[0])]
    out = Flash(solver).reconstruct(y, op, generator=gens, progress=False)
    return float(psnr(out.images, images).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True, help="held-out images (not the evaluation set)")
    parser.add_argument("--task", required=True)
    parser.add_argument("--solver", default="latent-dps")
    parser.add_argument("--etas", type=float, nargs="+", default=[0.5, 1.0, 1.5, 2.0, 5.0, 7.0, 10.0])
    parser.add_argument("--from-end", type=int, default=8, help="use the last N images of the folder")
    parser.add_argument("--write", action="store_true", help="store the best η in the bundle")
    args = parser.parse_args()

    model = LatentDiffusion.from_pretrained(args.model)
    files = list_images(args.data)[-args.from_end :]
    images = torch.stack([load_image(f, model.image_size) for f in files])
    results = {eta: score(model, args.solver, args.task, images, eta) for eta in args.etas}
    for eta, value in results.items():
        print(f"eta {eta:g}: PSNR {value:.2f} dB")
    best = max(results, key=results.get)
    print(f"best eta for {args.solver} on {args.task}: {best:g}")
    if args.write:
        index_file = (DEMO_PATH if args.model == "demo" else Path(args.model)) / "model_index.json"
        index = json.loads(index_file.read_text())
        index.setdefault("solver_defaults", {}).setdefault(args.solver, {}).setdefault(args.task, {})["eta"] = best
        index_file.write_text(json.dumps(index, indent=2))
        print(f"wrote eta={best:g} into {index_file}")


if __name__ == "__main__":
    main()
