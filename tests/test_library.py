"""The local library: add/list/show/get/remove/verify, concurrent writers, corrupt files."""

import multiprocessing as mp
import sqlite3

import pytest
import torch

from tpv.library import Library, LibraryError, resolve
from tpv.vectors import Origin, SoftPrompt, TaskPromptVector, load


def _origin(seed: int = 0, model: str = "m") -> Origin:
    g = torch.Generator().manual_seed(seed)
    return Origin(torch.randn(3, 8, generator=g), model, seed=seed)


def _vector(task: str, origin: Origin, seed: int = 1) -> TaskPromptVector:
    g = torch.Generator().manual_seed(seed)
    tuned = SoftPrompt(
        origin.tensor + torch.randn(3, 8, generator=g),
        origin.model,
        name=task,
        origin_id=origin.id,
        tasks=(task,),
    )
    return TaskPromptVector.from_prompts(tuned, origin)


def test_add_list_show_get_remove(tmp_path):
    lib = Library(tmp_path / "lib")
    o1, o2 = _origin(0), _origin(1, model="other")
    e = lib.add(o1, "o1")
    assert (e.kind, e.model, e.origin_ids, e.num_tokens, e.hidden_size) == (
        "origin",
        "m",
        (o1.id,),
        3,
        8,
    )
    lib.add(o2)  # default name for an origin
    sst2 = _vector("sst2", o1)
    sst2.save(tmp_path / "sst2.safetensors")
    lib.add(tmp_path / "sst2.safetensors", "sst2")  # from a file
    lib.add(_vector("mnli", o1, seed=2), "mnli", metadata={"note": "from run 7"})
    lib.add(_vector("qnli", o2, seed=3), "qnli")

    assert [x.name for x in lib.list()] == ["o1", f"origin-{o2.id}", "sst2", "mnli", "qnli"]
    assert [x.name for x in lib.list(task="sst2")] == ["sst2"]
    assert [x.name for x in lib.list(kind="vector", model="m")] == ["sst2", "mnli"]
    assert [x.name for x in lib.list(origin=o1.id)] == ["o1", "sst2", "mnli"]
    assert [x.name for x in lib.list(origin="o1", kind="vector")] == ["sst2", "mnli"]  # by name
    assert [x.name for x in lib.list(origin=o2.id[:6])] == [f"origin-{o2.id}", "qnli"]  # prefix
    with pytest.raises(LibraryError, match="kind 'bogus'"):
        lib.list(kind="bogus")

    shown = lib.show("mnli")
    assert shown.metadata["note"] == "from run 7" and shown.tasks == ("mnli",)
    assert shown.to_dict()["path"].endswith(".safetensors")
    got = lib.get("sst2")
    assert isinstance(got, TaskPromptVector) and torch.equal(got.tensor, sst2.tensor)
    assert resolve("sst2", tmp_path / "lib") == lib.path("sst2")
    assert resolve(tmp_path / "sst2.safetensors", tmp_path / "lib") == tmp_path / "sst2.safetensors"
    with pytest.raises(FileNotFoundError, match="no such file"):
        resolve("nope", tmp_path / "lib")

    with pytest.raises(LibraryError, match="'sst2' is already in the library"):
        lib.add(_vector("sst2", o1, seed=9), "sst2")
    replaced = lib.add(_vector("sst2", o1, seed=9), "sst2", replace=True)
    assert replaced.sha256 != shown.sha256
    assert len(list((tmp_path / "lib" / "objects").glob("*.safetensors"))) == 5  # old file gone

    removed = lib.remove("mnli")
    assert not removed.path.exists()
    with pytest.raises(LibraryError, match=r"no entry named 'sst'.*did you mean 'sst2'"):
        lib.remove("sst")
    assert lib.verify() == []


def test_same_content_under_two_names_shares_one_file(tmp_path):
    lib = Library(tmp_path)
    o = _origin()
    a, b = lib.add(o, "a"), lib.add(o, "b")
    assert a.path == b.path
    lib.remove("a")
    assert b.path.exists() and lib.verify() == []
    lib.remove("b")
    assert not b.path.exists()


