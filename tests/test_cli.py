"""The `tpv` command end to end on a tiny model saved to disk and a user CSV file."""

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from tpv.cli import app, main
from tpv.identity import directory_digest
from tpv.testing import keyword_task, tiny_llama

runner = CliRunner()


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("tiny-model")
    b = tiny_llama()
    b.model.save_pretrained(d)
    b.tokenizer.save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def task_csv(tmp_path_factory) -> Path:
    """The keyword task as a user's CSV: raw labels 0/1 mapped to words on the command line."""
    task = keyword_task(n_train=80)
    rows = [ex for split in ("train", "validation", "test") for ex in task.split(split)]
    path = tmp_path_factory.mktemp("data") / "kw.csv"
    path.write_text(
        "sentence,answer\n" + "".join(f"{ex.fields['text']},{ex.label}\n" for ex in rows)
    )
    return path


def _data_args(task_csv: Path) -> list[str]:
    """The user CSV as a task: its columns and raw labels 0/1 mapped to words."""
    return [
        "--task",
        str(task_csv),
        "--text-column",
        "sentence",
        "--label-column",
        "answer",
        "--label-word",
        "0=yes",
        "--label-word",
        "1=no",
    ]


def _ok(args: list[str]):
    result = runner.invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def test_train_eval_info_combine_from_the_command_line(tmp_path, tiny_model_dir, task_csv):
    data = _data_args(task_csv)
    for name, seed in (("a", 0), ("b", 0)):
        _ok(
            [
                "train",
                *data,
                "--model",
                str(tiny_model_dir),
                "--tokens",
                "4",
                "--steps",
                "4",
                "--eval-every",
                "2",
                "--origin-seed",
                str(seed),
                "--seed",
                str(ord(name)),
                "--out",
                str(tmp_path / name),
            ]
        )
    metrics = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert metrics["steps"] == 4
    digest = directory_digest(tiny_model_dir)
    assert metrics["model"] == f"{tiny_model_dir.resolve()}@config:{digest}"

    info = json.loads(
        _ok(["vector", "info", str(tmp_path / "a" / "vector.safetensors"), "--json"]).stdout
    )
    assert info["kind"] == "vector" and info["shape"] == [4, 64]
    assert info["norm"] == pytest.approx(metrics["vector_norm"])

    out = tmp_path / "multi.safetensors"
    _ok(
        [
            "combine",
            str(tmp_path / "a" / "vector.safetensors"),
            str(tmp_path / "b" / "vector.safetensors"),
            "--origin",
            str(tmp_path / "a" / "origin.safetensors"),
            "--method",
            "ties",
            "--param",
            "density=0.5",
            "--coef",
            "0.5",
            "--out",
            str(out),
        ]
    )
    # What the command wrote is exactly the library's combination, and its score the library's.
    from tpv import Backbone, evaluate, get_task, load, merge

    a, b = (load(tmp_path / r / "vector.safetensors") for r in ("a", "b"))
    origin = load(tmp_path / "a" / "origin.safetensors")
    expected = merge.ties([a, b], density=0.5, coef=0.5).apply(origin)
    assert torch.equal(load(out).tensor, expected.tensor)
    res = json.loads(
        _ok(["eval", *data, "--model", str(tiny_model_dir), "--prompt", str(out), "--json"]).stdout
    )
    task = get_task(
        str(task_csv),
        text_columns=["sentence"],
        label_column="answer",
        label_words={"0": "yes", "1": "no"},
    )
    direct = evaluate(Backbone.load(str(tiny_model_dir)), task, expected, "test")
    assert (res["score"], res["n"]) == (direct["score"], direct["n"])


