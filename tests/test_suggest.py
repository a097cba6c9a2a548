"""Source selection on a stub scorer whose best answer is known."""

import pytest
import torch

from tpv.suggest import rank_by_zero_shot, suggest
from tpv.vectors import Origin, TaskPromptVector


def _vec(name: str, seed: int) -> TaskPromptVector:
    g = torch.Generator().manual_seed(seed)
    return TaskPromptVector(
        torch.randn(3, 4, generator=g, dtype=torch.float64), "m", name=name, tasks=(name,)
    )


ORIGIN = Origin(torch.zeros(3, 4), "m", strategy="uniform", seed=0)
A, B, C = _vec("a", 1), _vec("b", 2), _vec("c", 3)
CANDIDATES = {"a": A, "b": B, "c": C}


def _score_towards(target: torch.Tensor):
    """Higher is better: minus the distance of the prompt to `target`."""
    return lambda prompt: -float((prompt.tensor.double() - target).norm())


def test_ranking_puts_the_known_best_first_at_its_lambda():
    target = ORIGIN.tensor.double() + 0.5 * B.tensor
    ranked = rank_by_zero_shot(CANDIDATES, ORIGIN, _score_towards(target), grid=(0.5, 1.0))
    assert [r.name for r in ranked][0] == "b" and ranked[0].lam == 0.5
    assert ranked[0].zero_shot == pytest.approx(0.0, abs=1e-6)


def test_suggest_finds_the_best_pair_and_weights():
    target = ORIGIN.tensor.double() + 1.0 * A.tensor + 0.5 * C.tensor
    s = suggest(
        CANDIDATES,
        ORIGIN,
        _score_towards(target),
        top=2,
        grid=(0.5, 1.0),
        weight_grid=(0.0, 0.5, 1.0),
        rounds=3,
    )
    assert sorted(s.chosen) == ["a", "c"]
    w = dict(zip(s.chosen, s.weights, strict=True))
    assert w == {"a": 1.0, "c": 0.5}
    assert s.score == pytest.approx(0.0, abs=1e-6)
    # The reported score is the proposed prompt's, and the origin's is the bare origin's.
    assert s.score == _score_towards(target)(s.prompt(CANDIDATES, ORIGIN))
    assert s.baseline == _score_towards(target)(ORIGIN.as_prompt()) < s.score
    torch.testing.assert_close(
        s.prompt(CANDIDATES, ORIGIN).tensor.double(), target.float().double()
    )


def test_suggest_never_worse_than_the_best_single_vector():
    target = ORIGIN.tensor.double() + 2.0 * B.tensor  # outside every grid: only b helps
    s = suggest(CANDIDATES, ORIGIN, _score_towards(target), top=3)
    assert s.chosen[0] == "b" and s.ranking[0].lam == 1.0
    # The weight search improves on b alone at 1.0 by giving b a weight past the lambda grid
    # (the weight grid goes to 1.0, then rounds refine), and never adds a vector that hurts.
    best_single = _score_towards(target)(B.apply(ORIGIN, 1.0))
    assert s.score == _score_towards(target)(s.prompt(CANDIDATES, ORIGIN))
    assert s.ranking[0].zero_shot == best_single
    assert s.score > best_single or s.weights == (1.0, 0.0, 0.0)


def test_empty_library_is_a_clear_error():
    with pytest.raises(ValueError, match="no candidate vectors"):
        suggest({}, ORIGIN, lambda p: 0.0)
