"""The driver: every workload through every pipeline within a time budget; the record."""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import os
import time
import traceback
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import torch

from benchmarks.throughput.machine import PeakMemory, machine_description, peak_bf16_tflops
from benchmarks.throughput.pipelines import run_peft, run_tpv
from benchmarks.throughput.settings import (
    DESCRIPTIONS,
    MODE_DEFAULTS,
    MODES,
    PIPELINES,
    Settings,
    log,
)
from benchmarks.throughput.workloads import build_workload, pack_assets, prepare_data, use_assets
from tpv.backbone import Backbone
from tpv.evaluate import Evaluator
from tpv.io import write_json


# --- driver -----------------------------------------------------------------------------------
def _restore(bb: Backbone) -> None:
    # The Trainer switches the shared base model to train mode (dropout on): undo for the next.
    bb.model.eval()
    bb.model.requires_grad_(False)


def _cleanup(device: str) -> None:
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    # Hand freed heap back to the OS, so the next pipeline's RSS rise is its own.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def run_workload(name: str, s: Settings, peak: float | None, deadline: float) -> dict:
    rec: dict = {"model": name, "pipelines": {}}
    t0 = time.perf_counter()
    try:
        w = build_workload(name, s)
        d = prepare_data(w, s)
    except Exception as e:  # noqa: BLE001
        log(f"{name}: setup failed: {e!r}")
        rec["error"] = traceback.format_exc()
        return rec
    n_main, n_dec = d.params
    rec.update(
        kind="seq2seq" if d.seq2seq else "decoder",
        task=w.task.name,
        notes=w.notes,
        nonembedding_params={"main": n_main, "decoder": n_dec},
        train_examples=len(d.train),
        eval_examples=len(d.test),
        mean_input_tokens=sum(len(it.input_ids) for it in d.test) / max(1, len(d.test)),
        setup_s=time.perf_counter() - t0,
    )
    log(f"{name}: ready in {rec['setup_s']:.1f}s ({n_main + n_dec:,} non-embedding params)")
    prompts: dict[str, torch.Tensor] = {}
    for pipe in PIPELINES:
        if time.perf_counter() > deadline:
            rec["pipelines"][pipe] = {"skipped": "time budget spent"}
            log(f"{name}/{pipe}: skipped (time budget)")
            continue
        log(f"{name}/{pipe}: {s.warmup_steps}+{s.steps} steps, then eval")
        t1 = time.perf_counter()
        try:
            with PeakMemory(s.device) as mem:
                if pipe.startswith("tpv"):
                    res = run_tpv(w, d, s, peak, plain=pipe == "tpv-plain")
                else:
                    res = run_peft(w, d, s, peak, pipe)
            prompts[pipe] = res.pop("prompt")
            res["memory"] = mem.record()
        except Exception as e:  # noqa: BLE001
            log(f"{name}/{pipe}: FAILED {e!r}")
            res = {"error": traceback.format_exc()}
        res["description"] = DESCRIPTIONS[pipe]
        res["wall_s"] = time.perf_counter() - t1
        rec["pipelines"][pipe] = res
        _restore(w.backbone)
        _cleanup(s.device)
        if "train" in res:
            log(
                f"{name}/{pipe}: train {res['train']['examples_per_s']:.2f} ex/s, "
                f"eval {res['eval']['examples_per_s']:.2f} ex/s, "
                f"{res['eval']['metric']} {res['eval']['score']:.3f} ({res['wall_s']:.1f}s)"
            )
    # Every tuned prompt scored the same way too: tpv's rank classification.
    for pipe in ("A", "B"):
        if pipe in prompts and time.perf_counter() < deadline:
            try:
                r = Evaluator(
                    w.backbone,
                    w.task,
                    d.test_rows,
                    batch_size=s.eval_batch_size,
                    encoder=d.encoder,
                )
                rec["pipelines"][pipe]["rank_score"] = r(prompts[pipe])["score"]
            except Exception as e:  # noqa: BLE001
                rec["pipelines"][pipe]["rank_score_error"] = repr(e)
    rec["ratios"] = ratios(rec["pipelines"])
    del w, d
    _cleanup(s.device)
    return rec


def ratios(pipes: dict) -> dict:
    """tpv / X for each speed (higher is better for tpv) and for peak memory (lower is);
    tpv/tpv-plain is the fast path's gain over the plain path."""
    out = {}
    tpv = pipes.get("tpv", {})
    for other in ("tpv-plain", "A", "B"):
        x = pipes.get(other, {})
        r = {}
        for key, (part, field_) in {
            "train_examples_per_s": ("train", "examples_per_s"),
            "train_tokens_per_s": ("train", "tokens_per_s"),
            "eval_examples_per_s": ("eval", "examples_per_s"),
            "memory": ("memory", "compare_mib"),  # GPU: peak; CPU: RSS rise
        }.items():
            a, b = tpv.get(part, {}).get(field_), x.get(part, {}).get(field_)
            if a is not None and b:
                r[key] = a / b
        out[f"tpv/{other}"] = r
    return out


