"""Measure the rank scorers (rank, rank_mean, rank_calibrated) against each other, beside the floor.

One forward pass per (task, prompt) gives the summed label log-probabilities of the test sample
and of the content-free inputs; every rule is applied to those same numbers, so the rules differ
only in how they read the model, never in which examples or forward passes they saw. The
Evaluator's own rank path is the same function (tests/test_scoring.py checks they agree).

  0-shot: untuned origins (vocab sampling, P tokens) of every seed, every task.
  tuned:  a short tuning run per named task from origin 0 (the loss does not depend on the
          scorer; validation is evaluated only at the start and the end, so the rule does not
          steer which prompt is kept beyond that), then the same rescoring.

Example (docs/scoring.md):
  nice -n 5 python scripts/measure_scorers.py --out runs/scoring/measure.json
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

OFFLINE = ["rotten_tomatoes", "tweets3", "bbc_news", "amazon_polarity", "nyt_polarity",
           "vader_tweets"]  # fmt: skip
RULES = ["rank", "rank_mean", "rank_calibrated"]


def _score_all(ev, prompt) -> dict:
    from tpv import metrics
    from tpv.floors import constant_floors
    from tpv.scoring import label_scores

    summed, cf = ev.label_logprobs(prompt)
    lengths = [len(ids) for ids in ev.encoder.label_ids]
    gold = [it.label for it in ev.items]
    C = len(ev.task.labels)
    out = {"floors": constant_floors(gold, C), "rules": {}}
    for rule in RULES:
        pred = label_scores(summed, rule, lengths, cf).argmax(-1).tolist()
        m = metrics.compute(ev.task.metric, pred, gold, C)
        m["predicted"] = [pred.count(c) for c in range(C)]
        out["rules"][rule] = m
    return out


def _score_last(ev, run: Path, run_seconds: float | None = None) -> dict:
    """Score the prompt of the LAST step (the checkpoint), not the one validation kept: with a
    short run on a 16-example validation the kept prompt can be the untuned start."""
    from safetensors.torch import load_file

    m = json.loads((run / "metrics.json").read_text())
    r = _score_all(ev, load_file(run / "checkpoint.safetensors")["prompt"])
    r.update(steps=m["steps"], best_step=m["best_step"], scored="last step",
             train_seconds=m["train_seconds"], run_seconds=run_seconds)  # fmt: skip
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", nargs="*", default=OFFLINE)
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--tokens", type=int, default=50)
    ap.add_argument("--test-examples", type=int, default=200)
    ap.add_argument("--max-input-tokens", type=int, default=128)
    ap.add_argument("--tune", nargs="*", default=["bbc_news", "rotten_tomatoes"])
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--tune-eval-examples", type=int, default=64, help="validation (start, end)")
    ap.add_argument("--tune-test-examples", type=int, default=None, help="default: --test-examples")
    ap.add_argument("--out", type=Path, default=Path("runs/scoring/measure.json"))
    ap.add_argument("--table", nargs="+", type=Path, help="Only print the tables of these files.")
    ap.add_argument("--rescore", type=Path, help="Only score a finished tuning run's last prompt.")
    args = ap.parse_args()
    if args.table:
        print(table(args.table))
        return
    if args.rescore:
        _rescore(args)
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    from tpv.backbone import Backbone
    from tpv.evaluate import Evaluator
    from tpv.io import write_json
    from tpv.tasks import get_task
    from tpv.tasks.fewshot import subsample
    from tpv.train import TrainConfig, train

    backbone = Backbone.load(None)
    result: dict = {"args": {k: str(v) for k, v in vars(args).items()}, "zero_shot": {},
                    "tuned": {}}  # fmt: skip
    if args.out.exists():  # resume: keep what an earlier (killed) run of the same out measured
        old = json.loads(args.out.read_text())
        result["zero_shot"], result["tuned"] = old["zero_shot"], old["tuned"]
    evs = {}
    for name in dict.fromkeys([*args.tasks, *args.tune]):
        task = get_task(name)
        n = args.test_examples
        if name not in args.tasks and args.tune_test_examples:
            n = args.tune_test_examples
        rows = subsample(task.split("test"), n)
        evs[name] = Evaluator(backbone, task, rows, max_input_tokens=args.max_input_tokens)
        result["label_tokens"] = result.get("label_tokens", {}) | {
            name: dict(zip(task.labels, map(len, evs[name].encoder.label_ids), strict=True))
        }
    # Seed-major: every task at the first origin before any task at the next one, so a run cut
    # short still covers every task.
    for seed in args.seeds:
        for name in args.tasks:
            if f"{name}/o{seed}" in result["zero_shot"]:
                continue
            start = time.perf_counter()
            r = _score_all(evs[name], backbone.make_origin(args.tokens, seed))
            r["seconds"] = time.perf_counter() - start
            result["zero_shot"][f"{name}/o{seed}"] = r
            logging.info("0-shot %s o%d: %s", name, seed,
                         {k: round(v["score"], 3) for k, v in r["rules"].items()})  # fmt: skip
            write_json(args.out, result)
    for name in args.tune:
        if name in result["tuned"]:
            continue
        run = args.out.parent / f"tuned-{name}"
        cfg = TrainConfig(
            task=name, out=str(run), num_tokens=args.tokens, origin_seed=args.seeds[0],
            max_steps=args.steps, batch_size=args.batch_size, eval_every=args.steps,
            eval_examples=args.tune_eval_examples, test_examples=1,
            max_input_tokens=args.max_input_tokens,
        )  # fmt: skip
        start = time.perf_counter()
        m = train(cfg, backbone=backbone, task=evs[name].task, progress=False)
        train_s = time.perf_counter() - start
        result["tuned"][name] = _score_last(evs[name], run, train_s)
        logging.info("tuned %s (%d steps, %.0f s): %s", name, m["steps"], train_s,
                     {k: round(v["score"], 3) for k, v in r["rules"].items()})  # fmt: skip
        write_json(args.out, result)


def _rescore(args) -> None:
    from tpv.backbone import Backbone
    from tpv.evaluate import Evaluator
    from tpv.io import write_json
    from tpv.tasks import get_task
    from tpv.tasks.fewshot import subsample

    cfg = json.loads((args.rescore / "config.json").read_text())
    task = get_task(cfg["task"])
    rows = subsample(task.split("test"), args.tune_test_examples or args.test_examples)
    ev = Evaluator(Backbone.load(None), task, rows, max_input_tokens=cfg["max_input_tokens"])
    out = json.loads(args.out.read_text()) if args.out.exists() else {"zero_shot": {}, "tuned": {}}
    out["tuned"][cfg["task"]] = _score_last(ev, args.rescore)
    write_json(args.out, out)
    logging.info("rescored %s", cfg["task"])


def table(paths: list[Path]) -> str:
    """The markdown tables of docs/scoring.md from the measurement files."""
    import statistics

    zero, tuned, tokens = {}, {}, {}
    for p in paths:
        r = json.loads(p.read_text())
        zero |= r["zero_shot"]
        tuned |= r["tuned"]
        tokens |= r.get("label_tokens", {})

    def cell(rs: list[dict], key: str) -> str:
        xs = [x[key] for x in rs]
        if len(xs) == 1:
            return f"{xs[0]:.3f}"
        return f"{statistics.mean(xs):.3f} ± {statistics.stdev(xs):.3f}"

    def rows(entries: dict[str, list[dict]]) -> list[str]:
        out = []
        for name, rs in entries.items():
            f = rs[0]["floors"]
            metric = rs[0]["rules"]["rank"]["metric"]
            lens = "/".join(str(n) for n in tokens.get(name, {}).values())
            cells = [
                f"{cell([x['rules'][rule] for x in rs], 'accuracy')} / "
                f"{cell([x['rules'][rule] for x in rs], metric)}"
                for rule in RULES
            ]
            floor = f"{f['accuracy']['score']:.3f} / {f[metric]['score']:.3f}"
            out.append(
                f"| {name} | {metric} | {lens} | {len(rs)} | {floor} | " + " | ".join(cells) + " |"
            )
        return out

    head = ("| task | primary | label tokens | prompts | floor acc / primary | "
            + " | ".join(f"{r} acc / primary" for r in RULES) + " |\n|" + "---|" * 8)  # fmt: skip
    by_task: dict[str, list[dict]] = {}
    for key, r in zero.items():
        by_task.setdefault(key.split("/")[0], []).append(r)
    parts = ["0-shot (untuned origins):", "", head, *rows(by_task), ""]
    if tuned:
        parts += ["tuned:", "", head, *rows({k: [v] for k, v in tuned.items()}), ""]
        for name, r in tuned.items():
            parts.append(
                f"- {name}: {r['steps']} steps, scored at the last step "
                f"(validation kept step {r['best_step']}), {r['train_seconds']:.0f} s of training"
            )
    return "\n".join(parts)


if __name__ == "__main__":
    main()
