"""LAFITE baseline: shapes, the pseudo text feature, the projection D, the contrastive loss, training
(overfit, exact resume) and the CLI train -> sample path on a tiny world."""

from __future__ import annotations

import dataclasses
import json
import math

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from clipvqd.clip.embed import embed_images, embed_text_column
from clipvqd.clip.encoder import ClipEncoder
from clipvqd.clip.standin import StandinClipConfig, train_standin_clip
from clipvqd.lafite import (Discriminator, Generator, LafiteModelConfig, LafiteTrainConfig, contrastive_loss,
                            generate_images, load_generator, pseudo_text_feature, train_lafite)
from clipvqd.lafite.clip_features import clip_image_features, freeze
from clipvqd.manifest import ManifestImages, read_manifest

pytestmark = pytest.mark.usefixtures("single_thread")

EMBED = 16
MODEL = LafiteModelConfig(resolution=32, condition_dim=EMBED, z_dim=8, w_dim=8, mapping_layers=1, condition_hidden=8,
                          channel_base=128, channel_max=8)
TRAIN = LafiteTrainConfig(steps=4, batch_size=8, r1_interval=2, snapshot_every=2, log_every=2)


@pytest.fixture(scope="module")
def world(small_faces, tmp_path_factory):
    """The small faces world, a tiny stand-in conditioner CLIP, and its cached embeddings."""
    root = tmp_path_factory.mktemp("lafite")
    clip = root / "clip.safetensors"
    train_standin_clip(small_faces / "clip_pairs.csv",
                       StandinClipConfig(model_name="test-lafite-conditioner", embed_dim=EMBED, vision_tower="resnet",
                                         vision_width=8, vision_layers=1, text_width=32, text_layers=1, text_heads=2,
                                         epochs=1, batch_size=100),
                       root / "clip-work", clip, root / "clip-curve.csv", seed=0, progress=False)
    encoder = ClipEncoder.load(clip)
    images = embed_images(encoder, small_faces / "train.csv", root / "train_images.safetensors", progress=False)
    embed_text_column(encoder, small_faces / "prompts.csv", "prompt", root / "prompts.safetensors", progress=False)
    return {"root": root, "faces": small_faces, "clip": clip, "encoder": encoder, "embeddings": images,
            "images": ManifestImages(small_faces / "train.csv").all()}


def test_generator_and_discriminator_shapes():
    generator, discriminator = Generator(MODEL), Discriminator(MODEL)
    z, condition = torch.randn(4, MODEL.z_dim), torch.nn.functional.normalize(torch.randn(4, EMBED), dim=1)
    images = generator(z, condition)
    assert images.shape == (4, 3, 32, 32)
    logits, features = discriminator(images, condition)
    assert logits.shape == (4,) and features.shape == (4, EMBED)
    assert [block.resolution for block in generator.blocks] == [4, 8, 16, 32]
    with pytest.raises(ValueError, match="condition"):
        generator(z, condition[:, :8])
    paper = LafiteModelConfig.paper()
    assert paper.block_resolutions[-1] == 256 and paper.channels(4) == 512 and paper.channels(256) == 128


def test_generator_styles_follow_the_condition_and_const_noise_is_deterministic():
    generator = Generator(MODEL).eval()
    z = torch.randn(2, MODEL.z_dim)
    a, b = torch.nn.functional.normalize(torch.randn(2, 2, EMBED), dim=-1)
    assert not torch.allclose(generator(z, a, "const"), generator(z, b, "const"))
    assert torch.equal(generator(z, a, "const"), generator(z, a, "const"))


