"""Frame delivery throughput: many small PNGs through fRender's file socket vs plain copies.

A friend delivers a job's frames one after another over one connection
(``FileLink``): per frame ``file_header`` (sha256), the put, the body, the
receiver's hash check, fsync and rename, then the reply. The baselines move
the same files the same way, over one connection, the receiver writing and
fsyncing each and answering one byte:

- ``tcp``: plain TCP;
- ``tls``: stdlib ``ssl`` with the same key (TLS 1.3);
- ``frender``: ``file_header`` + ``FileLink.put`` to ``serve``.

Reported per variant: MB/s, files/s, p50/p99 milliseconds per file and CPU
seconds per GB (sender plus receiver).

    python bench/frames_transfer.py --count 200
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from frender.blender import modelled_frame  # noqa: E402
from frender.transports import Address, FileLink, Handler, Identity, file_header, serve  # noqa: E402
from transfer import _cpu  # noqa: E402  (CPU seconds of this process, as transfer.py counts them)

_LEN = struct.Struct(">Q")


def run(count: int = 200, sizes: tuple[tuple[int, int], ...] = ((160, 90), (1920, 1080))) -> dict:
    out: dict = {"count": count}
    with tempfile.TemporaryDirectory(prefix="frender-frames-") as tmp:
        root = Path(tmp)
        for width, height in sizes:
            key = f"{width}x{height}"
            src = root / f"src-{key}"
            src.mkdir()
            files = []
            for i in range(count):
                path = src / f"frame_{i + 1:04d}.png"
                path.write_bytes(modelled_frame(i + 1, width=width, height=height))
                files.append(path)
            total = sum(p.stat().st_size for p in files)
            res = {"bytes_per_frame": total // count}
            for variant in ("tcp", "tls", "frender"):
                res[variant] = _measure(variant, root / f"{key}-{variant}", files, total)
            res["ratio_vs_tls"] = round(res["frender"]["mb_s"] / res["tls"]["mb_s"], 3)
            res["ratio_vs_tcp"] = round(res["frender"]["mb_s"] / res["tcp"]["mb_s"], 3)
            out[key] = res
    return out


def _measure(variant: str, out: Path, files: list[Path], total: int) -> dict:
    out.mkdir()
    home = out.parent / "server-home"
    receiver = subprocess.Popen(
        [sys.executable, __file__, "--receive", variant, "--dir", str(out), "--home", str(home)], stdout=subprocess.PIPE, text=True
    )
    assert receiver.stdout is not None
    port, fingerprint, startup_cpu = receiver.stdout.readline().split()
    cpu = time.process_time()
    start = time.perf_counter()
    if variant == "frender":
        lat = trio.run(_frender_send, Address("127.0.0.1", int(port), fingerprint), out.parent / "client-home", files)
    else:
        lat = _plain_send(variant, int(port), files)
    elapsed = time.perf_counter() - start
    sender_cpu = time.process_time() - cpu
    receiver.terminate()
    _, _, usage = os.wait4(receiver.pid, 0)
    receiver_cpu = usage.ru_utime + usage.ru_stime - float(startup_cpu)
    lat.sort()
    return {
        "mb_s": round(total / elapsed / 1e6, 2),
        "files_per_s": round(len(files) / elapsed, 1),
        "p50_ms": round(lat[len(lat) // 2] * 1000, 2),
        "p99_ms": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000, 2),
        "cpu_s_per_gb": round((sender_cpu + receiver_cpu) / (total / 1e9), 1),
        "cpu_ms_per_file": round((sender_cpu + receiver_cpu) / len(files) * 1000, 2),
    }


def _plain_send(variant: str, port: int, files: list[Path]) -> list[float]:
    context = Identity.client_context() if variant == "tls" else None
    lat = []
    with socket.create_connection(("127.0.0.1", port)) as raw:
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as trio's sockets: no wait for delayed ACKs
        sock = context.wrap_socket(raw) if context else raw
        for path in files:
            t = time.perf_counter()
            data = path.read_bytes()
            sock.sendall(_LEN.pack(len(data)) + data)
            sock.recv(1)
            lat.append(time.perf_counter() - t)
        sock.close()
    return lat


async def _frender_send(address: Address, home: Path, files: list[Path]) -> list[float]:
    identity = Identity.load_or_create(home)
    lat = []
    async with FileLink(address, identity) as link:
        for i, path in enumerate(files):
            t = time.perf_counter()
            header = await file_header(path, kind="frame", job=1, frame=i + 1)
            await link.put(header, path)
            lat.append(time.perf_counter() - t)
    return lat


class _Sink(Handler):
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def accept_put(self, peer, header):  # noqa: ANN001, ANN201
        return self.directory / f"frame_{header.frame:04d}.png"


def _receive(variant: str, directory: Path, home: Path) -> None:
    identity = Identity.load_or_create(home)
    if variant == "frender":

        async def main() -> None:
            async with trio.open_nursery() as nursery:
                port = await nursery.start(serve, identity, "127.0.0.1", 0, _Sink(directory))
                print(port, identity.fingerprint, _cpu(), flush=True)

        trio.run(main)
        return
    listener = socket.create_server(("127.0.0.1", 0))
    print(listener.getsockname()[1], identity.fingerprint, _cpu(), flush=True)
    context = identity.server_context() if variant == "tls" else None
    n = 0
    while True:
        conn, _ = listener.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if context:
            conn = context.wrap_socket(conn, server_side=True)
        while True:
            head = b""
            while len(head) < 8 and (more := conn.recv(8 - len(head))):
                head += more
            if len(head) < 8:
                break  # the sender is done
            (size,) = _LEN.unpack(head)
            n += 1
            with open(directory / f"frame_{n:04d}.png", "wb", buffering=0) as file:
                received = 0
                while received < size and (chunk := conn.recv(min(1 << 20, size - received))):
                    file.write(chunk)
                    received += len(chunk)
                os.fsync(file.fileno())
            conn.sendall(b"k")
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--receive", help=argparse.SUPPRESS)
    parser.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--home", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.receive:
        _receive(args.receive, args.dir, args.home)
    else:
        print(json.dumps(run(args.count), indent=2))


if __name__ == "__main__":
    main()
