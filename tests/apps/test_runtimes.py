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


@pytest.fixture(scope="module")
def blender42() -> blender.BlenderBackend:
    """Blender 4.2 LTS as `frender blender add 4.2` installs it (scripts/test.sh adds it)."""
    try:
        return blender.held_runtimes(["4.2"])[0]
    except blender.NoRuntime:
        pytest.skip("no Blender 4.2 held here: `frender blender add 4.2` installs it")


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
    await farm.start(friends=0)
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
    await farm.add_friend(wrap=("bwrap", "--dev-bind", "/", "/", "--ro-bind", str(fake), "/proc/cpuinfo"))
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
