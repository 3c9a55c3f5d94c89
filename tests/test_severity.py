"""Severity encoder, its three-term loss, and the resumable training command."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from flash_wrap import LatentDiffusion
from flash_wrap.apps.cli import main
from flash_wrap.apps.training.checkpoint import latest_checkpoint, load_checkpoint
from flash_wrap.apps.training.severity import SeverityTrainingConfig, StepBatches, train_severity
from flash_wrap.apps.training.severity_loss import severity_loss
from flash_wrap.testing import smooth_images, tiny_model, write_images

SHARED = Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture
def image_folder(tmp_path) -> Path:
    """24 smooth random RGB images of 40x48 (not square: the loader centre-crops and resizes)."""
    return write_images(tmp_path / "images", 24, 40, 48)


@pytest.fixture
def bundle(tmp_path) -> Path:
    path = tmp_path / "model"
    tiny_model("vq", image_size=32, seed=0).save_pretrained(path)
    return path


def test_encoder_outputs_latent_estimate_and_nonnegative_variance():
    model = tiny_model("taef2", image_size=32)
    encoder = model.make_severity_encoder()
    x = smooth_images(3)
    z_hat, v = encoder(x)
    assert z_hat.shape == (3, *model.latent_shape) and v.shape == (3,)
    assert (v >= 0).all()
    torch.testing.assert_close(z_hat, model.encode(x))  # starts as the autoencoder's own encoder
    s = encoder.variance_head(z_hat)
    torch.testing.assert_close(v, s.square().mean(dim=(1, 2, 3)))


def test_loss_terms_follow_the_paper():
    model = tiny_model("vq", image_size=32)
    encoder = model.make_severity_encoder()
    x = smooth_images(2)
    y = (x + 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))).clamp(-1, 2)
    terms = severity_loss(encoder, model, x, y, lambda_sigma=10.0, lambda_image=0.5)
    z_hat, v = encoder(y)
    e = (z_hat - model.encode(x)).flatten(1)
    d = e.shape[1]
    sample_var = ((e - e.mean(1, keepdim=True)) ** 2).sum(1) / (d - 1)
    torch.testing.assert_close(terms["target"], sample_var.detach())
    image = ((2 * model.decode(z_hat) - 2 * x) ** 2).flatten(1).mean(1)
    want = (e.square().mean(1) + 10.0 * (sample_var - v) ** 2 + 0.5 * image).mean()
    torch.testing.assert_close(terms["loss"], want)
    terms["loss"].backward()
    assert all(p.grad is None for p in model.parameters())  # the autoencoder stays frozen
    assert encoder.variance_head.weight.grad is not None
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in encoder.backbone.parameters())


def test_training_reduces_the_loss_on_a_fixed_batch():
    # λim = 0: a random tiny decoder cannot reconstruct images, so the image term has a high floor;
    # the latent and variance terms must fall.
    model = tiny_model("kl", image_size=32)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        encoder = model.make_severity_encoder()
    x = smooth_images(4, seed=3)
    y = x * 0.7 + 0.15  # a fixed degradation
    optimizer = torch.optim.Adam(encoder.parameters(), lr=3e-3)
    losses = []
    for _ in range(80):
        loss = severity_loss(encoder, model, x, y, lambda_image=0.0)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.2 * losses[0]


def test_step_batches_do_not_depend_on_where_a_run_resumes():
    whole = list(StepBatches(10, 4, seed=1, first=0, total=7))
    tail = list(StepBatches(10, 4, seed=1, first=4, total=7))
    assert whole[4:] == tail
    flat = [i for batch in whole[:5] for i in batch]  # 20 draws = exactly two epochs
    assert sorted(flat[:10]) == list(range(10)) and sorted(flat[10:]) == list(range(10))


def _config(bundle, images, out, steps, **kw):
    # these tests train into one bundle several times, so replacing its encoder is asked for
    settings = dict(batch_size=4, checkpoint_every=3, val_images=4, checkpoints=str(out), cpu=True, force=True) | kw
    return SeverityTrainingConfig(model=str(bundle), task="gaussian-blur", data=str(images), steps=steps, **settings)


def test_a_trained_encoder_is_replaced_only_when_asked(bundle, image_folder, tmp_path):
    train_severity(_config(bundle, image_folder, tmp_path / "a", 3), progress=False)
    before = (bundle / "severity_encoders" / "gaussian-blur" / "model.safetensors").read_bytes()
    with pytest.raises(ValueError, match="already has a trained gaussian-blur encoder; pass --force"):
        train_severity(_config(bundle, image_folder, tmp_path / "b", 3, force=False), progress=False)
    assert (bundle / "severity_encoders" / "gaussian-blur" / "model.safetensors").read_bytes() == before
    assert not (tmp_path / "b").exists()  # refused before any work


def test_the_installed_demo_bundle_is_never_trained_into(image_folder, tmp_path):
    with pytest.raises(ValueError, match="--model demo is installed inside the package; pass --save-to"):
        train_severity(SeverityTrainingConfig(model="demo", task="gaussian-blur", data=str(image_folder),
                                              checkpoints=str(tmp_path / "x")))


def test_resume_refuses_other_settings_but_may_train_longer(bundle, image_folder, tmp_path):
    train_severity(_config(bundle, image_folder, tmp_path / "r", 3), progress=False)
    for change, message in ((dict(lr=5e-4), "--lr 0.0001 → 0.0005"), (dict(seed=1), "--seed 42 → 1"),
                            (dict(batch_size=2), "--batch-size 4 → 2"), (dict(lambda_sigma=10.0), "--lambda-sigma")):
        with pytest.raises(ValueError, match=f"cannot resume .* with other settings \\({message}"):
            train_severity(_config(bundle, image_folder, tmp_path / "r", 6, **change), progress=False)
    summary = train_severity(_config(bundle, image_folder, tmp_path / "r", 6, checkpoint_every=3), progress=False)
    assert [h["step"] for h in summary["history"]] == [3, 6]


def test_training_writes_the_encoder_into_the_bundle(bundle, image_folder, tmp_path):
    summary = train_severity(_config(bundle, image_folder, tmp_path / "ckpt", 6), progress=False)
    assert summary["train_images"] == 20 and summary["val_images"] == 4
    assert [h["step"] for h in summary["history"]] == [3, 6]
    model = LatentDiffusion.from_pretrained(bundle)
    encoder = model.severity_encoder("gaussian-blur")
    meta = model.severity_metadata["gaussian-blur"]
    assert meta["training"]["steps"] == 6 and meta["training"]["best_step"] in (3, 6)
    # the σ̂ range of the written encoder on its 4 validation images (the out-of-range flag's reference)
    record = meta["sigma_hat_range"]
    assert record["n"] == 3 * 4 and 0 <= record["low"] <= record["high"] and record["levels"] == [0.0, 1.0]
    best = load_file(tmp_path / "ckpt" / "best.safetensors")
    for key, value in encoder.state_dict().items():
        torch.testing.assert_close(value, best[key])


def test_interrupted_training_resumes_exactly(bundle, image_folder, tmp_path):
    train_severity(_config(bundle, image_folder, tmp_path / "straight", 6), progress=False)
    train_severity(_config(bundle, image_folder, tmp_path / "resumed", 3), progress=False)
    summary = train_severity(_config(bundle, image_folder, tmp_path / "resumed", 6), progress=False)
    assert [h["step"] for h in summary["history"]] == [3, 6]
    a = load_file(tmp_path / "straight" / "checkpoint-6" / "model.safetensors")
    b = load_file(tmp_path / "resumed" / "checkpoint-6" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    fresh = tiny_model("vq", image_size=32).make_severity_encoder().state_dict()
    assert any(not torch.equal(a[k], fresh[k]) for k in a)  # it did train


def test_corrupt_checkpoint_is_reported(bundle, image_folder, tmp_path):
    train_severity(_config(bundle, image_folder, tmp_path / "ckpt", 3), progress=False)
    path = latest_checkpoint(tmp_path / "ckpt")
    (path / "model.safetensors").write_bytes(b"not a safetensors file")
    model = tiny_model("vq", image_size=32)
    encoder = model.make_severity_encoder()
    with pytest.raises(ValueError, match="corrupt or does not match"):
        load_checkpoint(path, encoder, torch.optim.Adam(encoder.parameters()))
    with pytest.raises(ValueError, match="corrupt or does not match"):
        train_severity(_config(bundle, image_folder, tmp_path / "ckpt", 6), progress=False)


def test_training_rejects_bad_settings_before_work(bundle, image_folder, tmp_path):
    with pytest.raises(LookupError, match="unknown task 'deblur'"):
        train_severity(SeverityTrainingConfig(model=str(bundle), task="deblur", data=str(image_folder)))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        train_severity(SeverityTrainingConfig(model=str(bundle), task="gaussian-blur", data=str(tmp_path / "none")))


def test_cli_train_severity(bundle, image_folder, tmp_path, capsys):
    code = main(["train-severity", "--model", str(bundle), "--task", "random-inpainting", "--data", str(image_folder),
                 "--steps", "2", "--batch-size", "2", "--checkpoint-every", "1", "--val-images", "2", "--device", "cpu",
                 "--checkpoints", str(tmp_path / "cli")])
    assert code == 0
    assert "written to" in capsys.readouterr().out
    assert "random-inpainting" in LatentDiffusion.from_pretrained(bundle).severity_encoders
    assert main(["train-severity", "--model", str(bundle), "--task", "nope", "--data", str(image_folder)]) == 2
    assert "unknown task 'nope'" in capsys.readouterr().err


@pytest.mark.skipif(not (SHARED / "data" / "celeba_train").is_dir(), reason="needs ../shared/data/celeba_train")
def test_training_runs_on_real_celeba_images(tmp_path):
    bundle = tmp_path / "model"
    tiny_model("taef2", image_size=64, seed=0).save_pretrained(bundle)
    summary = train_severity(SeverityTrainingConfig(
        model=str(bundle), task="gaussian-blur", data=str(SHARED / "data" / "celeba_train"), steps=2, batch_size=4,
        limit=24, val_images=4, checkpoint_every=2, cpu=True, checkpoints=str(tmp_path / "ckpt")), progress=False)
    assert np.isfinite(summary["best"]["val_loss"])
    assert "gaussian-blur" in LatentDiffusion.from_pretrained(bundle).severity_encoders


def test_step_batches_shard_between_processes_without_overlap():
    from flash_wrap.apps.training.severity import StepBatches

    single = list(StepBatches(50, 4, seed=3, first=0, total=6))
    ranks = [list(StepBatches(50, 4, seed=3, first=0, total=6, rank=r, world=2)) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == 6  # every process runs every step
    for step in range(6):
        assert not set(ranks[0][step]) & set(ranks[1][step])  # disjoint images per step
    # both processes together read what one process with twice the batch reads
    double = list(StepBatches(50, 8, seed=3, first=0, total=6))
    assert [a + b for a, b in zip(*ranks)] == double
    assert single == list(StepBatches(50, 4, seed=3, first=0, total=6, rank=0, world=1))
    resumed = list(StepBatches(50, 4, seed=3, first=2, total=6, rank=1, world=2))
    assert resumed == ranks[1][2:]


def test_training_can_start_from_another_bundles_encoder(bundle, image_folder, tmp_path):
    """``init_from``: fine-tune the parent's encoder for the task, e.g. at a higher resolution."""
    parent_dir = tmp_path / "parent"
    parent = LatentDiffusion.from_pretrained(bundle)
    with torch.random.fork_rng():
        torch.manual_seed(3)
        trained = parent.make_severity_encoder()
        for p in trained.parameters():
            p.data.add_(torch.randn_like(p))  # distinct from any fresh encoder
    parent.add_severity_encoder("gaussian-blur", trained, metadata={"training": {"steps": 7}})
    parent.save_pretrained(parent_dir)
    child_dir = tmp_path / "child"
    LatentDiffusion(parent.autoencoder, parent.denoiser, parent.scheduler, image_size=48,
                    latent_scale=parent.latent_scale).save_pretrained(child_dir)
    config = _config(child_dir, image_folder, tmp_path / "ckpt", 1)
    config.init_from, config.lr = str(parent_dir), 0.0  # lr 0: the result must equal the parent's encoder
    train_severity(config, progress=False)
    child = LatentDiffusion.from_pretrained(child_dir)
    assert child.image_size == 48
    got, want = child.severity_encoder("gaussian-blur").state_dict(), trained.state_dict()
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in got)
    record = child.severity_metadata["gaussian-blur"]  # the lineage is kept next to the child's own record
    assert record["parent"] == {"init_from": str(parent_dir), "training": {"steps": 7}}
    assert record["training"]["init_from"] == str(parent_dir)

    config.task = "motion-blur"  # the parent has no encoder for it
    with pytest.raises(ValueError, match="no severity encoder for 'motion-blur'"):
        train_severity(config, progress=False)
    other = tmp_path / "other-scale"
    LatentDiffusion(parent.autoencoder, parent.denoiser, parent.scheduler, image_size=32,
                    latent_scale=2 * parent.latent_scale).save_pretrained(other)
    bad = _config(other, image_folder, tmp_path / "ckpt2", 1)
    bad.init_from = str(parent_dir)
    with pytest.raises(ValueError, match="--init-from .*latent scale and shift .* differ from the model's"):
        train_severity(bad, progress=False)
