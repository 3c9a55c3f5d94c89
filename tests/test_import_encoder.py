"""``flash-wrap import-encoder`` and :mod:`flash_wrap.severity.official`.

The official checkpoint is written here in the layout of Flash-Diffusion's
``SeverityEncoderModule`` (ALGORITHMS.md §11): a Lightning dict whose ``state_dict`` holds the
LDM VQ-f4 encoder in CompVis names (``encoder.encoder.*``), ``encoder.quant_conv.*``,
``encoder.std_conv.*`` and ``pretrained_autoencoder.*``. The CompVis names come from this file's
own renaming of a diffusers ``Encoder``'s names (not from the converter under test), and the
reference σ̂ is the official forward written out: ``z = quant_conv(Encoder(2y − 1))``,
``v = mean(std_conv(z)²)`` over all entries.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import pickle
import re
import shutil
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from diffusers import DDIMScheduler, LDMPipeline, UNet2DModel, VQModel
from safetensors.torch import save_file

from flash_wrap import hookimpl
from flash_wrap.apps import precheck
from flash_wrap.apps.cli import main
from flash_wrap.models import LatentDiffusion
from flash_wrap.operators import RandomInpainting, Task
from flash_wrap.registry import get_registry, load_registry
from flash_wrap.severity.official import load_official_severity_encoder, read_official, read_official_checkpoint
from flash_wrap.testing import tiny_model, write_images

TASK = "gaussian-blur"
SIZE = 32
#: The LDM VQ-f4 structure (3 levels, 2 ResBlocks each, 32 norm groups, 3 latent channels), narrow.
VQ_CONFIG = {
    "block_out_channels": (32, 64, 64),
    "down_block_types": ("DownEncoderBlock2D",) * 3,
    "up_block_types": ("UpDecoderBlock2D",) * 3,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "latent_channels": 3,
    "num_vq_embeddings": 16,
}

#: diffusers ``Encoder`` names → CompVis ``Encoder`` names, first match wins.
_TO_COMPVIS = [
    (r"^down_blocks\.(\d+)\.resnets\.(\d+)\.conv_shortcut\.", r"down.\1.block.\2.nin_shortcut."),
    (r"^down_blocks\.(\d+)\.resnets\.(\d+)\.", r"down.\1.block.\2."),
    (r"^down_blocks\.(\d+)\.downsamplers\.0\.conv\.", r"down.\1.downsample.conv."),
    (r"^mid_block\.resnets\.0\.", "mid.block_1."),
    (r"^mid_block\.resnets\.1\.", "mid.block_2."),
    (r"^mid_block\.attentions\.0\.group_norm\.", "mid.attn_1.norm."),
    (r"^mid_block\.attentions\.0\.to_([qkv])\.", r"mid.attn_1.\1."),
    (r"^mid_block\.attentions\.0\.to_out\.0\.", "mid.attn_1.proj_out."),
    (r"^conv_norm_out\.", "norm_out."),
    (r"^(conv_in|conv_out)\.", r"\1."),
]


def _compvis(name: str) -> str:
    for pattern, replacement in _TO_COMPVIS:
        if re.match(pattern, name):
            return re.sub(pattern, replacement, name)
    raise AssertionError(f"no CompVis name for {name}")


def _vq(seed: int, **changes) -> VQModel:
    torch.manual_seed(seed)
    return VQModel(**{**VQ_CONFIG, **changes})


def _unet(vq: VQModel) -> UNet2DModel:
    torch.manual_seed(0)
    channels, f = vq.config.latent_channels, 2 ** (len(vq.config.block_out_channels) - 1)
    return UNet2DModel(sample_size=SIZE // f, in_channels=channels, out_channels=channels, block_out_channels=(8, 16),
                       layers_per_block=1, norm_num_groups=4, down_block_types=("DownBlock2D",) * 2,
                       up_block_types=("UpBlock2D",) * 2)


def _save_model(path: Path, vq: VQModel, **kwargs) -> Path:
    LatentDiffusion.from_diffusers(vq, _unet(vq), image_size=SIZE, **kwargs).save_pretrained(path)
    return path


class Official:
    """The official encoder's weights (diffusers modules holding them) and its forward."""

    def __init__(self) -> None:
        vq = _vq(seed=1)
        self.encoder, self.quant_conv = vq.encoder.eval(), vq.quant_conv
        torch.manual_seed(2)
        self.std_conv = torch.nn.Conv2d(3, 3, kernel_size=1)
        with torch.no_grad():  # every tensor random, norms and biases included, so no swap goes unseen
            for p in [*self.encoder.parameters(), *self.quant_conv.parameters(), *self.std_conv.parameters()]:
                p.add_(0.05 * torch.randn_like(p))

    @torch.no_grad()
    def forward(self, y01: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.quant_conv(self.encoder(y01 * 2 - 1))  # the official code feeds images in [-1, 1]
        return z, self.std_conv(z).pow(2).reshape(z.shape[0], -1).mean(dim=1)

    def module_state(self) -> OrderedDict:
        """``SeverityEncoderModule.state_dict()``: CompVis names, 1×1-conv attention weights."""
        state = OrderedDict()
        for name, value in self.encoder.state_dict().items():
            value = value.clone()
            if name.startswith("mid_block.attentions.0.to_") and value.ndim == 2:
                value = value[:, :, None, None]
            state[f"encoder.encoder.{_compvis(name)}"] = value
        for part, module in (("quant_conv", self.quant_conv), ("std_conv", self.std_conv)):
            for name, value in module.state_dict().items():
                state[f"encoder.{part}.{name}"] = value.clone()
        state["pretrained_autoencoder.encoder.conv_in.weight"] = torch.randn(32, 3, 3, 3)
        state["pretrained_autoencoder.quantize.embedding.weight"] = torch.randn(16, 3)
        state["pretrained_autoencoder.decoder.conv_out.bias"] = torch.randn(3)
        return state


#: ``flash_configs/inverse_configs/*.yaml``'s ``operator:`` sections, as the official training script
#: passes them to ``SeverityEncoderModule(operator_config=...)``; the noise is their ``noise:``.
GAUSSIAN_BLUR = {"type": "gaussian_blur", "kernel_size": 61, "scheduling": "linear", "max_std": 3.0}
NONLINEAR_BLUR = {"type": "nonlinear_blur"}
RANDOM_INPAINTING = {"type": "inpainting", "mask_type": "random", "mask_min_ratio": 0.2, "mask_max_ratio": 1.0,
                     "scheduling": "linear"}
FIXED_NOISE = {"sigma_min": 0.05, "sigma_max": 0.05}


def _hyper_parameters(operator_config: object = GAUSSIAN_BLUR, noise_config: object = FIXED_NOISE) -> dict:
    """``SeverityEncoderModule``'s ``save_hyperparameters()``: its ``__init__`` arguments, as in
    ``scripts/train_celeba256_gblur_varying.sh``."""
    return {
        "operator_config": operator_config, "noise_config": noise_config,
        "ldm_model_ckpt_path": "ldm/models/ldm/celeba256/model.ckpt",
        "ldm_model_config_path": "ldm/models/ldm/celeba256/config.yaml", "sev_encoder_ckpt_path": None,
        "sev_encoder_config_path": None, "pretrained_encoder_ckpt_path": None,
        "pretrained_encoder_config_path": None, "lr": 1e-4, "lr_step_size": None, "lr_gamma": 0.1,
        "sigma_reg": 1.0, "img_space_reg": 1.0, "lr_milestones": None, "weight_decay": 0.0, "logger_type": "wandb",
    }


def _lightning(state: dict, hyper_parameters: object = None) -> dict:
    return {
        "epoch": 41, "global_step": 32_000, "pytorch-lightning_version": "2.1.3", "state_dict": state,
        "hparams_name": "kwargs",
        "hyper_parameters": hyper_parameters if hyper_parameters is not None else _hyper_parameters(),
        "optimizer_states": [{"state": {}, "param_groups": [{"lr": 1e-4}]}], "lr_schedulers": [],
        "callbacks": {"ModelCheckpoint{'monitor': 'val/loss'}": {"best_model_score": torch.tensor(0.1)}},
        "loops": {},
    }


@pytest.fixture(scope="module")
def official() -> Official:
    with torch.random.fork_rng(devices=[]):
        return Official()


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    with torch.random.fork_rng(devices=[]):
        return _save_model(tmp_path_factory.mktemp("template") / "bundle", _vq(seed=0))


@pytest.fixture
def bundle(template, tmp_path) -> Path:
    return Path(shutil.copytree(template, tmp_path / "bundle"))


@pytest.fixture
def ckpt(official, tmp_path) -> Path:
    file = tmp_path / "sevenc_gblur_celeba256.ckpt"
    torch.save(_lightning(official.module_state()), file)
    return file


def _images(n: int = 3) -> torch.Tensor:
    return torch.rand(n, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(7))


def _assert_official(encoder, official: Official) -> None:
    y = _images()
    with torch.no_grad():
        z_hat, v = encoder(y)
    z_ref, v_ref = official.forward(y)
    assert z_hat.shape == (3, 3, SIZE // 4, SIZE // 4) and v.shape == (3,)
    torch.testing.assert_close(z_hat, z_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(v, v_ref, atol=1e-5, rtol=1e-5)


def test_the_test_checkpoint_has_the_official_compvis_layout(official):
    state = official.module_state()
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    assert shapes["encoder.encoder.conv_in.weight"] == (32, 3, 3, 3)
    assert shapes["encoder.encoder.down.0.block.1.norm2.bias"] == (32,)
    assert shapes["encoder.encoder.down.1.block.0.nin_shortcut.weight"] == (64, 32, 1, 1)
    assert shapes["encoder.encoder.down.1.downsample.conv.weight"] == (64, 64, 3, 3)
    assert "encoder.encoder.down.2.downsample.conv.weight" not in shapes  # no downsampling after the last level
    assert shapes["encoder.encoder.mid.attn_1.q.weight"] == (64, 64, 1, 1)
    assert shapes["encoder.encoder.mid.attn_1.proj_out.weight"] == (64, 64, 1, 1)
    assert shapes["encoder.encoder.mid.block_2.conv2.weight"] == (64, 64, 3, 3)
    assert shapes["encoder.encoder.norm_out.weight"] == (64,)
    assert shapes["encoder.encoder.conv_out.weight"] == (3, 64, 3, 3)
    assert shapes["encoder.quant_conv.weight"] == shapes["encoder.std_conv.weight"] == (3, 3, 1, 1)


def test_imported_encoder_computes_the_official_latent_and_variance(official, bundle, ckpt):
    model = LatentDiffusion.from_pretrained(bundle)
    encoder = load_official_severity_encoder(ckpt, model)
    _assert_official(encoder, official)
    # the model's own (fresh) encoder differs: the import replaced every part of it
    with torch.no_grad():
        _, v_fresh = model.make_severity_encoder()(_images())
    assert not torch.allclose(v_fresh, official.forward(_images())[1], rtol=1e-2)


def _state_dict_only(official, tmp_path):
    file = tmp_path / "state_dict.pt"
    torch.save(official.module_state(), file)
    return file


def _sev_encoder_layout(official, tmp_path):
    file = tmp_path / "ldm_sev_encoder.pt"  # LDMSevEncoder.state_dict(): the module prefix stripped
    torch.save({k.removeprefix("encoder."): v for k, v in official.module_state().items()
                if k.startswith("encoder.")}, file)
    return file


def _safetensors(official, tmp_path):
    file = tmp_path / "encoder.safetensors"
    save_file(dict(official.module_state()), str(file))
    return file


def _namespace_hparams(official, tmp_path):
    file = tmp_path / "namespace.ckpt"
    torch.save(_lightning(official.module_state(), argparse.Namespace(lr=1e-4, operator_config={"a": [1]})), file)
    return file


@pytest.mark.parametrize("write", [_state_dict_only, _sev_encoder_layout, _safetensors, _namespace_hparams])
def test_every_accepted_file_gives_the_same_tensors_and_encoder(official, bundle, ckpt, tmp_path, write):
    reference = read_official_checkpoint(ckpt)
    assert set(reference) == {k.removeprefix("encoder.") for k in official.module_state()
                              if not k.startswith("pretrained_autoencoder.")}
    file = write(official, tmp_path)
    other = read_official_checkpoint(file)
    assert other.keys() == reference.keys()
    assert all(torch.equal(other[k], reference[k]) for k in reference)
    _assert_official(load_official_severity_encoder(file, LatentDiffusion.from_pretrained(bundle)), official)


def _touch(path: str) -> None:
    Path(path).write_text("code from the checkpoint ran")


class _Payload:
    """Unpickling this runs ``_touch``: what a malicious checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (_touch, (str(self.marker),))


def test_a_checkpoint_that_pickles_code_is_refused_without_running_it(official, bundle, tmp_path, capsys):
    marker = tmp_path / "ran"
    pickle.loads(pickle.dumps(_Payload(marker)))  # the payload is live under the full unpickler
    assert marker.exists()
    marker.unlink()
    file = tmp_path / "evil.ckpt"
    torch.save(_lightning(official.module_state(), {"config": _Payload(marker)}), file)
    status = main(["import-encoder", str(file), "--model", str(bundle), "--task", TASK])
    err = capsys.readouterr().err.strip()
    assert status == 2 and not marker.exists()
    assert err.startswith("flash-wrap import-encoder: error: ") and "\n" not in err
    assert "not a tensors-only checkpoint" in err and "_touch" in err
    assert "torch.save(ckpt['state_dict']" in err and "weights_only=False" not in err
    assert TASK not in LatentDiffusion.from_pretrained(bundle).severity_encoders


def _drop(key):
    def edit(state):
        del state[key]
    return edit


def _set(key, value):
    def edit(state):
        state[key] = value
    return edit


def _nan(state):
    state["encoder.std_conv.bias"] = torch.tensor([0.0, float("nan"), 0.0])


@pytest.mark.parametrize(("edit", "message"), [
    (_drop("encoder.encoder.mid.attn_1.k.bias"), "no tensor for 'backbone.encoder.encoder.mid_block.attentions.0.to_k.bias'"),
    (_drop("encoder.std_conv.weight"), "no variance head 'encoder.std_conv.weight'"),
    (_drop("encoder.std_conv.bias"), "no tensor for 'variance_head.bias'"),
    (_set("encoder.encoder.down.0.block.0.conv1.weight", torch.randn(16, 32, 3, 3)), "has shape (16, 32, 3, 3)"),
    (_set("encoder.encoder.extra.weight", torch.randn(3)), "unexpected tensor 'encoder.extra.weight'"),
    (_set("encoder.encoder.down.3.block.0.conv1.weight", torch.randn(64, 64, 3, 3)),
     "unexpected tensor 'encoder.down.3.block.0.conv1.weight'"),
    (_set("encoder.encoder.down.0.block.2.conv1.weight", torch.randn(32, 32, 3, 3)),
     "unexpected tensor 'backbone.encoder.encoder.down_blocks.0.resnets.2.conv1.weight'"),
    (_set("optimizer.weight", torch.randn(3)), "unexpected tensor 'optimizer.weight'"),
    (_set("encoder.quant_conv.weight", torch.zeros(3, 3, 1, 1, dtype=torch.int64)), "expected floating point"),
    (_nan, "NaN"),
])
def test_a_checkpoint_that_does_not_fit_is_refused_naming_the_tensor(official, bundle, tmp_path, edit, message):
    state = official.module_state()
    edit(state)
    file = tmp_path / "bad.ckpt"
    torch.save(_lightning(state), file)
    with pytest.raises(ValueError, match=re.escape(message)):
        load_official_severity_encoder(file, LatentDiffusion.from_pretrained(bundle))


def test_a_file_that_is_no_checkpoint_is_refused(bundle, tmp_path):
    file = tmp_path / "garbage.ckpt"
    file.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match="not a readable PyTorch checkpoint"):
        read_official_checkpoint(file)
    torch.save([torch.zeros(1)], file)
    with pytest.raises(ValueError, match="holds a list; expected a Lightning checkpoint"):
        read_official_checkpoint(file)


@pytest.mark.parametrize(("build", "message"), [
    (lambda path: tiny_model("kl").save_pretrained(path), "this model's autoencoder is 'kl'"),
    (lambda path: _save_model(path, _vq(0, latent_channels=4)), "latent channels 4 (expected 3)"),
    (lambda path: _save_model(path, _vq(0, norm_num_groups=16)), "norm groups 16 (expected 32)"),
    (lambda path: _save_model(path, _vq(0, block_out_channels=(32, 64), down_block_types=("DownEncoderBlock2D",) * 2,
                                        up_block_types=("UpDecoderBlock2D",) * 2)), "downsampling 2 (expected 4)"),
    (lambda path: _save_model(path, _vq(0), latent_scale=0.5), "latent scale 0.5 (expected 1)"),
])
def test_a_model_without_the_ldm_vq_f4_autoencoder_is_refused_before_the_checkpoint_is_read(
        tmp_path, build, message):
    folder = tmp_path / "model"
    with torch.random.fork_rng(devices=[]):
        build(folder)
    unread = tmp_path / "garbage.ckpt"
    unread.write_bytes(b"never read")
    with pytest.raises(ValueError, match=re.escape(message)) as caught:
        load_official_severity_encoder(unread, LatentDiffusion.from_pretrained(folder))
    assert "LDM VQ-f4" in str(caught.value)


def test_cli_imports_into_the_bundle_which_then_gives_the_official_variance(official, bundle, ckpt, capsys):
    assert main(["import-encoder", str(ckpt), "--model", str(bundle), "--task", TASK]) == 0
    out = capsys.readouterr().out
    assert f"written to {bundle.resolve() / 'severity_encoders' / TASK}" in out
    model = LatentDiffusion.from_pretrained(bundle)
    _assert_official(model.severity_encoder(TASK), official)
    imported = model.severity_metadata[TASK]["imported_from"]
    training = model.severity_metadata[TASK]["official_training"]
    assert training["operator"] == "gaussian_blur" and training["task_checked"] is True
    assert training["operator_config"] == GAUSSIAN_BLUR
    assert training["noise_std"] == 0.05 and training["noise_std_matches"] is True
    assert imported["file"] == ckpt.name
    assert imported["sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert not list(bundle.glob(".*"))  # no lock or staging folder left behind
    assert "sigma_hat_range" not in model.severity_metadata[TASK]  # no --data: no range recorded


def test_import_with_data_records_the_sigma_hat_range(official, bundle, ckpt, tmp_path, capsys):
    images = write_images(tmp_path / "images", 6, SIZE, SIZE)
    assert main(["import-encoder", str(ckpt), "--model", str(bundle), "--task", TASK, "--data", str(images)]) == 0
    record = LatentDiffusion.from_pretrained(bundle).severity_metadata[TASK]["sigma_hat_range"]
    assert record["n"] == 3 * 6 and 0 <= record["low"] <= record["high"] and record["data"] == "images"


def test_an_existing_encoder_is_replaced_only_with_force(official, bundle, ckpt, tmp_path, capsys):
    assert main(["import-encoder", str(ckpt), "--model", str(bundle), "--task", TASK]) == 0
    weights = bundle / "severity_encoders" / TASK / "model.safetensors"
    before = weights.read_bytes()
    status = main(["import-encoder", str(ckpt), "--model", str(bundle), "--task", TASK])
    err = capsys.readouterr().err
    assert status == 2 and f"already has a {TASK} severity encoder; pass --force" in err
    assert weights.read_bytes() == before
    assert main(["import-encoder", str(ckpt), "--model", str(bundle), "--task", TASK, "--force"]) == 0
    _assert_official(LatentDiffusion.from_pretrained(bundle).severity_encoder(TASK), official)


def test_output_gets_a_new_bundle_and_the_model_is_left_alone(official, bundle, ckpt, tmp_path, capsys):
    before = {p: p.read_bytes() for p in bundle.rglob("*") if p.is_file()}
    out = tmp_path / "imported"
    assert main(["import-encoder", str(ckpt), "--model", str(bundle), "--task", TASK, "--save-to", str(out)]) == 0
    assert {p: p.read_bytes() for p in bundle.rglob("*") if p.is_file()} == before
    model = LatentDiffusion.from_pretrained(out)
    assert list(model.severity_encoders) == [TASK]
    _assert_official(model.severity_encoder(TASK), official)


def test_an_ldm_pipeline_folder_is_left_alone_and_output_gets_the_bundle(official, ckpt, tmp_path, capsys):
    vq = _vq(0)
    scheduler = DDIMScheduler(beta_start=0.0015, beta_end=0.0195, beta_schedule="scaled_linear")
    LDMPipeline(vqvae=vq, unet=_unet(vq), scheduler=scheduler).save_pretrained(tmp_path / "pipeline")
    before = {p: p.read_bytes() for p in (tmp_path / "pipeline").rglob("*") if p.is_file()}
    args = ["import-encoder", str(ckpt), "--model", str(tmp_path / "pipeline"), "--task", TASK]
    assert main(args) == 2 and "pass --save-to NEW_FOLDER" in capsys.readouterr().err
    assert main([*args, "--save-to", str(tmp_path / "bundle-out")]) == 0
    assert {p: p.read_bytes() for p in (tmp_path / "pipeline").rglob("*") if p.is_file()} == before
    _assert_official(LatentDiffusion.from_pretrained(tmp_path / "bundle-out").severity_encoder(TASK), official)


@pytest.mark.parametrize(("args", "message"), [
    (["--model", "demo"], "--model demo is installed inside the package; pass --save-to NEW_FOLDER"),
    (["--model", "demo", "--save-to", "{out}"], "this model's autoencoder is 'taef2'"),
    (["--model", "{bundle}", "--task", "no-such-task"], "unknown task 'no-such-task'"),
    (["--model", "{bundle}", "--save-to", "{out}", "--checkpoint", "{missing}"], "does not exist"),
])
def test_cli_refusals_end_in_one_line_and_leave_nothing_behind(bundle, ckpt, tmp_path, capsys, args, message):
    out, missing = tmp_path / "new-bundle", tmp_path / "missing.ckpt"
    args = [a.format(out=out, bundle=bundle, missing=missing) for a in args]
    file = str(ckpt)
    if "--checkpoint" in args:
        at = args.index("--checkpoint")
        file = args.pop(at + 1)
        args.pop(at)
    task = [] if "--task" in args else ["--task", TASK]
    status = main(["import-encoder", file, *args, *task])
    err = capsys.readouterr().err.strip()
    assert status == 2 and err.startswith("flash-wrap import-encoder: error: ") and "\n" not in err
    assert message in err
    assert not out.exists()


# --- the operator and noise the checkpoint records -------------------------------------------------------------------

TASKS = ["gaussian-blur", "random-inpainting", "motion-blur", "super-resolution"]
#: official operator_config → the flash-wrap task it is, and how messages name it
OFFICIAL = [
    (GAUSSIAN_BLUR, "gaussian-blur", "'gaussian_blur'"),
    (NONLINEAR_BLUR, "motion-blur", "'nonlinear_blur'"),
    (RANDOM_INPAINTING, "random-inpainting", "'inpainting' with mask_type 'random'"),
]
OFFICIAL_LOG = "flash_wrap.severity.official"


def _official_ckpt(official: Official, tmp_path: Path, operator_config: object = GAUSSIAN_BLUR,
                   noise_config: object = FIXED_NOISE, name: str = "sevenc.ckpt") -> Path:
    file = tmp_path / name
    torch.save(_lightning(official.module_state(), _hyper_parameters(operator_config, noise_config)), file)
    return file


def _light_ckpt(official: Official, tmp_path: Path, operator_config: object) -> Path:
    """``extract_sev_encoder_ckpt``'s ``*_light.ckpt`` (scripts/utils.py): the LDMSevEncoder's own
    state dict and three hyper-parameters."""
    file = tmp_path / "sevenc_light.ckpt"
    state = {k.removeprefix("encoder."): v for k, v in official.module_state().items() if k.startswith("encoder.")}
    model_config = {"target": "ldm.models.autoencoder.VQModelInterface",
                    "params": {"embed_dim": 3, "n_embed": 8192, "ddconfig": {"z_channels": 3, "ch_mult": [1, 2, 4]}}}
    torch.save({"state_dict": state, "hyper_parameters": {"operator_config": operator_config,
                                                          "noise_config": FIXED_NOISE, "model_config": model_config}},
               file)
    return file


def _import(file: Path, model: Path, task: str, *extra: str) -> int:
    return main(["import-encoder", str(file), "--model", str(model), "--task", task, *extra])


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("flash-wrap import-encoder: error: ") and "\n" not in err, err
    return err


def _training(folder: Path, task: str) -> dict:
    return LatentDiffusion.from_pretrained(folder).severity_metadata[task]["official_training"]


@pytest.mark.parametrize(("operator_config", "trained", "label"), OFFICIAL)
@pytest.mark.parametrize("task", TASKS)
def test_the_task_must_be_the_one_of_the_recorded_official_operator(official, bundle, tmp_path, capsys,
                                                                     operator_config, trained, label, task):
    file, out = _official_ckpt(official, tmp_path, operator_config), tmp_path / "imported"
    status = _import(file, bundle, task, "--save-to", str(out))
    if task != trained:
        err = _error_line(capsys)
        assert status == 2, err
        assert f"trained for the official operator {label} (flash-wrap task {trained}), not {task}" in err
        assert err.endswith(f"pass --task {trained}")
        assert not out.exists()
        return
    assert status == 0, capsys.readouterr().err
    training = _training(out, task)
    assert training["operator"] == operator_config["type"] and training["task_checked"] is True
    assert training["operator_config"] == operator_config
    _assert_official(LatentDiffusion.from_pretrained(out).severity_encoder(task), official)


@pytest.mark.parametrize("operator_config", [GAUSSIAN_BLUR, {"operator": "gaussian_blur", "kernel_size": 61}])
def test_a_refused_import_into_the_bundle_itself_leaves_it_alone(official, bundle, tmp_path, capsys, operator_config):
    """The hostile report's case: a gaussian-blur encoder imported as super-resolution, also with the
    hand-written spelling ``operator_config.operator``."""
    before = {p: p.read_bytes() for p in bundle.rglob("*") if p.is_file()}
    file = _official_ckpt(official, tmp_path, operator_config)
    assert _import(file, bundle, "super-resolution") == 2
    err = _error_line(capsys)
    assert "'gaussian_blur'" in err and "not super-resolution" in err and "pass --task gaussian-blur" in err
    assert {p: p.read_bytes() for p in bundle.rglob("*") if p.is_file()} == before
    assert not list(bundle.glob(".*")) and not LatentDiffusion.from_pretrained(bundle).severity_encoders


def test_the_light_checkpoint_of_the_official_extractor_is_checked_too(official, bundle, tmp_path, capsys):
    file = _light_ckpt(official, tmp_path, NONLINEAR_BLUR)
    assert _import(file, bundle, "gaussian-blur", "--save-to", str(tmp_path / "refused")) == 2
    assert "'nonlinear_blur' (flash-wrap task motion-blur), not gaussian-blur" in _error_line(capsys)
    assert not (tmp_path / "refused").exists()
    assert _import(file, bundle, "motion-blur") == 0
    assert _training(bundle, "motion-blur")["operator"] == "nonlinear_blur"
    _assert_official(LatentDiffusion.from_pretrained(bundle).severity_encoder("motion-blur"), official)


def test_the_library_loader_checks_the_task_when_given_one(official, bundle, tmp_path):
    file = _official_ckpt(official, tmp_path, NONLINEAR_BLUR)
    model = LatentDiffusion.from_pretrained(bundle)
    official_tasks = get_registry().official_tasks()
    with pytest.raises(ValueError, match=re.escape("not gaussian-blur; pass --task motion-blur")):
        load_official_severity_encoder(file, model, task="gaussian-blur", official_tasks=official_tasks, noise_std=0.05)
    _assert_official(load_official_severity_encoder(file, model, task="motion-blur", official_tasks=official_tasks,
                                                    noise_std=0.05), official)
    _assert_official(load_official_severity_encoder(file, model), official)  # no task: not checked
    with pytest.raises(TypeError, match="a task needs official_tasks"):
        load_official_severity_encoder(file, model, task="motion-blur")


def test_a_registered_task_declares_the_official_operators_it_imports(official, bundle, tmp_path, capsys, monkeypatch):
    # the official box-inpainting encoders have no built-in task; a plugin's task that claims them imports them
    class BoxTask:
        @hookimpl
        def flash_wrap_register_tasks(self, register):
            register(Task("centre-box", "a centred hole", (0.0, 1.0), (0.0, 1.0),
                          lambda t, size, noise, seeds: RandomInpainting(t, noise),
                          official_operators=("inpainting/box",)))

    registry = load_registry(strict=True)
    registry.register_plugin(BoxTask(), "box-plugin", "box-dist 1.0")
    monkeypatch.setattr("flash_wrap.apps.import_encoder.get_registry", lambda: registry)
    declared = precheck.entry_point_names() | {"centre-box"}  # as the plugin's entry point would declare it
    monkeypatch.setattr(precheck, "entry_point_names", lambda: declared)
    box = {"type": "inpainting", "mask_type": "box", "box_size": 128, "scheduling": "linear"}
    file, out = _official_ckpt(official, tmp_path, box), tmp_path / "imported"
    assert _import(file, bundle, "random-inpainting", "--save-to", str(out)) == 2
    assert "mask_type 'box' (flash-wrap task centre-box), not random-inpainting; pass --task centre-box" in (
        _error_line(capsys))
    assert _import(file, bundle, "centre-box", "--save-to", str(out)) == 0, capsys.readouterr().err
    assert _training(out, "centre-box")["task_checked"] is True


@pytest.mark.parametrize(("operator_config", "task", "message"), [
    ({"type": "inpainting", "mask_type": "box", "box_size": 128, "scheduling": "linear"}, "random-inpainting",
     "the official operator 'inpainting' with mask_type 'box', which has no flash-wrap task"),
    ({"type": "inpainting", "scheduling": "linear"}, "random-inpainting",  # InpaintingOperator's default mask
     "the official operator 'inpainting' with mask_type 'box', which has no flash-wrap task"),
    ({"type": "inpainting", "mask_type": "random_box", "box_min_size": [0, 0], "box_max_size": [0.5, 0.5],
      "scheduling": "linear"}, "random-inpainting", "'inpainting' with mask_type 'random_box', which has no"),
    ({"type": "inpainting", "mask_type": "gaussian", "mask_min_std": 1, "mask_max_std": 9, "mask_pow": 2,
      "scheduling": "linear"}, "gaussian-blur", "'inpainting' with mask_type 'gaussian', which has no"),
    ({"type": "motion_blur"}, "motion-blur", "records the operator 'motion_blur', which is not one of the official"),
    ({"type": "super_resolution"}, "super-resolution", "records the operator 'super_resolution', which is not one"),
    ({"type": 3}, "gaussian-blur", "records the operator 3, which is not one of the official"),
    ({"type": "gaussian_blur", "operator": "nonlinear_blur"}, "gaussian-blur",
     "names two operators, type 'gaussian_blur' and operator 'nonlinear_blur'"),
])
def test_an_operator_without_a_flash_wrap_task_is_refused_naming_it(official, bundle, tmp_path, capsys,
                                                                     operator_config, task, message):
    out = tmp_path / "imported"
    assert _import(_official_ckpt(official, tmp_path, operator_config), bundle, task, "--save-to", str(out)) == 2
    err = _error_line(capsys)
    assert message in err
    if "which has no" in message or "not one of" in message:
        assert "nonlinear_blur as motion-blur" in err  # the ones it does import
    assert not out.exists()


def _no_hyper_parameters(official, tmp_path):
    file = tmp_path / "no_hparams.ckpt"
    checkpoint = _lightning(official.module_state())
    del checkpoint["hyper_parameters"]
    torch.save(checkpoint, file)
    return file


def _no_operator_config(official, tmp_path):
    file = tmp_path / "no_operator_config.ckpt"
    hyper_parameters = _hyper_parameters()
    del hyper_parameters["operator_config"]
    torch.save(_lightning(official.module_state(), hyper_parameters), file)
    return file


def _unnamed_operator(official, tmp_path):
    return _official_ckpt(official, tmp_path, {"kernel_size": 61, "max_std": 3.0})


@pytest.mark.parametrize(("write", "reason", "noise"), [
    (_state_dict_only, "a bare state dict records no hyper-parameters", None),
    (_sev_encoder_layout, "a bare state dict records no hyper-parameters", None),
    (_safetensors, "a safetensors file holds tensors only", None),
    (_no_hyper_parameters, "the checkpoint has no hyper_parameters", None),
    (_no_operator_config, "its hyper_parameters name no operator_config", 0.05),
    (_unnamed_operator, "its operator_config names no operator", 0.05),
    (_namespace_hparams, "its operator_config names no operator", None),
])
def test_a_checkpoint_that_names_no_operator_is_imported_marked_unchecked(official, bundle, tmp_path, capsys, caplog,
                                                                          write, reason, noise):
    file, out = write(official, tmp_path), tmp_path / "imported"
    with caplog.at_level(logging.WARNING, logger=OFFICIAL_LOG):
        assert _import(file, bundle, "super-resolution", "--save-to", str(out)) == 0, capsys.readouterr().err
    training = _training(out, "super-resolution")
    assert training["task_checked"] is False and training["operator"] is None
    assert training["task_not_checked_because"].startswith(reason)
    assert training["noise_std"] == noise and training["noise_std_matches"] is (None if noise is None else True)
    assert any("could not check that it was trained for super-resolution" in r.getMessage() for r in caplog.records)
    _assert_official(LatentDiffusion.from_pretrained(out).severity_encoder("super-resolution"), official)


@pytest.mark.parametrize(("noise_config", "recorded", "shown"), [
    ({"sigma_min": 0.1, "sigma_max": 0.1}, 0.1, "sigma_y 0.1 "),
    ({"sigma_min": 0.01, "sigma_max": 0.1}, [0.01, 0.1], "sigma_y from 0.01 to 0.1 "),
    (None, 0.0, "sigma_y 0 "),  # noise_config None: the official module adds no noise
])
def test_another_training_noise_level_is_a_warning_and_recorded(official, bundle, tmp_path, capsys, caplog,
                                                                 noise_config, recorded, shown):
    file = _official_ckpt(official, tmp_path, GAUSSIAN_BLUR, noise_config)
    with caplog.at_level(logging.WARNING, logger=OFFICIAL_LOG):
        assert _import(file, bundle, TASK) == 0, capsys.readouterr().err
    warned = [r.getMessage() for r in caplog.records if r.name == OFFICIAL_LOG]
    assert len(warned) == 1 and shown in warned[0] and "flash-wrap's tasks use 0.05" in warned[0]
    training = _training(bundle, TASK)
    assert training["noise_std"] == recorded and training["noise_std_matches"] is False
    assert training["flash_wrap_noise_std"] == 0.05 and training["task_checked"] is True


def test_the_official_noise_level_gives_no_warning(official, bundle, ckpt, capsys, caplog):
    with caplog.at_level(logging.WARNING, logger=OFFICIAL_LOG):
        assert _import(ckpt, bundle, TASK) == 0
    assert not [r for r in caplog.records if r.name == OFFICIAL_LOG]


def test_only_plain_hyper_parameters_are_recorded(official, bundle, tmp_path, capsys):
    extra = {**GAUSSIAN_BLUR, "kernel": torch.ones(2), "max_std": float("nan"), "nested": {"a": [1, 2.5, None]}}
    file = _official_ckpt(official, tmp_path, extra, {"sigma_min": torch.tensor(0.05), "sigma_max": 0.05})
    training = read_official(file).training
    # the tensor and the NaN are left out, plain values kept as they are
    plain = {k: v for k, v in GAUSSIAN_BLUR.items() if k != "max_std"}
    assert training["operator_config"] == {**plain, "nested": {"a": [1, 2.5, None]}}
    assert training["noise_std"] is None and "sigma_min and sigma_max" in training["noise_std_unreadable"]
    assert _import(file, bundle, TASK) == 0
    stored = json.loads((bundle / "severity_encoders" / TASK / "config.json").read_text())["metadata"]
    assert stored["official_training"] == _training(bundle, TASK)
    assert stored["official_training"]["operator"] == "gaussian_blur"
