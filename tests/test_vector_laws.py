"""Property tests: the laws task prompt vectors should obey, over generated shapes and values.

Tolerances are stated per law: vectors are float64, so exact laws (commutativity, 1*a, a-a)
are checked with torch.equal and rounding laws (associativity, distributivity) with a bound of
a few float64 ulps of the operands' magnitudes, never a loose absolute atol.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tpv.vectors import Origin, SoftPrompt, TaskPromptVector, load, sum_vectors

EPS = torch.finfo(torch.float64).eps
LAWS = settings(max_examples=150, deadline=None)

shapes = st.tuples(st.integers(1, 4), st.integers(1, 6))
# Every finite float32, subnormals and the extremes included.
f32 = st.floats(width=32, allow_nan=False, allow_infinity=False)


# Vectors are differences of float32 prompts: 0 or 1e-45 <= |x| <= 6.8e38. Coefficients are
# 0 or 1e-6 <= |c| <= 1e3. Inside these ranges every product stays a normal float64, so the
# rounding bounds below hold; with coefficients like 1e-274 products go subnormal and lose
# relative precision (hypothesis finds that at once), which no real use comes near.
def _signed(lo: float, hi: float) -> st.SearchStrategy[float]:
    return st.just(0.0) | st.floats(lo, hi) | st.floats(-hi, -lo)


f64 = _signed(1e-45, 1e38)
coefs = _signed(1e-6, 1e3)


def tensor_of(shape, elements, dtype):
    n = shape[0] * shape[1]
    return st.lists(elements, min_size=n, max_size=n).map(
        lambda xs: torch.tensor(xs, dtype=dtype).reshape(shape)
    )


@st.composite
def vectors(draw, k: int = 1, shape=None, model: str = "m"):
    shape = shape or draw(shapes)
    out = []
    for i in range(k):
        t = draw(tensor_of(shape, f64, torch.float64))
        out.append(TaskPromptVector(t, model, name=f"t{i}", tasks=(f"t{i}",), origin_ids=("o",)))
    return out


def close(lhs: torch.Tensor, rhs: torch.Tensor, scale: torch.Tensor, ulps: float = 4) -> bool:
    """|lhs - rhs| <= ulps * eps * scale elementwise (scale: sum of the operands' magnitudes)."""
    return bool(((lhs - rhs).abs() <= ulps * EPS * scale).all())


# --- apply(origin, 1) gives the tuned prompt back --------------------------------------------
# float64 holds t - o exactly when the exponents of o and t differ by at most 28 (53 - 24 - 1
# spare bits), and then o + (t - o) == t exactly. When |t| is more than ~2^28 times smaller than
# |o| (e.g. o = 0.1, t = 1e-12), t - o rounds and the round trip is off by up to half an ulp
# of o in float64, which is many float32 ulps of t. Hypothesis finds that within seconds over
# independent full-range pairs, so the exact law is stated for pairs inside the bound; the
# strict xfail below pins the counterexample so the comment cannot go stale.
def _exact_pair(pair: tuple[float, float]) -> bool:
    o, t = pair
    return t == 0.0 or abs(o) < 2.0**28 * abs(t)


@st.composite
def origin_and_tuned(draw):
    p, h = draw(shapes)
    pairs = draw(st.lists(st.tuples(f32, f32).filter(_exact_pair), min_size=p * h, max_size=p * h))
    o = torch.tensor([a for a, _ in pairs], dtype=torch.float32).reshape(p, h)
    t = torch.tensor([b for _, b in pairs], dtype=torch.float32).reshape(p, h)
    return Origin(o, "m"), SoftPrompt(t, "m", name="task")


@LAWS
@given(origin_and_tuned())
def test_apply_with_coef_one_reproduces_the_tuned_prompt(pair):
    origin, tuned = pair
    back = TaskPromptVector.from_prompts(tuned, origin).apply(origin, 1)
    assert back.tensor.dtype == torch.float32
    assert torch.equal(back.tensor, tuned.tensor)
    # Bit for bit, except that a tuned -0.0 comes back as +0.0 (equal values; the vector
    # cannot carry the sign of a zero result).
    nonzero = tuned.tensor != 0
    assert torch.equal(
        back.tensor.view(torch.int32)[nonzero], tuned.tensor.view(torch.int32)[nonzero]
    )


@st.composite
def near_bound(draw):
    # Stress the bound itself: |o| / |t| in [2^20, 2^28), random mantissas and signs.
    t = draw(st.floats(min_value=2.0**-100, max_value=2.0**100, width=32))
    k = draw(st.integers(20, 27))
    m = draw(st.floats(min_value=1.0, max_value=1.75, width=32))
    o = float(torch.tensor(t * m * 2.0**k, dtype=torch.float32))
    sign = draw(st.sampled_from([-1.0, 1.0]))
    return o * sign, t


@LAWS
@given(st.lists(near_bound(), min_size=1, max_size=8))
def test_apply_round_trip_holds_up_to_the_stated_bound(pairs):
    pairs = [p for p in pairs if _exact_pair(p) and math.isfinite(p[0])]
    if not pairs:
        return
    o = torch.tensor([[a for a, _ in pairs]], dtype=torch.float32)
    t = torch.tensor([[b for _, b in pairs]], dtype=torch.float32)
    origin = Origin(o, "m")
    back = TaskPromptVector.from_prompts(SoftPrompt(t, "m"), origin).apply(origin)
    assert torch.equal(back.tensor, t)


@pytest.mark.xfail(strict=True, reason="|t| << |o|: t - o is not exact in float64 (see above)")
def test_apply_round_trip_known_limit():
    origin = Origin(torch.tensor([[0.1]]), "m")
    tuned = SoftPrompt(torch.tensor([[1e-12]]), "m")
    back = TaskPromptVector.from_prompts(tuned, origin).apply(origin)
    assert torch.equal(back.tensor, tuned.tensor)


# --- addition ---------------------------------------------------------------------------------
@LAWS
@given(vectors(k=2))
def test_add_then_subtract_gives_back_a(vs):
    a, b = vs
    back = (a + b) - b
    assert close(back.tensor, a.tensor, a.tensor.abs() + b.tensor.abs(), ulps=2)


@LAWS
@given(vectors(k=2))
def test_addition_commutes_exactly(vs):
    a, b = vs
    assert torch.equal((a + b).tensor, (b + a).tensor)
    assert set((a + b).tasks) == set((b + a).tasks)


@LAWS
@given(vectors(k=3))
def test_addition_associates_within_rounding(vs):
    a, b, c = vs
    lhs, rhs = ((a + b) + c).tensor, (a + (b + c)).tensor
    assert close(lhs, rhs, a.tensor.abs() + b.tensor.abs() + c.tensor.abs())


@LAWS
@given(vectors(k=4))
def test_sum_of_one_is_itself_and_builtin_sum_matches_sum_vectors(vs):
    assert sum([vs[0]]) is vs[0]
    assert torch.equal(sum_vectors([vs[0]]).tensor, vs[0].tensor)
    assert torch.equal(sum(vs).tensor, sum_vectors(vs).tensor)
    expected = vs[0].tensor + vs[1].tensor + vs[2].tensor + vs[3].tensor
    assert torch.equal(sum(vs).tensor, expected)


@LAWS
@given(vectors(k=1))
def test_a_minus_a_is_zero_and_negation_is_minus_one_times(vs):
    (a,) = vs
    assert torch.equal((a - a).tensor, torch.zeros_like(a.tensor))
    assert torch.equal((-a).tensor, (-1 * a).tensor)
    assert torch.equal((-a).__neg__().tensor, a.tensor)
    assert torch.equal((a + (-a)).tensor, torch.zeros_like(a.tensor))


# --- scalars ----------------------------------------------------------------------------------
@LAWS
@given(vectors(k=1), coefs, coefs)
def test_scalar_laws(vs, s, t):
    (a,) = vs
    assert torch.equal((1 * a).tensor, a.tensor)
    assert torch.equal((0 * a).tensor, torch.zeros_like(a.tensor))
    lhs, rhs = ((s * t) * a).tensor, (s * (t * a)).tensor
    assert close(lhs, rhs, abs(s * t) * a.tensor.abs(), ulps=2)
    if t != 0:
        # Division is multiplication by 1/t: within a couple of ulps of the true quotient.
        assert close((a / t).tensor, a.tensor / t, a.tensor.abs() / abs(t), ulps=2)


@LAWS
@given(vectors(k=2), coefs)
def test_scalar_distributes_over_addition(vs, s):
    a, b = vs
    lhs, rhs = (s * (a + b)).tensor, (s * a + s * b).tensor
    assert close(lhs, rhs, abs(s) * (a.tensor.abs() + b.tensor.abs()))


@LAWS
@given(vectors(k=2), coefs, coefs)
def test_sum_of_scalars_distributes(vs, s, t):
    (a, _) = vs
    lhs, rhs = ((s + t) * a).tensor, (s * a + t * a).tensor
    assert close(lhs, rhs, (abs(s) + abs(t)) * a.tensor.abs())


# --- cosine -----------------------------------------------------------------------------------
any_f64 = st.floats(allow_nan=False, allow_infinity=False)


@LAWS
@given(
    shapes.flatmap(lambda s: st.tuples(*[tensor_of(s, any_f64, torch.float64)] * 2)),
    st.floats(min_value=1e-3, max_value=1e3),
)
def test_cosine_is_bounded_symmetric_and_scale_invariant(ts, c):
    # Any finite float64 here, subnormals and 1e308 included: cosine scales before the norms.
    a, b = (TaskPromptVector(t, "m") for t in ts)
    cab = a.cosine(b)
    assert -1.0 <= cab <= 1.0
    assert cab == pytest.approx(b.cosine(a), abs=1e-12)
    scaled = (c * a).tensor
    # c * 9e307 overflows (not a vector any more); c * a subnormal loses precision, and 0.5 *
    # 4.9e-324 underflows to 0 (another direction): scale invariance holds where neither happens.
    tiny = torch.finfo(torch.float64).tiny
    nonzero = a.tensor != 0
    exact = bool((scaled[nonzero].abs() >= tiny).all() and (a.tensor[nonzero].abs() >= tiny).all())
    if torch.isfinite(scaled).all() and exact:
        assert (c * a).cosine(b) == pytest.approx(cab, abs=1e-9)
    if a.norm() > 0:
        assert a.cosine(a) == pytest.approx(1.0, abs=1e-12)
        assert a.cosine(-a) == pytest.approx(-1.0, abs=1e-12)


# --- provenance -------------------------------------------------------------------------------
origin_ids = st.lists(st.sampled_from(["o1", "o2", "o3"]), min_size=1, max_size=3, unique=True)


@LAWS
@given(origin_ids, origin_ids)
def test_origins_are_unioned_in_order_and_mixing_is_flagged(ids_a, ids_b):
    a = TaskPromptVector(torch.ones(1, 2), "m", name="a", origin_ids=tuple(ids_a))
    b = TaskPromptVector(torch.ones(1, 2), "m", name="b", origin_ids=tuple(ids_b))
    for combined in (a + b, a - b):
        expected = tuple(dict.fromkeys(ids_a + ids_b))
        assert combined.origin_ids == expected
        assert combined.metadata()["mixed_origins"] is (len(expected) > 1)
    applied = (a + b).apply(Origin(torch.zeros(1, 2), "m"))
    assert applied.record["cross_origin"] is True  # a zero origin's id is none of o1..o3


# --- files ------------------------------------------------------------------------------------
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10)
)
records = st.dictionaries(
    st.text(max_size=8),
    st.recursive(
        json_scalars,
        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
        max_leaves=8,
    ),
    max_size=4,
)
names = st.text(max_size=30)


