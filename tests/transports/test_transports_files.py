"""The file socket: checked, capped, atomic transfers, and flat memory for big files."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
import threading
from functools import partial
from pathlib import Path

import pytest
import trio
import trio.testing
from transport_fixtures import Echo

from frender.transports import (
    Address,
    FileHeader,
    FileLink,
    Handler,
    Identity,
    Limits,
    ProtocolError,
    Refused,
    RemoteError,
    file_header,
    get_file,
    put_file,
    serve,
)
from frender.transports import _files
from frender.transports._channel import Channel, single_error
from frender.transports._files import receive_file, send_file
from frender.transports._handshake import server_handshake
from frender.transports.client import _dial, _expect, _opened
from frender.transports.messages import OpenGet, OpenPut, Ready, Reply


def _only_complete_files(folder: Path) -> list[str]:
    """Every name in ``folder``, temporary .part files included: they must be gone too."""
    return sorted(path.name for path in folder.iterdir()) if folder.exists() else []


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "render.png"
    path.write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    return path


async def test_put_then_get_round_trips_a_file(address, client_identity, files, source, tmp_path) -> None:
    """A put lands at the handler's id-built path; a get brings the same bytes back."""
    header = await file_header(source, kind="frame", job=12, frame=3)
    assert await put_file(address, client_identity, header, source) == Echo("frame_0003")
    assert (files / "12" / "frame_0003").read_bytes() == source.read_bytes()
    for expected in ("", header.sha256):
        dest = tmp_path / f"back{expected[:4]}.png"
        wanted = FileHeader(kind="frame", job=12, frame=3, sha256=expected)
        assert await get_file(address, client_identity, wanted, dest, max_size=1 << 30) == dest
        assert dest.read_bytes() == source.read_bytes()
    assert _only_complete_files(files / "12") == ["frame_0003"]


async def test_hash_mismatch_leaves_no_file(address, client_identity, files, source) -> None:
    """Bytes that do not hash to the header's sha256 are refused and deleted."""
    header = await file_header(source, kind="frame", job=1)
    lying = FileHeader(kind="frame", job=1, size=header.size, sha256="0" * 64)
    with pytest.raises(RemoteError) as refused:
        await put_file(address, client_identity, lying, source)
    assert refused.value.code == "sha256_mismatch"
    assert _only_complete_files(files / "1") == []


