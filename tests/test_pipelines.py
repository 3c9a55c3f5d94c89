"""Diffusers pipeline folders load as bundles, checked against the pipelines' own components."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from flash_wrap import LatentDiffusion
from flash_wrap.apps.cli import main
from flash_wrap.apps.runs import fingerprint_folder
from flash_wrap.testing import write_images
from flash_wrap.testing.pipelines import tiny_ldm_pipeline, tiny_sd_pipeline, write_sd3_like_folder

T = torch.tensor([0, 10, 500, 999])


@pytest.fixture(scope="module")
def ldm(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ldm") / "ldm-celebahq"
    return folder, tiny_ldm_pipeline(folder)


@pytest.fixture(scope="module")
def sd15(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sd") / "sd15"
    return folder, tiny_sd_pipeline(folder)


@pytest.fixture(scope="module")
def sd21v(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sd2") / "sd21"
    return folder, tiny_sd_pipeline(folder, prediction_type="v_prediction", cross_attention_dim=24, seed=1)


def _noisy(model: LatentDiffusion, seed: int = 0) -> torch.Tensor:
    return torch.randn(len(T), *model.latent_shape, generator=torch.Generator().manual_seed(seed))


def _empty_prompt(pipe) -> torch.Tensor:
    with torch.no_grad():
        return pipe.encode_prompt("", "cpu", 1, False)[0]


# -- each family in one call -------------------------------------------------------------------
def test_ldm_pipeline_loads_with_unscaled_latents_and_its_schedule(ldm):
    folder, pipe = ldm
    model = LatentDiffusion.from_pretrained(folder)
    assert model.latent_scale == 1.0 and model.latent_shift == 0.0  # LDMPipeline decodes vqvae.decode(latents)
    assert pipe.vqvae.config.scaling_factor != 1.0  # ... although the VQ config carries a scaling factor
    assert model.image_size == pipe.unet.config.sample_size * 4 and model.autoencoder.kind == "vq"
    torch.testing.assert_close(model.alphas_cumprod, pipe.scheduler.alphas_cumprod, atol=1e-6, rtol=0)
    z = _noisy(model)
    with torch.no_grad():
        torch.testing.assert_close(model.predict_noise(z, T), pipe.unet(z, T).sample)
        torch.testing.assert_close(model.decode(z[:1]), (pipe.vqvae.decode(z[:1]).sample + 1) / 2)


def test_sd_pipeline_uses_the_empty_prompt_embedding_scale_and_schedule(sd15):
    folder, pipe = sd15
    model = LatentDiffusion.from_pretrained(folder)
    assert model.latent_scale == pytest.approx(0.18215) and model.latent_shift == 0.0
    assert model.image_size == pipe.unet.config.sample_size * 2 and model.prediction_type == "epsilon"
    torch.testing.assert_close(model.alphas_cumprod, pipe.scheduler.alphas_cumprod, atol=1e-6, rtol=0)
    cond = _empty_prompt(pipe)
    assert cond.shape == (1, 77, 32) and cond.abs().max() > 0  # not zeros
    torch.testing.assert_close(model.denoiser.empty_conditioning, cond)
    z = _noisy(model)
    with torch.no_grad():
        reference = pipe.unet(z, T, encoder_hidden_states=cond.expand(len(T), -1, -1)).sample
        torch.testing.assert_close(model.predict_noise(z, T), reference)
        x = torch.rand(1, 3, 32, 32)
        torch.testing.assert_close(model.encode(x), pipe.vae.encode(x * 2 - 1).latent_dist.mean * 0.18215)


def test_v_prediction_is_converted_to_epsilon(sd21v):
    folder, pipe = sd21v
    model = LatentDiffusion.from_pretrained(folder)
    assert model.prediction_type == "v_prediction"
    z = _noisy(model, 1)
    a = pipe.scheduler.alphas_cumprod[T].view(-1, 1, 1, 1)
    with torch.no_grad():
        v = pipe.unet(z, T, encoder_hidden_states=_empty_prompt(pipe).expand(len(T), -1, -1)).sample
    torch.testing.assert_close(model.predict_noise(z, T), a.sqrt() * v + (1 - a).sqrt() * z, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family", ["ldm", "sd15", "sd21v"])
def test_a_saved_bundle_reproduces_the_pipeline(family, request, tmp_path):
    folder, _ = request.getfixturevalue(family)
    model = LatentDiffusion.from_pretrained(folder)
    model.save_pretrained(tmp_path / "bundle")
    index = json.loads((tmp_path / "bundle" / "model_index.json").read_text())
    assert index["prediction_type"] == model.prediction_type and index["_class_name"] == "LatentDiffusion"
    again = LatentDiffusion.from_pretrained(tmp_path / "bundle")
    assert (again.latent_scale, again.latent_shift, again.image_size, again.prediction_type) == (
        model.latent_scale, model.latent_shift, model.image_size, model.prediction_type)
    assert again.denoiser.conditioning_source == model.denoiser.conditioning_source
    torch.testing.assert_close(again.alphas_cumprod, model.alphas_cumprod, atol=0, rtol=0)
    z = _noisy(model, 2)
    torch.testing.assert_close(again.predict_noise(z, T), model.predict_noise(z, T), atol=0, rtol=0)


def test_a_fixed_prompt_conditions_the_unet(sd15):
    folder, pipe = sd15
    model = LatentDiffusion.from_pretrained(folder, prompt="a photo of a face")
    with torch.no_grad():
        expected = pipe.encode_prompt("a photo of a face", "cpu", 1, False)[0]
    torch.testing.assert_close(model.denoiser.empty_conditioning, expected)
    assert not torch.allclose(expected, _empty_prompt(pipe))
    assert model.denoiser.conditioning_source == "text encoder, prompt 'a photo of a face'"


def test_fp16_variant_weights_load_and_other_sizes_warn(tmp_path):
    pipe = tiny_sd_pipeline(tmp_path / "fp16", variant="fp16")
    assert (tmp_path / "fp16" / "unet" / "diffusion_pytorch_model.fp16.safetensors").is_file()
    model = LatentDiffusion.from_pretrained(tmp_path / "fp16")  # the only variant there is used
    half = pipe.unet.to(torch.float16).float()
    torch.testing.assert_close(model.denoiser.unet.state_dict()["conv_in.weight"], half.state_dict()["conv_in.weight"])
    assert LatentDiffusion.from_pretrained(tmp_path / "fp16", variant="fp16", dtype=torch.float16).dtype == torch.float16
    with pytest.raises(FileNotFoundError, match="no 'bf16' variant"):
        LatentDiffusion.from_pretrained(tmp_path / "fp16", variant="bf16")
    with pytest.warns(UserWarning, match="image_size 64 differs from the size the model was trained at"):
        assert LatentDiffusion.from_pretrained(tmp_path / "fp16", image_size=64).image_size == 64


# -- refused before any weights are read --------------------------------------------------------
def _without_weights(src, dst):
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.safetensors"))
    return dst


def test_sd3_folders_go_to_the_flow_loader_and_a_unet_folder_with_a_flow_scheduler_is_refused(tmp_path, ldm):
    # an SD3 folder is read by the flow loader (tests/test_flow_pipelines.py), whose checks run before any weights
    with pytest.raises(ValueError, match="the transformer takes None channels.*do not belong together"):
        LatentDiffusion.from_pretrained(write_sd3_like_folder(tmp_path / "sd3"))
    flow = _without_weights(ldm[0], tmp_path / "flow")
    (flow / "scheduler" / "scheduler_config.json").write_text(json.dumps(
        {"_class_name": "FlowMatchEulerDiscreteScheduler", "num_train_timesteps": 1000, "shift": 3.0}))
    with pytest.raises(ValueError, match="'FlowMatchEulerDiscreteScheduler' is not a DDPM-family scheduler"):
        LatentDiffusion.from_pretrained(flow)


@pytest.mark.parametrize("edit, message", [
    (lambda f: _drop(f, "text_encoder", "tokenizer"), "no text_encoder and tokenizer.*zeros are not the empty prompt"),
    (lambda f: _add(f, text_encoder_2=["transformers", "CLIPTextModelWithProjection"]), "two text encoders"),
    (lambda f: _unet(f, addition_embed_type="text_time"), "inputs besides the text conditioning"),
    (lambda f: _unet(f, in_channels=9), "takes 9 channels and predicts 4"),
    (lambda f: _scheduler(f, rescale_betas_zero_snr=True), "zero terminal SNR"),
    (lambda f: _scheduler(f, beta_schedule=None), "neither beta_schedule nor trained_betas"),
    (lambda f: _scheduler(f, _class_name="DDIMScheduler", beta_schedule="sigmoid"),
     "diffusers' own DDIMScheduler cannot build this config"),
    (lambda f: _scheduler(f, prediction_type="flow"), "epsilon, v_prediction, sample, got 'flow'"),
    (lambda f: _drop(f, "vae"), "no autoencoder"),
    (lambda f: _unet(f, cross_attention_dim=48), "hidden_size 32 differs from the UNet's cross_attention_dim 48"),
])
def test_unsupported_folders_are_refused_from_their_configs(tmp_path, sd15, edit, message):
    folder = _without_weights(sd15[0], tmp_path / "sd")
    edit(folder)
    with pytest.raises(ValueError, match=message):
        LatentDiffusion.from_pretrained(folder)


def _edit_json(file, **changes):
    data = json.loads(file.read_text())
    data.update(changes)
    file.write_text(json.dumps({k: v for k, v in data.items() if v is not None}))


def _drop(folder, *names):
    _edit_json(folder / "model_index.json", **{n: [None, None] for n in names})


def _add(folder, **entries):
    _edit_json(folder / "model_index.json", **entries)


def _unet(folder, **changes):
    _edit_json(folder / "unet" / "config.json", **changes)


def _scheduler(folder, **changes):
    _edit_json(folder / "scheduler" / "scheduler_config.json", **changes)


@pytest.mark.parametrize("edit, message", [
    (lambda f: (f / "tokenizer" / "tokenizer.json").unlink(), "has no vocabulary"),
    (lambda f: _edit_json(f / "tokenizer" / "tokenizer_config.json", model_max_length=int(1e30)),
     "model_max_length=1000000000000000019884624838656 tokens but the text encoder has max_position_embeddings=77"),
    (lambda f: _scheduler(f, trained_betas=[0.001] * 500), "trained_betas has 500 entries but num_train_timesteps"),
    (lambda f: _scheduler(f, timestep_type="continuous", _class_name="EulerDiscreteScheduler"), "continuous"),
    (lambda f: _scheduler(f, use_flow_sigmas=True, _class_name="DPMSolverMultistepScheduler"), "flow-matching noise"),
    (lambda f: _edit_json(f / "model_index.json", _class_name=None), "has no _class_name"),
    (lambda f: _unet(f, sample_size=None), "has no sample_size.*pass image_size="),
    (lambda f: _edit_json(f / "vae" / "config.json", scaling_factor="x"), "scaling_factor must be a number"),
    (lambda f: (f / "text_encoder" / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{"),
     "corrupt safetensors file .*text_encoder"),
])
def test_broken_text_parts_and_schedules_are_refused_with_the_file(tmp_path, sd15, edit, message):
    folder = shutil.copytree(sd15[0], tmp_path / "sd")
    edit(folder)
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        LatentDiffusion.from_pretrained(folder)


def test_an_unknown_pipeline_class_warns_how_its_latents_were_scaled(tmp_path, ldm):
    folder = shutil.copytree(ldm[0], tmp_path / "custom")
    _edit_json(folder / "model_index.json", _class_name="MyLDMPipeline")
    with pytest.warns(UserWarning, match="MyLDMPipeline is not a pipeline whose latent convention flash-wrap knows"):
        assert LatentDiffusion.from_pretrained(folder).latent_scale == pytest.approx(0.18215)
    assert LatentDiffusion.from_pretrained(folder, latent_scale=1.0).latent_scale == 1.0


def test_sharded_variant_weights_are_found(tmp_path, ldm):
    folder = shutil.copytree(ldm[0], tmp_path / "sharded")
    plain = folder / "unet" / "diffusion_pytorch_model.safetensors"
    plain.rename(folder / "unet" / "diffusion_pytorch_model.fp16-00001-of-00001.safetensors")
    from flash_wrap.models._io import weights_files

    files, variant = weights_files(folder / "unet")
    assert variant == "fp16" and [f.name for f in files] == ["diffusion_pytorch_model.fp16-00001-of-00001.safetensors"]


def test_pickled_weights_are_refused_with_how_to_convert(tmp_path, ldm):
    folder = shutil.copytree(ldm[0], tmp_path / "bin")
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    weights.unlink()
    (folder / "unet" / "diffusion_pytorch_model.bin").write_bytes(b"a pickle that is never opened")
    with pytest.raises(ValueError, match="pickled weights.*never unpickles.*safe_serialization=True"):
        LatentDiffusion.from_pretrained(folder)


def test_zeros_are_never_the_conditioning_silently():
    from diffusers import UNet2DConditionModel

    from flash_wrap.models import Denoiser
    from flash_wrap.testing import tiny_autoencoder

    unet = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, block_out_channels=(8, 16),
                                layers_per_block=1, norm_num_groups=4, cross_attention_dim=8, attention_head_dim=4,
                                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"))
    with pytest.raises(ValueError, match="needs its conditioning, and zeros are not the empty prompt"):
        Denoiser(unet)
    with pytest.raises(ValueError, match="not trained with the LDM schedule"):
        LatentDiffusion.from_diffusers(tiny_autoencoder("kl", 4), unet, image_size=32,
                                       empty_conditioning=torch.randn(1, 3, 8))


def test_a_bundle_written_from_a_pipeline_is_not_continued_after_the_pipeline_changed(tmp_path, ldm):
    from flash_wrap.apps.bundles import bundle_target, write_bundle

    folder = shutil.copytree(ldm[0], tmp_path / "ldm")
    target, copy = bundle_target(folder, tmp_path / "out", command="test")
    assert copy
    write_bundle(LatentDiffusion.from_pretrained(folder), target, source=folder)
    assert bundle_target(folder, tmp_path / "out", command="test") == (target, False)  # continues
    tiny_ldm_pipeline(folder, seed=5)  # other weights in the same place
    from flash_wrap.apps import bundles

    bundles._FINGERPRINTS.clear()  # a new process
    with pytest.raises(ValueError, match="has changed since"):
        bundle_target(folder, tmp_path / "out", command="test")


def test_pipeline_only_options_are_refused_for_bundles(tmp_path, ldm):
    LatentDiffusion.from_pretrained(ldm[0]).save_pretrained(tmp_path / "bundle")
    with pytest.raises(ValueError, match="prompt: only for diffusers pipeline folders"):
        LatentDiffusion.from_pretrained(tmp_path / "bundle", prompt="a face")
    with pytest.raises(ValueError, match="takes no text conditioning"):
        LatentDiffusion.from_pretrained(ldm[0], prompt="a face")


# -- the command line on pipeline folders ---------------------------------------------------------
def test_cli_trains_into_a_new_bundle_and_never_touches_the_pipeline(tmp_path, sd15, capsys):
    folder = shutil.copytree(sd15[0], tmp_path / "sd15")
    before = fingerprint_folder(folder, documents=True)
    write_images(tmp_path / "data", 10, 40, 36, seed=3)
    train = ["train-severity", "--model", str(folder), "--task", "gaussian-blur", "--data", str(tmp_path / "data"),
             "--steps", "2", "--batch-size", "2", "--val-images", "2", "--checkpoint-every", "1", "--device", "cpu"]
    assert main(train) == 2
    assert "diffusers pipeline folder, which is never modified; pass --save-to" in capsys.readouterr().err
    assert main([*train, "--save-to", str(tmp_path / "bundle")]) == 0
    bundle = LatentDiffusion.from_pretrained(tmp_path / "bundle")
    assert "gaussian-blur" in bundle.severity_encoders and bundle.latent_scale == pytest.approx(0.18215)
    torch.testing.assert_close(bundle.denoiser.empty_conditioning, _empty_prompt(sd15[1]))
    # the same command again continues into the bundle it wrote; another task adds to it
    assert main([*train, "--save-to", str(tmp_path / "bundle"), "--steps", "3"]) == 2
    assert "already has a trained gaussian-blur encoder" in capsys.readouterr().err
    assert main([*train[:4], "random-inpainting", *train[5:], "--save-to", str(tmp_path / "bundle")]) == 0
    assert set(LatentDiffusion.from_pretrained(tmp_path / "bundle").severity_encoders) == {
        "gaussian-blur", "random-inpainting"}
    assert fingerprint_folder(folder, documents=True) == before
    # the bundle keeps its conditioning: another prompt into it is refused, and so is a prompt for a bundle
    assert main([*train[:4], "motion-blur", *train[5:], "--save-to", str(tmp_path / "bundle"), "--prompt", "a face"]) == 2
    assert "was written with the conditioning text encoder, prompt ''" in capsys.readouterr().err
    assert main([*train[:2], str(tmp_path / "bundle"), *train[3:4], "motion-blur", *train[5:], "--prompt", "x"]) == 2
    assert "--prompt applies to diffusers pipeline folders" in capsys.readouterr().err

    evaluate = ["eval", "--data", str(tmp_path / "data"), "--task", "gaussian-blur", "--steps", "3", "--limit", "2",
                "--batch-size", "2", "--device", "cpu"]
    assert main([*evaluate, "--model", str(folder), "--out", str(tmp_path / "e1")]) == 2
    err = capsys.readouterr().err
    assert "no severity encoder for task 'gaussian-blur'" in err and "flash-wrap train-severity" in err
    assert "--severity-from" in err
    assert main([*evaluate, "--model", str(tmp_path / "bundle"), "--out", str(tmp_path / "e2")]) == 0
    # the pipeline folder itself, with the encoder of the bundle written from it: the same results
    assert main([*evaluate, "--model", str(folder), "--severity-from", str(tmp_path / "bundle"),
                 "--out", str(tmp_path / "e3")]) == 0
    e2, e3 = (json.loads((tmp_path / e / "results.json").read_text()) for e in ("e2", "e3"))
    assert e3["severity_from"] == str(tmp_path / "bundle")
    runs = [json.loads((tmp_path / e / "run.json").read_text()) for e in ("e2", "e3")]
    assert "severity_fingerprint" not in runs[0] and runs[1]["severity_fingerprint"] == runs[0]["model_fingerprint"]
    # a resume checks the encoders' bundle too: another one, or none, is refused
    resume = [*evaluate, "--model", str(folder), "--out", str(tmp_path / "e3"), "--resume"]
    assert main(resume) == 2 and "no severity encoder" in capsys.readouterr().err
    other = shutil.copytree(tmp_path / "bundle", tmp_path / "bundle-copy")
    (other / "severity_encoders" / "gaussian-blur" / "config.json").write_text(
        (other / "severity_encoders" / "gaussian-blur" / "config.json").read_text() + " ")
    assert main([*resume, "--severity-from", str(other)]) == 2
    assert "different --severity-from bundle" in capsys.readouterr().err
    assert main([*resume, "--severity-from", str(tmp_path / "bundle")]) == 0
    for key in ("sigma_hat", "start_step", "psnr", "ssim", "nfe"):
        assert [r[key] for r in e3["images"]] == [r[key] for r in e2["images"]], key
    assert main([*evaluate, "--model", str(folder), "--severity-from", str(tmp_path / "bundle"), "--task",
                 "motion-blur", "--out", str(tmp_path / "e4")]) == 2
    assert "has no severity encoder for 'motion-blur'" in capsys.readouterr().err
    assert main([*evaluate, "--model", str(folder), "--severity-from", str(tmp_path / "nope"), "--out",
                 str(tmp_path / "e5")]) == 2
    assert "--severity-from: model folder" in capsys.readouterr().err
    tune = ["tune", "--model", str(folder), "--task", "gaussian-blur", "--solver", "latent-dps", "--data",
            str(tmp_path / "data"), "--out", str(tmp_path / "t"), "--steps", "3", "--batch-size", "2", "--limit", "2",
            "--eta", "0.1", "0.5"]
    assert main(tune) == 2 and "pass --save-to" in capsys.readouterr().err  # never written into the pipeline
    assert main([*tune, "--save-to", str(tmp_path / "bundle")]) == 0  # tunes the bundle written from it
    tuned = LatentDiffusion.from_pretrained(tmp_path / "bundle").tuned_values["flash_defaults"]["latent-dps"]  # DDIM-3
    assert "ddim-3 (η=0)" in tuned["gaussian-blur"]
    assert main(["sample", "--model", str(folder), "--out", str(tmp_path / "s.png"), "-n", "2", "--steps", "2"]) == 0
    assert main(["benchmark", "--model", str(folder), "--batch-size", "1", "--steps", "2", "--device", "cpu"]) == 0
    assert fingerprint_folder(folder, documents=True) == before


def test_adopted_severity_encoders_must_share_the_latent_space(tmp_path, sd15, ldm):
    """``adopt_severity_encoders`` (``eval --severity-from``): the same autoencoder weights up to an
    export's rounding, refused for another kind of autoencoder or other weights of the same kind."""
    source = LatentDiffusion.from_pretrained(sd15[0])
    source.add_severity_encoder("gaussian-blur", source.make_severity_encoder())
    model = LatentDiffusion.from_pretrained(sd15[0])
    model.adopt_severity_encoders(source, ["gaussian-blur"])
    torch.testing.assert_close(model.severity_encoder("gaussian-blur").state_dict(),
                               source.severity_encoder("gaussian-blur").state_dict())
    rounded = LatentDiffusion.from_pretrained(sd15[0], dtype=torch.bfloat16)
    rounded.add_severity_encoder("gaussian-blur", rounded.make_severity_encoder())
    fresh = LatentDiffusion.from_pretrained(sd15[0])
    fresh.adopt_severity_encoders(rounded, ["gaussian-blur"])  # an export's rounding is the same space
    assert next(fresh.severity_encoder("gaussian-blur").parameters()).dtype == torch.float32
    with torch.no_grad():
        next(source.autoencoder.parameters()).add_(0.1)
    with pytest.raises(ValueError, match="its autoencoder's weights differ from the model's"):
        LatentDiffusion.from_pretrained(sd15[0]).adopt_severity_encoders(source, ["gaussian-blur"], origin="x")
    other = LatentDiffusion.from_pretrained(ldm[0])
    other.add_severity_encoder("gaussian-blur", other.make_severity_encoder())
    with pytest.raises(ValueError, match="its autoencoder is vq, the model's is kl"):
        LatentDiffusion.from_pretrained(sd15[0]).adopt_severity_encoders(other, ["gaussian-blur"])
    with pytest.raises(ValueError, match="has no severity encoder for 'motion-blur'"):
        LatentDiffusion.from_pretrained(sd15[0]).adopt_severity_encoders(other, ["motion-blur"])


def test_a_scheduler_config_takes_its_own_class_defaults(tmp_path):
    """Entries a scheduler config leaves out are that class's defaults, as diffusers fills them in:
    LCMScheduler's betas run 0.00085..0.012, where DDPMScheduler's defaults are 0.0001..0.02."""
    import diffusers

    from flash_wrap.models.schedule_config import ddpm_schedule_from_config

    config = {"_class_name": "LCMScheduler", "beta_schedule": "scaled_linear"}
    built = ddpm_schedule_from_config(config, "scheduler")
    torch.testing.assert_close(built.betas, diffusers.LCMScheduler.from_config(config).betas)
    assert float(built.betas[-1]) == pytest.approx(0.012)
