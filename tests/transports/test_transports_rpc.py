"""RPC over TLS: calls, refusals, authentication, limits and hostile peers."""

from __future__ import annotations

import logging
import struct
import tracemalloc

import pytest
import trio
import trio.testing

from frender.transports import (
    Address,
    Identity,
    Limits,
    PeerGone,
    ProtocolError,
    RemoteError,
    WrongFingerprint,
    connect,
    open_session,
    serve_stream,
)
from frender.transports._channel import Channel
from frender.transports.client import _TLS
from frender import codec
from frender.transports.messages import Challenge, Failure, KeyProof, OpenRpc, Ready, Reply, Request, encode_frame

from transport_fixtures import Echo, EchoHandler, Instant, WhoAmI

pytestmark = pytest.mark.filterwarnings("ignore::trio.TrioDeprecationWarning")


async def test_call_round_trips_and_server_knows_the_caller(address, client_identity) -> None:
    """A reply comes back, and the handler saw the client's proven key."""
    async with connect(address, client_identity) as session:
        assert await session.call(Echo("hello")) == Echo("hello")
        assert await session.call(WhoAmI()) == Echo(client_identity.fingerprint)


async def test_calls_in_flight_together_each_get_their_own_reply(address, client_identity) -> None:
    """Slow and fast calls share one connection; replies are routed by request id."""
    results: dict[str, object] = {}
    async with connect(address, client_identity) as session:

        async def one(text: str, delay: float) -> None:
            results[text] = await session.call(Echo(text, delay))

        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                for index in range(20):
                    nursery.start_soon(one, f"m{index}", (20 - index) * 0.005)
    assert results == {f"m{index}": Echo(f"m{index}", (20 - index) * 0.005) for index in range(20)}


async def test_refusal_and_handler_crash_become_remote_errors(address, client_identity, caplog) -> None:
    """Refused is the caller's RemoteError; a handler bug is "internal"; the session goes on."""
    async with connect(address, client_identity) as session:
        with pytest.raises(RemoteError) as refused:
            await session.call(Echo("no"))
        assert (refused.value.code, refused.value.reason) == ("nope", "refused on purpose")
        with caplog.at_level(logging.ERROR, "frender.transports"):
            with pytest.raises(RemoteError, match="internal"):
                await session.call(Echo("boom"))
        assert "handler failed" in caplog.text
        assert await session.call(Echo("still here")) == Echo("still here")


async def test_calls_answered_at_once_and_later_each_get_their_own_reply(
    nursery, server_identity, client_identity, files, caplog
) -> None:
    """A burst in one write mixes at-once answers, refusals, crashes and awaited calls; each id gets its own reply."""
    from frender.transports.client import _opened

    requests = {1: Echo("slow", 0.05), 2: Instant("a"), 3: Instant("no"), 4: Echo("fast"), 5: Instant("boom"), 6: Instant("b")}
    burst = b"".join(encode_frame(Request(id=id, message=codec.pack(r))) for id, r in requests.items())
    stream = await _memory_server(server_identity, files, Limits(), nursery)
    replies: dict[int, object] = {}
    with caplog.at_level(logging.ERROR, "frender.transports"), trio.fail_after(5):
        async with _opened(stream, client_identity, server_identity.fingerprint, OpenRpc(), Limits()) as channel:
            await channel.expect(Ready)
            await channel.send_bytes(burst, 5)
            while len(replies) < len(requests):
                message = await channel.expect((Reply, Failure))
                replies[message.id] = codec.unpack(message.message) if isinstance(message, Reply) else message.code
    assert replies == {1: Echo("slow", 0.05), 2: Instant("a"), 3: "nope", 4: Echo("fast"), 5: "internal", 6: Instant("b")}
    assert "handler failed on Instant" in caplog.text


async def test_garbage_after_good_frames_in_one_write_ends_the_connection(address, client_identity, caplog) -> None:
    """Good calls followed by garbage in the same write: that connection ends, the server does not."""
    async with connect(address, client_identity) as session:
        good = encode_frame(Request(id=1, message=codec.pack(Instant("x"))))
        await session._channel.send_bytes(good + b"\x00\x00\x00\x05hello", 5)
        with trio.fail_after(5):
            while session._broken is None:
                await trio.sleep(0.01)
    assert "not a msgpack message" in caplog.text
    async with connect(address, client_identity) as again:
        assert await again.call(Instant("fine")) == Instant("fine")


