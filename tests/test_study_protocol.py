"""The study's protocol arms (#16) on the tiny model: claim 1's controls (zero and random
origin), a learning-rate arm, the true few-shot selection arm, ATTEMPT in the few-shot stage, the
joint baseline at the source budget; and the job hashes of configs without them unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tpv.experiments import ExperimentConfig, Runner, build_report
from tpv.experiments.config import STAGES, ConfigError
from tpv.testing import keyword_task, tiny_llama
from tpv.vectors import SoftPrompt, load

FIXTURES = Path(__file__).parent / "fixtures" / "job_hashes"
TASKS = {
    "kw": lambda: keyword_task(name="kw", n_train=32, n_val=8, n_test=16),
    "kw_flip": lambda: keyword_task(name="kw_flip", n_train=32, n_val=8, n_test=16, flip=True),
    "kw_target": lambda: keyword_task(name="kw_target", n_train=32, n_val=8, n_test=16, seed=2),
}


def _hashes(runner: Runner) -> dict:
    return {s: {j.key: runner.job_hash(j) for j in runner.jobs(s)} for s in STAGES}


def test_configs_without_the_new_sections_keep_their_job_hashes():
    """Recorded at ae768f7 (before the protocol arms): finished rows must not go stale."""
    from test_experiments import _config

    want = json.loads((FIXTURES / "hashes.json").read_text())
    for name in ("study-before-16", "offline"):
        runner = Runner(ExperimentConfig.load(FIXTURES / f"{name}.toml"))
        got = _hashes(runner)
        assert got == {s: want[name][s] for s in STAGES}, name
        assert runner.config_sha == want[name]["config_sha"], name
    assert _hashes(Runner(_config("/tmp/unused"))) == {s: want["tiny"][s] for s in STAGES}


def _raw(out) -> dict:
    return {
        "experiment": {
            "name": "arms",
            "out": str(out),
            "num_tokens": 4,
            "origin_seeds": [0, 1, 2],
            "sources": ["kw", "kw_flip"],
            "eval_examples": 8,
        },
        "train": {"max_steps": 4, "batch_size": 8, "eval_every": 2, "lr": 0.3},
        "cross_origin": {
            "controls": ["zero", "random"],
            "lr_arms": [{"lr": 0.02, "tasks": ["kw"]}],
        },
        "multitask": {
            "combinations": [{"tasks": ["kw", "kw_flip"], "origin_seeds": [0]}],
            "methods": [
                "sum",
                {"method": "joint", "init": "origin", "steps": 2, "eval_every": 1},
                {"method": "joint", "init": "origin", "steps": 4, "eval_every": 2},
            ],
            "lambda_grid": [0.5, 1.0],
        },
        "fewshot": {
            "targets": ["kw_target"],
            "shots": [0, 2],
            "seeds": [0, 1],
            "lambda": "search",
            "inits": ["random", "tpv:kw+kw_flip", "attempt:kw+kw_flip"],
            "selection": ["validation", "none"],
            "none_inits": ["random", "tpv:kw+kw_flip", "attempt:kw+kw_flip"],
            "train": {"max_steps": 2, "batch_size": 4, "eval_every": 1, "attempt_rank": 8},
        },
    }


@pytest.fixture(scope="module")
def arms(tmp_path_factory):
    out = tmp_path_factory.mktemp("arms")
    backbone = tiny_llama()
    runner = Runner(
        ExperimentConfig.from_dict(_raw(out)), backbone=backbone, get_task=lambda n: TASKS[n]()
    )
    counts = runner.run()
    rows = {
        f"{p.parent.name}/{p.stem}": json.loads(p.read_text())
        for p in sorted(out.glob("rows/*/*.json"))
    }
    return out, runner, counts, rows


def test_the_arms_make_their_jobs_and_rows(arms):
    out, runner, counts, rows = arms
    keys = {s: [j.key for j in runner.jobs(s)] for s in STAGES}
    # Sources: 2 tasks x 3 origins at [train] lr, and kw x 3 origins at the low lr.
    assert keys["sources"][6:] == ["kw__o0__lr0.02", "kw__o1__lr0.02", "kw__o2__lr0.02"]
    # Cross-origin per arm: 3 x 3 origin pairs + 2 controls per from-origin: 2 x 15 + 15.
    assert len(keys["cross_origin"]) == 45
    assert "kw__lr0.02__from-o1__on-random" in keys["cross_origin"]
    assert "kw_flip__from-o2__on-zero" in keys["cross_origin"]
    # Few-shot: validation arm 3 inits at k=0 + 3 x 2 seeds at k=2; the none arm tpv at k=0
    # (its lambda is chosen without validation) + 3 x 2 at k=2.
    assert len(keys["fewshot"]) == 9 + 7
    assert "kw_target__k0__s0__tpv-kw+kw_flip__sel-none" in keys["fewshot"]
    assert "kw_target__k0__s0__random__sel-none" not in keys["fewshot"]
    assert counts["done"] == sum(len(v) for v in keys.values())
    low = rows["sources/kw__o0__lr0.02"]
    assert low["lr"] == 0.02 and low["lr_arm"] == 0.02 and rows["sources/kw__o0"]["lr"] == 0.3
    assert low["settings"]["train"]["lr"] == 0.02
    assert (out / "runs/sources/kw__o0__lr0.02/vector.safetensors").exists()


def test_cross_origin_controls_and_the_norms_they_record(arms):
    out, runner, _, rows = arms
    own = rows["cross_origin/kw__from-o0__on-o0"]
    other = rows["cross_origin/kw__from-o0__on-o1"]
    zero = rows["cross_origin/kw__from-o0__on-zero"]
    rand = rows["cross_origin/kw__from-o0__on-random"]
    assert [r["arm"] for r in (own, other, zero, rand)] == ["own", "other", "zero", "random"]
    tau = load(out / "runs/sources/kw__o0/vector.safetensors")
    origin0 = runner.origin(0)
    assert own["vector_norm"] == pytest.approx(tau.norm())
    assert own["relative_change"] == 0.0 and own["origin_norm"] == pytest.approx(origin0.norm())
    assert zero["origin_norm"] == 0.0
    # The random origin has exactly the own origin's norm, and is not the own origin.
    assert rand["origin_norm"] == pytest.approx(origin0.norm(), rel=1e-5)
    assert rand["origin_params"]["seed"] == 1_000_000 and rand["relative_change"] > 0
    # relative change = norm(prompt - tuned prompt) / norm(tuned prompt): zero gives norm(origin).
    tuned = tau.apply(origin0).tensor.double()
    assert zero["relative_change"] == pytest.approx(
        float(origin0.tensor.double().norm() / tuned.norm()), rel=1e-5
    )
    moved = (runner.origin(1).tensor.double() - origin0.tensor.double()).norm()
    assert other["relative_change"] == pytest.approx(float(moved / tuned.norm()), rel=1e-5)
    # The zero control scores tau alone as the prompt: recompute it.
    alone = SoftPrompt(tau.tensor, tau.model, name="tau alone")
    assert zero["test"] == runner.test_score("kw", alone)["score"]
    for r in (own, other, zero, rand):
        assert {"accuracy", "per_example"} <= set(r["metrics"])
    low = rows["cross_origin/kw__lr0.02__from-o0__on-zero"]
    assert low["lr_arm"] == 0.02 and low["settings"]["source"]["train"]["lr"] == 0.02


def test_the_random_origin_is_seeded_and_scaled():
    from tpv.experiments.controls import control_origin
    from tpv.vectors import Origin

    own = Origin(torch.randn(3, 5) * 7, "m")
    a, b = control_origin("random", own, 0), control_origin("random", own, 0)
    assert torch.equal(a.tensor, b.tensor) and a.norm() == pytest.approx(own.norm(), rel=1e-6)
    assert not torch.equal(a.tensor, control_origin("random", own, 1).tensor)
    assert control_origin("zero", own, 0).norm() == 0


def test_the_true_fewshot_arm_reads_no_validation(arms):
    from tpv.evaluate import Evaluator
    from tpv.tasks.fewshot import sample_k_shot
    from tpv.vectors import sum_vectors

    out, runner, _, rows = arms
    none = rows["fewshot/kw_target__k2__s0__random__sel-none"]
    val = rows["fewshot/kw_target__k2__s0__random"]
    assert none["selection"] == "none" and val["selection"] == "validation"
    # Fixed steps, the last prompt kept, no validation evaluation at all.
    assert none["best_step"] == none["steps"] == 2 and none["best_val"] is None
    assert none["init_val"] is None and val["init_val"] is not None
    log = (Path(none["run_dir"]) / "log.jsonl").read_text()
    assert '"val"' not in log and '"val"' in (Path(val["run_dir"]) / "log.jsonl").read_text()
    assert none["settings"]["train"]["keep"] == "last" and none["settings"]["eval_examples"] is None
    # The paper's sum: lambda searched on the k shots (k > 0), fixed 1.0 at k = 0.
    tpv2 = rows["fewshot/kw_target__k2__s0__tpv-kw+kw_flip__sel-none"]
    assert tpv2["lambda_chosen_on"] == "shots" and tpv2["lambda"] in (0.5, 1.0)
    # Its scores are those of the 2 shots per class the run trains on (seed 0), not validation.
    shots = Evaluator(runner.backbone, runner.task("kw_target"),
                      sample_k_shot(runner.task("kw_target").split("train"), 2, seed=0),
                      scorer="rank", max_input_tokens=256)  # fmt: skip
    tau = sum_vectors([runner.source_vector(t, 0) for t in ("kw", "kw_flip")])
    want = [[x, shots(tau.apply(runner.origin(0), x))["score"]] for x in (0.5, 1.0)]
    assert [list(h) for h in tpv2["lambda_history"]] == want
    tpv0 = rows["fewshot/kw_target__k0__s0__tpv-kw+kw_flip__sel-none"]
    assert tpv0["lambda_chosen_on"] == "fixed" and tpv0["lambda"] == 1.0
    assert rows["fewshot/kw_target__k0__s0__tpv-kw+kw_flip"]["lambda_chosen_on"] == "validation"
    # ATTEMPT in both arms, every metric kept at k = 0 and k > 0.
    for key in ("k0__s0__attempt-kw+kw_flip", "k2__s1__attempt-kw+kw_flip",
                "k2__s1__attempt-kw+kw_flip__sel-none"):  # fmt: skip
        r = rows[f"fewshot/kw_target__{key}"]
        assert {"score", "accuracy", "per_example", "metric"} <= set(r["metrics"]), key
        assert set(r["attention"]) == {"kw", "kw_flip", "target"}
    att = rows["fewshot/kw_target__k2__s1__attempt-kw+kw_flip__sel-none"]
    assert att["best_step"] == 2 and att["best_val"] is None


def test_the_report_shows_the_arms_apart(arms, tmp_path):
    out, _, _, rows = arms
    text = build_report(out, tmp_path / "r", plots=False).read_text()
    assert "### Learning-rate arm: lr 0.02" in text and "### Main sources: lr 0.3" in text
    for arm in ("own origin", "other origin", "zero origin (tau alone)", "random origin"):
        assert f"| kw | {arm} |" in text
    # 3 origins: paired tests over them are run (Holm within each arm's table).
    assert "| kw | zero origin (tau alone) vs own origin |" in text
    assert "### kw_target: selection on validation (the paper's)" in text
    assert "### kw_target: no selection (true few-shot" in text
    # The none table borrows the 0-shot random start (nothing selected in it), marked.
    none_table = text.split("### kw_target: no selection")[1]
    k0 = rows["fewshot/kw_target__k0__s0__random"]
    assert f"| random | {k0['test']:.3f} / {k0['metrics']['accuracy']:.3f} † |" in none_table
    assert "| tpv:kw+kw_flip |" in none_table and "spot" not in none_table
    assert "joint(eval_every=2,init=origin,steps=4)" in text and "cost" in text
    assert "steps" in text


def test_keep_last_refuses_patience():
    from tpv.train import TrainConfig

    with pytest.raises(ValueError, match="--patience 2 stops on validation"):
        TrainConfig(task="kw", keep="last", patience=2)
    with pytest.raises(ValueError, match="keep 'lastt'"):
        TrainConfig(task="kw", keep="lastt")


def test_runs_recorded_before_keep_existed_still_resume():
    from dataclasses import asdict

    from tpv.rundir import config_differences
    from tpv.train import TrainConfig, _resume_options

    cfg = TrainConfig(task="kw")
    recorded = {k: v for k, v in asdict(cfg).items() if k != "keep"}  # an older config.json
    assert config_differences(json.loads(json.dumps(recorded, default=str)),
                              _resume_options(cfg)) == []  # fmt: skip
    last = TrainConfig(task="kw", keep="last")
    assert config_differences(recorded, _resume_options(last)) == ['keep null -> "last"']


@pytest.mark.parametrize(
    "section, value, message",
    [
        ("cross_origin", {"controls": ["zeros"]}, r"\[cross_origin\] controls \['zeros'\]"),
        ("cross_origin", {"lr_arms": [{"lr": -1, "tasks": ["kw"]}]}, "lr_arms lr -1: a positive"),
        ("cross_origin", {"lr_arms": [{"lr": 0.3, "tasks": ["kw"]}]}, "repeats \\[train\\] lr"),
        ("cross_origin", {"lr_arms": [{"lr": 0.02, "tasks": ["nope"]}]}, "\\['nope'\\] are not"),
        ("cross_origin", {"lr_arms": [{"lr": 0.02, "task": ["kw"]}]}, "a table takes 'lr'"),
        ("cross_origin", {"lr_arm": []}, r"unknown \[cross_origin\] field\(s\) \['lr_arm'\]"),
        ("fewshot", {"selection": ["none", "best"]}, r"\[fewshot\] selection \['none', 'best'\]"),
        ("fewshot", {"none_inits": ["spot:kw"]}, r"\[fewshot\] none_inits \['spot:kw'\]"),
        ("fewshot", {"none_lambda": "search"}, r"\[fewshot\] none_lambda 'search'"),
        ("fewshot", {"lambda": "serach"}, r"\[fewshot\] lambda 'serach'"),
    ],
)
def test_bad_values_name_the_field(section, value, message):
    raw = {
        "experiment": {"name": "x", "out": "o", "sources": ["kw", "kw_flip"]},
        "fewshot": {"targets": ["t"], "inits": ["random"]},
    }
    raw[section] = raw.get(section, {}) | value
    with pytest.raises(ConfigError, match=message):
        ExperimentConfig.from_dict(raw, source="c.toml")


# --- the report's new numbers on hand-written rows ---------------------------------------------
def test_cross_comparisons_pair_over_vectors_with_holm():
    from scipy.stats import ttest_rel

    from tpv.experiments.report_cross import cross_comparisons

    own = {0: 0.80, 1: 0.85, 2: 0.82}
    other = {(0, 1): 0.79, (0, 2): 0.81, (1, 0): 0.84, (1, 2): 0.86, (2, 0): 0.80, (2, 1): 0.80}
    zero = {0: 0.60, 1: 0.66, 2: 0.61}
    rows = {"own": [{"from_seed": s, "test": v} for s, v in own.items()],
            "other": [{"from_seed": a, "test": v} for (a, _), v in other.items()],
            "zero": [{"from_seed": s, "test": v} for s, v in zero.items()]}  # fmt: skip
    comps = cross_comparisons({"t": rows})
    assert [c["arm"] for c in comps] == ["other", "zero"]
    # "other" is averaged per vector: 0.80, 0.85, 0.80.
    moved = [0.80, 0.85, 0.80]
    p = [ttest_rel(moved, list(own.values())).pvalue, ttest_rel(list(zero.values()),
         list(own.values())).pvalue]  # fmt: skip
    assert [c["p"] for c in comps] == pytest.approx(p)
    lo, hi = sorted(p)
    holm = {lo: min(1, 2 * lo), hi: max(min(1, 2 * lo), hi)}
    assert [c["p_holm"] for c in comps] == pytest.approx([holm[x] for x in p])
    assert comps[1]["verdict"] == "worse" and comps[1]["diff"] == pytest.approx(-0.2 + 0.0)
    assert comps[0]["verdict"] == "no difference shown"
    # Two vectors: reported, not tested, and said so.
    two = {k: [r for r in v if r["from_seed"] < 2] for k, v in rows.items()}
    c = cross_comparisons({"t": two})[1]
    assert c["p"] is None and c["p_holm"] is None and c["verdict"] == "not tested (n = 2 < 3)"


def test_multitask_cost_counts_the_sources_unless_joint_starts_from_the_origin():
    from tpv.experiments.report import _cost

    sources = {("a", 0): {"steps": 300, "seconds": 1000.0},
               ("b", 0): {"steps": 200, "seconds": 500.0}}  # fmt: skip
    base = {"tasks": ["a", "b"], "origin_seed": 0, "seconds": 50.0}
    assert _cost(base | {"method": "sum"}, sources) == (500, 1550.0)
    joint = base | {"method": "joint(init=origin,steps=300)", "fit": {"steps": 300}}
    assert _cost(joint, sources) == (300, 50.0)
    from_sum = base | {"method": "joint(steps=100)", "fit": {"steps": 100}}
    assert _cost(from_sum, sources) == (600, 1550.0)
    assert _cost(base | {"method": "sum", "origin_seed": 1}, sources) == (None, None)


def test_the_study_config_runs_every_arm_and_keeps_the_old_rows():
    cfg = ExperimentConfig.load(Path(__file__).parent.parent / "configs" / "study.toml")
    runner = Runner(cfg)
    got = _hashes(runner)
    # The job counts its COST comment gives.
    assert {s: len(v) for s, v in got.items()} == {
        "floors": 4, "sources": 12, "cross_origin": 60, "similarity": 1, "multitask": 12,
        "fewshot": 75,
    }  # fmt: skip
    assert "attempt:rotten_tomatoes+tweets3" in cfg.inits_for("amazon_polarity")
    assert cfg.fewshot_selection == ["validation", "none"] and cfg.cross_controls
    joint = [m for m in cfg.multitask_methods if m["method"] == "joint"]
    assert sorted(m["steps"] for m in joint) == [100, cfg.train["max_steps"]]
    # Every job of the config before the arms is still there. Their hashes changed once, on
    # purpose, before any row was recorded: the sources' cap went from 300 to 600 steps (the
    # frozen copy keeps its own: test_configs_without_the_new_sections_keep_their_job_hashes).
    before = json.loads((FIXTURES / "hashes.json").read_text())["study-before-16"]
    for stage in STAGES:
        assert set(before[stage]) <= set(got[stage]), stage
