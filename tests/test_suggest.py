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
    assert s.score == pytest.approx(0.0, abs=1e-6) and s.score >= s.ranking[0].zero_shot
    assert s.baseline < s.score
    torch.testing.assert_close(
        s.prompt(CANDIDATES, ORIGIN).tensor.double(), target.float().double()
    )


def test_suggest_never_worse_than_the_best_single_vector():
    target = ORIGIN.tensor.double() + 2.0 * B.tensor  # outside every grid: only b helps
    s = suggest(CANDIDATES, ORIGIN, _score_towards(target), top=3)
    assert s.score >= s.ranking[0].zero_shot
    assert s.chosen[0] == "b"


def test_empty_library_is_a_clear_error():
    with pytest.raises(ValueError, match="no candidate vectors"):
        suggest({}, ORIGIN, lambda p: 0.0)
