"""A local library of origins, prompts and vectors: files by content, an SQLite index by name.

    lib = Library()                                   # $TPV_LIBRARY or <tpv home>/library
    lib.add("runs/sst2/vector.safetensors", "sst2")
    [e.name for e in lib.list(task="sst2", kind="vector")]
    tau = lib.get("sst2")                             # the loaded TaskPromptVector
    resolve("sst2")                                   # a path, for anything that takes one

Layout: `<root>/index.sqlite` (WAL) and `<root>/objects/<sha256>.safetensors`. Files are named by
content, so two names may share one file; a file goes when its last name does. Every write
takes SQLite's write lock first (BEGIN IMMEDIATE) and does its file work while holding it, so
two processes writing at once are serialised rather than interleaved.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import logging
import os
import re
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tpv.format import KINDS, file_in_dir
from tpv.io import FormatError, sha256_file
from tpv.paths import tpv_home
from tpv.vectors import Origin, PromptTensor, SoftPrompt, TaskPromptVector, load

log = logging.getLogger(__name__)

ENV_VAR = "TPV_LIBRARY"
INDEX = "index.sqlite"
OBJECTS = "objects"
SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 60.0
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+=@-]*(/[A-Za-z0-9][A-Za-z0-9._+=@-]*)*$")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    name        TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    model       TEXT NOT NULL,
    tasks       TEXT NOT NULL,     -- JSON list
    origin_ids  TEXT NOT NULL,     -- JSON list
    num_tokens  INTEGER NOT NULL,
    hidden_size INTEGER NOT NULL,
    sha256      TEXT NOT NULL,
    size        INTEGER NOT NULL,
    path        TEXT NOT NULL,     -- relative to the library root
    created     REAL NOT NULL,
    metadata    TEXT NOT NULL      -- JSON: the file's tpv metadata plus the caller's
);
CREATE INDEX IF NOT EXISTS entries_model ON entries(model);
CREATE INDEX IF NOT EXISTS entries_sha ON entries(sha256);
"""


class LibraryError(ValueError):
    """A library operation cannot be done; the message names the library and the entry."""


@dataclass(frozen=True)
class Entry:
    name: str
    kind: str
    model: str
    tasks: tuple[str, ...]
    origin_ids: tuple[str, ...]
    num_tokens: int
    hidden_size: int
    sha256: str
    size: int
    path: Path
    created: float
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d |= {
            "path": str(self.path),
            "tasks": list(self.tasks),
            "origin_ids": list(self.origin_ids),
        }
        d["created_iso"] = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(self.created))
        return d


@dataclass(frozen=True)
class Problem:
    """One fault verify() found: `name` is None for a file no entry refers to."""

    name: str | None
    path: Path
    problem: str

    def __str__(self) -> str:
        who = f"entry {self.name!r}" if self.name else "unreferenced file"
        return f"{who}: {self.path}: {self.problem}"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "path": str(self.path), "problem": self.problem}


def default_root() -> Path:
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    return tpv_home() / "library"


def _origin_ids(obj: PromptTensor) -> tuple[str, ...]:
    if isinstance(obj, Origin):
        return (obj.id,)
    if isinstance(obj, SoftPrompt):
        return (obj.origin_id,) if obj.origin_id else ()
    if isinstance(obj, TaskPromptVector):
        return tuple(obj.origin_ids)
    return ()


def _tasks(obj: PromptTensor) -> tuple[str, ...]:
    return tuple(getattr(obj, "tasks", ()) or ())