async def test_cancelled_caller_leaves_the_session_usable(address, client_identity) -> None:
    """A caller's own timeout drops only its call; later replies still route."""
    async with connect(address, client_identity) as session:
        with trio.move_on_after(0.01):
            await session.call(Echo("slow", 0.2))
        assert await session.call(Echo("next")) == Echo("next")


async def test_wrong_fingerprint_is_refused(address, client_identity, identity_factory) -> None:
    """A server whose key is not the pinned one is never talked to."""
    impostor = Address(address.host, address.port, identity_factory("someone").fingerprint)
    with pytest.raises(WrongFingerprint):
        async with connect(impostor, client_identity):
            pass


async def test_connection_failure_is_peer_gone(client_identity, server_identity) -> None:
    """Nothing listening: PeerGone, not an OSError."""
    listener = trio.socket.socket()
    await listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()
    with pytest.raises(PeerGone):
        async with connect(Address("127.0.0.1", port, server_identity.fingerprint), client_identity):
            pass


async def _raw_tls(address: Address) -> Channel:
    stream = await trio.open_tcp_stream(address.host, address.port)
    channel = Channel(trio.SSLStream(stream, _TLS, https_compatible=True), Limits())
    await channel.stream.do_handshake()
    return channel


async def test_client_failing_the_key_proof_is_refused(address, client_identity, identity_factory, caplog) -> None:
    """A proof signed by another key, or over another server's fingerprint, ends the connection."""
    other = identity_factory("other")
    for signer, bound_to in ((other, address.fingerprint), (client_identity, other.fingerprint)):
        channel = await _raw_tls(address)
        challenge = await channel.expect(Challenge)
        from frender.transports._handshake import proof_message

        signature = signer.sign(proof_message(challenge.nonce, bound_to))
        await channel.send_message(KeyProof(public_key=client_identity.public_bytes, signature=signature))
        await channel.send_message(OpenRpc())
        with caplog.at_level(logging.WARNING, "frender.transports"):
            with trio.fail_after(5):
                assert await channel.receive_message() is None
        await trio.aclose_forcefully(channel.stream)
    assert caplog.text.count("key proof signature does not verify") == 2


async def test_garbage_and_unknown_tags_end_only_that_connection(address, client_identity, caplog) -> None:
    """A hostile peer is dropped with a logged reason; an honest session carries on."""
    async with connect(address, client_identity) as honest:
        for payload in (b"\x00\x00\x00\x05hello", struct.pack(">I", 3) + b"\x92\xa1x"):
            async with connect(address, client_identity) as session:
                channel = session._channel
                await channel.send_bytes(payload, 5)
                with trio.fail_after(5):
                    while session._broken is None:
                        await trio.sleep(0.01)
                with pytest.raises(PeerGone):
                    await session.call(Echo("x"))
        assert await honest.call(Echo("fine")) == Echo("fine")
    assert "not a msgpack message" in caplog.text or "malformed" in caplog.text or "unknown" in caplog.text


async def test_request_with_unknown_inner_tag_ends_the_connection(address, client_identity, caplog) -> None:
    """An application message of an unknown tag inside a Request is a protocol violation."""
    import msgpack

    async with connect(address, client_identity) as session:
        await session._channel.send_message(Request(id=99, message=msgpack.packb(["nobody.v1", {}])))
        with trio.fail_after(5):
            while session._broken is None:
                await trio.sleep(0.01)
    assert "unknown message tag 'nobody.v1'" in caplog.text


