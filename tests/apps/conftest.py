"""A local farm of real processes for the end-to-end tests, and the tiny scene they render."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from frender import blender
from frender.apps import messages as msg
from frender.apps.client import create_account, operator_call
from frender.apps.demo import Cluster, start_friend, start_master, start_requester, wait_for_friends
from frender.apps.replay import audit
from frender.transports import Address

FRAMES = 8
SIZE = (64, 36)


@pytest.fixture(scope="session")
def scene_facts() -> tuple[int, tuple[int, int]]:
    """How many frames the tiny scene has, and its size."""
    return FRAMES, SIZE


@pytest.fixture(scope="session")
def tiny_scene(tmp_path_factory) -> Path:
    """The demo scene at 64x36, 4 samples, 8 frames: a frame renders in about 10 ms."""
    path = tmp_path_factory.mktemp("scene") / "tiny.blend"
    return blender.build_demo_scene(path, frames=FRAMES, resolution=SIZE, samples=4)


@pytest.fixture(scope="session")
def direct(tiny_scene, tmp_path_factory) -> dict[int, Path]:
    """Every frame of the tiny scene rendered directly by the same Blender, in one process."""
    work = tmp_path_factory.mktemp("direct")
    blend = work / "tiny.blend"
    blend.write_bytes(tiny_scene.read_bytes())
    rendered = trio.run(lambda: blender.render(blender.find_backend(), blend, work, range(1, FRAMES + 1)))
    return {r.frame: r.path for r in rendered}


class Farm:
    """A master, a requester and friends as separate processes, with handles to kill and restart them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.cluster = Cluster(root)
        self.master: Address | None = None
        self.master_home = root / "homes" / "master"
        self.requester: Address | None = None
        self.friends: list[str] = []
        self.accounts: set[int] = set()  # friend indices whose user's account is bound
        self.blenders: tuple[str, ...] = ()  # what the requester holds; empty: every Blender held here
        self.measure_crops = True  # the requester measures each file's windows against its frame at submit
        self.seconds_per_frame = 0.5  # the requester's estimate: a task half as long again is late and backed up
        self.requester_options: tuple[str, ...] = ()  # more options of `frender run requester`

    async def start(self, friends: int = 0, cheats: tuple[str | None, ...] = (), blenders: tuple[str, ...] = ()) -> None:
        """Start the master and the requester (holding ``blenders``, default every Blender held here), then friends."""
        self.blenders = blenders
        self.master, self.master_home = await trio.to_thread.run_sync(lambda: start_master(self.cluster))
        await self.start_requester()
        await operator_call(self.master, self.master_home, msg.Trust(key=self.requester.fingerprint, name="test"))
        artist = await create_account(self.master, self.root / "homes" / "artist", "artist")
        await operator_call(self.master, self.master_home, msg.Grant(user="artist", key=artist.key, amount=500))
        for i in range(friends):
            await self.add_friend(cheat=cheats[i] if i < len(cheats) else None)
        await wait_for_friends(self.master, self.master_home, friends)

    async def start_requester(self) -> None:
        listen = f"127.0.0.1:{self.requester.port}" if self.requester else "127.0.0.1:0"
        self.requester = await trio.to_thread.run_sync(
            lambda: start_requester(
                self.cluster, self.master, seconds_per_frame=self.seconds_per_frame, startup_seconds=2.0, listen=listen, blenders=self.blenders,
                measure_crops=self.measure_crops, extra=self.requester_options,
            )
        )

    async def restart_master(self) -> None:
        (self.master_home / "address").unlink(missing_ok=True)
        self.master, _ = await trio.to_thread.run_sync(lambda: start_master(self.cluster, listen=f"127.0.0.1:{self.master.port}"))

    async def add_friend(self, cheat: str | None = None, blender: str | None = None, wrap: tuple[str, ...] = ()) -> str:
        index = len(self.friends) + 1
        if index not in self.accounts:
            await self.prepare_friends(1)
        name = start_friend(self.cluster, self.master, index, cheat=cheat, blender=blender, wrap=wrap)
        self.friends.append(name)
        return name

    async def prepare_friends(self, count: int) -> None:
        """Bind the accounts of the next ``count`` friends now, so adding them later starts their processes at once."""
        first = len(self.friends) + 1
        for index in range(first, first + count):
            if index not in self.accounts:
                await create_account(self.master, self.root / "homes" / f"friend{index}", f"friend{index}")
                self.accounts.add(index)

    def alive(self, name: str) -> bool:
        return name.split("/")[0] in self.cluster.procs

    def kill(self, name: str) -> None:
        """kill -9 a process ("master", "requester", or a friend's name): no goodbye, no hand-back."""
        proc = self.cluster.procs.pop(name.split("/")[0])
        proc.kill()
        proc.wait()

    def audit(self, which: str) -> dict:
        return audit(self.root / f"{which}.db")

    def log_of(self, name: str) -> str:
        return (self.cluster.logs / f"{name}.log").read_text(errors="replace")

    def events(self, which: str = "requester") -> list[object]:
        """Every event of ``which``'s log, decoded, in order (the process may still hold it open: read only)."""
        from frender.store import SqliteLog, replay

        logged: list[object] = []
        log = SqliteLog(self.root / f"{which}.db", create=False)
        try:
            replay(log, logged.append)
        finally:
            log.close()
        return logged


@pytest.fixture
def farm(tmp_path):
    farm = Farm(tmp_path)
    yield farm
    farm.cluster.stop_all()
