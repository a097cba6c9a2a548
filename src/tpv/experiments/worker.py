"""Several workers share one grid: each takes any unfinished job whose inputs are recorded.

`--shard i/n` splits every stage by index, so shards finish a stage at different times and a
later stage waits for the slowest shard. A worker instead walks the whole grid in stage order
and runs the first job that (1) has no row yet, (2) has every source prompt it reads recorded
(tpv.experiments.grid.sources_used), and (3) no other worker holds. Two workers on one machine
so keep both cores busy across stage boundaries: one starts cross-origin jobs of a finished
source while the other still tunes another source.

Holding a job is an exclusive `flock` on OUT/claims/<stage>/<key>.lock. The kernel drops the
lock when its process ends, however it ends, so a killed worker never leaves a stale claim and
a new session needs no clean-up. Locks are per machine: workers on several machines sharing one
out directory through a network filesystem should use `--shard` instead.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from pathlib import Path

from tpv.experiments.runner import Job, MissingDependency, Runner

log = logging.getLogger(__name__)

CLAIMS = "claims"


class Claim:
    """An exclusive, non-blocking lock on one job, released on `release()` or process exit."""

    def __init__(self, out: Path, job: Job):
        self.path = Path(out) / CLAIMS / job.stage / f"{job.key}.lock"
        self._fd: int | None = None

    def acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        # Who holds it, for a person looking at the directory (the lock, not the text, counts).
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def held_by_others(out: Path) -> list[str]:
    """The jobs other processes hold now ("stage/key"): tried without blocking, never kept."""
    held = []
    for path in sorted((Path(out) / CLAIMS).glob("*/*.lock")):
        fd = os.open(path, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
        except BlockingIOError:
            held.append(f"{path.parent.name}/{path.stem}")
        finally:
            os.close(fd)
    return held


def work(
    runner: Runner,
    stages: list[str] | None = None,
    *,
    redo_stale: bool = False,
    poll_seconds: float = 30.0,
) -> dict[str, int]:
    """Run unfinished jobs of `stages` (all by default) until none is left; returns counts of
    done / skipped (recorded by anyone before this worker got to them) / redone rows.

    A job whose sources are not recorded waits while another worker holds a job (it may be
    producing them); when nothing is held and nothing can run, MissingDependency names the
    jobs and the source rows they wait for.
    """
    from tpv.experiments.config import STAGES

    pending = [job for s in stages or STAGES for job in runner.jobs(s)]
    stale = {(j.stage, j.key) for j in runner.check_stale(pending, redo_stale)}
    code = runner.start()
    counts = {"done": 0, "skipped": 0, "redone": 0}
    total = len(pending)
    while pending:
        held_before = held_by_others(runner.out)
        found = _claim_next(runner, pending, stale, counts)
        if found is not None:
            job, claim = found
            redo = (job.stage, job.key) in stale
            try:
                recorded = sum(runner.row_path(j).exists() for j in pending)
                log.info(
                    "[worker] %s/%s (%d of %d jobs recorded, %d left)",
                    job.stage,
                    job.key,
                    total - len(pending) + recorded,
                    total,
                    len(pending) - recorded,
                )
                runner.record(job, redo=redo, code=code)
            finally:
                claim.release()
            pending.remove(job)
            counts["redone" if redo else "done"] += 1
            continue
        if not pending:
            break
        if held_before or held_by_others(runner.out):
            _wait(poll_seconds)  # another worker is running something we may wait for
            continue
        waits = "; ".join(
            f"{j.stage}/{j.key} needs sources {', '.join(runner.waiting_on(j))}"
            for j in pending[:5]
        )
        raise MissingDependency(
            f"{runner.out}: {len(pending)} job(s) wait for source prompts that no worker is "
            f"producing ({waits}{'; ...' if len(pending) > 5 else ''}): run the 'sources' "
            "stage for them"
        )
    return counts


def _wait(seconds: float) -> None:
    """The pause between polls (its own name, so a test can stand in for the other worker
    without patching every caller of time.sleep)."""
    time.sleep(seconds)


def _claim_next(
    runner: Runner, pending: list[Job], stale: set[tuple[str, str]], counts: dict[str, int]
) -> tuple[Job, Claim] | None:
    """The first pending job that can run now, with its claim held. Jobs recorded meanwhile
    (by any worker) leave `pending`, counted as skipped."""
    for job in list(pending):
        if (job.stage, job.key) not in stale and runner.row_path(job).exists():
            pending.remove(job)
            counts["skipped"] += 1
            continue
        if runner.waiting_on(job):
            continue
        claim = Claim(runner.out, job)
        if not claim.acquire():
            continue
        # Recorded (or redone) between the check above and the lock, by another worker.
        if runner.row_state(job) == "current":
            claim.release()
            pending.remove(job)
            counts["skipped"] += 1
            continue
        return job, claim
    return None
