"""How names are bound: the alphabet, uniqueness without case, grants to a key, and old logs as they were."""

from __future__ import annotations

import pytest

from frender import codec
from frender.core._decider import Rejected
from frender.core.master import (
    CreateAccount,
    GrantPoints,
    Master,
    PointsGranted,
    RegisterFriend,
    TrustRequester,
    decide,
    evolve,
)
from frender.core.names import is_valid_name, normalised
from frender.core.profile import RenderProfile

P5 = RenderProfile(blender_version="5.0.1", build_hash="a3db93c5b259")


def apply(state: Master, command) -> list[object]:
    events = decide(state, command)
    for event in events:
        evolve(state, event)
    return events


def refused(state: Master, command) -> str:
    with pytest.raises(Rejected) as caught:
        decide(state, command)
    return caught.value.code


@pytest.mark.parametrize(
    "name, valid",
    [
        ("carol", True),
        ("Carol", True),
        ("a", True),
        ("9lives", True),
        ("bob.smith_2-b", True),
        ("x" * 32, True),
        ("x" * 33, False),
        ("", False),
        ("-carol", False),
        (".hidden", False),
        ("_x", False),
        ("c\u0430rol", False),  # Cyrillic a
        ("\uff41lice", False),  # fullwidth a: NFKC would make it 'alice'
        ("Stra\u00dfe", False),  # folds to 'strasse', but the sharp s is not in the alphabet
        ("bob smith", False),
        ("[/bold]", False),
        ("x\x1b[2J", False),
        ("a/b", False),
        ("caf\u00e9", False),
    ],
)
def test_the_name_alphabet(name, valid):
    """A new name is 1-32 ASCII letters, digits, '-', '_', '.', starting with a letter or digit; nothing else."""
    assert is_valid_name(name) is valid


def test_normalised_is_nfkc_then_casefold():
    """Names are compared in one form: NFKC, then case-folded."""
    assert normalised("Carol") == normalised("carol") == normalised("CAROL") == "carol"
    assert normalised("\uff21lice") == "alice"  # what NFKC does, should a non-ASCII name ever have been logged


def test_a_new_username_is_in_the_alphabet_and_unique_without_case():
    """`cаrol` (Cyrillic а) is refused by the alphabet, `Carol` beside `carol` as the same name; the owner goes on."""
    state = Master()
    apply(state, CreateAccount(user="carol", key="k-carol"))
    assert refused(state, CreateAccount(user="c\u0430rol", key="k-mallory")) == "bad-user"
    assert refused(state, CreateAccount(user="Carol", key="k-mallory")) == "name-taken"
    assert refused(state, CreateAccount(user="CAROL", key="k-carol")) == "name-taken"  # even its owner: one name, one spelling
    assert refused(state, CreateAccount(user="[/bold]", key="k-mallory")) == "bad-user"
    assert apply(state, CreateAccount(user="carol", key="k-carol")) == []
    apply(state, CreateAccount(user="Dave", key="k-dave"))
    assert refused(state, CreateAccount(user="dave", key="k-eve")) == "name-taken"


def test_a_new_friend_name_is_in_the_alphabet_and_unique_without_case():
    """A friend registers under its user with a name in the alphabet; 'PC' beside 'pc' is the same friend name."""
    state = Master()
    apply(state, CreateAccount(user="bob", key="k-bob"))
    for hostile in ("[/bold]", "\x1b[2J", "p\u0441", "", "x" * 33):
        assert refused(state, RegisterFriend(user="bob", key="k-bob", friend=f"bob/{hostile}", profile=P5, now=1)) == "bad-friend"
    apply(state, RegisterFriend(user="bob", key="k-bob", friend="bob/pc", profile=P5, now=1))
    assert refused(state, RegisterFriend(user="bob", key="k-bob", friend="bob/PC", profile=P5, now=1)) == "name-taken"
    apply(state, RegisterFriend(user="bob", key="k-bob", friend="bob/pc", profile=P5, now=2))  # the same friend again


def test_a_grant_names_the_key_and_goes_to_no_other():
    """A stranger who bound `alice` first cannot receive the grant meant for alice's key; the event records the key."""
    state = Master()
    apply(state, CreateAccount(user="alice", key="k-stranger"))
    assert refused(state, GrantPoints(user="alice", key="k-alice", amount=500)) == "wrong-key"
    assert refused(state, GrantPoints(user="alice", key="", amount=500)) == "no-key"
    assert state.accounts["alice"].balance == 0 and state.granted == 0
    apply(state, CreateAccount(user="alice2", key="k-alice"))
    [event] = apply(state, GrantPoints(user="alice2", key="k-alice", amount=500))
    assert event == PointsGranted(user="alice2", amount=500, reason="operator grant", key="k-alice")
    assert '"key":"k-alice"' in codec.to_json(event)


def test_a_requester_is_trusted_under_a_safe_name():
    """The name a requester is trusted under is shown in replays: it keeps to the alphabet."""
    state = Master()
    assert refused(state, TrustRequester(key="R", name="\x1b]8;;https://evil.example/\x07studio")) == "bad-name"
    apply(state, TrustRequester(key="R", name="studio"))


# A master log from before names had an alphabet and grants named keys: tag TAB canonical JSON, as stored.
OLD_LOG = [
    ("user_bound.v1", '{"grant":0,"key":"k-1","user":"carol"}'),
    ("user_bound.v1", '{"grant":0,"key":"k-2","user":"Carol"}'),
    ("user_bound.v1", '{"grant":0,"key":"k-3","user":"Bob Smith \u0441"}'),
    ("points_granted.v1", '{"amount":500,"reason":"operator grant","user":"carol"}'),
    (
        "friend_registered.v1",
        '{"capacity":1,"friend":"Bob Smith \u0441/[/bold]","now":1.0,"profile":{"blender_version":"5.0.1","build_hash":"a3db93c5b259",'
        '"cpu_class":"","device":"CPU","engine":"","gl_backend":"","gl_renderer":"","gl_version":""},"user":"Bob Smith \u0441"}',
    ),
]


def test_an_old_log_replays_byte_for_byte_with_its_names_as_they_were():
    """Old events re-encode to the same bytes and fold: names outside today's alphabet, and grants without a key."""
    state = Master()
    for tag, body in OLD_LOG:
        event = codec.from_json(tag, body)
        assert codec.tag_of(event) == tag and codec.to_json(event) == body
        evolve(state, event)
    assert {a.user: a.balance for a in state.accounts.values()} == {"carol": 500, "Carol": 0, "Bob Smith \u0441": 0}
    assert "Bob Smith \u0441/[/bold]" in state.friends
    # Their owners go on under the names they hold; nobody binds a new one that reads the same.
    assert apply(state, CreateAccount(user="Bob Smith \u0441", key="k-3")) == []
    apply(state, RegisterFriend(user="Bob Smith \u0441", key="k-3", friend="Bob Smith \u0441/[/bold]", profile=P5, now=2))
    assert refused(state, CreateAccount(user="CAROL", key="k-4")) == "name-taken"
