"""Claim 1's controls: what a task prompt vector does without the origin it was trained from.

Besides "own" (tau on the origin it was trained from, i.e. the tuned prompt itself) and "other"
(tau on another seeded origin), the cross_origin stage can score:
  zero    the vector alone: prompt = tau (tau added to an all-zero origin)
  random  tau on a random origin of the same norm as its own origin: i.i.d. standard normal
          entries (a CPU torch generator seeded with RANDOM_ORIGIN_SEED + the vector's origin
          seed, float32, the origin's shape), rescaled to norm(own origin). A direction with no
          vocabulary structure, so "other" and "random" tell apart an origin that matters by its
          norm from one that matters by what it is.
If the score survives "zero", the origin plays no part (the vector dominates: at lr 0.3,
norm(tau) is 10-12x norm(origin)); a claim that tau transfers across origins means something
only where the zero control falls.
"""

from __future__ import annotations

from typing import Any

RANDOM_ORIGIN_SEED = 1_000_000
# Part of the job settings: a change of how the random origin is drawn makes its rows stale.
RANDOM_ORIGIN_RULE = "normal iid, seeded, scaled to norm(own origin); v1"


def random_origin_seed(from_seed: int) -> int:
    return RANDOM_ORIGIN_SEED + from_seed


def control_settings(params: dict[str, Any]) -> dict[str, Any]:
    """What a control job depends on beyond its source prompt (tpv.experiments.grid)."""
    if params["control"] == "zero":
        return {"control": "zero"}
    return {
        "control": "random",
        "random_origin": {
            "rule": RANDOM_ORIGIN_RULE,
            "seed": random_origin_seed(params["from_seed"]),
        },
    }


def control_origin(control: str, own, from_seed: int):
    """The origin a control applies tau to, shaped like `own` (a tpv.vectors.Origin)."""
    import torch

    from tpv.vectors import Origin

    if control == "zero":
        tensor = torch.zeros_like(own.tensor)
        params: dict[str, Any] = {"control": "zero"}
    elif control == "random":
        seed = random_origin_seed(from_seed)
        g = torch.Generator().manual_seed(seed)
        draw = torch.randn(own.tensor.shape, generator=g, dtype=torch.float32)
        tensor = draw * (own.tensor.double().norm() / draw.double().norm()).float()
        params = {"control": "random", "rule": RANDOM_ORIGIN_RULE, "seed": seed}
    else:
        raise ValueError(f"unknown control {control!r}; use zero or random")
    return Origin(tensor, own.model, strategy=f"control:{control}", seed=from_seed, params=params)


def relative_change(prompt, own_prompt) -> float:
    """norm(prompt - own prompt) / norm(own prompt): how far moving tau changed the prompt."""
    own = own_prompt.tensor.double()
    return float((prompt.tensor.double() - own).norm() / max(float(own.norm()), 1e-12))
