"""Both ends of the handshake: TLS with a pinned server key, then the client's key proof.

1. TCP, then TLS 1.3. The server presents a self-signed certificate for its
   identity key; the client computes that key's fingerprint and compares it
   with the one in the address it was given (WrongFingerprint otherwise).
2. Server -> client: Challenge(32 random bytes).
3. Client -> server: KeyProof(raw public key, signature over
   ``"frender client proof v1\\0" + nonce + server fingerprint``).
   The server checks the signature and derives the client's fingerprint.
   Binding the server's fingerprint defeats a relay: a malicious server M
   that forwards S's challenge gets a proof naming M, which S rejects. The
   fresh nonce defeats replay. (Stdlib ssl has no TLS 1.3 channel binding,
   and accepting unknown self-signed client certificates is not possible.)
4. Client -> server: its opening (OpenRpc, OpenPut or OpenGet). The server
   answers every opening with one frame (Ready, a FileHeader, or Failure).
"""

from __future__ import annotations

import secrets

import trio
from attrs import frozen

from frender.transports._channel import Channel
from frender.transports.errors import ProtocolError, WrongFingerprint
from frender.transports.identity import Identity, fingerprint_of, fingerprint_of_certificate, verify_signature
from frender.transports.messages import Challenge, KeyProof

__all__ = ["Peer", "proof_message", "server_handshake", "client_handshake"]

_PROOF_DOMAIN = b"frender client proof v1\x00"


@frozen
class Peer:
    """Who is on the other end: the key it proved, and the address it came from."""

    fingerprint: str
    public_key: bytes
    host: str


def proof_message(nonce: bytes, server_fingerprint: str) -> bytes:
    """The bytes a client signs to prove its key to the server with that fingerprint."""
    return _PROOF_DOMAIN + nonce + server_fingerprint.encode("ascii")


async def server_handshake(channel: Channel, identity: Identity, host: str) -> Peer:
    """TLS (server side) and the client's key proof; ProtocolError if the proof fails."""
    await channel.handshake()
    nonce = secrets.token_bytes(32)
    await channel.send_message(Challenge(nonce=nonce))
    proof = await channel.expect(KeyProof)
    if not verify_signature(proof.public_key, proof_message(nonce, identity.fingerprint), proof.signature):
        raise ProtocolError("key proof signature does not verify")
    return Peer(fingerprint_of(proof.public_key), proof.public_key, host)


async def client_handshake(channel: Channel, identity: Identity, server_fingerprint: str) -> None:
    """TLS (client side) with the server's key pinned, then prove our own key."""
    await channel.handshake()
    tls = channel.stream
    assert isinstance(tls, trio.SSLStream)
    actual = fingerprint_of_certificate(tls.getpeercert(binary_form=True))
    if actual != server_fingerprint:
        raise WrongFingerprint(server_fingerprint, actual)
    challenge = await channel.expect(Challenge)
    signature = identity.sign(proof_message(challenge.nonce, server_fingerprint))
    await channel.send_message(KeyProof(public_key=identity.public_bytes, signature=signature))

