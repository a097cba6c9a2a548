"""The experiment runner on tiny models: the whole grid, resume, shards, and the report."""

from __future__ import annotations

import json

import pytest

from tpv.experiments import ExperimentConfig, Runner, build_report
from tpv.experiments.config import STAGES, ConfigError
from tpv.testing import keyword_grid_config, keyword_grid_tasks, tiny_llama
from tpv.vectors import load

TASKS = keyword_grid_tasks()


def _config(out) -> ExperimentConfig:
    return ExperimentConfig.from_dict(
        keyword_grid_config(
            out,
            multitask={
                "combinations": [["kw", "kw_flip"]],
                "methods": [
                    "sum",
                    {"method": "ties", "density": 0.5},
                    "weights",
                    "concat",
                    {"method": "coefficients", "steps": 2, "eval_every": 1},
                    {"method": "joint", "steps": 2, "eval_every": 2},
                ],
                "lambda_grid": [0.0, 0.5, 1.0],
            },
            fewshot={
                "targets": ["kw_target"],
                "shots": [0, 2],
                "seeds": [0, 1],
                "inits": ["random", "tpv:kw+kw_flip", "spot:kw", "suggest:2"],
                "train": {"max_steps": 4, "batch_size": 4, "eval_every": 2},
            },
        )
    )


def _runner(out, backbone) -> Runner:
    return Runner(_config(out), backbone=backbone, get_task=lambda name: TASKS[name]())


TIMING = {"seconds", "examples_per_s", "run_dir", "train_seconds", "prompt_file", "code_commit"}


def _untimed(x):
    """Rows without wall-clock fields and paths, which differ between two runs of one grid."""
    if isinstance(x, dict):
        return {k: _untimed(v) for k, v in x.items() if k not in TIMING}
    if isinstance(x, list):
        return [_untimed(v) for v in x]
    return x


def _rows(out) -> dict[str, dict]:
    return {
        f"{p.parent.name}/{p.stem}": _untimed(json.loads(p.read_text()))
        for p in sorted(out.glob("rows/*/*.json"))
    }


@pytest.fixture(scope="module")
def backbone():
    return tiny_llama()


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, backbone):
    out = tmp_path_factory.mktemp("full")
    counts = _runner(out, backbone).run()
    return out, counts


def test_grid_runs_every_stage(full_run):
    out, counts = full_run
    rows = _rows(out)
    stages = {k.split("/")[0] for k in rows}
    assert stages == {"floors", "sources", "cross_origin", "similarity", "multitask", "fewshot"}
    # 3 tasks' floors; 2 tasks x 2 origins; 2 x 2 x 2 cross; 1 similarity; 1 combo x 6 methods
    # x 2 origins; 3 inits at k=0 (suggest needs shots) + 4 inits x 2 seeds at k=2
    assert counts == {"done": 3 + 4 + 8 + 1 + 12 + 3 + 8, "skipped": 0, "redone": 0}
    # Every row records its job hash, the scorer, and accuracy beside the primary metric.
    assert all(r["job_hash"] and r["scorer"] == "rank" for r in rows.values())
    assert "accuracy" in rows["fewshot/kw_target__k2__s0__random"]["metrics"]
    assert set(rows["fewshot/kw_target__k2__s0__random"]["metrics"]["per_example"]) == {
        "pred",
        "gold",
    }
    mt = rows["multitask/kw+kw_flip__sum__o0"]
    assert mt["lambda"] in (0.0, 0.5, 1.0) and set(mt["kept_fraction"]) == {"kw", "kw_flip"}
    weights = rows["multitask/kw+kw_flip__weights__o0"]["lambda"]
    assert len(weights) == 2 and all(w in (0.0, 0.5, 1.0) for w in weights)
    assert rows["multitask/kw+kw_flip__concat__o0"]["lambda"] is None
    coef = rows["multitask/kw+kw_flip__coefficients(eval_every=1,steps=2)__o0"]["fit"]
    assert [e["step"] for e in coef["evals"]] == [0, 1, 2] and len(coef["weights"]) == 2
    assert set(mt["val"]) == {"kw", "kw_flip"}
    saved = load(out / "runs" / "multitask" / "kw+kw_flip__sum__o0.safetensors")
    assert saved.kind == "prompt" and saved.tasks == ("kw", "kw_flip")
    joint = rows["multitask/kw+kw_flip__joint(eval_every=2,steps=2)__o0"]["fit"]
    assert joint["weights"] is None and joint["init_val"] == joint["evals"][0]["val"]
    assert joint["best_val"] == max(e["val"] for e in joint["evals"])
    sug = rows["fewshot/kw_target__k2__s0__suggest-2"]["suggestion"]
    assert set(sug["chosen"]) <= {"kw", "kw_flip"} and len(sug["ranking"]) == 2
    assert rows["cross_origin/kw__from-o0__on-o1"]["mixed"] is True


