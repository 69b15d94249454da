"""Wire messages, frames, addresses: round trips and hostile bytes."""

from __future__ import annotations

import json
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from frender import codec
from frender.transports import Address, Assignment, FileHeader, SignedAssignment
from frender.transports.errors import ProtocolError
from frender.transports.messages import (
    FILE_KINDS,
    MAX_FRAME_NUMBER,
    Challenge,
    Failure,
    KeyProof,
    OpenGet,
    OpenPut,
    OpenRpc,
    Ready,
    Reply,
    Request,
    decode_frame,
    encode_frame,
)

MAX_FRAME = 1 << 20
ids = st.integers(0, (1 << 63) - 1)
sha256s = st.text("0123456789abcdef", min_size=64, max_size=64)
fingerprints = sha256s.map(lambda hex: "sha256:" + hex)
headers = st.builds(
    FileHeader,
    kind=st.sampled_from(sorted(FILE_KINDS)),
    job=st.integers(0, 1 << 40) | st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}", fullmatch=True),
    frame=st.integers(0, MAX_FRAME_NUMBER),
    size=st.integers(0, 1 << 40),
    sha256=sha256s | st.just(""),
)
assignments = st.builds(
    Assignment,
    job=ids,
    friend=st.text(max_size=40),
    friend_key=fingerprints,
    requester_key=fingerprints,
    blend_sha256=sha256s,
    expires=st.floats(allow_nan=False, allow_infinity=False),
)
messages = st.one_of(
    headers,
    st.builds(Challenge, nonce=st.binary(min_size=32, max_size=32)),
    st.builds(KeyProof, public_key=st.binary(min_size=32, max_size=32), signature=st.binary(min_size=64, max_size=64)),
    st.just(OpenRpc()),
    st.builds(OpenPut, header=headers),
    st.builds(OpenGet, header=headers),
    st.just(Ready()),
    st.builds(Request, id=ids, message=st.binary(max_size=200)),
    st.builds(Reply, id=ids, message=st.binary(max_size=200)),
    st.builds(Failure, id=ids, code=st.text(max_size=64), reason=st.text(max_size=1000)),
    assignments,
    st.builds(SignedAssignment, assignment=assignments, signature=st.binary(max_size=64), signer_key=st.binary(max_size=32)),
)


@given(messages)
def test_every_message_round_trips_through_a_frame(message: object) -> None:
    """Each transport message decodes from its frame to an equal object."""
    assert decode_frame(encode_frame(message), max_frame=MAX_FRAME) == message


@given(st.binary(max_size=300))
def test_random_bytes_raise_only_protocol_error(data: bytes) -> None:
    """Garbage never raises anything but the transport's own error."""
    frame = struct.pack(">I", len(data)) + data
    for candidate in (data, frame):
        try:
            decode_frame(candidate, max_frame=MAX_FRAME)
        except ProtocolError:
            pass


@given(messages, st.data())
def test_truncated_and_corrupted_frames_raise_only_protocol_error(message: object, data: st.DataObject) -> None:
    """Any cut or any flipped byte of a valid frame is a ProtocolError or a valid message."""
    frame = encode_frame(message)
    cut = data.draw(st.integers(0, len(frame) - 1))
    with pytest.raises(ProtocolError):
        decode_frame(frame[:cut], max_frame=MAX_FRAME)
    body = bytearray(frame[4:])
    position = data.draw(st.integers(0, len(body) - 1))
    body[position] ^= data.draw(st.integers(1, 255))
    try:
        decode_frame(frame[:4] + bytes(body), max_frame=MAX_FRAME)
    except ProtocolError:
        pass


def test_oversized_prefix_is_refused_before_decoding() -> None:
    """A prefix above max_frame is refused on the prefix alone."""
    with pytest.raises(ProtocolError, match="exceeds"):
        decode_frame(b"\xff\xff\xff\xff", max_frame=MAX_FRAME)


def test_unknown_tag_is_a_protocol_error() -> None:
    """A well-formed message of a tag nobody registered ends as ProtocolError."""
    import msgpack

    body = msgpack.packb(["nobody.v1", {}])
    with pytest.raises(ProtocolError, match="unknown"):
        decode_frame(struct.pack(">I", len(body)) + body, max_frame=MAX_FRAME)


@pytest.mark.parametrize(
    "fields",
    [
        {"kind": "exe", "job": 1},
        {"kind": "frame", "job": "../etc"},
        {"kind": "frame", "job": ".hidden"},
        {"kind": "frame", "job": True},
        {"kind": "frame", "job": -1},
        {"kind": "frame", "job": 1, "frame": MAX_FRAME_NUMBER + 1},
        {"kind": "frame", "job": 1, "size": -1},
        {"kind": "frame", "job": 1, "sha256": "A" * 64},
        {"kind": "frame", "job": 1, "sha256": "ab"},
    ],
)
def test_file_header_refuses_unsafe_fields(fields: dict) -> None:
    """A header that could build an unsafe name or an absurd size cannot exist, nor decode."""
    with pytest.raises((ValueError, TypeError)):
        FileHeader(**fields)
    body = {**codec.converter.unstructure(FileHeader(kind="frame", job=1)), **fields}
    with pytest.raises(codec.DecodeError):
        codec.from_json(FileHeader.tag, json.dumps(body))


def test_address_round_trips_ipv4_ipv6_and_names() -> None:
    """str() and parse() are inverse, brackets for IPv6 included."""
    fingerprint = "sha256:" + "ab" * 32
    for host in ("127.0.0.1", "::1", "render.example.org"):
        address = Address(host, 7000, fingerprint)
        assert Address.parse(str(address)) == address
    assert str(Address("::1", 7000, fingerprint)).startswith("frender://[::1]:7000#")


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("http://127.0.0.1:7000#sha256:" + "ab" * 32, "frender://"),
        ("frender://127.0.0.1#sha256:" + "ab" * 32, "no port"),
        ("frender://127.0.0.1:99999#sha256:" + "ab" * 32, "port"),
        ("frender://127.0.0.1:7000", "no key fingerprint"),
        ("frender://127.0.0.1:7000#md5:abc", "fingerprint"),
        ("frender://127.0.0.1:7000/path#sha256:" + "ab" * 32, "nothing more"),
        ("frender://:7000#sha256:" + "ab" * 32, "no host"),
    ],
)
def test_address_parse_says_what_is_wrong(text: str, complaint: str) -> None:
    """Each malformed address gets a ValueError naming its fault."""
    with pytest.raises(ValueError, match=complaint):
        Address.parse(text)
