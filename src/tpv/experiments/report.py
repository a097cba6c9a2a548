"""Rebuild the paper's tables and plots from the recorded rows alone (markdown + PNG). No torch.

Every table shows the trivial floor (the best constant answer, tpv.floors) and accuracy beside
the task's primary metric; intervals are bootstrap 95% intervals over test examples, comparisons
are paired tests over seeds with Holm's correction within each table (tpv.stats). The report
names the one config it shows (from OUT/experiment.json, the runner's manifest): rows recorded
under other settings are listed, not used, and cells still missing are counted.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from pathlib import Path

from tpv.experiments.rows import job_status, read_manifest, read_rows
from tpv.floors import clears_floor, kept_above_floor, plain_kept
from tpv.metrics import decode_labels
from tpv.stats import ALPHA, bootstrap_ci, format_p, holm, paired_t, sign_flip, verdict


def _ms(xs: list[float | None]) -> str:
    xs = [x for x in xs if x is not None]
    if not xs:
        return "-"
    if len(xs) == 1:
        return f"{xs[0]:.3f}"
    return f"{statistics.mean(xs):.3f} ± {statistics.stdev(xs):.3f}"


def _mean(xs: list[float | None]) -> float | None:
    xs = [x for x in xs if x is not None]
    return statistics.mean(xs) if xs else None


def _f(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def _lambda_cell(values: list) -> str:
    """One lambda (mean ± std), per-vector weights (as searched per origin), or none (concat)."""
    if all(v is None for v in values):
        return "-"
    if any(isinstance(v, list) for v in values):
        return "; ".join("(" + ", ".join(f"{w:g}" for w in v) + ")" for v in values)
    return _ms(values)


def _chosen_cell(rows: list[dict]) -> str:
    """What was chosen on validation: lambda(s), or for fitted prompts the step kept."""
    fits = [r.get("fit") for r in rows]
    if all(f is not None for f in fits):
        return "; ".join(
            f"step {f['best_step']} (val {f['init_val']:.3f}->{f['best_val']:.3f})" for f in fits
        )
    return _lambda_cell([r["lambda"] for r in rows])


def _count(n: int, noun: str) -> str:
    """'1 row', '2 rows': a count with its noun in the right number."""
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(str, r)) + " |" for r in rows]
    return "\n".join(lines)


# --- floors and intervals -----------------------------------------------------------------------
class Floors:
    """The test floors per task, from the floors stage's rows."""

    def __init__(self, rows: list[dict]):
        self.by_task = {r["task"]: r for r in rows}

    def test(self, task: str) -> dict | None:
        row = self.by_task.get(task)
        return row["splits"]["test"]["floors"] if row else None

    def primary(self, task: str) -> float | None:
        f = self.test(task)
        return None if f is None else f.get("score")

    def accuracy(self, task: str) -> float | None:
        f = self.test(task)
        return None if f is None or "accuracy" not in f else f["accuracy"]["score"]

    def num_labels(self, task: str) -> int | None:
        row = self.by_task.get(task)
        return len(row["labels"]) if row else None

    def cell(self, task: str) -> str:
        """The floor as a table cell: "primary / accuracy"."""
        p, a = self.primary(task), self.accuracy(task)
        return "-" if p is None else f"{p:.3f} / {_f(a)}"


def interval(metrics: dict | None, num_labels: int | None) -> tuple[float, float] | None:
    """Bootstrap 95% interval of the primary metric from a row's per-example record."""
    if not metrics or not num_labels or "per_example" not in metrics:
        return None
    per = metrics["per_example"]
    if metrics.get("metric") not in ("accuracy", "f1_binary", "f1_macro"):
        return None  # generation metrics bootstrap their per-example scores (none recorded yet)
    return bootstrap_ci(
        decode_labels(per["pred"]), decode_labels(per["gold"]), metrics["metric"], num_labels
    )


def _acc(metrics: dict | None) -> float | None:
    return None if not metrics else metrics.get("accuracy")


