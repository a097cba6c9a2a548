"""ATTEMPT: a per-instance prompt mixed by attention from frozen source prompts and a new target
prompt (Asai et al., EMNLP 2022, "ATTEMPT: Parameter-Efficient Multi-task Tuning via Attentional
Mixtures of Soft Prompts").

For an input X with token embeddings x_1..x_T (the frozen model's input embedding layer):

    h     = max-pool over the input tokens of x_t                       (d,)
    h_out = LayerNorm(W_up SiLU(W_down h))                              (d,)  W_down: d -> r
    k_j   = max-pool over the P tokens of P_j, for P_1..P_J (sources) and P_{J+1} = P_target
    a     = softmax_j(k_j . h_out / T)                                  (J+1,) sums to 1
    P(X)  = P_target + sum_{j=1}^{J+1} a_j P_j                          (P, d)

Only P_target and the attention module (W_down, W_up, the LayerNorm's scale and shift) train;
the source prompts are buffers and the model is frozen. T defaults to d * e, the value the
authors' released configs use (2087 for T5-base's d = 768), and r to 100 as in their code.
Deliberate difference: padding is left out of the max-pool (their batches padded every input to
256 tokens and pooled the padding too). On decoders the answer tokens of a training row are left
out as well, so the prompt of an example never depends on its label.

On disk an ATTEMPT result is one safetensors file (`attempt.safetensors`): the target prompt,
the frozen sources and the attention module, with JSON metadata in the header like every other
tpv file (model, shapes, the sources' names and content ids, temperature). It is not a single
prompt, so it cannot be a PEFT prompt-tuning adapter (see docs/attempt.md).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tpv.io import read_safetensors, write_safetensors
from tpv.vectors import (
    FORMAT_VERSION,
    FormatError,
    Origin,
    SoftPrompt,
    TaskPromptVector,
    _content_id,
    load,
)

log = logging.getLogger(__name__)
KIND = "attempt"
FILE_NAME = "attempt.safetensors"
DEFAULT_RANK = 100  # the width of the authors' attention bottleneck


class AttemptPrompt(nn.Module):
    """The trainable mixture: call it with input embeddings (B, T, d) and a mask of the tokens
    to pool (B, T) to get one prompt per input (B, P, d)."""

    per_instance = True  # PromptedModel: no prompt shared across a batch (no prefix sharing)
    kind = KIND

    def __init__(
        self,
        sources: torch.Tensor,
        target: torch.Tensor,
        *,
        model: str,
        source_names: Sequence[str] = (),
        temperature: float | None = None,
        rank: int = DEFAULT_RANK,
        seed: int = 0,
        record: dict[str, Any] | None = None,
    ):
        super().__init__()
        if sources.dim() != 3 or sources.shape[0] < 1:
            raise ValueError(
                f"ATTEMPT needs at least one source prompt (J, P, d); got {tuple(sources.shape)}"
            )
        if target.dim() != 2 or tuple(target.shape) != tuple(sources.shape[1:]):
            raise ValueError(
                f"target prompt {tuple(target.shape)} must match the sources' "
                f"{tuple(sources.shape[1:])} (tokens, hidden)"
            )
        if rank < 1:
            raise ValueError(f"attempt rank must be >= 1, got {rank}")
        d = int(target.shape[1])
        self.model_name = model
        names = list(source_names) or [f"source{i}" for i in range(len(sources))]
        if len(names) != sources.shape[0]:
            raise ValueError(f"{len(names)} source names for {sources.shape[0]} source prompts")
        self.source_names = _unique_names(names)
        self.temperature = float(temperature) if temperature is not None else d * math.e
        if not (self.temperature > 0 and math.isfinite(self.temperature)):
            raise ValueError(f"attempt temperature must be a positive number, got {temperature}")
        self.record = dict(record or {})
        self.seed = seed
        # Frozen: a buffer moves with the module and is saved, but never gets a gradient.
        self.register_buffer("sources", sources.detach().float().clone())
        self.target = nn.Parameter(target.detach().float().clone())
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # the attention module's init is part of the run's seed
            self.down = nn.Linear(d, rank, bias=False)
            self.up = nn.Linear(rank, d, bias=False)
        self.norm = nn.LayerNorm(d)
        # Fixed mixture weights (J+1,) instead of the attention (tests, ablations); None: learnt.
        self.pinned: torch.Tensor | None = None

    # --- identity and shape -----------------------------------------------------------------
    @property
    def model(self) -> str:
        """The model it was made for (like a prompt file's `model`)."""
        return self.model_name

    @property
    def name(self) -> str:
        return "attempt:" + "+".join(self.source_names)

    @property
    def num_sources(self) -> int:
        return int(self.sources.shape[0])

    @property
    def num_tokens(self) -> int:
        return int(self.target.shape[0])

    @property
    def hidden_size(self) -> int:
        return int(self.target.shape[1])

    @property
    def candidate_names(self) -> list[str]:
        return [*self.source_names, "target"]

    # --- the mixture ------------------------------------------------------------------------
    def candidates(self) -> torch.Tensor:
        """(J+1, P, d): the sources, then the target prompt."""
        return torch.cat([self.sources, self.target.unsqueeze(0)], dim=0)

    def weights(self, input_embeds: torch.Tensor, pool_mask: torch.Tensor) -> torch.Tensor:
        """(B, J+1) mixture weights per input; each row sums to 1."""
        B = input_embeds.shape[0]
        if self.pinned is not None:
            return self.pinned.to(self.target.device, torch.float32).expand(B, -1)
        x = input_embeds.float().masked_fill(~pool_mask.bool().unsqueeze(-1), float("-inf"))
        pooled = x.amax(dim=1)  # (B, d); every input has at least one token
        h = self.norm(self.up(F.silu(self.down(pooled))))
        keys = self.candidates().amax(dim=1)  # (J+1, d)
        return torch.softmax(h @ keys.T / self.temperature, dim=-1)

    def forward(self, input_embeds: torch.Tensor, pool_mask: torch.Tensor) -> torch.Tensor:
        a = self.weights(input_embeds, pool_mask)
        mixed = torch.einsum("bj,jpd->bpd", a, self.candidates())
        return (self.target.unsqueeze(0) + mixed).to(input_embeds.dtype)

    def pin(self, weights: Sequence[float] | torch.Tensor | None) -> AttemptPrompt:
        """Fix the mixture weights (one per source, then the target; they must sum to 1), or
        None to use the attention again."""
        if weights is None:
            self.pinned = None
            return self
        w = torch.as_tensor(weights, dtype=torch.float32).flatten()
        if w.numel() != self.num_sources + 1:
            raise ValueError(
                f"pinned weights: {w.numel()} given, need {self.num_sources + 1} "
                f"({', '.join(self.candidate_names)})"
            )
        if not torch.isclose(w.sum(), torch.tensor(1.0), atol=1e-6):
            raise ValueError(f"pinned weights must sum to 1, got {float(w.sum()):g}")
        self.pinned = w
        return self

    # --- what trains ------------------------------------------------------------------------
    def trainable_state(self) -> dict[str, torch.Tensor]:
        """The trained tensors by name (checkpoints, best-on-validation snapshots)."""
        return {k: v for k, v in self.named_parameters()}

    def param_groups(self, lr: float, attention_lr: float | None = None) -> list[dict]:
        attn = [p for n, p in self.named_parameters() if n != "target"]
        return [
            {"params": [self.target], "lr": lr},
            {"params": attn, "lr": lr if attention_lr is None else attention_lr},
        ]

    @torch.no_grad()
    def mean_weights(self, backbone, items, batch_size: int = 64) -> dict[str, float]:
        """Mean mixture weight of each candidate over encoded inputs: embeddings only, no model
        forward pass (what the attention looked at, for the run's metrics)."""
        emb = backbone.model.get_input_embeddings()
        dev = self.target.device
        total = torch.zeros(self.num_sources + 1, device=dev)
        for start in range(0, len(items), batch_size):
            chunk = items[start : start + batch_size]
            T = max(len(it.input_ids) for it in chunk)
            ids = torch.zeros((len(chunk), T), dtype=torch.long)
            mask = torch.zeros((len(chunk), T), dtype=torch.long)
            for i, it in enumerate(chunk):
                ids[i, : len(it.input_ids)] = torch.tensor(it.input_ids)
                mask[i, : len(it.input_ids)] = 1
            total += self.weights(emb(ids.to(dev)), mask.to(dev)).sum(0)
        total /= max(len(items), 1)
        return dict(zip(self.candidate_names, map(float, total.cpu()), strict=True))

    # --- IO ---------------------------------------------------------------------------------
    def metadata(self) -> dict[str, Any]:
        return {
            "kind": KIND,
            "format_version": FORMAT_VERSION,
            "model": self.model_name,
            "num_tokens": self.num_tokens,
            "hidden_size": self.hidden_size,
            "num_sources": self.num_sources,
            "sources": self.source_names,
            "source_ids": [_content_id(s) for s in self.sources.cpu()],
            "temperature": self.temperature,
            "rank": int(self.down.out_features),
            "seed": self.seed,
            "record": self.record,
        }

    def save(self, path: str | Path) -> Path:
        """One .safetensors file, written atomically; a directory gets attempt.safetensors."""
        path = Path(path)
        if path.suffix != ".safetensors":
            path = path / FILE_NAME
        tensors = {k: v.detach().float().cpu() for k, v in self.state_dict().items()}
        write_safetensors(path, tensors, {"tpv": json.dumps(self.metadata())})
        return path

    def describe(self) -> str:
        return (
            f"attempt [{self.num_tokens}x{self.hidden_size}, {self.model_name}] "
            f"sources {', '.join(self.source_names)}"
        )


def _unique_names(names: Sequence[str]) -> list[str]:
    """Two sources of one task (or unnamed prompts) get #2, #3 ...: weights are reported by name."""
    seen: dict[str, int] = {}
    out = []
    for n in names:
        n = "target (source)" if n == "target" else n
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n}#{seen[n]}")
    return out


