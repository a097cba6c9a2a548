"""The recorded results of a grid: one JSON row per finished job, and the manifest. No torch.

Layout of an experiment directory OUT:
  OUT/experiment.json          the manifest: the config it runs (and its file), the config hash,
                               the code commit, and every job's key and job hash per stage
  OUT/rows/<stage>/<key>.json  one row per finished job (atomic writes)

A row records `job_hash`: the hash of the job's own effective settings (what its result depends
on: model, task, training settings, scorer, seeds, the settings of the source prompts it uses;
tpv.experiments.grid). A grid can be extended across sessions (more seeds, another init) and
every finished row whose job hash still matches is kept; a row whose settings changed is
refused or redone by the runner, and marked by the report. Rows also carry the whole config's
hash and the code commit they were made with (`git rev-parse HEAD`, "unknown" outside a checkout,
"-dirty" appended when the working tree had uncommitted changes).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

MANIFEST = "experiment.json"
ROWS = "rows"


def canonical_hash(obj: Any) -> str:
    """12 hex digits of the SHA-256 of `obj` as canonical JSON (sorted keys)."""
    blob = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def row_path(out: str | Path, stage: str, key: str) -> Path:
    return Path(out) / ROWS / stage / f"{key}.json"


def write_json_atomic(path: str | Path, obj: Any) -> Path:
    """Write JSON to a temporary file beside `path`, then rename: never a half-written row.
    (tpv.io.write_json does the same but imports torch; rows must not.)"""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=2, default=str)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_row(path: str | Path) -> dict:
    path = Path(path)
    try:
        row = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not a valid row ({e})") from None
    if not isinstance(row, dict):
        raise ValueError(f"{path}: a row must be a JSON object")
    return row


def read_rows(out: str | Path) -> Iterator[dict]:
    """Every recorded row of an experiment directory, in a stable order."""
    for path in sorted(Path(out).glob(f"{ROWS}/*/*.json")):
        yield read_row(path)


def write_manifest(out: str | Path, manifest: dict) -> Path:
    return write_json_atomic(Path(out) / MANIFEST, manifest)


def read_manifest(out: str | Path) -> dict | None:
    path = Path(out) / MANIFEST
    return read_row(path) if path.exists() else None


def code_commit(where: str | Path | None = None) -> str:
    """The commit of the code that runs (git rev-parse HEAD), "unknown" outside a checkout."""
    cwd = Path(where) if where else Path(__file__).resolve().parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10
        )
        if head.returncode != 0:
            return "unknown"
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=30,
        )
        return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def job_status(rows: dict[str, dict], expected: dict[str, str]) -> dict[str, list[str]]:
    """Compare recorded rows (key -> row) of one stage with the manifest's job hashes (key ->
    hash): which keys are current, made under other settings ("stale"), missing, or not in
    this config at all ("extra")."""
    out: dict[str, list[str]] = {"current": [], "stale": [], "missing": [], "extra": []}
    for key, want in expected.items():
        row = rows.get(key)
        if row is None:
            out["missing"].append(key)
        elif row.get("job_hash") == want:
            out["current"].append(key)
        else:
            out["stale"].append(key)
    out["extra"] = sorted(set(rows) - set(expected))
    return out