def _score_acc(scores: list[float], metrics: list[dict | None]) -> str:
    """ "primary mean ± std / mean accuracy" (accuracy "-" for rows that did not record it)."""
    return f"{_ms(scores)} / {_f(_mean([_acc(m) for m in metrics]))}"


# --- the report ---------------------------------------------------------------------------------
def build_report(out: str | Path, dest: str | Path | None = None, plots: bool = True) -> Path:
    """Write REPORT.md (and PNG plots) for an experiment directory; returns the markdown path."""
    out = Path(out)
    dest = Path(dest) if dest else out / "report"
    dest.mkdir(parents=True, exist_ok=True)
    all_rows = list(read_rows(out))
    if not all_rows:
        raise ValueError(f"{out}: no recorded rows under rows/ (run `tpv experiment run` first)")
    manifest = read_manifest(out)
    by_stage, header = _check_rows(all_rows, manifest, out)
    floors = Floors(by_stage.get("floors", []))
    parts = header if header[-1] == "" else [*header, ""]
    from tpv.experiments.report_claims import claims_section

    parts += claims_section(by_stage, floors)
    if by_stage.get("floors"):
        parts += _floors(by_stage["floors"])
    if by_stage.get("sources"):
        parts += _sources(by_stage["sources"], floors)
    if by_stage.get("cross_origin"):
        from tpv.experiments.report_cross import cross_section

        parts += cross_section(by_stage["cross_origin"], floors, by_stage.get("sources", []))
    if by_stage.get("similarity"):
        parts += _similarity(by_stage["similarity"][0], dest, plots)
    if by_stage.get("multitask"):
        parts += _multitask(by_stage["multitask"], floors, by_stage.get("sources", []), dest, plots)
    if by_stage.get("fewshot"):
        parts += _fewshot(by_stage["fewshot"], floors, dest, plots)
        parts += _fewshot_settings(manifest)
    md = dest / "REPORT.md"
    tmp = md.with_suffix(".md.tmp")
    tmp.write_text("\n".join(parts) + "\n", encoding="utf-8")
    tmp.replace(md)
    return md


def _check_rows(
    rows: list[dict], manifest: dict | None, out: Path
) -> tuple[dict[str, list[dict]], list[str]]:
    """Rows of the manifest's config (by job hash), and the header that says which config the
    report shows, which recorded rows it leaves out and how many cells are still missing."""
    # The config's name: a copy of the rows in another folder (docs/results/NAME/data) is still
    # the report of that experiment.
    name = ((manifest or {}).get("config") or {}).get("name") or out.name
    lines = [f"# Experiment report: {name}", ""]
    by_stage: dict[str, list[dict]] = defaultdict(list)
    jobs = (manifest or {}).get("jobs")
    if not jobs:
        for r in rows:
            by_stage[r["stage"]].append(r)
        shas = sorted({r.get("config_sha", "?") for r in rows})
        lines += [
            f"Rebuilt from {len(rows)} recorded rows in `{out}/rows/`. The directory has no job"
            f" manifest (rows older than job hashes): rows are not checked against one config"
            f" (config hashes present: {', '.join(shas)}).",
            "",
        ]
        return by_stage, lines
    recorded: dict[str, dict[str, dict]] = defaultdict(dict)
    for r in rows:
        recorded[r["stage"]][r["key"]] = r
    stale, missing, extra, used = [], [], [], 0
    for stage, expected in jobs.items():
        st = job_status(recorded.get(stage, {}), expected)
        by_stage[stage] = [recorded[stage][k] for k in st["current"]]
        used += len(st["current"])
        stale += [f"{stage}/{k}" for k in st["stale"]]
        missing += [f"{stage}/{k}" for k in st["missing"]]
        extra += [f"{stage}/{k}" for k in st["extra"]]
    total = sum(len(v) for v in jobs.values())
    lines += [
        f"Config `{manifest.get('config_file') or '?'}` (config hash"
        f" {manifest.get('config_sha', '?')}, code {manifest.get('code_commit', 'unknown')}):"
        f" {used} of its {total} jobs have a row recorded under their own settings"
        f" (rebuilt with `tpv experiment report {out}`).",
        "Scores: the task's primary test metric, with accuracy beside it; floor: the best"
        " constant answer on the same test sample; [lo, hi]: bootstrap 95% interval over test"
        " examples; mean ± std over origins or seeds.",
        "",
    ]
    computed = Counter(
        f"{r['compute_dtype']}{'' if r.get('fast_path') else ', plain path'}"
        for rs in by_stage.values()
        for r in rs
        if r.get("compute_dtype")
    )
    commits = Counter(
        str(r.get("code_commit", "unknown"))[:12] for rs in by_stage.values() for r in rs
    )
    if len(commits) > 1:
        # The manifest names the code of the last run; a grid that ran over days mixes commits.
        lines += [
            "- Code commits of the rows shown: "
            + "; ".join(f"{k}: {_count(v, 'row')}" for k, v in commits.most_common())
            + " (the manifest's is the latest run's)."
        ]
    if computed:
        how = "; ".join(f"{k}: {_count(v, 'row')}" for k, v in sorted(computed.items()))
        mixed = " **(mixed: compare rows of one kind only)**" if len(computed) > 1 else ""
        lines += [f"- Model weights in {how}{mixed} (tpv.fastpath)."]
    if missing:
        lines += [f"- **Cells still missing: {len(missing)}** ({_few(missing)})."]
    if stale:
        lines += [
            f"- **Rows recorded under other settings, not shown: {len(stale)}** ({_few(stale)})."
        ]
    if extra:
        lines += [
            f"- Rows of jobs this config does not have, not shown: {len(extra)} ({_few(extra)})."
        ]
    if missing or stale or extra:
        lines.append("")
    return by_stage, lines


