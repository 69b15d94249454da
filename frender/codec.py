"""The one converter: attrs classes <-> canonical JSON and msgpack, by stable tag.

Every event, command and wire message is a frozen attrs class carrying
``tag: ClassVar[str]`` such as ``"frame_accepted.v1"``. The tag, never the
class's import path, is what the store and the transports write, so renaming
or moving a class never breaks an old log or an old peer.

Rule 1: one converter (cattrs' JSON preconf) serves both encodings, so a body
hashed in the log and a body sent on the wire unstructure the same way, except
for ``bytes``: the converter leaves them as ``bytes`` (msgpack carries them
natively) and only the JSON text spells them in base85, as the preconf does.
Rule 2: the JSON form is canonical (sorted keys, no spaces, no NaN): the store
hashes it, so the same event always hashes the same.
"""

from __future__ import annotations

import json
from base64 import b85decode, b85encode
from types import ModuleType
from typing import Any, Callable

import attrs
import msgpack
from cattrs.errors import BaseValidationError
from cattrs.gen import make_dict_unstructure_fn, override
from cattrs.preconf.json import make_converter

__all__ = [
    "DecodeError",
    "UnknownTag",
    "converter",
    "register",
    "register_module",
    "registered",
    "tag_of",
    "to_json",
    "from_json",
    "pack",
    "unpack",
    "pack_body",
]

converter = make_converter()
# Bytes stay bytes when unstructured: msgpack packs them natively, where the
# preconf's pure-Python base85 cost more than the rest of a reply. The JSON text
# keeps the preconf's base85 spelling through ``_dumps``' default hook, so a
# canonical body (and its hash) is byte-identical to before. This is still one
# converter: both encodings share every hook, and only the last step (the
# JSON encoder) spells bytes, because JSON has no bytes type. Structuring takes
# either form: bytes from msgpack, base85 text from JSON (or an older peer).
converter.register_unstructure_hook(bytes, lambda value: value)
converter.register_structure_hook(bytes, lambda value, _: value if type(value) is bytes else b85decode(value))
# Sets have no order; a canonical body needs one.
converter.register_unstructure_hook_func(
    lambda t: getattr(t, "__origin__", t) in (set, frozenset),
    lambda value: sorted(converter.unstructure(item) for item in value),
)


# A field whose attrs metadata holds ``omit_if_default`` is left out of the body while it holds its
# default: a field added to a logged record keeps every body written before it byte-identical (and
# such bodies decode to the default).
def _omits(cls: Any) -> bool:
    return attrs.has(cls) and any(a.metadata.get("omit_if_default") for a in attrs.fields(cls))


def _omitting_hook(cls: Any) -> Callable[[Any], Any]:
    overrides = {a.name: override(omit_if_default=True) for a in attrs.fields(cls) if a.metadata.get("omit_if_default")}
    return make_dict_unstructure_fn(cls, converter, **overrides)  # type: ignore[arg-type]


converter.register_unstructure_hook_factory(_omits, _omitting_hook)

_classes: dict[str, type] = {}
_structure: dict[str, Callable[[Any, type], Any]] = {}
_unstructure: dict[type, Callable[[Any], Any]] = {}


class DecodeError(ValueError):
    """Bytes or a body that do not decode to a registered message."""


class UnknownTag(DecodeError):
    """A well-formed message whose tag this build does not know."""

    def __init__(self, tag: object) -> None:
        super().__init__(f"unknown message tag {tag!r}")
        self.tag = tag


def register(*classes: type) -> None:
    """Make tagged attrs classes encodable; a tag may name one class only."""
    for cls in classes:
        tag = cls.__dict__.get("tag") or getattr(cls, "tag", None)
        if not isinstance(tag, str) or not attrs.has(cls):
            raise TypeError(f"{cls.__qualname__} is not a tagged attrs class")
        known = _classes.get(tag)
        if known is not None and known is not cls:
            raise TypeError(f"tag {tag!r} names both {known.__qualname__} and {cls.__qualname__}")
        _classes[tag] = cls
        _structure[tag] = converter.get_structure_hook(cls)
        _unstructure[cls] = converter.get_unstructure_hook(cls)


def register_module(module: ModuleType) -> None:
    """Register every tagged attrs class defined in ``module``."""
    register(
        *(
            obj
            for obj in vars(module).values()
            if isinstance(obj, type)
            and obj.__module__ == module.__name__
            and attrs.has(obj)
            and isinstance(getattr(obj, "tag", None), str)
        )
    )


def registered() -> dict[str, type]:
    """Every known tag and its class (a copy)."""
    return dict(_classes)


def tag_of(obj: object) -> str:
    tag = getattr(type(obj), "tag", None)
    if type(obj) not in _unstructure:
        raise TypeError(f"{type(obj).__qualname__} is not registered with the codec")
    return tag  # type: ignore[return-value]


def _primitive(obj: object) -> Any:
    try:
        return _unstructure[type(obj)](obj)
    except KeyError:
        raise TypeError(f"{type(obj).__qualname__} is not registered with the codec") from None


def _bytes_as_text(value: object) -> str:
    """The JSON spelling of bytes: base85, exactly as cattrs' JSON preconf writes it."""
    if type(value) is bytes:
        return (b85encode(value) if value else b"").decode("utf8")
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _dumps(data: Any) -> str:
    return json.dumps(
        data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_bytes_as_text
    )


def to_json(obj: object) -> str:
    """The canonical JSON body of ``obj`` (without its tag)."""
    return _dumps(_primitive(obj))


def _build(tag: str, data: Any) -> Any:
    try:
        hook = _structure[tag]
    except (KeyError, TypeError):
        raise UnknownTag(tag) from None
    try:
        return hook(data, _classes[tag])
    except (BaseValidationError, TypeError, ValueError, KeyError, AttributeError) as exc:
        raise DecodeError(f"malformed {tag!r} body: {_first_line(exc)}") from None


def from_json(tag: str, body: str | bytes) -> Any:
    """Rebuild the object stored as ``tag`` + canonical JSON ``body``."""
    try:
        data = json.loads(body)
    except (ValueError, TypeError) as exc:
        raise DecodeError(f"body of {tag!r} is not JSON: {exc}") from None
    return _build(tag, data)


def pack(obj: object) -> bytes:
    """msgpack bytes for the wire: ``[tag, body]``."""
    packed: bytes = msgpack.packb([tag_of(obj), _primitive(obj)], use_bin_type=True)
    return packed


def pack_body(obj: object) -> Any:
    """The unstructured ``[tag, body]`` pair, for embedding in a larger message."""
    return [tag_of(obj), _primitive(obj)]


def unpack(data: bytes) -> Any:
    """Decode wire bytes; anything but a registered message raises DecodeError."""
    try:
        pair = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises a zoo of types on garbage
        raise DecodeError(f"not a msgpack message: {_first_line(exc)}") from None
    if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str)):
        raise DecodeError("a message is a [tag, body] pair")
    return _build(pair[0], pair[1])


def _first_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]



def _register_core() -> None:
    # The core imports attrs only; the codec learns its events here.
    from frender.core import job, master

    register(*master.EVENTS)
    register(*job.EVENTS)


_register_core()
