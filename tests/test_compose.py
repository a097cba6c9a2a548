"""Multi-task prompts fitted from task prompt vectors (tpv.compose) on a tiny model."""

from __future__ import annotations

import itertools

import pytest
import torch

from tpv import merge
from tpv.compose import FitConfig, fit_multitask, mixed_items, weight_grad
from tpv.evaluate import Evaluator
from tpv.testing import keyword_task, tiny_llama
from tpv.train import TrainConfig, train
from tpv.vectors import load


@pytest.mark.parametrize("granularity", ["token", "vector"])
def test_weight_gradient_is_the_chain_rule_of_autograd(granularity):
    g = torch.Generator().manual_seed(0)
    origin = torch.randn(3, 5, generator=g, dtype=torch.float64)
    taus = torch.randn(2, 3, 5, generator=g, dtype=torch.float64)
    c = torch.randn(3, 5, generator=g, dtype=torch.float64)
    shape = (2, 3, 1) if granularity == "token" else (2, 1, 1)
    w = torch.rand(shape, generator=g, dtype=torch.float64, requires_grad=True)

    def loss_of(prompt):  # any smooth function of the prompt
        return (torch.sin(prompt) * c).sum() + (prompt**2).sum() * 0.1

    loss_of(origin + (w * taus).sum(0)).backward()
    prompt = (origin + (w.detach() * taus).sum(0)).requires_grad_(True)
    loss_of(prompt).backward()
    torch.testing.assert_close(weight_grad(prompt.grad, taus, granularity), w.grad)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    bb = tiny_llama()
    tasks = [
        keyword_task(name="kw", n_train=48, n_val=16, n_test=16),
        keyword_task(name="kw2", n_train=40, n_val=16, n_test=16, seed=3, template="{text} :"),
    ]
    vectors, origin = [], None
    for t in tasks:
        out = tmp_path_factory.mktemp(t.name)
        cfg = TrainConfig(
            task=t.name, out=str(out), num_tokens=4, max_steps=6, batch_size=8, eval_every=3
        )
        train(cfg, backbone=bb, task=t, progress=False)
        vectors.append(load(out / "vector.safetensors"))
        origin = load(out / "origin.safetensors")
    vals = [Evaluator(bb, t, t.split("validation")) for t in tasks]

    def mean_val(p):
        return sum(ev(p)["score"] for ev in vals) / len(vals)

    return bb, origin, vectors, tasks, mean_val


def test_mixed_items_are_balanced_across_tasks(setup):
    bb, _, _, tasks, _ = setup
    items = mixed_items(bb, tasks, None, 64, seed=0)
    assert len(items) == 2 * 40  # each task cut to the smallest train split
    assert len(mixed_items(bb, tasks, 10, 64, seed=0)) == 20


def test_coefficients_fit_is_a_token_weighted_combination(setup):
    bb, origin, vectors, tasks, mean_val = setup
    cfg = FitConfig(mode="coefficients", steps=4, eval_every=2, lr=0.5)
    r = fit_multitask(bb, origin, vectors, tasks, mean_val, cfg)
    assert [e["step"] for e in r.evals] == [0, 2, 4]
    assert r.best_val == max(e["val"] for e in r.evals)
    assert r.init_val == r.evals[0]["val"] == mean_val(merge.task_sum(vectors).apply(origin))
    assert len(r.weights) == 2 and all(len(row) == 4 for row in r.weights)
    # The prompt is rebuilt exactly from the recorded weights.
    again = merge.token_weighted(vectors, r.weights).apply(origin)
    assert torch.equal(again.tensor, r.prompt.tensor)
    assert r.best_val == pytest.approx(mean_val(r.prompt))
    # Selection by a score that only grows: the last step wins, so the weights have trained.
    last = fit_multitask(bb, origin, vectors, tasks, _latest_wins(), cfg)
    assert last.best_step == 4 and last.weights != [[1.0] * 4, [1.0] * 4]
    assert len({w for row in last.weights for w in row}) > 2  # one weight per vector and token


def _latest_wins():
    """A selection score that grows with every call: the fit keeps its last candidate."""
    calls = itertools.count()
    return lambda prompt: float(next(calls))


def test_vector_granularity_shares_one_weight_across_tokens(setup):
    bb, origin, vectors, tasks, _ = setup
    cfg = FitConfig(mode="coefficients", granularity="vector", steps=2, eval_every=1, lr=0.5)
    r = fit_multitask(bb, origin, vectors, tasks, _latest_wins(), cfg)
    assert r.best_step == 2
    assert all(len(set(row)) == 1 for row in r.weights)  # shared across tokens
    assert r.weights[0][0] != 1.0 and r.weights[0][0] != r.weights[1][0]  # trained, per vector


def test_joint_tuning_from_the_origin_learns_and_from_the_sum_starts_there(setup):
    bb, origin, vectors, tasks, mean_val = setup
    cfg = FitConfig(mode="joint", init="origin", steps=12, eval_every=6)
    r = fit_multitask(bb, origin, vectors, tasks, mean_val, cfg)
    assert r.init_val == pytest.approx(mean_val(origin))
    assert r.best_val > r.init_val  # the keyword task is learnable by a prompt on this model
    assert r.prompt.tasks == ("kw", "kw2") and r.weights is None
    s = fit_multitask(bb, origin, vectors, tasks, mean_val, FitConfig(mode="joint", steps=1))
    assert s.init_val == pytest.approx(mean_val(merge.task_sum(vectors).apply(origin)))


def test_bad_fit_settings_are_named():
    with pytest.raises(ValueError, match="mode 'ties'"):
        FitConfig(mode="ties")
    with pytest.raises(ValueError, match="granularity 'layer'"):
        FitConfig(granularity="layer")
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['stepz'\]"):
        FitConfig.from_dict({"stepz": 3})
    with pytest.raises(ValueError, match="--steps must be an integer >= 1, got 0"):
        FitConfig(steps=0)


def test_vectors_and_tasks_must_pair_up(setup):
    bb, origin, vectors, tasks, mean_val = setup
    with pytest.raises(ValueError, match=r"got 1 vector\(s\) for 2 task\(s\)"):
        fit_multitask(bb, origin, vectors[:1], tasks, mean_val)
