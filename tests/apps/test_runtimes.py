"""One farm, several Blenders: each job renders with the Blender that saved its file, through real processes."""

from __future__ import annotations

import pytest
import trio
import zstandard

from frender import blender
from frender.apps.client import submit
from frender.apps.demo import wait_for_friends
from frender.transports import RemoteError

pytestmark = [pytest.mark.blender, pytest.mark.slow, pytest.mark.timeout(300)]

FRAMES, SIZE = 4, (64, 36)


def held(version: str) -> blender.BlenderBackend:
    """Blender ``version`` as `frender blender add` installs it (scripts/test.sh adds 4.2, and 5.3 where Python 3.13 is)."""
    try:
        return blender.held_runtimes([version])[0]
    except blender.NoRuntime:
        pytest.skip(f"no Blender {version} held here: `frender blender add {version}` installs it")


@pytest.fixture(scope="module")
def blender42() -> blender.BlenderBackend:
    return held("4.2")


@pytest.fixture(scope="module")
def scene42(blender42, tmp_path_factory):
    """The demo scene saved by Blender 4.2, and its frames rendered directly by 4.2 and by 5.0."""
    work = tmp_path_factory.mktemp("scene42")
    scene = blender.build_demo_scene(work / "lts.blend", frames=FRAMES, resolution=SIZE, samples=4, backend=blender42)
    direct = {}
    for name, backend in (("4.2", blender42), ("5.0", blender.find_backend())):
        out = work / name
        out.mkdir()
        (out / "lts.blend").write_bytes(scene.read_bytes())
        rendered = trio.run(lambda: blender.render(backend, out / "lts.blend", out, range(1, FRAMES + 1)))
        direct[name] = {r.frame: r.path for r in rendered}
    return scene, direct


def identical(a, b) -> bool:
    return blender.compare(a, b, width=SIZE[0], height=SIZE[1]).verdict == "identical"


async def test_each_job_renders_with_its_files_blender(farm, tiny_scene, direct, scene42, tmp_path):
    """A 4.2 file renders with 4.2 on the friends holding it, identical to a direct 4.2 render (5.0 renders it
    otherwise); a 5.0 file renders with 5.0 on the same farm; a 5.3 file is refused naming what the farm holds."""
    scene, by = scene42
    assert not all(identical(by["4.2"][f], by["5.0"][f]) for f in range(1, FRAMES + 1)), "4.2 and 5.0 render alike: the test proves nothing"
    await farm.start(friends=0, blenders=("5.0", "4.2"))
    for version in ("4.2", "4.2", None):
        await farm.add_friend(blender=version)
    await wait_for_friends(farm.master, farm.master_home, 3)
    home = farm.root / "homes" / "artist"
    with trio.fail_after(200):
        lts = await submit(scene, requester=farm.requester, user="artist", home=home, friends=2, out=tmp_path / "lts")
        current = await submit(tiny_scene, requester=farm.requester, user="artist", home=home, friends=1, out=tmp_path / "current")
    assert lts.frames == tuple(range(1, FRAMES + 1))
    assert all(identical(lts.out / blender.frame_name(f), by["4.2"][f]) for f in lts.frames)
    assert all(identical(current.out / blender.frame_name(f), direct[f]) for f in current.frames)
    jobs = {j["job"]: j for j in farm.audit("master")["master"]["jobs"]}
    assert "Blender 4.2.23" in jobs[lts.job]["profile"] and "Blender 5.0.1" in jobs[current.job]["profile"]

    newer = tmp_path / "newer.blend"
    plain = zstandard.ZstdDecompressor().stream_reader(tiny_scene.read_bytes()).read()
    newer.write_bytes(zstandard.ZstdCompressor().compress(plain.replace(b"v0500", b"v0503", 1)))
    with pytest.raises(RemoteError, match=r"saved by Blender 5.3, newer than every Blender held here \(5.0.1, 4.2.23\)"):
        await submit(newer, requester=farm.requester, user="artist", home=home, friends=1, out=tmp_path / "newer")


def cpuinfo_without_simd(tmp_path):
    """This machine's /proc/cpuinfo with its AVX2 and AVX-512 flags removed: another CPU class, the same kernels.

    Cycles picks its kernel from the processor itself (CPUID), so only the class a friend reports changes.
    """
    lines = []
    for line in open("/proc/cpuinfo").read().splitlines():
        if line.split(":")[0].strip() == "flags":
            name, _, flags = line.partition(":")
            line = name + ":" + " ".join(f for f in flags.split() if not f.startswith(("avx2", "avx512")))
        lines.append(line)
    fake = tmp_path / "cpuinfo"
    fake.write_text("\n".join(lines) + "\n")
    return fake


@pytest.mark.skipif(not blender.sandbox_available(), reason="needs bubblewrap to show a friend another /proc/cpuinfo")
async def test_a_friend_of_another_cpu_class_that_renders_alike_takes_work(farm, tiny_scene, direct, tmp_path):
    """A friend reporting another CPU class than the requester's, whose calibration agrees, is granted the job,
    passes its checks and is paid; its frames are identical to a direct render."""
    fake = cpuinfo_without_simd(tmp_path)
    await farm.start(friends=1)
    # --die-with-parent: the friend inside ends with bwrap when the farm stops (bwrap passes no signal on)
    await farm.add_friend(wrap=("bwrap", "--die-with-parent", "--dev-bind", "/", "/", "--ro-bind", str(fake), "/proc/cpuinfo"))
    await wait_for_friends(farm.master, farm.master_home, 2)
    friends = farm.audit("master")["master"]["friends"]
    classes = {name: f["profile"].split("/")[1].split()[0] for name, f in friends.items()}
    assert classes["friend2/box"] != classes["friend1/box"], classes  # friend2 reports another CPU class
    with trio.fail_after(200):
        result = await submit(tiny_scene, requester=farm.requester, user="artist", home=farm.root / "homes" / "artist",
                              friends=2, out=tmp_path / "out")  # fmt: skip
    assert all(identical(result.out / blender.frame_name(f), direct[f]) for f in result.frames)
    job = next(j for j in farm.audit("master")["master"]["jobs"] if j["job"] == result.job)
    assert sorted(job["friends"]) == ["friend1/box", "friend2/box"] and job["evicted"] == []


async def test_a_file_saved_by_the_newest_blender_renders_where_it_is_held(farm, tmp_path):
    """A file saved by Blender 5.3 (bpy for Python 3.13 only) renders with 5.3 on a farm run from Python 3.11 that
    holds it beside 5.0, identical to a direct 5.3 render."""
    current = held("5.3")
    scene = blender.build_demo_scene(tmp_path / "new.blend", frames=2, resolution=SIZE, samples=4, backend=current)
    work = tmp_path / "direct"
    work.mkdir()
    (work / "new.blend").write_bytes(scene.read_bytes())
    direct = {r.frame: r.path for r in await blender.render(current, work / "new.blend", work, [1, 2])}
    await farm.start(friends=0)  # the requester holds every Blender added here
    await farm.add_friend(blender="5.3")
    await wait_for_friends(farm.master, farm.master_home, 1)
    with trio.fail_after(200):
        result = await submit(scene, requester=farm.requester, user="artist", home=farm.root / "homes" / "artist", friends=1, out=tmp_path / "out")
    assert result.frames == (1, 2) and all(identical(result.out / blender.frame_name(f), direct[f]) for f in result.frames)
    job = next(j for j in farm.audit("master")["master"]["jobs"] if j["job"] == result.job)
    assert "Blender 5.3" in job["profile"]
