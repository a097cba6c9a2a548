"""Trust (issue 13): model identity by content, run directories as transactions, refused
nonsense, runs that say when they learned nothing, one-line errors. Tiny models, no download.

Every refusal is checked three ways: the exit code, one line on stderr naming the fault, and
that no file was created or changed (a snapshot of the whole temp tree before and after).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tpv import identity, rundir
from tpv.checks import OptionError, flag
from tpv.cli import main
from tpv.compose import FitConfig, fit_multitask
from tpv.identity import directory_identity, gguf_identity, same_model
from tpv.suggest import suggest
from tpv.testing import keyword_task, tiny_llama
from tpv.train import TrainConfig, train
from tpv.vectors import TaskPromptVector, load

# --- helpers ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("models") / "tiny"
    b = tiny_llama()
    b.model.save_pretrained(d)
    b.tokenizer.save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def data_csv(tmp_path_factory) -> Path:
    task = keyword_task(n_train=24, n_val=8, n_test=8)
    rows = [ex for split in ("train", "validation", "test") for ex in task.split(split)]
    path = tmp_path_factory.mktemp("data") / "kw.csv"
    path.write_text("text,label\n" + "".join(f"{e.fields['text']},{e.label}\n" for e in rows))
    return path


def _train_args(data_csv: Path, model: Path, out: Path, *extra: str) -> list[str]:
    return [
        "train", "--task", str(data_csv), "--label-word", "0=yes", "--label-word", "1=no",
        "--model", str(model), "--tokens", "4", "--steps", "2", "--batch-size", "4",
        "--eval-every", "1", "--eval-examples", "8", "--test-examples", "8",
        "--out", str(out), *extra,
    ]  # fmt: skip


def tpv(args: list[str], capsys, monkeypatch) -> tuple[int, str, str]:
    """Run the real entry point (error printing included); exit code, stdout, stderr."""
    monkeypatch.setattr(sys, "argv", ["tpv", *map(str, args)])
    with pytest.raises(SystemExit) as e:
        main()
    captured = capsys.readouterr()
    code = e.value.code
    return (0 if code is None else int(code)), captured.out, captured.err


def snapshot(root: Path) -> dict[str, str]:
    """Every path under root with a hash of its bytes (directories as '<dir>')."""
    return {
        str(p.relative_to(root)): (
            "<dir>" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
        )
        for p in sorted(root.rglob("*"))
    }


def refused(args, capsys, monkeypatch, root: Path, *needles: str) -> str:
    """The command exits 1 with one error line containing every needle, touching no file.
    (Progress bars of a run that got as far as training may come before it on stderr.)"""
    before = snapshot(root)
    code, out, err = tpv(args, capsys, monkeypatch)
    lines = err.strip().splitlines()
    errors = [x for x in lines if x.startswith("error: ")]
    assert code == 1, (code, out, err)
    assert len(errors) == 1 and lines[-1] == errors[0], err
    for n in needles:
        assert n in errors[0], (n, errors[0])
    assert snapshot(root) == before
    return errors[0]


# --- model identity -----------------------------------------------------------------------------


def test_gguf_identity_is_by_content_not_name(tmp_path):
    # Same name, same size, one 64 KiB block different: different ids (and cache keys).
    block = 1 << 16
    data = bytearray(hashlib.sha256(b"x").digest() * (4 * block // 32))
    a, b = tmp_path / "a" / "m.gguf", tmp_path / "b" / "m.gguf"
    a.parent.mkdir()
    b.parent.mkdir()
    a.write_bytes(bytes(data))
    data[2 * block : 3 * block] = bytes(block)
    b.write_bytes(bytes(data))
    assert a.stat().st_size == b.stat().st_size
    ida, idb = gguf_identity(a), gguf_identity(b)
    assert ida != idb and ida.startswith("m@sha256:") and idb.startswith("m@sha256:")
    # A copy elsewhere under the same name is the same model.
    c = tmp_path / "c.gguf"
    c.write_bytes(a.read_bytes())
    assert gguf_identity(c).split("@")[1] == ida.split("@")[1]
    assert not same_model(ida, idb)
    assert "same name 'm' but different content" in identity.describe_mismatch(ida, idb)


def test_gguf_cache_key_includes_the_content_hash(tmp_path, monkeypatch):
    from tpv.backbone import dequantized_dir

    monkeypatch.setenv("TPV_HOME", str(tmp_path / "home"))
    f = tmp_path / "m.gguf"
    f.write_bytes(b"one model")
    digest = identity.sha256_file(f)
    cached = tmp_path / "home" / "models" / f"m-{digest[:16]}"
    cached.mkdir(parents=True)
    (cached / "config.json").write_text("{}")
    assert dequantized_dir(f) == cached  # found without converting
    other = tmp_path / "x" / "m.gguf"
    other.parent.mkdir()
    other.write_bytes(b"another model")
    with pytest.raises(Exception):  # noqa: B017 - not a real GGUF: converting it fails...
        dequantized_dir(other)
    assert not (tmp_path / "home" / "models" / "m").exists()  # ...and never reuses m's cache


def test_directory_identity_is_one_model_however_typed(tiny_dir, monkeypatch):
    monkeypatch.chdir(tiny_dir.parent)
    ids = {directory_identity(s) for s in ("tiny", "./tiny/", str(tiny_dir.resolve()))}
    assert len(ids) == 1
    (the_id,) = ids
    assert the_id.startswith(f"{tiny_dir.resolve()}@config:")


def test_directory_identity_changes_with_its_config(tmp_path, tiny_dir):
    import shutil

    copy = tmp_path / "tiny"
    shutil.copytree(tiny_dir, copy)
    before = identity.directory_digest(copy)
    cfg = json.loads((copy / "config.json").read_text())
    cfg["num_hidden_layers"] = 1
    (copy / "config.json").write_text(json.dumps(cfg))
    assert identity.directory_digest(copy) != before


def test_hub_ids_are_unchanged_plus_revision():
    assert identity.hub_identity("org/model") == "org/model"
    assert identity.hub_identity("org/model", "v1.0") == "org/model@v1.0"
    assert identity.split("org/model@v1.0") == ("org/model@v1.0", None)


def test_files_record_the_identity_and_old_files_load_with_a_note(tmp_path, caplog):
    from safetensors.torch import load_file, save_file

    bb = tiny_llama()
    bb.name = "m@sha256:0123456789abcdef"
    o = bb.make_origin(4, seed=0)
    path = o.save(tmp_path / "o.safetensors")
    meta = json.loads(_header(path)["tpv"])
    assert meta["model"] == bb.name and meta["model_identity"] == identity.IDENTITY_VERSION

    # The same file as an older tpv wrote it: a bare name, no identity field.
    old = tmp_path / "old.safetensors"
    meta.pop("model_identity")
    meta["model"] = "m"
    save_file(load_file(path), old, metadata={"tpv": json.dumps(meta)})
    with caplog.at_level(logging.WARNING):
        legacy = load(old)
    assert "without a content identity" in caplog.text and str(old) in caplog.text
    # It still combines with files that carry the identity of a model named so (with a note)...
    tau = TaskPromptVector(torch.ones(4, 64), bb.name, name="t")
    tau.apply(legacy)
    # ...but not with another model's.
    with pytest.raises(ValueError, match="different models"):
        TaskPromptVector(torch.ones(4, 64), "n@sha256:0123456789abcdef", name="t").apply(legacy)


def _header(path: Path) -> dict:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return f.metadata()


def test_a_directory_typed_three_ways_is_one_model_on_the_command_line(
    tiny_dir, data_csv, tmp_path, capsys, monkeypatch
):
    monkeypatch.chdir(tiny_dir.parent)
    code, _, err = tpv(_train_args(data_csv, Path("tiny"), tmp_path / "r"), capsys, monkeypatch)
    assert code == 0, err
    for typed in ("./tiny/", str(tiny_dir.resolve())):
        code, out, err = tpv(
            ["eval", "--task", str(data_csv), "--label-word", "0=yes", "--label-word", "1=no",
             "--model", typed, "--prompt", str(tmp_path / "r"), "--json"],
            capsys, monkeypatch,
        )  # fmt: skip
        assert code == 0, err
        assert json.loads(out)["n"] > 0


# --- run directories ----------------------------------------------------------------------------


def test_a_finished_run_is_refused_then_replaced_with_overwrite(
    tiny_dir, data_csv, tmp_path, capsys, monkeypatch
):
    out = tmp_path / "run"
    assert tpv(_train_args(data_csv, tiny_dir, out), capsys, monkeypatch)[0] == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["checkpoint.safetensors", "config.json", "log.jsonl", "metrics.json",
         "origin.safetensors", "prompt.safetensors", "vector.safetensors"]
    )  # fmt: skip
    assert not rundir.partial_dir(out).exists()
    refused(
        _train_args(data_csv, tiny_dir, out, "--origin-seed", "1"),
        capsys, monkeypatch, tmp_path, f"--out {out} holds a finished run", "--overwrite",
    )  # fmt: skip
    old_origin = (out / "origin.safetensors").read_bytes()
    code, _, err = tpv(
        _train_args(data_csv, tiny_dir, out, "--origin-seed", "1", "--overwrite"),
        capsys, monkeypatch,
    )  # fmt: skip
    assert code == 0, err
    assert (out / "origin.safetensors").read_bytes() != old_origin
    assert json.loads((out / "config.json").read_text())["origin_seed"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no partial, no old copy


def test_an_existing_file_as_out_is_refused_before_the_model_loads(
    data_csv, tmp_path, capsys, monkeypatch
):
    f = tmp_path / "taken.txt"
    f.write_text("mine")
    # A model that does not exist: had the model loaded first, its error would come instead.
    refused(
        _train_args(data_csv, tmp_path / "no-such-model", f),
        capsys, monkeypatch, tmp_path, f"--out {f} is an existing file",
    )  # fmt: skip


def test_a_non_run_directory_is_refused(data_csv, tiny_dir, tmp_path, capsys, monkeypatch):
    d = tmp_path / "photos"
    d.mkdir()
    (d / "cat.jpg").write_bytes(b"meow")
    for extra in ((), ("--overwrite",)):
        refused(
            _train_args(data_csv, tiny_dir, d, *extra),
            capsys, monkeypatch, tmp_path, "holds no finished tpv run",
        )  # fmt: skip


class _Killed(BaseException):
    """Stands for SIGKILL: escapes every `except Exception` like a real kill would."""


def test_a_killed_run_leaves_out_untouched_and_resumes_to_the_same_prompt(
    tiny_dir, data_csv, tmp_path, capsys, monkeypatch
):
    import importlib

    train_mod = importlib.import_module("tpv.train")  # the module (tpv.train is the function)

    steps = ["--steps", "4", "--eval-every", "2"]
    # The uninterrupted run, for reference.
    ref = tmp_path / "ref"
    assert tpv(_train_args(data_csv, tiny_dir, ref, *steps), capsys, monkeypatch)[0] == 0

    # A finished run at out, then a new run over it (--overwrite) killed after its first
    # checkpoint: out still holds the finished run, intact; the new run is in out.partial.
    out = tmp_path / "run"
    assert tpv(_train_args(data_csv, tiny_dir, out, "--origin-seed", "3"), capsys,
               monkeypatch)[0] == 0  # fmt: skip
    before = snapshot(out)
    real_save = train_mod._save_checkpoint

    def save_then_die(path, state, *a, **kw):
        real_save(path, state, *a, **kw)
        if state["step"] == 2:
            raise _Killed

    monkeypatch.setattr(train_mod, "_save_checkpoint", save_then_die)
    with pytest.raises(_Killed):
        tpv(_train_args(data_csv, tiny_dir, out, *steps, "--overwrite"), capsys, monkeypatch)
    capsys.readouterr()  # the killed run's progress output
    monkeypatch.setattr(train_mod, "_save_checkpoint", real_save)
    assert snapshot(out) == before  # never a mixed directory
    partial = rundir.partial_dir(out)
    assert (partial / "checkpoint.safetensors").is_file()
    assert not (partial / "metrics.json").exists()

    # A plain rerun is refused (it would discard the interrupted one); so is a resume with
    # other options, naming them.
    snap = snapshot(tmp_path)
    refused(_train_args(data_csv, tiny_dir, out, *steps), capsys, monkeypatch, tmp_path,
            "holds a finished run")  # fmt: skip
    line = refused(
        _train_args(data_csv, tiny_dir, out, "--steps", "5", "--eval-every", "2", "--lr",
                    "0.1", "--resume"),
        capsys, monkeypatch, tmp_path, "--resume", "other options",
    )  # fmt: skip
    assert "lr 0.3 -> 0.1" in line and "max_steps 4 -> 5" in line
    assert snapshot(tmp_path) == snap

    code, _, err = tpv(_train_args(data_csv, tiny_dir, out, *steps, "--resume"), capsys,
                       monkeypatch)  # fmt: skip
    assert code == 0, err
    assert not partial.exists()
    assert torch.equal(load(out / "prompt.safetensors").tensor,
                       load(ref / "prompt.safetensors").tensor)  # fmt: skip
    # --resume of the finished run with the same options: nothing to do, nothing changes.
    snap = snapshot(tmp_path)
    assert tpv(_train_args(data_csv, tiny_dir, out, *steps, "--resume"), capsys,
               monkeypatch)[0] == 0  # fmt: skip
    assert snapshot(tmp_path) == snap


def test_an_interrupted_run_blocks_a_fresh_one_until_resume_or_overwrite(tmp_path):
    out = tmp_path / "run"
    partial = rundir.partial_dir(out)
    partial.mkdir()
    (partial / "config.json").write_text(json.dumps({"task": "t", "lr": 0.3}))
    with pytest.raises(rundir.RunDirError, match="interrupted run.*--resume.*--overwrite"):
        rundir.prepare(out, {"task": "t", "lr": 0.3})
    rd = rundir.prepare(out, {"task": "t", "lr": 0.3}, overwrite=True)
    assert not partial.exists() and rd.work == partial and not rd.resuming


# --- validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (
            ["--steps", "-1"],
            "--steps must be an integer >= 0 (0: only score the starting prompt), got -1",
        ),
        (["--lr", "nan"], "--lr must be a finite positive number, got nan"),
        (["--lr", "inf"], "--lr must be a finite positive number, got inf"),
        (["--lr", "0"], "--lr must be a finite positive number, got 0.0"),
        (["--batch-size", "0"], "--batch-size must be an integer >= 1, got 0"),
        (["--batch-size", "4", "--grad-accum", "3"], "--grad-accum 3 does not divide --batch-size"),
        (["--tokens", "0"], "--tokens must be an integer >= 1, got 0"),
        (["--warmup-ratio", "1.5"], "--warmup-ratio must be a finite number in [0, 1]"),
        (["--weight-decay", "-1"], "--weight-decay must be a finite number >= 0"),
        (["--eval-every", "0"], "--eval-every must be an integer >= 1"),
        (["--eval-examples", "-2"], "--eval-examples must be an integer >= 1"),
        (["--coef", "nan"], "--coef must be a finite number, got nan"),
        (["--steps", "abc"], "Invalid value for '--steps'"),
    ],
)
def test_bad_numbers_are_refused_naming_the_option(
    args, needle, data_csv, tmp_path, capsys, monkeypatch
):
    # The model does not exist: the refusal must come before any loading.
    base = _train_args(data_csv, tmp_path / "no-model", tmp_path / "out")
    code_expected = 2 if "Invalid value" in needle else 1
    before = snapshot(tmp_path)
    code, _, err = tpv(base + args, capsys, monkeypatch)
    assert code == code_expected and needle in err and len(err.strip().splitlines()) == 1, err
    assert snapshot(tmp_path) == before


def test_python_api_refuses_the_same_way():
    with pytest.raises(OptionError, match=r"--steps must be an integer >= 0 \(0: only") as e:
        TrainConfig(task="t", max_steps=-1)
    assert e.value.option == "max_steps"
    with pytest.raises(OptionError, match="--lr must be a finite positive number, got nan"):
        FitConfig(lr=float("nan"))


def test_a_diverging_run_stops_with_a_clear_error_and_saves_nothing(
    tiny_dir, data_csv, tmp_path, capsys, monkeypatch
):
    out = tmp_path / "run"
    line = refused(
        _train_args(data_csv, tiny_dir, out, "--lr", "1e38", "--steps", "6"),
        capsys, monkeypatch, tmp_path, "training diverged: loss is", "Lower --lr",
    )  # fmt: skip
    assert "nan" in line or "inf" in line


def test_a_run_that_never_beats_its_start_says_so(
    tiny_dir, data_csv, tmp_path, capsys, monkeypatch, caplog
):
    out = tmp_path / "run"
    with caplog.at_level(logging.WARNING):
        code, _, err = tpv(_train_args(data_csv, tiny_dir, out, "--lr", "1e-12"), capsys,
                           monkeypatch)  # fmt: skip
    assert code == 0, err
    m = json.loads((out / "metrics.json").read_text())
    assert m["learned"] is False and m["best_step"] == 0
    assert "learned nothing" in caplog.text and "vector is all zeros" in caplog.text
    assert load(out / "vector.safetensors").norm() == 0

    # combine warns when given it.
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        code, _, err = tpv(
            ["combine", out / "vector.safetensors", "--origin", out / "origin.safetensors",
             "--out", tmp_path / "c.safetensors"],
            capsys, monkeypatch,
        )  # fmt: skip
    assert code == 0, err
    assert "combine (sum): vector" in caplog.text and "is all zeros" in caplog.text


def test_compose_and_suggest_warn_about_a_zero_vector(caplog):
    bb = tiny_llama()
    task = keyword_task(n_train=8, n_val=4, n_test=4)
    origin = bb.make_origin(4, seed=0)
    zero = TaskPromptVector(torch.zeros(4, 64), bb.name, name="nothing", tasks=("keyword",))
    with caplog.at_level(logging.WARNING):
        fit_multitask(bb, origin, [zero], [task], lambda p: 0.5, FitConfig(steps=1, eval_every=1))
    assert "compose (coefficients): vector 'nothing' is all zeros" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        suggest({"nothing": zero}, origin, lambda p: 0.5)
    assert "suggest: vector 'nothing' is all zeros" in caplog.text


def test_suggest_with_every_candidate_tied_proposes_no_meaningless_mix(caplog):
    bb = tiny_llama()
    origin = bb.make_origin(4, seed=0)
    g = torch.Generator().manual_seed(0)
    cands = {
        n: TaskPromptVector(torch.randn(4, 64, generator=g), bb.name, name=n, tasks=(n,))
        for n in ("b", "a")
    }
    # Every prompt scores 0, the origin too: the origin itself, honestly named.
    with caplog.at_level(logging.WARNING):
        s = suggest(cands, origin, lambda p: 0.0)
    p = s.prompt(cands, origin)
    assert s.chosen == [] and p.name == "origin" and torch.equal(p.tensor, origin.tensor)
    assert "cannot be told apart" in caplog.text and "0 *" not in p.name
    assert s.as_dict()["note"].startswith("every candidate scores 0.0000")

    # Every candidate ties above the origin: the first by name, alone.
    s = suggest(cands, origin, lambda p: 0.0 if p.name == "origin" else 0.7)
    assert s.chosen == ["a"] and s.prompt(cands, origin).tasks == ("a",)


def test_suggest_leaves_zero_weighted_vectors_out_of_the_proposal():
    bb = tiny_llama()
    origin = bb.make_origin(4, seed=0)
    g = torch.Generator().manual_seed(1)
    cands = {
        n: TaskPromptVector(torch.randn(4, 64, generator=g), bb.name, name=n, tasks=(n,))
        for n in ("good", "bad")
    }
    # The best prompt is origin + good: the search keeps good alone, and the name says so.
    target = cands["good"].apply(origin).tensor
    s = suggest(cands, origin, lambda p: -float((p.tensor - target).norm()))
    assert s.chosen == ["good"] and "bad" not in s.prompt(cands, origin).name


# --- messages -----------------------------------------------------------------------------------


def test_errors_are_one_line_on_stderr_at_any_width(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "20")
    bad = tmp_path / ("a-rather-long-file-name-" * 4 + ".safetensors")
    bad.write_bytes(b"garbage that is not a safetensors file")
    refused(["vector", "info", bad], capsys, monkeypatch, tmp_path, bad.name)


def test_json_errors_are_json_objects_on_stderr(tmp_path, capsys, monkeypatch):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"garbage")
    code, out, err = tpv(["vector", "info", bad, "--json"], capsys, monkeypatch)
    assert code == 1 and out == ""
    obj = json.loads(err)
    assert obj["type"] == "FormatError" and str(bad) in obj["error"]


def test_library_add_of_a_bad_file_names_it_and_leaves_nothing(tmp_path, capsys, monkeypatch):
    bad = tmp_path / "mine.safetensors"
    bad.write_bytes(b"not a tpv file")
    lib = tmp_path / "lib"
    refused(["library", "add", bad, "--library", lib], capsys, monkeypatch, tmp_path,
            str(bad))  # fmt: skip
    assert not lib.exists()


def test_vector_info_of_a_run_directory_shows_its_vector(
    tiny_dir, data_csv, tmp_path, capsys, monkeypatch, caplog
):
    out = tmp_path / "run"
    assert tpv(_train_args(data_csv, tiny_dir, out), capsys, monkeypatch)[0] == 0
    with caplog.at_level(logging.INFO):
        code, stdout, err = tpv(["vector", "info", out, "--json"], capsys, monkeypatch)
    assert code == 0, err
    info = json.loads(stdout)
    assert info["kind"] == "vector" and info["path"] == str(out / "vector.safetensors")
    assert "showing vector.safetensors" in caplog.text


def test_peft_export_of_a_run_reads_the_model_from_the_run(
    tiny_dir, data_csv, tmp_path, capsys, monkeypatch
):
    out = tmp_path / "run"
    assert tpv(_train_args(data_csv, tiny_dir, out), capsys, monkeypatch)[0] == 0
    code, stdout, err = tpv(["peft", "export", out, "--out", tmp_path / "adapter", "--json"],
                            capsys, monkeypatch)  # fmt: skip
    assert code == 0, err
    summary = json.loads(stdout)
    assert summary["task_type"] == "CAUSAL_LM" and summary["token_dim"] == 64
    assert summary["base_model_name_or_path"] == str(tiny_dir.resolve())


def test_peft_export_finds_the_config_through_the_run_when_the_id_does_not(tmp_path, tiny_dir):
    from tpv.peft_io import _run_model_config

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"model": str(tiny_dir)}))
    cfg = _run_model_config(run)
    assert cfg is not None and cfg["hidden_size"] == 64


# --- random options: accepted and trained, or refused naming the option --------------------------

_BB = None


def _tiny():
    global _BB
    if _BB is None:
        _BB = tiny_llama()
    return _BB


_floats = st.sampled_from([float("nan"), float("inf"), -float("inf"), -1.0, 0.0, 1e-3, 0.3, 2.0])
_OPTIONS = {
    "max_steps": st.integers(-2, 2),
    "batch_size": st.integers(-1, 4),
    "grad_accum": st.integers(-1, 3),
    "num_tokens": st.integers(-1, 3),
    "eval_every": st.integers(-1, 2),
    "eval_examples": st.none() | st.integers(-1, 3),
    "test_examples": st.none() | st.integers(-1, 3),
    "max_input_tokens": st.integers(-1, 12),
    "lr": _floats,
    "weight_decay": _floats,
    "warmup_ratio": _floats,
    "coef": _floats,
    "epochs": st.none() | _floats,
    "patience": st.none() | st.integers(-1, 2),
    "seed": st.integers(-2, 3),
    "checkpoint_every": st.none() | st.integers(-1, 2),
    "warmup_steps": st.none() | st.integers(-1, 2),
}


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.fixed_dictionaries({}, optional=_OPTIONS))
def test_random_options_train_or_are_refused_by_name(tmp_path_factory, options):
    try:
        cfg = TrainConfig(task="keyword", out=str(tmp_path_factory.mktemp("r") / "run"), **options)
    except OptionError as e:
        assert e.option in options or e.option == "grad_accum"
        assert str(e).startswith(flag(e.option, obj=TrainConfig)) and "\n" not in str(e)
        return
    if cfg.epochs is not None and cfg.epochs > 1:
        return  # valid, but trains for epochs x the train size: slow, not a refusal question
    task = keyword_task(n_train=8, n_val=4, n_test=4)
    m = train(cfg, backbone=_tiny(), task=task, progress=False)
    assert m.steps >= 0 and math.isfinite(m.vector_norm)
    assert (Path(cfg.out) / "metrics.json").is_file()
