"""The transport's own wire messages and the frame format that carries every message.

A frame is a 4-byte big-endian length, then that many bytes of msgpack
``[tag, body]`` from the shared codec. Application messages travel inside
``Request``/``Reply`` as packed bytes, so the transport never needs to know
their classes and an application's unknown tag is caught where it is decoded.

Each class validates its fields on construction, which the codec also does on
decoding, so nothing a peer sends becomes an object with out-of-range values.
"""

from __future__ import annotations

import re
import struct
from typing import Any, Callable, ClassVar

from attrs import field, frozen
from attrs.validators import and_, ge, in_, instance_of, le, matches_re, max_len

from frender import codec
from frender.transports.errors import ProtocolError

__all__ = [
    "FILE_KINDS",
    "MAX_FRAME_NUMBER",
    "FileHeader",
    "Challenge",
    "KeyProof",
    "OpenRpc",
    "OpenPut",
    "OpenGet",
    "Ready",
    "Request",
    "Reply",
    "Failure",
    "MESSAGES",
    "encode_frame",
    "encode_reply",
    "decode_frame",
    "decode_body",
]

FILE_KINDS = frozenset({"blend", "frame", "upload"})
MAX_FRAME_NUMBER = 1_048_574  # Blender's own upper bound for a frame number
MAX_FILE_SIZE = 1 << 40  # what a header may claim at all; servers cap far lower (Limits)
_MAX_ID = (1 << 63) - 1
_JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_PREFIX = struct.Struct(">I")


def _job_id(instance: object, attribute: object, value: int | str) -> None:
    # Exact types: bool is an int, and a job id ends up in a path on disk.
    if type(value) is int:
        if not 0 <= value <= _MAX_ID:
            raise ValueError(f"job {value} out of range")
    elif type(value) is str:
        if not _JOB_ID.fullmatch(value):
            raise ValueError(f"job {value!r} is not 1-64 letters, digits, '_' or '-'")
    else:
        raise TypeError(f"job must be int or str, not {type(value).__name__}")


def _int_between(low: int, high: int) -> Callable[[Any, Any, int], Any]:
    return and_(instance_of(int), ge(low), le(high))


def _bytes_of(length: int) -> Callable[[object, object, bytes], None]:
    def check(instance: object, attribute: object, value: bytes) -> None:
        if type(value) is not bytes or len(value) != length:
            raise ValueError(f"expected {length} bytes")

    return check


_SHA256_OR_ANY = matches_re(r"(?:[0-9a-f]{64})?")


@frozen(kw_only=True)
class FileHeader:
    """What a file is and how to check it: names on disk are built from these ids only.

    ``sha256`` is 64 lowercase hex digits; in a get request it may be ``""``,
    meaning "whatever the server has" (the server's reply always names it).
    """

    tag: ClassVar[str] = "file_header.v1"
    kind: str = field(validator=in_(FILE_KINDS))
    job: int | str = field(validator=_job_id)
    frame: int = field(default=0, validator=_int_between(0, MAX_FRAME_NUMBER))
    size: int = field(default=0, validator=_int_between(0, MAX_FILE_SIZE))
    sha256: str = field(default="", validator=and_(instance_of(str), _SHA256_OR_ANY))


@frozen(kw_only=True)
class Challenge:
    """Server to client, right after TLS: prove your key by signing this nonce."""

    tag: ClassVar[str] = "transport.challenge.v1"
    nonce: bytes = field(validator=_bytes_of(32))


@frozen(kw_only=True)
class KeyProof:
    """Client to server: its raw Ed25519 public key and a signature over the proof message."""

    tag: ClassVar[str] = "transport.key_proof.v1"
    public_key: bytes = field(validator=_bytes_of(32))
    signature: bytes = field(validator=_bytes_of(64))


@frozen(kw_only=True)
class OpenRpc:
    """Client's first frame after its proof: this connection carries calls."""

    tag: ClassVar[str] = "transport.open_rpc.v1"


@frozen(kw_only=True)
class OpenPut:
    """Client's first frame after its proof: it will send the file ``header`` describes."""

    tag: ClassVar[str] = "transport.open_put.v1"
    header: FileHeader


@frozen(kw_only=True)
class OpenGet:
    """Client's first frame after its proof: it asks for the file ``header`` names."""

    tag: ClassVar[str] = "transport.open_get.v1"
    header: FileHeader


@frozen(kw_only=True)
class Ready:
    """Server: the opening is accepted (for a put: send the bytes now)."""

    tag: ClassVar[str] = "transport.ready.v1"


@frozen(kw_only=True)
class Request:
    """One call: ``message`` is the codec's packing of the application's request."""

    tag: ClassVar[str] = "transport.request.v1"
    id: int = field(validator=_int_between(0, _MAX_ID))
    message: bytes = field(validator=instance_of(bytes))


@frozen(kw_only=True)
class Reply:
    """The answer to request ``id`` (0 answers a put), packed like a request."""

    tag: ClassVar[str] = "transport.reply.v1"
    id: int = field(validator=_int_between(0, _MAX_ID))
    message: bytes = field(validator=instance_of(bytes))


@frozen(kw_only=True)
class Failure:
    """Request ``id`` (0: the opening or a transfer) was refused: raised as RemoteError."""

    tag: ClassVar[str] = "transport.failure.v1"
    id: int = field(validator=_int_between(0, _MAX_ID))
    code: str = field(validator=and_(instance_of(str), max_len(64)))
    reason: str = field(validator=and_(instance_of(str), max_len(1000)))


MESSAGES = (FileHeader, Challenge, KeyProof, OpenRpc, OpenPut, OpenGet, Ready, Request, Reply, Failure)
codec.register(*MESSAGES)


def encode_frame(message: object) -> bytes:
    """Length prefix plus the codec's msgpack ``[tag, body]`` of ``message``."""
    body = codec.pack(message)
    return _PREFIX.pack(len(body)) + body


def encode_reply(id: int, message: bytes) -> bytes:
    """The frame of ``Reply(id=id, message=message)``: a server sends one per call."""
    return encode_frame(Reply(id=id, message=message))


def decode_body(body: bytes) -> object:
    """Decode one frame's body; anything but a registered message raises ProtocolError."""
    try:
        return codec.unpack(body)
    except codec.DecodeError as exc:
        raise ProtocolError(str(exc)) from None


def decode_frame(frame: bytes, *, max_frame: int) -> object:
    """Decode a whole frame (prefix included), checking its length against ``max_frame``."""
    if len(frame) < _PREFIX.size:
        raise ProtocolError(f"a frame needs a {_PREFIX.size}-byte length prefix, got {len(frame)} bytes")
    (length,) = _PREFIX.unpack_from(frame)
    if length > max_frame:
        raise ProtocolError(f"frame of {length} bytes exceeds the {max_frame}-byte limit")
    if len(frame) - _PREFIX.size != length:
        raise ProtocolError(f"frame prefix says {length} bytes, {len(frame) - _PREFIX.size} follow")
    return decode_body(frame[_PREFIX.size :])
