"""One resolver per kind of input a user names: a path or library entry, and an origin.

resolve_path("runs/rt/vector.safetensors")  ->  the path itself
resolve_path("rt")                          ->  the file of the library entry named "rt"
resolve_origin("3", backbone, 50)           ->  backbone.make_origin(50, 3) (strategy vocab)
resolve_origin("uniform:3", backbone, 50)   ->  backbone.make_origin(50, 3, "uniform")
resolve_origin("runs/rt/origin.safetensors") or a library name -> the saved origin
"""

from __future__ import annotations

from pathlib import Path

from tpv.vectors import ORIGIN_STRATEGIES, Origin


def resolve_path(ref: str | Path) -> Path:
    """A path for `ref`: itself when it exists, else the file of the library entry so named."""
    from tpv.library import resolve

    return resolve(ref)


def origin_spec(spec: Origin | str | Path | int) -> Origin | tuple[str, int | None]:
    """An Origin (given, or loaded from a file or library entry), or the (strategy, seed) to
    rebuild one from a model's embeddings: "SEED", "STRATEGY:SEED" or a bare "STRATEGY"."""
    if isinstance(spec, Origin):
        return spec
    if isinstance(spec, int) and not isinstance(spec, bool):
        return "vocab", spec
    if isinstance(spec, Path) or Path(str(spec)).exists():
        return Origin.load(spec)
    text = str(spec).strip()
    if text.isdigit():
        return "vocab", int(text)
    strategy, sep, seed_text = text.partition(":")
    if not sep and strategy not in ("peft",):
        return Origin.load(resolve_path(text))  # a library entry (or a clear not-found error)
    try:
        return strategy, int(seed_text) if seed_text else None
    except ValueError:
        raise ValueError(
            f"origin {text!r} is not a file or library entry, nor SEED or STRATEGY:SEED"
        ) from None


def resolve_origin(
    spec: Origin | str | Path | int, backbone=None, num_tokens: int | None = None
) -> Origin:
    """The origin `spec` names (see `origin_spec`); a seed is rebuilt for `backbone` with
    `num_tokens` virtual tokens, as `tpv train --origin-seed` builds it."""
    o = origin_spec(spec)
    if isinstance(o, Origin):
        return o
    strategy, seed = o
    if strategy not in ORIGIN_STRATEGIES:
        raise ValueError(f"origin {spec!r}: strategy {strategy!r}: use one of {ORIGIN_STRATEGIES}")
    if seed is None:
        raise ValueError(f"origin {spec!r}: missing seed")
    if backbone is None or num_tokens is None:
        raise ValueError(f"origin {spec!r} is rebuilt from the model: pass backbone and num_tokens")
    return backbone.make_origin(num_tokens, seed, strategy)
