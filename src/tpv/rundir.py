"""A training run's directory as a transaction: it appears complete, or not at all.

A run writes into a sibling `<out>.partial/` (config, log, checkpoints as it goes) and renames it
to `<out>` once origin, prompt, vector and metrics are written. So:

  * `<out>` only ever holds a finished run: a killed run leaves `<out>` as it was (absent, or
    the previous finished run) and its progress in `<out>.partial/`.
  * `--resume` continues `<out>.partial/` from its last checkpoint, and only with the options
    it was started with (any difference is refused, naming the fields). On a finished run with
    the same options it does nothing and returns its metrics.
  * A new run into a finished run's directory, or beside an interrupted one, is refused unless
    `--overwrite`; the old run then stays in place until the new one completes, and is replaced
    in one rename.
  * An existing file as `--out`, or a non-empty directory that is no tpv run, is refused.
Every check runs before the model loads.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

PARTIAL_SUFFIX = ".partial"
FINISHED_MARK = "metrics.json"  # written last: its presence means the run completed
CONFIG = "config.json"
CHECKPOINT = "checkpoint.safetensors"


class RunDirError(ValueError):
    """The run directory cannot be used as asked; the message names it and says what to do."""


def partial_dir(out: Path) -> Path:
    return out.parent / f"{out.name}{PARTIAL_SUFFIX}"


def is_finished(d: Path) -> bool:
    return d.is_dir() and (d / FINISHED_MARK).is_file()


def config_differences(recorded: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """'field: recorded -> wanted' for every option that differs (both as JSON values)."""
    norm = json.loads(json.dumps(wanted, default=str))
    keys = sorted(set(norm) - {"out"})  # the options; recorded extras (resolved_*) are derived
    return [
        f"{k} {json.dumps(recorded.get(k))} -> {json.dumps(norm.get(k))}"
        for k in keys
        if recorded.get(k) != norm.get(k)
    ]


def _read_config(d: Path) -> dict[str, Any]:
    try:
        return json.loads((d / CONFIG).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise RunDirError(f"{d / CONFIG}: cannot read the run's config ({e})") from None


@dataclass
class RunDir:
    out: Path
    work: Path  # where this run writes: <out>.partial
    resuming: bool = False  # work holds a checkpoint to continue from
    finished: bool = False  # --resume of a finished run with the same options: nothing to do

    def finished_metrics(self) -> dict[str, Any]:
        return json.loads((self.out / FINISHED_MARK).read_text(encoding="utf-8"))

    def commit(self) -> None:
        """Put the finished run in place: one rename (two when replacing an old run)."""
        old = None
        if self.out.exists():
            old = self.out.parent / f".{self.out.name}.replaced-{os.getpid()}"
            os.replace(self.out, old)
        os.replace(self.work, self.out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def discard(self) -> None:
        shutil.rmtree(self.work, ignore_errors=True)


def prepare(
    out: str | Path,
    config: dict[str, Any],
    *,
    resume: bool = False,
    overwrite: bool = False,
    main: bool = True,
) -> RunDir:
    """Check `out` for a run with `config` (the options as written to config.json); refuse
    with a one-line RunDirError, or say where to write. Only the main process (`main`) changes
    anything on disk (an --overwrite clearing an interrupted run)."""
    out = Path(out)
    work = partial_dir(out)
    if out.exists() and not out.is_dir():
        raise RunDirError(f"--out {out} is an existing file, not a run directory")
    if work.exists() and not work.is_dir():
        raise RunDirError(f"{work} (the in-progress copy of --out {out}) is a file: remove it")
    finished = is_finished(out)
    if out.is_dir() and not finished and any(out.iterdir()):
        if (out / CONFIG).is_file() and (out / CHECKPOINT).is_file() and not work.exists():
            # An interrupted run from before run directories were transactions.
            if resume or overwrite:
                if main:
                    os.replace(out, work)
                    log.info("moved the interrupted run %s to %s", out, work)
                finished = False
            else:
                raise RunDirError(
                    f"--out {out} holds an interrupted run: pass --resume to continue it, or "
                    "--overwrite to start over"
                )
        else:
            raise RunDirError(
                f"--out {out} is a non-empty directory that holds no finished tpv run: "
                "choose another --out"
            )
    if resume and work.is_dir() and (work / CONFIG).is_file():
        diff = config_differences(_read_config(work), config)
        if diff:
            raise RunDirError(
                f"--resume: {work} was started with other options ({'; '.join(diff)}): "
                "resume with the same options, or start over with --overwrite"
            )
        if not (work / CHECKPOINT).is_file():
            log.info("%s has no checkpoint yet: starting it afresh", work)
            return RunDir(out, work)
        return RunDir(out, work, resuming=True)
    if resume and finished:
        diff = config_differences(_read_config(out), config)
        if diff:
            raise RunDirError(
                f"--resume: {out} is a finished run with other options ({'; '.join(diff)}): "
                "pass --overwrite to replace it"
            )
        log.info("%s is already finished: nothing to resume", out)
        return RunDir(out, work, finished=True)
    if finished and not overwrite:
        raise RunDirError(
            f"--out {out} holds a finished run: pass --overwrite to replace it, or --resume "
            "to continue it"
        )
    if work.exists():
        if not overwrite and not resume:
            raise RunDirError(
                f"{work} holds an interrupted run for --out {out}: pass --resume to continue "
                "it, or --overwrite to start over"
            )
        if main:
            shutil.rmtree(work)
    if resume:
        log.info("nothing to resume at %s: starting afresh", out)
    return RunDir(out, work)
