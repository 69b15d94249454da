"""Signed, expiring web tokens: who may see which dashboard page.

A token is ``base64url(claims JSON) "." base64url(Ed25519 signature)``. The
claims carry the signer's raw public key, so a server checks the signature and
then whether that key's fingerprint is one it trusts for the scope asked:
the requester signs ``job:J`` links for a job's submitter, the master's key
signs ``operator`` tokens (and the requester honours those for every job).
The clock is an argument, so these functions are pure.
"""

from __future__ import annotations

import base64
import binascii
import json

from attrs import frozen

from frender.transports import Identity
from frender.transports.identity import fingerprint_of, verify_signature

__all__ = ["OPERATOR", "BadToken", "Claims", "job_scope", "read_token", "sign_token"]

OPERATOR = "operator"


class BadToken(Exception):
    """A token that is malformed, forged, expired or for another page."""


@frozen(kw_only=True)
class Claims:
    scope: str  # "operator" or "job:J"
    expires: float  # unix time
    signer: str  # the fingerprint of the key that signed it


def job_scope(job: int) -> str:
    return f"job:{job}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_token(identity: Identity, scope: str, *, now: float, seconds: float) -> str:
    """A token for ``scope`` signed by ``identity``, valid for ``seconds`` from ``now``."""
    claims = {"v": 1, "scope": scope, "exp": int(now + seconds), "key": _b64(identity.public_bytes)}
    body = _b64(json.dumps(claims, sort_keys=True, separators=(",", ":")).encode())
    return body + "." + _b64(identity.sign(body.encode()))


def read_token(token: str, *, now: float) -> Claims:
    """The claims of a well-signed, unexpired token; BadToken otherwise. The caller checks signer and scope."""
    body, dot, signature = token.partition(".")
    if not dot or len(token) > 1024:
        raise BadToken("not a token")
    try:
        claims = json.loads(_unb64(body))
        key = _unb64(claims["key"])
        scope, expires = claims["scope"], claims["exp"]
        sig = _unb64(signature)
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise BadToken("not a token") from None
    if not isinstance(scope, str) or not isinstance(expires, int) or claims.get("v") != 1:
        raise BadToken("not a token")
    if not verify_signature(key, body.encode(), sig):
        raise BadToken("bad signature")
    if expires <= now:
        raise BadToken("expired")
    try:
        signer = fingerprint_of(key)
    except ValueError:
        raise BadToken("not a key") from None
    return Claims(scope=scope, expires=float(expires), signer=signer)
