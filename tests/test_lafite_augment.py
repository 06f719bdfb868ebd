"""DiffAugment for the GAN discriminators: a no-op without policies, each policy's known effect, gradients
through it, and reproducibility from a seeded generator."""

from __future__ import annotations

import pytest
import torch

from clipvqd.lafite.augment import color, cutout, diff_augment, translation
from clipvqd.lafite.config import LafiteTrainConfig


def _seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_no_policy_returns_the_images_untouched_and_draws_nothing():
    images = torch.rand(4, 3, 32, 32) * 2 - 1
    generator = _seeded()
    state = generator.get_state()
    assert diff_augment(images, (), generator) is images
    assert torch.equal(generator.get_state(), state)


def test_translation_is_an_integer_shift_of_at_most_an_eighth_with_zero_fill():
    images = torch.rand(16, 3, 32, 32) + 1.0  # strictly positive, so the zero fill is recognisable
    out = translation(images, _seeded(1))
    seen_shift = False
    for b in range(len(images)):
        matches = []
        for dy in range(-4, 5):
            for dx in range(-4, 5):
                expected = torch.zeros_like(images[b])
                ys, yd = slice(max(0, -dy), 32 - max(0, dy)), slice(max(0, dy), 32 - max(0, -dy))
                xs, xd = slice(max(0, -dx), 32 - max(0, dx)), slice(max(0, dx), 32 - max(0, -dx))
                expected[:, yd, xd] = images[b][:, ys, xs]
                if torch.equal(out[b], expected):
                    matches.append((dy, dx))
        assert len(matches) == 1, (b, matches)
        seen_shift |= matches[0] != (0, 0)
    assert seen_shift


def test_cutout_zeroes_one_clipped_half_side_square():
    images = torch.ones(32, 3, 32, 32)
    out = cutout(images, _seeded(2))
    for b in range(len(images)):
        zero = out[b, 0] == 0
        assert torch.equal(zero, (out[b] == 0).all(dim=0))  # the same pixels in every channel
        rows, columns = zero.any(dim=1).nonzero().flatten(), zero.any(dim=0).nonzero().flatten()
        height, width = len(rows), len(columns)
        # A rectangle: contiguous rows/columns, and every pixel in their product is zero.
        assert rows[-1] - rows[0] + 1 == height and columns[-1] - columns[0] + 1 == width
        assert int(zero.sum()) == height * width
        # 16 x 16 centred at a pixel of the image: at least 8 of each side stay inside it.
        assert 8 <= height <= 16 and 8 <= width <= 16
        assert torch.equal(out[b][:, ~zero], images[b][:, ~zero])


def test_color_on_a_flat_grey_image_is_a_brightness_shift_of_at_most_a_half():
    # Saturation and contrast scale deviations from a mean; a flat grey image has none.
    images = torch.full((64, 3, 8, 8), 0.2)
    out = color(images, _seeded(3))
    shift = out - images
    assert torch.allclose(shift, shift[:, :1, :1, :1].expand_as(shift), atol=1e-6)
    assert shift.abs().max() <= 0.5 + 1e-6 and shift.std() > 0.1


def test_gradients_flow_through_every_policy_and_a_seed_repeats_the_draws():
    images = (torch.rand(4, 3, 16, 16) * 2 - 1).requires_grad_(True)
    policies = ("color", "translation", "cutout")
    out = diff_augment(images, policies, _seeded(4))
    out.square().sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0
    again = diff_augment(images.detach(), policies, _seeded(4))
    assert torch.equal(out.detach(), again)
    assert not torch.equal(again, diff_augment(images.detach(), policies, _seeded(5)))


def test_unknown_or_repeated_policies_are_refused():
    with pytest.raises(ValueError, match="augment"):
        LafiteTrainConfig(augment=("colour",))
    with pytest.raises(ValueError, match="augment"):
        LafiteTrainConfig(augment=("cutout", "cutout"))
    with pytest.raises(ValueError, match="policies"):
        diff_augment(torch.zeros(1, 3, 8, 8), ("flip",), _seeded())
    assert LafiteTrainConfig.from_dict({"augment": ["translation", "cutout"]}).augment == ("translation", "cutout")
    assert LafiteTrainConfig.paper().augment == ()
