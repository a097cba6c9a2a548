"""Combination methods against small worked examples computed by hand, plus properties.

Expected tensors are written out literally with the arithmetic in comments; where a method
is random (DARE) the mask is recomputed here from the documented torch.Generator semantics.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tpv import merge
from tpv.merge import (
    METHODS,
    PAPER_GRID,
    combine,
    dare,
    magnitude_prune,
    mean,
    norm_matched_sum,
    orthogonalized_sum,
    search_lambda,
    search_weights,
    task_sum,
    ties,
    token_weighted,
    weighted,
)
from tpv.vectors import IncompatibleError, TaskPromptVector, sum_vectors


def V(rows, name, origin="o1", model="m") -> TaskPromptVector:
    return TaskPromptVector(
        torch.tensor(rows, dtype=torch.float64),
        model,
        name=name,
        tasks=(name,),
        origin_ids=(origin,),
    )


def T(rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)


def assert_tensor(actual: TaskPromptVector, expected, exact: bool = True) -> None:
    exp = T(expected)
    if exact:
        assert torch.equal(actual.tensor, exp), f"{actual.tensor} != {exp}"
    else:
        torch.testing.assert_close(actual.tensor, exp, rtol=1e-12, atol=1e-12)


@pytest.fixture
def abc():
    a = V([[1.0, 2.0, -3.0, 0.5]], "a")
    b = V([[0.5, -2.0, 1.0, 0.25]], "b", origin="o2")
    c = V([[-1.0, 0.0, 4.0, 2.0]], "c")
    return a, b, c


# --- task_sum, weighted, mean -----------------------------------------------------------------
def test_task_sum_by_hand(abc):
    a, b, c = abc
    # a + b + c = [1 + 0.5 - 1, 2 - 2 + 0, -3 + 1 + 4, 0.5 + 0.25 + 2] = [0.5, 0, 2, 2.75]
    assert_tensor(task_sum([a, b, c]), [[0.5, 0.0, 2.0, 2.75]])
    r = task_sum([a, b, c], coef=0.5)
    assert_tensor(r, [[0.25, 0.0, 1.0, 1.375]])
    assert r.name == "0.5 * (a + b + c)"
    assert task_sum([a, b]).name == "a + b"
    assert r.record == {"method": "task_sum", "params": {"coef": 0.5}, "inputs": ["a", "b", "c"]}
    assert r.tasks == ("a", "b", "c")
    assert r.origin_ids == ("o1", "o2")  # mixed origins carried through
    assert r.metadata()["mixed_origins"] is True


def test_weighted_by_hand(abc):
    a, b, _ = abc
    # 0.25 * [1, 2, -3, 0.5] + 0.75 * [0.5, -2, 1, 0.25]
    #   = [0.25 + 0.375, 0.5 - 1.5, -0.75 + 0.75, 0.125 + 0.1875]
    r = weighted([a, b], [0.25, 0.75])
    assert_tensor(r, [[0.625, -1.0, 0.0, 0.3125]])
    assert r.name == "0.25 * a + 0.75 * b"
    assert r.record["params"] == {"weights": [0.25, 0.75]}
    # 2a - b = [2 - 0.5, 4 + 2, -6 - 1, 1 - 0.25]
    assert_tensor(weighted([a, b], [2, -1]), [[1.5, 6.0, -7.0, 0.75]])


def test_token_weighted_by_hand():
    # Two vectors of 2 tokens x 2 dims; token 0 takes 1*a + 0*b, token 1 takes 0.5*a + 2*b.
    a = V([[1.0, 2.0], [4.0, -2.0]], "a")
    b = V([[3.0, 5.0], [0.5, 1.0]], "b")
    r = token_weighted([a, b], [[1.0, 0.5], [0.0, 2.0]])
    # token 1: 0.5 * [4, -2] + 2 * [0.5, 1] = [2 + 1, -1 + 2] = [3, 1]
    assert_tensor(r, [[1.0, 2.0], [3.0, 1.0]])
    assert r.name == "token_weighted(a, b)"
    assert r.record["params"] == {"weights": [[1.0, 0.5], [0.0, 2.0]]}
    # Equal weights on every token are `weighted`.
    assert torch.equal(
        token_weighted([a, b], [[0.25, 0.25], [2.0, 2.0]]).tensor,
        weighted([a, b], [0.25, 2]).tensor,
    )
    with pytest.raises(ValueError, match=r"weights must be 2 x 2 \(vectors x prompt tokens\)"):
        token_weighted([a, b], [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]])
    with pytest.raises(ValueError, match=r"weight \[1\]\[0\] must be a finite number"):
        token_weighted([a, b], [[1.0, 1.0], [float("nan"), 1.0]])


def test_mean_by_hand(abc):
    a, b, c = abc
    # (a + b + c) / 3 = [0.5, 0, 2, 2.75] / 3
    r = mean([a, b, c])
    assert_tensor(r, [[0.5 / 3, 0.0, 2 / 3, 2.75 / 3]], exact=False)
    assert r.name == "mean(a, b, c)"
    assert r.record["method"] == "mean"


# --- magnitude prune and TIES -----------------------------------------------------------------
def test_magnitude_prune_by_hand():
    v = V([[0.5, -3.0, 1.0, -0.1]], "v")
    # density 0.5 of 4 entries: keep the 2 largest |x| (3 and 1)
    assert_tensor(magnitude_prune(v, 0.5), [[0.0, -3.0, 1.0, 0.0]])
    # density 0.2: round(0.8) = 1 entry
    assert_tensor(magnitude_prune(v, 0.2), [[0.0, -3.0, 0.0, 0.0]])
    # density 0.01: round(0.04) = 0, but at least one entry survives
    assert_tensor(magnitude_prune(v, 0.01), [[0.0, -3.0, 0.0, 0.0]])
    assert_tensor(magnitude_prune(v, 1.0), [[0.5, -3.0, 1.0, -0.1]])
    # Ties at the threshold are all kept: k = 1, but |1| = |-1| = |1| all tie for first.
    tied = V([[1.0, -1.0, 1.0, 0.5]], "t")
    assert_tensor(magnitude_prune(tied, 0.25), [[1.0, -1.0, 1.0, 0.0]])
    r = magnitude_prune(v, 0.5)
    assert r.name == "prune(v; density=0.5)"
    assert r.record["params"] == {"density": 0.5}


@pytest.fixture
def ties3():
    return (
        V([[4.0, -1.0, 0.5], [-3.0, 2.0, -0.2]], "v1"),
        V([[3.0, 1.0, -2.0], [1.0, -0.5, 5.0]], "v2"),
        V([[-1.0, 0.1, -4.0], [2.0, -3.0, 0.3]], "v3"),
    )


def test_ties_by_hand(ties3):
    # density 0.5 of 6 entries: keep the top 3 |x| of each vector.
    #   v1 |x| = 4 1 .5 / 3 2 .2  -> keep 4, 3, 2   -> [[ 4, 0,  0], [-3,  2, 0]]
    #   v2 |x| = 3 1 2 / 1 .5 5   -> keep 5, 3, 2   -> [[ 3, 0, -2], [ 0,  0, 5]]
    #   v3 |x| = 1 .1 4 / 2 3 .3  -> keep 4, 3, 2   -> [[ 0, 0, -4], [ 2, -3, 0]]
    # Elect: sign of the column sums    [[7, 0, -6], [-1, -1, 5]] -> [[+, 0, -], [-, -, +]]
    # Disjoint mean of the trimmed values that agree with the elected sign:
    #   (0,0) mean(4, 3) = 3.5     (0,1) elected 0 -> 0      (0,2) mean(-2, -4) = -3
    #   (1,0) -3 (v3's +2 disagrees)  (1,1) -3 (v1's +2 disagrees)  (1,2) 5
    r = ties(list(ties3), density=0.5)
    assert_tensor(r, [[3.5, 0.0, -3.0], [-3.0, -3.0, 5.0]])
    assert r.name == "ties(v1, v2, v3; density=0.5)"
    assert r.record == {
        "method": "ties",
        "params": {"density": 0.5, "coef": 1.0},
        "inputs": ["v1", "v2", "v3"],
    }
    r = ties(list(ties3), density=0.5, coef=0.5)
    assert_tensor(r, [[1.75, 0.0, -1.5], [-1.5, -1.5, 2.5]])
    assert r.name == "0.5 * ties(v1, v2, v3; density=0.5)"


def test_ties_without_trimming_by_hand(ties3):
    # density 1: nothing trimmed. Column sums and elected signs:
    #   (0,0) 4+3-1 = 6 +  -> mean(4, 3)     = 3.5
    #   (0,1) -1+1+.1 = .1 + -> mean(1, .1)  = 0.55
    #   (0,2) .5-2-4 = -5.5 - -> mean(-2, -4) = -3
    #   (1,0) -3+1+2 = 0   -> elected sign 0 -> 0
    #   (1,1) 2-.5-3 = -1.5 - -> mean(-.5, -3) = -1.75
    #   (1,2) -.2+5+.3 = 5.1 + -> mean(5, .3)  = 2.65
    r = ties(list(ties3), density=1.0)
    assert_tensor(r, [[3.5, 0.55, -3.0], [0.0, -1.75, 2.65]], exact=False)


def test_ties_differs_from_plain_sum_where_signs_conflict(ties3):
    # Entry (1,0): plain sum -3 + 1 + 2 = 0 cancels; TIES keeps the elected side.
    assert task_sum(list(ties3)).tensor[1, 0] == 0
    assert ties(list(ties3), density=0.5).tensor[1, 0] == -3


# --- DARE -------------------------------------------------------------------------------------
def reference_masks(shape, n, drop, seed):
    # The documented semantics, restated: one Generator seeded once; per vector in order, one
    # float64 uniform draw of the vector's shape; keep where draw >= drop.
    g = torch.Generator()
    g.manual_seed(seed)
    return [torch.rand(shape, generator=g, dtype=torch.float64) >= drop for _ in range(n)]


def test_dare_sum_matches_an_independently_computed_mask(ties3):
    masks = reference_masks((2, 3), 3, 0.5, 42)
    expected = torch.zeros(2, 3, dtype=torch.float64)
    for m, v in zip(masks, ties3, strict=True):
        expected += torch.where(m, v.tensor * 2.0, 0.0)  # survivors scaled by 1/(1-0.5)
    r = dare(list(ties3), drop=0.5, seed=42)
    assert torch.equal(r.tensor, expected)
    assert r.name == "dare(v1, v2, v3; drop=0.5, seed=42, then=sum)"
    assert r.record["params"] == {"drop": 0.5, "seed": 42, "coef": 1.0, "then": "sum"}
    assert torch.equal(dare(list(ties3), drop=0.5, seed=42, coef=0.25).tensor, 0.25 * expected)
    # The masks are not trivial (some kept, some dropped), so the test can tell them apart.
    assert 0 < sum(int(m.sum()) for m in masks) < 18


def plain_ties_merge(tensors: list[list[float]]) -> list[float]:
    """Elect + disjoint mean in plain Python, one entry at a time (the TIES paper's steps)."""
    out = []
    for col in zip(*tensors, strict=True):
        total = sum(col)
        sign = (total > 0) - (total < 0)
        agree = [x for x in col if x != 0 and ((x > 0) - (x < 0)) == sign]
        out.append(sum(agree) / len(agree) if agree and sign != 0 else 0.0)
    return out


def test_dare_then_ties_matches_mask_then_plain_ties(ties3):
    masks = reference_masks((2, 3), 3, 0.3, 7)
    kept = [
        torch.where(m, v.tensor / 0.7, 0.0).flatten().tolist()
        for m, v in zip(masks, ties3, strict=True)
    ]
    expected = T(plain_ties_merge(kept)).reshape(2, 3)
    r = dare(list(ties3), drop=0.3, seed=7, then="ties")
    torch.testing.assert_close(r.tensor, expected, rtol=1e-12, atol=0)


def test_dare_each_entry_is_dropped_or_rescaled():
    v = V([[float(i + 1) for i in range(50)]], "v")
    r = dare([v], drop=0.8, seed=3).tensor
    dropped, kept = r == 0, r != 0
    assert dropped.any() and kept.any()
    torch.testing.assert_close(r[kept], v.tensor[kept] * 5.0, rtol=1e-15, atol=0)


def test_dare_is_seeded():
    vs = [V([[float(i) for i in range(1, 21)]], "a"), V([[1.0] * 20], "b")]
    assert torch.equal(dare(vs, drop=0.5, seed=1).tensor, dare(vs, drop=0.5, seed=1).tensor)
    assert not torch.equal(dare(vs, drop=0.5, seed=1).tensor, dare(vs, drop=0.5, seed=2).tensor)
    # drop = 0 keeps everything: the plain sum.
    assert torch.equal(dare(vs, drop=0.0).tensor, task_sum(vs).tensor)


def test_dare_drop_rate_is_as_asked():
    v = V([[1.0] * 20_000], "v")
    kept = float((dare([v], drop=0.9, seed=0).tensor != 0).double().mean())
    sigma = math.sqrt(0.1 * 0.9 / 20_000)
    assert abs(kept - 0.1) < 5 * sigma


@pytest.mark.parametrize("drop", [0.5, 0.9])
def test_dare_is_unbiased_over_seeds(drop):
    v = V([[3.0, -1.0, 0.5, 2.0], [-4.0, 1.5, -0.25, 1.0]], "v")
    n = 3000
    total = torch.zeros_like(v.tensor)
    for seed in range(n):
        total += dare([v], drop=drop, seed=seed).tensor
    est = total / n
    # One draw of an entry x is x/(1-p) with prob 1-p, else 0: std |x| sqrt(p/(1-p)).
    sigma = v.tensor.abs() * math.sqrt(drop / (1 - drop)) / math.sqrt(n)
    assert ((est - v.tensor).abs() <= 5 * sigma).all(), (est, v.tensor)
    # And the estimate is not trivially v itself (it is a real random average).
    assert not torch.equal(est, v.tensor)


# --- norm-matched and orthogonalised sums -----------------------------------------------------
def test_norm_matched_sum_by_hand():
    a, b = V([[3.0, 4.0]], "a"), V([[0.0, -15.0]], "b")
    # norms 5 and 15, mean 10: a * 2 = [6, 8], b * 2/3 = [0, -10]; sum [6, -2]
    r = norm_matched_sum([a, b])
    assert_tensor(r, [[6.0, -2.0]], exact=False)
    assert r.record["params"]["target_norm"] == 10.0
    assert r.record["params"]["scales"] == pytest.approx([2.0, 2 / 3])
    assert r.name == "normsum(a, b)"
    assert_tensor(norm_matched_sum([a, b], coef=0.5), [[3.0, -1.0]], exact=False)
    # A zero vector stays zero but counts in the mean norm: mean(5, 0) = 2.5 -> a * 0.5
    assert_tensor(norm_matched_sum([a, V([[0.0, 0.0]], "z")]), [[1.5, 2.0]], exact=False)


def test_orthogonalized_sum_by_hand_and_order_matters():
    e1, e12, e123 = V([[1.0, 0, 0]], "x"), V([[1.0, 1, 0]], "xy"), V([[1.0, 1, 1]], "xyz")
    # In this order Gram-Schmidt gives [1,0,0], [0,1,0], [0,0,1]; sum [1, 1, 1].
    r = orthogonalized_sum([e1, e12, e123])
    assert_tensor(r, [[1.0, 1.0, 1.0]], exact=False)
    assert r.name == "orthsum(x, xy, xyz)"
    # xy first: u1 = [1,1,0]; u2 = x - (1/2)[1,1,0] = [.5,-.5,0];
    # u3 = xyz - (2/2)[1,1,0] - 0 * u2 = [0,0,1]; sum [1.5, .5, 1]
    assert_tensor(orthogonalized_sum([e12, e1, e123]), [[1.5, 0.5, 1.0]], exact=False)
    # A vector in the span of earlier ones adds nothing: [2,0] then [4,0] -> [2,0]; lam 2 -> [4,0]
    r = orthogonalized_sum([V([[2.0, 0.0]], "p"), V([[4.0, 0.0]], "q")], coef=2.0)
    assert_tensor(r, [[4.0, 0.0]], exact=False)
    assert r.name == "2 * orthsum(p, q)"


# --- validation -------------------------------------------------------------------------------
@pytest.mark.parametrize("fn", [task_sum, mean, ties, dare, norm_matched_sum, orthogonalized_sum])
def test_empty_list_is_refused(fn):
    with pytest.raises(ValueError, match="needs at least one vector, got an empty list"):
        fn([])


def test_bad_parameters_are_refused(abc):
    a, b, _ = abc
    for d in (0, -0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match=r"ties: density must be (in \(0, 1\]|a finite)"):
            ties([a, b], density=d)
        with pytest.raises(ValueError, match=r"magnitude_prune: density must be"):
            magnitude_prune(a, d)
    for p in (1.0, -0.1, 2):
        with pytest.raises(ValueError, match=r"dare: drop must be in \[0, 1\)"):
            dare([a, b], drop=p)
    with pytest.raises(ValueError, match="dare: then must be 'sum' or 'ties'"):
        dare([a, b], then="mean")
    with pytest.raises(ValueError, match="dare: seed must be an integer"):
        dare([a, b], seed=1.5)
    with pytest.raises(ValueError, match=r"weighted: got 3 weight\(s\) for 2 vector\(s\)"):
        weighted([a, b], [1, 2, 3])
    with pytest.raises(ValueError, match="weight 1 must be a finite number"):
        weighted([a, b], [1, float("inf")])
    with pytest.raises(ValueError, match="task_sum: coef must be a finite number"):
        task_sum([a, b], coef=float("nan"))


def test_wrong_inputs_are_refused(abc):
    a, b, _ = abc
    with pytest.raises(TypeError, match="expected a list of TaskPromptVectors, got a single"):
        task_sum(a)
    with pytest.raises(TypeError, match="item 1 is a Tensor, not a TaskPromptVector"):
        task_sum([a, b.tensor])
    with pytest.raises(IncompatibleError, match="different hidden sizes.*'a'.*'wide'"):
        ties([a, V([[1.0] * 5], "wide")])
    with pytest.raises(IncompatibleError, match="different models"):
        dare([a, V([[1.0] * 4], "t5", model="t5-base")])


# --- registry ---------------------------------------------------------------------------------
def test_registry_and_combine(abc):
    a, b, c = abc
    assert set(METHODS) == {
        "sum",
        "weighted",
        "token_weighted",
        "mean",
        "ties",
        "dare",
        "prune",
        "norm_sum",
        "orth_sum",
    }
    assert torch.equal(combine("sum", [a, b], coef=0.5).tensor, task_sum([a, b], 0.5).tensor)
    assert torch.equal(
        combine("weighted", [a, b], weights=[1, 2]).tensor, weighted([a, b], [1, 2]).tensor
    )
    assert torch.equal(combine("prune", [a], density=0.5).tensor, magnitude_prune(a, 0.5).tensor)
    for name in METHODS:
        vs = [a] if name == "prune" else [a, b, c]
        params = {
            "weighted": {"weights": [1, 1, 1]},
            "token_weighted": {"weights": [[1.0], [1.0], [1.0]]},
            "prune": {"density": 0.5},
        }.get(name, {})
        r = combine(name, vs, **params)
        assert isinstance(r, TaskPromptVector) and r.record["method"]
    with pytest.raises(ValueError, match=r"unknown combination method 'avg'; choose from \["):
        combine("avg", [a, b])
    with pytest.raises(ValueError, match=r"method 'ties' takes parameters \['density', 'coef'\]"):
        combine("ties", [a, b], dens=0.3)
    with pytest.raises(ValueError, match="prune: takes exactly one vector, got 2"):
        combine("prune", [a, b], density=0.5)


# --- lambda and weight search -----------------------------------------------------------------
def test_paper_grid():
    assert len(PAPER_GRID) == 21 and PAPER_GRID[0] == 0.0 and PAPER_GRID[-1] == 1.0
    assert 0.35 in PAPER_GRID and 0.05 in PAPER_GRID


def test_search_lambda_finds_the_known_optimum():
    calls = []

    def evaluate(lam):
        calls.append(lam)
        return -((lam - 0.35) ** 2)

    res = search_lambda(evaluate)
    assert res.best == 0.35
    assert res.best_score == pytest.approx(0.0)
    assert [lam for lam, _ in res.history] == list(PAPER_GRID) == calls
    best, history = res  # unpacks as (best, history)
    assert best == 0.35 and len(history) == 21


def test_search_lambda_ties_go_to_the_smaller_lambda_and_nan_never_wins():
    # Flat top on [0.2, 0.4]: the smallest lambda on it wins, whatever the grid order.
    assert search_lambda(lambda lam: float(0.2 <= lam <= 0.4)).best == 0.2
    assert search_lambda(lambda lam: 1.0, grid=[0.9, 0.3, 0.6]).best == 0.3
    res = search_lambda(lambda lam: math.nan if lam == 0.5 else -lam, grid=[0.5, 0.7, 0.6])
    assert res.best == 0.6
    assert len(res.history) == 3
    with pytest.raises(ValueError, match="every evaluation returned NaN"):
        search_lambda(lambda lam: math.nan, grid=[0.1])
    with pytest.raises(ValueError, match="grid is empty"):
        search_lambda(lambda lam: 0.0, grid=[])


def test_search_lambda_drives_a_real_combination(abc):
    # The paper's use: evaluate the combined vector at each lambda. Target: 0.6 * (a + b).
    a, b, _ = abc
    target = 0.6 * (a + b)
    res = search_lambda(lambda lam: -(task_sum([a, b], lam) - target).norm())
    assert res.best == 0.6


def test_search_weights_finds_a_separable_optimum_in_one_round():
    opt = (0.2, 0.7, 0.45)
    calls = []

    def evaluate(w):
        calls.append(w)
        return -sum((x - o) ** 2 for x, o in zip(w, opt, strict=True))

    res = search_weights(evaluate, n=3, rounds=1)
    assert res.best == opt
    assert len(calls) == len(set(calls)), "each point is evaluated once"
    assert calls[0] == (1.0, 1.0, 1.0)  # starts from the plain sum


def test_search_weights_coupled_optimum_needs_rounds():
    # -((w0 + w1 - 1)^2 + 2 (w0 - 0.3)^2): optimum (0.3, 0.7), on the grid. From (1, 1):
    #   round 1: w0 minimises w0^2 + 2(w0 - .3)^2 -> 0.2;           w1 -> 1 - 0.2  = 0.8
    #   round 2: w0 minimises (w0 - .2)^2 + 2(w0 - .3)^2 -> .267 ~ 0.25; w1 -> 0.75
    #   round 3: (w0 - .25)^2 + 2(w0 - .3)^2 -> .283 ~ 0.3;           w1 -> 0.7
    #   round 4: nothing moves, the search stops early.
    f = lambda w: -((w[0] + w[1] - 1) ** 2 + 2 * (w[0] - 0.3) ** 2)  # noqa: E731
    assert search_weights(f, n=2, rounds=1).best == (0.2, 0.8)
    assert search_weights(f, n=2, rounds=2).best == (0.25, 0.75)
    res = search_weights(f, n=2, rounds=10)
    assert res.best == (0.3, 0.7)
    assert len(res.history) == len(search_weights(f, n=2, rounds=4).history)  # stopped early


def test_search_weights_budget_and_ties():
    calls = []

    def evaluate(w):
        calls.append(w)
        return -abs(w[0] - 0.5) - abs(w[1] - 0.5)

    res = search_weights(evaluate, n=2, grid=[0.0, 0.5, 1.0], rounds=5, budget=4)
    assert len(calls) == 4 and len(res.history) == 4
    assert res.best_score == max(s for _, s in res.history)
    # A flat function: the search never moves (a tie keeps the current weight), so it sees
    # (1,1), (0,1), (1,0) and stops; the answer is the smallest tuple among the tied best.
    res = search_weights(lambda w: 0.0, n=2, grid=[0.0, 1.0], start=[1.0, 1.0])
    assert [w for w, _ in res.history] == [(1.0, 1.0), (0.0, 1.0), (1.0, 0.0)]
    assert res.best == (0.0, 1.0)
    with pytest.raises(ValueError, match="start has 1 weight"):
        search_weights(lambda w: 0.0, n=2, start=[1.0])
    with pytest.raises(ValueError, match="n must be a positive integer"):
        search_weights(lambda w: 0.0, n=0)


# --- properties -------------------------------------------------------------------------------
vals = st.floats(min_value=-100, max_value=100, allow_nan=False).map(lambda x: round(x, 3))


@st.composite
def vector_lists(draw, min_k=1, max_k=4):
    p, h = draw(st.integers(1, 3)), draw(st.integers(1, 4))
    k = draw(st.integers(min_k, max_k))
    return [
        TaskPromptVector(
            torch.tensor(
                draw(st.lists(vals, min_size=p * h, max_size=p * h)), dtype=torch.float64
            ).reshape(p, h),
            "m",
            name=f"t{i}",
            tasks=(f"t{i}",),
        )
        for i in range(k)
    ]


def plain_trim(xs: list[float], density: float) -> list[float]:
    k = min(len(xs), max(1, round(density * len(xs))))
    threshold = sorted((abs(x) for x in xs), reverse=True)[k - 1]
    return [x if abs(x) >= threshold else 0.0 for x in xs]


@settings(max_examples=150, deadline=None)
@given(vector_lists(), st.sampled_from([0.1, 0.25, 0.5, 0.75, 1.0]))
def test_ties_matches_a_plain_python_reference(vs, density):
    trimmed = [plain_trim(v.tensor.flatten().tolist(), density) for v in vs]
    expected = T(plain_ties_merge(trimmed)).reshape(vs[0].shape)
    torch.testing.assert_close(ties(vs, density=density).tensor, expected, rtol=1e-12, atol=1e-12)


@settings(max_examples=100, deadline=None)
@given(vector_lists())
def test_simple_methods_agree_with_vector_arithmetic(vs):
    s = sum_vectors(vs)
    torch.testing.assert_close(task_sum(vs).tensor, s.tensor, rtol=1e-12, atol=1e-9)
    torch.testing.assert_close(mean(vs).tensor, s.tensor / len(vs), rtol=1e-12, atol=1e-9)
    torch.testing.assert_close(
        weighted(vs, [1.0] * len(vs)).tensor, s.tensor, rtol=1e-12, atol=1e-9
    )
    torch.testing.assert_close(dare(vs, drop=0.0).tensor, s.tensor, rtol=1e-12, atol=1e-9)
    # One vector: TIES without trimming, mean and orthogonalised sum all give it back.
    (v,) = vs[:1]
    torch.testing.assert_close(ties([v], density=1.0).tensor, v.tensor)
    torch.testing.assert_close(mean([v]).tensor, v.tensor)
    torch.testing.assert_close(orthogonalized_sum([v]).tensor, v.tensor)


@settings(max_examples=100, deadline=None)
@given(vector_lists(min_k=2, max_k=2))
def test_orthogonalized_second_part_is_orthogonal_to_the_first(vs):
    a, b = vs
    part = (orthogonalized_sum([a, b]).tensor - a.tensor).flatten()
    scale = max(float(a.tensor.norm()) * float(b.tensor.norm()), 1.0)
    assert abs(float(part @ a.tensor.flatten())) <= 1e-9 * scale


@settings(max_examples=100, deadline=None)
@given(vector_lists(min_k=2))
def test_norm_matched_parts_share_one_norm(vs):
    norms = [v.norm() for v in vs]
    if min(norms) == 0:
        return
    target = sum(norms) / len(norms)
    expected = sum_vectors([v * (target / n) for v, n in zip(vs, norms, strict=True)])
    torch.testing.assert_close(norm_matched_sum(vs).tensor, expected.tensor, rtol=1e-9, atol=1e-9)


def test_module_exports_match_the_brief():
    for name in (
        "task_sum",
        "weighted",
        "mean",
        "ties",
        "dare",
        "magnitude_prune",
        "norm_matched_sum",
        "orthogonalized_sum",
        "search_lambda",
        "search_weights",
        "combine",
        "METHODS",
    ):
        assert hasattr(merge, name), name


def test_lam_is_a_deprecated_alias_of_coef():
    a, b = V([[1.0, 2.0]], "a"), V([[3.0, -1.0]], "b")
    with pytest.warns(DeprecationWarning, match="'lam' is deprecated, use 'coef'"):
        old = task_sum([a, b], lam=0.5)
    with pytest.warns(DeprecationWarning):
        via_combine = combine("ties", [a, b], density=1.0, lam=0.5)
    assert torch.equal(old.tensor, task_sum([a, b], coef=0.5).tensor)
    assert torch.equal(via_combine.tensor, ties([a, b], density=1.0, coef=0.5).tensor)
