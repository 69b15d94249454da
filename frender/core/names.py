"""Usernames and friend names: which may be bound, and when two are the same name.

Invariants it keeps (the master's decider applies them to new bindings only;
names already in a log replay as they were):

Rule 1: a new name is 1-32 ASCII letters, digits, '-', '_' or '.', starting
        with a letter or digit. No other script, no space, no control
        character, no markup: so no name can pass for another by its look
        (a Cyrillic 'а' for a Latin 'a') or change what a terminal shows.
Rule 2: two names are one name when their normalised forms (NFKC, then
        case-folded) are equal: 'Carol' cannot be bound beside 'carol'.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["NAME_RULE", "MAX_NAME", "is_valid_name", "normalised"]

MAX_NAME = 32
NAME_RULE = f"1-{MAX_NAME} ASCII letters, digits, '-', '_' or '.', starting with a letter or digit"
_NAME = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._-]{{0,{MAX_NAME - 1}}}")


def normalised(name: str) -> str:
    """The form in which names are unique (Rule 2): NFKC, then case-folded."""
    return unicodedata.normalize("NFKC", name).casefold()


def is_valid_name(name: str) -> bool:
    """Whether ``name`` may be bound now (Rule 1).

    The name as given must already be in the alphabet: ASCII only, so NFKC
    leaves it alone and case-folding only lowers it (``'Straße'`` would fold
    to ``'strasse'``, but its 'ß' is refused here).
    """
    return name.isascii() and _NAME.fullmatch(name) is not None