def format_table(record: dict) -> str:
    head = (
        f"{'model':<11} {'pipe':<9} {'train ex/s':>10} {'tok/s':>9} {'MFU':>6} "
        f"{'eval ex/s':>9} {'mem MiB':>9} {'score':>6} {'rank':>6}"
    )
    lines = [head, "-" * len(head)]
    for run in record["runs"]:
        if "skipped" in run:
            lines.append(f"{run['model']:<11} skipped ({run['skipped']})")
            continue
        if "error" in run:
            lines.append(f"{run['model']:<11} setup failed (see JSON)")
            continue
        for pipe in PIPELINES:
            p = run["pipelines"].get(pipe, {})
            if "train" not in p:
                why = "skipped" if "skipped" in p else "FAILED (see JSON)"
                lines.append(f"{run['model']:<11} {pipe:<9} {why}")
                continue
            t, e = p["train"], p["eval"]
            mfu = f"{100 * t['mfu']:.1f}%" if "mfu" in t else "-"
            rank = p.get("rank_score")
            lines.append(
                f"{run['model']:<11} {pipe:<9} {t['examples_per_s']:>10.2f} "
                f"{t['tokens_per_s']:>9.0f} {mfu:>6} {e['examples_per_s']:>9.2f} "
                f"{p['memory']['compare_mib']:>9.0f} {e['score']:>6.3f} "
                f"{'-' if rank is None else f'{rank:.3f}':>6}"
            )
        for key, r in run.get("ratios", {}).items():
            if r:
                parts = ", ".join(f"{k} {v:.2f}x" for k, v in r.items())
                lines.append(f"{'':<11} {key}: {parts}")
    lines.append("score: each pipeline's own eval (tpv rank, A/B generate); rank: tpv's rank")
    lines.append("classification of the prompt each pipeline tuned (same scorer for all).")
    lines.append("mem: GPU peak allocated (weights included); CPU RSS rise during the pipeline.")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> Settings | Path:
    """Settings for a run, or the folder to write with --pack-assets."""
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.throughput", description=__doc__.split("\n\n")[0]
    )
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--mode", choices=MODES)
    what.add_argument(
        "--pack-assets",
        metavar="DIR",
        help="copy SmolLM2's tokenizer + config and the Rotten Tomatoes corpus into DIR "
        "(about 4 MiB) for a machine without tpv's asset packages; then pass --assets DIR",
    )
    p.add_argument("--steps", type=int, help="timed steps after the warm-up steps")
    p.add_argument("--warmup-steps", type=int, help="untimed steps first (at least 1)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--prompt-tokens", type=int)
    p.add_argument("--eval-examples", type=int, help="test examples scored by every pipeline")
    p.add_argument("--eval-batch-size", type=int)
    p.add_argument("--models", help="comma list: tiny-llama, tiny-t5, smollm2, llama-1b, t5-base")
    p.add_argument("--device", help="cpu or cuda (default: by mode)")
    p.add_argument("--time-budget-s", type=float, help="start no pipeline after this many s")
    p.add_argument(
        "--tpv-generate",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also score tpv's prompt by generation (default: on except cpu mode)",
    )
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's; smoke: 1)")
    p.add_argument(
        "--max-grad-norm",
        type=float,
        default=1.0,
        help="gradient clipping in A and B (the Trainer's default 1.0; 0: off, as tpv)",
    )
    p.add_argument("--assets", metavar="DIR", help="a folder made by --pack-assets")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="JSON record (default runs/benchmarks/throughput-MODE.json)")
    a = p.parse_args(argv)
    if a.pack_assets:
        return Path(a.pack_assets)
    opts = dict(MODE_DEFAULTS[a.mode])
    opts.setdefault("threads", None)
    for key in opts:
        value = getattr(a, key)
        if value is not None:
            opts[key] = value
    if opts["warmup_steps"] < 1 or opts["steps"] < 1:
        p.error("--steps and --warmup-steps must be at least 1")
    opts["models"] = [m.strip() for m in str(opts["models"]).split(",") if m.strip()]
    out = a.out or f"runs/benchmarks/throughput-{a.mode}.json"
    return Settings(
        mode=a.mode,
        seed=a.seed,
        max_grad_norm=a.max_grad_norm,
        assets=a.assets,
        out=out,
        **opts,
    )


def main(argv: Sequence[str] | None = None) -> dict:
    s = parse_args(argv)
    if isinstance(s, Path):
        log(f"assets packed into {pack_assets(str(s))}")
        return {"assets": str(s)}
    use_assets(s)
    threads = torch.get_num_threads()
    if s.threads:
        torch.set_num_threads(s.threads)
    try:
        return _main(s)
    finally:
        torch.set_num_threads(threads)  # main() also runs inside the test session


def _main(s: Settings) -> dict:
    t0 = time.perf_counter()
    deadline = t0 + s.time_budget_s
    out = Path(s.out)
    record: dict = {"benchmark": "throughput", "config": asdict(s), "runs": [], "errors": []}
    record["machine"] = machine_description(s.device)
    log(f"mode {s.mode} on {record['machine'].get('gpu_name', record['machine']['cpu_model'])}")
    peak = None
    if s.device.startswith("cuda"):
        try:
            if not torch.cuda.is_available():
                raise RuntimeError("CUDA is not available")
            peak = peak_bf16_tflops(s.device)
            log(f"peak bf16 matmul: {peak:.0f} TFLOP/s")
        except Exception as e:  # noqa: BLE001
            record["errors"].append(f"peak matmul: {e!r}")
            log(f"peak matmul failed: {e!r}")
    record["peak_bf16_tflops"] = peak
    for name in s.models:
        if time.perf_counter() > deadline:
            record["runs"].append({"model": name, "skipped": "time budget spent"})
            continue
        record["runs"].append(run_workload(name, s, peak, deadline))
        record["elapsed_s"] = time.perf_counter() - t0
        write_json(out, record)  # after every model: a run killed later still leaves results
    if hasattr(os, "getloadavg"):
        record["machine"]["load_average_at_end"] = list(os.getloadavg())
    record["elapsed_s"] = time.perf_counter() - t0
    write_json(out, record)
    print(format_table(record), flush=True)
    log(f"wrote {out} ({record['elapsed_s']:.0f}s)")
    return record