class Library:
    """A directory of origins, prompts and vectors with a name index (see the module doc)."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root).expanduser() if root is not None else default_root()
        self.objects = self.root / OBJECTS
        self.index = self.root / INDEX
        self._ready = False

    def __repr__(self) -> str:
        return f"Library({str(self.root)!r})"

    # --- the index ----------------------------------------------------------------------------
    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        self.objects.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN ourselves, so a write lock is taken up front.
        con = sqlite3.connect(self.index, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        try:
            con.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            con.row_factory = sqlite3.Row
            if not self._ready:
                self._init_schema(con)
                self._ready = True
            yield con
        finally:
            con.close()

    def _init_schema(self, con: sqlite3.Connection) -> None:
        # WAL: readers never block the writer, nor the writer readers. Setting it is persistent
        # and idempotent; under a concurrent first open, busy_timeout covers the race.
        mode = con.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            log.warning("library %s: SQLite refused WAL mode (%s)", self.root, mode)
        version = con.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise LibraryError(
                f"library {self.root} has index schema {version}, newer than this tpv "
                f"({SCHEMA_VERSION})"
            )
        if version < SCHEMA_VERSION:
            # Statement by statement: executescript() would COMMIT our BEGIN IMMEDIATE.
            with self._write(con):
                for stmt in _SCHEMA.split(";"):
                    if stmt.strip():
                        con.execute(stmt)
                con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @contextlib.contextmanager
    def _write(self, con: sqlite3.Connection) -> Iterator[None]:
        """One write transaction holding the database's write lock from its first statement."""
        con.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")

    def _entry(self, row: sqlite3.Row) -> Entry:
        return Entry(
            name=row["name"],
            kind=row["kind"],
            model=row["model"],
            tasks=tuple(json.loads(row["tasks"])),
            origin_ids=tuple(json.loads(row["origin_ids"])),
            num_tokens=int(row["num_tokens"]),
            hidden_size=int(row["hidden_size"]),
            sha256=row["sha256"],
            size=int(row["size"]),
            path=self.root / row["path"],
            created=float(row["created"]),
            metadata=json.loads(row["metadata"]),
        )

    def _missing(self, con: sqlite3.Connection, name: str) -> LibraryError:
        names = [r[0] for r in con.execute("SELECT name FROM entries")]
        close = difflib.get_close_matches(name, names, n=3)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        return LibraryError(f"no entry named {name!r} in the library at {self.root}{hint}")

    # --- operations ---------------------------------------------------------------------------
    def add(
        self,
        obj: PromptTensor | str | Path,
        name: str | None = None,
        *,
        replace: bool = False,
        metadata: dict[str, Any] | None = None,
    ) -> Entry:
        """Copy an origin, prompt or vector (object or file) into the library under `name`.

        The name defaults to the object's own name (an origin's: `origin-<id>`). An existing
        name is refused unless `replace`.
        """
        if not isinstance(obj, PromptTensor):
            # Check the user's own file first, so a refusal names it (not a staged temp copy)
            # and a refused file leaves nothing behind in the library.
            src = Path(obj)
            load(file_in_dir(src, prefer="vector"))
        created_root = not self.root.exists()
        tmp = self._stage(obj)
        try:
            loaded = load(tmp)  # the staged copy is what goes in: check it again
            if name is None:
                name = getattr(loaded, "name", None) or f"origin-{loaded.id}"  # type: ignore[attr-defined]
            if not NAME_RE.match(name):
                raise LibraryError(
                    f"name {name!r}: use letters, digits and . _ + = @ - (and / between parts)"
                )
            sha, size = sha256_file(tmp), tmp.stat().st_size
            rel = f"{OBJECTS}/{sha}.safetensors"
            meta = {**loaded.metadata(), **(metadata or {})}
            with self._connect() as con, self._write(con):
                old = con.execute("SELECT * FROM entries WHERE name = ?", (name,)).fetchone()
                if old is not None and not replace:
                    raise LibraryError(
                        f"name {name!r} is already in the library at {self.root} "
                        f"({old['kind']} for {old['model']}); pass replace=True (--replace)"
                    )
                os.replace(tmp, self.root / rel)  # identical bytes if the file is already there
                con.execute(
                    "INSERT OR REPLACE INTO entries VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        name,
                        loaded.kind,
                        loaded.model,
                        json.dumps(list(_tasks(loaded))),
                        json.dumps(list(_origin_ids(loaded))),
                        loaded.num_tokens,
                        loaded.hidden_size,
                        sha,
                        size,
                        rel,
                        time.time(),
                        json.dumps(meta, default=str),
                    ),
                )
                if old is not None and old["sha256"] != sha:
                    self._drop_if_unused(con, old["sha256"], old["path"])
                row = con.execute("SELECT * FROM entries WHERE name = ?", (name,)).fetchone()
            log.info("library %s: added %s %r", self.root, loaded.kind, name)
            return self._entry(row)
        except BaseException:
            if created_root and not self.index.exists():  # nothing was added: leave no folders
                shutil.rmtree(self.root, ignore_errors=True)
            raise
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def _stage(self, obj: PromptTensor | str | Path) -> Path:
        """The object's bytes in a temp file inside objects/ (same filesystem: rename works)."""
        self.objects.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".add-", suffix=".tmp", dir=self.objects)
        os.close(fd)
        tmp = Path(name)
        try:
            if isinstance(obj, PromptTensor):
                staged = obj.save(tmp.with_suffix(".safetensors"))
                os.replace(staged, tmp)
            else:
                src = Path(obj)
                if src.is_dir():
                    src = file_in_dir(src, prefer="vector")  # a run directory: its vector
                if not src.is_file():
                    raise FileNotFoundError(f"{src}: no such file")
                shutil.copyfile(src, tmp)
                with open(tmp, "rb+") as f:
                    os.fsync(f.fileno())
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            with contextlib.suppress(FileNotFoundError):
                tmp.with_suffix(".safetensors").unlink()
            raise
        return tmp

    def _drop_if_unused(self, con: sqlite3.Connection, sha: str, rel: str) -> None:
        # Inside the write transaction: no other writer can add a name for this file meanwhile.
        (n,) = con.execute("SELECT COUNT(*) FROM entries WHERE sha256 = ?", (sha,)).fetchone()
        if n == 0:
            with contextlib.suppress(FileNotFoundError):
                (self.root / rel).unlink()

    def list(
        self,
        *,
        task: str | None = None,
        model: str | None = None,
        origin: str | None = None,
        kind: str | None = None,
    ) -> list[Entry]:
        """Entries, oldest first; `origin` is an origin id (or its prefix) or an origin's name."""
        if kind is not None and kind not in KINDS:
            raise LibraryError(f"kind {kind!r}: use one of {KINDS}")
        sql, args = "SELECT * FROM entries WHERE 1=1", []
        if kind:
            sql, args = sql + " AND kind = ?", [*args, kind]
        if task:
            sql += " AND EXISTS (SELECT 1 FROM json_each(entries.tasks) WHERE value = ?)"
            args.append(task)
        with self._connect() as con:
            if origin:
                named = con.execute(
                    "SELECT origin_ids FROM entries WHERE name = ? AND kind = 'origin'", (origin,)
                ).fetchone()
                oid = json.loads(named[0])[0] if named else origin
                sql += (
                    " AND EXISTS (SELECT 1 FROM json_each(entries.origin_ids)"
                    " WHERE substr(value, 1, length(?)) = ?)"
                )
                args += [oid, oid]
            rows = con.execute(sql + " ORDER BY created, name", args).fetchall()
        entries = [self._entry(r) for r in rows]
        if model:  # by identity (tpv.identity), not by string: old bare names still match
            from tpv.identity import display_name, same_model

            entries = [
                e for e in entries if display_name(e.model) == model or same_model(e.model, model)
            ]
        return entries

    def show(self, name: str) -> Entry:
        with self._connect() as con:
            row = con.execute("SELECT * FROM entries WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise self._missing(con, name)
        return self._entry(row)

    def path(self, name: str) -> Path:
        return self.show(name).path

    def get(self, name: str) -> Origin | SoftPrompt | TaskPromptVector:
        """The loaded object, after checking its file against the recorded sha256."""
        e = self.show(name)
        fault = _check_file(e)
        if fault:
            raise LibraryError(f"library {self.root}: entry {name!r}: {e.path}: {fault}")
        return load(e.path)

    def remove(self, name: str) -> Entry:
        with self._connect() as con, self._write(con):
            row = con.execute("SELECT * FROM entries WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise self._missing(con, name)
            con.execute("DELETE FROM entries WHERE name = ?", (name,))
            self._drop_if_unused(con, row["sha256"], row["path"])
        log.info("library %s: removed %r", self.root, name)
        return self._entry(row)

    def verify(self) -> list[Problem]:
        """Every fault: missing, truncated, altered or unreadable files, and unreferenced ones."""
        problems: list[Problem] = []
        with self._connect() as con, self._write(con):
            # Rows and files listed under the write lock: one consistent view, no file of an
            # add in flight counted as unreferenced.
            rows = con.execute("SELECT * FROM entries ORDER BY name").fetchall()
            (ok,) = con.execute("PRAGMA quick_check").fetchone()
            files = sorted(f for f in self.objects.glob("*.safetensors") if f.name[0] != ".")
        if ok != "ok":
            problems.append(Problem(None, self.index, f"index: {ok}"))
        entries = [self._entry(r) for r in rows]
        for e in entries:
            fault = _check_file(e)
            if fault is None:
                try:
                    load(e.path)
                except FormatError as err:
                    fault = f"unreadable: {err.fault}"
            if fault:
                problems.append(Problem(e.name, e.path, fault))
        known = {e.path.name for e in entries}
        for f in files:
            if f.name not in known:
                problems.append(Problem(None, f, "no entry refers to this file"))
        return problems


def _check_file(e: Entry) -> str | None:
    if not e.path.is_file():
        return "file is missing"
    size = e.path.stat().st_size
    if size != e.size:
        what = "truncated" if size < e.size else "grown"
        return f"{what}: {size} bytes, recorded {e.size}"
    sha = sha256_file(e.path)
    if sha != e.sha256:
        return f"content changed: sha256 {sha[:12]}..., recorded {e.sha256[:12]}..."
    return None


def resolve(ref: str | Path, root: str | Path | None = None) -> Path:
    """A path for `ref`: itself when it exists, else the file of the library entry so named."""
    p = Path(ref).expanduser()
    if p.exists():
        return p
    lib = Library(root)
    if not lib.index.is_file():
        raise FileNotFoundError(f"{ref}: no such file, and no library at {lib.root}")
    try:
        e = lib.show(str(ref))
    except LibraryError as err:
        raise FileNotFoundError(f"{ref}: no such file, and {err}") from None
    if not e.path.is_file():
        raise FileNotFoundError(f"{ref}: library entry's file {e.path} is missing")
    return e.path
