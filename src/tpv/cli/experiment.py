"""`tpv experiment run|report|jobs`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    help="Run the paper's experiments from a config and rebuild the report.", no_args_is_help=True
)


def _shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise typer.BadParameter(f"--shard {text!r}: expected i/n, e.g. 0/4") from None
    if not 0 <= i < n:
        raise typer.BadParameter(f"--shard {text!r}: need 0 <= i < n")
    return i, n


@app.command("run")
def run_cmd(
    config: Annotated[Path, typer.Argument(help="Experiment TOML (see configs/).")],
    stage: Annotated[list[str] | None, typer.Option(help="Only these stages (repeat).")] = None,
    shard: Annotated[
        str, typer.Option(help="i/n: run this deterministic share of each stage.")
    ] = "0/1",
    worker: Annotated[
        bool,
        typer.Option(
            help="Share the grid with other workers on this machine: take any unfinished job "
            "whose source prompts are recorded, across stages (instead of --shard)."
        ),
    ] = False,
    redo_stale: Annotated[
        bool,
        typer.Option(
            help="Redo rows recorded under other settings (default: refuse to run beside them)."
        ),
    ] = False,
    report_to: Annotated[
        str,
        typer.Option(
            help="Tracker for every prompt-tuning run: none | tensorboard | wandb | mlflow."
        ),
    ] = "none",
) -> None:
    """Run every unfinished job of the grid; finished rows are skipped, so a killed run resumes.

    A row is reused only if it was recorded under the settings this config gives its job, so a
    grid can be extended (more seeds, inits, targets) without redoing what is done.

    Example: tpv experiment run configs/offline.toml --shard 0/2
    Example: tpv experiment run configs/study.toml --worker   (once per core, in the background)
    """
    from tpv.experiments import ExperimentConfig, Runner
    from tpv.experiments.config import STAGES
    from tpv.tracking import check

    check(report_to)
    for s in stage or []:
        if s not in STAGES:
            raise typer.BadParameter(f"unknown stage {s!r}; use one of {list(STAGES)}")
    from tpv.experiments.runner import MissingDependency, StaleRows

    if worker and shard != "0/1":
        raise typer.BadParameter("--worker takes jobs as they come: leave out --shard")
    runner = Runner(ExperimentConfig.load(config), report_to=report_to)
    stages = list(stage) if stage else None
    try:
        if worker:
            from tpv.experiments.worker import work

            counts = work(runner, stages, redo_stale=redo_stale)
        else:
            counts = runner.run(stages, _shard(shard), redo_stale=redo_stale)
    except (StaleRows, MissingDependency) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    typer.echo(
        f"{counts['done']} row(s) done, {counts['redone']} redone, "
        f"{counts['skipped']} already recorded"
    )


@app.command("jobs")
def jobs_cmd(
    config: Annotated[Path, typer.Argument(help="Experiment TOML.")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List the grid's jobs per stage: recorded (under this config), stale, running (held by a
    worker), waiting (for source prompts) or ready; with the measured seconds per recorded job
    and the job time left at that rate.

    Example: tpv experiment jobs configs/offline.toml
    """
    from tpv.experiments import ExperimentConfig, Runner
    from tpv.experiments.config import STAGES
    from tpv.experiments.rows import read_row
    from tpv.experiments.worker import held_by_others

    runner = Runner(ExperimentConfig.load(config))
    running = set(held_by_others(runner.out))

    def state(j) -> str:
        st = runner.row_state(j)
        if st != "missing":
            return st
        if f"{j.stage}/{j.key}" in running:
            return "running"
        return "waiting" if runner.waiting_on(j) else "ready"

    listing = {s: [] for s in STAGES}
    for s in STAGES:
        for j in runner.jobs(s):
            item = {"key": j.key, "job_hash": runner.job_hash(j), "state": state(j)}
            if item["state"] == "current":
                item["seconds"] = read_row(runner.row_path(j)).get("seconds")
            listing[s].append(item)
    if as_json:
        typer.echo(json.dumps(listing, indent=2))
        return
    left_total, unknown = 0.0, []
    for s, jobs in listing.items():
        states = [j["state"] for j in jobs]
        done = states.count("current")
        parts = [f"{done}/{len(jobs)} recorded"]
        parts += [f"{states.count(k)} {k}" for k in ("stale", "running", "ready", "waiting")
                  if states.count(k)]  # fmt: skip
        secs = [j["seconds"] for j in jobs if j.get("seconds") is not None]
        todo = len(jobs) - done
        if secs:
            mean = sum(secs) / len(secs)
            left_total += todo * mean
            parts.append(f"{mean:.0f} s/job measured, ~{todo * mean / 3600:.1f} h left")
        elif todo:
            unknown.append(s)
        typer.echo(f"{s}: " + ", ".join(parts))
    typer.echo(
        f"job time left at the measured rates: ~{left_total / 3600:.1f} h"
        + (f" + the unmeasured stages ({', '.join(unknown)})" if unknown else "")
        + " (one job per core: divide by the workers)"
    )


@app.command("report")
def report_cmd(
    out: Annotated[Path, typer.Argument(help="The experiment's output directory.")],
    dest: Annotated[Path | None, typer.Option(help="Where to write REPORT.md and plots.")] = None,
) -> None:
    """Rebuild tables (markdown) and plots (PNG) from the recorded rows alone.

    Example: tpv experiment report runs/offline --dest docs/results/offline
    """
    from tpv.experiments import build_report

    typer.echo(f"wrote {build_report(out, dest)}")
