"""The 8-bit agreement rule on synthetic images shaped like the measured cases (bench/agreement.py)."""

from __future__ import annotations

import numpy as np
import pytest

from frender.blender import Tolerance, compare_pixels

DEMO, CROP, TINY_WINDOW = (270, 480), (68, 120), (9, 16)


def image(shape: tuple[int, int], seed: int = 5) -> np.ndarray:
    return np.random.default_rng(seed).integers(40, 200, (*shape, 4), dtype=np.uint8)


def altered(base: np.ndarray, groups: list[tuple[int, int]], *, everywhere: int = 0, channel: int = 0) -> np.ndarray:
    """`base` with, for each (count, by) of `groups`, `count` other pixels moved by `by` in one channel; every pixel by `everywhere`."""
    out = base.astype(np.int16) + everywhere
    flat = out.reshape(-1, 4)
    chosen = np.random.default_rng(9).permutation(flat.shape[0])
    start = 0
    for count, by in groups:
        flat[chosen[start : start + count], channel] += by
        start += count
    return np.clip(out, 0, 255).astype(np.uint8)


@pytest.mark.parametrize(
    ("case", "shape", "groups", "everywhere", "verdict"),
    [
        # honest, as measured
        ("same profile, 1 vs 2 threads", DEMO, [], 0, "identical"),
        ("crop within Blender's dither everywhere", CROP, [], 2, "agree"),
        ("tiny denoised crop, aligned: 12 pixels of 144 by 3, 2 by 5", TINY_WINDOW, [(12, 3), (2, 5)], 0, "agree"),
        ("3 stray pixels in a tiny window", TINY_WINDOW, [(3, 30)], 0, "agree"),
        ("16 pixels past the dither in a tiny window", TINY_WINDOW, [(16, 3)], 0, "agree"),
        ("0.1% of a full frame off", DEMO, [(129, 20)], 0, "agree"),
        ("0.2% of a full frame past the dither", DEMO, [(259, 3)], 0, "agree"),
        ("0.1% of a crop off", CROP, [(8, 20)], 0, "agree"),
        # cheats, at or below their measured size
        ("4 pixels off in a tiny window", TINY_WINDOW, [(4, 30)], 0, "disagree"),
        ("17 pixels past the dither in a tiny window", TINY_WINDOW, [(17, 3)], 0, "disagree"),
        ("just over 0.1% of a full frame off", DEMO, [(130, 5)], 0, "disagree"),
        ("just over 0.2% of a full frame past the dither", DEMO, [(260, 3)], 0, "disagree"),
        ("a uniform shift of 4/255", CROP, [], 4, "disagree"),
        ("lazy crop at 64 samples (0.65% past the dither, 0.10% off)", CROP, [(45, 3), (8, 6)], 0, "disagree"),
        ("lazy crop at 16 samples, denoised (0.76% off)", CROP, [(62, 5)], 0, "disagree"),
        ("lazy frame at 16 samples, denoised (2.2% off)", DEMO, [(2851, 8)], 0, "disagree"),
        ("lazy frame, no denoiser (32% off)", DEMO, [(41472, 20)], 0, "disagree"),
        ("lazy tiny crop, denoised (25% off)", TINY_WINDOW, [(36, 10)], 0, "disagree"),
    ],
)
def test_rule_table(case, shape, groups, everywhere, verdict):
    """Honest differences of the measured sizes agree; lazy and forged differences of the measured sizes disagree."""
    base = image(shape)
    result = compare_pixels(base, altered(base, groups, everywhere=everywhere))
    assert result.verdict == verdict, case
    pixels = shape[0] * shape[1]
    assert result.fraction_off == pytest.approx(sum(n for n, by in groups if by > 4) / pixels)
    assert result.fraction_over_dither == pytest.approx(1.0 if everywhere > 2 else sum(n for n, by in groups if by > 2) / pixels)


@pytest.mark.parametrize(("pixels", "allowed"), [(144, 3), (2_999, 3), (3_999, 3), (8_160, 8), (129_600, 129), (1_000_000, 1_000)])
def test_allowance_is_a_fraction_with_a_floor(pixels, allowed):
    """0.1% of the pixels may be off (never fewer than 3), 0.2% past the dither (never fewer than 16)."""
    assert Tolerance().allowed_off(pixels) == allowed
    assert Tolerance().allowed_over_dither(pixels) == max(2 * pixels // 1000, 16)


def test_alpha_counts_like_colour():
    """A difference only in alpha makes a pixel off like one in colour."""
    base = image(CROP)
    assert compare_pixels(base, altered(base, [(500, 40)], channel=3)).verdict == "disagree"


def test_shapes_must_match():
    """Images of different shapes are the caller's error."""
    with pytest.raises(ValueError, match="different shapes"):
        compare_pixels(image(CROP), image(TINY_WINDOW))