def test_errors_are_one_clear_line(tmp_path, capsys, monkeypatch):
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"not a safetensors file at all")
    monkeypatch.setattr("sys.argv", ["tpv", "vector", "info", str(bad)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 1
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.startswith("error:") and str(bad.name) in err and "Traceback" not in err
    assert len(err.splitlines()) == 1 and captured.out == ""


def test_help_has_examples():
    for cmd in (
        ["train"],
        ["eval"],
        ["combine"],
        ["compose"],
        ["vector", "info"],
        ["experiment", "run"],
        ["tasks", "list"],
        ["library", "add"],
        ["peft", "export"],
    ):
        out = _ok([*cmd, "--help"]).output
        assert "Example" in out, cmd


def test_suggest_ranks_library_vectors(tmp_path, tiny_model_dir, task_csv, monkeypatch):
    monkeypatch.setenv("TPV_LIBRARY", str(tmp_path / "lib"))
    data = _data_args(task_csv)
    for name in ("v1", "v2"):
        _ok(
            [
                "train",
                *data,
                "--model",
                str(tiny_model_dir),
                "--tokens",
                "4",
                "--steps",
                "6",
                "--eval-every",
                "3",
                "--seed",
                str(len(name) + ord(name[-1])),
                "--out",
                str(tmp_path / name),
            ]
        )
        _ok(["library", "add", str(tmp_path / name / "vector.safetensors"), "--name", name])
    # The user file is the "target" here too: what matters is the ranking machinery end to end.
    csv_task = tmp_path / "target.toml"
    csv_task.write_text(
        f'data = "{task_csv}"\ntext_columns = ["sentence"]\nlabel_column = "answer"\n'
        '[label_words]\n"0" = "yes"\n"1" = "no"\n'
    )
    out = tmp_path / "init.safetensors"
    res = json.loads(
        _ok(
            [
                "suggest",
                "--task",
                str(csv_task),
                "--shots",
                "4",
                "--model",
                str(tiny_model_dir),
                "--probe-steps",
                "2",
                "--out",
                str(out),
                "--json",
            ]
        ).stdout
    )
    assert {r["name"] for r in res["ranking"]} == {"v1", "v2"}
    assert all(r["cosine"] is not None for r in res["ranking"])
    assert res["score"] >= res["ranking"][0]["zero_shot"] and out.is_file()


def test_compose_fits_one_prompt_for_two_task_files(tmp_path, tiny_model_dir, task_csv):
    # Two user tasks as TOML files over the same CSV (one with flipped label words).
    for name, words in (("kw", ("yes", "no")), ("kw_flip", ("no", "yes"))):
        (tmp_path / f"{name}.toml").write_text(
            f'name = "{name}"\ndata = "{task_csv}"\ntext_column = "sentence"\n'
            f'label_column = "answer"\n[label_words]\n"0" = "{words[0]}"\n"1" = "{words[1]}"\n'
        )
    for name in ("kw", "kw_flip"):
        _ok(
            [
                "train",
                "--task",
                str(tmp_path / f"{name}.toml"),
                "--model",
                str(tiny_model_dir),
                "--tokens",
                "4",
                "--steps",
                "2",
                "--eval-every",
                "2",
                "--out",
                str(tmp_path / name),
            ]
        )
    out = tmp_path / "both.safetensors"
    res = json.loads(
        _ok(
            [
                "compose",
                str(tmp_path / "kw" / "vector.safetensors"),
                str(tmp_path / "kw_flip" / "vector.safetensors"),
                "--task",
                str(tmp_path / "kw.toml"),
                "--task",
                str(tmp_path / "kw_flip.toml"),
                "--origin",
                str(tmp_path / "kw" / "origin.safetensors"),
                "--model",
                str(tiny_model_dir),
                "--steps",
                "2",
                "--eval-every",
                "1",
                "--out",
                str(out),
                "--json",
            ]
        ).stdout
    )
    assert [e["step"] for e in res["evals"]] == [0, 1, 2]
    assert res["best_val"] == max(e["val"] for e in res["evals"])
    from tpv.vectors import load

    prompt = load(out)
    assert prompt.tasks == ("kw", "kw_flip") and prompt.record["method"] == "coefficients"
    bad = runner.invoke(
        app,
        [
            "compose",
            str(tmp_path / "kw" / "vector.safetensors"),
            "--task",
            "a",
            "--task",
            "b",
            "--origin",
            "0",
            "--out",
            str(out),
        ],
    )
    assert bad.exit_code != 0 and "give one task per vector" in bad.output
