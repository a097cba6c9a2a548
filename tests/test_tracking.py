"""Experiment tracking: a TensorBoard run read back from its event files equals the run directory
(metrics.json, log.jsonl); a missing tracker package is a clear error before any work."""

from __future__ import annotations

import json

import pytest

from tpv import tracking
from tpv.testing import keyword_task, tiny_llama
from tpv.train import TrainConfig, train

pytest.importorskip("tensorboard")


def read_scalars(folder) -> dict[str, dict[int, float]]:
    """tag -> {step: value} from every event file under `folder`."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out: dict[str, dict[int, float]] = {}
    files = sorted(folder.rglob("events.out.tfevents.*"))
    assert files, f"no event files under {folder}"
    for path in files:
        acc = EventAccumulator(str(path))
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            out.setdefault(tag, {}).update({e.step: e.value for e in acc.Scalars(tag)})
    return out


def test_tensorboard_scalars_equal_the_run_directory(tmp_path):
    run = tmp_path / "run"
    cfg = TrainConfig(task="keyword", out=str(run), num_tokens=4, max_steps=6, batch_size=8,
                      eval_every=3, test_init=True, report_to="tensorboard")  # fmt: skip
    m = train(cfg, backbone=tiny_llama(), task=keyword_task(n_train=32), progress=False)
    saved = json.loads((run / "metrics.json").read_text())
    scalars = read_scalars(run / tracking.TENSORBOARD_DIR)
    approx = pytest.approx  # TensorBoard stores float32

    assert scalars["val/score"] == {e["step"]: approx(e["val"], rel=1e-6) for e in saved["evals"]}
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    losses = {r["step"]: r["loss"] for r in rows if "loss" in r}
    lrs = {r["step"]: r["lr"] for r in rows if "lr" in r}
    assert sorted(scalars["train/loss"]) == sorted(losses) == list(range(1, 7))
    assert scalars["train/loss"] == {s: approx(v, rel=1e-6) for s, v in losses.items()}
    assert scalars["train/lr"] == {s: approx(v, rel=1e-6) for s, v in lrs.items()}
    last = saved["steps"]
    for key in ("score", "accuracy", "f1_macro", "n"):
        assert scalars[f"test/{key}"] == {last: approx(saved["test"][key], rel=1e-6)}
        assert scalars[f"init_test/{key}"] == {last: approx(saved["init_test"][key], rel=1e-6)}
    assert scalars["best_val"] == {last: approx(saved["best_val"], rel=1e-6)}
    assert m.best_val == saved["best_val"]


def test_untracked_run_writes_no_tracker_files(tmp_path):
    run = tmp_path / "run"
    cfg = TrainConfig(task="keyword", out=str(run), num_tokens=4, max_steps=2, batch_size=8,
                      eval_every=2)  # fmt: skip
    train(cfg, backbone=tiny_llama(), task=keyword_task(n_train=16), progress=False)
    assert not (run / tracking.TENSORBOARD_DIR).exists()


def test_missing_tracker_package_is_named(monkeypatch):
    real = tracking.importlib.util.find_spec
    monkeypatch.setattr(
        tracking.importlib.util, "find_spec", lambda n: None if n == "wandb" else real(n)
    )
    with pytest.raises(tracking.TrackingError, match=r"'wandb' package is not installed"):
        tracking.check("wandb")
    with pytest.raises(tracking.TrackingError, match=r"'wandb' package is not installed"):
        tracking.accelerator_kwargs("wandb", "runs/x")


def test_unknown_tracker_is_refused_before_training():
    with pytest.raises(ValueError, match="report_to 'comet'"):
        TrainConfig(task="keyword", report_to="comet")
    with pytest.raises(tracking.TrackingError, match="use one of none, tensorboard"):
        tracking.check("comet")


def test_flat_config_and_scalars():
    flat = tracking.flat_config({"a": 1, "b": [1, 2], "c": {"x": 1}, "d": None, "e": "s"})
    assert flat == {"a": 1, "b": "[1, 2]", "c": '{"x": 1}', "d": None, "e": "s"}
    got = tracking.scalars({"s": 0.5, "n": 3, "t": "x", "b": True, "nan": float("nan")}, "p/")
    assert got == {"p/s": 0.5, "p/n": 3.0}


@pytest.mark.parametrize("cmd", [["train"], ["compose"], ["experiment", "run"]])
def test_report_to_is_an_option_of_train_compose_and_experiment_run(cmd):
    from typer.testing import CliRunner

    from tpv.cli import app

    result = CliRunner().invoke(app, [*cmd, "--help"], env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert result.exit_code == 0 and "--report-to" in result.output
