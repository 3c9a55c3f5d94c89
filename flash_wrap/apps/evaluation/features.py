"""FID and KID per method over an ``eval`` run (``--fid-weights``).

Each unit of work writes ``features/<its first image>.safetensors``: the 2048-d pool features
(:class:`~flash_wrap.perceptual.FIDInception`) of its clean images (``clean``) and of each method's
reconstructions (clipped to [0, 1]), with the image names in the file's metadata. The process that ran
the unit writes it, so nothing is gathered between processes, and a resumed run keeps what was done.
The report then compares each method's features with the clean ones over every recorded image that has
them (FID: Heusel et al. 2017; KID: Bińkowski et al. 2018) and says how many images that was.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ...perceptual import FIDInception, frechet_distance, kernel_inception_distance

__all__ = ["FEATURES", "KID_SUBSET", "fid_summary", "save_features"]

#: the folder of the feature files inside ``--out``
FEATURES = "features"
#: KID's subset size (the usual 1000, or all images of a smaller run)
KID_SUBSET = 1000


def save_features(out: Path, names: list[str], network: FIDInception, clean: torch.Tensor,
                  images: dict[str, torch.Tensor]) -> None:
    """Write the unit's features: ``clean`` ``(B, 3, H, W)`` in [0, 1] and each method's ``(B, 3, H, W)``."""
    from safetensors.torch import save_file

    folder = out / FEATURES
    folder.mkdir(exist_ok=True)
    tensors = {"clean": network(clean)} | {method: network(img.clamp(0, 1)) for method, img in images.items()}
    save_file({k: v.float().cpu().contiguous() for k, v in tensors.items()}, str(folder / f"{names[0]}.safetensors"),
              metadata={"names": json.dumps(names)})


def fid_summary(out: Path, records: list[dict]) -> dict[str, dict] | None:
    """Per method: ``fid``, ``kid``, ``kid_std`` (over 100 subsets of ``kid_subset`` images) and
    ``images`` (how many it used); ``None`` when the run kept no features. FID warns below
    :data:`~flash_wrap.perceptual.fid.FID_MIN_IMAGES` images."""
    from safetensors import safe_open

    folder = out / FEATURES
    if not folder.is_dir():
        return None
    wanted = {r["name"] for r in records}
    parts: dict[str, list[torch.Tensor]] = {}
    for file in sorted(folder.glob("*.safetensors")):
        with safe_open(str(file), "pt") as handle:
            names = json.loads((handle.metadata() or {}).get("names", "[]"))
            keep = torch.tensor([i for i, name in enumerate(names) if name in wanted], dtype=torch.long)
            for key in handle.keys():
                parts.setdefault(key, []).append(handle.get_tensor(key)[keep])
    if "clean" not in parts:
        return None
    clean = torch.cat(parts.pop("clean"))
    if clean.shape[0] < 2:
        return None
    summary = {}
    for method, chunks in parts.items():
        fake = torch.cat(chunks)
        fid = frechet_distance(clean, fake)
        kid = kernel_inception_distance(clean, fake, subset_size=min(KID_SUBSET, clean.shape[0]))
        summary[method] = {"fid": fid.value, "kid": kid.mean, "kid_std": kid.std, "kid_subset": kid.subset_size,
                           "images": fid.n_fake}
    return summary
