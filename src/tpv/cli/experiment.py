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
    """
    from tpv.experiments import ExperimentConfig, Runner
    from tpv.experiments.config import STAGES
    from tpv.tracking import check

    check(report_to)
    for s in stage or []:
        if s not in STAGES:
            raise typer.BadParameter(f"unknown stage {s!r}; use one of {list(STAGES)}")
    from tpv.experiments.runner import StaleRows

    try:
        counts = Runner(ExperimentConfig.load(config), report_to=report_to).run(
            list(stage) if stage else None, _shard(shard), redo_stale=redo_stale
        )
    except StaleRows as e:
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
    """List the grid's jobs per stage: recorded (under this config), stale, or missing.

    Example: tpv experiment jobs configs/offline.toml
    """
    from tpv.experiments import ExperimentConfig, Runner
    from tpv.experiments.config import STAGES

    runner = Runner(ExperimentConfig.load(config))
    listing = {
        s: [
            {"key": j.key, "job_hash": runner.job_hash(j), "state": runner.row_state(j)}
            for j in runner.jobs(s)
        ]
        for s in STAGES
    }
    if as_json:
        typer.echo(json.dumps(listing, indent=2))
        return
    for s, jobs in listing.items():
        done = sum(j["state"] == "current" for j in jobs)
        stale = sum(j["state"] == "stale" for j in jobs)
        typer.echo(
            f"{s}: {done}/{len(jobs)} recorded"
            + (f", {stale} under other settings" if stale else "")
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