def _few(keys: list[str], n: int = 6) -> str:
    return ", ".join(f"`{k}`" for k in keys[:n]) + (
        f", ... {len(keys) - n} more" if len(keys) > n else ""
    )


def _floors(rows: list[dict]) -> list[str]:
    table = []
    for r in sorted(rows, key=lambda r: r["task"]):
        labels = r["labels"]
        for split, s in r["splits"].items():
            f = s["floors"]
            if f is None:
                table.append([r["task"], split, "-", "-", "-", "- (no constant answer)"])
                continue
            maj = f["majority"]
            primary = r["metric"]
            best = f.get(primary, {})
            table.append(
                [
                    r["task"],
                    split,
                    str(f["n"]),
                    f"{labels[maj['label']]} ({maj['share']:.3f})",
                    f"{f['accuracy']['score']:.3f}",
                    f"{primary} {best.get('score', 0):.3f} (always {labels[best.get('label', 0)]})",
                ]
            )
    return [
        "## Floors: the best constant answer",
        "",
        "What answering one label for every input scores, per task and split (from the gold"
        " labels of the same seeded samples the prompts are scored on). A score is evidence of"
        " skill only by how far it clears this.",
        "",
        _table(
            ["task", "split", "n", "majority (share)", "accuracy floor", "primary floor"], table
        ),
        "",
    ]


def _source_flags(
    rows: list[dict], floors: Floors
) -> dict[tuple[str, int, float | None], bool | None]:
    """(task, origin, lr arm) -> whether that source prompt clears its test floor by a clear
    margin (the lower end of its bootstrap 95% interval above the floor). The main sources
    (the ones every later stage uses) have lr arm None."""
    out = {}
    for r in rows:
        ci = interval(r.get("metrics"), floors.num_labels(r["task"]))
        out[(r["task"], r["origin_seed"], r.get("lr_arm"))] = clears_floor(
            ci[0] if ci else None, floors.primary(r["task"])
        )
    return out


