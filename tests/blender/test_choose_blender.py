"""Which held Blender renders a file: its own series, never an older one, and a clear refusal otherwise."""

from __future__ import annotations

import pytest

from frender.blender import NewerBlendFile, NoRuntime, bpy_python, choose_version

HELD = ("5.0.1", "4.2.9", "4.2.23", "3.4.1")


@pytest.mark.parametrize(
    ("saved_with", "requested", "chosen"),
    [
        ((4, 2), "", "4.2.23"),  # the file's series, newest patch
        ((5, 0), "", "5.0.1"),
        ((3, 4), "", "3.4.1"),
        ((4, 2), "5.0", "5.0.1"),  # the artist names a newer series
        ((4, 2), "4.2.9", "4.2.9"),  # or an exact patch
        (None, "4.2", "4.2.23"),  # no readable header: the named one
    ],
)
def test_the_files_own_series_or_the_named_one(saved_with, requested, chosen):
    """A job renders with the series that saved its file at the newest patch held, or the version the artist named."""
    assert choose_version(HELD, saved_with, requested) == chosen


@pytest.mark.parametrize(
    ("saved_with", "requested", "error", "words"),
    [
        ((5, 3), "", NoRuntime, "saved by Blender 5.3, newer than every Blender held here (5.0.1, 4.2.23, 4.2.9, 3.4.1)"),
        ((4, 5), "", NoRuntime, "no Blender 4.5 is held here (5.0.1, 4.2.23, 4.2.9, 3.4.1): name one with --blender"),
        ((5, 0), "4.2", NewerBlendFile, "saved by Blender 5.0, newer than Blender 4.2.23"),
        ((4, 2), "4.5", NoRuntime, "Blender 4.5 is not held here"),
        ((4, 2), "latest", NoRuntime, "not a version like 4.2"),
        (None, "", NoRuntime, "name one with --blender"),
    ],
)
def test_what_cannot_be_rendered_as_saved_is_refused_naming_what_is_held(saved_with, requested, error, words):
    """A file newer than every runtime, a series nobody holds, or an older Blender named for a newer file: refused."""
    with pytest.raises(error) as caught:
        choose_version(HELD, saved_with, requested)
    assert words in str(caught.value)


def test_a_lone_stand_in_renders_whatever_it_is_given():
    """A modelled Blender held alone renders any file, with a header or not (benchmarks and tests)."""
    assert choose_version(("modelled",), None) == "modelled"
    assert choose_version(("modelled",), (5, 0)) == "modelled"


@pytest.mark.parametrize(("version", "python"), [("4.2", "3.11"), ("4.5.3", "3.11"), ("5.0", "3.11"), ("5.1", "3.13"), ("5.3.0", "3.13")])
def test_each_bpy_needs_its_python(version, python):
    """bpy 4.2 to 5.0 install on Python 3.11, 5.1 and later on 3.13 (what PyPI holds)."""
    assert bpy_python(version) == python


def test_bpy_that_pypi_never_had_is_refused():
    """A bpy older than 4.2 is not offered, with the reason."""
    with pytest.raises(NoRuntime, match="4.2 to 5.0 for Python 3.11"):
        bpy_python("3.6")
