"""The tpv file format: one safetensors file per origin, prompt or vector.

A file holds one tensor named "prompt" (num_tokens x hidden_size) and a JSON object under the
header key "tpv" with at least kind, format_version, model, num_tokens and hidden_size. This
module writes and checks that layout; `tpv.vectors` turns checked metadata into objects.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from tpv.io import FormatError, read_safetensors, write_safetensors

FORMAT_VERSION = 1
TENSOR_KEY = "prompt"
KINDS = ("origin", "prompt", "vector")
REQUIRED = ("kind", "format_version", "model", "num_tokens", "hidden_size")


def file_in_dir(path: str | Path, prefer: str | None = None) -> Path:
    """The one tpv file a path stands for: a file is itself; a directory stands for its
    `<prefer>.safetensors` when there is one (a run directory holds all three kinds), else for
    the only `<kind>.safetensors` it holds."""
    path = Path(path)
    if not path.is_dir():
        return path
    if prefer is not None and (path / f"{prefer}.safetensors").is_file():
        return path / f"{prefer}.safetensors"
    if (path / "attempt.safetensors").is_file() and prefer != "origin":
        # An ATTEMPT run holds an origin but no single prompt: never stand for the origin.
        raise FormatError(
            path,
            "an ATTEMPT run: its result is attempt.safetensors (one prompt per input), not a "
            "single prompt (tpv eval --prompt takes it; see docs/attempt.md)",
        )
    found = [path / f"{k}.safetensors" for k in KINDS if (path / f"{k}.safetensors").exists()]
    if len(found) != 1:
        names = [k + ".safetensors" for k in KINDS]
        raise FormatError(path, f"expected exactly one of {names}, found {len(found)}")
    return found[0]


def write(path: str | Path, tensor: torch.Tensor, meta: dict[str, Any]) -> None:
    write_safetensors(path, {TENSOR_KEY: tensor}, {"tpv": json.dumps(meta)})


def read(path: str | Path) -> tuple[Path, torch.Tensor, dict[str, Any]]:
    """The checked tensor and metadata of a tpv file (a directory: see `file_in_dir`)."""
    path = file_in_dir(path)
    tensors, header = read_safetensors(path)
    if "tpv" not in header:
        raise FormatError(path, "no tpv metadata in the safetensors header (not written by tpv?)")
    try:
        meta = json.loads(header["tpv"])
    except json.JSONDecodeError as e:
        raise FormatError(path, f"tpv metadata is not valid JSON ({e})") from None
    if not isinstance(meta, dict):
        raise FormatError(path, f"tpv metadata is a JSON {type(meta).__name__}, not an object")
    missing = [k for k in REQUIRED if k not in meta]
    if missing:
        raise FormatError(path, f"metadata lacks field(s) {missing}")
    if meta["kind"] == "attempt":
        raise FormatError(
            path,
            "holds an ATTEMPT mixture (one prompt per input), not a single prompt: "
            "evaluate it with `tpv eval --prompt` or load it with tpv.attempt.load_attempt",
        )
    if meta["kind"] not in KINDS:
        raise FormatError(path, f"unknown kind {meta['kind']!r}; expected one of {list(KINDS)}")
    version = meta["format_version"]
    if isinstance(version, bool) or not isinstance(version, int):
        raise FormatError(path, f"format_version must be an integer, got {version!r}")
    if version > FORMAT_VERSION:
        raise FormatError(
            path, f"format_version {version} is newer than this tpv ({FORMAT_VERSION})"
        )
    if TENSOR_KEY not in tensors:
        raise FormatError(path, f"no tensor named {TENSOR_KEY!r} (found {sorted(tensors)})")
    t = tensors[TENSOR_KEY]
    expected = (meta["num_tokens"], meta["hidden_size"])
    if tuple(t.shape) != expected:
        raise FormatError(path, f"tensor shape {tuple(t.shape)} does not match metadata {expected}")
    if not torch.isfinite(t).all():
        bad = int((~torch.isfinite(t)).sum())
        raise FormatError(path, f"tensor holds {bad} NaN/Inf value(s)")
    return path, t, meta