def _sources(rows: list[dict], floors: Floors) -> list[str]:
    by_task: dict[tuple[str, float | None], list[dict]] = defaultdict(list)
    for r in rows:
        by_task[(r["task"], r.get("lr_arm"))].append(r)
    flags = _source_flags(rows, floors)
    table, failing = [], []
    for (t, lr), rs in sorted(by_task.items(), key=lambda kv: (kv[0][0], kv[0][1] or 0.0)):
        rs = sorted(rs, key=lambda r: r["origin_seed"])
        arm = "" if lr is None else f" (lr arm {lr:g})"
        ratio = [r["vector_norm"] / r["origin_norm"] for r in rs]
        cis = []
        for r in rs:
            ci = interval(r.get("metrics"), floors.num_labels(t))
            cis.append("-" if ci is None else f"[{ci[0]:.3f}, {ci[1]:.3f}]")
        clear = [flags[(t, r["origin_seed"], lr)] for r in rs]
        known = [c for c in clear if c is not None]
        failing += [
            f"{t}/o{r['origin_seed']}{arm}" for r, c in zip(rs, clear, strict=True) if c is False
        ]
        table.append(
            [
                t + arm,
                len(rs),
                floors.cell(t),
                _score_acc([r["init_test"] for r in rs], [r.get("init_metrics") for r in rs]),
                _score_acc([r["test"] for r in rs], [r.get("metrics") for r in rs]),
                "; ".join(cis),
                f"{sum(known)}/{len(known)}" if known else "-",
                _ms(ratio),
            ]
        )
    lines = [
        "## Prompt tuning on the source tasks",
        "",
        "Cells: primary metric / accuracy. A source clears its floor when the lower end of its"
        " bootstrap 95% interval lies above the floor; one that does not is kept out of every"
        " claim below (the cross-origin and multi-task sub-claims, the multi-task kept"
        " fractions and comparisons; few-shot comparisons built on it are marked).",
        "",
        _table(
            [
                "task",
                "origins",
                "floor",
                "untuned origin",
                "tuned",
                "tuned 95% interval per origin",
                "clears floor",
                "norm(tau)/norm(origin)",
            ],
            table,
        ),
        "",
    ]
    if failing:
        lines += [f"- **Below or at the floor (excluded from claims): {', '.join(failing)}.**", ""]
    return lines