def test_rerun_skips_recorded_rows_and_resumes_after_a_kill(tmp_path, backbone, monkeypatch):
    runner = _runner(tmp_path, backbone)
    calls = {"n": 0}
    real = Runner._run_multitask

    def dies_on_second(self, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("killed")
        return real(self, **kw)

    monkeypatch.setattr(Runner, "_run_multitask", dies_on_second)
    with pytest.raises(KeyboardInterrupt):
        runner.run()
    before = {p: p.stat().st_mtime_ns for p in tmp_path.glob("rows/*/*.json")}
    assert len(before) == 3 + 4 + 8 + 1 + 1  # floors, sources, cross, similarity, 1 multitask
    monkeypatch.setattr(Runner, "_run_multitask", real)
    counts = _runner(tmp_path, backbone).run()
    assert counts["skipped"] == len(before)
    assert all(p.stat().st_mtime_ns == t for p, t in before.items())  # not redone


def test_two_shards_give_exactly_the_rows_of_one_run(tmp_path, backbone, full_run):
    out, _ = full_run
    for stage in STAGES:
        for i in range(2):
            _runner(tmp_path, backbone).run([stage], shard=(i, 2))
    a, b = _rows(out), _rows(tmp_path)
    assert a.keys() == b.keys()
    for k in a:
        assert a[k] == b[k], k


def test_later_stage_without_its_sources_says_what_to_run(tmp_path, backbone):
    from tpv.experiments.runner import MissingDependency

    with pytest.raises(MissingDependency, match="run the 'sources' stage"):
        _runner(tmp_path, backbone).run(["cross_origin"])


def test_report_rebuilds_from_rows(full_run, tmp_path):
    out, _ = full_run
    md = build_report(out, tmp_path / "report")
    text = md.read_text()
    for heading in (
        "Prompt tuning on the source tasks",
        "Cross-origin transfer",
        "Cosine similarity",
        "Multi-task prompts",
        "Few-shot initialisation",
        "### kw_target",
    ):
        assert heading in text
    assert (tmp_path / "report" / "similarity.png").stat().st_size > 1000
    assert (tmp_path / "report" / "fewshot_kw_target.png").exists()


def test_config_errors_name_the_field(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[experiment]\nname = "x"\nout = "o"\nsources = ["a"]\n[train]\nmax_stepz = 3\n')
    with pytest.raises(
        ConfigError, match=r"bad.toml: unknown \[train\] option\(s\) \['max_stepz'\]"
    ):
        ExperimentConfig.load(bad)
    bad.write_text(
        '[experiment]\nname = "x"\nout = "o"\nsources = ["a"]\n[fewshot]\ninits = ["tpv:b"]\n'
    )
    with pytest.raises(ConfigError, match="non-source task"):
        ExperimentConfig.load(bad)
    bad.write_text(
        '[experiment]\nname = "x"\nout = "o"\nsources = ["a"]\n[multitask]\n'
        'methods = [{ method = "joint", init = "tuned" }]\n'
    )
    with pytest.raises(ConfigError, match=r"bad.toml: \[multitask\] method 'joint': .*'tuned'"):
        ExperimentConfig.load(bad)
    with pytest.raises(ConfigError, match="no such config file"):
        ExperimentConfig.load(tmp_path / "missing.toml")


@pytest.mark.parametrize("name", ["offline", "paper-t5", "paper-llama", "study", "study-gpu"])
def test_shipped_configs_load_and_expand(name):
    from pathlib import Path

    cfg = ExperimentConfig.load(Path(__file__).parent.parent / "configs" / f"{name}.toml")
    runner = Runner(cfg)
    assert runner.jobs("sources") and runner.jobs("fewshot")
    if name.startswith("study"):  # the decisive study: 3 origins, early stopping, one scorer
        assert cfg.origin_seeds == [0, 1, 2] and cfg.train["patience"] and cfg.num_tokens == 50
        assert cfg.scorer == "rank_calibrated" and cfg.test_examples is None
    elif name != "offline":
        assert len(cfg.origin_seeds) == 10 and cfg.scorer == "generate"
        assert "tpv:mnli+qnli" in cfg.inits_for("scitail")


def test_a_combination_can_name_its_own_origins(tmp_path, backbone):
    raw = {
        "experiment": {
            "name": "x",
            "out": str(tmp_path),
            "origin_seeds": [0, 1],
            "sources": ["kw", "kw_flip"],
        },
        "multitask": {
            "combinations": [{"tasks": ["kw", "kw_flip"], "origin_seeds": [0, 1]}, ["kw"]],
            "origin_seeds": [0],
        },
    }
    cfg = ExperimentConfig.from_dict(raw)
    assert cfg.multitask_grid() == [(["kw", "kw_flip"], [0, 1]), (["kw"], [0])]
    keys = [j.key for j in Runner(cfg, backbone=backbone).jobs("multitask")]
    assert keys == ["kw+kw_flip__sum__o0", "kw+kw_flip__sum__o1", "kw__sum__o0"]
    raw["multitask"]["combinations"] = [{"tasks": ["kw"], "origin_seeds": [7]}]
    with pytest.raises(ConfigError, match=r"origin seed\(s\) \[7\] are not among"):
        ExperimentConfig.from_dict(raw)
    raw["multitask"]["combinations"] = [{"task": ["kw"]}]
    with pytest.raises(ConfigError, match="a table takes 'tasks'"):
        ExperimentConfig.from_dict(raw)


def test_rows_of_other_settings_are_refused_or_redone_and_a_grid_extends(tmp_path, backbone):
    from tpv.experiments.runner import StaleRows

    raw = {
        "experiment": {"name": "g", "out": str(tmp_path), "num_tokens": 4, "origin_seeds": [0],
                       "sources": ["kw"], "eval_examples": 16},
        "train": {"max_steps": 2, "batch_size": 4, "eval_every": 2},
    }  # fmt: skip

    def run(**kw):
        cfg = ExperimentConfig.from_dict(raw)
        runner = Runner(cfg, backbone=backbone, get_task=lambda name: TASKS[name]())
        return runner.run(["floors", "sources"], **kw)

    assert run() == {"done": 2, "skipped": 0, "redone": 0}
    first = tmp_path / "rows" / "sources" / "kw__o0.json"
    stamp = first.stat().st_mtime_ns
    # Extending the grid (another origin) keeps every finished row: its own settings are the same.
    raw["experiment"]["origin_seeds"] = [0, 1]
    assert run() == {"done": 1, "skipped": 2, "redone": 0}
    assert first.stat().st_mtime_ns == stamp
    manifest = json.loads((tmp_path / "experiment.json").read_text())
    assert set(manifest["jobs"]["sources"]) == {"kw__o0", "kw__o1"}
    # Changing what the sources depend on: refused before anything runs, then redone on request.
    raw["train"]["max_steps"] = 3
    with pytest.raises(StaleRows, match=r"2 recorded row\(s\) were made under other settings"):
        run()
    assert first.stat().st_mtime_ns == stamp
    assert run(redo_stale=True) == {"done": 0, "skipped": 1, "redone": 2}
    row = json.loads(first.read_text())
    assert row["steps"] == 3 and row["settings"]["train"]["max_steps"] == 3
    assert row["code_commit"] and row["config_sha"]
    # A row without a job hash (recorded before job hashes) is not trusted either.
    floors = tmp_path / "rows" / "floors" / "kw.json"
    old = json.loads(floors.read_text())
    del old["job_hash"]
    floors.write_text(json.dumps(old))
    with pytest.raises(StaleRows, match="floors/kw"):
        run()
    assert old["splits"]["test"]["floors"]["accuracy"]["score"] == 0.5  # kw: balanced classes
