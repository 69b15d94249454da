"""The demo's cheating friends: colluders forge alike, so a colluder's crop of a colluder's frame agrees."""

from __future__ import annotations

from frender import blender
from frender.apps.cheats import CHEATS, colluders_image as _colluders_image
from frender.apps.messages import CropBox


def test_a_colluders_window_is_the_same_pixels_as_another_colluders_frame() -> None:
    """Two colluders' forgeries of one frame agree over any window, and differ between frames."""
    full = blender.decode_png(_colluders_image(5, (64, 36), None), width=64, height=36)
    box = CropBox(left=16, top=0, width=32, height=36)
    crop = blender.decode_png(_colluders_image(5, (64, 36), box), width=32, height=36)
    assert (crop == full[:, 16:48]).all()
    other = blender.decode_png(_colluders_image(6, (64, 36), None), width=64, height=36)
    assert blender.compare_pixels(full, other).verdict == "disagree"


def test_the_friend_knows_the_smart_and_colluding_cheats() -> None:
    """The demo's cheat kinds are all known to the cheats' module, which a friend without --cheat never loads."""
    import subprocess
    import sys

    assert {"black", "noise", "stale", "smart", "colluding"} <= set(CHEATS)
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, frender.apps.friend, frender.apps.cli; print('frender.apps.cheats' in sys.modules)"],
        capture_output=True, text=True, check=True,
    )
    assert loaded.stdout.strip() == "False"