def test_pseudo_text_feature_known_answers():
    h = torch.tensor([[2.0, 0.0]])  # not unit: h is normalised first
    eps = torch.tensor([[0.0, 5.0]])
    assert torch.allclose(pseudo_text_feature(h, 1.0, noise=eps), torch.tensor([[2 ** -0.5, 2 ** -0.5]]))
    assert torch.allclose(pseudo_text_feature(h, 3.0, noise=eps), torch.tensor([[1.0, 3.0]]) / math.sqrt(10))
    assert torch.allclose(pseudo_text_feature(h, 0.0, noise=eps), torch.tensor([[1.0, 0.0]]))
    # In high dimension eps is nearly orthogonal to h: cos(h', h) ~ 1/sqrt(1 + xi^2) (xi = 3: 0.316).
    h = torch.randn(4000, 512, generator=torch.Generator().manual_seed(0))
    hp = pseudo_text_feature(h, 3.0, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(hp.norm(dim=1), torch.ones(4000), atol=1e-5)
    cosine = (torch.nn.functional.normalize(h, dim=1) * hp).sum(dim=1).mean()
    assert abs(float(cosine) - 1 / math.sqrt(10)) < 0.005


def test_projection_discriminator_depends_on_the_condition():
    discriminator = Discriminator(MODEL)
    images = torch.rand(4, 3, 32, 32) * 2 - 1
    a, b = torch.nn.functional.normalize(torch.randn(2, 4, EMBED), dim=-1)
    logits_a, features_a = discriminator(images, a)
    logits_b, features_b = discriminator(images, b)
    assert torch.equal(features_a, features_b)  # the features come from the image alone
    assert not torch.allclose(logits_a, logits_b)
    # logit = out(phi) + <features, condition>: the difference is exactly the projection's.
    assert torch.allclose(logits_a - logits_b, (features_a * (a - b)).sum(dim=1), atol=1e-5)


def test_batch_projection_adds_the_batch_total_to_every_logit_as_the_official_epilogue():
    """'batch' (training/networks.py DiscriminatorEpilogue: x + (d_fts * fts).sum()): each logit is
    out(phi(x_i)) + sum_j <proj(phi(x_j)), h'_j>, so one image's condition moves every logit."""
    torch.manual_seed(0)
    per_sample = Discriminator(MODEL)
    batched = Discriminator(dataclasses.replace(MODEL, projection_reduction="batch"))
    batched.load_state_dict(per_sample.state_dict())
    images = torch.rand(4, 3, 32, 32) * 2 - 1
    condition = torch.nn.functional.normalize(torch.randn(4, EMBED), dim=-1)
    out_only, _ = per_sample(images, torch.zeros(4, EMBED))  # a zero condition leaves out(phi) alone
    logits, features = batched(images, condition)
    total = (features * condition).sum()
    assert torch.allclose(logits, out_only + total, atol=1e-5)
    assert torch.allclose(per_sample(images, condition)[0], out_only + (features * condition).sum(dim=1), atol=1e-5)
    changed = condition.clone()
    changed[3] = -changed[3]
    assert not torch.allclose(batched(images, changed)[0][:3], logits[:3])
    assert torch.allclose(per_sample(images, changed)[0][:3], per_sample(images, condition)[0][:3])
    assert LafiteModelConfig.paper().projection_reduction == "batch"
    with pytest.raises(ValueError, match="projection_reduction"):
        LafiteModelConfig(projection_reduction="mean")


def test_modulated_conv_forms_are_one_function():
    """'grouped' (per-sample weights, one grouped convolution) and 'scaled' (activations scaled by the styles,
    the shared weight, outputs scaled by the demodulation coefficients, as the official code trains) agree to
    double-precision rounding, with and without demodulation; a wrong form name is refused."""
    from clipvqd.lafite.layers import modulated_conv2d

    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, 6, 6, generator=g, dtype=torch.float64)
    styles = torch.randn(3, 5, generator=g, dtype=torch.float64)
    for size in (3, 1):
        weight = torch.randn(4, 5, size, size, generator=g, dtype=torch.float64)
        for demodulate in (True, False):
            grouped = modulated_conv2d(x, weight, styles, demodulate, form="grouped")
            scaled = modulated_conv2d(x, weight, styles, demodulate, form="scaled")
            assert grouped.shape == (3, 4, 6, 6)
            assert torch.allclose(grouped, scaled, rtol=1e-12, atol=1e-12)
    # Demodulated: each sample's output map has the unit-norm weights' scale, whatever the style's size.
    assert torch.allclose(modulated_conv2d(x, weight, 7 * styles, form="scaled"), modulated_conv2d(x, weight, styles),
                          atol=1e-10)
    with pytest.raises(ValueError, match="modulated convolution form"):
        modulated_conv2d(x, weight, styles, form="fused")
    with pytest.raises(ValueError, match="modulated convolution form"):
        Generator(MODEL).set_modulated_conv("fused")


