"""Measured agreement: how far honest renders, crops and cheats lie from a delivered frame (real Blender).

For each scene (the demo scene at 480x270 and the test suite's tiny scene),
with the denoiser off and on, the frame a friend delivers is frame 1 rendered
with 1 thread. Against it are compared:

- honest: the same frame with 2 threads; crops (Blender's render border,
  cropped) of windows of 1/16 of the area, placed at random and at the
  corners, rendered with 1 and 2 threads, unpadded, padded, and padded with
  the edges aligned to the denoiser's 16-pixel grid (compared in the centre),
  and the same crops against the 2-thread frame;
- lazy: the frame rendered with a quarter of the samples, whole and cropped,
  and the honest crops against a lazy delivered frame (the crop check of a
  lazy forger);
- stale (frame 2's image), black and noise, whole and in the windows.

Each row gives the fraction of pixels off by more than 1, 2, 4, 8 and 16/255
(largest channel difference), the largest difference, the mean absolute
difference and PSNR, and the verdict of `frender.blender.compare_pixels` (the
agreement rule as it stands). Times: a 1/16 crop vs the full frame (1 thread,
the minimum of several renders: the machine is shared), the fixed per-render
cost (the intercept of time against area through those two) and the start of
a render session (process, load, guard).

    python bench/agreement.py                # renders, then compares; writes bench/agreement.json
    python bench/agreement.py --compare-only # compares the images kept in --work again (after a rule change)
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from frender import blender  # noqa: E402
from frender.blender import Window  # noqa: E402

THRESHOLDS = (1, 2, 4, 8, 16)
SCENES: dict[str, dict[str, Any]] = {
    # The demo scene at the size the measurements are quoted for; 16 samples is `frender scene`'s default.
    "demo": {"resolution": (480, 270), "samples": 16, "frames": 24, "windows": 6, "crops": ((0, 1), (16, 1), (16, 16))},
    # tests/blender/conftest.py's TINY scene.
    "test": {"resolution": (64, 36), "samples": 4, "frames": 3, "windows": 10, "crops": ((0, 1), (8, 1), (8, 16), (16, 16))},
    # The demo scene at 64 samples, the denoiser on: a lazy render (16 samples) is closest to honest here.
    # One honest full frame (they take minutes on a shared machine), aligned crops of both, 2 threads.
    "demo64": {"resolution": (480, 270), "samples": 64, "frames": 24, "windows": 4, "crops": ((16, 16),), "crops_only": True,
               "denoise": (True,)},
}
LIMITS = blender.Limits(wall_seconds=3600.0, memory_bytes=None)


def windows(width: int, height: int, count: int, rng: np.random.Generator) -> list[Window]:
    """`count` windows of 1/16 of the frame (a quarter of each side): two corners, the rest at random."""
    w, h = -(-width // 4), -(-height // 4)
    chosen = [Window(left=0, top=0, width=w, height=h), Window(left=width - w, top=height - h, width=w, height=h)]
    while len(chosen) < count:
        chosen.append(Window(left=int(rng.integers(0, width - w + 1)), top=int(rng.integers(0, height - h + 1)), width=w, height=h))
    return chosen


async def render_scene(name: str, spec: dict[str, Any], denoise: bool, work: Path, repeats: int) -> dict[str, Any]:
    """Render every image the comparisons of one scene and denoiser setting need; return their manifest."""
    backend = blender.BpyBackend()
    width, height = spec["resolution"]
    base = work / f"{name}-{'dn' if denoise else 'raw'}"
    boxes = windows(width, height, spec["windows"], np.random.default_rng(12))
    crops = [list(crop) for crop in spec["crops"]]  # (padding, alignment)
    manifest: dict[str, Any] = {"scene": name, "denoise": denoise, "width": width, "height": height, "crops": crops,
                                "windows": [[b.left, b.top, b.width, b.height] for b in boxes], "images": {}, "times": {}}
    starts: list[float] = []
    full_times: list[float] = []
    crop_times: dict[str, list[float]] = {}
    for variant, samples in (("honest", spec["samples"]), ("lazy", max(spec["samples"] // 4, 1))):
        job = base / variant
        job.mkdir(parents=True, exist_ok=True)
        blend = blender.build_demo_scene(job / "scene.blend", frames=spec["frames"], resolution=(width, height),
                                         samples=samples, denoise=denoise, backend=backend)
        for threads in ((2,) if spec.get("crops_only") else (1, 2) if variant == "honest" else (2,)):
            key = f"{variant}-{threads}t"
            t0 = time.perf_counter()
            async with blender.open_session(backend, blend, job, threads=threads, limits=LIMITS) as session:
                starts.append(time.perf_counter() - t0)
                batches = [[1, 2]] + [[1]] * (repeats - 1) if key == "honest-1t" else [[1]]
                if spec.get("crops_only"):
                    batches = [[1]] if variant == "honest" else []
                for frames in batches:
                    for done in await session.render(frames):
                        target = base / f"{key}-f{done.frame}.png"
                        done.path.replace(target)
                        manifest["images"][f"{key}-f{done.frame}"] = str(target)
                        if threads == 1 and done.frame == 1:
                            full_times.append(done.seconds)
                for index, box in enumerate(boxes):
                    for padding, align in crops:
                        region = box.padded(padding, width, height, align=align)
                        (done,) = await session.render([1], window=region)
                        target = base / f"{key}-w{index}-p{padding}a{align}.png"
                        done.path.replace(target)
                        manifest["images"][f"{key}-w{index}-p{padding}a{align}"] = str(target)
                        if threads == 1 and variant == "honest" and not spec.get("crops_only"):
                            crop_times.setdefault(f"p{padding}a{align}", []).append(done.seconds)
    if full_times:
        manifest["times"] = {"session_start_s": min(starts), "full_s": min(full_times), "full_runs": len(full_times),
                             "crop_s": {crop: min(seconds) for crop, seconds in crop_times.items()},
                             "crop_runs": len(boxes)}
    return manifest


async def time_scene(manifest: dict[str, Any], work: Path, repeats: int) -> dict[str, Any]:
    """Time one scene's renders in one session, 1 thread: the full frame and a central 1/16 window, each crop kind,
    `repeats` times each (the minimum is what the machine can do; it is shared)."""
    backend = blender.BpyBackend()
    width, height = manifest["width"], manifest["height"]
    job = work / f"{manifest['scene']}-{'dn' if manifest['denoise'] else 'raw'}" / "honest"
    w, h = -(-width // 4), -(-height // 4)
    box = Window(left=(width - w) // 2, top=(height - h) // 2, width=w, height=h)
    timing: dict[str, Any] = {"full_s": [], "crop_s": {}}
    t0 = time.perf_counter()
    async with blender.open_session(backend, job / "scene.blend", job, threads=1, limits=LIMITS) as session:
        timing["session_start_s"] = time.perf_counter() - t0
        for _ in range(repeats):
            timing["full_s"].append((await session.render([1]))[0].seconds)
            for padding, align in manifest["crops"]:
                region = box.padded(padding, width, height, align=align)
                (done,) = await session.render([1], window=region)
                timing["crop_s"].setdefault(f"p{padding}a{align}", []).append(done.seconds)
                timing.setdefault("crop_area", {})[f"p{padding}a{align}"] = region.width * region.height / (width * height)
    return timing


def figures(a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    """The measured distance between two 8-bit images, and the rule's verdict on them."""
    diff = np.abs(a.astype(np.int16) - b.astype(np.int16))
    per_pixel = diff.max(axis=2)
    mse = float(np.mean(diff.astype(np.float64) ** 2))
    verdict = blender.compare_pixels(a, b)
    rule = blender.Tolerance()
    pixels = per_pixel.size
    # How far the rule is from changing its verdict: the larger of the two tiers' counts over their allowances.
    ratio = max(int(np.count_nonzero(per_pixel > rule.pixel_threshold)) / rule.allowed_off(pixels),
                int(np.count_nonzero(per_pixel > rule.dither_threshold)) / rule.allowed_over_dither(pixels))
    return {
        "pixels": pixels,
        "rule_ratio": ratio,
        **{f"off_{t}": float(np.mean(per_pixel > t)) for t in THRESHOLDS},
        "max_diff": int(diff.max()),
        "mean_diff": float(diff[..., :3].mean()),
        "psnr": math.inf if mse == 0 else 10 * math.log10(255**2 / mse),
        "verdict": verdict.verdict,
    }


