"""Run the benchmark sections, print a table and one JSON line with every figure."""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

from . import hifigan, sections
from .serve_load import bench_serve

sections.SECTIONS.update(hifigan.SECTIONS)
sections.SECTIONS["serve"] = bench_serve  # the load section of `ttscli serve`


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument(
        "--only", nargs="*", choices=list(sections.SECTIONS), help="run only these sections"
    )
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--quick", action="store_true", help="fewer steps/frames (smoke run)")
    parser.add_argument("--ref", help="NVIDIA reference tree: also run perf_vs_reference.py")
    args = parser.parse_args(argv)
    if args.ref:  # the hifigan sections import NVIDIA's generator from it
        os.environ.setdefault("TTS_REF", args.ref)

    import torch

    torch.set_num_threads(args.threads)
    results: dict[str, object] = {
        "machine": platform.machine(),
        "cpu": sections.cpu_name(),
        "torch": torch.__version__,
        "threads": args.threads,
        "device": "cpu",
    }
    rows: list[tuple[str, str, str]] = []
    for name in args.only or list(sections.SECTIONS):
        started = time.perf_counter()
        try:
            figures = sections.SECTIONS[name](quick=args.quick)
        except sections.Skip as exc:
            rows.append((name, "skipped", str(exc)))
            results[name] = {"skipped": str(exc)}
            continue
        results[name] = figures
        for key, value in figures.items():
            rows.append((name, key, _fmt(value)))
        rows.append((name, "section seconds", f"{time.perf_counter() - started:.1f}"))
    results["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    rows.append(("process", "peak RSS (MB)", str(results["peak_rss_mb"])))
    if args.ref:
        results["vs_reference"] = _vs_reference(args.ref, args.threads)
        rows.append(("vs_reference", "see JSON", "fp32 and bf16"))
    width = max(len(r[1]) for r in rows)
    print(f"{'section':<14} {'measure':<{width}}  value")
    for section, key, value in rows:
        print(f"{section:<14} {key:<{width}}  {value}")
    print(json.dumps(results, sort_keys=True))
    return 0


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 100 else f"{value:,.1f}"
    return str(value)


def _vs_reference(ref: str, threads: int) -> dict:
    script = Path(__file__).resolve().parents[1].parent / "shared/tools/perf_vs_reference.py"
    out = {}
    for dtype in ("float32", "bfloat16"):
        cmd = [sys.executable, str(script), "--ref", ref, "--threads", str(threads)]
        cmd += ["--waveglow-dtype", dtype]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        sys.stderr.write(proc.stdout + proc.stderr)
        last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else "{}"
        try:
            out[dtype] = json.loads(last)
        except ValueError:
            out[dtype] = {"error": last}
    return out


if __name__ == "__main__":
    sys.exit(main())