def test_strided_downsampling_is_convolution_then_pooling_with_the_same_gradients():
    """D's 'strided' down-sampling layer (one stride-2 convolution with the kernel folded with the 2x2 box; a
    1x1 kernel pools first) is the 'pool' layer's function: outputs and the gradients of input and weight
    agree in double precision, at every resolution D uses."""
    from clipvqd.lafite.layers import EqualConv2d

    torch.manual_seed(0)
    for size, bias in ((3, True), (1, False)):
        layer = EqualConv2d(5, 7, size, bias=bias, activation=size == 3, down=True).double()
        if bias:
            torch.nn.init.normal_(layer.bias)
        for resolution in (32, 8, 4):
            x = torch.randn(2, 5, resolution, resolution, dtype=torch.float64, requires_grad=True)
            outputs, grads = {}, {}
            for form in ("pool", "strided"):
                layer.downsample = form
                outputs[form] = layer(x)
                grads[form] = torch.autograd.grad(outputs[form].square().sum(), [x, layer.weight])
            assert outputs["pool"].shape == (2, 7, resolution // 2, resolution // 2)
            assert torch.allclose(outputs["pool"], outputs["strided"], rtol=1e-12, atol=1e-12)
            assert all(torch.allclose(a, b, rtol=1e-11, atol=1e-11) for a, b in zip(grads["pool"], grads["strided"]))
    with pytest.raises(ValueError, match="down-sampling form"):
        Discriminator(MODEL).set_downsample("max")


def test_training_forms_change_rounding_only(world, tmp_path):
    """Four steps of the trainer with the old computation forms (grouped modulated convolutions, pooled
    down-sampling, contiguous memory) and the new ones from the same seed: the same losses and weights up to
    float rounding; the sidecar records the forms."""
    old = dataclasses.replace(TRAIN, modulated_conv="grouped", discriminator_downsample="pool", channels_last=False)
    new = dataclasses.replace(TRAIN, modulated_conv="scaled", discriminator_downsample="strided", channels_last=True)
    weights, curves = {}, {}
    for name, train in (("old", old), ("new", new)):
        out = _train(world, tmp_path, name, train=train)
        weights[name], curves[name] = load_file(str(out)), pd.read_csv(tmp_path / name / "curve.csv")
        assert json.loads((tmp_path / name / "generator.json").read_text())["train_config"]["modulated_conv"] == \
            train.modulated_conv
    assert weights["old"].keys() == weights["new"].keys()
    for key in weights["old"]:
        assert torch.allclose(weights["old"][key], weights["new"][key], rtol=1e-3, atol=1e-4), key
    for column in ("loss_g", "loss_d", "itc", "itd_real"):
        old_curve, new_curve = (torch.tensor(curves[name][column].to_numpy()) for name in ("old", "new"))
        assert torch.allclose(old_curve, new_curve, rtol=1e-3, atol=1e-4), column
    assert not all(torch.equal(weights["old"][k], weights["new"][k]) for k in weights["old"])  # other kernels ran


def test_contrastive_loss_known_answers():
    features = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    conditions = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # sim = [[1, 0], [0.6, 0.8]]

    def nll(positive, others, t=1.0, official=False):
        f = (lambda x: math.exp(x / t)) if official else (lambda x: x / t)
        return -f(positive) + math.log(sum(math.exp(f(x)) for x in [positive, *others]))

    over_features = (nll(1.0, [0.6]) + nll(0.8, [0.0])) / 2  # each condition's column
    over_conditions = (nll(1.0, [0.0]) + nll(0.8, [0.6])) / 2  # each feature's row
    got = contrastive_loss(features, conditions, 1.0, lam=0.0, form="infonce")
    assert float(got) == pytest.approx(over_features, abs=1e-6)
    got = contrastive_loss(features, conditions, 1.0, lam=1.0, form="infonce")
    assert float(got) == pytest.approx(over_conditions, abs=1e-6)
    got = contrastive_loss(features, conditions, 1.0, lam=0.25, form="infonce")
    assert float(got) == pytest.approx(0.75 * over_features + 0.25 * over_conditions, abs=1e-6)
    official = (nll(1.0, [0.6], 0.5, True) + nll(0.8, [0.0], 0.5, True)) / 2
    assert float(contrastive_loss(features, conditions, 0.5)) == pytest.approx(official, abs=1e-5)
    # Lengths do not matter (cosine similarity).
    assert float(contrastive_loss(3 * features, conditions, 0.5)) == pytest.approx(official, abs=1e-5)


def test_itc_gradient_reaches_the_generator_only_and_an_overfit_lowers_the_loss(world):
    """A few steps of the itc objective alone on 8 fixed conditions: the frozen CLIP passes gradients to
    G (not to itself) and the loss falls."""
    encoder = freeze(world["encoder"])
    torch.manual_seed(0)
    generator = Generator(MODEL)
    conditions = pseudo_text_feature(world["embeddings"][:8], 3.0, generator=torch.Generator().manual_seed(0))
    z = torch.randn(8, MODEL.z_dim)
    optimizer = torch.optim.Adam(generator.parameters(), lr=0.03, betas=(0.0, 0.99))
    losses = []
    for _ in range(80):
        # A low temperature: the barely trained stand-in's embeddings of faces lie close together.
        loss = contrastive_loss(clip_image_features(encoder, generator(z, conditions, "const")), conditions, 0.1,
                                form="infonce")
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(p.grad is None for p in encoder.model.parameters())
    assert generator.blocks[-1].torgb.weight.grad is not None
    assert sum(losses[-5:]) / 5 < losses[0] - 0.1, losses


def _train(world, tmp_path, name, train=TRAIN):
    out = tmp_path / name / "generator.safetensors"
    train_lafite(world["images"], world["embeddings"], world["encoder"], MODEL, train, tmp_path / name / "work", out,
                 tmp_path / name / "curve.csv", seed=5, progress=False)
    return out


def test_resume_after_a_kill_equals_an_uninterrupted_run(world, tmp_path, kill_after_first_snapshot):
    straight = _train(world, tmp_path, "straight")
    kill_after_first_snapshot(lambda: _train(world, tmp_path, "resumed"), match="step 2")
    assert not (tmp_path / "resumed" / "generator.safetensors").exists()
    resumed = _train(world, tmp_path, "resumed")
    a, b = load_file(str(straight)), load_file(str(resumed))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    curve = pd.read_csv(tmp_path / "resumed" / "curve.csv")
    assert list(curve["step"]) == [2, 4]
    assert {"loss_g", "loss_d", "itc", "itd_fake", "itd_real", "r1"} <= set(curve.columns)
    assert curve["iic"].isna().all() and curve["iid"].isna().all()  # weight 0: not computed, left blank
    meta = json.loads((tmp_path / "resumed" / "generator.json").read_text())
    assert meta["step"] == 4 and meta["clip_sha256"] == world["encoder"].identity
    # A changed setting starts over instead of mixing in the old snapshots.
    changed = dataclasses.replace(TRAIN, xi=2.0)
    _train(world, tmp_path, "resumed", train=changed)
    assert json.loads((tmp_path / "resumed" / "generator.json").read_text())["train_config"]["xi"] == 2.0


def test_augmentation_and_image_image_terms_resume_exactly_and_are_logged(world, tmp_path, kill_after_first_snapshot):
    """DiffAugment's draws, the iic/iid terms and the official batch projection survive a kill like the
    rest: the resumed run ends with the same weights as an uninterrupted one."""
    train = dataclasses.replace(TRAIN, augment=("color", "translation", "cutout"), iic_weight=1.0, iid_weight=1.0)
    model = dataclasses.replace(MODEL, projection_reduction="batch")

    def run(name):
        out = tmp_path / name / "generator.safetensors"
        train_lafite(world["images"], world["embeddings"], world["encoder"], model, train, tmp_path / name / "work",
                     out, tmp_path / name / "curve.csv", seed=5, progress=False)
        return load_file(str(out))

    straight = run("straight")
    kill_after_first_snapshot(lambda: run("resumed"))
    resumed = run("resumed")
    assert all(torch.equal(straight[key], resumed[key]) for key in straight)
    curve = pd.read_csv(tmp_path / "resumed" / "curve.csv")
    assert curve["iic"].notna().all() and curve["iid"].notna().all()


def test_cli_train_then_sample_writes_a_valid_deterministic_manifest(world, tmp_path):
    from clipvqd.cli import main

    root, faces = world["root"], world["faces"]
    params = {"model": {k: v for k, v in MODEL.to_dict().items() if k != "condition_dim"},
              "train": dataclasses.replace(TRAIN, steps=2).to_dict()}
    model = tmp_path / "models" / "generator.safetensors"
    main(["lafite", "train", "--params", json.dumps(params), "--train", str(faces / "train.csv"),
          "--embeddings", str(root / "train_images.safetensors"), "--clip", str(world["clip"]),
          "--work", str(tmp_path / "work"), "--out", str(model), "--curve", str(tmp_path / "models" / "curve.csv")])
    generator, meta = load_generator(model)
    assert meta["model_config"]["condition_dim"] == EMBED and meta["step"] == 2

    def sample(name, seed):
        manifest = tmp_path / name / "manifest.csv"
        main(["sample", "--method", "lafite", "--model", str(model), "--clip", str(world["clip"]),
              "--prompts", str(faces / "prompts.csv"), "--prompt-embeddings", str(root / "prompts.safetensors"),
              "--samples-per-prompt", "2", "--batch-size", "5", "--seed", str(seed), "--manifest", str(manifest)])
        return read_manifest(manifest, verify=True)

    first, again, other = sample("a", 1), sample("b", 1), sample("c", 2)
    prompts = pd.read_csv(faces / "prompts.csv", dtype=str, keep_default_na=False)
    assert len(first) == 2 * len(prompts)
    assert set(first["method"]) == {"lafite"} and set(first["variant"]) == {"default"}
    assert list(first["prompt_id"][::2]) == list(prompts["prompt_id"])
    assert list(first["sha256"]) == list(again["sha256"])  # deterministic under a seed
    assert list(first["sha256"]) != list(other["sha256"])
    # The batch an image is drawn in does not change it (up to float rounding of the grouped convolution).
    embeddings = load_file(str(root / "prompts.safetensors"))["embeddings"]
    rows = embeddings[[0, 0, 1, 1]]
    batched = generate_images(generator, rows, seed=1, batch_size=4).int()
    single = generate_images(generator, rows, seed=1, batch_size=1).int()
    assert (batched - single).abs().max() <= 1
    assert not torch.equal(batched[0], batched[1])  # same prompt, own z
