"""Packed rows: a batch's rows run as one sequence, without padding, behind a shared prefix.

A padded batch of decoder rows costs B x T token passes, where T is the longest row; on the
offline tasks (Rotten Tomatoes: rows of 8-63 tokens after the shared instruction) about 40% of
them are padding. Packing lays the rows end to end in one sequence of L = sum of lengths and
gives the model a block-diagonal causal mask: every row sees the shared [prompt][prefix] in
the KV cache and its own earlier tokens, nothing of the other rows. Position ids restart after
the prefix for every row, so each row computes exactly what it computes alone.

The dense (L, n + L) mask makes attention quadratic in the whole batch, which is cheap next to
the matmuls while L is a few thousand tokens (CPU batches) and costly beyond: `worth_packing`
decides per batch. Models with sliding-window attention are packed only where the window covers
every row, since the packed mask carries no window.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tpv import fastpath

# Beyond this many packed tokens the (L, n + L) attention mask costs more than padding saves.
MAX_PACKED_TOKENS = 2048
# Pack only when at least this share of the padded batch's token passes is padding.
MIN_PADDING_SHARE = 0.1


def worth_packing(
    attention_mask: torch.Tensor, prefix_len: int = 0, window: int | None = None
) -> bool:
    """Pack when it saves token passes and the dense mask stays small. With a sliding attention
    `window` (Gemma 2/3, Mistral), only when the window reaches across [prefix][longest row]:
    then it masks nothing in the padded path, and the packed mask needs no window of its own."""
    if not fastpath.enabled() or attention_mask.shape[0] < 2:
        return False
    if attention_mask.device.type != "cpu":
        # Measured on CPU only; on a GPU the dense mask also rules out the flash kernels, so
        # packing stays off there until the benchmark's gpu mode has measured it.
        return False
    if window is not None and prefix_len + attention_mask.shape[1] > window:
        return False
    real = int(attention_mask.sum())
    return real <= MAX_PACKED_TOKENS and real <= (1 - MIN_PADDING_SHARE) * attention_mask.numel()


def sliding_window(config) -> int | None:
    """The attention window a model's config sets, if any of its layers uses one."""
    window = getattr(config, "sliding_window", None)
    if not window or getattr(config, "use_sliding_window", True) is False:
        return None
    types = getattr(config, "layer_types", None)
    if types is not None and "sliding_attention" not in types:
        return None
    return int(window)


@dataclass
class PackedRows:
    ids: torch.Tensor  # (1, L) the real tokens of every row, row after row
    positions: torch.Tensor  # (1, L) n + position within the row
    mask: torch.Tensor  # (1, 1, L, n + L) additive: 0 where a token may attend, dtype min elsewhere
    keep_index: torch.Tensor  # (B * keep,) the last `keep` positions of every row, in row order


def pack_rows(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    keep: int,
    prefix_len: int,
    dtype: torch.dtype,
) -> PackedRows:
    """Left-padded rows (B, T) -> one packed row behind a `prefix_len`-token cached prefix.

    A row shorter than `keep` repeats its first position in the kept slots it lacks: those slots
    stand for padding in the padded path, where the caller ignores them too (IGNORE labels).
    """
    dev = input_ids.device
    real = attention_mask.bool()
    lengths = attention_mask.sum(1)
    L = int(lengths.sum())
    ids = input_ids[real]  # row-major: row 0's tokens, then row 1's, ...
    row_of = torch.repeat_interleave(torch.arange(len(lengths), device=dev), lengths)
    within = (attention_mask.cumsum(1) - 1)[real]
    q = torch.arange(L, device=dev)
    allowed = (row_of[:, None] == row_of[None, :]) & (q[:, None] >= q[None, :])
    allowed = torch.cat([allowed.new_ones((L, prefix_len)), allowed], dim=1)
    mask = torch.zeros(allowed.shape, dtype=dtype, device=dev)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    ends = lengths.cumsum(0)  # one past each row's last token
    starts = ends - lengths
    back = torch.arange(keep - 1, -1, -1, device=dev)
    keep_index = torch.maximum(ends[:, None] - 1 - back, starts[:, None]).reshape(-1)
    return PackedRows(ids[None], (prefix_len + within)[None], mask[None, None], keep_index)