@pytest.mark.parametrize(("size", "job"), [(100_000, 2), (3_000_000, 7)], ids=["small", "large"])
async def test_truncated_put_leaves_no_file(address, client_identity, files, caplog, size, job) -> None:
    """A sender that stops halfway and hangs up leaves nothing behind (a large body is received on two threads)."""
    body = os.urandom(size)
    header = FileHeader(kind="frame", job=job, size=len(body), sha256=hashlib.sha256(body).hexdigest())
    stream = await _dial(address, Limits())
    async with _opened(stream, client_identity, address.fingerprint, OpenPut(header=header), Limits()) as channel:
        await _expect(channel, Ready)
        await channel.send_bytes(body[: size // 2], 5)
    with trio.fail_after(5):
        while f"peer closed after {size // 2} of {size} bytes" not in caplog.text:
            await trio.sleep(0.01)
    assert _only_complete_files(files / str(job)) == []


@pytest.mark.parametrize("limits", [Limits(max_per_host=1000, message_deadline=0.3, min_file_rate=1e9)])
@pytest.mark.parametrize(("size", "sent", "job"), [(100_000, 10, 3), (3_000_000, 1_500_000, 8)], ids=["small", "large"])
async def test_stalled_put_is_dropped_at_its_deadline(address, client_identity, files, caplog, size, sent, job) -> None:
    """A body that stops arriving is dropped at message_deadline + size / min_file_rate, its threads ended, nothing kept."""
    body = os.urandom(size)
    header = FileHeader(kind="frame", job=job, size=len(body), sha256=hashlib.sha256(body).hexdigest())
    stream = await _dial(address, Limits())
    async with _opened(stream, client_identity, address.fingerprint, OpenPut(header=header), Limits()) as channel:
        await _expect(channel, Ready)
        await channel.send_bytes(body[:sent], 5)
        with trio.fail_after(5):
            assert await channel.receive_some(1) == b""
    assert "not received within" in caplog.text
    assert _only_complete_files(files / str(job)) == []
    assert _threads_in_file_transfers() == []


@pytest.mark.parametrize("limits", [Limits(max_per_host=1000, max_file_size=1 << 20)])
async def test_over_size_put_is_refused_before_any_byte(address, client_identity, files, source) -> None:
    """A header above max_file_size is refused before the body is sent."""
    header = await file_header(source, kind="frame", job=4)
    with pytest.raises(RemoteError) as refused:
        await put_file(address, client_identity, header, source)
    assert refused.value.code == "too_large"
    assert _only_complete_files(files / "4") == []


async def test_get_refuses_files_over_max_size_or_of_another_hash(
    address, client_identity, files, source, tmp_path
) -> None:
    """The fetcher's own cap and expected sha256 hold: nothing lands at dest."""
    header = await file_header(source, kind="blend", job=5)
    await put_file(address, client_identity, header, source)
    dest = tmp_path / "fetched.blend"
    with pytest.raises(ProtocolError, match="more than max_size"):
        await get_file(address, client_identity, FileHeader(kind="blend", job=5), dest, max_size=1000)
    with pytest.raises(RemoteError, match="sha256_mismatch"):
        await get_file(address, client_identity, FileHeader(kind="blend", job=5, sha256="1" * 64), dest, max_size=1 << 30)
    with pytest.raises(RemoteError, match="no_file"):
        await get_file(address, client_identity, FileHeader(kind="blend", job=6), dest, max_size=1 << 30)
    assert not dest.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")] == []


async def test_put_checks_its_own_header(address, client_identity, source) -> None:
    """put_file refuses a header that does not describe the file (the caller's bug)."""
    with pytest.raises(ValueError, match="sha256"):
        await put_file(address, client_identity, FileHeader(kind="frame", job=1, size=1), source)
    with pytest.raises(ValueError, match="bytes"):
        await put_file(address, client_identity, FileHeader(kind="frame", job=1, size=1, sha256="a" * 64), source)


async def test_get_of_a_file_not_yet_hashed_sends_its_sha256_after_the_body(
    address, client_identity, files, source, tmp_path
) -> None:
    """The first get of a file hashes it while sending; a wrong expected sha256 is refused and lands nothing."""
    (files / "9").mkdir()
    (files / "9" / "blend_0000").write_bytes(source.read_bytes())
    sha256 = hashlib.sha256(source.read_bytes()).hexdigest()
    dest = tmp_path / "fetched.blend"
    with pytest.raises(RemoteError, match="sha256_mismatch"):
        await get_file(address, client_identity, FileHeader(kind="blend", job=9, sha256="2" * 64), dest, max_size=1 << 30)
    assert _only_complete_files(tmp_path) == ["render.png", "served"]
    for expected in (sha256, ""):  # hashed while sent above; known from then on
        await get_file(address, client_identity, FileHeader(kind="blend", job=9, sha256=expected), dest, max_size=1 << 30)
        assert dest.read_bytes() == source.read_bytes()


async def test_get_checks_the_sha256_sent_after_the_body(nursery, server_identity, client_identity, tmp_path) -> None:
    """A body that does not hash to the sha256 sent after it is refused and deleted."""
    body = os.urandom(1_000_000)

    async def lie(channel: Channel, opening: object) -> None:
        header = FileHeader(kind="blend", job=1, size=len(body))
        await channel.send_message(header)
        await channel.send_bytes(body, 5)
        await channel.send_message(FileHeader(kind="blend", job=1, size=len(body), sha256="3" * 64))

    address = await _fake_server(nursery, server_identity, lie)
    with pytest.raises(ProtocolError, match="sha256"):
        await get_file(address, client_identity, FileHeader(kind="blend", job=1), tmp_path / "x.blend", max_size=1 << 30)
    assert _only_complete_files(tmp_path) == []


async def test_cancelled_get_mid_body_ends_its_threads_and_leaves_no_file(
    nursery, server_identity, client_identity, tmp_path
) -> None:
    """A get cancelled while the body is half received returns, with no thread left in it and no file."""
    size = 8_000_000

    async def stall_halfway(channel: Channel, opening: object) -> None:
        await channel.send_message(FileHeader(kind="blend", job=1, size=size, sha256="4" * 64))
        await channel.send_bytes(os.urandom(size // 2), 5)

    address = await _fake_server(nursery, server_identity, stall_halfway)
    with trio.fail_after(10):
        with trio.move_on_after(0.5) as scope:
            await get_file(address, client_identity, FileHeader(kind="blend", job=1), tmp_path / "x.blend", max_size=1 << 30)
    assert scope.cancelled_caught
    assert _only_complete_files(tmp_path) == []
    assert _threads_in_file_transfers() == []


@pytest.mark.fast_path_only
async def test_put_to_a_peer_that_stops_reading_holds_no_thread_and_can_be_cancelled(
    nursery, server_identity, client_identity, tmp_path
) -> None:
    """A put whose receiver stops reading waits on the event loop, not in a thread, until cancelled."""
    source = tmp_path / "big.blend"
    source.write_bytes(os.urandom(32_000_000))

    async def never_read(channel: Channel, opening: object) -> None:
        await channel.send_message(Ready())

    address = await _fake_server(nursery, server_identity, never_read)
    header = await file_header(source, kind="blend", job=1)
    with trio.fail_after(10):
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as putting:
                putting.start_soon(put_file, address, client_identity, header, source)
                while not _threads_in_file_transfers():  # sending until the socket's buffers are full
                    await trio.sleep(0.005)
                while _threads_in_file_transfers():  # then the wait goes back to the event loop
                    await trio.sleep(0.005)
                scope.cancel()
    assert _threads_in_file_transfers() == []


@pytest.mark.fast_path_only
async def test_a_stalled_body_holds_no_thread_and_resumes(address, client_identity, files) -> None:
    """A large put that pauses halfway frees its receiving threads meanwhile and still lands whole."""
    body = os.urandom(3_000_000)
    header = FileHeader(kind="frame", job=10, size=len(body), sha256=hashlib.sha256(body).hexdigest())
    stream = await _dial(address, Limits())
    async with _opened(stream, client_identity, address.fingerprint, OpenPut(header=header), Limits()) as channel:
        await _expect(channel, Ready)
        await channel.send_bytes(body[:1_500_000], 5)
        with trio.fail_after(5):
            while not _threads_in_file_transfers():  # receiving the first half
                await trio.sleep(0.005)
            while _threads_in_file_transfers():  # then waiting for the rest on the event loop
                await trio.sleep(0.005)
        await channel.send_bytes(body[1_500_000:], 5)
        assert await _expect(channel, Reply)
    assert (files / "10" / "frame_0000").read_bytes() == body


async def test_file_bodies_over_a_stream_without_socket(source, tmp_path) -> None:
    """Streams that are not TLS on a socket (memory streams) carry bodies under the same checks."""
    ends = trio.testing.memory_stream_pair()
    sender, receiver = (Channel(end, Limits()) for end in ends)
    header = await file_header(source, kind="frame", job=1)
    dest = tmp_path / "copy.png"
    async with trio.open_nursery() as nursery:
        nursery.start_soon(send_file, sender, source, header.size)
        await receive_file(receiver, header, dest)
    assert dest.read_bytes() == source.read_bytes()
    lying = FileHeader(kind="frame", job=1, size=header.size, sha256="5" * 64)
    with pytest.raises(ProtocolError, match="sha256"), single_error():
        async with trio.open_nursery() as nursery:
            nursery.start_soon(send_file, sender, source, header.size)
            await receive_file(receiver, lying, tmp_path / "lie.png")
    assert not (tmp_path / "lie.png").exists()


async def test_a_file_changed_while_sent_is_reported(source) -> None:
    """send_file notices a file rewritten in place while it was being read."""
    ends = trio.testing.lockstep_stream_pair()
    sender, receiver = (Channel(end, Limits(chunk_size=1 << 20)) for end in ends)
    size = source.stat().st_size
    with pytest.raises(OSError, match="changed while being sent"), single_error():
        async with trio.open_nursery() as nursery:
            nursery.start_soon(send_file, sender, source, size)
            await receiver.receive_some(1 << 20)
            with open(source, "r+b") as file:  # rewritten in place, as no fRender writer does
                file.write(b"changed")
                os.utime(file.fileno(), ns=(1, 1))
            taken = 1 << 20
            while taken < size:
                taken += len(await receiver.receive_some(1 << 20))


def _threads_in_file_transfers() -> list[str]:
    """Threads whose stack is inside the file-body code right now."""
    return [
        thread.name
        for thread in threading.enumerate()
        if (frame := sys._current_frames().get(thread.ident or 0)) is not None and _inside_files(frame)
    ]


def _inside_files(frame: object) -> bool:
    while frame is not None:
        if frame.f_code.co_filename == _files.__file__:  # type: ignore[attr-defined]
            return True
        frame = frame.f_back  # type: ignore[attr-defined]
    return False


async def _fake_server(nursery: trio.Nursery, identity: Identity, behaviour) -> Address:  # noqa: ANN001
    """A server that does the handshake, takes the opening, runs ``behaviour`` and then stalls forever."""

    async def handle(stream: trio.SocketStream) -> None:
        channel = Channel(trio.SSLStream(stream, identity.server_context(), server_side=True, https_compatible=True), Limits())
        await server_handshake(channel, identity, "test")
        opening = await channel.expect((OpenPut, OpenGet))
        await behaviour(channel, opening)
        await trio.sleep_forever()

    listeners = await nursery.start(partial(trio.serve_tcp, handle, 0, host="127.0.0.1"))
    return Address("127.0.0.1", listeners[0].socket.getsockname()[1], identity.fingerprint)


_RECEIVER = textwrap.dedent(
    """
    import json, os, sys, trio
    from functools import partial
    from pathlib import Path
    from frender.transports import Handler, Identity, serve

    root = Path(sys.argv[1])
    done = trio.Event()

    class Keep(Handler):
        async def accept_put(self, peer, header):
            return root / "big.blend"

        async def put_done(self, peer, header, path):
            done.set()
            return await super().put_done(peer, header, path)

    def resident() -> int:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    async def main():
        identity = Identity.load_or_create(root / "home")
        async with trio.open_nursery() as nursery:
            port = await nursery.start(partial(serve, identity, "127.0.0.1", 0, Keep()))
            before = peak = resident()
            print(json.dumps([port, identity.fingerprint]), flush=True)
            while not done.is_set():  # sample the resident set through the transfer
                peak = max(peak, resident())
                await trio.sleep(0.005)
            print(json.dumps({"growth_kib": (peak - before) // 1024}), flush=True)
            nursery.cancel_scope.cancel()

    trio.run(main)
    """
)


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="samples RSS from /proc")
async def test_256_mb_transfer_keeps_receiver_memory_flat(tmp_path, client_identity) -> None:
    """A 256 MB put grows the receiving process's peak RSS by far less than the file."""
    size = 256 << 20
    source = tmp_path / "big.src"
    block = os.urandom(1 << 20)
    with open(source, "wb") as file:
        for _ in range(size >> 20):
            file.write(block)
    receiver_root = tmp_path / "receiver"
    receiver_root.mkdir()
    root = Path(__file__).resolve().parents[2]
    async with trio.open_nursery() as nursery:
        process = await nursery.start(
            partial(
                trio.run_process,
                [sys.executable, "-c", _RECEIVER, str(receiver_root)],
                stdout=subprocess.PIPE,
                env={**os.environ, "PYTHONPATH": str(root)},
                check=False,
            )
        )
        lines = _lines(process.stdout)
        port, fingerprint = json.loads(await lines.__anext__())
        header = await file_header(source, kind="blend", job=1)
        with trio.fail_after(30):
            await put_file(Address("127.0.0.1", port, fingerprint), client_identity, header, source)
            report = json.loads(await lines.__anext__())
    assert (receiver_root / "big.blend").stat().st_size == size
    print("receiver peak RSS growth:", report)
    assert report["growth_kib"] < 32 * 1024, report


async def _lines(stream: trio.abc.ReceiveStream):
    buffer = b""
    while True:
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            yield line.decode()
        data = await stream.receive_some()
        if not data:
            return
        buffer += data


class _ServedBy(Handler):
    """Serves any file of ``root`` by frame number, noting which connection (its task) asked."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.connections: list[object] = []

    async def open_get(self, peer, header: FileHeader) -> Path:
        self.connections.append(trio.lowlevel.current_task())
        path = self.root / f"{header.frame}.png"
        if not path.exists():
            raise Refused("missing", f"no frame {header.frame}")
        return path


async def _link_server(nursery, server_identity, root: Path, limits: Limits) -> tuple[Address, _ServedBy]:
    handler = _ServedBy(root)
    port = await nursery.start(partial(serve, server_identity, "127.0.0.1", 0, handler, limits=limits))
    return Address("127.0.0.1", port, server_identity.fingerprint), handler


async def test_a_link_fetches_many_files_over_one_connection(nursery, server_identity, client_identity, tmp_path) -> None:
    """Each file is checked like get_file's; all of them come over the first connection."""
    served = tmp_path / "served"
    served.mkdir()
    bodies = {frame: os.urandom(1000 * frame) for frame in range(1, 6)}
    for frame, body in bodies.items():
        (served / f"{frame}.png").write_bytes(body)
    address, handler = await _link_server(nursery, server_identity, served, Limits(max_per_host=1000))
    async with FileLink(address, client_identity) as link:
        for frame in bodies:
            await link.get(FileHeader(kind="frame", job=1, frame=frame), tmp_path / f"got{frame}", max_size=1 << 20)
        with pytest.raises(RemoteError) as refused:
            await link.get(FileHeader(kind="frame", job=1, frame=9), tmp_path / "got9", max_size=1 << 20)
        assert refused.value.code == "missing"
        await link.get(FileHeader(kind="frame", job=1, frame=1), tmp_path / "again", max_size=1 << 20)
    assert all((tmp_path / f"got{frame}").read_bytes() == body for frame, body in bodies.items())
    assert len(set(handler.connections[:6])) == 1  # five files and the refusal: one connection
    assert handler.connections[6] is not handler.connections[0]  # a refusal ends it; the next get redials
    assert not (tmp_path / "got9").exists()


async def test_a_link_redials_when_the_server_closed_its_idle_connection(
    nursery, server_identity, client_identity, tmp_path
) -> None:
    """The server waits message_deadline for the next get, then closes; the link dials again."""
    served = tmp_path / "served"
    served.mkdir()
    (served / "1.png").write_bytes(b"one")
    address, handler = await _link_server(nursery, server_identity, served, Limits(max_per_host=1000, message_deadline=0.2))
    for client_limits in (Limits(message_deadline=0.2), Limits()):  # it knows the server's wait, or it does not
        handler.connections.clear()
        async with FileLink(address, client_identity, limits=client_limits) as link:
            await link.get(FileHeader(kind="frame", job=1, frame=1), tmp_path / "a", max_size=100)
            await trio.sleep(0.5)
            await link.get(FileHeader(kind="frame", job=1, frame=1), tmp_path / "b", max_size=100)
        assert (tmp_path / "b").read_bytes() == b"one"
        assert len(set(handler.connections)) == 2


async def test_a_link_puts_many_files_over_one_connection(address, client_identity, files, tmp_path) -> None:
    """Puts after the first reuse its connection; each lands and is answered like put_file's."""
    async with FileLink(address, client_identity) as link:
        for frame in range(1, 5):
            path = tmp_path / f"{frame}.png"
            path.write_bytes(os.urandom(5000 + frame))
            header = await file_header(path, kind="frame", job=3, frame=frame)
            assert await link.put(header, path) == Echo(f"frame_{frame:04d}")
            assert (files / "3" / f"frame_{frame:04d}").read_bytes() == path.read_bytes()
        opened = link._channel
        lying = FileHeader(kind="frame", job=3, frame=9, size=path.stat().st_size, sha256="0" * 64)
        with pytest.raises(RemoteError):
            await link.put(lying, path)
        assert link._channel is None and opened is not None  # a refused transfer closes the connection


async def test_a_put_reports_its_progress_within_the_file(address, client_identity, files, tmp_path, fast_path) -> None:
    """A put of a few MB tells its caller, on the caller's thread, increasing byte counts that end at the file's size."""
    from frender.transports import _fastpath

    path = tmp_path / "scene.blend"
    path.write_bytes(os.urandom(13 * 1024 * 1024 + 5))
    header = await file_header(path, kind="frame", job=4, frame=1)
    seen: list[int] = []
    threads: set[int] = set()

    def progress(sent: int) -> None:
        seen.append(sent)
        threads.add(threading.get_ident())

    bodies = _fastpath.TAKEN["body"]
    assert await put_file(address, client_identity, header, path, progress=progress) == Echo("frame_0001")
    assert (files / "4" / "frame_0001").read_bytes() == path.read_bytes()
    assert len(seen) >= 4  # every 4 MiB at the latest, then the end
    assert seen == sorted(set(seen)) and seen[0] > 0 and seen[-1] == header.size
    assert threads == {threading.get_ident()}
    assert (_fastpath.TAKEN["body"] > bodies) == fast_path  # the fast path's threads reported, or trio's own path did


async def test_a_puts_body_waits_for_the_turn_the_handler_gives(nursery, server_identity, client_identity, tmp_path, source) -> None:
    """While the handler's ``receiving`` holds a put back, the peer is not told to send: no byte lands; once its turn
    comes the put completes, and the turn is held until the body is in."""
    from transport_fixtures import EchoHandler

    turn = trio.Lock()
    held_while_receiving: list[bool] = []

    class TakingTurns(EchoHandler):
        def receiving(self, peer, header):
            return turn

        async def put_done(self, peer, header, path):
            held_while_receiving.append(turn.locked())
            return await super().put_done(peer, header, path)

    root = tmp_path / "served"
    root.mkdir()
    port = await nursery.start(partial(serve, server_identity, "127.0.0.1", 0, TakingTurns(root), limits=Limits(max_per_host=1000)))
    address = Address("127.0.0.1", port, server_identity.fingerprint)
    header = await file_header(source, kind="frame", job=5, frame=1)
    done = trio.Event()

    async def put() -> None:
        await put_file(address, client_identity, header, source)
        done.set()

    async with turn:  # someone else's turn
        nursery.start_soon(put)
        await trio.testing.wait_all_tasks_blocked(0.2)
        assert not done.is_set() and _only_complete_files(root / "5") == []
    await done.wait()
    assert (root / "5" / "frame_0001").read_bytes() == source.read_bytes()
    assert held_while_receiving == [False]  # the turn ends with the body, before the reply is made


@pytest.mark.fast_path_only
async def test_a_receiver_moves_ciphertext_into_the_tls_object_64_kib_at_a_time(address, client_identity, files, source, monkeypatch) -> None:
    """The TLS object's memory BIO keeps the largest buffer it held for the connection's life: a receiver's socket
    reads are at most 64 KiB, so a connection that carried a 3 MB body keeps no megabyte behind."""
    sizes: list[int] = []
    real_init = _files._Link.__init__

    def recording(self, wire, receive_size):
        sizes.append(receive_size)
        real_init(self, wire, receive_size)

    monkeypatch.setattr(_files._Link, "__init__", recording)
    header = await file_header(source, kind="frame", job=7, frame=1)
    assert await put_file(address, client_identity, header, source) == Echo("frame_0001")
    assert sizes and max(sizes) <= 64 * 1024