def test_rejects_bad_names_and_files(tmp_path):
    lib = Library(tmp_path / "lib")
    with pytest.raises(LibraryError, match="name 'a b'"):
        lib.add(_origin(), "a b")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file at all")
    with pytest.raises(ValueError, match="junk|truncated|not a safetensors"):
        lib.add(tmp_path / "junk.safetensors", "junk")
    assert lib.list() == []
    assert [p for p in (tmp_path / "lib" / "objects").iterdir()] == []  # no staged leftovers


def test_env_var_sets_the_default_root(tmp_path, monkeypatch):
    monkeypatch.setenv("TPV_LIBRARY", str(tmp_path / "envlib"))
    Library().add(_origin(), "o")
    assert (tmp_path / "envlib" / "index.sqlite").is_file()
    assert resolve("o") == Library(tmp_path / "envlib").path("o")
    con = sqlite3.connect(tmp_path / "envlib" / "index.sqlite")
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.close()


def test_verify_reports_truncated_changed_missing_and_stray_files(tmp_path):
    lib = Library(tmp_path)
    o = _origin()
    for i, name in enumerate(["trunc", "changed", "missing", "fine"]):
        lib.add(_vector(name, o, seed=i + 1), name)
    t = lib.path("trunc")
    t.write_bytes(t.read_bytes()[:-10])
    c = lib.path("changed")
    data = bytearray(c.read_bytes())
    data[-1] ^= 0xFF  # same size, different content
    c.write_bytes(bytes(data))
    lib.path("missing").unlink()
    (tmp_path / "objects" / "stray.safetensors").write_bytes(b"x")

    problems = {(p.name, p.problem.split(":")[0]) for p in lib.verify()}
    assert problems == {
        ("trunc", "truncated"),
        ("changed", "content changed"),
        ("missing", "file is missing"),
        (None, "no entry refers to this file"),
    }
    with pytest.raises(LibraryError, match="truncated"):
        lib.get("trunc")
    with pytest.raises(LibraryError, match="missing"):
        lib.get("missing")
    assert isinstance(lib.get("fine"), TaskPromptVector)


def _add_many(root: str, worker: int, n: int) -> None:
    torch.set_num_threads(1)
    lib = Library(root)
    for i in range(n):
        g = torch.Generator().manual_seed(worker * 1000 + i)
        o = Origin(torch.randn(2, 4, generator=g), "m", seed=i)
        lib.add(o, f"w{worker}-{i}")
        if i % 5 == 0:
            lib.add(o, "shared", replace=True)  # both writers fight over one name too


def test_two_processes_adding_at_once_lose_nothing(tmp_path):
    root = str(tmp_path / "lib")
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_add_many, args=(root, w, 20)) for w in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    lib = Library(root)
    names = {e.name for e in lib.list()}
    assert names == {f"w{w}-{i}" for w in range(2) for i in range(20)} | {"shared"}
    assert lib.verify() == []
    assert isinstance(load(lib.path("w1-19")), Origin)


def test_cli_add_list_show_verify_remove(tmp_path):
    import json

    from typer.testing import CliRunner

    from tpv.cli import app

    run = CliRunner().invoke
    lib = ["--library", str(tmp_path / "lib")]
    o = _origin()
    _vector("sst2", o).save(tmp_path / "run" / "vector.safetensors")
    r = run(app, ["library", "add", str(tmp_path / "run"), "--name", "sst2", "--json", *lib])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["kind"] == "vector"
    r = run(app, ["library", "list", "--task", "sst2", "--json", *lib])
    assert [e["name"] for e in json.loads(r.output)] == ["sst2"]
    assert run(app, ["library", "list", *lib]).exit_code == 0
    r = run(app, ["library", "show", "sst2", "--json", *lib])
    assert json.loads(r.output)["origin_ids"] == [o.id]
    r = run(app, ["library", "path", "sst2", *lib])
    assert r.output.strip() == str(Library(tmp_path / "lib").path("sst2"))
    assert run(app, ["library", "verify", *lib]).exit_code == 0
    Library(tmp_path / "lib").path("sst2").unlink()
    r = run(app, ["library", "verify", "--json", *lib])
    assert r.exit_code == 1 and json.loads(r.output)["problems"][0]["problem"] == "file is missing"
    assert run(app, ["library", "remove", "sst2", *lib]).exit_code == 0
    assert json.loads(run(app, ["library", "list", "--json", *lib]).output) == []
