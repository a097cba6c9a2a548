"""The report's cross-origin section (claim 1): own vs other origin, and the controls. No torch.

One table per learning-rate arm (the main sources at [train] lr, then each lr arm): per task the
arms own origin (the tuned prompt itself), other origin (tau moved to another seeded origin),
zero origin (tau alone) and random origin (tau on a random origin of its own origin's norm),
each with the floor, primary metric / accuracy, bootstrap intervals, norm(tau)/norm(origin) and
how much the move changed the prompt. Then paired tests over the vectors' origins (each vector's
own score against its score moved), Holm-corrected within the arm's table.
"""

from __future__ import annotations

import statistics
from collections import defaultdict

from tpv.experiments.report import Floors, _ms, _score_acc, _table, interval
from tpv.stats import ALPHA, format_p, holm, paired_t, sign_flip, verdict

ARMS = ("own", "other", "zero", "random")
LABELS = {
    "own": "own origin",
    "other": "other origin",
    "zero": "zero origin (tau alone)",
    "random": "random origin",
}
# Fewer vectors than this: no test (2 pairs leave the t-test 1 degree of freedom, and the
# sign-flip test cannot go below p = 0.5).
MIN_PAIRS = 3


def arm_of(row: dict) -> str:
    """Rows recorded before the controls have no "arm": own or other from "mixed"."""
    return row.get("arm") or ("other" if row["mixed"] else "own")


def _intervals(rows: list[dict], floors: Floors, task: str) -> str:
    cis = [interval(r.get("metrics"), floors.num_labels(task)) for r in rows]
    known = [c for c in cis if c is not None]
    if not known:
        return "-"
    if len(rows) <= 3:
        return "; ".join("-" if c is None else f"[{c[0]:.3f}, {c[1]:.3f}]" for c in cis)
    lo, hi = min(c[0] for c in known), max(c[1] for c in known)
    return f"[{lo:.3f}, {hi:.3f}] (span of {len(known)})"


def _ratio(rows: list[dict]) -> str:
    """norm(tau) / norm(the origin tau was applied to); "-" for the zero origin."""
    xs = [
        r["vector_norm"] / r["origin_norm"]
        for r in rows
        if r.get("vector_norm") is not None and r.get("origin_norm")
    ]
    return _ms(xs)


def _per_vector(rows: list[dict]) -> dict[int, float]:
    """Score per vector (its from-origin); "other" averages the origins it was moved to."""
    by: dict[int, list[float]] = defaultdict(list)
    for r in rows:
        by[r["from_seed"]].append(r["test"])
    return {s: statistics.mean(v) for s, v in by.items()}


def cross_comparisons(by_task: dict[str, dict[str, list[dict]]]) -> list[dict]:
    """Each moved arm against own origin, paired over the vectors (one per from-origin), for
    every task of one learning-rate arm; Holm over the whole list (one family per table)."""
    out = []
    for task, arms in sorted(by_task.items()):
        own = _per_vector(arms.get("own", []))
        for arm in ARMS[1:]:
            moved = _per_vector(arms.get(arm, []))
            common = sorted(set(own) & set(moved))
            if not common:
                continue
            a, b = [moved[s] for s in common], [own[s] for s in common]
            tested = len(common) >= MIN_PAIRS
            out.append(
                {
                    "task": task,
                    "arm": arm,
                    "mean": statistics.mean(a),
                    "own_mean": statistics.mean(b),
                    "diff": statistics.mean(a) - statistics.mean(b),
                    "p": paired_t(a, b) if tested else None,
                    "p_sign_flip": sign_flip(a, b) if tested else None,
                    "n": len(common),
                }
            )
    for c, p_adj in zip(out, holm([c["p"] for c in out]), strict=True):
        c["p_holm"] = p_adj
        c["verdict"] = (
            verdict(c["diff"], p_adj)
            if c["n"] >= MIN_PAIRS
            else f"not tested (n = {c['n']} < {MIN_PAIRS})"
        )
    return out