def compare_scene(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """Every comparison of one scene and denoiser setting, one row each."""
    width, height, crops = manifest["width"], manifest["height"], manifest["crops"]
    images = {key: blender.decode_png(Path(path), width=width, height=height) if "-w" not in key else Path(path)
              for key, path in manifest["images"].items()}
    boxes = [Window(left=x, top=y, width=w, height=h) for x, y, w, h in manifest["windows"]]
    rows: list[dict[str, Any]] = []

    def row(kind: str, case: str, honest: bool, a: np.ndarray, b: np.ndarray) -> None:
        rows.append({"scene": manifest["scene"], "denoise": manifest["denoise"], "kind": kind, "case": case,
                     "honest": honest, **figures(a, b)})

    if "honest-1t-f1" not in images:  # crops and one honest frame only
        full = images["honest-2t-f1"]
        for index, box in enumerate(boxes):
            for padding, align in crops:
                region = box.padded(padding, width, height, align=align)
                honest, lazy = (box.of(blender.decode_png(images[f"{key}-w{index}-p{padding}a{align}"], width=region.width,
                                                          height=region.height), region) for key in ("honest-2t", "lazy-2t"))
                row("crop", f"pad {padding} aligned {align}: honest crop vs honest frame", True, box.of(full), honest)
                row("crop", f"pad {padding} aligned {align}: lazy crop vs honest frame", False, box.of(full), lazy)
                row("crop", f"pad {padding} aligned {align}: lazy crop vs honest crop", False, honest, lazy)
        return rows
    delivered = images["honest-1t-f1"]
    two = images["honest-2t-f1"]
    lazy = images["lazy-2t-f1"]
    black = blender.decode_png(blender.forge_frame("black", width=width, height=height), width=width, height=height)
    noise = np.random.default_rng(7).integers(0, 256, (height, width, 4), dtype=np.uint8)
    noise[..., 3] = 255
    row("full", "2 threads vs 1", True, delivered, two)
    row("full", "lazy (1/4 samples)", False, delivered, lazy)
    row("full", "stale (frame 2)", False, delivered, images["honest-1t-f2"])
    row("full", "black", False, delivered, black)
    row("full", "noise", False, delivered, noise)
    for index, box in enumerate(boxes):
        for padding, align in crops:
            region = box.padded(padding, width, height, align=align)
            label = f"pad {padding}" + (f" aligned {align}" if align > 1 else "")

            def crop(key: str) -> np.ndarray:
                pixels = blender.decode_png(images[f"{key}-w{index}-p{padding}a{align}"], width=region.width, height=region.height)
                return box.of(pixels, region)

            honest_crop = crop("honest-1t")
            row("crop", f"{label} 1 thread vs 1-thread frame", True, box.of(delivered), honest_crop)
            row("crop", f"{label} 2 threads vs 1-thread frame", True, box.of(delivered), crop("honest-2t"))
            row("crop", f"{label} 1 thread vs 2-thread frame", True, box.of(two), honest_crop)
            row("crop", f"{label} lazy crop vs honest frame", False, box.of(delivered), crop("lazy-2t"))
            row("crop", f"{label} honest crop vs lazy frame", False, box.of(lazy), honest_crop)
            row("crop", f"{label} vs stale frame", False, box.of(images["honest-1t-f2"]), honest_crop)
            row("crop", f"{label} vs black frame", False, box.of(black), honest_crop)
            row("crop", f"{label} vs noise frame", False, box.of(noise), honest_crop)
    return rows


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of one case over all windows: the worst figures (largest for honest cases, smallest for cheats)."""
    groups: dict[tuple[str, bool, str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["scene"], r["denoise"], r["kind"], r["case"]), []).append(r)
    summary = []
    for (scene, denoise, kind, case), group in groups.items():
        honest = group[0]["honest"]
        pick = max if honest else min
        summary.append({
            "scene": scene, "denoise": denoise, "kind": kind, "case": case, "honest": honest, "n": len(group),
            **{f"off_{t}": pick(r[f"off_{t}"] for r in group) for t in THRESHOLDS},
            "max_diff": pick(r["max_diff"] for r in group),
            "mean_diff": pick(r["mean_diff"] for r in group),
            "psnr": (min if honest else max)(r["psnr"] for r in group),
            "rule_ratio": pick(r["rule_ratio"] for r in group),
            "wrong_verdicts": sum((r["verdict"] == "disagree") == honest for r in group),
        })
    return summary


def valid_check(s: dict[str, Any]) -> bool:
    """Whether a row is a comparison the crop check makes: whole frames, or crops padded and aligned as `CROP_*` say."""
    if s["kind"] == "full":
        return True
    return f"pad {blender.CROP_PADDING} aligned {blender.CROP_ALIGNMENT}" in s["case"] or not s["denoise"] and "pad 0" in s["case"]


def doc_tables(summary: list[dict[str, Any]], times: list[dict[str, Any]]) -> str:
    """The tables docs/verification.md publishes: the rows, the rule's margins, the times."""
    lines = ["| scene | denoiser | compared with the delivered frame | windows | >2/255 | >4/255 | max | PSNR dB | wrong verdicts |",
             "|---|---|---|---|---|---|---|---|---|"]
    for s in summary:
        if any(word in s["case"] for word in ("black", "noise", "vs 2-thread frame", "pad 8")):
            continue
        if not s["denoise"] and s["kind"] == "crop" and "pad 16" in s["case"] and "aligned" not in s["case"]:
            continue  # without the denoiser padding changes nothing: shown unpadded and aligned
        if s["kind"] == "crop" and not valid_check(s) and not s["honest"]:
            continue
        psnr = "inf" if math.isinf(s["psnr"]) else f"{s['psnr']:.1f}"
        lines.append(f"| {s['scene']} | {'on' if s['denoise'] else 'off'} | {s['kind']}: {s['case']} | {s['n']} | "
                     f"{100 * s['off_2']:.2f}% | {100 * s['off_4']:.2f}% | {s['max_diff']} | {psnr} | {s['wrong_verdicts']} |")
    lines += ["", "| scene | denoiser | honest: worst measured / allowed | lazy: least measured / allowed | stale, black, noise: least |",
              "|---|---|---|---|---|"]
    keys = sorted({(s["scene"], s["denoise"]) for s in summary})
    for scene, denoise in keys:
        rows = [s for s in summary if (s["scene"], s["denoise"]) == (scene, denoise) and valid_check(s)]
        honest = [s["rule_ratio"] for s in rows if s["honest"]]
        lazy = [s["rule_ratio"] for s in rows if not s["honest"] and "lazy" in s["case"]]
        other = [s["rule_ratio"] for s in rows if not s["honest"] and "lazy" not in s["case"]]
        cells = [f"{max(honest):.2f}" if honest else "-", f"{min(lazy):.1f}x" if lazy else "-", f"{min(other):.1f}x" if other else "-"]
        lines.append(f"| {scene} | {'on' if denoise else 'off'} | " + " | ".join(cells) + " |")
    lines += ["", "| scene | denoiser | full frame | crop, unpadded | padded 16 | padded 16, aligned | fixed per render | session start |",
              "|---|---|---|---|---|---|---|---|"]
    for t in (t for t in times if t["scene"] == "demo"):
        crop = {key: f"{t['crop_s'][key]:.2f} s ({100 * t['crop_over_full'][key]:.1f}%, area {100 * t['crop_area'][key]:.1f}%)"
                for key in t["crop_s"]}
        lines.append(f"| {t['scene']} | {'on' if t['denoise'] else 'off'} | {t['full_s']:.2f} s | {crop.get('p0a1', '-')} | "
                     f"{crop.get('p16a1', crop.get('p8a1', '-'))} | {crop.get('p16a16', '-')} | "
                     f"{t['fixed_intercept_s']:.2f} s; at most {t['fixed_at_most_s'] or 0:.2f} s | {t['session_start_s']:.2f} s |")
    return "\n".join(lines)


def table(summary: list[dict[str, Any]]) -> str:
    head = ("| scene | denoiser | kind | case | n | " + " | ".join(f">{t}/255" for t in THRESHOLDS)
            + " | max | mean | PSNR dB | wrong verdicts |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for s in summary:
        psnr = "inf" if math.isinf(s["psnr"]) else f"{s['psnr']:.1f}"
        lines.append(f"| {s['scene']} | {'on' if s['denoise'] else 'off'} | {s['kind']} | {s['case']} | {s['n']} | "
                     + " | ".join(f"{100 * s[f'off_{t}']:.2f}%" for t in THRESHOLDS)
                     + f" | {s['max_diff']} | {s['mean_diff']:.2f} | {psnr} | {s['wrong_verdicts']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/frender-agreement"), help="where the rendered images are kept")
    parser.add_argument("--scenes", default="test,demo,demo64", help="comma-separated: test, demo, demo64")
    parser.add_argument("--repeats", type=int, default=2, help="batches of full frames rendered with 1 thread (the minimum is kept)")
    parser.add_argument("--compare-only", action="store_true", help="compare the images of a previous run in --work")
    parser.add_argument("--timing-only", action="store_true", help="time the renders of a previous run's scenes again")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "agreement.json")
    args = parser.parse_args()
    started = time.perf_counter()
    manifests_path = args.work / "manifests.json"
    if args.compare_only or args.timing_only:
        manifests = json.loads(manifests_path.read_text())
    else:
        args.work.mkdir(parents=True, exist_ok=True)
        # Scenes not rendered this time keep their images from an earlier run.
        earlier = json.loads(manifests_path.read_text()) if manifests_path.exists() else []
        manifests = [m for m in earlier if m["scene"] not in args.scenes.split(",")]
        for name in args.scenes.split(","):
            for denoise in SCENES[name].get("denoise", (False, True)):
                manifests.append(trio.run(render_scene, name, SCENES[name], denoise, args.work, args.repeats))
                print(f"rendered {name}, denoiser {'on' if denoise else 'off'}: {manifests[-1]['times']}", flush=True)
    if not args.compare_only:
        for manifest in manifests:
            if manifest["scene"] in args.scenes.split(",") and manifest["times"]:
                manifest["timing"] = trio.run(time_scene, manifest, args.work, args.repeats + 1)
                print(f"timed {manifest['scene']}, denoiser {'on' if manifest['denoise'] else 'off'}", flush=True)
        manifests_path.write_text(json.dumps(manifests, indent=1))
    rows = [row for manifest in manifests for row in compare_scene(manifest)]
    summary = summarise(rows)
    # The fixed cost of one render in an open session (scene sync, denoiser start): the intercept of time against
    # area through the unpadded 1/16 crop and the full frame, and, bounding it from above, a whole frame of the
    # same scene at the test size (64x36, 4 samples).
    times = []
    for m in manifests:
        if "timing" not in m:
            continue
        t = m["timing"]
        full, crops = min(t["full_s"]), {crop: min(seconds) for crop, seconds in t["crop_s"].items()}
        times.append({"scene": m["scene"], "denoise": m["denoise"], "session_start_s": t["session_start_s"], "full_s": full,
                      "crop_s": crops, "crop_area": t["crop_area"], "crop_over_full": {crop: s / full for crop, s in crops.items()},
                      "fixed_intercept_s": max((16 * crops["p0a1"] - full) / 15, 0.0), "runs": len(t["full_s"])})
    tiny = {t["denoise"]: t["full_s"] for t in times if t["scene"] == "test"}
    for t in times:
        t["fixed_at_most_s"] = tiny.get(t["denoise"])
    print(table(summary))
    print()
    print(doc_tables(summary, times))
    for t in times:
        crops = ", ".join(f"{crop} {seconds:.2f} s ({100 * t['crop_over_full'][crop]:.1f}%)" for crop, seconds in t["crop_s"].items())
        print(f"{t['scene']} denoiser {'on' if t['denoise'] else 'off'}: full {t['full_s']:.2f} s; 1/16 crops (pPADaALIGN) {crops};"
              f" fixed per render {t['fixed_intercept_s']:.2f} s (intercept), at most {t['fixed_at_most_s'] or 0:.2f} s (64x36 frame);"
              f" session start {t['session_start_s']:.2f} s"
              f" (1 thread, a central window, minimum of {t['runs']} runs each)")
    wrong = sum(s["wrong_verdicts"] for s in summary)
    print(f"wrong verdicts under the rule: {wrong}")
    wrong_valid = sum(s["wrong_verdicts"] for s in summary if valid_check(s))
    print(f"wrong verdicts among the checks the crop check makes (whole frames, padded and aligned crops): {wrong_valid}")
    args.out.write_text(json.dumps({"rule": repr(blender.Tolerance()), "wrong_verdicts": wrong, "wrong_verdicts_valid": wrong_valid,
                                    "summary": summary, "times": times,
                                    "seconds": time.perf_counter() - started}, indent=1, default=str))


if __name__ == "__main__":
    main()
