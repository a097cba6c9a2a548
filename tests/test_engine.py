"""Prompt tuning and evaluation on tiny random Llama and T5 models built from configs."""

from __future__ import annotations

import pytest
import torch

from tpv.data import Encoder, collate
from tpv.evaluate import Evaluator
from tpv.prompted import PromptedModel
from tpv.testing import keyword_task, tiny_llama, tiny_t5
from tpv.train import TrainConfig, train
from tpv.vectors import SoftPrompt, TaskPromptVector, load

BACKBONES = {"llama": tiny_llama, "t5": tiny_t5}
# A ChatML-like template: every input then opens with the same tokens, as with real chat models.
CHAT = (
    "{% for m in messages %}<s> {{ m.role }} : {{ m.content }} </s> {% endfor %}"
    "{% if add_generation_prompt %}<s> maybe : {% endif %}"
)


def _cfg(tmp_path, **kw) -> TrainConfig:
    base = dict(
        task="keyword",
        out=str(tmp_path / "run"),
        num_tokens=8,
        max_steps=120,
        batch_size=16,
        eval_every=20,
        lr=0.3,
        test_init=True,
    )
    return TrainConfig(**(base | kw))


@pytest.mark.parametrize("arch", ["llama", "t5"])
def test_tuned_prompt_beats_its_origin(tmp_path, arch):
    backbone = BACKBONES[arch]()
    task = keyword_task(n_train=128, n_val=64, n_test=64)
    m = train(_cfg(tmp_path), backbone=backbone, task=task, progress=False)
    assert m.best_val > m.init_val + 0.15
    assert m.test["score"] > m.init_test["score"]
    # The run directory holds everything needed to rebuild the result.
    run = tmp_path / "run"
    for name in ("origin", "prompt", "vector"):
        assert (run / f"{name}.safetensors").is_file()
    tuned, vector, origin = (
        load(run / "prompt.safetensors"),
        load(run / "vector.safetensors"),
        load(run / "origin.safetensors"),
    )
    assert torch.equal(vector.apply(origin).tensor, tuned.tensor)
    assert (
        (run / "metrics.json").is_file()
        and (run / "config.json").is_file()
        and (run / "log.jsonl").is_file()
    )


@pytest.mark.parametrize("arch", ["llama", "t5"])
def test_gradients_reach_only_the_prompt(arch):
    backbone = BACKBONES[arch]()
    task = keyword_task()
    enc = Encoder(backbone, task)
    model = PromptedModel(backbone, backbone.make_origin(4).tensor)
    batch = collate(
        enc.encode_all(task.split("train")[:4]), model.pad_id, backbone.is_encoder_decoder
    )
    model(batch.input_ids, batch.attention_mask, batch.labels).mean().backward()
    assert model.prompt.grad is not None and model.prompt.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in backbone.model.parameters())


