"""Origins, soft prompts and task prompt vectors: tensors with metadata, arithmetic, safetensors IO.

    origin = Origin.create(backbone, num_tokens=50, seed=0)          # seeded initialisation
    tuned = ...                                                       # a trained SoftPrompt
    sst2 = TaskPromptVector.from_prompts(tuned, origin)              # tuned - origin
    prompt = (sst2 + 0.5 * mnli).apply(origin)                        # origin + sum of vectors

All three are P x hidden float32 tensors plus JSON metadata, saved as one .safetensors file
(metadata in the header under the key "tpv"). Never pickle.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

import torch

from tpv import format as fmt
from tpv.identity import IDENTITY_VERSION, describe_mismatch, same_model
from tpv.io import FormatError
from tpv.options import Choice

log = logging.getLogger(__name__)
FORMAT_VERSION = fmt.FORMAT_VERSION  # kept importable from here


class OriginStrategy(Choice):
    vocab = "vocab"  # rows of the embedding matrix of sampled vocabulary tokens (the paper)
    uniform = "uniform"
    text = "text"


ORIGIN_STRATEGIES = tuple(m.value for m in OriginStrategy)


class IncompatibleError(ValueError):
    """Two prompt tensors cannot be combined; the message names both sides."""


def _content_id(tensor: torch.Tensor) -> str:
    """A stable id from the exact bytes and shape of a tensor."""
    t = tensor.detach().to(torch.float32).contiguous().cpu()
    h = hashlib.sha256(str(tuple(t.shape)).encode())
    h.update(t.numpy().tobytes())
    return h.hexdigest()[:16]


# eq=False: a generated __eq__ would compare tensors with == and raise ("Boolean value of
# Tensor ... is ambiguous"), and its __hash__ would hash the dict fields. Identity it is;
# compare contents with torch.equal.
@dataclass(frozen=True, eq=False)
class PromptTensor:
    """Shared behaviour: a (num_tokens, hidden_size) tensor for one model, plus metadata."""

    tensor: torch.Tensor
    model: str
    kind: ClassVar[str] = "prompt"
    dtype: ClassVar[torch.dtype] = torch.float32

    def __post_init__(self) -> None:
        t = self.tensor
        if not isinstance(t, torch.Tensor) or t.dim() != 2:
            shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"{self.kind}: expected a 2-d (tokens, hidden) tensor, got {shape}")
        # One dtype and device per kind for arithmetic and hashing (see TaskPromptVector.dtype).
        object.__setattr__(self, "tensor", t.detach().cpu().to(self.dtype).contiguous())

    @property
    def num_tokens(self) -> int:
        return int(self.tensor.shape[0])

    @property
    def hidden_size(self) -> int:
        return int(self.tensor.shape[1])

    @property
    def shape(self) -> tuple[int, int]:
        return (self.num_tokens, self.hidden_size)

    def norm(self) -> float:
        return float(self.tensor.norm())

    def _meta(self) -> dict[str, Any]:
        raise NotImplementedError

    def metadata(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "format_version": FORMAT_VERSION,
            "model": self.model,
            "model_identity": IDENTITY_VERSION,
            "num_tokens": self.num_tokens,
            "hidden_size": self.hidden_size,
            **self._meta(),
        }

    # --- IO ---------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write one .safetensors file atomically; a directory gets `<kind>.safetensors`."""
        path = Path(path)
        if path.suffix != ".safetensors":
            path = path / f"{self.kind}.safetensors"
        fmt.write(path, self.tensor, self.metadata())
        return path

    save_pretrained = save

    @classmethod
    def load(cls, path: str | Path):
        obj = load(path)
        if not isinstance(obj, cls):
            raise FormatError(path, f"holds kind {obj.kind!r}, expected {cls.kind!r}")
        return obj

    from_pretrained = load


