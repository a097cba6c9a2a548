"""ATTEMPT (tpv.attempt): the per-input mixture of frozen source prompts and a trained target
prompt, on tiny models built from configs."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tpv.attempt import AttemptPrompt, build, is_attempt, load_attempt
from tpv.data import Encoder, collate
from tpv.evaluate import Evaluator
from tpv.prompted import PromptedModel
from tpv.testing import keyword_task, tiny_llama, tiny_t5
from tpv.train import TrainConfig, train
from tpv.vectors import FormatError, SoftPrompt, load

P = 6


@pytest.fixture(scope="module")
def llama():
    return tiny_llama()


def _sources(backbone, tmp_path, seeds=(11, 12), tokens=P):
    """Source prompt files (random prompts stand in for tuned ones where training is not the
    point)."""
    paths = []
    for s in seeds:
        o = backbone.make_origin(tokens, seed=s)
        p = SoftPrompt(o.tensor, o.model, name=f"src{s}", tasks=(f"task{s}",))
        paths.append(str(p.save(tmp_path / f"src{s}.safetensors")))
    return paths


def _mixture(backbone, tmp_path, **kw) -> AttemptPrompt:
    origin = backbone.make_origin(P, seed=0)
    start = SoftPrompt(origin.tensor, origin.model, name="origin", origin_id=origin.id)
    return build(_sources(backbone, tmp_path), start, origin, **kw)


def _batch(backbone, n=4, with_answer=True):
    task = keyword_task(n_train=n)
    enc = Encoder(backbone, task)
    items = enc.encode_all(task.split("train")[:n])
    return collate(
        items, int(backbone.tokenizer.pad_token_id), backbone.is_encoder_decoder, with_answer
    )


# --- the mixture ------------------------------------------------------------------------------
@settings(max_examples=25, deadline=None)
@given(
    j=st.integers(1, 4),
    b=st.integers(1, 5),
    t=st.integers(1, 7),
    seed=st.integers(0, 2**16),
    scale=st.floats(0.01, 50.0),
)
def test_mixture_weights_sum_to_one_per_input(j, b, t, seed, scale):
    g = torch.Generator().manual_seed(seed)
    d = 16
    mix = AttemptPrompt(
        torch.randn(j, 3, d, generator=g) * scale,
        torch.randn(3, d, generator=g),
        model="m",
        seed=seed,
    )
    emb = torch.randn(b, t, d, generator=g) * scale
    mask = torch.ones(b, t, dtype=torch.long)
    mask[:, : t // 2] = 0 if t > 1 else 1  # left padding, at least one real token
    a = mix.weights(emb, mask)
    assert a.shape == (b, j + 1)
    assert torch.all(a >= 0)
    assert torch.allclose(a.sum(-1), torch.ones(b), atol=1e-5)
    # The prompt is the target plus the weighted candidates, per input.
    expected = mix.target + torch.einsum("bj,jpd->bpd", a, mix.candidates())
    assert torch.allclose(mix(emb, mask), expected, atol=1e-5)


def test_padding_and_answer_tokens_do_not_change_the_prompt():
    d = 8
    mix = AttemptPrompt(torch.randn(2, 3, d), torch.randn(3, d), model="m", seed=1)
    emb = torch.randn(1, 5, d)
    mask = torch.ones(1, 5, dtype=torch.long)
    # Huge values in masked positions (padding, an answer) must not move the max-pool.
    noisy = emb.clone()
    noisy[0, 0] = 1e4
    mask_noisy = mask.clone()
    mask_noisy[0, 0] = 0
    assert torch.equal(mix(emb[:, 1:], mask[:, 1:]), mix(noisy, mask_noisy))
    # The decoder training rows end with the answer: its pool mask leaves it out.
    labels = torch.tensor([[-100, 7, 8]])
    pool = PromptedModel._input_only(torch.ones(1, 6, dtype=torch.long), labels)
    assert pool.tolist() == [[1, 1, 1, 1, 0, 0]]


@pytest.mark.parametrize("arch", ["llama", "t5"])
def test_gradients_reach_only_the_target_and_the_attention_module(tmp_path, arch):
    backbone = {"llama": tiny_llama, "t5": tiny_t5}[arch]()
    mix = _mixture(backbone, tmp_path)
    model = PromptedModel(backbone, mix)
    assert not model.can_share_prefix  # the prompt differs per row
    batch = _batch(backbone)
    model(batch.input_ids, batch.attention_mask, batch.labels).mean().backward()
    trained = {n for n, p in model.named_parameters() if p.grad is not None}
    assert trained == {
        "prompt",  # the target prompt, registered once (it is prompt_module.target)
        "prompt_module.down.weight",
        "prompt_module.up.weight",
        "prompt_module.norm.weight",
        "prompt_module.norm.bias",
    }
    for n, p in model.named_parameters():
        if p.grad is not None:
            assert p.grad.abs().sum() > 0, n
    assert not mix.sources.requires_grad and mix.sources.grad is None
    assert all(not p.requires_grad for p in backbone.model.parameters())
    groups = model.param_groups(0.3, 0.01)
    assert [g["lr"] for g in groups] == [0.3, 0.01]
    assert sum(p.numel() for g in groups for p in g["params"]) == sum(
        p.numel() for p in mix.parameters()
    )


@pytest.mark.parametrize("arch", ["llama", "t5"])
def test_one_source_with_pinned_attention_is_that_source_exactly(tmp_path, arch):
    backbone = {"llama": tiny_llama, "t5": tiny_t5}[arch]()
    source = backbone.make_origin(P, seed=5).tensor * 2
    mix = AttemptPrompt(source[None], torch.zeros_like(source), model=backbone.name)
    mix.pin([1.0, 0.0])  # all weight on the source; the target (added too) is zero
    emb = torch.randn(3, 4, backbone.hidden_size)
    out = mix(emb, torch.ones(3, 4, dtype=torch.long))
    assert all(torch.equal(out[i], source) for i in range(3))
    # ... and the model sees exactly what a plain prompt of that source gives it.
    batch = _batch(backbone, with_answer=False)
    task_labels = [(i,) for i in range(3, 6)]
    mixed = PromptedModel(backbone, mix).score_labels(batch, task_labels)
    plain = PromptedModel(backbone, source).score_labels(batch, task_labels)
    assert torch.equal(mixed, plain)
    with pytest.raises(ValueError, match="sum to 1"):
        mix.pin([0.5, 0.2])
    with pytest.raises(ValueError, match="need 2"):
        mix.pin([1.0])


def test_save_load_round_trip(tmp_path, llama):
    mix = _mixture(llama, tmp_path, temperature=7.5, rank=5, seed=3)
    with torch.no_grad():
        mix.norm.weight.mul_(1.5)
    path = mix.save(tmp_path / "run")
    assert path.name == "attempt.safetensors" and is_attempt(tmp_path / "run")
    back = load_attempt(path)
    assert back.temperature == 7.5 and back.down.out_features == 5
    assert back.source_names == ["task11", "task12"] and back.model_name == llama.name
    for (k, v), (k2, v2) in zip(mix.state_dict().items(), back.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(v, v2), k
    emb = torch.randn(2, 5, llama.hidden_size)
    mask = torch.ones(2, 5, dtype=torch.long)
    assert torch.equal(mix(emb, mask), back(emb, mask))
    meta = json.loads(__import__("safetensors").safe_open(str(path), "pt").metadata()["tpv"])
    assert meta["kind"] == "attempt" and meta["num_sources"] == 2 and len(meta["source_ids"]) == 2


# --- bad input --------------------------------------------------------------------------------
def test_bad_sources_are_refused_naming_the_file(tmp_path, llama):
    origin = llama.make_origin(P, seed=0)
    start = SoftPrompt(origin.tensor, origin.model, name="origin", origin_id=origin.id)
    with pytest.raises(ValueError, match="at least one source"):
        build([], start, origin)
    short = llama.make_origin(P - 2, seed=1)
    short_path = SoftPrompt(short.tensor, short.model).save(tmp_path / "short.safetensors")
    with pytest.raises(ValueError, match=r"short\.safetensors.*shape 4x64"):
        build([str(short_path)], start, origin)
    other = tiny_llama(seed=1, hidden=32)
    o2 = other.make_origin(P)
    foreign = SoftPrompt(o2.tensor, o2.model).save(tmp_path / "foreign.safetensors")
    with pytest.raises(ValueError, match=r"foreign\.safetensors.*tiny-llama-1"):
        build([str(foreign)], start, origin)
    origin_path = origin.save(tmp_path / "o.safetensors")
    with pytest.raises(ValueError, match=r"o\.safetensors.*origin is not"):
        build([str(origin_path)], start, origin)
    with pytest.raises(FileNotFoundError, match="nope"):
        build([str(tmp_path / "nope.safetensors")], start, origin)
    with pytest.raises(ValueError, match="needs at least one source"):
        TrainConfig(task="keyword", method="attempt")
    with pytest.raises(ValueError, match="for --method attempt"):
        TrainConfig(task="keyword", sources=["x"])


def test_corrupt_or_foreign_attempt_files_are_refused(tmp_path, llama):
    path = _mixture(llama, tmp_path).save(tmp_path / "a.safetensors")
    with pytest.raises(FormatError, match=r"a\.safetensors.*ATTEMPT mixture"):
        load(path)  # not a single prompt: tpv.vectors.load says what it is
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(path.read_bytes()[:100])
    with pytest.raises(FormatError, match=r"cut\.safetensors"):
        load_attempt(cut)
    prompt = SoftPrompt(torch.zeros(P, llama.hidden_size), llama.name).save(
        tmp_path / "p.safetensors"
    )
    with pytest.raises(FormatError, match=r"p\.safetensors.*expected 'attempt'"):
        load_attempt(prompt)


def test_peft_export_refuses_an_attempt_run(tmp_path, llama):
    from tpv.peft_io import export_peft

    _mixture(llama, tmp_path).save(tmp_path / "run")
    llama.make_origin(P).save(tmp_path / "run" / "origin.safetensors")
    with pytest.raises(ValueError, match="one prompt per input.*cannot be exported"):
        export_peft(tmp_path / "run", tmp_path / "adapter", backbone=llama)
    assert not (tmp_path / "adapter").exists()
    # Nor does the run directory stand for its origin anywhere a prompt is expected.
    with pytest.raises(FormatError, match="ATTEMPT run"):
        load(tmp_path / "run")


# --- training ---------------------------------------------------------------------------------
def test_attempt_learns_a_synthetic_task(tmp_path, llama):
    # One architecture (the T5 path is the same code after the prompt, see the gradient test):
    # 120 steps on two cores are already the slowest fast test.
    backbone = llama
    task = keyword_task(n_train=128, n_val=64, n_test=64)
    cfg = TrainConfig(
        task="keyword",
        out=str(tmp_path / "run"),
        num_tokens=8,
        max_steps=120,
        batch_size=16,
        eval_every=20,
        lr=0.3,
        test_init=True,
        method="attempt",
        sources=_sources(backbone, tmp_path, tokens=8),
    )
    m = train(cfg, backbone=backbone, task=task, progress=False)
    assert m.best_val > m.init_val + 0.15
    assert m.test["score"] > m.init_test["score"]
    losses = [
        r["loss"] for r in map(json.loads, (tmp_path / "run" / "log.jsonl").open()) if "loss" in r
    ]
    assert sum(losses[-20:]) / 20 < sum(losses[:20]) / 20
    run = tmp_path / "run"
    assert (run / "attempt.safetensors").is_file() and (run / "origin.safetensors").is_file()
    assert not (run / "prompt.safetensors").exists()  # no single prompt to pretend with
    assert set(m.attention) == {"task11", "task12", "target"}
    assert sum(m.attention.values()) == pytest.approx(1.0, abs=1e-5)
    # The saved mixture scores what training reported on test.
    again = Evaluator(backbone, task, task.split("test"))(load_attempt(run))
    assert again["score"] == pytest.approx(m.test["score"])
    assert m.method == "attempt" and m.vector_norm is None and m.target_shift_norm > 0


def test_attempt_resume_continues_the_same_run(tmp_path, llama, monkeypatch):
    import importlib

    task = keyword_task(n_train=64, n_val=16, n_test=16)
    kw = dict(
        task="keyword",
        num_tokens=P,
        max_steps=8,
        batch_size=8,
        eval_every=4,
        method="attempt",
        sources=_sources(llama, tmp_path),
    )
    whole = train(
        TrainConfig(out=str(tmp_path / "a"), **kw), backbone=llama, task=task, progress=False
    )
    # Kill the run after its first checkpoint (step 4); --resume continues it (tpv.rundir).
    T = importlib.import_module("tpv.train")  # the module (tpv.train is the function)
    real_save = T._save_checkpoint

    def crash_after_first(*args, **kwargs):
        real_save(*args, **kwargs)
        raise KeyboardInterrupt("simulated kill")

    monkeypatch.setattr(T, "_save_checkpoint", crash_after_first)
    with pytest.raises(KeyboardInterrupt):
        train(TrainConfig(out=str(tmp_path / "b"), **kw), backbone=llama, task=task, progress=False)
    monkeypatch.setattr(T, "_save_checkpoint", real_save)
    resumed = train(
        TrainConfig(out=str(tmp_path / "b"), **kw),
        backbone=llama,
        task=task,
        resume=True,
        progress=False,
    )
    assert resumed.steps == 8 and resumed.test["score"] == whole.test["score"]
    a, b = load_attempt(tmp_path / "a"), load_attempt(tmp_path / "b")
    for k, v in a.state_dict().items():
        assert torch.allclose(v, b.state_dict()[k], atol=1e-6), k


def test_weights_are_reported_under_unique_names():
    mix = AttemptPrompt(
        torch.randn(3, 2, 4), torch.randn(2, 4), model="m", source_names=["a", "a", "target"]
    )
    assert mix.candidate_names == ["a", "a#2", "target (source)", "target"]


# --- where an init runs: the experiment runner and the command line ----------------------------
def test_attempt_in_the_fewshot_stage_of_the_runner(tmp_path, llama):
    from tpv.experiments import ExperimentConfig, Runner, build_report

    tasks = {
        "kw": lambda: keyword_task(name="kw", n_train=32, n_val=8, n_test=16),
        "kw_flip": lambda: keyword_task(name="kw_flip", n_train=32, n_val=8, n_test=16, flip=True),
        "kw_target": lambda: keyword_task(name="kw_target", n_train=32, n_val=8, n_test=16, seed=2),
    }
    cfg = ExperimentConfig.from_dict(
        {
            "experiment": {
                "name": "tiny-attempt",
                "out": str(tmp_path),
                "num_tokens": 4,
                "sources": ["kw", "kw_flip"],
                "eval_examples": 8,
            },
            "train": {"max_steps": 4, "batch_size": 8, "eval_every": 2},
            "cross_origin": {"enabled": False},
            "fewshot": {
                "targets": ["kw_target"],
                "shots": [0, 2],
                "inits": ["random", "attempt:kw+kw_flip"],
                "train": {"max_steps": 2, "batch_size": 4, "eval_every": 1, "attempt_rank": 8},
            },
        }
    )
    runner = Runner(cfg, backbone=llama, get_task=lambda n: tasks[n]())
    runner.run()
    zero = json.loads(
        (tmp_path / "rows/fewshot/kw_target__k0__s0__attempt-kw+kw_flip.json").read_text()
    )
    assert set(zero["attention"]) == {"kw", "kw_flip", "target"}
    assert sum(zero["attention"].values()) == pytest.approx(1.0, abs=1e-5)
    assert 0 <= zero["test"] <= 1 and "accuracy" in zero["metrics"]
    tuned = json.loads(
        (tmp_path / "rows/fewshot/kw_target__k2__s0__attempt-kw+kw_flip.json").read_text()
    )
    mix = load_attempt(tuned["run_dir"])
    assert mix.down.out_features == 8 and mix.source_names == ["kw", "kw_flip"]
    # The sources are the tuned prompts of the sources stage, frozen bit for bit.
    rt = load(tmp_path / "runs/sources/kw__o0/prompt.safetensors")
    assert torch.equal(mix.sources[0], rt.tensor)
    report = build_report(tmp_path, plots=False).read_text()
    assert "attempt:kw+kw_flip" in report
    with pytest.raises(Exception, match="attempt:A\\+B names its source"):
        ExperimentConfig.from_dict(
            {
                "experiment": {"name": "x", "out": "o", "sources": ["kw"]},
                "fewshot": {"targets": ["t"], "inits": ["attempt"]},
            }
        )


@pytest.mark.parametrize("name", ["offline", "paper-t5", "paper-llama", "attempt-offline"])
def test_shipped_configs_name_attempt(name):
    from pathlib import Path

    from tpv.experiments import ExperimentConfig, Runner

    cfg = ExperimentConfig.load(Path(__file__).parent.parent / "configs" / f"{name}.toml")
    jobs = [j for j in Runner(cfg).jobs("fewshot") if j.params["init"].startswith("attempt:")]
    assert jobs and all(j.params["init"].partition(":")[2] for j in jobs)


def test_attempt_from_the_command_line(tmp_path):
    from typer.testing import CliRunner

    from tpv.cli import app

    model_dir = tmp_path / "model"
    b = tiny_llama()
    b.model.save_pretrained(model_dir)
    b.tokenizer.save_pretrained(model_dir)
    task = keyword_task(n_train=24)
    rows = [ex for split in ("train", "validation", "test") for ex in task.split(split)]
    csv = tmp_path / "kw.csv"
    csv.write_text("sentence,answer\n" + "".join(f"{e.fields['text']},{e.label}\n" for e in rows))
    data = ["--task", str(csv), "--text-column", "sentence", "--label-column", "answer"]
    data += ["--label-word", "0=yes", "--label-word", "1=no", "--model", str(model_dir)]
    common = ["--tokens", "4", "--steps", "2", "--eval-every", "2", "--eval-examples", "8"]
    cli = CliRunner()

    def ok(args):
        r = cli.invoke(app, args, catch_exceptions=False)
        assert r.exit_code == 0, r.output
        return r

    ok(["train", *data, *common, "--out", str(tmp_path / "src")])
    ok(
        ["train", *data, *common, "--method", "attempt", "--source", str(tmp_path / "src")]
        + ["--attempt-rank", "8", "--attempt-lr", "0.01", "--out", str(tmp_path / "att")]
    )
    metrics = json.loads((tmp_path / "att" / "metrics.json").read_text())
    assert metrics["method"] == "attempt" and len(metrics["attention"]) == 2
    assert "target" in metrics["attention"]
    res = json.loads(ok(["eval", *data, "--prompt", str(tmp_path / "att"), "--json"]).stdout)
    assert res["score"] == pytest.approx(metrics["test"]["score"])
    refused = cli.invoke(
        app, ["peft", "export", str(tmp_path / "att"), "--out", str(tmp_path / "ad")]
    )
    assert refused.exit_code != 0 and not (tmp_path / "ad").exists()


# --- the embedded model -----------------------------------------------------------------------
@pytest.mark.slow
def test_attempt_on_the_embedded_model(tmp_path):
    from tpv.backbone import Backbone
    from tpv.tasks import get_task

    backbone = Backbone.load()
    common = dict(
        num_tokens=20, batch_size=8, eval_examples=32, test_examples=48, max_input_tokens=128
    )
    rt = get_task("rotten_tomatoes")
    train(
        TrainConfig(task=rt.name, out=str(tmp_path / "rt"), max_steps=10, eval_every=10, **common),
        backbone=backbone,
        task=rt,
        progress=False,
    )
    amazon = get_task("amazon_polarity")
    m = train(
        TrainConfig(
            task=amazon.name,
            out=str(tmp_path / "att"),
            max_steps=6,
            eval_every=3,
            shots=8,
            test_init=True,
            method="attempt",
            sources=[str(tmp_path / "rt"), str(tmp_path / "rt" / "vector.safetensors")],
            **common,
        ),
        backbone=backbone,
        task=amazon,
        progress=False,
    )
    assert m.steps == 6 and m.test["n"] == 48
    assert set(m.attention) == {"rotten_tomatoes", "rotten_tomatoes#2", "target"}
    assert sum(m.attention.values()) == pytest.approx(1.0, abs=1e-5)
    mix = load_attempt(tmp_path / "att")
    rows = amazon.split("test")
    from tpv.tasks.fewshot import subsample

    ev = Evaluator(backbone, amazon, subsample(rows, 48), max_input_tokens=128)
    assert ev(mix)["score"] == pytest.approx(m.test["score"])
    # All weight on the first source and a zero target: the SPoT prompt exactly, through the
    # chat template. The plain prompt's evaluation shares the template's KV cache across a
    # batch (the mixture cannot), which may reorder float sums: allow one answer of 48 to flip.
    source = load(tmp_path / "rt" / "prompt.safetensors")
    with torch.no_grad():
        mix.target.zero_()
    mix.pin([1.0, 0.0, 0.0])
    pinned, spot = ev(mix), ev(source)
    assert abs(pinned["accuracy"] - spot["accuracy"]) <= 1 / 48 + 1e-9