@st.composite
def saved_objects(draw):
    shape = draw(shapes)
    kind = draw(st.sampled_from(["origin", "prompt", "vector"]))
    model = draw(st.text(min_size=1, max_size=20))
    if kind == "origin":
        t = draw(tensor_of(shape, f32, torch.float32))
        return Origin(
            t,
            model,
            strategy=draw(st.sampled_from(["vocab", "uniform", "text"])),
            seed=draw(st.integers(0, 2**32)),
            params=draw(records),
        )
    if kind == "prompt":
        t = draw(tensor_of(shape, f32, torch.float32))
        return SoftPrompt(
            t,
            model,
            name=draw(names),
            origin_id=draw(st.none() | st.text()),
            tasks=tuple(draw(st.lists(names, max_size=3))),
            record=draw(records),
        )
    # Vectors: any finite float64, -0.0 and subnormals included.
    t = draw(tensor_of(shape, st.floats(allow_nan=False, allow_infinity=False), torch.float64))
    return TaskPromptVector(
        t,
        model,
        name=draw(names),
        tasks=tuple(draw(st.lists(names, max_size=3))),
        origin_ids=tuple(draw(st.lists(st.text(max_size=16), max_size=3))),
        record=draw(records),
    )


def bits(t: torch.Tensor) -> torch.Tensor:
    return t.view(torch.int64 if t.dtype == torch.float64 else torch.int32)


@settings(max_examples=100, deadline=None)
@given(saved_objects())
def test_save_load_round_trip_is_bit_exact_with_all_metadata(obj):
    with tempfile.TemporaryDirectory() as d:
        path = obj.save(Path(d) / "x.safetensors")
        back = load(path)
        again = type(obj).load(path)
    assert type(back) is type(obj) and type(again) is type(obj)
    assert back.tensor.dtype == obj.tensor.dtype
    assert torch.equal(bits(back.tensor), bits(obj.tensor))  # -0.0 keeps its sign on disk
    assert back.metadata() == obj.metadata()
    if isinstance(obj, Origin):
        assert back.id == obj.id