def _similarity(row: dict, dest: Path, plots: bool) -> list[str]:
    names, cos = row["names"], row["cosine"]
    lines = ["## Cosine similarity of task prompt vectors", ""]
    lines.append(
        _table(
            [""] + names, [[n] + [f"{c:.2f}" for c in cs] for n, cs in zip(names, cos, strict=True)]
        )
    )
    if plots:
        plt = _pyplot()
        fig, ax = plt.subplots(figsize=(1 + 0.6 * len(names), 0.8 + 0.5 * len(names)))
        im = ax.imshow(cos, vmin=-1, vmax=1, cmap="RdBu_r")
        ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=7)
        ax.set_yticks(range(len(names)), names, fontsize=7)
        fig.colorbar(im, ax=ax)
        ax.set_title("cosine(tau_i, tau_j)")
        fig.tight_layout()
        fig.savefig(dest / "similarity.png", dpi=120)
        plt.close(fig)
        lines += ["", "![similarity](similarity.png)"]
    return lines + [""]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _multitask(
    rows: list[dict], floors: Floors, source_rows: list[dict], dest: Path, plots: bool
) -> list[str]:
    flags = _source_flags(source_rows, floors)
    main_sources = {
        (r["task"], r["origin_seed"]): r for r in source_rows if r.get("lr_arm") is None
    }
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in rows:
        groups[("+".join(r["tasks"]), r["method"])].append(r)
    table, kept_plot = [], defaultdict(dict)
    worst: dict[str, dict[str, float]] = defaultdict(dict)  # combo -> method -> mean worst kept
    excluded: set[str] = set()
    for (combo, method), rs in sorted(groups.items()):
        tasks = rs[0]["tasks"]
        cells, worst_per_row = [], [[] for _ in rs]
        for t in tasks:
            floor = floors.primary(t)
            above, plain = [], []
            for i, r in enumerate(rs):
                single = r["single_task_test"][t]
                plain.append(plain_kept(r["test"][t], single))
                ok = flags.get((t, r["origin_seed"], None))
                if floor is None or ok is False:
                    excluded.add(f"{t}/o{r['origin_seed']}")
                    above.append(None)
                    continue
                k = kept_above_floor(r["test"][t], single, floor)
                above.append(k)
                if k is not None:
                    worst_per_row[i].append(k)
            acc = _mean([_acc((r.get("test_metrics") or {}).get(t)) for r in rs])
            cells.append(
                f"{t}: {_ms([r['test'][t] for r in rs])} / {_f(acc)}"
                f" (kept above floor {_ms(above)}; plain {_ms(plain)})"
            )
            kept_plot[combo].setdefault(method, []).append(_mean(above) or 0.0)
        worst_kept = [min(w) for w in worst_per_row if w]
        if worst_kept:
            worst[combo][method] = statistics.mean(worst_kept)
        table.append(
            [
                combo,
                method,
                _chosen_cell(rs),
                "<br>".join(cells),
                _ms(worst_kept),
                _cost_cell([_cost(r, main_sources) for r in rs]),
            ]
        )
    columns = ["tasks", "method", "lambda / fit", "test per task", "worst kept above floor",
               "cost (steps; s)"]  # fmt: skip
    lines = [
        "## Multi-task prompts by combination (claim 3)",
        "",
        "Vectors of several tasks combined on one origin; lambda searched on the mean validation"
        " score of the tasks. Per task: primary metric / accuracy; kept above floor ="
        " (multi - floor) / (single - floor), the share of the single-task skill above the"
        " constant answer that survives; plain = multi / single (the paper's ratio, which"
        " counts the floor as kept). Worst kept: the lowest above-floor kept fraction. Cost:"
        " optimiser steps (the sources' [train] steps summed, plus a fit's own steps; joint"
        " from the origin uses no source) and wall seconds (the sources' runs plus the"
        " composition's search or fit; a row's seconds count from the job's last start, so a"
        " source resumed from its checkpoint counts only its last stretch), mean over origins.",
        "",
        _table(columns, table),
        "",
    ]
    lines += _comparison_table(multitask_comparisons(rows, flags), unit="origins")
    if excluded:
        lines += [
            f"- Not counted (the source prompt does not clear its floor, or no floor):"
            f" {', '.join(sorted(excluded))}.",
        ]
    for combo, by_method in sorted(worst.items()):
        best = max(by_method, key=by_method.get)
        reach = "reaches" if by_method[best] >= 0.95 else "falls short of"
        lines.append(
            f"- {combo}: best worst-task kept fraction above the floor {by_method[best]:.3f}"
            f" ({best}); {reach} the 0.95 goal."
        )
    lines.append("")
    if plots:
        plt = _pyplot()
        for i, (combo, methods) in enumerate(sorted(kept_plot.items())):
            tasks = combo.split("+")
            names = list(methods)
            fig, ax = plt.subplots(figsize=(7, 3.2))
            width = 0.8 / len(tasks)
            for j, t in enumerate(tasks):
                xs = [k + (j - (len(tasks) - 1) / 2) * width for k in range(len(names))]
                ax.bar(xs, [methods[m][j] for m in names], width, label=t)
            ax.axhline(1.0, color="k", lw=0.8, ls="--")
            ax.axhline(0.95, color="r", lw=0.8, ls=":")
            ax.axhline(0.0, color="grey", lw=0.8)
            ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=7)
            ax.set_ylabel("kept fraction above the floor (test)")
            ax.set_title(combo, fontsize=9)
            ax.legend(fontsize=7)
            fig.tight_layout()
            fig.savefig(dest / f"kept_{i}.png", dpi=120)
            plt.close(fig)
            lines += [f"![kept {combo}](kept_{i}.png)", ""]
    return lines


def multitask_groups(rows: list[dict], flags: dict) -> dict[str, dict[str, dict[int, dict]]]:
    """combination -> method -> origin -> row, leaving out origins where a source prompt does
    not clear its floor."""
    out: dict[str, dict[str, dict[int, dict]]] = defaultdict(lambda: defaultdict(dict))
    for r in rows:
        if any(flags.get((t, r["origin_seed"], None)) is False for t in r["tasks"]):
            continue
        out["+".join(r["tasks"])][r["method"]][r["origin_seed"]] = r
    return out


