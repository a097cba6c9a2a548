"""Which model is this? An identity by content, recorded in every origin, prompt and vector.

A file name or a path as typed says little: two GGUF files may share a name, and one local
directory may be typed as `tiny`, `./tiny/` or `/abs/tiny`. The id recorded as `model` (and
compared by every compatibility check) is therefore:

  GGUF file        <file stem>@sha256:<first 16 hex of the SHA-256 of the whole file>
                   (SHA-256 runs at ~1.5 GB/s here: 0.06 s for SmolLM2's 98 MB, so no sampling
                   is needed and two files differing in any byte get different ids)
  local directory  <resolved absolute path>@config:<16 hex over config.json and the weight
                   index: the names and sizes of the weight files and their safetensors headers
                   (tensor names, shapes, dtypes, offsets)>. Rewriting weights in place with
                   the same shapes keeps the id (that is the same model, retrained).
  hub id           the id as given, `<id>@<revision>` when a revision is given

Files written before identities existed record a bare name ("SmolLM2-135M-Instruct.Q4_1", or a
directory as typed). They keep loading: `same_model` matches such a name to an identity with
the same name part, and logs a warning once per name saying so.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

log = logging.getLogger(__name__)

IDENTITY_VERSION = 1  # written into file metadata as "model_identity"
_CONTENT_TAGS = ("sha256:", "config:")  # what follows "@" in a content identity
_warned: set[tuple[str, str]] = set()


def sha256_file(path: str | Path, block: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            h.update(chunk)
    return h.hexdigest()


def gguf_identity(path: str | Path, digest: str | None = None) -> str:
    """`<stem>@sha256:<16 hex>`; `digest` when the full SHA-256 is already known."""
    path = Path(path)
    return f"{path.stem}@sha256:{(digest or sha256_file(path))[:16]}"


def _safetensors_header(path: Path) -> bytes:
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        return f.read(n) if 0 < n < 100 << 20 else b""


def directory_digest(path: str | Path) -> str:
    """16 hex over a model directory's config and weight layout (not the weight values)."""
    d = Path(path)
    h = hashlib.sha256()
    for name in ("config.json", "model.safetensors.index.json", "pytorch_model.bin.index.json"):
        f = d / name
        if f.is_file():
            h.update(name.encode() + b"\0" + f.read_bytes() + b"\0")
    weights = sorted(p for p in d.iterdir() if p.suffix in (".safetensors", ".bin") and p.is_file())
    for p in weights:
        h.update(f"{p.name}\0{p.stat().st_size}\0".encode())
        if p.suffix == ".safetensors":
            h.update(_safetensors_header(p))
    return h.hexdigest()[:16]


def directory_identity(path: str | Path) -> str:
    d = Path(path).expanduser().resolve()
    return f"{d}@config:{directory_digest(d)}"


def hub_identity(repo_id: str, revision: str | None = None) -> str:
    return f"{repo_id}@{revision}" if revision else repo_id


def split(model: str) -> tuple[str, str | None]:
    """(name part, content tag) of a recorded model id; the tag is None for a bare name."""
    head, sep, tail = model.rpartition("@")
    if sep and tail.startswith(_CONTENT_TAGS):
        return head, tail
    return model, None


def display_name(model: str) -> str:
    """The name part: a GGUF stem, a directory path, or a hub id (revision kept)."""
    return split(model)[0]


def same_model(a: str, b: str) -> bool:
    """Do two recorded model ids name the same model?

    Equal ids match. A bare name (a file from before identities) matches an identity whose
    name part is that name (or, for a directory typed relative to here, resolves to it); a
    warning says that only names were compared.
    """
    if a == b:
        return True
    (name_a, tag_a), (name_b, tag_b) = split(a), split(b)
    if (tag_a is None) == (tag_b is None):
        return False  # two identities that differ, or two different bare names
    bare, name = (name_a, name_b) if tag_a is None else (name_b, name_a)
    matched = bare == name
    if not matched and (tag_a or tag_b or "").startswith("config:"):
        try:
            matched = str(Path(bare).expanduser().resolve()) == name
        except OSError:
            matched = False
    if matched and (bare, name) not in _warned:
        _warned.add((bare, name))
        log.warning(
            "a file records model %r without a content identity (written by an older tpv): "
            "matched to %r by name only",
            bare,
            a if tag_a else b,
        )
    return matched


def describe_mismatch(a: str, b: str) -> str:
    """Why two ids differ, in words (same name, different content is the surprising case)."""
    (name_a, tag_a), (name_b, tag_b) = split(a), split(b)
    if name_a == name_b and tag_a and tag_b:
        return f"same name {name_a!r} but different content ({tag_a} vs {tag_b})"
    return f"{a!r} vs {b!r}"
