"""Seeded few-shot sampling and stratified splits."""

from __future__ import annotations

import logging
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tpv.tasks import Example, TaskError, sample_k_shot, stratified_split
from tpv.tasks.fewshot import subsample


def pool(counts: dict[int, int]) -> list[Example]:
    return [
        Example(fields={"text": f"c{c} #{i}"}, label=c) for c, n in counts.items() for i in range(n)
    ]


def texts(examples):
    return [ex.fields["text"] for ex in examples]


def test_k_per_class():
    shots = sample_k_shot(pool({0: 50, 1: 30, 2: 20}), k=5, seed=0)
    assert Counter(ex.label for ex in shots) == {0: 5, 1: 5, 2: 5}


def test_same_seed_same_shots_other_seed_other_shots():
    data = pool({0: 100, 1: 100})
    assert texts(sample_k_shot(data, 8, seed=3)) == texts(sample_k_shot(data, 8, seed=3))
    assert set(texts(sample_k_shot(data, 8, seed=3))) != set(texts(sample_k_shot(data, 8, seed=4)))


def test_smaller_k_is_a_subset_of_larger_k():
    data = pool({0: 40, 1: 40, 2: 40})
    small = set(texts(sample_k_shot(data, 5, seed=7)))
    big = set(texts(sample_k_shot(data, 10, seed=7)))
    assert small < big


def test_result_interleaves_classes():
    shots = sample_k_shot(pool({0: 50, 1: 50}), k=20, seed=1)
    labels = [ex.label for ex in shots]
    assert labels != sorted(labels)  # not 20 zeros then 20 ones


def test_class_shortfall_takes_all_and_logs(caplog):
    with caplog.at_level(logging.WARNING):
        shots = sample_k_shot(pool({0: 10, 1: 3}), k=5, seed=0)
    assert Counter(ex.label for ex in shots) == {0: 5, 1: 3}
    assert "fewer examples" in caplog.text


def test_k_total_class_balanced():
    shots = sample_k_shot(pool({0: 50, 1: 50, 2: 50}), k=10, seed=0, per_class=False)
    assert len(shots) == 10
    assert sorted(Counter(ex.label for ex in shots).values()) == [3, 3, 4]


def test_k_total_redistributes_when_a_class_is_small():
    shots = sample_k_shot(pool({0: 50, 1: 2}), k=10, seed=0, per_class=False)
    assert Counter(ex.label for ex in shots) == {0: 8, 1: 2}


def test_zero_and_negative_k():
    assert sample_k_shot(pool({0: 3, 1: 3}), 0, seed=0) == []
    with pytest.raises(TaskError, match="k must be >= 0"):
        sample_k_shot(pool({0: 3, 1: 3}), -1, seed=0)


def test_stratified_split_proportions():
    labels = [0] * 80 + [1] * 20
    first, rest = stratified_split(labels, 10, seed=0)
    assert Counter(labels[i] for i in first) == {0: 8, 1: 2}
    assert sorted(first + rest) == list(range(100))


def test_stratified_split_keeps_rare_class_on_both_sides():
    labels = [0] * 97 + [1] * 3
    first, rest = stratified_split(labels, 10, seed=0)
    assert {labels[i] for i in first} == {0, 1}
    assert {labels[i] for i in rest} == {0, 1}


def test_stratified_split_rejects_impossible_size():
    with pytest.raises(TaskError, match="cannot draw 5 rows out of 3"):
        stratified_split([0, 1, 0], 5, seed=0)


@settings(max_examples=60, deadline=None)
@given(
    labels=st.lists(st.integers(0, 4), min_size=1, max_size=200),
    frac=st.floats(0, 1),
    seed=st.integers(0, 2**31),
)
def test_stratified_split_is_a_seeded_partition(labels, frac, seed):
    size = int(frac * len(labels))
    first, rest = stratified_split(labels, size, seed)
    assert len(first) == size
    assert sorted(first + rest) == list(range(len(labels)))
    assert (first, rest) == stratified_split(labels, size, seed)
    # Each class gets its proportional share, give or take one (plus rare-class top-ups).
    n_classes = len(set(labels))
    for c in set(labels):
        share = size * labels.count(c) / len(labels)
        got = sum(1 for i in first if labels[i] == c)
        assert abs(got - share) <= 1 + n_classes


@settings(max_examples=40, deadline=None)
@given(
    counts=st.dictionaries(st.integers(0, 5), st.integers(1, 30), min_size=1, max_size=6),
    k=st.integers(0, 40),
    seed=st.integers(0, 2**31),
)
def test_k_total_never_exceeds_k_and_is_deterministic(counts, k, seed):
    data = pool(counts)
    shots = sample_k_shot(data, k, seed, per_class=False)
    assert len(shots) == min(k, len(data))
    assert texts(shots) == texts(sample_k_shot(data, k, seed, per_class=False))
    assert len(set(texts(shots))) == len(shots)
    got = Counter(ex.label for ex in shots)
    # Balanced: a class below the largest share is below only because it ran out of rows.
    if got:
        top = max(got.values())
        for c, n in counts.items():
            assert got.get(c, 0) >= min(n, top - 1)


def test_subsample_of_a_class_sorted_split_covers_every_class():
    rows = [Example({"text": f"r{i}"}, i // 10) for i in range(50)]  # sorted by class, 5 x 10
    pick = subsample(rows, 20, seed=0)
    assert len(pick) == 20 and len({e.label for e in pick}) == 5
    assert pick == subsample(rows, 20, seed=0)  # seeded
    assert [rows.index(e) for e in pick] == sorted(rows.index(e) for e in pick)  # order kept
    assert subsample(rows, None) == rows and subsample(rows, 99) == rows