def largest_joint(methods: dict[str, dict[int, dict]]) -> str | None:
    """The joint multi-task tuning from the origin with the most steps: the honest baseline."""
    joints = [m for m in methods if m.startswith("joint") and "init=origin" in m]
    steps = {m: max((r.get("fit") or {}).get("steps") or 0 for r in methods[m].values())
             for m in joints}  # fmt: skip
    return max(joints, key=steps.get, default=None)


def multitask_comparisons(rows: list[dict], flags: dict) -> list[dict]:
    """Every composition against joint multi-task tuning from the origin at the largest budget,
    per combination and task, paired over origins; Holm over the whole list (one table)."""
    out = []
    for combo, methods in sorted(multitask_groups(rows, flags).items()):
        joint = largest_joint(methods)
        if joint is None:
            continue
        for method, by_seed in sorted(methods.items()):
            if method == joint:
                continue
            common = sorted(set(by_seed) & set(methods[joint]))
            if not common:
                continue
            for t in combo.split("+"):
                a = [by_seed[s]["test"][t] for s in common]
                b = [methods[joint][s]["test"][t] for s in common]
                out.append({"init": f"{combo}: {method}", "shots": t, "against": joint}
                           | _paired(a, b))  # fmt: skip
    return _holm_verdicts(out)


def _paired(a: list[float], b: list[float]) -> dict:
    """One paired comparison's numbers (a against b): means, difference, paired t and exact
    sign-flip p-values (the latter up to 20 pairs), and how many pairs."""
    return {
        "mean": statistics.mean(a),
        "other_mean": statistics.mean(b),
        "diff": statistics.mean(a) - statistics.mean(b),
        "p": paired_t(a, b),
        "p_sign_flip": sign_flip(a, b) if len(a) <= 20 else None,
        "seeds": len(a),
    }


def _holm_verdicts(comps: list[dict]) -> list[dict]:
    """Holm over one table's comparisons, and the verdict words from the corrected p."""
    for c, p_adj in zip(comps, holm([c["p"] for c in comps]), strict=True):
        c["p_holm"] = p_adj
        c["verdict"] = verdict(c["diff"], p_adj)
    return comps


def _cost(row: dict, sources: dict[tuple[str, int], dict]) -> tuple[float | None, float | None]:
    """(optimiser steps, wall seconds) a multi-task prompt cost, sources included where it
    used them (every method but joint from the origin); None where a number is missing."""
    fit = row.get("fit")
    steps = fit.get("steps") if fit else 0
    secs = row.get("seconds")
    if fit and "init=origin" in row["method"]:
        return steps, secs
    used = [sources.get((t, row["origin_seed"])) for t in row["tasks"]]
    if any(u is None for u in used):
        return None, None
    if steps is not None:
        steps += sum(u["steps"] for u in used)
    if secs is not None:
        src_secs = [u.get("seconds") for u in used]
        secs = None if None in src_secs else secs + sum(src_secs)
    return steps, secs


def _cost_cell(costs: list[tuple[float | None, float | None]]) -> str:
    steps = _mean([c[0] for c in costs])
    secs = _mean([c[1] for c in costs])
    if steps is None and secs is None:
        return "-"
    return f"{'-' if steps is None else f'{steps:.0f}'}; {'-' if secs is None else f'{secs:.0f}'}"


def _oracle_single(score: dict, inits: list[str], shots: list[int]) -> dict[int, str]:
    """Per shot count, the single-source init (spot:X, or tpv:X of one vector) with the best
    mean test score: an upper bound on picking one source, since it looks at test."""
    singles = [i for i in inits if i.startswith("spot:") or (i.startswith("tpv:") and "+" not in i)]
    out = {}
    for k in shots:
        have = [i for i in singles if score.get((i, k))]
        if have:
            out[k] = max(have, key=lambda i: statistics.mean(score[(i, k)].values()))
    return out


