"""The embedded SmolLM2-135M-Instruct on a real corpus (slow: CI runs them; -m 'not slow' skips)."""

import pytest
import torch

from tpv.backbone import EMBEDDED_NAME, Backbone
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
    assert backbone.name == EMBEDDED_NAME and backbone.hidden_size == 576
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
