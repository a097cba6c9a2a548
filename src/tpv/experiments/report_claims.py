"""The report's first section: each of the paper's claims as holds / fails / undecided. No torch.

A claim is split into sub-claims, each a comparison paired over origins (claims 1 and 3) or
seeds (claim 2), and each is decided by a Student-t interval of the paired mean at level
1 - 0.05/m, Bonferroni over the m sub-claims that decide the claim (simultaneous intervals):
- "A better than B":    holds if the interval lies above 0;  fails if it lies below +MARGIN
                        (a gain as large as the margin is ruled out).
- "A not worse than B": holds if the interval lies above -MARGIN (non-inferiority);
                        fails if it lies below -MARGIN.
- "A keeps >= GOAL":    holds if the interval lies at or above GOAL; fails if below it.
Otherwise the sub-claim is undecided (so is one with fewer than 2 pairs). Vectors of source
prompts that do not clear their floor (report: sources) are left out, as in every claim. A
claim holds when every deciding sub-claim holds, fails when one fails, and is undecided
otherwise. Rows marked "context" are shown with their own decision but do not decide the claim
(controls, other compositions, the true few-shot arm).

MARGIN is in the task's primary metric: about the half-width of one test score's bootstrap 95%
interval at n = 500 (0.03 on the study's sources), a difference one test sample cannot tell
from none.
"""

from __future__ import annotations

import statistics
from collections import defaultdict

from tpv.experiments.report_cross import _per_vector, arm_of
from tpv.floors import kept_above_floor
from tpv.stats import ALPHA, mean_ci

MARGIN = 0.03
GOAL = 0.95
CLAIM_STAGES = {"1": "cross_origin", "2": "fewshot", "3": "multitask"}


def decide(kind: str, values: list[float], m: int) -> tuple[str, tuple[float, float] | None]:
    """(verdict, interval) of one sub-claim over paired differences (or kept fractions)."""
    ci = mean_ci(values, 1 - ALPHA / max(m, 1))
    if ci is None:
        return "undecided", None
    lo, hi = ci
    if kind == "better":
        return ("holds" if lo > 0 else "fails" if hi < MARGIN else "undecided"), ci
    if kind == "not worse":
        return ("holds" if lo > -MARGIN else "fails" if hi < -MARGIN else "undecided"), ci
    if kind == "keeps":
        return ("holds" if lo >= GOAL else "fails" if hi < GOAL else "undecided"), ci
    raise ValueError(f"unknown sub-claim kind {kind!r}")


def combine(verdicts: list[str]) -> str:
    if not verdicts:
        return "not measured"
    if "fails" in verdicts:
        return "fails"
    return "holds" if all(v == "holds" for v in verdicts) else "undecided"


def _sub(claim, what, kind, values, role="decides", note=""):
    return {"claim": claim, "what": what, "kind": kind, "values": values, "role": role,
            "note": note}  # fmt: skip