@pytest.mark.parametrize("limits", [Limits(max_connections=3, max_per_host=1000), Limits(max_per_host=3)])
async def test_connection_limits_refuse_the_next_and_recover(address, client_identity, limits, caplog) -> None:
    """With the limit reached the next connection is refused; after one closes, a new one works."""
    async with connect(address, client_identity) as first:
        async with connect(address, client_identity), connect(address, client_identity):
            with pytest.raises(PeerGone):
                async with connect(address, client_identity) as extra:
                    await extra.call(Echo("x"))
            assert await first.call(Echo("open")) == Echo("open")
        with trio.fail_after(5):
            while True:  # the server learns of the close asynchronously
                try:
                    async with connect(address, client_identity) as again:
                        assert await again.call(Echo("back")) == Echo("back")
                        break
                except PeerGone:
                    await trio.sleep(0.01)
    assert "refused connection from 127.0.0.1" in caplog.text


async def _memory_server(server_identity: Identity, files, limits: Limits, nursery) -> trio.abc.Stream:
    client_end, server_end = trio.testing.memory_stream_pair()
    nursery.start_soon(lambda: serve_stream(server_identity, server_end, EchoHandler(files), host="mem", limits=limits))
    return client_end


async def test_one_byte_per_second_client_is_dropped_at_the_deadline(
    autojump_clock, nursery, server_identity, client_identity, files, caplog
) -> None:
    """A frame dripped a byte a second is cut off message_deadline after it began."""
    limits = Limits(message_deadline=10)
    stream = await _memory_server(server_identity, files, limits, nursery)
    async with open_session(stream, client_identity, server_identity.fingerprint) as session:
        frame = b"\x00\x00\x00\x40" + b"\x00" * 0x40
        start = trio.current_time()
        with pytest.raises(PeerGone):
            for byte in frame:
                await session._channel.send_bytes(bytes([byte]), 5)
                await trio.sleep(1)
        assert 9 <= trio.current_time() - start <= 12
    assert "message not complete within 10 s" in caplog.text


async def test_slow_handshake_is_dropped(autojump_clock, nursery, server_identity, files, caplog) -> None:
    """A peer that never finishes TLS is dropped at handshake_deadline."""
    stream = await _memory_server(server_identity, files, Limits(handshake_deadline=7), nursery)
    start = trio.current_time()
    await stream.send_all(b"\x16")
    assert await stream.receive_some() == b""
    assert trio.current_time() - start == pytest.approx(7)
    assert "handshake not complete within 7 s" in caplog.text


async def test_idle_session_is_closed_but_not_one_with_a_call_running(
    autojump_clock, nursery, server_identity, client_identity, files
) -> None:
    """No frame and no call for idle_timeout closes the session; a long call keeps it open."""
    limits = Limits(idle_timeout=60)
    stream = await _memory_server(server_identity, files, limits, nursery)
    async with open_session(stream, client_identity, server_identity.fingerprint) as session:
        assert await session.call(Echo("long", 200)) == Echo("long", 200)
        await trio.sleep(61)
        with pytest.raises(PeerGone):
            await session.call(Echo("late"))


async def test_four_gib_prefix_is_refused_without_allocating(
    nursery, server_identity, client_identity, files, caplog
) -> None:
    """A length prefix of 0xFFFFFFFF is refused on sight, allocating nothing near it."""
    stream = await _memory_server(server_identity, files, Limits(), nursery)
    tracemalloc.start()
    try:
        async with open_session(stream, client_identity, server_identity.fingerprint) as session:
            await session._channel.send_bytes(b"\xff\xff\xff\xff", 5)
            with trio.fail_after(5):
                while session._broken is None:
                    await trio.sleep(0.01)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20
    assert "frame of 4294967295 bytes exceeds the 1048576-byte limit" in caplog.text


async def test_opening_must_come_first(nursery, server_identity, client_identity, files, caplog) -> None:
    """A Request before an opening frame is a protocol violation."""
    stream = await _memory_server(server_identity, files, Limits(), nursery)
    from frender.transports.client import _opened

    with pytest.raises((PeerGone, ProtocolError)):
        async with _opened(stream, client_identity, server_identity.fingerprint, Request(id=1, message=b""), Limits()) as c:
            await c.expect(Ready)
    assert "expected OpenRpc or OpenPut or OpenGet, got Request" in caplog.text


