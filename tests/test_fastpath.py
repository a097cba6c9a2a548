"""The fast path (packed rows, LM head as one matmul) computes what the plain path computes.

Tolerance: float32 rounding. One forward/backward: losses within 1e-5 absolute, gradients within
1e-4 relative; after 60 training steps at lr 0.3 the prompts agree within 1e-3 absolute (Adam
divides by a running gradient norm, so rounding grows a little with every step) and score the
same on validation and test. bf16 weights (the CPU default where the CPU has native bf16) are
checked on the embedded model (slow), within a stated score tolerance.
"""

from __future__ import annotations

import os
from dataclasses import replace

import pytest
import torch

from tpv import fastpath, packing
from tpv.data import Encoder, collate
from tpv.packing import pack_rows, worth_packing
from tpv.prompted import PromptedModel
from tpv.testing import keyword_task, tiny_gemma3, tiny_llama
from tpv.train import TrainConfig, train
from tpv.vectors import load

CHAT = (
    "{% for m in messages %}<s> {{ m.role }} : {{ m.content }} </s> {% endfor %}"
    "{% if add_generation_prompt %}<s> maybe : {% endif %}"
)


def _items(backbone, labels=None):
    task = keyword_task(length=5)
    if labels:
        task = replace(task, labels=labels, _splits=None)
    enc = Encoder(backbone, task)
    rows = task.split("train")[:4] + keyword_task(length=9, seed=4).split("train")[:3]
    return enc, enc.encode_all(rows)


def _loss_and_grad(backbone, batch, fast: bool):
    with fastpath.forced(fast):
        model = PromptedModel(backbone, backbone.make_origin(4, seed=2).tensor)
        loss = model(batch.input_ids, batch.attention_mask, batch.labels, batch.prefix_ids)
        loss.mean().backward()
        return loss.detach(), model.prompt.grad


def _train_on_both_paths(tmp_path, backbone_for, data=None, **cfg) -> tuple:
    """(plain, fast) TrainResults of the same config, with `backbone_for()` loaded inside each
    path (so a loaded model takes that path's default dtype); `data`: a Task object to train on."""
    results = []
    for fast in (False, True):
        with fastpath.forced(fast):
            out = str(tmp_path / f"fast-{fast}")
            c = TrainConfig(out=out, **cfg)
            results.append(train(c, backbone=backbone_for(), task=data, progress=False))
    return tuple(results)


@pytest.mark.parametrize("make", [tiny_llama, tiny_gemma3], ids=["llama", "gemma3"])
@pytest.mark.parametrize(
    "labels", [None, ("yes", "no and maybe")], ids=["one-token", "multi-token"]
)
def test_packed_rows_give_the_loss_and_gradient_of_padded_rows(make, labels):
    backbone = make(chat_template=CHAT)
    _, items = _items(backbone, labels)
    batch = collate(items, backbone.tokenizer.pad_token_id, False, share_prefix=True)
    assert worth_packing(batch.attention_mask)  # rows of 3 different lengths: padding to save
    plain_loss, plain_grad = _loss_and_grad(backbone, batch, fast=False)
    fast_loss, fast_grad = _loss_and_grad(backbone, batch, fast=True)
    torch.testing.assert_close(fast_loss, plain_loss, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fast_grad, plain_grad, rtol=1e-4, atol=1e-6)


def test_a_sliding_window_shorter_than_the_rows_keeps_them_padded():
    """The packed mask has no window: where the window would cut a row, the rows stay padded
    (and so the fast path still computes what the plain path does)."""
    backbone = tiny_gemma3(window=8, chat_template=CHAT)
    _, items = _items(backbone)
    batch = collate(items, backbone.tokenizer.pad_token_id, False, share_prefix=True)
    n = 4 + batch.prefix_ids.numel()
    assert not worth_packing(batch.attention_mask, n, 8)
    assert worth_packing(batch.attention_mask, n, 64)
    plain_loss, _ = _loss_and_grad(backbone, batch, fast=False)
    fast_loss, _ = _loss_and_grad(backbone, batch, fast=True)
    torch.testing.assert_close(fast_loss, plain_loss, rtol=1e-5, atol=1e-5)


def test_packed_label_scores_match_padded():
    backbone = tiny_llama(chat_template=CHAT)
    enc, items = _items(backbone)
    model = PromptedModel(backbone, backbone.make_origin(4, seed=1).tensor)
    batch = collate(items, model.pad_id, False, with_answer=False, share_prefix=True)
    with fastpath.plain():
        plain = model.score_labels(batch, enc.label_ids)
    fast = model.score_labels(batch, enc.label_ids)
    torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-5)


