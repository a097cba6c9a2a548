"""Ways to combine task prompt vectors into one, plus searches for their coefficients.

Every method takes a list of TaskPromptVectors and returns one TaskPromptVector whose name
reads like the combination ("0.5 * (mnli + qnli)", "ties(mnli, qnli; density=0.2)") and
whose record says the method and its parameters, so a result can be rebuilt from its file.

    from tpv import merge
    tau = merge.ties([mnli, qnli, sst2], density=0.2, coef=0.8)
    best = merge.search_lambda(lambda coef: score(merge.task_sum(vs, coef).apply(origin)))

All arithmetic is in float64 (the vectors' dtype).
"""

from __future__ import annotations

import functools
import inspect
import math
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

import torch

from tpv.vectors import Origin, SoftPrompt, TaskPromptVector, check_compatible, paren

# The paper's lambda grid 0, 0.05, ..., 1.0, rounded so 0.35 is 0.35 (not 0.35000000000000003).
PAPER_GRID: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(21))


# --- helpers ---------------------------------------------------------------------------------
def _lam_alias(params: dict[str, Any], where: str) -> dict[str, Any]:
    """`lam` is the old name of `coef`: still accepted for a release, with a warning."""
    if "lam" in params:
        warnings.warn(f"{where}: 'lam' is deprecated, use 'coef'", DeprecationWarning, stacklevel=3)
        params = dict(params)
        params["coef"] = params.pop("lam")
    return params


def _coef_alias(fn: Callable[..., TaskPromptVector]) -> Callable[..., TaskPromptVector]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kw: Any) -> TaskPromptVector:
        return fn(*args, **_lam_alias(kw, fn.__name__))

    return wrapper


def _as_list(vectors: Iterable[TaskPromptVector], method: str) -> list[TaskPromptVector]:
    if isinstance(vectors, TaskPromptVector):
        raise TypeError(f"{method}: expected a list of TaskPromptVectors, got a single vector")
    vs = list(vectors)
    if not vs:
        raise ValueError(f"{method}: needs at least one vector, got an empty list")
    for i, v in enumerate(vs):
        if not isinstance(v, TaskPromptVector):
            raise TypeError(f"{method}: item {i} is a {type(v).__name__}, not a TaskPromptVector")
    for v in vs[1:]:
        check_compatible(vs[0], v)
    return vs


def _finite(x: float, what: str, method: str) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        raise ValueError(f"{method}: {what} must be a finite number, got {x!r}")
    return float(x)


def _fraction(x: float, what: str, method: str, *, allow_zero: bool, allow_one: bool) -> float:
    x = _finite(x, what, method)
    lo_ok = x >= 0 if allow_zero else x > 0
    hi_ok = x <= 1 if allow_one else x < 1
    if not (lo_ok and hi_ok):
        interval = ("[0" if allow_zero else "(0") + ", 1" + ("]" if allow_one else ")")
        raise ValueError(f"{method}: {what} must be in {interval}, got {x}")
    return x


def _result(
    tensor: torch.Tensor,
    vectors: list[TaskPromptVector],
    name: str,
    method: str,
    params: dict[str, Any],
) -> TaskPromptVector:
    tasks = tuple(dict.fromkeys(t for v in vectors for t in v.tasks))
    origin_ids = tuple(dict.fromkeys(o for v in vectors for o in v.origin_ids))
    return TaskPromptVector(
        tensor=tensor,
        model=vectors[0].model,
        name=name,
        tasks=tasks,
        origin_ids=origin_ids,
        record={"method": method, "params": params, "inputs": [v.name for v in vectors]},
    )


def _scaled_name(coef: float, inner: str, *, call: bool = False) -> str:
    """ "0.5 * (a + b)"; a call form like "ties(a, b; ...)" needs no parentheses."""
    if coef == 1:
        return inner
    return f"{coef:g} * {inner if call else paren(inner)}"


def _call_name(method: str, vectors: list[TaskPromptVector], **params: Any) -> str:
    args = ", ".join(v.name for v in vectors)
    extra = ", ".join(
        f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items()
    )
    return f"{method}({args}; {extra})" if extra else f"{method}({args})"


def _stack(vectors: list[TaskPromptVector]) -> torch.Tensor:
    return torch.stack([v.tensor.to(torch.float64) for v in vectors])


