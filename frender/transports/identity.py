"""A node's long-lived key pair, its fingerprint, and the TLS contexts built from it.

Each node (master, requester, friend, client) has one Ed25519 key, created on
first start in ``home/identity.pem`` (mode 0600) and kept. A peer is known by
the fingerprint of its key: ``"sha256:" + hex(sha256(SubjectPublicKeyInfo DER))``.

TLS needs a certificate, so a self-signed one is made from the key on each
start (``home/identity-cert.pem``, public). Nobody validates it against a CA:
clients pin the server's key fingerprint instead (see ``address.py``), and a
server learns its client's key from an in-channel proof, because stdlib ``ssl``
cannot accept an unknown self-signed client certificate.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import ssl
import stat
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.x509.oid import NameOID

__all__ = ["Identity", "fingerprint_of", "fingerprint_of_certificate", "verify_signature"]

KEY_FILE = "identity.pem"
CERT_FILE = "identity-cert.pem"


def fingerprint_of(public_key_raw: bytes) -> str:
    """The fingerprint of a raw 32-byte Ed25519 public key; ValueError if it is not one."""
    key = Ed25519PublicKey.from_public_bytes(public_key_raw)
    return _spki_fingerprint(key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))


def fingerprint_of_certificate(der: bytes) -> str:
    """The fingerprint of the key inside a DER certificate (what a TLS client pins)."""
    spki = x509.load_der_x509_certificate(der).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return _spki_fingerprint(spki)


def _spki_fingerprint(spki_der: bytes) -> str:
    return "sha256:" + hashlib.sha256(spki_der).hexdigest()


def verify_signature(public_key_raw: bytes, data: bytes, signature: bytes) -> bool:
    """True when ``signature`` is the Ed25519 signature of ``data`` by that key; never raises."""
    try:
        Ed25519PublicKey.from_public_bytes(public_key_raw).verify(signature, data)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


class Identity:
    """This node's key pair: signs proofs and assignments, and makes TLS contexts."""

    def __init__(self, key: Ed25519PrivateKey, home: Path) -> None:
        self._key = key
        self.home = home
        self.public_bytes: bytes = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.fingerprint: str = fingerprint_of(self.public_bytes)

    def __repr__(self) -> str:
        return f"Identity({self.fingerprint})"

    @classmethod
    def load_or_create(cls, home: Path) -> Identity:
        """Load ``home/identity.pem``, creating it (mode 0600, atomically) on first start."""
        home = Path(home)
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = home / KEY_FILE
        if not path.exists():
            _create_key_file(path)
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise PermissionError(f"{path} is readable by others (mode {mode:04o}); run: chmod 600 {path}")
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path} does not hold an Ed25519 private key")
        identity = cls(key, home)
        identity._write_certificate()
        return identity

    def sign(self, data: bytes) -> bytes:
        """The Ed25519 signature of ``data`` (64 bytes)."""
        return self._key.sign(data)

    def server_context(self) -> ssl.SSLContext:
        """A TLS 1.3 server context presenting this key's self-signed certificate."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_3
        context.load_cert_chain(self.home / CERT_FILE, self.home / KEY_FILE)
        return context

    @staticmethod
    def client_context() -> ssl.SSLContext:
        """A TLS 1.3 client context that checks no CA: the caller pins the server's fingerprint."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.minimum_version = ssl.TLSVersion.TLSv1_3
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context

    def _write_certificate(self) -> None:
        # Regenerated on every start: it holds nothing but the public key, so
        # there is no state to keep in step with the key file.
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "frender " + self.fingerprint[:23])])
        now = datetime.datetime.now(datetime.timezone.utc)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .sign(self._key, algorithm=None)
        )
        _write_atomically(self.home / CERT_FILE, certificate.public_bytes(serialization.Encoding.PEM), 0o644)


def _create_key_file(path: Path) -> None:
    """Write a fresh key beside ``path`` and link it into place; an existing key wins a race."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(pem)
            file.flush()
            os.fsync(file.fileno())
        try:
            os.link(temp, path)  # fails if another process created the key first
        except FileExistsError:
            pass
    finally:
        temp.unlink(missing_ok=True)


def _write_atomically(path: Path, data: bytes, mode: int) -> None:
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as file:
        file.write(data)
    os.replace(temp, path)
