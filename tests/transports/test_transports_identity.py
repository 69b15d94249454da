"""Node identity and the master's signed assignments."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import attrs
import pytest

from frender import codec
from frender.transports import (
    Assignment,
    AssignmentRefused,
    Identity,
    check_assignment,
    fingerprint_of,
    sign_assignment,
    verify_signature,
)
from frender.transports.address import FINGERPRINT_PATTERN

NOW = 1_700_000_000.0


def test_identity_is_created_once_private_and_kept(tmp_path: Path) -> None:
    """First start creates a 0600 key; the next start loads the same key."""
    first = Identity.load_or_create(tmp_path / "home")
    key_file = tmp_path / "home" / "identity.pem"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert Identity.load_or_create(tmp_path / "home").fingerprint == first.fingerprint
    assert FINGERPRINT_PATTERN.fullmatch(first.fingerprint)
    assert fingerprint_of(first.public_bytes) == first.fingerprint
    assert [p.name for p in (tmp_path / "home").iterdir() if p.name.endswith(".tmp")] == []


def test_identity_refuses_a_key_others_can_read(tmp_path: Path) -> None:
    """A group- or world-readable key file is refused, not used."""
    Identity.load_or_create(tmp_path)
    os.chmod(tmp_path / "identity.pem", 0o644)
    with pytest.raises(PermissionError, match="chmod 600"):
        Identity.load_or_create(tmp_path)


def test_signatures_verify_only_for_their_key_and_data(identity_factory) -> None:
    """verify_signature accepts the signer's own signature only, and never raises."""
    alice, bob = identity_factory("alice"), identity_factory("bob")
    signature = alice.sign(b"data")
    assert verify_signature(alice.public_bytes, b"data", signature)
    assert not verify_signature(bob.public_bytes, b"data", signature)
    assert not verify_signature(alice.public_bytes, b"datA", signature)
    assert not verify_signature(b"short", b"data", signature)
    assert not verify_signature(alice.public_bytes, b"data", b"\x00")


@pytest.fixture
def parties(identity_factory):
    return identity_factory("master"), identity_factory("friend"), identity_factory("requester")


def _assignment(friend: Identity, requester: Identity, **changes) -> Assignment:
    fields = dict(
        job=7,
        friend="alice",
        friend_key=friend.fingerprint,
        requester_key=requester.fingerprint,
        blend_sha256="ab" * 32,
        expires=NOW + 600,
    )
    return Assignment(**{**fields, **changes})


def _check(signed, master, friend, requester, **overrides):
    arguments = dict(
        master_fingerprint=master.fingerprint,
        now=NOW,
        requester_key=requester.fingerprint,
        friend_key=friend.fingerprint,
        blend_sha256="ab" * 32,
    )
    return check_assignment(signed, **{**arguments, **overrides})


def test_a_master_signed_assignment_is_accepted_after_a_round_trip(parties) -> None:
    """The genuine token passes every check, also after the codec carried it."""
    master, friend, requester = parties
    signed = sign_assignment(master, _assignment(friend, requester))
    carried = codec.unpack(codec.pack(signed))
    assert _check(carried, master, friend, requester) == signed.assignment


def test_assignment_survives_a_requester_restart(parties, tmp_path: Path) -> None:
    """The token names the requester's key, which a restart loads again from its home."""
    master, friend, _ = parties
    requester = Identity.load_or_create(tmp_path / "requester")
    signed = sign_assignment(master, _assignment(friend, requester))
    restarted = Identity.load_or_create(tmp_path / "requester")
    assert _check(signed, master, friend, restarted).job == 7


def test_forged_assignment_is_refused(parties, identity_factory) -> None:
    """Signed by anyone but the master: refused, even carrying the master's name."""
    master, friend, requester = parties
    forger = identity_factory("forger")
    signed = sign_assignment(forger, _assignment(friend, requester))
    with pytest.raises(AssignmentRefused, match="not by the master"):
        _check(signed, master, friend, requester)
    claimed = attrs.evolve(signed, signer_key=master.public_bytes)
    with pytest.raises(AssignmentRefused, match="tampered"):
        _check(claimed, master, friend, requester)


@pytest.mark.parametrize("change", [{"job": 8}, {"expires": NOW + 10**6}, {"friend": "mallory"}])
def test_tampered_assignment_is_refused(parties, change) -> None:
    """Any field changed after signing breaks the signature."""
    master, friend, requester = parties
    signed = sign_assignment(master, _assignment(friend, requester))
    tampered = attrs.evolve(signed, assignment=attrs.evolve(signed.assignment, **change))
    with pytest.raises(AssignmentRefused, match="tampered"):
        _check(tampered, master, friend, requester)


def test_expired_assignment_is_refused(parties) -> None:
    """At or after its expiry the token authorises nothing."""
    master, friend, requester = parties
    signed = sign_assignment(master, _assignment(friend, requester))
    with pytest.raises(AssignmentRefused, match="expired"):
        _check(signed, master, friend, requester, now=NOW + 600)


@pytest.mark.parametrize(
    ("override", "complaint"),
    [
        ({"requester_key": "sha256:" + "00" * 32}, "another requester"),
        ({"friend_key": "sha256:" + "00" * 32}, "another friend"),
        ({"blend_sha256": "cd" * 32}, "another .blend"),
    ],
)
def test_assignment_for_someone_or_something_else_is_refused(parties, override, complaint) -> None:
    """A genuine token shown to the wrong requester, by the wrong friend, or for another file is refused."""
    master, friend, requester = parties
    signed = sign_assignment(master, _assignment(friend, requester))
    with pytest.raises(AssignmentRefused, match=complaint):
        _check(signed, master, friend, requester, **override)


def test_assignment_refusal_is_a_transport_refusal(parties) -> None:
    """A handler may let AssignmentRefused propagate: the client sees code "assignment"."""
    master, friend, requester = parties
    signed = sign_assignment(master, _assignment(friend, requester))
    with pytest.raises(AssignmentRefused) as caught:
        _check(signed, master, friend, requester, now=NOW + 10**6)
    assert caught.value.code == "assignment"