def test_pack_rows_layout():
    """Three left-padded rows of lengths 2, 3, 1 behind a 2-token prefix."""
    ids = torch.tensor([[0, 5, 6], [7, 8, 9], [0, 0, 4]])
    mask = torch.tensor([[0, 1, 1], [1, 1, 1], [0, 0, 1]])
    p = pack_rows(ids, mask, keep=2, prefix_len=2, dtype=torch.float32)
    assert p.ids.tolist() == [[5, 6, 7, 8, 9, 4]]
    assert p.positions.tolist() == [[2, 3, 2, 3, 4, 2]]
    # Row 3 (one token) lacks a second kept slot: it repeats its own first position.
    assert p.keep_index.tolist() == [0, 1, 3, 4, 5, 5]
    allowed = (p.mask[0, 0] == 0).int()
    assert allowed.tolist() == [
        [1, 1, 1, 0, 0, 0, 0, 0],
        [1, 1, 1, 1, 0, 0, 0, 0],
        [1, 1, 0, 0, 1, 0, 0, 0],
        [1, 1, 0, 0, 1, 1, 0, 0],
        [1, 1, 0, 0, 1, 1, 1, 0],
        [1, 1, 0, 0, 0, 0, 0, 1],
    ]


def test_packing_only_where_it_pays_and_never_on_the_plain_path():
    ragged = torch.tensor([[0, 0, 1], [1, 1, 1]])
    assert worth_packing(ragged)
    assert not worth_packing(torch.ones(4, 9, dtype=torch.long))  # no padding to save
    assert not worth_packing(ragged[:1])  # one row: nothing to pack
    assert not worth_packing(ragged.to("meta"))  # measured on CPU only: off elsewhere
    with fastpath.plain():
        assert not worth_packing(ragged)
    assert worth_packing(ragged)


def test_the_switch_follows_the_environment(monkeypatch):
    monkeypatch.setenv("TPV_FAST_PATH", "0")
    assert not fastpath.enabled()
    with fastpath.forced(True):
        assert fastpath.enabled()
    assert not fastpath.enabled()
    monkeypatch.setenv("TPV_FAST_PATH", "1")
    assert fastpath.enabled()


def test_the_cli_plain_flag_turns_the_fast_path_off(monkeypatch):
    from typer.testing import CliRunner

    from tpv.cli import app

    monkeypatch.setenv("TPV_FAST_PATH", "1")
    try:
        result = CliRunner().invoke(app, ["--plain", "tasks", "list"])
        assert result.exit_code == 0, result.output
        assert not fastpath.enabled()
        assert os.environ["TPV_FAST_PATH"] == "0"
    finally:
        fastpath.set_enabled(None)


def test_training_on_the_fast_path_reaches_the_plain_paths_prompt(tmp_path, monkeypatch):
    backbone = tiny_llama(chat_template=CHAT)
    task = keyword_task(length=(2, 9))
    packed = []
    real_pack = packing.pack_rows

    def spy(*a, **k):
        packed.append(1)
        return real_pack(*a, **k)

    monkeypatch.setattr(packing, "pack_rows", spy)
    plain, fast = _train_on_both_paths(
        tmp_path, lambda: backbone, task, task="keyword", num_tokens=8, max_steps=60,
        batch_size=16, eval_every=20, lr=0.3,
    )  # fmt: skip
    assert fast.as_dict()["fast_path"] and not plain.as_dict()["fast_path"]
    a = load(tmp_path / "fast-False" / "prompt.safetensors").tensor
    b = load(tmp_path / "fast-True" / "prompt.safetensors").tensor
    torch.testing.assert_close(b, a, rtol=0, atol=1e-3)  # bit-equality is not promised
    assert packed  # the fast run did pack its rows
    assert fast.best_step == plain.best_step
    assert fast.best_val > fast.init_val  # it learned: equal scores are not two chance levels
    for key in ("score", "accuracy", "f1_macro", "per_example"):
        assert fast.test[key] == plain.test[key]


@pytest.mark.slow
def test_bf16_weights_keep_the_validation_score_on_the_embedded_model(tmp_path):
    """bf16 weights (the fast path's default on a CPU with native bf16) against the plain
    float32 path, on the embedded SmolLM2 and Rotten Tomatoes: 20 steps of batch 8 from the
    same origin. The prompt and Adam state stay float32, but bf16 rounding moves the model's
    answers near the decision boundary and, at lr 0.3, the trajectory: measured 2026-11-30,
    validation F1 (64 examples) 0.759 -> 0.828 plain and 0.795 -> 0.901 fast, test F1 (64)
    0.711 vs 0.746. Tolerance 0.1 either way; over the demo's 50 steps both paths reached the
    same test F1 (0.847 on 200 reviews, docs/benchmarks.md)."""
    from tpv.backbone import Backbone

    plain, fast = _train_on_both_paths(
        tmp_path, Backbone.load, task="rotten_tomatoes", num_tokens=20, max_steps=20,
        batch_size=8, eval_every=10, eval_examples=64, test_examples=64,
    )  # fmt: skip
    print(
        f"validation F1 plain {plain.init_val:.3f} -> {plain.best_val:.3f}, "
        f"fast {fast.init_val:.3f} -> {fast.best_val:.3f}; test {plain.test['score']:.3f} "
        f"vs {fast.test['score']:.3f}"
    )
    assert plain.compute_dtype == "float32" and not plain.fast_path
    assert fast.fast_path and fast.compute_dtype == str(fastpath.default_dtype()).removeprefix(
        "torch."
    )
    assert plain.best_val > plain.init_val and fast.best_val > fast.init_val
    assert abs(fast.best_val - plain.best_val) <= 0.1
    assert abs(fast.test["score"] - plain.test["score"]) <= 0.1