def _trim(t: torch.Tensor, density: float) -> torch.Tensor:
    """Keep the round(density * n) largest-magnitude entries (at least one) of one tensor.

    Entries tied with the k-th largest magnitude are all kept: deterministic, and no arbitrary
    choice between equal entries (so a little more than k may survive).
    """
    n = t.numel()
    k = min(n, max(1, round(density * n)))
    if k == n:
        return t.clone()
    mags = t.abs().flatten()
    threshold = torch.topk(mags, k, sorted=True).values[-1]
    return torch.where(t.abs() >= threshold, t, torch.zeros_like(t))


def _elect_and_merge(stacked: torch.Tensor) -> torch.Tensor:
    """TIES steps 2-3: elect a sign per entry, then average the entries that agree with it."""
    elected = torch.sign(stacked.sum(dim=0))  # sign of the total = side with more mass
    agree = (torch.sign(stacked) == elected) & (stacked != 0)
    count = agree.sum(dim=0)
    total = torch.where(agree, stacked, torch.zeros_like(stacked)).sum(dim=0)
    # No agreeing entry (elected sign 0, or all trimmed away): the merged entry is 0.
    return torch.where(count > 0, total / count.clamp(min=1), torch.zeros_like(total))


# --- methods ---------------------------------------------------------------------------------
@_coef_alias
def task_sum(vectors: Sequence[TaskPromptVector], coef: float = 1.0) -> TaskPromptVector:
    """The paper's combination: coef * sum_i tau_i."""
    vs = _as_list(vectors, "task_sum")
    coef = _finite(coef, "coef", "task_sum")
    tensor = coef * _stack(vs).sum(dim=0)
    name = _scaled_name(coef, " + ".join(paren(v.name) for v in vs))
    return _result(tensor, vs, name, "task_sum", {"coef": coef})


def weighted(vectors: Sequence[TaskPromptVector], weights: Sequence[float]) -> TaskPromptVector:
    """sum_i w_i tau_i, one weight per vector."""
    vs = _as_list(vectors, "weighted")
    ws = list(weights)
    if len(ws) != len(vs):
        raise ValueError(f"weighted: got {len(ws)} weight(s) for {len(vs)} vector(s)")
    ws = [_finite(w, f"weight {i}", "weighted") for i, w in enumerate(ws)]
    coef = torch.tensor(ws, dtype=torch.float64).view(-1, 1, 1)
    tensor = (coef * _stack(vs)).sum(dim=0)
    name = " + ".join(f"{w:g} * {paren(v.name)}" for w, v in zip(ws, vs, strict=True))
    return _result(tensor, vs, name, "weighted", {"weights": ws})


def token_weighted(
    vectors: Sequence[TaskPromptVector], weights: Sequence[Sequence[float]]
) -> TaskPromptVector:
    """sum_i w[i][t] * tau_i[t]: one weight per vector and prompt token (the form that
    tpv.compose fits by gradient descent; stored so the result can be rebuilt exactly)."""
    vs = _as_list(vectors, "token_weighted")
    P = vs[0].shape[0]
    rows = [list(r) for r in weights]
    if len(rows) != len(vs) or any(len(r) != P for r in rows):
        shape = f"{len(rows)} x {sorted({len(r) for r in rows})}"
        raise ValueError(
            f"token_weighted: weights must be {len(vs)} x {P} (vectors x prompt tokens), "
            f"got {shape}"
        )
    rows = [
        [_finite(w, f"weight [{i}][{t}]", "token_weighted") for t, w in enumerate(r)]
        for i, r in enumerate(rows)
    ]
    coef = torch.tensor(rows, dtype=torch.float64).unsqueeze(-1)  # (n, P, 1)
    tensor = (coef * _stack(vs)).sum(dim=0)
    name = _call_name("token_weighted", vs)
    return _result(tensor, vs, name, "token_weighted", {"weights": rows})


def mean(vectors: Sequence[TaskPromptVector]) -> TaskPromptVector:
    """(1/n) sum_i tau_i."""
    vs = _as_list(vectors, "mean")
    return _result(_stack(vs).mean(dim=0), vs, _call_name("mean", vs), "mean", {})


def magnitude_prune(vector: TaskPromptVector, density: float) -> TaskPromptVector:
    """Keep the `density` fraction of entries largest in magnitude; zero the rest."""
    (v,) = _as_list([vector], "magnitude_prune")
    density = _fraction(density, "density", "magnitude_prune", allow_zero=False, allow_one=True)
    name = _call_name("prune", [v], density=density)
    return _result(_trim(v.tensor, density), [v], name, "magnitude_prune", {"density": density})


