"""Every application message survives the wire: pack, unpack, equal; garbage is the codec's own error."""

from __future__ import annotations

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from frender import codec
from frender.apps import messages as msg
from frender.transports import Assignment, Identity, SignedAssignment, sign_assignment

_MODULES = {msg.__name__, "frender.apps.requester_messages", "frender.apps.asks"}  # messages re-exports the other two's names
MESSAGES = [obj for obj in vars(msg).values() if isinstance(obj, type) and attrs.has(obj) and obj.__module__ in _MODULES]
text = st.text(max_size=20)


@pytest.fixture(scope="module")
def signed(tmp_path_factory) -> SignedAssignment:
    identity = Identity.load_or_create(tmp_path_factory.mktemp("master"))
    return sign_assignment(
        identity,
        Assignment(job=7, friend="bob/pc", friend_key=identity.fingerprint, requester_key=identity.fingerprint, blend_sha256="a" * 64, expires=1e9),
    )


def strategy_for(cls: type, signed: SignedAssignment) -> st.SearchStrategy:
    st.register_type_strategy(SignedAssignment, st.just(signed))
    # msgpack carries 64-bit integers; nothing we send is larger. (Registered for
    # inferred ints only: the other tests spell their integer strategies out.)
    st.register_type_strategy(int, st.integers(-(2**63), 2**63 - 1))
    # NaN never equals itself, so "equal after the round trip" cannot hold for it.
    st.register_type_strategy(float, st.floats(allow_nan=False))
    return st.builds(cls)


@pytest.mark.parametrize("cls", MESSAGES, ids=lambda c: c.tag)
def test_every_message_round_trips(cls, signed):
    """pack then unpack gives back an equal message, for any field values."""

    @settings(max_examples=25, deadline=None)
    @given(strategy_for(cls, signed))
    def check(message):
        assert codec.unpack(codec.pack(message)) == message

    check()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_are_a_decode_error(data):
    """Random bytes decode to a message or raise DecodeError, never anything else."""
    try:
        codec.unpack(data)
    except codec.DecodeError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2000), st.data())
def test_truncated_messages_are_a_decode_error(cut, data):
    """Any prefix of a real message is a DecodeError (or, rarely, another valid message)."""
    message = msg.ProgressReply(
        job=1, total=4, delivered=2, final=(1, 2), friends=(msg.FriendLine(friend="a/b", delivered=2, final=2, checks=1, evicted=False),),
        checks=1, disagreements=0, evictions=(), finished=False,
    )
    packed = codec.pack(message)
    try:
        codec.unpack(packed[: cut % len(packed)])
    except codec.DecodeError:
        pass
