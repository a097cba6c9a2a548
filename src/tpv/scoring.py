"""How a prompted model's answer is read: which label wins, and the choice of rule as one option.

Rank classification scores every label word's tokens after the prompt and input. Three rules
turn those log-probabilities into a choice (docs/scoring.md measures them):

  rank             the summed log-probability of the label's tokens. A one-token label word
                   starts with an advantage over a three-token one before any tuning ("business"
                   vs "entertainment" on BBC news): every extra token can only lower the sum.
  rank_mean        the mean log-probability per label token: the length penalty removed.
  rank_calibrated  contextual calibration (Zhao et al. 2021, "Calibrate Before Use"): the same
                   prompt and template are given content-free inputs (every input field set to
                   "N/A", to "" and to "[MASK]"); the label distribution the model gives them,
                   averaged over the three, is its prior. The choice is argmax p(label | input) /
                   p_cf(label), i.e. summed log-prob minus log p_cf. Divides out both the length
                   bias and a bias toward a label word the model likes regardless of the input.
  generate         greedy decoding matched against the label words (not a rank rule).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tpv.options import Choice

if TYPE_CHECKING:  # the option itself stays importable without torch (CLI, configs, reports)
    import torch

    from tpv.tasks.base import Example, Task

# Zhao et al. (2021) average over these three content-free inputs.
CONTENT_FREE_INPUTS = ("N/A", "", "[MASK]")


class Scorer(Choice):
    rank = "rank"
    rank_mean = "rank_mean"
    rank_calibrated = "rank_calibrated"
    generate = "generate"

    @property
    def is_rank(self) -> bool:
        return self is not Scorer.generate


DEFAULT_SCORER = Scorer.rank
SCORER_HELP = (
    "How a prediction is read off the model: rank (summed label log-prob), rank_mean (per label "
    "token), rank_calibrated (content-free calibration), generate (greedy); docs/scoring.md."
)


def content_free_examples(task: Task) -> list[Example]:
    """One example per content-free input, every input field set to it (label unused)."""
    from tpv.tasks.base import Example

    return [
        Example(fields={f: text for f in task.input_fields}, label=0)
        for text in CONTENT_FREE_INPUTS
    ]


def content_free_prior(content_free_logp: torch.Tensor) -> torch.Tensor:
    """(C,) log of the mean label distribution over the content-free inputs: each row's summed
    log-probabilities renormalised over the labels, then averaged (as in Zhao et al.)."""
    probs = content_free_logp.float().log_softmax(-1).exp().mean(0)
    return probs.clamp_min(1e-30).log()


def label_scores(
    summed_logp: torch.Tensor,
    scorer: Scorer,
    label_lengths: list[int],
    content_free_logp: torch.Tensor | None = None,
) -> torch.Tensor:
    """(B, C) scores whose argmax is the rule's choice, from (B, C) summed log-probabilities."""
    scorer = Scorer.parse(scorer, "scorer")
    if scorer is Scorer.rank:
        return summed_logp
    if scorer is Scorer.rank_mean:
        import torch

        lengths = torch.tensor(label_lengths, dtype=summed_logp.dtype, device=summed_logp.device)
        return summed_logp / lengths
    if scorer is Scorer.rank_calibrated:
        if content_free_logp is None:
            raise ValueError("rank_calibrated needs the content-free inputs' log-probabilities")
        return summed_logp - content_free_prior(content_free_logp).to(summed_logp.device)
    raise ValueError(f"scorer {scorer.value!r} is not a rank rule")
