"""Grid workers (tpv.experiments.worker): any number share one grid through per-job locks,
take jobs across stages as their sources land, and give exactly the rows of one serial run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tpv.experiments import rows as rowfile
from tpv.experiments.runner import Job, MissingDependency
from tpv.experiments.worker import Claim, held_by_others, work

SCRIPTS = Path(__file__).parent / "scripts"
sys.path.insert(0, str(SCRIPTS))
import grid_worker  # noqa: E402  (the tiny grid both the test and the subprocesses run)

TIMING = {"seconds", "examples_per_s", "run_dir", "train_seconds", "prompt_file", "code_commit"}


def _rows(out: Path) -> dict[str, dict]:
    def untimed(x):
        if isinstance(x, dict):
            return {k: untimed(v) for k, v in x.items() if k not in TIMING}
        return [untimed(v) for v in x] if isinstance(x, list) else x

    return {
        f"{p.parent.name}/{p.stem}": untimed(json.loads(p.read_text()))
        for p in sorted(out.glob("rows/*/*.json"))
    }


def _worker(out: Path, *extra: str) -> subprocess.Popen:
    env = os.environ | {"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.Popen(
        [sys.executable, str(SCRIPTS / "grid_worker.py"), str(out), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _counts(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    out = tmp_path_factory.mktemp("serial")
    counts = _counts(_worker(out, "--serial"))
    return out, counts


def test_two_worker_processes_share_the_grid_and_match_a_serial_run(tmp_path, serial):
    serial_out, serial_counts = serial
    a, b = _worker(tmp_path), _worker(tmp_path)
    ca, cb = _counts(a), _counts(b)
    total = serial_counts["done"]
    # Every job ran exactly once. Which worker ran how many is up to the scheduler: on a
    # fresh clone one process finished all 24 tiny jobs before the other had imported torch.
    assert ca["done"] + cb["done"] == total
    assert ca["done"] + ca["skipped"] == total and cb["done"] + cb["skipped"] == total
    mine, theirs = _rows(tmp_path), _rows(serial_out)
    assert mine.keys() == theirs.keys()
    for k in mine:
        assert mine[k] == theirs[k], k
    assert held_by_others(tmp_path) == []  # every lock went with its process


def test_a_worker_waits_for_a_held_source_then_skips_what_the_other_recorded(
    tmp_path, serial, monkeypatch
):
    """While another process holds a source job, the worker runs what it can, then waits;
    when the holder records the row, the worker skips it and runs its dependants."""
    serial_out, _ = serial
    runner = grid_worker.runner(tmp_path)
    held = Job("sources", "kw__o0", {"task": "kw", "origin_seed": 0})
    claim = Claim(tmp_path, held)
    assert claim.acquire()
    assert held_by_others(tmp_path) == ["sources/kw__o0"]
    assert not Claim(tmp_path, held).acquire()  # a second claim on it is refused
    waits = []

    def other_worker_finishes(seconds):
        # The "other worker": copy its row and run files from the serial run, then let go.
        waits.append(seconds)
        src = serial_out / "runs" / "sources" / "kw__o0"
        dst = tmp_path / "runs" / "sources" / "kw__o0"
        dst.mkdir(parents=True, exist_ok=True)
        for f in src.iterdir():
            if f.is_file():
                (dst / f.name).write_bytes(f.read_bytes())
        row = rowfile.read_row(rowfile.row_path(serial_out, "sources", "kw__o0"))
        rowfile.write_json_atomic(rowfile.row_path(tmp_path, "sources", "kw__o0"), row)
        claim.release()

    monkeypatch.setattr("tpv.experiments.worker._wait", other_worker_finishes)
    counts = work(runner, poll_seconds=7)
    assert waits == [7]  # waited once, while the held source was the only way forward
    assert counts["skipped"] == 1 and counts["done"] == len(_rows(serial_out)) - 1
    mine, theirs = _rows(tmp_path), _rows(serial_out)
    assert mine.keys() == theirs.keys()
    assert all(mine[k] == theirs[k] for k in mine)


def test_a_worker_with_nothing_to_wait_for_names_the_missing_sources(tmp_path):
    runner = grid_worker.runner(tmp_path)
    with pytest.raises(
        MissingDependency, match=r"cross_origin/kw__from-o0__on-o0 needs sources kw__o0"
    ):
        work(runner, ["cross_origin"])


def test_jobs_lists_states_and_time_left(tmp_path):
    """`tpv experiment jobs` on the shipped study config with one source recorded (100 s) and
    one held by a worker: what runs, what is ready, what waits, and the time left."""
    from typer.testing import CliRunner

    from tpv.cli import app
    from tpv.experiments import ExperimentConfig, Runner

    root = Path(__file__).parents[1]
    text = (root / "configs" / "study.toml").read_text()
    toml = tmp_path / "study.toml"
    toml.write_text(text.replace('out = "runs/study"', f'out = "{tmp_path / "out"}"'))
    runner = Runner(ExperimentConfig.load(toml))
    done, running = (j for j in runner.jobs("sources")[:2])
    rowfile.write_json_atomic(
        runner.row_path(done), {"job_hash": runner.job_hash(done), "seconds": 100.0}
    )
    claim = Claim(runner.out, running)
    assert claim.acquire()
    try:
        res = CliRunner().invoke(app, ["experiment", "jobs", str(toml)])
    finally:
        claim.release()
    assert res.exit_code == 0, res.output
    lines = dict(line.split(": ", 1) for line in res.output.splitlines() if ": " in line)
    assert lines["sources"] == "1/12 recorded, 1 running, 10 ready, 100 s/job measured, ~0.3 h left"
    # rotten_tomatoes on origin 0 is recorded: its 3 cross-origin moves and 2 controls are ready.
    assert lines["cross_origin"] == "0/60 recorded, 5 ready, 55 waiting"
    assert lines["similarity"] == "0/1 recorded, 1 waiting"
    assert res.output.splitlines()[-1].startswith("job time left at the measured rates: ~0.3 h")


def test_worker_and_shard_are_exclusive_on_the_command_line():
    from typer.testing import CliRunner

    from tpv.cli import app

    config = Path(__file__).parents[1] / "configs" / "study.toml"
    res = CliRunner().invoke(app, ["experiment", "run", str(config), "--worker", "--shard", "0/2"])
    assert res.exit_code == 2
    assert "--worker takes jobs as they come: leave out --shard" in res.output


def test_a_worker_refuses_or_redoes_rows_of_other_settings(tmp_path):
    from tpv.experiments.runner import StaleRows

    runner = grid_worker.runner(tmp_path)
    floors = runner.jobs("floors")
    rowfile.write_json_atomic(runner.row_path(floors[0]), {"job_hash": "old", "task": "kw"})
    with pytest.raises(StaleRows, match="floors/kw"):
        work(runner, ["floors"])
    counts = work(runner, ["floors"], redo_stale=True)
    assert counts == {"done": len(floors) - 1, "skipped": 0, "redone": 1}
    assert all(runner.row_state(j) == "current" for j in floors)