@dataclass(frozen=True, eq=False)
class Origin(PromptTensor):
    """A seeded soft-prompt initialisation for one model's embedding table."""

    strategy: str = "vocab"
    seed: int = 0
    params: dict[str, Any] = field(default_factory=dict)
    kind: ClassVar[str] = "origin"

    @property
    def id(self) -> str:
        return _content_id(self.tensor)

    def _meta(self) -> dict[str, Any]:
        return {"id": self.id, "strategy": self.strategy, "seed": self.seed, "params": self.params}

    def as_prompt(self, name: str = "origin", **record: Any) -> SoftPrompt:
        """The origin itself as a prompt (the untrained start, or the 'random' baseline)."""
        return SoftPrompt(self.tensor, self.model, name=name, origin_id=self.id, record=record)

    @classmethod
    def from_embeddings(
        cls,
        embed,
        model: str,
        num_tokens: int,
        seed: int = 0,
        strategy: str = "vocab",
        *,
        vocab_size: int | None = None,
        vocab_limit: int = 5000,
        low: float = -0.5,
        high: float = 0.5,
        text_ids: Sequence[int] | None = None,
        hidden_size: int | None = None,
    ) -> Origin:
        """Build an origin from `embed(ids) -> (n, hidden)` (the model's own input embedding,
        scaling included, so prompts live where the model expects them).

        vocab: P token ids drawn uniformly from the first `vocab_limit` ids (the paper).
        uniform: entries uniform in [low, high).  text: the embeddings of `text_ids`,
        repeated or cut to P tokens.
        """
        if num_tokens < 1:
            raise ValueError(f"num_tokens must be >= 1, got {num_tokens}")
        gen = torch.Generator().manual_seed(seed)
        if strategy == "vocab":
            limit = min(vocab_limit, vocab_size) if vocab_size else vocab_limit
            ids = torch.randint(0, limit, (num_tokens,), generator=gen)
            tensor = embed(ids)
            params: dict[str, Any] = {"vocab_limit": limit}
        elif strategy == "uniform":
            if hidden_size is None:
                hidden_size = int(embed(torch.tensor([0])).shape[-1])
            tensor = torch.rand((num_tokens, hidden_size), generator=gen) * (high - low) + low
            params = {"low": low, "high": high}
        elif strategy == "text":
            if not text_ids:
                raise ValueError("origin strategy 'text' needs the text's token ids")
            reps = math.ceil(num_tokens / len(text_ids))
            ids = torch.tensor(list(text_ids) * reps)[:num_tokens]
            tensor = embed(ids)
            params = {"text_ids": list(map(int, text_ids))}
        else:
            raise ValueError(
                f"unknown origin strategy {strategy!r}; use one of {ORIGIN_STRATEGIES}"
            )
        return cls(tensor=tensor.detach(), model=model, strategy=strategy, seed=seed, params=params)


@dataclass(frozen=True, eq=False)
class SoftPrompt(PromptTensor):
    """A prompt to put in front of a model: a tuned prompt, or an origin plus vectors."""

    name: str = "prompt"
    origin_id: str | None = None
    tasks: tuple[str, ...] = ()
    record: dict[str, Any] = field(default_factory=dict)
    kind: ClassVar[str] = "prompt"

    def _meta(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "origin_id": self.origin_id,
            "tasks": list(self.tasks),
            "record": self.record,
        }


@dataclass(frozen=True, eq=False)
class TaskPromptVector(PromptTensor):
    """tuned prompt - origin, with arithmetic that reads like the paper's."""

    name: str = "tau"
    tasks: tuple[str, ...] = ()
    origin_ids: tuple[str, ...] = ()
    record: dict[str, Any] = field(default_factory=dict)
    kind: ClassVar[str] = "vector"
    # float64: the difference of two float32 tensors is then exact (for any realistic range),
    # so origin + (tuned - origin) gives the tuned prompt back bit for bit.
    dtype: ClassVar[torch.dtype] = torch.float64

    def _meta(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "tasks": list(self.tasks),
            "origin_ids": list(self.origin_ids),
            "mixed_origins": len(set(self.origin_ids)) > 1,
            "record": self.record,
        }

    @classmethod
    def from_prompts(
        cls, tuned: SoftPrompt, origin: Origin, name: str | None = None
    ) -> TaskPromptVector:
        check_compatible(tuned, origin)
        if tuned.origin_id is not None and tuned.origin_id != origin.id:
            raise IncompatibleError(
                f"prompt {tuned.name!r} was tuned from origin {tuned.origin_id}, "
                f"not from the given origin {origin.id}"
            )
        tasks = tuned.tasks or (tuned.name,)
        return cls(
            tensor=tuned.tensor.double() - origin.tensor.double(),
            model=tuned.model,
            name=name or "+".join(tasks),
            tasks=tuple(tasks),
            origin_ids=(origin.id,),
            record={"made_by": "tuned - origin", "prompt_record": tuned.record},
        )

    # --- arithmetic -------------------------------------------------------------------------
    def _combine(self, other: TaskPromptVector, sign: float, op: str) -> TaskPromptVector:
        if not isinstance(other, TaskPromptVector):
            return NotImplemented  # type: ignore[return-value]
        check_compatible(self, other)
        tasks = self.tasks + tuple(t for t in other.tasks if t not in self.tasks)
        return TaskPromptVector(
            tensor=self.tensor + sign * other.tensor,
            model=self.model,
            name=f"{self.name} {op} {paren(other.name)}",
            tasks=tasks,
            origin_ids=_unique(self.origin_ids + other.origin_ids),
        )

    def __add__(self, other: TaskPromptVector) -> TaskPromptVector:
        return self._combine(other, 1.0, "+")

    def __radd__(self, other):
        # Lets the builtin sum() start from 0.
        if isinstance(other, (int, float)) and other == 0:
            return self
        return NotImplemented

    def __sub__(self, other: TaskPromptVector) -> TaskPromptVector:
        return self._combine(other, -1.0, "-")

    def __neg__(self) -> TaskPromptVector:
        return replace(self, tensor=-self.tensor, name=f"-{paren(self.name)}", record={})

    def __mul__(self, coef: float) -> TaskPromptVector:
        if isinstance(coef, bool) or not isinstance(coef, (int, float)):
            return NotImplemented
        name = f"{coef:g} * {paren(self.name)}"
        return replace(self, tensor=self.tensor * float(coef), name=name, record={})

    __rmul__ = __mul__

    def __truediv__(self, coef: float) -> TaskPromptVector:
        if isinstance(coef, bool) or not isinstance(coef, (int, float)):
            return NotImplemented
        return self * (1.0 / coef)

    def cosine(self, other: TaskPromptVector) -> float:
        check_compatible(self, other)
        a, b = self.tensor.flatten(), other.tensor.flatten()
        sa, sb = a.abs().max(), b.abs().max()
        if sa == 0 or sb == 0:
            return 0.0
        # Scale to max |entry| = 1 first: norms of very small (or large) float64 vectors would
        # underflow (overflow) and give 0 (or nan) for cos(a, a).
        a, b = a / sa, b / sb
        denom = float(a.norm() * b.norm())
        # Rounding can land a hair outside [-1, 1] (cos(a, a) = 1.0000000000000002).
        return max(-1.0, min(1.0, float(a @ b) / denom))

    def apply(self, origin: Origin, coef: float = 1.0) -> SoftPrompt:
        """origin + coef * self: a prompt ready to evaluate or to start tuning from."""
        check_compatible(self, origin)
        mixed = bool(self.origin_ids) and origin.id not in self.origin_ids
        return SoftPrompt(
            tensor=(origin.tensor.double() + coef * self.tensor).float(),
            model=self.model,
            name=self.name if coef == 1 else f"{coef:g} * {paren(self.name)}",
            origin_id=origin.id,
            tasks=self.tasks,
            record={
                "made_by": "origin + coef * vector",
                "coef": coef,
                "vector": self.name,
                "vector_origin_ids": list(self.origin_ids),
                "cross_origin": mixed,
            },
        )


