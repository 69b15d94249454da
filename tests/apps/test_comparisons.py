"""The requester's comparisons in worker processes: the verdicts of the comparator itself, and a copy that passed
arrival (its container only) but does not decode is refused where it is decoded, whole frame or crop."""

from __future__ import annotations

import pytest

from frender import blender
from frender.apps.comparisons import ComparePool, compare_copies
from test_requester_safety import _idat_bomb

W, H = 64, 32


@pytest.fixture(scope="module")
def pool():
    pool = ComparePool(workers=1)
    yield pool
    pool.close()


async def test_the_pool_gives_the_comparators_verdicts_and_refuses_a_bomb_where_it_decodes(pool, tmp_path):
    """Through worker processes: equal frames are identical, other frames disagree, a crop agrees with its frame's
    window; an IDAT bomb (a whole container) is BadImage with its reason, as whole frame and as crop."""
    box = blender.Window(left=16, top=8, width=16, height=8)
    rendered = box.padded(4, W, H, align=8)
    paths = {}
    for name, data in {
        "one": blender.modelled_frame(1, width=W, height=H), "copy": blender.modelled_frame(1, width=W, height=H),
        "two": blender.modelled_frame(2, width=W, height=H), "bomb": _idat_bomb(W, H, 64 << 20),
        "bomb_crop": _idat_bomb(rendered.width, rendered.height, 64 << 20),
    }.items():
        paths[name] = tmp_path / f"{name}.png"
        paths[name].write_bytes(data)
    crop = tmp_path / "crop.png"
    crop.write_bytes(_encode(rendered.of(blender.decode_png(paths["one"], width=W, height=H)).copy()))  # an honest crop render
    for name in ("bomb", "bomb_crop"):
        size = (W, H) if name == "bomb" else (rendered.width, rendered.height)
        blender.check_output(paths[name], blender.PNG8, width=size[0], height=size[1])  # arrival takes it

    whole = (blender.PNG8, W, H, 4, 8)
    assert (await pool.run(compare_copies, paths["one"], paths["copy"], "pair", None, *whole)).verdict == "identical"
    assert (await pool.run(compare_copies, paths["one"], paths["two"], "pair", None, *whole)).verdict == "disagree"
    assert (await pool.run(compare_copies, paths["one"], crop, "pair", (box, rendered), *whole)).verdict == "identical"
    assert (await pool.run(compare_copies, crop, paths["one"], "subject", (box, rendered), *whole)).verdict == "identical"
    with pytest.raises(blender.BadImage, match="decompression bomb"):
        await pool.run(compare_copies, paths["one"], paths["bomb"], "pair", None, *whole)
    with pytest.raises(blender.BadImage, match="decompression bomb"):
        await pool.run(compare_copies, paths["one"], paths["bomb_crop"], "pair", (box, rendered), *whole)
    assert pool.pids()  # they ran in a worker process


def _encode(pixels) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGBA").save(buffer, "PNG")
    return buffer.getvalue()


async def test_a_dead_worker_fails_its_call_and_the_next_call_gets_a_fresh_pool(tmp_path):
    """A worker that dies (killed, out of memory) fails the call it ran with BrokenProcessPool, which the requester
    keeps owed; the next call starts a fresh pool and is answered."""
    import os
    from concurrent.futures.process import BrokenProcessPool

    pool = ComparePool(workers=1)
    try:
        with pytest.raises(BrokenProcessPool):
            await pool.run(os._exit, 1)
        assert await pool.run(pow, 2, 10) == 1024
    finally:
        pool.close()


async def test_warm_starts_every_worker_before_the_first_comparison():
    """A requester warms its pool as it starts: every worker runs before a check is owed, so none waits for a process start."""
    pool = ComparePool(workers=2)
    try:
        assert pool.pids() == []
        await pool.warm()
        assert len(pool.pids()) == 2
    finally:
        pool.close()
