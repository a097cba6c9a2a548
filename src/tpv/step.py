"""The one optimisation step, and the seeded order of the examples it takes.

`train()`, `compose.fit_multitask()` and the throughput benchmark all call `train_step`, so the
step the benchmark times is the step training runs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from tpv.data import Batch, Encoded, collate
from tpv.prompted import PromptedModel


class StepOrder:
    """Deterministic example order: epoch e is a permutation seeded by (seed, e), so the batch of
    any step is known without saved sampler state (resume needs only the step)."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self._perms = n, seed, {}

    def _perm(self, epoch: int) -> list[int]:
        if epoch not in self._perms:
            g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
            self._perms = {epoch: torch.randperm(self.n, generator=g).tolist()}
        return self._perms[epoch]

    def batch(self, step: int, size: int) -> list[int]:
        """The indices of the examples of global batch `step`."""
        return [
            self._perm(pos // self.n)[pos % self.n] for pos in range(step * size, (step + 1) * size)
        ]


@dataclass
class StepOutput:
    loss: torch.Tensor  # this process's mean loss over the global batch (detached, on device)
    batches: list[Batch]  # the micro-batches this process ran (for cost accounting)


def train_step(
    model: PromptedModel,
    optimizer: torch.optim.Optimizer,
    scheduler,
    items: Sequence[Encoded],
    indices: Sequence[int],
    *,
    device: torch.device | str,
    grad_accum: int = 1,
    share_prefix: bool = False,
    accelerator=None,
    forward: Callable | None = None,
    on_grads: Callable[[], None] | None = None,
) -> StepOutput:
    """One optimiser step on the examples `items[i] for i in indices` (a global batch).

    The batch is cut into `grad_accum` micro-batches; with an Accelerate `accelerator` every
    process takes its share of each (rank::world) and autocast/backward are Accelerate's.
    `forward` is the (possibly DDP-wrapped) model to call; `on_grads` runs after the backward
    passes and before the optimiser step (compose turns the prompt's gradient into weights').
    """
    forward = forward or model
    rank, world = (
        (0, 1)
        if accelerator is None
        else (
            accelerator.process_index,
            accelerator.num_processes,
        )
    )
    autocast = accelerator.autocast if accelerator is not None else contextlib.nullcontext
    micro = len(indices) // grad_accum
    loss_sum = torch.zeros((), device=device)
    batches = []
    for m in range(grad_accum):
        local = list(indices[m * micro : (m + 1) * micro])[rank::world]
        batch = collate(
            [items[i] for i in local],
            model.pad_id,
            model.seq2seq,
            share_prefix=share_prefix,
        ).to(device)
        with autocast():
            loss = forward(
                batch.input_ids, batch.attention_mask, batch.labels, batch.prefix_ids
            ).mean()
        if accelerator is not None:
            accelerator.backward(loss / grad_accum)
        else:
            (loss / grad_accum).backward()
        loss_sum += loss.detach() / grad_accum
        batches.append(batch)
    if on_grads is not None:
        on_grads()
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return StepOutput(loss_sum, batches)