def is_attempt(path: str | Path) -> bool:
    """True for an ATTEMPT file, or a run directory holding one."""
    p = Path(path)
    if p.is_dir():
        return (p / FILE_NAME).is_file()
    if not p.is_file() or p.suffix != ".safetensors":
        return False
    try:
        _, header = read_safetensors(p)
        return json.loads(header.get("tpv", "{}")).get("kind") == KIND
    except (FormatError, json.JSONDecodeError, AttributeError):
        return False


def load_attempt(path: str | Path) -> AttemptPrompt:
    """Load an ATTEMPT file (or a run directory's), checking it like every tpv file."""
    path = Path(path)
    if path.is_dir():
        path = path / FILE_NAME
    tensors, header = read_safetensors(path)
    try:
        meta = json.loads(header.get("tpv", ""))
    except json.JSONDecodeError:
        raise FormatError(path, "no valid tpv metadata in the safetensors header") from None
    if not isinstance(meta, dict) or meta.get("kind") != KIND:
        kind = meta.get("kind") if isinstance(meta, dict) else None
        raise FormatError(path, f"holds kind {kind!r}, expected {KIND!r}")
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise FormatError(path, f"format_version {meta['format_version']} is newer than this tpv")
    need = ("sources", "target", "down.weight", "up.weight", "norm.weight", "norm.bias")
    missing = [k for k in need if k not in tensors]
    if missing:
        raise FormatError(path, f"missing tensor(s) {missing}")
    for k, t in tensors.items():
        if not torch.isfinite(t).all():
            raise FormatError(path, f"tensor {k!r} holds NaN/Inf")
    expected = (meta.get("num_tokens"), meta.get("hidden_size"))
    if tuple(tensors["target"].shape) != expected:
        raise FormatError(
            path, f"target shape {tuple(tensors['target'].shape)} does not match {expected}"
        )
    try:
        mix = AttemptPrompt(
            tensors["sources"],
            tensors["target"],
            model=meta["model"],
            source_names=meta.get("sources", ()),
            temperature=meta.get("temperature"),
            rank=int(tensors["down.weight"].shape[0]),
            seed=int(meta.get("seed", 0)),
            record=meta.get("record", {}),
        )
        mix.load_state_dict(tensors)
    except (ValueError, RuntimeError, KeyError) as e:
        raise FormatError(path, f"not a consistent ATTEMPT mixture ({e})") from None
    return mix