@_coef_alias
def ties(
    vectors: Sequence[TaskPromptVector], density: float = 0.2, coef: float = 1.0
) -> TaskPromptVector:
    """TIES-merging (Yadav et al. 2023): trim, elect sign, disjoint mean, scale by coef.

    1. trim each vector to its top-`density` fraction of entries by magnitude;
    2. elect a sign per entry: the sign of the sum of the trimmed values;
    3. per entry, average only the trimmed values whose sign matches the elected one.
    """
    vs = _as_list(vectors, "ties")
    density = _fraction(density, "density", "ties", allow_zero=False, allow_one=True)
    coef = _finite(coef, "coef", "ties")
    trimmed = torch.stack([_trim(v.tensor, density) for v in vs])
    tensor = coef * _elect_and_merge(trimmed)
    name = _scaled_name(coef, _call_name("ties", vs, density=density), call=True)
    return _result(tensor, vs, name, "ties", {"density": density, "coef": coef})


def dare_masks(shape: Sequence[int], n: int, drop: float, seed: int) -> list[torch.Tensor]:
    """The keep-masks DARE uses: one seeded torch.Generator, one float64 uniform draw per
    vector in order; an entry survives where its draw is >= drop (so with probability 1-drop).
    """
    gen = torch.Generator().manual_seed(int(seed))
    return [torch.rand(tuple(shape), generator=gen, dtype=torch.float64) >= drop for _ in range(n)]


@_coef_alias
def dare(
    vectors: Sequence[TaskPromptVector],
    drop: float = 0.9,
    seed: int = 0,
    coef: float = 1.0,
    then: str = "sum",
) -> TaskPromptVector:
    """DARE (Yu et al. 2023): drop each entry with probability `drop`, rescale the survivors
    by 1/(1-drop) (so each vector is unchanged in expectation), then combine.

    then="sum": coef * sum of the rescaled vectors.  then="ties": TIES sign election and
    disjoint mean on the rescaled vectors (DARE replaces TIES's magnitude trim), times coef.
    drop=1 would drop everything and divide by zero, so drop must be in [0, 1).
    """
    vs = _as_list(vectors, "dare")
    drop = _fraction(drop, "drop", "dare", allow_zero=True, allow_one=False)
    coef = _finite(coef, "coef", "dare")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"dare: seed must be an integer, got {seed!r}")
    if then not in ("sum", "ties"):
        raise ValueError(f"dare: then must be 'sum' or 'ties', got {then!r}")
    masks = dare_masks(vs[0].shape, len(vs), drop, seed)
    zero = torch.zeros(vs[0].shape, dtype=torch.float64)
    kept = torch.stack(
        [torch.where(m, v.tensor / (1.0 - drop), zero) for m, v in zip(masks, vs, strict=True)]
    )
    merged = kept.sum(dim=0) if then == "sum" else _elect_and_merge(kept)
    name = _scaled_name(coef, _call_name("dare", vs, drop=drop, seed=seed, then=then), call=True)
    params = {"drop": drop, "seed": seed, "coef": coef, "then": then}
    return _result(coef * merged, vs, name, "dare", params)


@_coef_alias
def norm_matched_sum(vectors: Sequence[TaskPromptVector], coef: float = 1.0) -> TaskPromptVector:
    """Scale each vector to the mean norm of the inputs, then coef * sum.

    Keeps one large vector (e.g. a task tuned longer) from drowning the others. A zero
    vector has no direction to scale, so it stays zero (it still counts in the mean norm).
    """
    vs = _as_list(vectors, "norm_matched_sum")
    coef = _finite(coef, "coef", "norm_matched_sum")
    stacked = _stack(vs)
    norms = stacked.flatten(1).norm(dim=1)
    target = norms.mean()
    scale = torch.where(norms > 0, target / norms.clamp(min=torch.finfo(torch.float64).tiny), 0.0)
    tensor = coef * (scale.view(-1, 1, 1) * stacked).sum(dim=0)
    name = _scaled_name(coef, _call_name("normsum", vs), call=True)
    params = {"coef": coef, "target_norm": float(target), "scales": scale.tolist()}
    return _result(tensor, vs, name, "norm_matched_sum", params)


