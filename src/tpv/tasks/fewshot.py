"""Seeded sampling: few-shot training sets and stratified splits.

Everything here is a pure function of (examples, sizes, seed): the same call returns the same
rows, so every method compared on one seed sees the same shots and the same splits.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from .base import Example, TaskError

log = logging.getLogger(__name__)


def _by_class(labels: Sequence[int]) -> dict[int, list[int]]:
    groups: dict[int, list[int]] = {}
    for i, label in enumerate(labels):
        groups.setdefault(int(label), []).append(i)
    return dict(sorted(groups.items()))


def _allocate(total: int, capacities: dict[int, int]) -> dict[int, int]:
    """Spread `total` over classes as evenly as their sizes allow (water-filling).

    Classes too small for an equal share give what they have; the rest is shared by the
    others. Leftover single units go to unsaturated classes in label order (deterministic).
    """
    remaining = min(total, sum(capacities.values()))
    take: dict[int, int] = {}
    order = sorted(capacities, key=lambda c: (capacities[c], c))  # smallest classes first
    for j, c in enumerate(order):
        take[c] = min(capacities[c], remaining // (len(order) - j))
        remaining -= take[c]
    for c in sorted(capacities):
        if remaining == 0:
            break
        if take[c] < capacities[c]:
            take[c] += 1
            remaining -= 1
    return take


def sample_k_shot(
    examples: Sequence[Example], k: int, seed: int, per_class: bool = True
) -> list[Example]:
    """Draw a seeded few-shot set.

    per_class=True: k examples of each class (all of a class when it has fewer; logged).
    per_class=False: k examples in total, spread over classes as evenly as possible.
    Within a class the draw is a prefix of one seeded permutation, so the k=5 set is contained
    in the k=10 set for the same seed. The result is shuffled (seeded) so classes interleave.
    """
    if k < 0:
        raise TaskError(f"k must be >= 0, got {k}")
    if k == 0 or not examples:
        return []
    rng = np.random.default_rng(seed)
    groups = _by_class([ex.label for ex in examples])
    # One permutation per class, drawn in label order: independent of k, hence nested sets.
    perms = {c: [idx[i] for i in rng.permutation(len(idx))] for c, idx in groups.items()}
    if per_class:
        counts = {c: min(k, len(idx)) for c, idx in perms.items()}
        short = {c: len(idx) for c, idx in perms.items() if len(idx) < k}
        if short:
            log.warning("k=%d per class, but some classes have fewer examples: %s", k, short)
    else:
        counts = _allocate(k, {c: len(idx) for c, idx in perms.items()})
    chosen = [i for c, idx in perms.items() for i in idx[: counts[c]]]
    order = np.random.default_rng([seed, len(chosen)]).permutation(len(chosen))
    return [examples[chosen[j]] for j in order]


def stratified_split(
    labels: Sequence[int], first_size: int, seed: int
) -> tuple[list[int], list[int]]:
    """Indices of a seeded stratified draw of `first_size` rows, and of the rest.

    Each class contributes in proportion to its share (largest remainders round up). A class
    with at least two rows whose share rounds to zero still gets one row in the first part when
    `first_size` is at least the number of classes (small validation splits would otherwise
    lose rare classes). Both index lists come back sorted: row order is kept within each part.
    """
    n = len(labels)
    if not 0 <= first_size <= n:
        raise TaskError(f"cannot draw {first_size} rows out of {n}")
    rng = np.random.default_rng(seed)
    groups = _by_class(labels)
    exact = {c: first_size * len(idx) / n for c, idx in groups.items()} if n else {}
    quota = {c: int(v) for c, v in exact.items()}
    short = first_size - sum(quota.values())
    for c in sorted(exact, key=lambda c: (quota[c] - exact[c], c))[:short]:
        quota[c] += 1
    # Keep both sides non-empty for a class when possible: tiny splits otherwise lose classes.
    for c, idx in groups.items():
        if quota[c] == 0 and len(idx) >= 2 and first_size >= len(groups):
            donor = max(quota, key=lambda d: (quota[d] - 1 if quota[d] > 1 else -1, -d))
            if quota[donor] > 1:
                quota[donor] -= 1
                quota[c] = 1
    first: list[int] = []
    for c, idx in groups.items():
        perm = rng.permutation(len(idx))
        first.extend(idx[i] for i in perm[: quota[c]])
    first.sort()
    chosen = set(first)
    rest = [i for i in range(n) if i not in chosen]
    return first, rest


def subsample(rows: Sequence[Example], n: int | None, seed: int = 0) -> list[Example]:
    """`n` rows drawn at random (seeded), in their original order; all rows when n is None.

    Use this, never `rows[:n]`, to cap a split: corpora often come sorted by class (BBC read
    folder by folder, tweets by sentiment, DBpedia's test set), so a prefix can be one class.
    """
    rows = list(rows)
    if n is None or n >= len(rows):
        return rows
    keep = sorted(np.random.default_rng(seed).permutation(len(rows))[:n].tolist())
    return [rows[i] for i in keep]
