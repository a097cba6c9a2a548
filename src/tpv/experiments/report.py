"""Rebuild the paper's tables and plots from the recorded rows alone (markdown + PNG)."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from pathlib import Path

from tpv.experiments.runner import read_rows
from tpv.io import atomic_open


def _ms(xs: list[float]) -> str:
    xs = [x for x in xs if x is not None]
    if not xs:
        return "-"
    if len(xs) == 1:
        return f"{xs[0]:.3f}"
    return f"{statistics.mean(xs):.3f} ± {statistics.stdev(xs):.3f}"


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


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(str, r)) + " |" for r in rows]
    return "\n".join(lines)


def _paired_p(a: list[float], b: list[float]) -> float | None:
    """Two-sided paired t-test p-value over seeds (None with fewer than 2 pairs or no variance)."""
    if len(a) < 2 or len(a) != len(b):
        return None
    from scipy.stats import ttest_rel

    diffs = [x - y for x, y in zip(a, b, strict=True)]
    if all(d == diffs[0] for d in diffs):
        return None if diffs[0] != 0 else 1.0
    p = float(ttest_rel(a, b).pvalue)
    return None if math.isnan(p) else p


def build_report(out: str | Path, dest: str | Path | None = None, plots: bool = True) -> Path:
    """Write REPORT.md (and PNG plots) for an experiment directory; returns the markdown path."""
    out = Path(out)
    dest = Path(dest) if dest else out / "report"
    dest.mkdir(parents=True, exist_ok=True)
    by_stage: dict[str, list[dict]] = defaultdict(list)
    for row in read_rows(out):
        by_stage[row["stage"]].append(row)
    if not by_stage:
        raise ValueError(f"{out}: no recorded rows under rows/ (run `tpv experiment run` first)")
    parts = [
        f"# Experiment report: {out.name}",
        "",
        f"Rebuilt from {sum(map(len, by_stage.values()))} recorded rows in `{out}/rows/`"
        f" (`tpv experiment report {out}`). Scores: each task's primary test metric;"
        " mean ± std over origins or seeds.",
        "",
    ]
    if by_stage.get("sources"):
        parts += _sources(by_stage["sources"])
    if by_stage.get("cross_origin"):
        parts += _cross(by_stage["cross_origin"])
    if by_stage.get("similarity"):
        parts += _similarity(by_stage["similarity"][0], dest, plots)
    if by_stage.get("multitask"):
        parts += _multitask(by_stage["multitask"], dest, plots)
    if by_stage.get("fewshot"):
        parts += _fewshot(by_stage["fewshot"], dest, plots)
        parts += _fewshot_settings(out)
    md = dest / "REPORT.md"
    with atomic_open(md, "w", encoding="utf-8") as f:
        f.write("\n".join(parts) + "\n")
    return md


def _sources(rows: list[dict]) -> list[str]:
    by_task: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_task[r["task"]].append(r)
    table = []
    for t, rs in sorted(by_task.items()):
        ratio = [r["vector_norm"] / r["origin_norm"] for r in rs]
        table.append(
            [
                t,
                len(rs),
                _ms([r["init_test"] for r in rs]),
                _ms([r["test"] for r in rs]),
                _ms(ratio),
            ]
        )
    return [
        "## Prompt tuning on the source tasks",
        "",
        _table(["task", "origins", "untuned origin", "tuned", "norm(tau)/norm(origin)"], table),
        "",
    ]


def _cross(rows: list[dict]) -> list[str]:
    by_task: dict[str, dict[bool, list[float]]] = defaultdict(lambda: {False: [], True: []})
    for r in rows:
        by_task[r["task"]][r["mixed"]].append(r["test"])
    table = [
        [
            t,
            _ms(d[False]),
            _ms(d[True]),
            f"{statistics.mean(d[True]) - statistics.mean(d[False]):+.3f}"
            if d[True] and d[False]
            else "-",
        ]
        for t, d in sorted(by_task.items())
    ]
    return [
        "## Cross-origin transfer (claim 1)",
        "",
        "A vector trained from origin A, applied to its own origin (original) or another (mixed).",
        "",
        _table(["task", "original", "mixed", "mixed - original"], table),
        "",
    ]


def _similarity(row: dict, dest: Path, plots: bool) -> list[str]:
    names, cos = row["names"], row["cosine"]
    lines = ["## Cosine similarity of task prompt vectors", ""]
    lines.append(
        _table(
            [""] + names, [[n] + [f"{c:.2f}" for c in cs] for n, cs in zip(names, cos, strict=True)]
        )
    )
    if plots:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

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


def _multitask(rows: list[dict], dest: Path, plots: bool) -> list[str]:
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in rows:
        groups[("+".join(r["tasks"]), r["method"])].append(r)
    table, kept_plot = [], defaultdict(dict)
    worst: dict[str, dict[str, float]] = defaultdict(dict)  # combo -> method -> mean worst kept
    for (combo, method), rs in sorted(groups.items()):
        tasks = rs[0]["tasks"]
        cells = []
        for t in tasks:
            kept = [r["kept_fraction"][t] for r in rs]
            cells.append(f"{t}: {_ms([r['test'][t] for r in rs])} (kept {_ms(kept)})")
            kept_plot[combo].setdefault(method, []).append(
                statistics.mean([k for k in kept if k is not None] or [0])
            )
        worst_kept = [min(v for v in r["kept_fraction"].values() if v is not None) for r in rs]
        worst[combo][method] = statistics.mean(worst_kept)
        table.append(
            [
                combo,
                method,
                _chosen_cell(rs),
                "<br>".join(cells),
                _ms(worst_kept),
            ]
        )
    lines = [
        "## Multi-task prompts by combination (claim 3)",
        "",
        "Vectors of several tasks combined on one origin; lambda searched on the mean validation"
        " score of the tasks; kept = test score / that task's single-task score.",
        "",
        _table(
            ["tasks", "method", "lambda / fit", "test per task (kept fraction)", "worst kept"],
            table,
        ),
        "",
    ]
    for combo, by_method in sorted(worst.items()):
        best = max(by_method, key=by_method.get)
        verdict = "reaches" if by_method[best] >= 0.95 else "falls short of"
        lines.append(
            f"- {combo}: best worst-task kept fraction {by_method[best]:.3f} ({best}); "
            f"{verdict} the 0.95 goal."
        )
    lines.append("")
    if plots:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        for i, (combo, methods) in enumerate(sorted(kept_plot.items())):
            # One group of bars per method, one bar per task: where each method loses what.
            tasks = combo.split("+")
            names = list(methods)
            fig, ax = plt.subplots(figsize=(7, 3.2))
            width = 0.8 / len(tasks)
            for j, t in enumerate(tasks):
                xs = [k + (j - (len(tasks) - 1) / 2) * width for k in range(len(names))]
                ax.bar(xs, [methods[m][j] for m in names], width, label=t)
            ax.axhline(1.0, color="k", lw=0.8, ls="--")
            ax.axhline(0.95, color="r", lw=0.8, ls=":")
            ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=7)
            ax.set_ylabel("kept fraction (test)")
            ax.set_title(combo, fontsize=9)
            ax.legend(fontsize=7)
            fig.tight_layout()
            fig.savefig(dest / f"kept_{i}.png", dpi=120)
            plt.close(fig)
            lines += [f"![kept {combo}](kept_{i}.png)", ""]
    return lines


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


def _comparisons(
    score: dict, inits: list[str], shots: list[int], oracle: dict[int, str]
) -> list[str]:
    """Each suggested init against the paper's fixed sum, the oracle single source and random:
    difference of means and a paired t-test over seeds."""
    focus = [i for i in inits if i.startswith("suggest")]
    paper = next((i for i in inits if i.startswith("tpv:") and "+" in i), None)
    rows = []
    for init in focus:
        for k in shots:
            mine = score.get((init, k), {})
            if not mine:
                continue
            for label, other in (
                ("paper's sum", paper),
                ("oracle single source", oracle.get(k)),
                ("random", "random" if "random" in inits else None),
            ):
                theirs = score.get((other, k), {}) if other else {}
                common = sorted(set(mine) & set(theirs))
                if not common:
                    continue
                a, b = [mine[x] for x in common], [theirs[x] for x in common]
                diff = statistics.mean(a) - statistics.mean(b)
                p = _paired_p(a, b)
                rows.append(
                    [
                        init,
                        str(k),
                        f"{label} ({other})",
                        f"{statistics.mean(a):.3f} vs {statistics.mean(b):.3f}",
                        f"{diff:+.3f}",
                        "better" if diff > 0 else ("worse" if diff < 0 else "tie"),
                        "-" if p is None else f"{p:.2f}",
                        str(len(common)),
                    ]
                )
    if not rows:
        return []
    header = ["init", "shots", "against", "means", "diff", "", "p (paired t)", "seeds"]
    return [_table(header, rows), ""]


def _fewshot_settings(out: Path) -> list[str]:
    """The model selection every init shared, from the recorded config (experiment.json)."""
    import json

    path = out / "experiment.json"
    if not path.exists():
        return []
    cfg = json.loads(path.read_text())
    t = cfg.get("fewshot_train") or {}
    return [
        "Fairness: every init is tuned with the same settings "
        + ", ".join(f"{k} {v}" for k, v in sorted(t.items()))
        + f" (validation: {cfg.get('eval_examples')} examples, the start counted as step 0), "
        "so a start that tuning cannot improve is kept rather than made worse.",
        "",
    ]


def _fewshot(rows: list[dict], dest: Path, plots: bool) -> list[str]:
    lines = [
        "## Few-shot initialisation on target tasks (claim 2)",
        "",
        "Each init is tuned on k shots per class; k=0 scores the initialisation itself. The best"
        " prompt on validation is kept (the initialisation counts), for every method alike."
        " p: paired t-test over seeds between each init and the first tpv init.",
        "",
    ]
    by_target: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_target[r["target"]].append(r)
    for target, rs in sorted(by_target.items()):
        inits = list(dict.fromkeys(r["init"] for r in rs))
        shots = sorted({r["shots"] for r in rs})
        ref = next((i for i in inits if i.startswith("tpv")), None)
        score: dict[tuple[str, int], dict[int, float]] = defaultdict(dict)
        for r in rs:
            score[(r["init"], r["shots"])][r["seed"]] = r["test"]
        table = []
        for init in inits:
            cells = []
            for k in shots:
                s = score.get((init, k), {})
                cell = _ms(list(s.values()))
                if ref and init != ref and k > 0:
                    common = sorted(set(s) & set(score.get((ref, k), {})))
                    p = _paired_p([score[(ref, k)][x] for x in common], [s[x] for x in common])
                    if p is not None:
                        cell += f" (p={p:.2f})"
                cells.append(cell)
            table.append([init] + cells)
        oracle = _oracle_single(score, inits, shots)
        if oracle:
            table.append(
                ["oracle single source (picked on test)"]
                + [
                    f"{_ms(list(score[(oracle[k], k)].values()))} ({oracle[k]})"
                    if k in oracle
                    else "-"
                    for k in shots
                ]
            )
        lines += [f"### {target}", "", _table(["init"] + [f"{k} shots" for k in shots], table), ""]
        lines += _comparisons(score, inits, shots, oracle)
        if plots:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt

            fig, ax = plt.subplots(figsize=(5, 3.2))
            for init in inits:
                ks = [k for k in shots if score.get((init, k))]
                means = [statistics.mean(score[(init, k)].values()) for k in ks]
                ax.plot(ks, means, marker="o", label=init)
            ax.set_xlabel("shots per class")
            ax.set_ylabel("test score")
            ax.set_title(target)
            ax.legend(fontsize=7)
            fig.tight_layout()
            fig.savefig(dest / f"fewshot_{target}.png", dpi=120)
            plt.close(fig)
            lines += [f"![few-shot {target}](fewshot_{target}.png)", ""]
    return lines
