"""Where a training step and an evaluation batch spend their time, by operator family.

    python -m benchmarks.profile_step            # the fast path (tpv's default)
    TPV_FAST_PATH=0 python -m benchmarks.profile_step   # the plain path

The embedded SmolLM2-135M-Instruct on Rotten Tomatoes, the benchmark's cpu-mode workload
(batch 8, 20 prompt tokens; evaluation batches of 16): two untimed steps, then one step and one
evaluation pass (64 examples, 4 batches) under torch.profiler. Prints a markdown table of self
CPU time per operator family (docs/benchmarks.md) and writes the record as JSON.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import torch

from benchmarks.throughput.settings import MODE_DEFAULTS, Settings
from benchmarks.throughput.workloads import build_workload, prepare_data
from tpv import fastpath
from tpv.backbone import Backbone
from tpv.evaluate import Evaluator
from tpv.prompted import PromptedModel
from tpv.step import train_step

# First match wins; anything unmatched is "other".
FAMILIES = [
    ("matmul", r"^aten::(mm|bmm|addmm|matmul|linear|baddbmm)$"),
    ("attention", r"scaled_dot_product|flash_attention|_efficient_attention"),
    (
        "elementwise",
        r"^aten::(mul|add|sub|div|neg|pow|rsqrt|silu|exp|tanh|sin|cos|where|"
        r"masked_fill|clamp|maximum|minimum|sqrt|gelu|lerp|addcmul|addcdiv)_?$|_backward$",
    ),
    (
        "copies and layout",
        r"^aten::(copy_|cat|_to_copy|to|contiguous|clone|index|"
        r"index_select|embedding|gather|scatter|repeat_interleave|expand|fill_|zero_|zeros|empty)",
    ),
    (
        "reductions and softmax",
        r"^aten::(sum|mean|_log_softmax|_softmax|log_softmax|softmax|"
        r"max|cumsum|_log_softmax_backward_data|nll_loss|cross_entropy)",
    ),
]


def family(name: str) -> str:
    for fam, pattern in FAMILIES:
        if re.search(pattern, name):
            return fam
    return "other"


def by_family(prof) -> dict[str, float]:
    """Self CPU milliseconds per family (self time: nested operators are not counted twice)."""
    out: dict[str, float] = {}
    for ev in prof.key_averages():
        out[family(ev.key)] = out.get(family(ev.key), 0.0) + ev.self_cpu_time_total / 1e3
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(prog="python -m benchmarks.profile_step")
    p.add_argument("--out", default="runs/benchmarks/profile.json")
    args = p.parse_args(argv)
    from torch.profiler import ProfilerActivity, profile

    s = Settings(mode="cpu", **MODE_DEFAULTS["cpu"] | {"models": ["smollm2"]})
    w = build_workload("smollm2", s)
    d = prepare_data(w, s)
    bb = w.backbone
    dtype = fastpath.default_dtype("cpu")
    if dtype != bb.model.dtype:
        bb = Backbone(bb.model.to(dtype), bb.tokenizer, name=bb.name)
    model = PromptedModel(bb, d.origin)
    opt = torch.optim.AdamW([model.prompt], lr=s.lr, weight_decay=s.weight_decay, foreach=True)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 1.0)
    B = s.batch_size

    def step(k: int):
        idx = range(k * B, (k + 1) * B)
        return train_step(model, opt, sched, d.train, idx, device="cpu", share_prefix=True)

    for k in range(2):
        step(k)
    ev = Evaluator(bb, w.task, d.test_rows, scorer="rank", batch_size=16, encoder=d.encoder)
    ev(None, model=model)
    record: dict = {
        "fast_path": fastpath.enabled(),
        "dtype": str(dtype),
        "threads": torch.get_num_threads(),
    }
    parts = (("train step", lambda: step(2)), ("eval, 64 examples", lambda: ev(None, model=model)))
    for part, run in parts:
        t0 = time.perf_counter()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            run()
        wall = time.perf_counter() - t0
        fams = by_family(prof)
        record[part] = {"wall_ms": wall * 1e3, "self_cpu_ms": fams}
        total = sum(fams.values())
        print(
            f"\n{part} (fast path {'on' if record['fast_path'] else 'off'}, {dtype}): "
            f"{wall * 1e3:.0f} ms wall under the profiler"
        )
        print("| family | ms | share |\n|---|---|---|")
        for fam, ms in fams.items():
            print(f"| {fam} | {ms:.0f} | {100 * ms / total:.0f}% |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=1))
    return record


if __name__ == "__main__":
    main()
