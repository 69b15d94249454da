"""Shared pieces for transport tests: identities, a test handler, a running server.

Every test that moves bytes runs twice: with the fast path (trio's TLS
internals driven directly, see frender/transports/_fastpath.py) and with it
switched off by FRENDER_NO_FAST_PATH=1, so trio's public API alone carries
the same protocol. Tests of the fast path itself are marked
``fast_path_only``; tests of messages alone run once.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest
from transport_fixtures import EchoHandler

from frender.transports import Address, Identity, Limits, serve
from frender.transports._fastpath import SWITCH

_WITHOUT_A_WIRE = {"test_transports_messages"}  # modules that never open a stream


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "fast_path" not in metafunc.fixturenames:
        return
    once = metafunc.definition.get_closest_marker("fast_path_only") or metafunc.module.__name__ in _WITHOUT_A_WIRE
    metafunc.parametrize("fast_path", ["fast"] if once else ["fast", "public"], indirect=True)


@pytest.fixture(autouse=True)
def fast_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Whether this run uses the fast path ("fast") or trio's public API only ("public")."""
    on = getattr(request, "param", "fast") == "fast"
    if on:
        monkeypatch.delenv(SWITCH, raising=False)
    else:
        monkeypatch.setenv(SWITCH, "1")
    return on


@pytest.fixture(scope="session")
def identity_factory(tmp_path_factory: pytest.TempPathFactory):
    """Make (and cache) a named identity; key generation is cheap but the cert is not free."""
    made: dict[str, Identity] = {}

    def make(name: str) -> Identity:
        if name not in made:
            made[name] = Identity.load_or_create(tmp_path_factory.mktemp("home") / name)
        return made[name]

    return make


@pytest.fixture
def server_identity(identity_factory) -> Identity:
    return identity_factory("server")


@pytest.fixture
def client_identity(identity_factory) -> Identity:
    return identity_factory("client")


@pytest.fixture
def files(tmp_path: Path) -> Path:
    root = tmp_path / "served"
    root.mkdir()
    return root


@pytest.fixture
def limits() -> Limits:
    return Limits(max_per_host=1000)


@pytest.fixture
async def address(nursery, server_identity: Identity, files: Path, limits: Limits) -> Address:
    """A real server on 127.0.0.1 with the EchoHandler, for the test's duration."""
    port = await nursery.start(partial(serve, server_identity, "127.0.0.1", 0, EchoHandler(files), limits=limits))
    return Address("127.0.0.1", port, server_identity.fingerprint)
