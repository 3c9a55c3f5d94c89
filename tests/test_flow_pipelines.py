"""SD3 and FLUX pipeline folders load as flow denoisers that reproduce the diffusers pipelines (ALGORITHMS.md §12)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from diffusers import DDPMScheduler, FluxPipeline, StableDiffusion3Pipeline

from flash_wrap.apps.sample import sample_latents
from flash_wrap.models import LatentDiffusion
from flash_wrap.models.flow_denoisers import FlowTransformerDenoiser, FluxDenoiser, SD3Denoiser
from flash_wrap.models.pipeline import FlowPipelineParts, is_flow_pipeline, load_flow_pipeline, plan_flow_pipeline
from flash_wrap.testing.flow_pipelines import tiny_flux_pipeline, tiny_sd3_pipeline

SIZE = 16  # images 16² → latents 16 × 8 × 8 (VAE factor 2), 16 tokens of 2 × 2
STEPS = 4


@pytest.fixture(scope="session")
def sd3(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sd3") / "sd3"
    pipe = tiny_sd3_pipeline(folder)
    return folder, pipe, load_flow_pipeline(folder)


@pytest.fixture(scope="session")
def sd3_no_t5(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sd3") / "sd3-no-t5"
    pipe = tiny_sd3_pipeline(folder, with_t5=False, seed=1)
    return folder, pipe, load_flow_pipeline(folder)


@pytest.fixture(scope="session")
def flux(tmp_path_factory):
    folder = tmp_path_factory.mktemp("flux") / "flux"
    pipe = tiny_flux_pipeline(folder)
    return folder, pipe, load_flow_pipeline(folder, image_size=SIZE)


def _noise(shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# -- loading and conditioning ------------------------------------------------------------------
def test_sd3_folder_loads_with_its_conventions(sd3):
    folder, pipe, parts = sd3
    assert is_flow_pipeline(folder) and isinstance(parts, FlowPipelineParts)
    assert isinstance(parts.denoiser, SD3Denoiser) and parts.denoiser.kind == "sd3-transformer"
    assert (parts.denoiser.in_channels, parts.denoiser.out_channels) == (16, 16)
    assert parts.image_size == pipe.default_sample_size * pipe.vae_scale_factor == SIZE
    assert (parts.latent_scale, parts.latent_shift) == (1.5305, 0.0609)
    assert parts.flow_grid == "sd3" and parts.denoiser.patch == 2
    assert parts.scheduler.config.shift == 3.0 and not parts.scheduler.config.use_dynamic_shifting
    assert parts.autoencoder.kind == "kl"


@pytest.mark.parametrize("family", ["sd3", "sd3_no_t5"])
def test_sd3_empty_prompt_equals_encode_prompt(family, request):
    _, pipe, parts = request.getfixturevalue(family)
    with torch.no_grad():
        hidden, _, pooled, _ = pipe.encode_prompt("", "", "", device="cpu", do_classifier_free_guidance=False)
    assert hidden.shape == (1, 77 + 256, 32) and pooled.shape == (1, 32)
    assert hidden[:, :77].abs().max() > 0  # the CLIP part is not zeros
    if family == "sd3_no_t5":
        assert hidden[:, 77:].abs().max() == 0  # absent T5: zeros, as the pipeline does
    else:
        assert hidden[:, 77:].abs().max() > 0
    torch.testing.assert_close(parts.denoiser.encoder_hidden_states, hidden, atol=0, rtol=0)
    torch.testing.assert_close(parts.denoiser.pooled_projections, pooled, atol=0, rtol=0)


def test_flux_empty_prompt_equals_encode_prompt(flux):
    _, pipe, parts = flux
    with torch.no_grad():
        hidden, pooled, text_ids = pipe.encode_prompt("", device="cpu")
    assert hidden.shape == (1, 512, 32) and pooled.shape == (1, 16) and hidden.abs().max() > 0
    torch.testing.assert_close(parts.denoiser.encoder_hidden_states, hidden, atol=0, rtol=0)
    torch.testing.assert_close(parts.denoiser.pooled_projections, pooled, atol=0, rtol=0)
    torch.testing.assert_close(parts.denoiser.text_ids, text_ids, atol=0, rtol=0)
    assert parts.denoiser.guidance == 3.5 and parts.denoiser.kind == "flux-transformer"
    assert (parts.denoiser.in_channels, parts.denoiser.out_channels) == (16, 16)  # the transformer takes 64
    assert parts.flow_grid == "flux" and parts.scheduler.config.use_dynamic_shifting
    assert parts.scheduler.config.max_shift == 1.15
    assert parts.denoiser.image_seq_len(8, 8) == 16


def test_flux_default_image_size_is_the_pipelines(flux):
    folder, pipe, _ = flux
    plan = plan_flow_pipeline(folder)
    assert plan.sample_size * pipe.vae_scale_factor == pipe.default_sample_size * pipe.vae_scale_factor == 256


@pytest.mark.parametrize("family", ["sd3", "flux"])
def test_latents_round_trip_through_the_vae_with_shift_and_scale(family, request):
    _, pipe, parts = request.getfixturevalue(family)
    scale, shift = pipe.vae.config.scaling_factor, pipe.vae.config.shift_factor
    x = torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        z = (parts.autoencoder.encode(x) - parts.latent_shift) * parts.latent_scale
        expected = (pipe.vae.encode(x * 2 - 1).latent_dist.mean - shift) * scale
        torch.testing.assert_close(z, expected, atol=0, rtol=0)
        decoded = parts.autoencoder.decode(z / parts.latent_scale + parts.latent_shift)
        reference = pipe.vae.decode(z / scale + shift).sample  # the pipelines' decode path
        torch.testing.assert_close(decoded, (reference + 1) / 2, atol=1e-6, rtol=0)


# -- the velocity, called the pipeline's way ------------------------------------------------------
def test_sd3_velocity_is_the_transformer_called_as_the_pipeline_does(sd3):
    _, pipe, parts = sd3
    z, t = _noise((3, 16, 8, 8)), torch.tensor([1000.0, 623.5, 3.0])
    with torch.no_grad():
        hidden, _, pooled, _ = pipe.encode_prompt("", "", "", device="cpu", do_classifier_free_guidance=False)
        expected = pipe.transformer(hidden_states=z, timestep=t, encoder_hidden_states=hidden.expand(3, -1, -1),
                                    pooled_projections=pooled.expand(3, -1), return_dict=False)[0]
        torch.testing.assert_close(parts.denoiser(z, t), expected, atol=0, rtol=0)


def test_flux_velocity_packs_ids_and_guidance_as_the_pipeline_does(flux):
    _, pipe, parts = flux
    z, t = _noise((3, 16, 8, 8), 1), torch.tensor([1000.0, 623.5, 3.0])
    with torch.no_grad():
        hidden, pooled, text_ids = pipe.encode_prompt("", device="cpu")
        packed = pipe._pack_latents(z, 3, 16, 8, 8)
        ids = pipe._prepare_latent_image_ids(3, 4, 4, "cpu", torch.float32)
        tokens = pipe.transformer(hidden_states=packed, timestep=t / 1000, guidance=torch.full([1], 3.5).expand(3),
                                  pooled_projections=pooled.expand(3, -1), encoder_hidden_states=hidden.expand(3, -1, -1),
                                  txt_ids=text_ids, img_ids=ids, return_dict=False)[0]
        expected = pipe._unpack_latents(tokens, SIZE, SIZE, pipe.vae_scale_factor)
        torch.testing.assert_close(parts.denoiser(z, t), expected, atol=0, rtol=0)
        # the guidance value reaches the model, and is settable
        parts.denoiser.guidance = 1.0
        try:
            assert (parts.denoiser(z, t) - expected).abs().max() > 1e-4
        finally:
            parts.denoiser.guidance = 3.5
    assert torch.equal(parts.denoiser.unpack(parts.denoiser.pack(z), 8, 8), z)


@pytest.mark.parametrize("family, latents, timesteps, message", [
    ("sd3", (2, 4, 8, 8), (2,), r"latents must be \(B, 16, h, w\), got \(2, 4, 8, 8\)"),
    ("sd3", (2, 16, 7, 8), (2,), "latent side 7×8 is not a multiple of 2"),
    ("sd3", (2, 16, 64, 64), (2,), "exceeds the transformer's positional table"),
    ("flux", (2, 16, 8, 8), (3,), r"timesteps must be \(2,\) = σ·1000 per latent, got \(3,\)"),
    ("flux", (2, 16, 8, 8), None, "timesteps must be float"),
])
def test_wrong_inputs_are_refused_in_one_line(family, latents, timesteps, message, request):
    denoiser = request.getfixturevalue(family)[2].denoiser
    t = torch.tensor([500, 400]) if timesteps is None else torch.full(timesteps, 500.0)
    with pytest.raises(ValueError, match=message) as err:
        denoiser(torch.zeros(latents), t)
    assert "\n" not in str(err.value)


# -- reproduction of the pipeline by flash-wrap's own η = 0 run (ALGORITHMS.md §12) -------------------
def _pipeline_latents(pipe, z: torch.Tensor, family: str, guidance: float | None) -> torch.Tensor:
    """The diffusers pipeline's final latents from the initial noise ``z (B, 16, 8, 8)``: empty prompt,
    no classifier-free guidance (SD3 guidance scale 1; FLUX its distilled guidance value)."""
    with torch.no_grad():
        if family == "sd3":
            return pipe(prompt="", guidance_scale=1.0, num_inference_steps=STEPS, latents=z.clone(), height=SIZE,
                        width=SIZE, output_type="latent").images
        packed = pipe(prompt="", guidance_scale=guidance, num_inference_steps=STEPS, height=SIZE, width=SIZE,
                      latents=pipe._pack_latents(z, z.shape[0], 16, 8, 8), output_type="latent").images
    return pipe._unpack_latents(packed, SIZE, SIZE, pipe.vae_scale_factor)


def _reproduces(model: LatentDiffusion, pipe, family: str, seed: int) -> float:
    """flash-wrap's η = 0 run (``sample_latents``: DDIM on the flow grid through ``LatentDiffusion.predict``)
    against the pipeline from the same noise; returns the largest absolute difference of the final latents."""
    z = _noise((2, 16, 8, 8), seed)
    final = _pipeline_latents(pipe, z, family, getattr(model.denoiser, "guidance", None))
    # the same σ grid: diffusers' set_timesteps as the pipeline called it (its final 0 dropped)
    torch.testing.assert_close(model.flow_sigmas(STEPS), pipe.scheduler.sigmas[:-1].double(), atol=0, rtol=0)
    with torch.no_grad():
        ours = sample_latents(model, z, steps=STEPS, ddim_eta=0.0, progress=False)
    assert (ours - z).abs().max() > 0.1  # the run moved
    torch.testing.assert_close(ours, final, atol=2e-5, rtol=1e-5)
    return float((ours - final).abs().max())


@pytest.mark.parametrize("family", ["sd3", "flux"])
def test_eta0_run_from_the_pipeline_folder_reproduces_the_pipeline(family, request):
    folder, pipe, _ = request.getfixturevalue(family)
    model = LatentDiffusion.from_pretrained(folder, image_size=SIZE if family == "flux" else None)
    assert model.path == "flow" and model.flow_grid == family and model.image_seq_len() == 16
    print(family, "max |ours - pipeline| =", _reproduces(model, pipe, family, 5))


def test_the_run_would_catch_a_wrong_grid(flux):
    folder, pipe, _ = flux
    model = LatentDiffusion.from_pretrained(folder, image_size=SIZE)
    model._flow_grid = "sd3"  # the other pipeline's σ spacing
    with pytest.raises(AssertionError):
        _reproduces(model, pipe, "flux", 5)


@pytest.mark.parametrize("family, edit", [
    # SD3 with dynamic shifting: mu from (h/patch)·(w/patch) = 16 tokens, as StableDiffusion3Pipeline computes it
    ("sd3", {"use_dynamic_shifting": True, "base_image_seq_len": 4, "max_image_seq_len": 64, "base_shift": 0.5,
             "max_shift": 1.15}),
    # FLUX with use_flow_sigmas: FluxPipeline then calls set_timesteps(N, mu=mu) (the "sd3" spacing)
    ("flux", {"use_flow_sigmas": True}),
])
def test_scheduler_variants_reproduce_the_pipeline(family, edit, request, tmp_path):
    folder = _copy(request.getfixturevalue(family)[0], tmp_path / family)
    _edit(folder / "scheduler" / "scheduler_config.json", **edit)
    pipe = (StableDiffusion3Pipeline if family == "sd3" else FluxPipeline).from_pretrained(str(folder))
    model = LatentDiffusion.from_pretrained(folder, image_size=SIZE)
    assert model.image_seq_len() == 16 and model.flow_grid == "sd3"
    print(family, edit, "max |ours - pipeline| =", _reproduces(model, pipe, family, 8))


@pytest.mark.parametrize("family", ["sd3", "flux"])
def test_latent_diffusion_encodes_and_decodes_with_the_pipelines_shift_and_scale(family, request):
    folder, pipe, _ = request.getfixturevalue(family)
    model = LatentDiffusion.from_pretrained(folder, image_size=SIZE)
    scale, shift = pipe.vae.config.scaling_factor, pipe.vae.config.shift_factor
    assert (model.latent_scale, model.latent_shift) == (scale, shift) and shift != 0
    x = torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        z = model.encode(x)
        torch.testing.assert_close(z, (pipe.vae.encode(x * 2 - 1).latent_dist.mean - shift) * scale, atol=0, rtol=0)
        reference = (pipe.vae.decode(z / scale + shift).sample + 1) / 2  # the pipelines' decode path
        torch.testing.assert_close(model.decode(z), reference, atol=2e-6, rtol=0)


@pytest.mark.parametrize("family", ["sd3", "flux"])
def test_bundles_of_flow_pipelines_reload_identically(family, request, tmp_path):
    folder, pipe, _ = request.getfixturevalue(family)
    extra = {"guidance": 2.25} if family == "flux" else {}
    model = LatentDiffusion.from_pretrained(folder, image_size=SIZE, **extra)
    model.save_pretrained(tmp_path / "bundle")
    index = json.loads((tmp_path / "bundle" / "model_index.json").read_text())
    assert index["denoiser"] == model.denoiser.kind and index["format_version"] == 3
    assert index["flow_grid"] == {"style": family} and (tmp_path / "bundle" / "transformer").is_dir()
    assert not (tmp_path / "bundle" / "unet").exists()
    again = LatentDiffusion.from_pretrained(tmp_path / "bundle")
    assert type(again.denoiser) is type(model.denoiser) and again.flow_grid == family
    assert (again.image_size, again.latent_scale, again.latent_shift) == (SIZE, model.latent_scale, model.latent_shift)
    if family == "flux":
        assert again.denoiser.guidance == 2.25
    torch.testing.assert_close(again.flow_sigmas(STEPS), model.flow_sigmas(STEPS), atol=0, rtol=0)
    z = _noise((2, 16, 8, 8), 9)
    with torch.no_grad():
        first = model.decode(sample_latents(model, z, steps=STEPS, ddim_eta=0.0, progress=False))
        second = again.decode(sample_latents(again, z, steps=STEPS, ddim_eta=0.0, progress=False))
    assert torch.equal(first, second)


def test_options_that_do_not_apply_to_flow_folders_are_refused_in_one_line(sd3):
    folder = sd3[0]
    for kwargs, message in (({"conditioning": torch.zeros(1, 4, 32)}, "conditioning: not for the flow-matching"),
                            ({"latent_scale": 1.0}, "latent_scale: not for the flow-matching"),
                            ({"guidance": 2.0}, "guidance= is for guidance-distilled FLUX")):
        with pytest.raises(ValueError, match=message) as err:
            LatentDiffusion.from_pretrained(folder, **kwargs)
        assert "\n" not in str(err.value)
    prompted = LatentDiffusion.from_pretrained(folder, prompt="a face")
    assert not torch.equal(prompted.denoiser.encoder_hidden_states, sd3[2].denoiser.encoder_hidden_states)
    assert "prompt 'a face'" in prompted.denoiser.conditioning_source


def test_a_flow_transformer_needs_the_flow_scheduler(sd3):
    parts = sd3[2]
    with pytest.raises(ValueError, match="sd3-transformer denoiser predicts rectified-flow velocity"):
        LatentDiffusion(parts.autoencoder, parts.denoiser, DDPMScheduler(), image_size=SIZE)


# -- saved denoisers ------------------------------------------------------------------------------
@pytest.mark.parametrize("family", ["sd3", "flux"])
def test_save_and_reload_reproduce_the_denoiser_exactly(family, request, tmp_path):
    denoiser = request.getfixturevalue(family)[2].denoiser
    if family == "flux":
        denoiser.guidance = 2.25
    try:
        denoiser.save_pretrained(tmp_path / "transformer")
        again = FlowTransformerDenoiser.from_pretrained(tmp_path / "transformer")
    finally:
        if family == "flux":
            denoiser.guidance = 3.5
    assert type(again) is type(denoiser) and again.kind == denoiser.kind
    assert again.conditioning_source == denoiser.conditioning_source
    if family == "flux":
        assert again.guidance == 2.25
    for name in ("encoder_hidden_states", "pooled_projections"):
        assert torch.equal(getattr(again, name), getattr(denoiser, name))
    z, t = _noise((2, 16, 8, 8), 7), torch.tensor([900.0, 100.0])
    with torch.no_grad():
        if family == "flux":
            again.guidance = 3.5
        torch.testing.assert_close(again(z, t), denoiser(z, t), atol=0, rtol=0)


def test_a_reloaded_folder_without_conditioning_is_refused(sd3, tmp_path):
    sd3[2].denoiser.transformer.save_pretrained(tmp_path / "bare")
    with pytest.raises(FileNotFoundError, match="no flow_conditioning.safetensors"):
        SD3Denoiser.from_pretrained(tmp_path / "bare")
    with pytest.raises(ValueError, match="expected FluxTransformer2DModel"):
        FluxDenoiser.from_pretrained(tmp_path / "bare")


# -- refusals, from the configs ---------------------------------------------------------------------
def _copy(src, dst):
    return shutil.copytree(src, dst)


def _edit(file, **changes):
    data = json.loads(file.read_text())
    data.update(changes)
    file.write_text(json.dumps(data))


@pytest.mark.parametrize("family, edit, message", [
    ("flux", lambda f: (_edit(f / "transformer" / "config.json", guidance_embeds=False),
                        _edit(f / "scheduler" / "scheduler_config.json", use_dynamic_shifting=False)),
     "looks timestep-distilled .FLUX.1-schnell-like"),
    ("sd3", lambda f: _edit(f / "scheduler" / "scheduler_config.json", stochastic_sampling=True),
     "stochastic_sampling=True is not supported"),
    ("sd3", lambda f: _edit(f / "scheduler" / "scheduler_config.json", use_karras_sigmas=True), "use_karras_sigmas"),
    ("flux", lambda f: _edit(f / "scheduler" / "scheduler_config.json", use_beta_sigmas=True), "use_beta_sigmas"),
    ("sd3", lambda f: _edit(f / "scheduler" / "scheduler_config.json", use_exponential_sigmas=True),
     "use_exponential_sigmas"),
    ("sd3", lambda f: _edit(f / "scheduler" / "scheduler_config.json", _class_name="FlowMatchHeunDiscreteScheduler"),
     "'FlowMatchHeunDiscreteScheduler' is not FlowMatchEulerDiscreteScheduler"),
    ("flux", lambda f: _edit(f / "scheduler" / "scheduler_config.json", num_train_timesteps=500),
     "only T = 1000 reproduces it"),
    ("sd3", lambda f: shutil.rmtree(f / "tokenizer_2"), "tokenizer_2 has no vocabulary"),
    ("flux", lambda f: (f / "tokenizer_2" / "tokenizer.json").unlink(), "tokenizer_2 has no vocabulary"),
    ("flux", lambda f: _edit(f / "model_index.json", text_encoder_2=[None, None]), "cannot encode the empty prompt"),
    ("sd3", lambda f: _edit(f / "model_index.json", tokenizer_3=[None, None]), "or both null: zeros"),
    ("sd3", lambda f: _edit(f / "vae" / "config.json", shift_factor=None), "shift_factor must be a number"),
    ("flux", lambda f: _edit(f / "transformer" / "config.json", in_channels=16), "need 64 .2×2 packing"),
    ("sd3", lambda f: _edit(f / "model_index.json", transformer=["diffusers", "FluxTransformer2DModel"]),
     "needs a SD3Transformer2DModel"),
])
def test_unsupported_flow_folders_are_refused_in_one_line(family, edit, message, request, tmp_path):
    folder = _copy(request.getfixturevalue(family)[0], tmp_path / family)
    edit(folder)
    with pytest.raises((ValueError, FileNotFoundError), match=message) as err:
        plan_flow_pipeline(folder)
    assert "\n" not in str(err.value)
    print(err.value)  # one line each, as the brief asks; shown with -s


def test_sd3_without_t5_plans_with_zeros_and_flux_guidance_is_checked(sd3_no_t5, flux):
    plan = plan_flow_pipeline(sd3_no_t5[0])
    assert [p.encoder for p in plan.text_parts] == ["text_encoder", "text_encoder_2"]
    with pytest.raises(ValueError, match="guidance= is for guidance-distilled FLUX"):
        load_flow_pipeline(sd3_no_t5[0], guidance=2.0)
    with pytest.raises(ValueError, match="guidance must be a finite number"):
        flux[2].denoiser.guidance = float("nan")
    with pytest.raises(ValueError, match="image_size must be a positive multiple of 4"):
        load_flow_pipeline(flux[0], image_size=18)


# -- the command line on a flow pipeline folder -------------------------------------------------------
def test_cli_trains_evaluates_samples_and_benchmarks_an_sd3_folder(sd3, tmp_path, capsys):
    from flash_wrap.apps.cli import main
    from flash_wrap.apps.runs import fingerprint_folder
    from flash_wrap.testing import write_images

    folder = _copy(sd3[0], tmp_path / "sd3")
    before = fingerprint_folder(folder, documents=True)
    write_images(tmp_path / "data", 10, 24, 20, seed=3)
    train = ["train-severity", "--model", str(folder), "--task", "gaussian-blur", "--data", str(tmp_path / "data"),
             "--steps", "2", "--batch-size", "2", "--val-images", "2", "--checkpoint-every", "1", "--device", "cpu",
             "--save-to", str(tmp_path / "bundle")]
    assert main(train) == 0
    bundle = LatentDiffusion.from_pretrained(tmp_path / "bundle")
    assert isinstance(bundle.denoiser, SD3Denoiser) and "gaussian-blur" in bundle.severity_encoders
    assert (bundle.path, bundle.flow_grid, bundle.latent_shift) == ("flow", "sd3", 0.0609)
    evaluate = ["eval", "--data", str(tmp_path / "data"), "--task", "gaussian-blur", "--steps", "4", "--limit", "2",
                "--batch-size", "2", "--device", "cpu"]
    assert main([*evaluate, "--model", str(tmp_path / "bundle"), "--out", str(tmp_path / "e1")]) == 0
    # the pipeline folder itself with the encoder of the bundle written from it: the same results
    assert main([*evaluate, "--model", str(folder), "--severity-from", str(tmp_path / "bundle"),
                 "--out", str(tmp_path / "e2")]) == 0
    e1, e2 = (json.loads((tmp_path / e / "results.json").read_text()) for e in ("e1", "e2"))
    for key in ("sigma_hat", "start_step", "psnr", "nfe"):
        assert [r[key] for r in e1["images"]] == [r[key] for r in e2["images"]], key
    assert main(["sample", "--model", str(folder), "--out", str(tmp_path / "s.png"), "-n", "2", "--steps", "3"]) == 0
    assert (tmp_path / "s.png").is_file()
    assert main(["benchmark", "--model", str(folder), "--batch-size", "1", "--steps", "2", "--device", "cpu"]) == 0
    # tune writes the flow bundle's step size for its grid; export keeps the flow model and its tuned values
    assert main(["tune", "--model", str(tmp_path / "bundle"), "--task", "gaussian-blur", "--solver", "latent-dps",
                 "--data", str(tmp_path / "data"), "--eta", "0.05", "0.1", "--limit", "2", "--batch-size", "2",
                 "--steps", "4", "--device", "cpu", "--out", str(tmp_path / "tune")]) == 0
    tuned = LatentDiffusion.from_pretrained(tmp_path / "bundle").tuned_values["flash_defaults"]["latent-dps"]
    assert tuned["gaussian-blur"]["ddim-4 (η=0)"]["eta"] in (0.05, 0.1)
    assert main(["export", "--model", str(tmp_path / "bundle"), "--out", str(tmp_path / "small"),
                 "--dtype", "float32"]) == 0
    small = LatentDiffusion.from_pretrained(tmp_path / "small")
    assert isinstance(small.denoiser, SD3Denoiser) and small.tuned_values["flash_defaults"]["latent-dps"] == tuned
    assert fingerprint_folder(folder, documents=True) == before
