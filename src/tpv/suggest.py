"""Which of my vectors should start this new task? Rank candidates from a few target examples.

Two signals, both cheap:
  zero-shot   the score of origin + lam * tau on the k target examples (lam from a small grid):
              does this vector already do something useful for the target?
  similarity  cosine between tau and a probe vector from a brief tuning run on the same k
              examples (SPoT-style retrieval). FINDINGS.md warns that vectors of one task from
              different origins are nearly orthogonal, so this signal is reported, not trusted.
The proposal: the top-m vectors by zero-shot score, with per-vector weights searched on the same
examples (starting from the best single vector, so it never scores below it on them). Vectors
whose weight ends at 0 are left out of the proposal (and of its name and tasks).

When every candidate scores the same on the k examples, the examples cannot tell them apart:
a warning says so, and the proposal is the best-ranked single vector (ties broken by name) if
that tie beats the bare origin, else the origin itself, named "origin" (never "0 * a + 0 * b").
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from tpv import merge
from tpv.learned import warn_unlearned
from tpv.vectors import Origin, SoftPrompt, TaskPromptVector

log = logging.getLogger(__name__)
ScoreFn = Callable[[SoftPrompt], float]


@dataclass
class Ranked:
    name: str
    zero_shot: float
    lam: float
    cosine: float | None = None


@dataclass
class Suggestion:
    ranking: list[Ranked]
    chosen: list[str]  # empty: the proposal is the bare origin
    weights: tuple[float, ...]
    score: float  # of the proposed prompt on the k examples
    baseline: float  # of the bare origin on the k examples
    history: list = field(default_factory=list)
    examples: int = 0  # how many target examples the ranking saw
    note: str | None = None  # why the proposal is not a searched combination (ties)

    def vector(self, candidates: Mapping[str, TaskPromptVector]) -> TaskPromptVector | None:
        if not self.chosen:
            return None
        return merge.weighted([candidates[n] for n in self.chosen], self.weights)

    def prompt(self, candidates: Mapping[str, TaskPromptVector], origin: Origin) -> SoftPrompt:
        v = self.vector(candidates)
        if v is None:
            return SoftPrompt(
                origin.tensor,
                origin.model,
                name="origin",
                origin_id=origin.id,
                record={"made_by": "suggest", "note": self.note},
            )
        return v.apply(origin)

    def as_dict(self) -> dict:
        return {
            "chosen": self.chosen,
            "weights": list(self.weights),
            "score": self.score,
            "origin_score": self.baseline,
            "ranking": [r.__dict__ for r in self.ranking],
            **({"note": self.note} if self.note else {}),
        }


def rank_by_zero_shot(
    candidates: Mapping[str, TaskPromptVector],
    origin: Origin,
    score: ScoreFn,
    grid: Sequence[float] = (0.5, 1.0),
) -> list[Ranked]:
    """Candidates by their best score on the target examples over `grid` (ties: name order)."""
    if not candidates:
        raise ValueError("suggest: no candidate vectors (is the library empty for this model?)")
    ranked = []
    for name, tau in candidates.items():
        res = merge.search_lambda(lambda lam, tau=tau: score(tau.apply(origin, lam)), grid)
        ranked.append(Ranked(name, res.best_score, res.best))
        log.info("suggest: %s zero-shot %.4f at lambda %g", name, ranked[-1].zero_shot, res.best)
    return sorted(ranked, key=lambda r: (-r.zero_shot, r.name))


def add_similarity(
    ranked: list[Ranked], candidates: Mapping[str, TaskPromptVector], probe: TaskPromptVector
) -> None:
    for r in ranked:
        r.cosine = candidates[r.name].cosine(probe)


def suggest(
    candidates: Mapping[str, TaskPromptVector],
    origin: Origin,
    score: ScoreFn,
    *,
    top: int = 2,
    grid: Sequence[float] = (0.5, 1.0),
    weight_grid: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 1.0),
    rounds: int = 1,
    probe: TaskPromptVector | None = None,
) -> Suggestion:
    """Rank the candidates and propose a weighted combination of the top `top`."""
    warn_unlearned(candidates.values(), "suggest")
    ranking = rank_by_zero_shot(candidates, origin, score, grid)
    if probe is not None:
        add_similarity(ranking, candidates, probe)
    baseline = score(origin.as_prompt())
    if len(ranking) > 1 and len({r.zero_shot for r in ranking}) == 1:
        return _tied(ranking, baseline)
    chosen = [r.name for r in ranking[:top]]
    vectors = [candidates[n] for n in chosen]
    # Start from the best single vector at its lambda: the search can only improve on it.
    start = tuple([ranking[0].lam] + [0.0] * (len(chosen) - 1))
    res = merge.search_weights(
        lambda w: score(merge.weighted(vectors, w).apply(origin)),
        len(vectors),
        weight_grid,
        rounds,
        start=start,
    )
    best_score = res.best_score
    kept = [(n, w) for n, w in zip(chosen, res.best, strict=True) if w != 0]
    return Suggestion(
        ranking,
        [n for n, _ in kept],
        tuple(w for _, w in kept),
        best_score,
        baseline,
        res.history,
        note=None if kept else "the weight search ended at all zeros: the origin",
    )


def _tied(ranking: list[Ranked], baseline: float) -> Suggestion:
    """Every candidate scored the same: no combination can be chosen on these examples."""
    tie = ranking[0].zero_shot
    if tie > baseline:
        best = ranking[0]
        note = (
            f"every candidate scores {tie:.4f} on the examples: they cannot be told apart; "
            f"proposing {best.name!r} alone (first by name), which beats the origin's "
            f"{baseline:.4f}"
        )
        log.warning("suggest: %s", note)
        return Suggestion(ranking, [best.name], (best.lam,), tie, baseline, note=note)
    note = (
        f"every candidate scores {tie:.4f} on the examples (the origin {baseline:.4f}): they "
        "cannot be told apart and none beats the origin; proposing the origin itself"
    )
    log.warning("suggest: %s", note)
    return Suggestion(ranking, [], (), baseline, baseline, note=note)


def suggest_for_task(
    backbone,
    task,
    candidates: Mapping[str, TaskPromptVector],
    origin: Origin,
    *,
    shots: int,
    shots_seed: int = 0,
    top: int = 2,
    probe_steps: int = 0,
    scorer: str = "rank",
    max_input_tokens: int = 256,
) -> Suggestion:
    """`suggest` on k examples per class of `task`'s train split (never validation or test).
    With `probe_steps`, a probe prompt is tuned that long on the same examples and every
    candidate's cosine to its vector is reported beside the ranking."""
    from tpv.evaluate import Evaluator
    from tpv.tasks.fewshot import sample_k_shot

    rows = sample_k_shot(task.split("train"), shots, seed=shots_seed)
    ev = Evaluator(backbone, task, rows, scorer=scorer, max_input_tokens=max_input_tokens)
    probe = None
    if probe_steps:
        probe = _probe_vector(backbone, task, origin, probe_steps, shots, shots_seed)
    s = suggest(candidates, origin, lambda p: ev(p)["score"], top=top, probe=probe)
    s.examples = len(rows)
    return s


def _probe_vector(backbone, task, origin: Origin, steps: int, shots: int, shots_seed: int):
    """A brief tuning run from `origin` on the k examples: the probe's task prompt vector."""
    import tempfile
    from pathlib import Path

    from tpv.train import TrainConfig, train

    with tempfile.TemporaryDirectory() as d:
        cfg = TrainConfig(
            task=task.name,
            out=str(Path(d) / "probe"),  # beside the origin file: a run dir holds only a run
            num_tokens=origin.num_tokens,
            max_steps=steps,
            eval_every=steps,
            shots=shots,
            shots_seed=shots_seed,
            init=[str(origin.save(Path(d) / "origin.safetensors"))],
            test_examples=1,
        )
        return train(cfg, backbone=backbone, task=task, progress=False).vector
