"""Per file, per engine and effect: does a window rendered alone equal the same pixels of its frame?

    python bench/crop_equal.py [--size 64x36] [--only NAME ...] [--no-corpus]

What the requester measures at submit (``blender.measure_crops``: frame 2 whole, then windows of 1/16 of it at
the top-left corner, the centre and the bottom-right corner, each compared with the frame under the comparison's
tolerance), for one scene per engine and effect (bench/crop_scenes.py) and for the artists' corpus files that
come back as 8-bit PNG (tests/apps/make_art.py). Prints a table for docs/verification.md and writes
bench/results.json key ``crop_equal``. EEVEE draws through software OpenGL where no GPU is present: slow.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from frender import blender  # noqa: E402

SCENES = (
    "cycles", "cycles_adaptive", "cycles_denoised", "cycles_motion_blur", "cycles_glare", "workbench",
    "eevee", "eevee_ssr", "eevee_fast_gi", "eevee_motion_blur", "eevee_bloom",
)
CORPUS = ("composited", "denoised", "deps", "udim_eevee")  # the corpus's 8-bit PNG files: the only ones crop-checked
FRAME = 2


async def _measure(backend: blender.Backend, blend: Path, work: Path) -> dict:
    info = await blender.inspect(backend, blend, job_dir=work)
    width, height = info.resolution
    start = time.perf_counter()
    m = await blender.measure_crops(backend, blend, work, FRAME, width=width, height=height, denoised=info.denoiser is not None)
    return {
        "engine": info.engine,
        "denoiser": info.denoiser,
        "size": f"{width}x{height}",
        "static_unsafe": list(info.crop_unsafe),
        "windows": [
            {"box": [w.left, w.top, w.width, w.height], "verdict": c.verdict, "fraction_off": c.fraction_off, "max_diff": c.max_diff}
            for w, c in zip(m.windows, m.comparisons)
        ],
        "equal": m.equal,
        "measure_seconds": round(time.perf_counter() - start, 1),
    }


def run(*, size: tuple[int, int] = (64, 36), scenes: tuple[str, ...] = SCENES, corpus: tuple[str, ...] = CORPUS) -> dict:
    """Measure every scene and corpus file named; returns ``{"rows": [...], "params": ...}``."""
    backend = blender.find_backend()
    python = sys.executable  # the Python that runs this has bpy, as the tests assume (make_art.py)
    rows = []
    with tempfile.TemporaryDirectory(prefix="frender-crop-equal-") as tmp:
        root = Path(tmp)
        if scenes:
            subprocess.run([str(python), "-E", "-P", str(HERE / "crop_scenes.py"), "--", str(root / "scenes"), str(size[0]), str(size[1]), *scenes],
                           check=True, capture_output=True)  # fmt: skip
        for name in scenes:
            work = root / "work" / name
            work.mkdir(parents=True)
            blend = work / "job.blend"
            blend.write_bytes((root / "scenes" / f"{name}.blend").read_bytes())
            rows.append({"file": name, **trio.run(_measure, backend, blend, work)})
            print(_line(rows[-1]), file=sys.stderr, flush=True)
        if corpus:
            art = root / "art"
            make_art = HERE.parent / "tests" / "apps" / "make_art.py"
            subprocess.run([str(python), "-E", "-P", str(make_art), "--", str(art)], check=True, capture_output=True)
            cases = json.loads((art / "cases.json").read_text())
            for case in corpus:
                blend = art / cases[case]["blend"]
                rows.append({"file": f"corpus: {case}", **trio.run(_measure, backend, blend, art / case)})
                print(_line(rows[-1]), file=sys.stderr, flush=True)
    return {"rows": rows, "params": {"size": f"{size[0]}x{size[1]}", "frame": FRAME, "samples": 4, "blender": str(backend)}}


def _window(w: dict) -> str:
    return f"{w['fraction_off']:.1%} / {w['max_diff']}"


def _line(row: dict) -> str:
    said = "DIFFER: whole frames" if not row["equal"] else "equal: crop checks"
    static = "unsafe" if row["static_unsafe"] else "-"
    return (
        f"| {row['file']} | {row['engine']}{' + denoiser' if row['denoiser'] else ''} | {static} | "
        + " | ".join(_window(w) for w in row["windows"])
        + f" | {said} | {row['measure_seconds']} s |"
    )


def table(result: dict) -> str:
    head = (
        "| file | engine | static list | top-left: off / max | centre | bottom-right | measured | measuring took |\n"
        "|---|---|---|---|---|---|---|---|"
    )
    return "\n".join([head, *(_line(r) for r in result["rows"])])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="64x36")
    parser.add_argument("--only", nargs="*", default=None, help="scene names (bench/crop_scenes.py) and corpus cases")
    parser.add_argument("--no-corpus", action="store_true")
    parser.add_argument("--no-record", action="store_true")
    a = parser.parse_args()
    size = blender.parse_resolution(a.size)
    scenes = tuple(n for n in SCENES if a.only is None or n in a.only)
    corpus = () if a.no_corpus else tuple(c for c in CORPUS if a.only is None or c in a.only)
    result = run(size=size, scenes=scenes, corpus=corpus)
    print(table(result))
    if not a.no_record:
        sys.path.insert(0, str(HERE))
        import _record

        _record.update({"crop_equal": {"value": sum(not r["equal"] for r in result["rows"]), "what": "files whose windows differ from the frame",
                                       **result}})


if __name__ == "__main__":
    main()
