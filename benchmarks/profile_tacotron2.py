"""Tacotron2 free-running inference: ttscli vs NVIDIA's DLE code, and where the time goes.

    python -m benchmarks.profile_tacotron2 --ref /tmp/ttscli-ref [--batch 1 8] [--profile]

Builds the full-size torch.hub Tacotron2 with random weights (BatchNorm statistics randomised),
loads the same state dict into NVIDIA's model (from an exported DLE tree, see
``shared/tools/export_reference.sh``; optional) and into ``ttscli.tacotron2.Tacotron2``, forces
exactly ``--steps`` decoder steps with prenet dropout off, and times ``infer`` of both,
interleaved (alternating which goes first), printing medians in ms per decoder step, decoder
steps x items per second, and the parity of the mel (max abs difference and the fraction of the
fixture tolerance rtol=1e-4, atol=1e-5 used up). ``--profile`` adds a torch.profiler table of
one ttscli call. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import sys
import time
import warnings

import torch
from torch.nn import functional as F

from ttscli.tacotron2 import DEFAULT_CONFIG, Tacotron2


def _reference_module(ref: str):
    for cand in (os.path.join(ref, "dle", "PyTorch", "SpeechSynthesis", "Tacotron2"), ref):
        if os.path.isdir(os.path.join(cand, "tacotron2")):
            sys.path.insert(0, cand)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                import tacotron2.model as tmodel  # type: ignore[import-not-found]
            return tmodel
    raise SystemExit(f"no DLE Tacotron2 tree under {ref}")


def _prenet_no_dropout(self, x):
    for linear in self.layers:
        x = F.relu(linear(x))
    return x


def _randomise_batchnorm(model: torch.nn.Module, g: torch.Generator) -> None:
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.3)
                m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)


def _tolerance_fraction(expected, actual, rtol=1e-4, atol=1e-5) -> float:
    e, a = expected.double(), actual.double()
    return float(((a - e).abs() / (atol + rtol * e.abs())).max())


def _inputs(batch: int, n_ids: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([n_ids - 7 * i for i in range(batch)], dtype=torch.long)
    ids = torch.randint(1, DEFAULT_CONFIG["n_symbols"], (batch, n_ids), generator=g)
    for i, n in enumerate(lengths.tolist()):
        ids[i, n:] = 0
    return ids, lengths


def _arguments() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ref", default=os.environ.get("TTS_REF"))
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--ids", type=int, default=150, help="text ids of the longest item")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--profile", action="store_true")
    return ap.parse_args()


def _models(args: argparse.Namespace, g: torch.Generator):
    """ttscli's Tacotron2 and, with --ref, NVIDIA's with the same weights (both forced to --steps)."""
    ours = Tacotron2(**DEFAULT_CONFIG)
    _randomise_batchnorm(ours, g)
    ours.eval()
    ours.prenet_dropout = 0.0
    ours.max_decoder_steps = args.steps
    ours.gate_threshold = 1.0
    ours.early_stopping = False
    if not args.ref:
        return ours, None
    tmodel = _reference_module(args.ref)
    tmodel.Prenet.forward = _prenet_no_dropout
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = tmodel.Tacotron2(**DEFAULT_CONFIG)
    ref.load_state_dict(ours.state_dict())
    ref.eval()
    ref.decoder.max_decoder_steps = args.steps
    ref.decoder.gate_threshold = 1.0
    ref.decoder.early_stopping = False
    return ours, ref


def _interleaved_times(runners: dict, ids, lengths, repeat: int) -> dict[str, list[float]]:
    """Seconds per call of each runner, alternating which goes first."""
    times: dict[str, list[float]] = {name: [] for name in runners}
    names = list(runners)
    for i in range(repeat):
        for name in names if i % 2 == 0 else names[::-1]:
            t0 = time.perf_counter()
            runners[name](ids, lengths)
            times[name].append(time.perf_counter() - t0)
    return times


def _timing_row(row: dict, times: dict[str, list[float]], batch: int, steps: int) -> None:
    for name, ts in times.items():
        med = statistics.median(ts)
        row[f"{name}_ms_per_step"] = round(1e3 * med / steps, 3)
        row[f"{name}_min_ms_per_step"] = round(1e3 * min(ts) / steps, 3)
        row[f"{name}_item_steps_per_s"] = round(batch * steps / med, 1)
    if "ref" in times:
        row["speedup"] = round(
            statistics.median(times["ref"]) / statistics.median(times["ours"]), 3
        )


def _profile(run, ids, lengths) -> None:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run(ids, lengths)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))


def main() -> int:
    args = _arguments()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    g = torch.Generator().manual_seed(args.seed)
    ours, ref = _models(args, g)

    def run_ours(ids, lengths):
        with torch.inference_mode():
            return ours.infer(ids, lengths)

    def run_ref(ids, lengths):
        with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):
            return ref.infer(ids, lengths)

    runners = {"ours": run_ours, **({"ref": run_ref} if ref is not None else {})}
    results = []
    for batch in args.batch:
        ids, lengths = _inputs(batch, args.ids, g)
        row: dict = {"batch": batch, "steps": args.steps}
        mel = run_ours(ids, lengths)[0]
        if ref is not None:
            ref_mel = run_ref(ids, lengths)[0]
            row["mel_maxabs"] = float((mel.double() - ref_mel.double()).abs().max())
            row["tolerance_fraction"] = _tolerance_fraction(ref_mel, mel)
        times = _interleaved_times(runners, ids, lengths, args.repeat)
        _timing_row(row, times, batch, args.steps)
        print(json.dumps(row), flush=True)
        results.append(row)
        if args.profile:
            _profile(run_ours, ids, lengths)
    if len(results) > 1 and results[0]["batch"] == 1:
        base = results[0]["ours_item_steps_per_s"]
        for row in results[1:]:
            row["vs_batch1_rate"] = round(row["ours_item_steps_per_s"] / base, 2)
    print(json.dumps({"tool": "profile_tacotron2", "threads": args.threads, "results": results}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
