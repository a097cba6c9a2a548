"""Scoring a prompt on a task split: rank classification or greedy generation, then metrics.

rank: score every label word's tokens after the prompt and input and pick the best; never an
      invalid answer, one forward per batch for single-token labels. rank sums the label's
      token log-probabilities; rank_mean and rank_calibrated remove the length bias
      (tpv.scoring).
generate: greedy decoding of at most `max_new_tokens`, case-insensitive match against the label
      words (the paper's protocol); text matching no label counts as wrong.
Generation tasks (SQuAD v2, MATH, headlines) are always scored by generation, whatever the
scorer asked for: the decoded text goes to the task's metric (`tpv.textmetrics`), and
`max_new_tokens` defaults to the task's own (answers are longer than label words).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence

import torch

from tpv import metrics, textmetrics
from tpv.backbone import Backbone
from tpv.data import Encoded, Encoder, batches
from tpv.prompted import PromptedModel
from tpv.scoring import DEFAULT_SCORER, Scorer, content_free_examples, label_scores
from tpv.tasks.base import Example, Task
from tpv.tasks.fewshot import subsample
from tpv.vectors import IncompatibleError, Origin, SoftPrompt

log = logging.getLogger(__name__)
SCORERS = tuple(s.value for s in Scorer)


def prompt_tensor(prompt) -> torch.Tensor:
    if isinstance(prompt, (SoftPrompt, Origin)):
        return prompt.tensor
    if isinstance(prompt, torch.Tensor):
        return prompt
    raise TypeError(f"expected a SoftPrompt, Origin or tensor, got {type(prompt).__name__}")


def check_model(prompt, backbone: Backbone) -> None:
    """A saved prompt names the model it was made for: scoring it on another is an error."""
    from tpv.identity import same_model

    made_for = getattr(prompt, "model", None)
    if made_for is not None and not same_model(made_for, backbone.name):
        name = getattr(prompt, "name", None) or prompt.kind
        raise IncompatibleError(
            f"{prompt.kind} {name!r} was made for model {made_for!r}, not {backbone.name!r}"
        )


def trained_max_input_tokens(prompt, default: int = 256) -> int:
    """The input length a prompt was tuned with (its record's config), else `default`: a prompt
    is scored on inputs cut the way it saw them."""
    record = getattr(prompt, "record", None) or {}
    return int((record.get("config") or {}).get("max_input_tokens") or default)


def task_mean(scores: Mapping[str, float] | Sequence[float]) -> float:
    """The mean score over tasks: what multi-task selection maximises."""
    values = list(scores.values() if isinstance(scores, Mapping) else scores)
    return sum(values) / len(values)


def mean_score(evaluators: Sequence[Evaluator], prompt) -> float:
    """The mean of `prompt`'s score over several tasks' evaluators."""
    return task_mean([ev(prompt)["score"] for ev in evaluators])


class Evaluator:
    """Evaluates many prompts on one set of examples, tokenising them once."""

    def __init__(
        self,
        backbone: Backbone,
        task: Task,
        examples: Sequence[Example],
        *,
        scorer: str | Scorer = DEFAULT_SCORER,
        batch_size: int = 32,
        max_input_tokens: int = 256,
        max_new_tokens: int | None = None,
        encoder: Encoder | None = None,
    ):
        scorer = Scorer.parse(scorer, "scorer")
        if not examples:
            raise ValueError(f"task {task.name!r}: no examples to evaluate")
        if task.is_generation:
            scorer = Scorer.generate  # there are no label words to rank
        self.backbone, self.task, self.scorer = backbone, task, scorer
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens or task.max_new_tokens
        self.answers = [ex.answers for ex in examples]
        self.encoder = encoder or Encoder(backbone, task, max_input_tokens)
        self.items: list[Encoded] = self.encoder.encode_all(examples)
        # The calibrated rule's content-free inputs, in the same template (tpv.scoring).
        # A generation task has no label words to calibrate.
        self.content_free: list[Encoded] = (
            [] if task.is_generation else self.encoder.encode_all(content_free_examples(task))
        )
        self.seq2seq = backbone.is_encoder_decoder

    def _summed_logp(self, model: PromptedModel, items: Sequence[Encoded]) -> torch.Tensor:
        """(n, C) summed log-probability of every label's tokens, in the order of `items`."""
        out = torch.empty((len(items), len(self.encoder.label_ids)))
        share = model.can_share_prefix
        for idx, batch in batches(
            items, self.batch_size, model.pad_id, self.seq2seq, share_prefix=share
        ):
            scores = model.score_labels(batch.to(model.prompt.device), self.encoder.label_ids)
            out[idx] = scores.float().cpu()
        return out

    def label_logprobs(
        self, prompt=None, model: PromptedModel | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed label log-probabilities of the examples (n, C) and of the content-free inputs
        (3, C): everything every rank rule needs, from one pass (docs/scoring.md rescores)."""
        if model is None:
            model = PromptedModel(self.backbone, prompt_tensor(prompt))
        return self._summed_logp(model, self.items), self._summed_logp(model, self.content_free)

    def __call__(self, prompt, model: PromptedModel | None = None) -> dict:
        """Metrics of `prompt` (SoftPrompt, Origin, tensor, or a per-input prompt module such
        as an ATTEMPT mixture), or of `model`'s current prompt."""
        if model is None:
            check_model(prompt, self.backbone)
            per_input = isinstance(prompt, torch.nn.Module)
            model = PromptedModel(self.backbone, prompt if per_input else prompt_tensor(prompt))
        if self.task.is_generation:
            return self._score_generation(model)
        start = time.perf_counter()
        n = len(self.items)
        pred = [metrics.INVALID] * n
        pred_values = [0.0] * n
        if self.scorer.is_rank:
            summed = self._summed_logp(model, self.items)
            cf = None
            if self.scorer is Scorer.rank_calibrated:
                cf = self._summed_logp(model, self.content_free)
            lengths = [len(ids) for ids in self.encoder.label_ids]
            pred = label_scores(summed, self.scorer, lengths, cf).argmax(-1).tolist()
            if self.task.metric == "pearson_spearman":
                pred_values = [self._value(c, None) for c in pred]
        else:
            for idx, batch in batches(self.items, self.batch_size, model.pad_id, self.seq2seq):
                out = model.generate(batch.to(model.prompt.device), self.max_new_tokens)
                texts = self.encoder.tok.batch_decode(out, skip_special_tokens=True)
                for j, i in enumerate(idx):
                    pred[i] = self._match(texts[j])
                    if self.task.metric == "pearson_spearman":
                        pred_values[i] = self._value(pred[i], texts[j])
        seconds = time.perf_counter() - start
        gold = [it.label for it in self.items]
        gold_values = [it.value if it.value is not None else 0.0 for it in self.items]
        result = metrics.compute(
            self.task.metric,
            pred,
            gold,
            len(self.task.labels),
            pred_values if self.task.metric == "pearson_spearman" else None,
            gold_values if self.task.metric == "pearson_spearman" else None,
        )
        result.update(
            scorer=self.scorer.value, seconds=seconds, examples_per_s=n / max(seconds, 1e-9)
        )
        # Per example, compactly: what the bootstrap and the floors are computed from.
        result["per_example"] = {
            "pred": metrics.encode_labels(pred),
            "gold": metrics.encode_labels(gold),
        }
        return result

    def generate_texts(self, model: PromptedModel) -> list[str]:
        """Greedy answers, in the order of the examples."""
        texts = [""] * len(self.items)
        for idx, batch in batches(self.items, self.batch_size, model.pad_id, self.seq2seq):
            out = model.generate(batch.to(model.prompt.device), self.max_new_tokens)
            for i, text in zip(idx, self.encoder.tok.batch_decode(out, skip_special_tokens=True),
                               strict=True):  # fmt: skip
                texts[i] = text.strip()
        return texts

    def _score_generation(self, model: PromptedModel) -> dict:
        start = time.perf_counter()
        texts = self.generate_texts(model)
        seconds = time.perf_counter() - start
        result = textmetrics.compute(self.task.metric, texts, self.answers, self.task.no_answer)
        # A few answers beside their gold, to see what a score means.
        result["samples"] = [
            {"prediction": t, "gold": list(a)}
            for t, a in zip(texts[:3], self.answers[:3], strict=True)
        ]
        n = len(texts)
        result.update(scorer="generate", max_new_tokens=self.max_new_tokens, seconds=seconds,
                      examples_per_s=n / max(seconds, 1e-9))  # fmt: skip
        return result

    def _match(self, text: str) -> int:
        t = text.strip().lower()
        for i, word in enumerate(self.task.labels):
            if t == word.lower():
                return i
        return metrics.INVALID

    def _value(self, chosen: int, text: str | None) -> float:
        if chosen != metrics.INVALID:
            return self.task.label_value(chosen)
        try:
            return float(text.strip()) if text else 0.0
        except ValueError:
            return 0.0


def evaluate(
    backbone: Backbone,
    task: Task,
    prompt,
    split: str = "test",
    *,
    scorer: str | Scorer = DEFAULT_SCORER,
    batch_size: int = 32,
    max_examples: int | None = None,
    max_input_tokens: int = 256,
    max_new_tokens: int | None = None,
) -> dict:
    """Score one prompt on one split of a task (`max_new_tokens` None: the task's own)."""
    examples = task.split(split)
    if max_examples is not None:
        examples = subsample(examples, max_examples)
    ev = Evaluator(
        backbone,
        task,
        examples,
        scorer=scorer,
        batch_size=batch_size,
        max_input_tokens=max_input_tokens,
        max_new_tokens=max_new_tokens,
    )
    result = ev(prompt)
    result.update(task=task.name, split=split)
    log.info(
        "%s/%s %s: %s=%.4f (%d examples, %.1f ex/s)",
        task.name,
        split,
        result["scorer"],
        result["metric"],
        result["score"],
        result["n"],
        result["examples_per_s"],
    )
    return result