@_coef_alias
def orthogonalized_sum(vectors: Sequence[TaskPromptVector], coef: float = 1.0) -> TaskPromptVector:
    """Gram-Schmidt on the flattened vectors in the given order, then coef * sum.

    The first vector is kept whole; each later one keeps only its part orthogonal to the
    earlier ones (not renormalised), so shared directions are counted once. Order matters.
    """
    vs = _as_list(vectors, "orthogonalized_sum")
    coef = _finite(coef, "coef", "orthogonalized_sum")
    basis: list[torch.Tensor] = []
    parts = []
    for v in vs:
        r = v.tensor.flatten().to(torch.float64).clone()
        original = float(r.norm())
        # Modified Gram-Schmidt: project out each earlier direction from the running residual.
        for u in basis:
            r -= (r @ u) * u
        # A residual at rounding level means v lay in the span of earlier vectors: drop it
        # rather than let noise become a new direction.
        if float(r.norm()) <= 1e-12 * max(original, 1.0) or original == 0:
            r = torch.zeros_like(r)
        else:
            basis.append(r / r.norm())
        parts.append(r)
    tensor = coef * torch.stack(parts).sum(dim=0).view(vs[0].shape)
    name = _scaled_name(coef, _call_name("orthsum", vs), call=True)
    return _result(tensor, vs, name, "orthogonalized_sum", {"coef": coef})


# --- coefficient search ----------------------------------------------------------------------
class SearchResult(NamedTuple):
    """best: the chosen coef (or weights); history: every (point, score) evaluated, in order."""

    best: Any
    history: list[tuple[Any, float]]

    @property
    def best_score(self) -> float:
        return dict(self.history)[self.best]


def _better(score: float, point: Any, best_score: float, best_point: Any) -> bool:
    """Higher score wins; NaN never wins; an exact tie goes to the smaller point."""
    if math.isnan(score):
        return False
    if best_point is None or math.isnan(best_score) or score > best_score:
        return True
    return score == best_score and point < best_point


def search_lambda(
    evaluate: Callable[[float], float], grid: Sequence[float] | None = None
) -> SearchResult:
    """Evaluate every coef in `grid` (default the paper's 0, 0.05, ..., 1.0) and return the best
    (highest score; ties go to the smaller coef) with all (coef, score) pairs.
    """
    points = list(dict.fromkeys(float(x) for x in (PAPER_GRID if grid is None else grid)))
    if not points:
        raise ValueError("search_lambda: the grid is empty")
    history: list[tuple[float, float]] = []
    best, best_score = None, math.nan
    for coef in points:
        score = float(evaluate(coef))
        history.append((coef, score))
        if _better(score, coef, best_score, best):
            best, best_score = coef, score
    if best is None:
        raise ValueError("search_lambda: every evaluation returned NaN")
    return SearchResult(best, history)


def search_weights(
    evaluate: Callable[[tuple[float, ...]], float],
    n: int,
    grid: Sequence[float] | None = None,
    rounds: int = 2,
    *,
    start: Sequence[float] | None = None,
    budget: int | None = None,
) -> SearchResult:
    """Coordinate search over per-vector weights: for each vector in turn, try every grid value
    for its weight with the others fixed and keep the best; repeat for `rounds` passes or until
    a pass changes nothing. Starts from all ones (the plain sum) unless `start` is given, so
    the result never scores below the starting point on `evaluate`.

    Each distinct weight tuple is evaluated once (cached); `budget` caps the number of calls to
    `evaluate`, after which the best point seen so far is returned. Ties keep the current
    weight (so the search stops moving; it can therefore stall where a single-axis move
    only ties), then the smallest tuple among the tied best is returned.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"search_weights: n must be a positive integer, got {n!r}")
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"search_weights: rounds must be a positive integer, got {rounds!r}")
    if budget is not None and budget < 1:
        raise ValueError(f"search_weights: budget must be >= 1, got {budget}")
    values = list(dict.fromkeys(float(x) for x in (PAPER_GRID if grid is None else grid)))
    if not values:
        raise ValueError("search_weights: the grid is empty")
    current = tuple(float(x) for x in (start if start is not None else [1.0] * n))
    if len(current) != n:
        raise ValueError(f"search_weights: start has {len(current)} weight(s), expected {n}")

    cache: dict[tuple[float, ...], float] = {}
    history: list[tuple[tuple[float, ...], float]] = []

    class _Spent(Exception):
        pass

    def score_of(w: tuple[float, ...]) -> float:
        if w not in cache:
            if budget is not None and len(cache) >= budget:
                raise _Spent
            cache[w] = float(evaluate(w))
            history.append((w, cache[w]))
        return cache[w]

    best, best_score = current, score_of(current)
    try:
        for _ in range(rounds):
            moved = False
            for i in range(n):
                for x in values:
                    w = current[:i] + (x,) + current[i + 1 :]
                    s = score_of(w)
                    if not math.isnan(s) and (math.isnan(best_score) or s > best_score):
                        best, best_score = w, s
                if best != current:
                    current, moved = best, True
            if not moved:
                break
    except _Spent:
        pass
    # Among points with the best score seen, return the smallest (deterministic tie-break).
    for w, s in history:
        if _better(s, w, best_score, best):
            best, best_score = w, s
    return SearchResult(best, history)


# --- the registry: every way to combine vectors, read by the CLI, the runner and compose -------
def _prune_one(vectors: Sequence[TaskPromptVector], density: float) -> TaskPromptVector:
    vs = list(vectors)
    if len(vs) != 1:
        raise ValueError(f"prune: takes exactly one vector, got {len(vs)}")
    return magnitude_prune(vs[0], density)


METHODS: dict[str, Callable[..., TaskPromptVector]] = {
    "sum": task_sum,
    "weighted": weighted,
    "token_weighted": token_weighted,
    "mean": mean,
    "ties": ties,
    "dare": dare,
    "prune": _prune_one,
    "norm_sum": norm_matched_sum,
    "orth_sum": orthogonalized_sum,
}


# Beyond the arithmetic METHODS (one vector out, scaled by a searched coefficient):
SEARCHED = ("weights",)  # one weight per vector, coordinate search on the score
PROMPT_METHODS = ("concat",)  # not arithmetic: the tuned prompts one after the other
FITTED = ("coefficients", "joint")  # fitted on the tasks' train examples (tpv.compose)
ALL_METHODS: tuple[str, ...] = (*METHODS, *SEARCHED, *PROMPT_METHODS, *FITTED)


def concat(
    vectors: Sequence[TaskPromptVector], origin: Origin, names: Sequence[str] | None = None
) -> SoftPrompt:
    """Each vector's tuned prompt (origin + tau), one after the other: n * P tokens."""
    vs = _as_list(vectors, "concat")
    names = list(names) if names is not None else [v.name for v in vs]
    tuned = [v.apply(origin).tensor for v in vs]
    return SoftPrompt(torch.cat(tuned), origin.model, name=" | ".join(names), tasks=tuple(names))


