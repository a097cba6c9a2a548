"""The embedded SmolLM2-135M-Instruct on a real corpus (slow: CI runs them; -m 'not slow' skips)."""

import json

import pytest
import torch

from tpv.backbone import EMBEDDED_NAME, Backbone
from tpv.identity import display_name, split
from tpv.tasks import get_task
from tpv.train import TrainConfig, train

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def backbone():
    return Backbone.load()


def test_embedded_model_answers_through_its_chat_template(backbone):
    tok = backbone.tokenizer
    ids = tok.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    out = backbone.model.generate(**ids, max_new_tokens=12, do_sample=False)
    assert "Paris" in tok.decode(out[0, ids["input_ids"].shape[1] :])
    assert display_name(backbone.name) == EMBEDDED_NAME and backbone.hidden_size == 576
    assert split(backbone.name)[1].startswith("sha256:")
    assert all(not p.requires_grad for p in backbone.model.parameters())


def test_vocab_origin_is_deterministic_and_at_embedding_scale(backbone):
    a, b = backbone.make_origin(50, seed=0), backbone.make_origin(50, seed=0)
    assert torch.equal(a.tensor, b.tensor) and a.id == b.id
    assert a.id != backbone.make_origin(50, seed=1).id
    assert 10 < a.norm() < 40  # embedding rows (std ~0.14 per entry over 50 x 576)


def test_short_tuning_on_real_corpus_raises_test_accuracy(backbone, tmp_path):
    # Accuracy, not F1: an untrained prompt that answers "positive" to everything already has a
    # binary F1 of ~0.73 on Rotten Tomatoes (58% positive) but only ~58% accuracy.
    task = get_task("rotten_tomatoes")
    cfg = TrainConfig(
        task=task.name,
        out=str(tmp_path / "rt"),
        num_tokens=20,
        max_steps=40,
        batch_size=8,
        eval_every=20,
        eval_examples=64,
        test_examples=100,
        test_init=True,
    )
    m = train(cfg, backbone=backbone, task=task, progress=False)
    assert m.test["accuracy"] > m.init_test["accuracy"] + 0.05
    assert m.test["n"] == 100 and m.steps == 40


def test_generation_task_trains_and_reports_rouge_l(backbone, tmp_path):
    """The whole generation path on the real model and corpus: teacher forcing on the headline
    tokens, greedy generation of up to the task's 24 tokens, ROUGE-L against the real headline.
    A few steps on small samples: the test asserts that the path runs and reports sane
    numbers, and that training lowered the loss; it prints the before/after scores."""
    task = get_task("bbc_headlines")
    cfg = TrainConfig(
        task=task.name,
        out=str(tmp_path / "headlines"),
        num_tokens=10,
        max_steps=8,
        batch_size=4,
        eval_every=8,
        eval_examples=8,
        test_examples=16,
        eval_batch_size=16,
        test_init=True,
    )
    m = train(cfg, backbone=backbone, task=task, progress=False)
    print(f"bbc_headlines ROUGE-L on {m.test['n']} test stories: origin "
          f"{m.init_test['score']:.4f} -> tuned {m.test['score']:.4f} after {m.steps} "
          f"steps; validation {m.init_val:.4f} -> best {m.best_val:.4f}")  # fmt: skip
    for r in (m.test, m.init_test):
        assert r["metric"] == "rouge_l" and r["scorer"] == "generate" and r["n"] == 16
        assert 0.0 <= r["score"] <= 1.0 and r["max_new_tokens"] == task.max_new_tokens
        assert r["samples"][0]["gold"] and isinstance(r["samples"][0]["prediction"], str)
    log_rows = [json.loads(line) for line in (tmp_path / "headlines" / "log.jsonl").open()]
    losses = [r["loss"] for r in log_rows if "loss" in r]
    assert len(losses) == 8 and sum(losses[-3:]) < sum(losses[:3])
