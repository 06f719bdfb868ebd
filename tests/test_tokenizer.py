"""Tokenizer architecture, quantizer, losses, perceptual metric and configuration."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from safetensors.torch import save_file

from clipvqd.hashing import ChecksumMismatch, sha256_file
from clipvqd.tokenizer import (
    LPIPS,
    GumbelQuantizer,
    GumbelVQGAN,
    PatchDiscriminator,
    TokenizerConfig,
    TokenizerTrainConfig,
    cosine_temperature,
)
from clipvqd.tokenizer.losses import adaptive_gan_weight, hinge_discriminator_loss
from clipvqd.tokenizer.perceptual import VGG_TAP_CHANNELS
from tokenizer_helpers import TINY, blob_images, one_torch_thread  # noqa: F401 (fixture)


def test_world_default_shapes_through_encoder_quantizer_decoder():
    config = TokenizerConfig()
    assert config.downsampling_factor == 2 and config.token_grid == (16, 16)
    torch.manual_seed(0)
    model = GumbelVQGAN(config).train()
    images = blob_images(2, resolution=32)
    features = model.encoder(images)
    assert features.shape == (2, config.z_channels, 16, 16)
    quantized = model.quantizer.sample(features, temperature=0.9)
    assert quantized.vectors.shape == (2, config.embed_dim, 16, 16)
    assert quantized.codes.shape == (2, 16, 16) and quantized.codes.dtype == torch.long
    reconstructions, _ = model(images, temperature=0.9)
    assert reconstructions.shape == images.shape
    model.eval()
    codes = model.encode(images)
    assert codes.shape == (2, 16, 16) and codes.dtype == torch.long
    assert int(codes.max()) < config.codebook_size
    decoded = model.decode_codes(codes)
    assert decoded.shape == images.shape and decoded.abs().max() <= 1.0


def test_paper_preset_matches_the_released_tokenizer_and_runs():
    paper = TokenizerConfig.paper()
    assert (paper.codebook_size, paper.downsampling_factor, paper.resolution) == (4096, 16, 256)
    assert (paper.z_channels, paper.embed_dim, paper.channels) == (256, 256, 128)
    assert paper.channel_multipliers == (1, 1, 2, 2, 4) and paper.num_res_blocks == 2
    assert paper.attention_resolutions == (16,) and paper.token_grid == (16, 16)
    training = TokenizerTrainConfig.paper()
    assert (training.temperature_start, training.temperature_end, training.kl_weight) == (0.9, 0.01, 5e-5)
    assert training.batch_size == 32 and training.epochs == 100
    # The paper architecture at 64 px (still f=16, attention at the 16 px level) keeps the test fast on CPU.
    config = dataclasses.replace(paper, resolution=64)
    torch.manual_seed(0)
    model = GumbelVQGAN(config).eval()
    images = torch.rand(1, 3, 64, 64) * 2 - 1
    codes = model.encode(images)
    assert codes.shape == (1, 4, 4)
    assert model.decode_codes(codes).shape == (1, 3, 64, 64)
    attention_blocks = sum(len(level.attentions) for level in model.encoder.levels)
    assert attention_blocks == paper.num_res_blocks  # only the 16 px level attends, besides the middle


def test_encode_refuses_images_of_the_wrong_size():
    model = GumbelVQGAN(TINY).eval()
    with pytest.raises(ValueError, match=r"\(B, 3, 16, 16\).*\(1, 3, 20, 20\)"):
        model.encode(torch.zeros(1, 3, 20, 20))


def _quantizer_with_logits(probabilities: list[float], channels: int = 4) -> GumbelQuantizer:
    """A quantizer whose logits are log(probabilities) at every position, whatever its input."""
    quantizer = GumbelQuantizer(channels, len(probabilities), embed_dim=3)
    with torch.no_grad():
        quantizer.to_logits.weight.zero_()
        quantizer.to_logits.bias.copy_(torch.tensor(probabilities).log())
    return quantizer


def test_hard_path_is_one_hot_and_gradients_flow_through_the_soft_path():
    torch.manual_seed(0)
    quantizer = GumbelQuantizer(8, 16, embed_dim=4)
    features = torch.randn(2, 8, 3, 3, requires_grad=True)
    quantized = quantizer.sample(features, temperature=0.5, hard=True, generator=torch.Generator().manual_seed(1))
    assignments = quantized.assignments
    assert torch.equal(assignments.detach(), torch.nn.functional.one_hot(quantized.codes, 16).permute(0, 3, 1, 2).float())
    # The forward value is exactly the chosen codebook vector ...
    expected = quantizer.codebook.weight[quantized.codes].permute(0, 3, 1, 2)
    assert torch.allclose(quantized.vectors, expected, atol=1e-6)
    # ... yet the encoder features receive a gradient through the relaxed sample.
    (quantized.vectors * torch.randn_like(quantized.vectors)).sum().backward()
    assert features.grad is not None and features.grad.abs().sum() > 0
    assert quantizer.to_logits.weight.grad.abs().sum() > 0
    soft = quantizer.sample(features, temperature=0.5, hard=False).assignments
    assert torch.allclose(soft.sum(dim=1), torch.ones(2, 3, 3)) and soft.max() < 1.0


def test_gumbel_samples_follow_the_code_posterior_and_inference_takes_the_argmax():
    probabilities = [0.5, 0.3, 0.2]
    quantizer = _quantizer_with_logits(probabilities)
    features = torch.zeros(1, 4, 100, 100)
    codes = quantizer.sample(features, 1.0, generator=torch.Generator().manual_seed(0)).codes
    frequencies = torch.bincount(codes.flatten(), minlength=3).float() / codes.numel()
    assert torch.allclose(frequencies, torch.tensor(probabilities), atol=0.015)
    assert torch.equal(quantizer.deterministic(features).codes, torch.zeros(1, 100, 100, dtype=torch.long))
    # Restricted to a vocabulary without code 0, the argmax falls to the next most likely code.
    restricted = quantizer.deterministic(features, allowed_codes=torch.tensor([1, 2])).codes
    assert torch.equal(restricted, torch.ones(1, 100, 100, dtype=torch.long))


def test_kl_to_uniform_prior_has_known_values():
    uniform = _quantizer_with_logits([0.25] * 4)
    assert uniform.kl_to_uniform(uniform.logits(torch.zeros(1, 4, 2, 2))).item() == pytest.approx(0.0, abs=1e-6)
    peaked = _quantizer_with_logits([1 - 3e-9, 1e-9, 1e-9, 1e-9])
    assert peaked.kl_to_uniform(peaked.logits(torch.zeros(1, 4, 2, 2))).item() == pytest.approx(math.log(4), abs=1e-4)


def test_cosine_temperature_schedule_endpoints():
    assert cosine_temperature(0, 0.9, 0.01, 1000) == pytest.approx(0.9)
    assert cosine_temperature(500, 0.9, 0.01, 1000) == pytest.approx(0.455)
    assert cosine_temperature(1000, 0.9, 0.01, 1000) == pytest.approx(0.01)
    assert cosine_temperature(5000, 0.9, 0.01, 1000) == pytest.approx(0.01)
    values = [cosine_temperature(s, 0.9, 0.01, 100) for s in range(101)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_adaptive_gan_weight_balances_gradient_norms():
    last_layer = torch.nn.Parameter(torch.ones(2, 2))
    a = torch.tensor([[3.0, 0.0], [0.0, 4.0]])  # gradient norm 5
    b = torch.tensor([[1.0, 0.0], [0.0, 0.0]])  # gradient norm 1
    weight = adaptive_gan_weight((last_layer * a).sum(), (last_layer * b).sum(), last_layer, maximum=1e4)
    assert weight.item() == pytest.approx(5.0 / (1.0 + 1e-4))
    capped = adaptive_gan_weight((last_layer * a).sum(), (last_layer * b * 0).sum(), last_layer, maximum=100.0)
    assert capped.item() == 100.0


def test_hinge_discriminator_loss_known_values():
    real = torch.tensor([2.0, 0.0])  # margins: relu(1-2)=0, relu(1-0)=1 -> mean 0.5
    fake = torch.tensor([-2.0, 1.0])  # relu(1-2)=0, relu(1+1)=2 -> mean 1.0
    assert hinge_discriminator_loss(real, fake).item() == pytest.approx(0.5 * (0.5 + 1.0))


def test_patch_discriminator_output_grid():
    assert PatchDiscriminator(3, 8, layers=3)(torch.zeros(2, 3, 256, 256)).shape == (2, 1, 30, 30)
    assert PatchDiscriminator(3, 8, layers=2)(torch.zeros(2, 3, 32, 32)).shape == (2, 1, 6, 6)


def _lpips_files(tmp_path):
    torch.manual_seed(0)
    reference = LPIPS()
    vgg = {f"features.{k}": v for k, v in reference.features.state_dict().items()}
    vgg["classifier.0.weight"] = torch.zeros(2, 2)  # a full torchvision file also carries the classifier
    heads = {f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1) for i, c in enumerate(VGG_TAP_CHANNELS)}
    save_file(vgg, str(tmp_path / "vgg16.safetensors"))
    save_file(heads, str(tmp_path / "lpips_lin.safetensors"))
    return tmp_path / "vgg16.safetensors", tmp_path / "lpips_lin.safetensors"


def test_lpips_loads_declared_files_and_measures_distance(tmp_path):
    vgg, linear = _lpips_files(tmp_path)
    metric = LPIPS.from_files(vgg, sha256_file(vgg), linear, sha256_file(linear))
    images = blob_images(2)
    assert torch.allclose(metric(images, images), torch.zeros(2), atol=1e-6)
    other = blob_images(2, seed=5)
    assert (metric(images, other) > 0).all()
    assert not any(p.requires_grad for p in metric.parameters())
    with pytest.raises(ChecksumMismatch, match="vgg16.safetensors"):
        LPIPS.from_files(vgg, "0" * 64, linear, None)
    with pytest.raises(ValueError, match="safetensors"):
        LPIPS.from_files(tmp_path / "vgg.pth", None, linear, None)


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="not divisible by the downsampling factor 2"):
        TokenizerConfig(resolution=31)
    with pytest.raises(ValueError, match="attention_resolutions"):
        TokenizerConfig(attention_resolutions=(5,))
    with pytest.raises(ValueError, match=r"unknown TokenizerConfig keys \['chanels'\]"):
        TokenizerConfig.from_dict({"chanels": 3})
    with pytest.raises(ValueError, match="both lpips_vgg_weights and lpips_linear_weights"):
        TokenizerTrainConfig(lpips_vgg_weights="vgg.safetensors")
    assert TokenizerConfig.from_dict(TokenizerConfig.paper().to_dict()) == TokenizerConfig.paper()
    assert TokenizerTrainConfig.from_dict({"adam_betas": [0.5, 0.9]}).adam_betas == (0.5, 0.9)
