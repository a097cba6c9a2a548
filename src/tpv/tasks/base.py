"""What a task is: rows in splits, how an example is written as text, its label words, its metric.

Two kinds of task share this class. Classification (`labels` are the label words; an example's
answer is `labels[example.label]`) and generation (`labels` is empty; an example's answers are
free text in `example.answers`, scored by a metric of generated text: SQuAD v2, MATH, ROUGE-L;
see `tpv.textmetrics`). `Task.is_generation` tells them apart.

The engine (training, evaluation) only talks to `Task`; where the rows come from (the hub,
an installed corpus, a user's CSV) is the business of the loader that built it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from tpv.textmetrics import GENERATION_METRICS

SPLITS = ("train", "validation", "test")
CLASSIFICATION_METRICS = ("accuracy", "f1_binary", "f1_macro", "pearson_spearman")
METRICS = CLASSIFICATION_METRICS + GENERATION_METRICS
NO_LABEL = -1  # Example.label of a generation task's rows

# How an example is rendered for a model family.
# "t5": the paper's "<task> field: value ..." form for encoder-decoder models.
# "instruction": the paper's "Classify the ... into labels: ..." form for decoder models
#   (the backbone wraps it in the tokenizer's chat template when it has one).
STYLES = ("t5", "instruction")


@dataclass(frozen=True)
class Example:
    """One row: named input fields and a label index into `Task.labels` (classification), or
    `NO_LABEL` and the gold answer texts (generation; the first is the one trained on)."""

    fields: dict[str, str]
    label: int
    value: float | None = None  # gold numeric score for regression tasks (STS-B)
    answers: tuple[str, ...] = ()  # generation: every gold answer; empty = no answer (SQuAD v2)


class TaskError(ValueError):
    """A task, its data or its definition is unusable; the message names what is at fault."""


@dataclass
class Task:
    """A classification or generation task in text-to-text form.

    `labels` are the label words (the verbalizer); class i is written as `labels[i]`. A
    generation task has no labels, a generation metric and a `template` (the instruction
    "Classify ... into labels" does not apply); `max_new_tokens` bounds its answers (training
    targets are cut there too) and `no_answer` is the text it is taught to write for an
    example without an answer.
    `template`, when given, overrides the instruction style for decoder models: a
    `str.format` string over the input fields, e.g. "Review: {text}\\nSentiment:".
    """

    name: str
    input_fields: tuple[str, ...]
    labels: tuple[str, ...]
    metric: str = "accuracy"
    source: str = ""
    description: str = ""
    template: str | None = None
    # Builds {"train": [...], "validation": [...], "test": [...]}; called once, lazily.
    loader: Callable[[], dict[str, list[Example]]] | None = field(default=None, repr=False)
    max_new_tokens: int = 16  # the paper's cap for label words; generation tasks set their own
    no_answer: str | None = None
    _splits: dict[str, list[Example]] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise TaskError(
                f"task {self.name!r}: unknown metric {self.metric!r}; use one of {METRICS}"
            )
        if not self.input_fields:
            raise TaskError(f"task {self.name!r}: no input fields")
        if self.max_new_tokens < 1:
            raise TaskError(f"task {self.name!r}: max_new_tokens must be >= 1")
        if self.is_generation:
            if self.labels:
                raise TaskError(f"task {self.name!r}: a generation task has no label words")
            if self.template is None:
                raise TaskError(f"task {self.name!r}: a generation task needs a template")
            return
        if len(self.labels) < 2:
            raise TaskError(
                f"task {self.name!r}: needs at least two labels, got {list(self.labels)}"
            )
        if len(set(self.labels)) != len(self.labels):
            raise TaskError(f"task {self.name!r}: label words repeat: {list(self.labels)}")

    @property
    def is_generation(self) -> bool:
        """Answers are free text scored by a generation metric (no label words, no classes,
        hence no "best constant label" floor and no stratified sampling)."""
        return self.metric in GENERATION_METRICS

    # --- data -------------------------------------------------------------------------------
    @property
    def splits(self) -> dict[str, list[Example]]:
        if self._splits is None:
            if self.loader is None:
                raise TaskError(f"task {self.name!r} has no data loader")
            splits = self.loader()
            for name in SPLITS:
                if name not in splits:
                    raise TaskError(f"task {self.name!r}: loader returned no {name!r} split")
            self._splits = splits
        return self._splits

    def split(self, name: str) -> list[Example]:
        if name not in SPLITS:
            raise TaskError(f"unknown split {name!r}; use one of {SPLITS}")
        return self.splits[name]

    # --- text -------------------------------------------------------------------------------
    def render(self, example: Example, style: str = "instruction") -> str:
        """The model input for one example, without the answer."""
        if style == "t5":
            parts = [f"{f}: {example.fields[f]}" for f in self.input_fields]
            return f"{self.name} " + " ".join(parts)
        if style != "instruction":
            raise TaskError(f"unknown style {style!r}; use one of {STYLES}")
        if self.template is not None:
            return self.template.format(**example.fields)
        names = " and ".join(self.input_fields)
        body = "\n".join(f"{f}: {example.fields[f]}" for f in self.input_fields)
        return (
            f"Classify the {names} into labels: {', '.join(self.labels)}. "
            f"Reply only the corresponding label.\n{body}\nlabel:"
        )

    def target(self, example: Example) -> str:
        """The answer text to train on: the label word, or the first gold answer (the
        `no_answer` text when there is none)."""
        if self.is_generation:
            if example.answers:
                return example.answers[0]
            if self.no_answer is None:
                raise TaskError(f"task {self.name!r}: an example has no answer and the task "
                                "defines no no_answer text")  # fmt: skip
            return self.no_answer
        return self.labels[example.label]

    def label_value(self, index: int) -> float:
        """Numeric value of a label word, for regression metrics (STS-B's "3.4")."""
        return float(self.labels[index])

    def describe(self) -> dict:
        return {
            "name": self.name,
            "source": self.source,
            "description": self.description,
            "input_fields": list(self.input_fields),
            "labels": list(self.labels),
            "metric": self.metric,
            "kind": "generation" if self.is_generation else "classification",
            "max_new_tokens": self.max_new_tokens,
            "no_answer": self.no_answer,
            "template": self.template,
        }


def class_counts(examples: Sequence[Example], num_labels: int) -> list[int]:
    counts = [0] * num_labels
    for ex in examples:
        counts[ex.label] += 1
    return counts
