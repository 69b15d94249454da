"""The master's signed assignment: which friend renders which job for which requester.

The token names keys, not connections, so it survives a requester restart
(same key from its home directory) and friends joining later (each gets its
own token). A friend checks it before rendering and a requester before
accepting frames; both check it against their own view (own key, the
requester's key from the TLS proof, the .blend they hold), so a token copied
to anyone else is worthless. Whether the job has closed early is not in the
token: the master says so in its heartbeat replies.
"""

from __future__ import annotations

from typing import ClassVar

from attrs import field, frozen
from attrs.validators import instance_of, matches_re

from frender import codec
from frender.transports.address import FINGERPRINT_PATTERN
from frender.transports.errors import Refused
from frender.transports.identity import Identity, fingerprint_of, verify_signature

__all__ = ["Assignment", "SignedAssignment", "AssignmentRefused", "sign_assignment", "check_assignment"]

# Domain separation: an assignment signature can never be replayed as a key
# proof or any other signed statement, and vice versa.
_DOMAIN = b"frender assignment v1\x00"
_fingerprint = matches_re(FINGERPRINT_PATTERN)


class AssignmentRefused(Refused):
    """An assignment that does not authorise this render or this delivery."""

    def __init__(self, reason: str) -> None:
        super().__init__("assignment", reason)


@frozen(kw_only=True)
class Assignment:
    """Friend ``friend`` (key ``friend_key``) renders job ``job`` of ``blend_sha256``
    for the requester with ``requester_key`` until ``expires`` (Unix seconds)."""

    tag: ClassVar[str] = "assignment.v1"
    job: int = field(validator=instance_of(int))
    friend: str = field(validator=instance_of(str))
    friend_key: str = field(validator=_fingerprint)
    requester_key: str = field(validator=_fingerprint)
    blend_sha256: str = field(validator=matches_re(r"[0-9a-f]{64}"))
    expires: float = field(converter=float)


@frozen(kw_only=True)
class SignedAssignment:
    """An assignment, the master's signature over it, and the signer's raw public key."""

    tag: ClassVar[str] = "signed_assignment.v1"
    assignment: Assignment
    signature: bytes = field(validator=instance_of(bytes))
    signer_key: bytes = field(validator=instance_of(bytes))


codec.register(Assignment, SignedAssignment)


def _signed_bytes(assignment: Assignment) -> bytes:
    # The codec's canonical JSON: sorted keys, one spelling per value.
    return _DOMAIN + codec.to_json(assignment).encode()


def sign_assignment(identity: Identity, assignment: Assignment) -> SignedAssignment:
    """The master signs ``assignment`` with its own key."""
    return SignedAssignment(
        assignment=assignment, signature=identity.sign(_signed_bytes(assignment)), signer_key=identity.public_bytes
    )


def check_assignment(
    signed: SignedAssignment,
    *,
    master_fingerprint: str,
    now: float,
    requester_key: str | None = None,
    friend_key: str | None = None,
    blend_sha256: str | None = None,
) -> Assignment:
    """The assignment, if the master signed it, it is unexpired and it names what the
    caller holds (``None``: not checked); AssignmentRefused says which test failed."""
    try:
        signer = fingerprint_of(signed.signer_key)
    except ValueError:
        raise AssignmentRefused("signer key is not an Ed25519 public key") from None
    if signer != master_fingerprint:
        raise AssignmentRefused(f"signed by {signer}, not by the master")
    assignment = signed.assignment
    if not verify_signature(signed.signer_key, _signed_bytes(assignment), signed.signature):
        raise AssignmentRefused("signature does not match the assignment (tampered)")
    if now >= assignment.expires:
        raise AssignmentRefused(f"assignment for job {assignment.job} expired")
    if requester_key is not None and assignment.requester_key != requester_key:
        raise AssignmentRefused(f"job {assignment.job} is assigned to another requester")
    if friend_key is not None and assignment.friend_key != friend_key:
        raise AssignmentRefused(f"job {assignment.job} is assigned to another friend")
    if blend_sha256 is not None and assignment.blend_sha256 != blend_sha256:
        raise AssignmentRefused(f"job {assignment.job} is assigned for another .blend")
    return assignment