def _arm_title(lr: float | None, source_rows: list[dict]) -> str:
    if lr is not None:
        return f"### Learning-rate arm: lr {lr:g}"
    lrs = sorted(
        {
            r.get("lr") or (r.get("settings") or {}).get("train", {}).get("lr", 0.3)
            for r in source_rows
            if r.get("lr_arm") is None and (r.get("lr") or r.get("settings"))
        }
    )  # rows before `lr` was recorded: their settings' [train] lr (0.3 when left out)
    return "### Main sources" + (": lr " + ", ".join(f"{x:g}" for x in lrs) if lrs else "")


def _source_ratio(source_rows: list[dict], task: str, lr: float | None) -> str:
    xs = [
        r["vector_norm"] / r["origin_norm"]
        for r in source_rows
        if r["task"] == task and r.get("lr_arm") == lr and r.get("origin_norm")
    ]
    return _ms(xs)


def cross_section(rows: list[dict], floors: Floors, source_rows: list[dict]) -> list[str]:
    by_lr: dict[float | None, dict[str, dict[str, list[dict]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(list))
    )
    for r in rows:
        by_lr[r.get("lr_arm")][r["task"]][arm_of(r)].append(r)
    lines = [
        "## Cross-origin transfer (claim 1)",
        "",
        "A vector tau trained from origin A, applied to: its own origin (the tuned prompt"
        " itself), another seeded origin, a zero origin (tau alone) and a random origin (i.i.d."
        " normal entries, seeded, scaled to norm(A)). Cells: primary metric / accuracy (mean ±"
        " std over the rows); intervals: bootstrap 95% per row (the span when more than 3);"
        " norm ratio: norm(tau) / norm(the origin it was applied to); prompt change:"
        " norm(prompt - tuned prompt) / norm(tuned prompt). If tau alone keeps the score, the"
        " origin plays no part and keeping it on another origin says nothing about transfer.",
        "",
    ]
    for lr in sorted(by_lr, key=lambda x: (x is not None, x or 0.0)):
        by_task = by_lr[lr]
        table = []
        for t, arms in sorted(by_task.items()):
            for arm in ARMS:
                rs = arms.get(arm)
                if not rs:
                    continue
                changes = [r["relative_change"] for r in rs if "relative_change" in r]
                table.append(
                    [
                        t,
                        LABELS[arm],
                        str(len(rs)),
                        floors.cell(t),
                        _score_acc([r["test"] for r in rs], [r.get("metrics") for r in rs]),
                        _intervals(rs, floors, t),
                        _ratio(rs) if arm != "zero" else "- (no origin)",
                        _ms(changes),
                    ]
                )
        columns = ["task", "applied to", "rows", "floor", "score / accuracy", "95% interval",
                   "norm ratio", "prompt change"]  # fmt: skip
        ratios = "; ".join(f"{t} {_source_ratio(source_rows, t, lr)}" for t in sorted(by_task))
        lines += [
            _arm_title(lr, source_rows),
            "",
            f"norm(tau)/norm(origin) of the source vectors: {ratios}.",
            "",
            _table(columns, table),
            "",
        ]
        lines += _comparison_lines(cross_comparisons(by_task))
    return lines


def _comparison_lines(comps: list[dict]) -> list[str]:
    if not comps:
        return []
    body = [
        [
            c["task"],
            f"{LABELS[c['arm']]} vs own origin",
            f"{c['mean']:.3f} vs {c['own_mean']:.3f}",
            f"{c['diff']:+.3f}",
            format_p(c["p"]),
            format_p(c["p_sign_flip"]),
            format_p(c["p_holm"]),
            c["verdict"],
            str(c["n"]),
        ]
        for c in comps
    ]
    tested = sum(c["p"] is not None for c in comps)
    columns = ["task", "comparison", "means", "diff", "p (paired t)", "p (sign-flip)", "p (Holm)",
               "verdict", "vectors"]  # fmt: skip
    return [
        f'Paired over the vectors (one per origin it was trained from; "other" averages the'
        f" origins it was moved to); Holm's correction over the {tested} tested comparisons of"
        f" this table; better/worse only where the corrected p is below {ALPHA}; fewer than"
        f" {MIN_PAIRS} vectors are not tested.",
        "",
        _table(columns, body),
        "",
    ]
