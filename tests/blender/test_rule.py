"""The 8-bit agreement rule on synthetic images shaped like the measured cases (bench/agreement.py)."""

from __future__ import annotations

import numpy as np
import pytest

from frender.blender import Tolerance, compare_pixels

DEMO, CROP, TINY_WINDOW = (270, 480), (68, 120), (9, 16)


def image(shape: tuple[int, int], seed: int = 5) -> np.ndarray:
    return np.random.default_rng(seed).integers(40, 200, (*shape, 4), dtype=np.uint8)


def altered(base: np.ndarray, pixels: int, by: int, *, everywhere: int = 0, channel: int = 0) -> np.ndarray:
    """`base` with `pixels` pixels (spread over the image) moved by `by` in one channel, every pixel by `everywhere`."""
    out = base.astype(np.int16) + everywhere
    flat = out.reshape(-1, 4)
    chosen = np.random.default_rng(9).choice(flat.shape[0], size=pixels, replace=False)
    flat[chosen, channel] += by
    return np.clip(out, 0, 255).astype(np.uint8)


@pytest.mark.parametrize(
    ("case", "shape", "pixels", "by", "everywhere", "verdict"),
    [
        # honest, as measured
        ("same profile, 1 vs 2 threads", DEMO, 0, 0, 0, "identical"),
        ("crop within Blender's dither", CROP, 0, 0, 2, "agree"),
        ("tiny denoised crop: 1 pixel of 144 off by 5", TINY_WINDOW, 1, 5, 0, "agree"),
        ("exactly the threshold everywhere", DEMO, 0, 0, 4, "agree"),
        ("3 stray pixels in a tiny window", TINY_WINDOW, 3, 30, 0, "agree"),
        ("0.1% of a full frame off", DEMO, 129, 20, 0, "agree"),
        ("0.1% of a crop off", CROP, 8, 20, 0, "agree"),
        # cheats, at or below their measured size
        ("4 pixels off in a tiny window", TINY_WINDOW, 4, 30, 0, "disagree"),
        ("just over 0.1% of a full frame", DEMO, 130, 5, 0, "disagree"),
        ("lazy crop, denoised (0.82% off by more than 4)", CROP, 67, 5, 0, "disagree"),
        ("lazy frame, denoised (2.2%)", DEMO, 2851, 8, 0, "disagree"),
        ("lazy frame, no denoiser (32%)", DEMO, 41472, 20, 0, "disagree"),
        ("lazy tiny crop, denoised (25%)", TINY_WINDOW, 36, 10, 0, "disagree"),
    ],
)
def test_rule_table(case, shape, pixels, by, everywhere, verdict):
    """Honest differences of the measured sizes agree; lazy and forged differences of the measured sizes disagree."""
    base = image(shape)
    result = compare_pixels(base, altered(base, pixels, by, everywhere=everywhere))
    assert result.verdict == verdict, case
    assert result.fraction_off == pytest.approx(pixels / (shape[0] * shape[1]) if by > 4 else 0.0)


@pytest.mark.parametrize(("pixels", "allowed"), [(144, 3), (2_999, 3), (3_999, 3), (8_160, 8), (129_600, 129), (1_000_000, 1_000)])
def test_allowance_is_a_fraction_with_a_floor(pixels, allowed):
    """0.1% of the pixels may be off, never fewer than 3."""
    assert Tolerance().allowed_off(pixels) == allowed


def test_alpha_counts_like_colour():
    """A difference only in alpha makes a pixel off like one in colour."""
    base = image(CROP)
    assert compare_pixels(base, altered(base, 500, 40, channel=3)).verdict == "disagree"


def test_shapes_must_match():
    """Images of different shapes are the caller's error."""
    with pytest.raises(ValueError, match="different shapes"):
        compare_pixels(image(CROP), image(TINY_WINDOW))