def sum_vectors(vectors: Iterable[TaskPromptVector]) -> TaskPromptVector:
    """The sum of one or more vectors (an empty sum has no shape, so it is refused)."""
    vectors = list(vectors)
    if not vectors:
        raise ValueError("sum_vectors needs at least one vector")
    total = vectors[0]
    for v in vectors[1:]:
        total = total + v
    return total


def paren(name: str) -> str:
    return f"({name})" if any(c in name for c in " +-*") else name


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def _label(x: PromptTensor) -> str:
    name = getattr(x, "name", None) or (x.id if isinstance(x, Origin) else x.kind)
    return f"{x.kind} {name!r} (model {x.model!r}, shape {x.num_tokens}x{x.hidden_size})"


def check_compatible(a: PromptTensor, b: PromptTensor) -> None:
    if not same_model(a.model, b.model):
        raise IncompatibleError(
            f"different models: {_label(a)} vs {_label(b)} ({describe_mismatch(a.model, b.model)})"
        )
    if a.hidden_size != b.hidden_size:
        raise IncompatibleError(f"different hidden sizes: {_label(a)} vs {_label(b)}")
    if a.num_tokens != b.num_tokens:
        raise IncompatibleError(f"different numbers of virtual tokens: {_label(a)} vs {_label(b)}")


_KINDS: dict[str, type[PromptTensor]] = {
    "origin": Origin,
    "prompt": SoftPrompt,
    "vector": TaskPromptVector,
}


def load(path: str | Path) -> Origin | SoftPrompt | TaskPromptVector:
    """Load an origin, prompt or vector, checking the file thoroughly (see `tpv.format`).

    A directory is searched for exactly one of origin/prompt/vector.safetensors.
    """
    path, t, meta = fmt.read(path)
    kind = meta["kind"]
    if "model_identity" not in meta:
        log.warning(
            "%s: written by an older tpv, records model %r without a content identity; "
            "it is matched to models by that name only",
            path,
            meta["model"],
        )
    common = {"tensor": t, "model": meta["model"]}
    if kind == "origin":
        obj: PromptTensor = Origin(
            **common,
            strategy=meta.get("strategy", "vocab"),
            seed=int(meta.get("seed", 0)),
            params=meta.get("params", {}),
        )
        if "id" in meta and meta["id"] != obj.id:
            raise FormatError(
                path, f"origin id {meta['id']} does not match its tensor (content id {obj.id})"
            )
    elif kind == "prompt":
        obj = SoftPrompt(
            **common,
            name=meta.get("name", "prompt"),
            origin_id=meta.get("origin_id"),
            tasks=tuple(meta.get("tasks", ())),
            record=meta.get("record", {}),
        )
    else:
        obj = TaskPromptVector(
            **common,
            name=meta.get("name", "tau"),
            tasks=tuple(meta.get("tasks", ())),
            origin_ids=tuple(meta.get("origin_ids", ())),
            record=meta.get("record", {}),
        )
    return obj  # type: ignore[return-value]