def combine_prompt(
    method: str,
    vectors: Sequence[TaskPromptVector],
    origin: Origin,
    coef: float = 1.0,
    *,
    names: Sequence[str] | None = None,
    **params: Any,
) -> SoftPrompt:
    """The prompt of a registered method at a given coefficient (no search)."""
    if method == "concat":
        return concat(vectors, origin, names)
    if method in SEARCHED or method in FITTED:
        raise ValueError(
            f"method {method!r} chooses its coefficients on a score: search it "
            "(combine_searched, tpv combine --search), or use 'weighted' with weights=[...]"
        )
    return combine(method, vectors, **params).apply(origin, coef)


def combine_searched(
    method: str,
    vectors: Sequence[TaskPromptVector],
    origin: Origin,
    score: Callable[[SoftPrompt], float],
    grid: Sequence[float] | None = None,
    *,
    names: Sequence[str] | None = None,
    **params: Any,
) -> tuple[SoftPrompt, SearchResult]:
    """The prompt of any registered method (but the fitted ones, see `tpv.compose`) with its
    coefficient(s) chosen by `score` over `grid` (default the paper's grid): a lambda for the
    arithmetic methods, one weight per vector for "weights", nothing for "concat"."""
    if method in FITTED:
        raise ValueError(f"method {method!r} is fitted on examples: use tpv.compose.fit_multitask")
    if method == "concat":
        return concat(vectors, origin, names), SearchResult(None, [])
    if method == "weights":
        search = search_weights(
            lambda w: score(weighted(vectors, w).apply(origin)),
            len(vectors),
            PAPER_GRID if grid is None else grid,
            params.get("rounds", 2),
            budget=params.get("budget"),
        )
        return weighted(vectors, search.best).apply(origin), search

    def prompt_for(coef: float) -> SoftPrompt:
        return combine(method, vectors, **params).apply(origin, coef)

    search = search_lambda(lambda coef: score(prompt_for(coef)), grid)
    return prompt_for(search.best), search


def combine(method: str, vectors: Sequence[TaskPromptVector], **params: Any) -> TaskPromptVector:
    """Run a method from METHODS by name; unknown names and parameters get a clear error."""
    params = _lam_alias(params, f"combine({method!r})")
    if method not in METHODS:
        raise ValueError(f"unknown combination method {method!r}; choose from {sorted(METHODS)}")
    fn = METHODS[method]
    from tpv.learned import warn_unlearned

    warn_unlearned(vectors, f"combine ({method})")
    try:
        inspect.signature(fn).bind(vectors, **params)
    except TypeError as e:
        accepted = [p for p in inspect.signature(fn).parameters if p != "vectors"]
        raise ValueError(f"method {method!r} takes parameters {accepted}; {e}") from None
    return fn(vectors, **params)