def comparisons(
    score: dict, inits: list[str], shots: list[int], oracle: dict[int, str]
) -> list[dict]:
    """The comparisons of one few-shot table, each paired over the seeds both inits ran: every
    init against the paper's sum at every k > 0, and each suggested init against the oracle
    single source and random. Holm's correction over all of them (one family per table)."""
    paper = next((i for i in inits if i.startswith("tpv:") and "+" in i), None)
    pairs: list[tuple[str, int, str, str]] = []
    for k in shots:
        if k == 0:
            continue  # k = 0 is one row per init (no seeds to pair over)
        for init in inits:
            if paper and init != paper:
                pairs.append((init, k, "paper's sum", paper))
            if init.startswith("suggest"):
                if oracle.get(k):
                    pairs.append((init, k, "oracle single source", oracle[k]))
                if "random" in inits:
                    pairs.append((init, k, "random", "random"))
    out = []
    for init, k, label, other in pairs:
        mine, theirs = score.get((init, k), {}), score.get((other, k), {})
        common = sorted(set(mine) & set(theirs))
        if not common:
            continue
        a, b = [mine[x] for x in common], [theirs[x] for x in common]
        out.append({"init": init, "shots": k, "against": f"{label} ({other})"} | _paired(a, b))
    return _holm_verdicts(out)


def _comparison_table(rows: list[dict], unit: str = "seeds") -> list[str]:
    """A table of paired comparisons; `unit` says what they are paired over (few-shot: seeds,
    whose column says init / shots; multi-task: origins, whose column says method / task)."""
    if not rows:
        return []
    first, second = ("init", "shots") if unit == "seeds" else ("method", "task")
    header = [first, second, "against", "means", "diff", "p (paired t)", "p (sign-flip)",
              "p (Holm)", "verdict", unit]  # fmt: skip
    body = [
        [
            c["init"],
            str(c["shots"]),
            c["against"],
            f"{c['mean']:.3f} vs {c['other_mean']:.3f}",
            f"{c['diff']:+.3f}",
            format_p(c["p"]),
            format_p(c["p_sign_flip"]),
            format_p(c["p_holm"]),
            c["verdict"],
            str(c["seeds"]),
        ]
        for c in rows
    ]
    return [
        f"Paired over {unit}; Holm's correction over the {_count(len(rows), 'comparison')} of"
        f" this table; better/worse only where the corrected p is below {ALPHA}.",
        "",
        _table(header, body),
        "",
    ]


def _fewshot_settings(manifest: dict | None) -> list[str]:
    """The model selection every init shared, from the recorded config (the manifest)."""
    if not manifest:
        return []
    cfg = manifest.get("config", manifest)  # older manifests were the bare config
    t = cfg.get("fewshot_train") or {}
    lines = [
        "Fairness: every init is tuned with the same settings "
        + ", ".join(f"{k} {v}" for k, v in sorted(t.items()))
        + f" (validation: {cfg.get('eval_examples')} examples, the start counted as step 0), "
        "so a start that tuning cannot improve is kept rather than made worse.",
        "",
    ]
    if "none" in (cfg.get("fewshot_selection") or []):
        lam = cfg.get("fewshot_none_lambda", "shots")
        lam_text = (
            "searched on the k shots themselves (1.0 at 0 shots)"
            if lam == "shots"
            else f"fixed at {lam}"
        )
        subset = cfg.get("fewshot_none_inits")
        lines += [
            "No-selection arm: the same settings without early stopping, the last prompt"
            f" kept, no validation read; the sum's lambda {lam_text}; inits: "
            + (", ".join(subset) if subset else "every init")
            + ".",
            "",
        ]
    return lines


SELECTION_TITLES = {
    "validation": "selection on validation (the paper's)",
    "none": "no selection (true few-shot: fixed steps, the last prompt kept)",
}


