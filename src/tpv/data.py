"""From task examples to token ids and dynamically padded batches.

Decoder-only batches are LEFT-padded behind the prompt: [prompt][pad..][input][answer]. Every
row then ends at the same position, so the answer tokens sit in the last columns and the LM head
runs only there (`logits_to_keep`), not over the whole vocabulary at every position.
Encoder-decoder batches put [prompt][input][pad..] in the encoder and the answer in the decoder.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from tpv.backbone import Backbone
from tpv.tasks.base import Example, Task

IGNORE = -100  # label id the loss skips (padding, input positions)


@dataclass(frozen=True)
class Encoded:
    input_ids: tuple[int, ...]  # the rendered input (chat template included where used)
    target_ids: tuple[int, ...]  # the answer to train on (label word or answer text + end token)
    label: int  # NO_LABEL for generation tasks
    value: float | None = None


class Encoder:
    """Renders and tokenises a task's examples for one backbone; caches label token ids."""

    def __init__(self, backbone: Backbone, task: Task, max_input_tokens: int = 256):
        self.backbone, self.task, self.max_input_tokens = backbone, task, max_input_tokens
        self.tok = backbone.tokenizer
        self.seq2seq = backbone.is_encoder_decoder
        self.use_chat = not self.seq2seq and backbone.has_chat_template
        # Label words as answer token ids (no end token): what rank scoring compares.
        self.label_ids: list[tuple[int, ...]] = [self._answer_ids(w) for w in task.labels]
        for word, ids in zip(task.labels, self.label_ids, strict=True):
            if not ids:
                raise ValueError(f"task {task.name!r}: label word {word!r} tokenises to nothing")

    @property
    def end_id(self) -> int:
        return int(self.tok.eos_token_id)

    def _answer_ids(self, word: str) -> tuple[int, ...]:
        # Without a chat template the answer follows "label:" after a space; with one it starts
        # the assistant turn; T5 tokenises the answer on its own.
        text = word if (self.seq2seq or self.use_chat) else " " + word
        return tuple(self.tok(text, add_special_tokens=False)["input_ids"])

    def input_ids(self, example: Example) -> tuple[int, ...]:
        text = self.task.render(example, self.backbone.style)
        if self.use_chat:
            ids = self.tok.apply_chat_template(
                [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=True
            )
            ids = ids["input_ids"] if hasattr(ids, "keys") else ids
        else:
            ids = self.tok(text)["input_ids"]
        return _truncate_middle(tuple(ids), self.max_input_tokens)

    def encode(self, example: Example) -> Encoded:
        if self.task.is_generation:
            return Encoded(self.input_ids(example), self.answer_ids(example), example.label)
        answer = self.label_ids[example.label] + (self.end_id,)
        return Encoded(self.input_ids(example), answer, example.label, example.value)

    def answer_ids(self, example: Example) -> tuple[int, ...]:
        """A generation task's training target: its answer text + end token, teacher-forced like
        a label word. An answer longer than the task's `max_new_tokens` is cut there without an
        end token (generation could not go further either)."""
        ids = self._answer_ids(self.task.target(example))
        if not ids:
            raise ValueError(f"task {self.task.name!r}: an answer tokenises to nothing")
        limit = self.task.max_new_tokens
        return ids[:limit] if len(ids) >= limit else ids + (self.end_id,)

    def encode_all(self, examples: Sequence[Example]) -> list[Encoded]:
        return [self.encode(ex) for ex in examples]


def _truncate_middle(ids: tuple[int, ...], limit: int) -> tuple[int, ...]:
    """Cut long inputs in the middle: the instruction opens the input and the answer cue (and
    the chat template's assistant header) closes it; both must survive."""
    if len(ids) <= limit:
        return ids
    head = limit // 2
    return ids[:head] + ids[len(ids) - (limit - head) :]


@dataclass
class Batch:
    input_ids: torch.Tensor  # (B, T) padded
    attention_mask: torch.Tensor  # (B, T), 1 = real token (prompt excluded; added by the model)
    labels: torch.Tensor  # (B, K) answer ids; IGNORE where shorter (decoder: left side)
    label_index: torch.Tensor  # (B,) class ids
    values: torch.Tensor | None = None  # (B,) gold regression values
    # Decoder only: tokens every row starts with (chat template, instruction), cut from the rows
    # and run once per batch right after the prompt; None when not shared.
    prefix_ids: torch.Tensor | None = None

    def to(self, device) -> Batch:
        def move(t):
            return None if t is None else t.to(device)

        return Batch(
            self.input_ids.to(device),
            self.attention_mask.to(device),
            self.labels.to(device),
            self.label_index.to(device),
            move(self.values),
            move(self.prefix_ids),
        )

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])


def common_prefix_length(seqs: Sequence[Sequence[int]]) -> int:
    """Length of the longest prefix all sequences share."""
    first, n = seqs[0], min(len(s) for s in seqs)
    for i in range(n):
        tok = first[i]
        if any(s[i] != tok for s in seqs):
            return i
    return n


def collate(
    items: Sequence[Encoded],
    pad_id: int,
    seq2seq: bool,
    with_answer: bool = True,
    share_prefix: bool = False,
) -> Batch:
    """Pad to the longest row of this batch (never to a fixed length).

    Decoder-only with `with_answer`: rows are input + answer, left-padded; `labels` holds the
    answer right-aligned. Without it (scoring, generation) rows are the input alone.
    Encoder-decoder: inputs right-padded; `labels` the answer right-padded with IGNORE.
    `share_prefix` (decoder only): the tokens all inputs start with become `prefix_ids`, and each
    row keeps at least its last input token (the position that predicts the answer).
    """
    prefix = 0
    if share_prefix and not seq2seq:
        inputs = [it.input_ids for it in items]
        prefix = min(common_prefix_length(inputs), min(len(x) for x in inputs) - 1)
    if seq2seq or not with_answer:
        rows = [it.input_ids[prefix:] for it in items]
    else:
        rows = [it.input_ids[prefix:] + it.target_ids for it in items]
    T = max(len(r) for r in rows)
    K = max(len(it.target_ids) for it in items)
    B = len(items)
    ids = torch.full((B, T), pad_id, dtype=torch.long)
    mask = torch.zeros((B, T), dtype=torch.long)
    labels = torch.full((B, K), IGNORE, dtype=torch.long)
    left = not seq2seq
    for i, (row, it) in enumerate(zip(rows, items, strict=True)):
        n, k = len(row), len(it.target_ids)
        if left:
            ids[i, T - n :] = torch.tensor(row)
            mask[i, T - n :] = 1
            labels[i, K - k :] = torch.tensor(it.target_ids)
        else:
            ids[i, :n] = torch.tensor(row)
            mask[i, :n] = 1
            labels[i, :k] = torch.tensor(it.target_ids)
    values = None
    if any(it.value is not None for it in items):
        values = torch.tensor([float("nan") if it.value is None else it.value for it in items])
    prefix_ids = (
        torch.tensor(items[0].input_ids[:prefix], dtype=torch.long)
        if share_prefix and not seq2seq
        else None
    )
    return Batch(ids, mask, labels, torch.tensor([it.label for it in items]), values, prefix_ids)


def batches(
    items: Sequence[Encoded],
    batch_size: int,
    pad_id: int,
    seq2seq: bool,
    with_answer: bool = False,
    share_prefix: bool = False,
):
    """Evaluation batches in length order (less padding), each remembering its row positions."""
    order = sorted(range(len(items)), key=lambda i: len(items[i].input_ids))
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        yield idx, collate([items[i] for i in idx], pad_id, seq2seq, with_answer, share_prefix)