def _cross(rows: list[dict], flags: dict) -> list[dict]:
    """Claim 1 per learning-rate arm and task: tau on another origin not worse than on its
    own; tau alone (zero origin) and on a random origin as context. Vectors of sources that do
    not clear their floor are left out."""
    by: dict[tuple, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if flags.get((r["task"], r["from_seed"], r.get("lr_arm"))) is not False:
            by[(r.get("lr_arm"), r["task"])][arm_of(r)].append(r)
    subs = []
    for (lr, task), arms in sorted(by.items(), key=lambda kv: (kv[0][0] is not None, kv[0])):
        own = _per_vector(arms.get("own", []))
        where = task + ("" if lr is None else f" (lr {lr:g})")
        claim = "1" if lr is None else f"1 (lr {lr:g})"
        for arm, label, role in (
            ("other", "other origin", "decides"),
            ("zero", "tau alone (zero origin)", "context"),
            ("random", "random origin of the same norm", "context"),
        ):
            moved = _per_vector(arms.get(arm, []))
            common = sorted(set(own) & set(moved))
            if common:
                diffs = [moved[s] - own[s] for s in common]
                sub = _sub(claim, f"{where}: {label} not worse than own origin",
                           "not worse", diffs, role)  # fmt: skip
                subs.append(sub | {"arm": arm, "where": where})
    return subs


def _fewshot(rows: list[dict], flags: dict) -> list[dict]:
    """Claim 2 per target and k > 0: the paper's sum better than random, not worse than each
    SPoT source and ATTEMPT; the same in the true few-shot arm as context. A comparison whose
    inits start from a source below its floor is kept (an init is an init) and says so."""
    score: dict[tuple, dict[str, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    weak: set[str] = set()  # inits built on a source that does not clear its floor
    for r in rows:
        seed = (r.get("settings") or {}).get("origin_seed", 0)
        kind, _, arg = r["init"].partition(":")
        if kind in ("spot", "tpv", "attempt") and any(
            flags.get((t, seed, None)) is False for t in arg.split("+")
        ):
            weak.add(r["init"])
        if r["shots"] > 0:
            sel = r.get("selection", "validation")
            score[(r["target"], sel, r["shots"])][r["init"]][r["seed"]] = r["test"]
    subs = []
    for (target, sel, k), by_init in sorted(score.items()):
        paper = next((i for i in by_init if i.startswith("tpv:") and "+" in i), None)
        if paper is None:
            continue
        arm = "" if sel == "validation" else ", no selection"
        claim = "2" if sel == "validation" else "2 (no selection)"
        role = "decides" if sel == "validation" else "context"
        for init in by_init:
            if init == paper:
                continue
            kind = "better" if init == "random" else "not worse"
            if init != "random" and not init.startswith(("spot:", "attempt:")):
                continue  # suggest is the product's own, compared in the few-shot section
            common = sorted(set(by_init[paper]) & set(by_init[init]))
            diffs = [by_init[paper][s] - by_init[init][s] for s in common]
            what = f"{target}, {k} shots{arm}: the sum {kind} than {init}"
            below = sorted({paper, init} & weak)
            note = f"built on a source below its floor: {', '.join(below)}" if below else ""
            subs.append(_sub(claim, what, kind, diffs, role, note))
    return subs


def _multitask(rows: list[dict], floors, flags: dict) -> list[dict]:
    """Claim 3 per combination: the sum keeps >= GOAL of each task's skill above the floor
    (the worst task, per origin) and is not worse than joint multi-task tuning at the largest
    budget; the other compositions' kept fractions as context. Origins where a source does not
    clear its floor are left out."""
    from tpv.experiments.report import largest_joint, multitask_groups

    subs = []
    for combo, methods in sorted(multitask_groups(rows, flags).items()):
        joint = largest_joint(methods)
        for method, by_seed in sorted(methods.items()):
            if method.startswith("joint"):
                continue
            worst = []
            for r in by_seed.values():
                kept = [
                    kept_above_floor(r["test"][t], r["single_task_test"][t], floors.primary(t))
                    for t in r["tasks"]
                    if floors.primary(t) is not None
                ]
                if kept and None not in kept:
                    worst.append(min(kept))
            role = "decides" if method == "sum" else "context"
            subs.append(_sub("3", f"{combo}: {method} keeps >= {GOAL} of every task above the"
                             " floor (worst task)", "keeps", worst, role))  # fmt: skip
            if method == "sum" and joint:
                for t in by_seed[next(iter(by_seed))]["tasks"]:
                    common = sorted(set(by_seed) & set(methods[joint]))
                    diffs = [by_seed[s]["test"][t] - methods[joint][s]["test"][t] for s in common]
                    cost = _seconds_ratio(by_seed, methods[joint])
                    subs.append(_sub("3", f"{combo}, {t}: sum not worse than {joint}",
                                     "not worse", diffs, note=cost))  # fmt: skip
    return subs


def _seconds_ratio(mine: dict[int, dict], joint: dict[int, dict]) -> str:
    a = [r.get("seconds") for r in mine.values()]
    b = [r.get("seconds") for r in joint.values()]
    if None in a or None in b or not a or not b:
        return ""
    return (
        f"the sum's own search took {statistics.mean(a) / statistics.mean(b):.2f}x joint's"
        " seconds (its sources' tuning not counted)"
    )


def claims_section(by_stage: dict[str, list[dict]], floors) -> list[str]:
    from tpv.experiments.report import _source_flags

    flags = _source_flags(by_stage.get("sources", []), floors)
    subs = (
        _cross(by_stage.get("cross_origin", []), flags)
        + _fewshot(by_stage.get("fewshot", []), flags)
        + _multitask(by_stage.get("multitask", []), floors, flags)
    )
    if not subs and not any(by_stage.get(s) for s in CLAIM_STAGES.values()):
        return []
    by_claim: dict[str, list[dict]] = defaultdict(list)
    for s in subs:
        by_claim[s["claim"]].append(s)
    body, summary = [], []
    for claim, stage in CLAIM_STAGES.items():
        if claim not in by_claim:
            why = (
                "no comparison: its rows have no pair yet, or their sources do not clear"
                " their floors"
                if by_stage.get(stage)
                else f"no {stage} rows yet"
            )
            summary.append((claim, f"- Claim {claim}: not measured ({why})."))
    for claim, items in sorted(by_claim.items()):
        deciding = [s for s in items if s["role"] == "decides"]
        m = len(deciding) or len(items)
        for s in items:
            s["verdict"], s["ci"] = decide(s["kind"], s["values"], m)
        overall = combine([s["verdict"] for s in deciding]) if deciding else "context only"
        line = (
            f"- **Claim {claim}: {overall}** ({_counts(deciding)}){_origin_plays_no_part(items)}."
        )
        summary.append((claim, line))
        for s in items:
            ci = "-" if s["ci"] is None else f"[{s['ci'][0]:+.3f}, {s['ci'][1]:+.3f}]"
            mean = "-" if not s["values"] else f"{statistics.mean(s['values']):+.3f}"
            if s["kind"] == "keeps":
                mean = mean.lstrip("+")
                ci = ci.replace("+", "")
            body.append([claim, s["what"], mean, ci, str(len(s["values"])), s["role"],
                         s["verdict"] + (f"; {s['note']}" if s["note"] else "")])  # fmt: skip
    from tpv.experiments.report import _table

    # By claim number, the main arm before its variants ("1" before "1 (lr 0.02)").
    summary = [line for _, line in sorted(summary, key=lambda c: (c[0].split()[0], len(c[0])))]
    return [
        "## The paper's claims at a glance",
        "",
        "1: a vector keeps its task performance on another origin; 2: the sum of source vectors"
        " is a better few-shot initialisation than random and competitive with SPoT and ATTEMPT;"
        " 3: the sum of several tasks' vectors is one prompt that does those tasks (here: keeps"
        f" >= {GOAL} of each task's skill above the floor). Each sub-claim is decided by a"
        f" Student-t interval of the paired mean at level 1 - {ALPHA}/m (Bonferroni over the m"
        " deciding sub-claims of its claim): better = above 0 (fails below"
        f" +{MARGIN}); not worse = above -{MARGIN} (fails below it); keeps = at or above"
        f" {GOAL} (fails below it); undecided otherwise. Mean: paired difference in the primary"
        " metric (A - B), or the kept fraction; n: origins (claims 1, 3) or seeds (claim 2)."
        " Context rows have their own decision but do not decide the claim. The sections below"
        " hold the scores, floors, accuracy and Holm-corrected tests these rows come from.",
        "",
        *summary,
        "",
        _table(["claim", "sub-claim", "mean", "interval", "n", "role", "decision"], body),
        "",
    ]


def _origin_plays_no_part(items: list[dict]) -> str:
    """Claim 1's control: where tau alone (zero origin) is not worse than its own origin either,
    keeping the score on another origin says nothing about transfer. Marks those rows and
    returns the summary's qualifier ("" when no task is so)."""
    trivial = sorted(
        {s["where"] for s in items if s.get("arm") == "zero" and s["verdict"] == "holds"}
    )
    for s in items:
        if s.get("arm") == "other" and s["where"] in trivial:
            s["note"] = "so does tau alone (zero origin): the origin plays no part"
    if not trivial:
        return ""
    return (
        f"; but tau alone (zero origin) keeps the score too on {', '.join(trivial)}: there the"
        " origin plays no part, and keeping the score on another origin is no evidence of"
        " transfer"
    )


def _counts(items: list[dict]) -> str:
    c = defaultdict(int)
    for s in items:
        c[s["verdict"]] += 1
    return ", ".join(f"{v} {k}" for k, v in sorted(c.items())) or "no deciding rows"