def _fewshot(rows: list[dict], floors: Floors, dest: Path, plots: bool) -> list[str]:
    lines = [
        "## Few-shot initialisation on target tasks (claim 2)",
        "",
        "Each init is tuned on k shots per class; k=0 scores the initialisation itself. One"
        " table per selection arm: on validation (the paper's: the best prompt on the"
        " validation sample is kept, the initialisation included, and the sum's lambda is"
        " searched on validation), and, where run, no selection (no labelled target data beyond"
        " the k shots: fixed steps, the last prompt kept, the sum's lambda chosen on the shots"
        " or fixed). Cells: primary metric (mean ± std over seeds) / mean accuracy.",
        "",
    ]
    by_table: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in rows:
        by_table[(r["target"], r.get("selection", "validation"))].append(r)
    # A k=0 start that selects nothing is the same in both arms: scored once (validation arm).
    zero = {
        (r["target"], r["init"]): r
        for r in rows
        if r["shots"] == 0 and r.get("selection", "validation") == "validation"
    }
    order = list(SELECTION_TITLES)
    tables = sorted(by_table.items(), key=lambda kv: (kv[0][0], order.index(kv[0][1])))
    for (target, sel), rs in tables:
        borrowed = []
        if sel != "validation":
            have = {r["init"] for r in rs if r["shots"] == 0}
            borrowed = [
                zero[(target, i)]
                for i in dict.fromkeys(r["init"] for r in rs)
                if i not in have and (target, i) in zero
            ]
        lines += _fewshot_table(target, sel, rs + borrowed, len(borrowed), floors, dest, plots)
    return lines


def _fewshot_table(
    target: str,
    selection: str,
    rs: list[dict],
    borrowed: int,
    floors: Floors,
    dest: Path,
    plots: bool,
) -> list[str]:
    """One target's table in one selection arm, its comparisons (one Holm family) and plot.
    The last `borrowed` rows are k=0 rows of the validation arm (nothing selected in them)."""
    from_val = {id(r) for r in rs[len(rs) - borrowed :]} if borrowed else set()
    inits = list(dict.fromkeys(r["init"] for r in rs))
    shots = sorted({r["shots"] for r in rs})
    score: dict[tuple[str, int], dict[int, float]] = defaultdict(dict)
    acc: dict[tuple[str, int], list[float | None]] = defaultdict(list)
    marked: set[tuple[str, int]] = set()
    for r in rs:
        score[(r["init"], r["shots"])][r["seed"]] = r["test"]
        acc[(r["init"], r["shots"])].append(_acc(r.get("metrics")))
        if id(r) in from_val:
            marked.add((r["init"], r["shots"]))
    table = [["floor (best constant answer)"] + [floors.cell(target)] * len(shots)]
    for init in inits:
        cells = []
        for k in shots:
            s = score.get((init, k), {})
            mark = " †" if (init, k) in marked else ""
            cells.append(
                f"{_ms(list(s.values()))} / {_f(_mean(acc.get((init, k), [])))}{mark}" if s else "-"
            )
        table.append([init] + cells)
    oracle = _oracle_single(score, inits, shots)
    if oracle:
        table.append(
            ["oracle single source (picked on test)"]
            + [
                f"{_ms(list(score[(oracle[k], k)].values()))} ({oracle[k]})" if k in oracle else "-"
                for k in shots
            ]
        )
    lines = [
        f"### {target}: {SELECTION_TITLES.get(selection, selection)}",
        "",
        _table(["init"] + [f"{k} shots" for k in shots], table),
        "",
    ]
    if marked:
        lines += [
            "† the 0-shot start selects nothing (no lambda, no step): the same row as in the"
            " validation arm.",
            "",
        ]
    lines += _comparison_table(comparisons(score, inits, shots, oracle))
    if plots:
        plt = _pyplot()
        fig, ax = plt.subplots(figsize=(5, 3.2))
        for init in inits:
            ks = [k for k in shots if score.get((init, k))]
            means = [statistics.mean(score[(init, k)].values()) for k in ks]
            ax.plot(ks, means, marker="o", label=init)
        floor = floors.primary(target)
        if floor is not None:
            ax.axhline(floor, color="grey", lw=0.8, ls="--", label="floor")
        ax.set_xlabel("shots per class")
        ax.set_ylabel("test score")
        ax.set_title(f"{target} ({selection})" if selection != "validation" else target)
        ax.legend(fontsize=7)
        fig.tight_layout()
        name = f"fewshot_{target}" + ("" if selection == "validation" else f"_{selection}")
        fig.savefig(dest / f"{name}.png", dpi=120)
        plt.close(fig)
        lines += [f"![few-shot {target}]({name}.png)", ""]
    return lines