async def test_receive_bodies_takes_every_whole_frame_and_stops_before_an_oversized_one() -> None:
    """Frames that arrived together come back together; an oversized prefix after them raises on the next read."""
    sender, receiver = trio.testing.memory_stream_pair()
    channel = Channel(receiver, Limits(max_frame=64))
    frames = [encode_frame(Request(id=i, message=b"m")) for i in (1, 2, 3)]
    await sender.send_all(b"".join(frames) + struct.pack(">I", 65) + b"x" * 10)
    with trio.fail_after(5):
        assert await channel.receive_bodies() == [frame[4:] for frame in frames]
        with pytest.raises(ProtocolError, match="frame of 65 bytes exceeds the 64-byte limit"):
            await channel.receive_bodies()


async def test_receive_bodies_is_empty_at_a_clean_close() -> None:
    """A peer that closes between frames ends the session with []."""
    sender, receiver = trio.testing.memory_stream_pair()
    channel = Channel(receiver, Limits())
    await sender.send_all(encode_frame(Request(id=1, message=b"m")))
    await sender.aclose()
    with trio.fail_after(5):
        assert len(await channel.receive_bodies()) == 1
        assert await channel.receive_bodies() == []


async def _tls_socket_pair(server_identity: Identity, limits: Limits) -> tuple[Channel, Channel]:
    """Two channels over TLS on a real socket pair, so sends and reads take the direct paths."""
    left, right = trio.socket.socketpair()
    server_tls = trio.SSLStream(trio.SocketStream(left), server_identity.server_context(), server_side=True, https_compatible=True)
    client_tls = trio.SSLStream(trio.SocketStream(right), _TLS, https_compatible=True)
    server, client = Channel(server_tls, limits), Channel(client_tls, limits)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.handshake)
        nursery.start_soon(client.handshake)
    return server, client


async def test_frames_the_socket_cannot_take_at_once_still_arrive_whole_and_in_order(server_identity) -> None:
    """Sends written straight to the socket fall back to trio for what does not fit; the TLS stream stays sound."""
    sender, receiver = await _tls_socket_pair(server_identity, Limits())
    chunks = [bytes([i]) * 60_000 for i in range(64)]  # 3.8 MB: far beyond the socket buffers
    received = bytearray()

    async def receive() -> None:
        await trio.sleep(0.2)  # let the socket fill first
        view = memoryview(bytearray(1 << 16))
        while len(received) < sum(map(len, chunks)):
            count = await receiver.receive_into(view)
            received.extend(view[:count])

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(receive)
            for chunk in chunks:
                await sender.send_bytes(chunk, 20)
        assert bytes(received) == b"".join(chunks)
        await receiver.send_message(Ready())
        assert await sender.receive_message() == Ready()


async def test_a_frame_cut_short_on_a_real_socket_ends_at_the_message_deadline(autojump_clock, server_identity) -> None:
    """Reading straight from the socket keeps Rule 2: a frame begun must be whole within message_deadline."""
    sender, receiver = await _tls_socket_pair(server_identity, Limits(message_deadline=10))
    frame = encode_frame(Ready())
    await sender.send_bytes(frame[:-1], 5)
    start = trio.current_time()
    with pytest.raises(PeerGone, match="message not complete within 10 s"):
        await receiver.receive_bodies()
    assert trio.current_time() - start == pytest.approx(10)


async def test_a_close_on_a_real_socket_reads_as_the_end(server_identity) -> None:
    """A peer that closes between frames ends the read with nothing, as with trio's own reads."""
    sender, receiver = await _tls_socket_pair(server_identity, Limits())
    await sender.send_message(Ready())
    await sender.stream.aclose()
    with trio.fail_after(5):
        assert await receiver.receive_message() == Ready()
        assert await receiver.receive_message() is None


async def test_a_cancelled_read_on_a_real_socket_leaves_the_channel_readable(server_identity) -> None:
    """A read given up while waiting for the socket leaves no lock held: the next read works."""
    sender, receiver = await _tls_socket_pair(server_identity, Limits())
    with trio.move_on_after(0.05):
        await receiver.receive_message()
    await sender.send_message(Ready())
    with trio.fail_after(5):
        assert await receiver.receive_message() == Ready()
