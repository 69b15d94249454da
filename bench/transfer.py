"""Transfer throughput: fRender's file socket vs plain Python TLS and TCP copies on loopback.

Each variant moves the same file from this process to a receiver subprocess
that writes it to disk and fsyncs it, so all of them pay for the disk alike:

- ``tcp``: ``socket.sendfile`` into ``recv_into`` (the floor of the machine);
- ``tls``: a stdlib ``ssl`` socket copy with the same key and TLS 1.3;
- ``frender_put``: ``put_file`` to ``serve`` (TLS via trio, key proof, sha256
  check, temporary file, rename);
- ``frender_get``: ``get_file`` from ``serve`` (a friend fetching a .blend;
  the server has not hashed the file yet and hashes it while sending it, once
  per file: this is the first friend's fetch, the dearest one).

Each variant's copy is deleted before the next variant runs, so every
receiver writes into page cache of the same kind.

Reported per variant: MB/s and CPU seconds per GB, both processes together and
each alone (the client, which puts or gets, and the server).
Run: ``python bench/transfer.py --size-mb 512``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from frender.transports import Address, FileHeader, Handler, Identity, file_header, get_file, put_file, serve  # noqa: E402

_CHUNK = 1 << 20


def run(size_mb: int) -> dict:
    """Measure every variant on a ``size_mb`` file; returns {variant: {mb_s, cpu_s_per_gb}} plus ratios."""
    with tempfile.TemporaryDirectory(prefix="frender-bench-") as tmp:
        root = Path(tmp)
        source = root / "source.bin"
        block = os.urandom(_CHUNK)
        with open(source, "wb") as file:
            for _ in range(size_mb):
                file.write(block)
        results = {variant: _measure(variant, root, source) for variant in ("tcp", "tls", "frender_put", "frender_get")}
    for variant in ("frender_put", "frender_get"):
        results[variant]["vs_tls"] = round(results[variant]["mb_s"] / results["tls"]["mb_s"], 2)
        results[variant]["vs_tcp"] = round(results[variant]["mb_s"] / results["tcp"]["mb_s"], 2)
    results["size_mb"] = size_mb
    return results


def _measure(variant: str, root: Path, source: Path) -> dict:
    """Start the receiver for ``variant``, send ``source`` to it, and time the whole copy."""
    out = root / variant
    out.mkdir()
    home = root / "server-home"
    receiver = subprocess.Popen(
        [sys.executable, __file__, "--receive", variant, "--dir", str(out), "--home", str(home), "--source", str(source)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert receiver.stdout is not None
    port, fingerprint, startup_cpu = receiver.stdout.readline().split()
    size = source.stat().st_size
    client_home = root / "client-home"
    # The sender's header (its sha256) is made once when the file is made,
    # not per transfer, so it is outside the clock.
    header = trio.run(partial(file_header, source, kind="blend", job=1))
    cpu = time.process_time()
    start = time.perf_counter()
    if variant == "tcp":
        with socket.create_connection(("127.0.0.1", int(port))) as sock, open(source, "rb") as file:
            sock.sendfile(file)
            sock.shutdown(socket.SHUT_WR)
            sock.recv(1)
    elif variant == "tls":
        context = Identity.client_context()
        with socket.create_connection(("127.0.0.1", int(port))) as raw, context.wrap_socket(raw) as sock:
            with open(source, "rb", buffering=0) as file:
                while chunk := file.read(_CHUNK):
                    sock.sendall(chunk)
            sock.recv(1)
    else:
        address = Address("127.0.0.1", int(port), fingerprint)
        trio.run(_frender_send, variant, address, client_home, header, source, out)
    elapsed = time.perf_counter() - start
    sender_cpu = time.process_time() - cpu
    receiver.terminate()  # the frender receiver serves until killed; the others have exited
    _, _, usage = os.wait4(receiver.pid, 0)
    receiver_cpu = usage.ru_utime + usage.ru_stime - float(startup_cpu)
    # Freed now, so that every variant's receiver writes into page cache of the
    # same kind: on a VM, fresh pages cost the writer several times more.
    shutil.rmtree(out)
    return {
        "mb_s": round(size / elapsed / 1e6, 1),
        "seconds": round(elapsed, 3),
        "cpu_s_per_gb": round((sender_cpu + receiver_cpu) / (size / 1e9), 2),
        "cpu_s_per_gb_client_server": [round(sender_cpu / (size / 1e9), 2), round(receiver_cpu / (size / 1e9), 2)],
    }


async def _frender_send(
    variant: str, address: Address, home: Path, header: FileHeader, source: Path, out: Path
) -> None:
    identity = Identity.load_or_create(home)
    if variant == "frender_put":
        await put_file(address, identity, header, source)
    else:
        await get_file(address, identity, FileHeader(kind="blend", job=1), out / "fetched.blend", max_size=1 << 40)


class _BenchHandler(Handler):
    def __init__(self, directory: Path, source: Path) -> None:
        self.directory = directory
        self.source = source

    async def accept_put(self, peer, header):  # noqa: ANN001, ANN201
        return self.directory / f"{header.job}.blend"

    async def open_get(self, peer, header):  # noqa: ANN001, ANN201
        return self.source


def _receive(variant: str, directory: Path, home: Path, source: Path) -> None:
    """Receiver subprocess: print 'port fingerprint cpu-so-far', then take transfers until killed."""
    identity = Identity.load_or_create(home)
    if variant.startswith("frender"):
        trio.run(_frender_receive, identity, directory, source)
        return
    listener = socket.create_server(("127.0.0.1", 0))
    print(listener.getsockname()[1], identity.fingerprint, _cpu(), flush=True)
    conn, _ = listener.accept()
    if variant == "tls":
        conn = identity.server_context().wrap_socket(conn, server_side=True)
    size = source.stat().st_size
    buffer = bytearray(_CHUNK)
    view = memoryview(buffer)
    with open(directory / "copy.bin", "wb", buffering=0) as file:
        received = 0
        while received < size and (count := conn.recv_into(buffer)):
            file.write(view[:count])
            received += count
        os.fsync(file.fileno())
    conn.sendall(b"k")  # the sender waits for this, so its clock covers the fsync too
    conn.close()


async def _frender_receive(identity: Identity, directory: Path, source: Path) -> None:
    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve, identity, "127.0.0.1", 0, _BenchHandler(directory, source))
        print(port, identity.fingerprint, _cpu(), flush=True)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=512)
    parser.add_argument("--receive", help=argparse.SUPPRESS)
    parser.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--home", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--source", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.receive:
        _receive(args.receive, args.dir, args.home, args.source)
    else:
        print(json.dumps(run(args.size_mb), indent=2))


if __name__ == "__main__":
    main()