# --- building one for a run -----------------------------------------------------------------
def load_sources(refs: Sequence[str], origin: Origin, model: str) -> tuple[torch.Tensor, list]:
    """The frozen source prompts (J, P, d) and their names, from prompt files or run directories
    (their prompt.safetensors; library names are resolved by the caller); a vector is applied to
    `origin` (origin + tau). Everything must be for `model` with origin's shape; the error names
    the offending file."""
    from tpv.format import file_in_dir

    if not refs:
        raise ValueError("ATTEMPT needs at least one source prompt (--source NAME, repeatable)")
    tensors, names = [], []
    for ref in refs:
        path = Path(ref)
        if not path.exists():
            raise FileNotFoundError(f"--source {ref}: no such file or directory")
        if path.is_dir() and (path / FILE_NAME).is_file():
            raise ValueError(f"--source {ref}: an ATTEMPT run is not a source prompt")
        path = file_in_dir(path, prefer="prompt")
        obj = load(path)
        if isinstance(obj, Origin):
            raise ValueError(f"--source {path}: an origin is not a tuned source prompt")
        if obj.model != model:
            raise ValueError(f"--source {path}: made for model {obj.model!r}, not {model!r}")
        if obj.shape != origin.shape:
            raise ValueError(
                f"--source {path}: shape {obj.num_tokens}x{obj.hidden_size}, but this run's "
                f"target prompt is {origin.num_tokens}x{origin.hidden_size} (--tokens)"
            )
        if isinstance(obj, TaskPromptVector):
            obj = obj.apply(origin)
        assert isinstance(obj, SoftPrompt)
        tensors.append(obj.tensor)
        names.append("+".join(obj.tasks) if obj.tasks else obj.name)
    return torch.stack(tensors), names


def build(
    refs: Sequence[str],
    start: SoftPrompt,
    origin: Origin,
    *,
    temperature: float | None = None,
    rank: int = DEFAULT_RANK,
    seed: int = 0,
) -> AttemptPrompt:
    """A fresh mixture: the sources frozen, the target starting from `start` (the origin unless
    --init says otherwise), the attention module initialised from `seed`."""
    sources, names = load_sources(refs, origin, start.model)
    return AttemptPrompt(
        sources,
        start.tensor,
        model=start.model,
        source_names=names,
        temperature=temperature,
        rank=rank,
        seed=seed,
        record={"target_init": start.name, "origin_id": origin.id, "source_refs": list(refs)},
    )