@pytest.mark.parametrize("arch", ["llama", "t5"])
def test_loss_ignores_padding(arch):
    """An example's loss is the same alone and padded inside a batch of longer rows."""
    backbone = BACKBONES[arch]()
    task = keyword_task(length=4)
    long_task = keyword_task(length=12, seed=1)
    enc, long_enc = Encoder(backbone, task), Encoder(backbone, long_task)
    short = enc.encode(task.split("train")[0])
    longs = long_enc.encode_all(long_task.split("train")[:3])
    model = PromptedModel(backbone, backbone.make_origin(4, seed=3).tensor)
    seq2seq = backbone.is_encoder_decoder
    alone = collate([short], model.pad_id, seq2seq)
    mixed = collate([short, *longs], model.pad_id, seq2seq)
    assert mixed.attention_mask[0].sum() < mixed.attention_mask.shape[1]  # really padded
    with torch.no_grad():
        a = model(alone.input_ids, alone.attention_mask, alone.labels)[0]
        b = model(mixed.input_ids, mixed.attention_mask, mixed.labels)[0]
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_decoder_label_logits_only_match_full_forward():
    """Computing logits only at the answer positions gives the full forward's numbers."""
    backbone = tiny_llama()
    task = keyword_task()
    enc = Encoder(backbone, task)
    model = PromptedModel(backbone, backbone.make_origin(4).tensor)
    items = enc.encode_all(task.split("train")[:3])
    batch = collate(items, model.pad_id, False)
    loss = model(batch.input_ids, batch.attention_mask, batch.labels)
    for i, it in enumerate(items):
        ids = torch.tensor([it.input_ids + it.target_ids])
        x = torch.cat([model.prompt[None], backbone.model.get_input_embeddings()(ids)], 1)
        logits = backbone.model(inputs_embeds=x).logits[0]
        k = len(it.target_ids)
        ref = torch.nn.functional.cross_entropy(logits[-k - 1 : -1], torch.tensor(it.target_ids))
        torch.testing.assert_close(loss[i], ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("arch", ["llama", "t5"])
def test_rank_and_generation_agree(tmp_path, arch):
    """Where greedy generation produces a label word, rank classification picks the same one;
    after tuning, generation produces valid labels."""
    backbone = BACKBONES[arch]()
    task = keyword_task(n_train=128)
    train(
        _cfg(tmp_path, max_steps=150, test_init=False), backbone=backbone, task=task, progress=False
    )
    prompt = load(tmp_path / "run" / "prompt.safetensors")
    rows = task.split("test")
    rank = Evaluator(backbone, task, rows, scorer="rank")
    gen = Evaluator(backbone, task, rows, scorer="generate", max_new_tokens=4)
    model = PromptedModel(backbone, prompt.tensor)
    from tpv.data import batches

    agree = valid = 0
    for _, batch in batches(rank.items, 8, model.pad_id, backbone.is_encoder_decoder):
        ranked = model.score_labels(batch, rank.encoder.label_ids).argmax(-1).tolist()
        texts = rank.encoder.tok.batch_decode(model.generate(batch, 4), skip_special_tokens=True)
        for r, t in zip(ranked, texts, strict=True):
            g = gen._match(t)
            if g >= 0:
                valid += 1
                agree += g == r
    assert valid >= len(rows) // 2
    assert agree == valid
    assert gen(prompt)["invalid"] == len(rows) - valid


def test_resume_reproduces_uninterrupted_run(tmp_path, monkeypatch):
    backbone, task = tiny_llama(), keyword_task(n_train=64)
    cfg = dict(max_steps=40, eval_every=10, batch_size=8, test_init=False)
    train(_cfg(tmp_path / "a", **cfg), backbone=backbone, task=task, progress=False)

    import importlib

    T = importlib.import_module("tpv.train")  # the module (tpv.train is the function)

    real_save = T._save_checkpoint
    calls = {"n": 0}

    def crash_after_second(*args, **kwargs):
        real_save(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("simulated kill")

    monkeypatch.setattr(T, "_save_checkpoint", crash_after_second)
    with pytest.raises(KeyboardInterrupt):
        train(_cfg(tmp_path / "b", **cfg), backbone=backbone, task=task, progress=False)
    monkeypatch.setattr(T, "_save_checkpoint", real_save)
    m = train(
        _cfg(tmp_path / "b", **cfg), backbone=backbone, task=task, resume=True, progress=False
    )
    a, b = (
        load(tmp_path / "a" / "run" / "prompt.safetensors"),
        load(tmp_path / "b" / "run" / "prompt.safetensors"),
    )
    assert torch.equal(a.tensor, b.tensor)
    assert m.steps == 40
    steps = [
        __import__("json").loads(x)["step"]
        for x in (tmp_path / "b" / "run" / "log.jsonl").read_text().splitlines()
    ]
    assert steps == sorted(steps)  # no duplicated rows from the interrupted part


def test_init_from_vectors_and_prompt(tmp_path):
    backbone, task = tiny_llama(), keyword_task(n_train=64)
    train(
        _cfg(tmp_path / "src", max_steps=30, test_init=False),
        backbone=backbone,
        task=task,
        progress=False,
    )
    vec = tmp_path / "src" / "run" / "vector.safetensors"
    m = train(
        _cfg(tmp_path / "tgt", max_steps=0, init=[str(vec)], test_init=True),
        backbone=backbone,
        task=task,
        progress=False,
    )
    v, origin = load(vec), backbone.make_origin(8)
    assert isinstance(v, TaskPromptVector)
    start = v.apply(origin)
    tuned = load(tmp_path / "tgt" / "run" / "prompt.safetensors")
    assert torch.equal(tuned.tensor, start.tensor)  # 0 steps: the initialisation itself
    assert m.init == start.name
    prompt_file = tmp_path / "src" / "run" / "prompt.safetensors"
    m2 = train(
        _cfg(tmp_path / "spot", max_steps=0, init=[str(prompt_file)]),
        backbone=backbone,
        task=task,
        progress=False,
    )
    assert isinstance(load(prompt_file), SoftPrompt) and m2.init_val == m2.best_val
    with pytest.raises(ValueError, match="either one prompt or any vectors"):
        train(
            _cfg(tmp_path / "bad", init=[str(prompt_file), str(vec)]),
            backbone=backbone,
            task=task,
            progress=False,
        )


def test_init_by_library_name(tmp_path, monkeypatch):
    """Names are resolved by the caller (the CLI, or tpv.resolve.resolve_path in Python):
    train() itself takes paths and never reaches up into the library."""
    from tpv.io import FormatError
    from tpv.library import Library
    from tpv.resolve import resolve_path

    monkeypatch.setenv("TPV_LIBRARY", str(tmp_path / "lib"))
    backbone, task = tiny_llama(), keyword_task(n_train=32)
    train(
        _cfg(tmp_path / "src", max_steps=5, test_init=False),
        backbone=backbone,
        task=task,
        progress=False,
    )
    Library().add(tmp_path / "src" / "run" / "vector.safetensors", name="kw-vec")
    m = train(
        _cfg(tmp_path / "tgt", max_steps=0, init=[str(resolve_path("kw-vec"))]),
        backbone=backbone,
        task=task,
        progress=False,
    )
    assert m.init == "keyword"
    with pytest.raises(FileNotFoundError, match="no-such-vector"):
        resolve_path("no-such-vector")
    with pytest.raises(FormatError, match="kw-vec: no such file"):
        train(_cfg(tmp_path / "bad", init=["kw-vec"]), backbone=backbone, task=task)


def test_cached_label_scoring_matches_full_rows():
    """Multi-token labels scored from a shared KV cache equal scoring each pair as a full row."""
    from dataclasses import replace

    backbone = tiny_llama()
    task = replace(keyword_task(length=5), labels=("yes", "no and maybe"), _splits=None)
    short = keyword_task(length=2, seed=3)
    enc = Encoder(backbone, task)
    items = enc.encode_all(task.split("test")[:3] + short.split("test")[:2])
    model = PromptedModel(backbone, backbone.make_origin(4, seed=1).tensor)
    batch = collate(items, model.pad_id, False, with_answer=False)
    assert batch.attention_mask.sum(1).unique().numel() > 1  # rows of different lengths
    assert [len(x) for x in enc.label_ids] == [1, 3]
    cached = model.score_labels(batch, enc.label_ids)
    full = model._score_expanded(batch, enc.label_ids)
    torch.testing.assert_close(cached, full, rtol=1e-4, atol=1e-4)


def test_shared_prefix_gives_the_same_loss_gradient_and_scores():
    """Running [prompt][common prefix] once per batch is an optimisation, not a change."""
    backbone = tiny_llama(chat_template=CHAT)
    task = keyword_task(length=5)
    enc = Encoder(backbone, task)
    items = enc.encode_all(
        task.split("train")[:3] + keyword_task(length=8, seed=4).split("train")[:2]
    )
    shared = collate(items, 0, False, share_prefix=True)
    plain = collate(items, 0, False)
    assert shared.prefix_ids.numel() >= 3  # the chat template's opening is common to all rows
    grads, losses = [], []
    for batch in (plain, shared):
        model = PromptedModel(backbone, backbone.make_origin(4, seed=2).tensor)
        loss = model(batch.input_ids, batch.attention_mask, batch.labels, batch.prefix_ids)
        loss.mean().backward()
        losses.append(loss.detach())
        grads.append(model.prompt.grad)
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-3, atol=1e-5)
    model = PromptedModel(backbone, backbone.make_origin(4, seed=2).tensor)
    for labels in (enc.label_ids, [(enc.label_ids[0][0],), enc.label_ids[1] + enc.label_ids[0]]):
        a = model.score_labels(collate(items, 0, False, False, share_prefix=True), labels)
        b = model.score_labels(collate(items, 0, False, False), labels)
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_a_prompt_for_another_model_is_refused_by_the_evaluator():
    from tpv.vectors import IncompatibleError

    backbone, task = tiny_llama(), keyword_task(n_val=4)
    ev = Evaluator(backbone, task, task.split("validation"))
    foreign = tiny_llama(seed=1).make_origin(4, 0).as_prompt()
    with pytest.raises(
        IncompatibleError, match="made for model 'tiny-llama-1', not 'tiny-llama-0'"
    ):
        ev(foreign)
    assert 0 <= ev(backbone.make_origin(4, 0))["score"] <= 1  # its own model's: scored
