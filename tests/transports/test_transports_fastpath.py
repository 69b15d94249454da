"""The fast path: probed at handshake, taken when on, off by a switch or a missing trio internal, and alone on its stream."""

from __future__ import annotations

import os
import re
from collections import Counter
from pathlib import Path

import pytest
import trio
from transport_fixtures import Echo

from frender.transports import Address, FileHeader, Identity, Limits, connect, file_header, get_file, put_file
from frender.transports import _fastpath
from frender.transports._channel import Channel
from frender.transports._fastpath import SWITCH, TAKEN, FastPath, check
from frender.transports.client import _TLS
from frender.transports.messages import Ready

_PACKAGE = Path(_fastpath.__file__).parent.parent


async def _tls_socket_pair(server_identity: Identity) -> tuple[Channel, Channel]:
    """Two handshaken channels over TLS on a real socket pair."""
    left, right = trio.socket.socketpair()
    server = Channel(trio.SSLStream(trio.SocketStream(left), server_identity.server_context(), server_side=True, https_compatible=True), Limits())
    client = Channel(trio.SSLStream(trio.SocketStream(right), _TLS, https_compatible=True), Limits())
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.handshake)
        nursery.start_soon(client.handshake)
    return server, client


async def _rpc_put_and_get(address: Address, identity: Identity, source: Path, back: Path) -> None:
    """One call, one put and one get through a real server, each checked."""
    async with connect(address, identity) as session:
        assert await session.call(Echo("hello")) == Echo("hello")
    header = await file_header(source, kind="frame", job=5, frame=1)
    assert await put_file(address, identity, header, source) == Echo("frame_0001")
    wanted = FileHeader(kind="frame", job=5, frame=1, sha256=header.sha256)
    assert await get_file(address, identity, wanted, back, max_size=1 << 30) == back
    assert back.read_bytes() == source.read_bytes()


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "frame.png"
    path.write_bytes(os.urandom(1_000_003))
    return path


@pytest.mark.fast_path_only
async def test_the_probe_finds_every_private_part_on_the_installed_trio(server_identity) -> None:
    """On the pinned trio a handshaken TLS socket stream gets the fast path: the probe must not be off."""
    server, client = await _tls_socket_pair(server_identity)
    for channel in (server, client):
        found = check(channel.stream)
        assert isinstance(found, FastPath), f"fast path off on trio {trio.__version__}: {found}"
        assert isinstance(channel.fast, FastPath)


async def test_frames_and_bodies_take_the_fast_path_exactly_when_it_is_on(
    fast_path, address, client_identity, source, tmp_path
) -> None:
    """With the fast path on, sends, reads and file bodies go through it; with the switch set, none does and all still works."""
    before = Counter(TAKEN)
    await _rpc_put_and_get(address, client_identity, source, tmp_path / "back.png")
    taken = TAKEN - before
    if fast_path:
        assert taken["write"] > 0 and taken["read"] > 0
        assert taken["body"] == 4  # put: client sends, server receives; get: server sends, client receives
    else:
        assert taken == Counter()


async def test_the_switch_turns_the_probe_off(monkeypatch, server_identity) -> None:
    """FRENDER_NO_FAST_PATH=1 leaves a channel without the fast path; frames still flow both ways through trio."""
    monkeypatch.setenv(SWITCH, "1")
    server, client = await _tls_socket_pair(server_identity)
    assert server.fast is None and client.fast is None
    assert check(server.stream) == f"{SWITCH} is set"
    with trio.fail_after(5):
        await client.send_message(Ready())
        assert await server.receive_message() == Ready()
        await server.send_message(Ready())
        assert await client.receive_message() == Ready()


_MISSING = [("stream", role) for role in _fastpath.STREAM_NAMES] + [("module", "SOCKET_NAME"), ("module", "STATE_ENUM")]


@pytest.mark.fast_path_only
@pytest.mark.parametrize(("where", "what"), _MISSING, ids=[what for _, what in _MISSING])
async def test_a_probe_that_misses_a_private_name_falls_back_and_transfers_still_work(
    monkeypatch, where, what, server_identity, address, client_identity, source, tmp_path
) -> None:
    """A trio without any one of the private names gets no fast path (reason named) and the same transfers through its public API."""
    if where == "stream":
        renamed = _fastpath.STREAM_NAMES[what] + "_renamed"
        monkeypatch.setitem(_fastpath.STREAM_NAMES, what, renamed)
    else:
        renamed = getattr(_fastpath, what) + "_renamed"
        monkeypatch.setattr(_fastpath, what, renamed)
    server, client = await _tls_socket_pair(server_identity)
    found = check(client.stream)
    assert isinstance(found, str) and found.startswith(f"trio {trio.__version__}: ") and renamed in found
    assert server.fast is None and client.fast is None
    before = Counter(TAKEN)
    await _rpc_put_and_get(address, client_identity, source, tmp_path / "back.png")
    assert TAKEN - before == Counter()


@pytest.mark.fast_path_only
async def test_a_held_stream_belongs_to_its_worker_threads_alone(server_identity) -> None:
    """While held for worker threads, any trio task touching the stream fails at once; released, it works as before."""
    server, client = await _tls_socket_pair(server_identity)
    fast = client.fast
    assert fast is not None
    with fast.hold() as wire:
        assert wire is not None and fast.held
        wire.check_held()
        with pytest.raises(trio.BusyResourceError):
            await client.stream.send_all(b"x")
        with pytest.raises(trio.BusyResourceError):
            await client.stream.receive_some(10)
        with pytest.raises(trio.BusyResourceError):
            await client.send_message(Ready())
        with pytest.raises(trio.BusyResourceError):
            await client.receive_message()
        with pytest.raises(trio.BusyResourceError), fast.hold():
            pass
    assert not fast.held
    with pytest.raises(AssertionError, match="does not own"):
        wire.check_held()
    with trio.fail_after(5):
        await client.send_message(Ready())
        assert await server.receive_message() == Ready()
        await server.send_message(Ready())
        assert await client.receive_message() == Ready()


def test_the_probe_checks_every_private_name_the_fast_path_uses() -> None:
    """Every private name the fast-path module reaches for (other than its own) is one the probe checks."""
    source = (_PACKAGE / "transports" / "_fastpath.py").read_text()
    used = set(re.findall(r"(?<!self)\.(_[A-Za-z]\w*)", source))
    assert used <= _fastpath.PRIVATE_NAMES, used - _fastpath.PRIVATE_NAMES


def test_no_other_module_names_a_trio_private() -> None:
    """Only the fast-path module names trio's private attributes; the rest of the package uses trio's public API."""
    distinct = sorted(name for name in _fastpath.PRIVATE_NAMES if name not in ("_state", "_sock", "_ssl"))
    pattern = re.compile(r"\btrio\._|\.(?:" + "|".join(map(re.escape, distinct)) + r")\b")
    offenders = []
    for path in sorted(_PACKAGE.rglob("*.py")):
        if path.name == "_fastpath.py":
            continue
        text = path.read_text()
        hits = pattern.findall(text)
        if path.parent.name == "transports":  # the generic names, where trio streams are handled
            hits += re.findall(r"\.(?:_state|_sock|_ssl_object)\b", text)
        offenders += [f"{path.relative_to(_PACKAGE)}: {hit}" for hit in hits]
    assert offenders == []
