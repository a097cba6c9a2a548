"""Label scoring rules: summed, per-token mean, contextual calibration; one option everywhere."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from tpv.evaluate import Evaluator
from tpv.experiments.config import ConfigError, ExperimentConfig
from tpv.scoring import (
    CONTENT_FREE_INPUTS,
    DEFAULT_SCORER,
    Scorer,
    content_free_examples,
    content_free_prior,
    label_scores,
)
from tpv.testing import keyword_task, tiny_llama
from tpv.train import TrainConfig


def test_the_three_rules_by_hand():
    # Label 0 is one token (log-prob -1.0), label 1 three tokens (-2.4 summed, -0.8 each).
    summed = torch.tensor([[-1.0, -2.4]])
    assert label_scores(summed, Scorer.rank, [1, 3]).argmax(-1).item() == 0
    assert label_scores(summed, Scorer.rank_mean, [1, 3])[0].tolist() == pytest.approx([-1.0, -0.8])
    # Content-free inputs prefer label 0 with p = 0.8 (normalised over the labels): dividing the
    # prior out gives log(e^-1 / 0.8) = -0.777 vs log(e^-2.4 / 0.2) = -0.791 -> label 0 still,
    # but a prior of 0.9 / 0.1 flips it (-0.895 vs -0.097).
    cf = torch.log(torch.tensor([[0.8, 0.2]]))
    got = label_scores(summed, Scorer.rank_calibrated, [1, 3], cf)
    assert got[0].tolist() == pytest.approx(
        [-1 - torch.log(torch.tensor(0.8)).item(), -2.4 + 1.6094379], abs=1e-5
    )
    cf = torch.log(torch.tensor([[0.9, 0.1]]))
    assert label_scores(summed, Scorer.rank_calibrated, [1, 3], cf).argmax(-1).item() == 1


def test_content_free_prior_averages_the_normalised_distributions():
    # Two content-free inputs: one says (0.5, 0.5), one (0.9, 0.1), in unnormalised log-probs.
    rows = torch.log(torch.tensor([[0.05, 0.05], [0.09, 0.01]]))
    assert content_free_prior(rows).exp().tolist() == pytest.approx([0.7, 0.3])
    with pytest.raises(ValueError, match="content-free"):
        label_scores(torch.zeros(1, 2), Scorer.rank_calibrated, [1, 1])


def test_content_free_inputs_fill_every_field():
    task = dataclasses.replace(keyword_task(), input_fields=("a", "b"))
    exs = content_free_examples(task)
    assert [e.fields for e in exs] == [{"a": t, "b": t} for t in CONTENT_FREE_INPUTS]
    assert CONTENT_FREE_INPUTS == ("N/A", "", "[MASK]")


def test_the_option_parses_and_names_itself():
    assert DEFAULT_SCORER is Scorer.rank and f"{Scorer.rank_mean}" == "rank_mean"
    assert Scorer.parse("rank_calibrated", "scorer") is Scorer.rank_calibrated
    with pytest.raises(ValueError, match=r"scorer 'rank_sum': use one of \('rank', 'rank_mean'"):
        Scorer.parse("rank_sum", "scorer")
    assert TrainConfig(task="x", scorer=Scorer.rank_mean).scorer == "rank_mean"
    with pytest.raises(ValueError, match="scorer 'mean': use one of"):
        TrainConfig(task="x", scorer="mean")
    raw = {"experiment": {"name": "x", "out": "o", "scorer": "calibrated"}}
    with pytest.raises(ConfigError, match=r"<dict>: \[experiment\] scorer 'calibrated': use one"):
        ExperimentConfig.from_dict(raw)


@pytest.fixture(scope="module")
def two_length_task():
    # "no maybe" is two tokens of the tiny word-level tokenizer, "yes" one.
    return dataclasses.replace(keyword_task(n_test=24), labels=("yes", "no maybe"))


@pytest.mark.parametrize("scorer", ["rank", "rank_mean", "rank_calibrated"])
def test_the_evaluator_applies_the_rule_to_the_same_log_probabilities(two_length_task, scorer):
    backbone = tiny_llama()
    rows = two_length_task.split("test")
    ev = Evaluator(backbone, two_length_task, rows, scorer=scorer)
    assert [len(ids) for ids in ev.encoder.label_ids] == [1, 2]
    origin = backbone.make_origin(4, seed=3)
    summed, cf = ev.label_logprobs(origin)
    assert summed.shape == (24, 2) and cf.shape == (3, 2)
    want = label_scores(summed, scorer, [1, 2], cf).argmax(-1).tolist()
    result = ev(origin)
    from tpv.metrics import decode_labels

    assert decode_labels(result["per_example"]["pred"]) == want
    assert decode_labels(result["per_example"]["gold"]) == [r.label for r in rows]
    assert result["scorer"] == scorer
    # The summed rule is the one the Evaluator always used: the model's own label scores.
    if scorer == "rank":
        from tpv.data import batches
        from tpv.prompted import PromptedModel

        model = PromptedModel(backbone, origin.tensor)
        for idx, batch in batches(ev.items, 8, model.pad_id, False):
            direct = model.score_labels(batch, ev.encoder.label_ids)
            torch.testing.assert_close(summed[idx], direct, rtol=1e-5, atol=1e-5)
