"""trio adapters: authenticated, bounded RPC and file transfer over one TLS port.

See docs/protocol.md for the wire format and the security properties.
"""

from frender.transports._channel import single_error
from frender.transports.address import Address
from frender.transports.assignment import (
    Assignment,
    AssignmentRefused,
    SignedAssignment,
    check_assignment,
    sign_assignment,
)
from frender.transports.client import FileLink, Session, connect, file_header, get_file, open_session, put_file
from frender.transports.errors import (
    PeerGone,
    ProtocolError,
    Refused,
    RemoteError,
    TransportError,
    WrongFingerprint,
)
from frender.transports.identity import Identity, fingerprint_of, verify_signature
from frender.transports.limits import Limits
from frender.transports.messages import FILE_KINDS, FileHeader
from frender.transports.server import Handler, Peer, serve, serve_stream

__all__ = [
    "Address",
    "Assignment",
    "AssignmentRefused",
    "FILE_KINDS",
    "FileHeader",
    "FileLink",
    "Handler",
    "Identity",
    "Limits",
    "PeerGone",
    "Peer",
    "ProtocolError",
    "Refused",
    "RemoteError",
    "Session",
    "SignedAssignment",
    "TransportError",
    "WrongFingerprint",
    "check_assignment",
    "connect",
    "file_header",
    "fingerprint_of",
    "get_file",
    "open_session",
    "put_file",
    "serve",
    "serve_stream",
    "sign_assignment",
    "single_error",
    "verify_signature",
]
