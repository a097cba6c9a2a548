"""PEFT prompt-tuning adapters: export any tpv prompt to one, import one back as a vector.

    export_peft(prompt, "adapters/sst2", backbone=backbone)       # -> PeftModel.from_pretrained
    tau = import_peft("adapters/sst2", origin="runs/sst2/origin.safetensors")

An adapter is a directory with `adapter_config.json` (a PEFT `PromptTuningConfig`) and
`adapter_model.safetensors` holding one tensor, `prompt_embeddings`, of shape
(num_virtual_tokens * num_transformer_submodules, token_dim).

How PEFT (>= 0.4, checked against 0.21.2) uses that tensor:
- causal LMs: rows are prepended to the input embeddings, the attention mask gets P leading
  ones, and position ids are left to the model (PEFT drops any given). On un-padded inputs that
  is exactly tpv's [prompt][input] layout with positions 0..P+T-1.
- seq2seq LMs: PEFT's default is num_transformer_submodules=2 (2P rows: an "encoder half" and a
  "decoder half"), but both forward() and generate() only prepend the first P rows to the
  encoder input; the decoder half is never read. tpv has one prompt in front of the encoder, so
  export writes num_transformer_submodules=1 (P rows, exact everywhere) by default; asked for
  the 2P layout, it writes the prompt in both halves. Import always takes the encoder half.

tpv never unpickles: an adapter saved as `adapter_model.bin` is refused.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from tpv.format import file_in_dir
from tpv.identity import display_name, same_model
from tpv.io import FormatError, read_safetensors, write_json, write_safetensors
from tpv.vectors import IncompatibleError, Origin, SoftPrompt, TaskPromptVector, load

log = logging.getLogger(__name__)

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
PICKLE_WEIGHTS_FILE = "adapter_model.bin"
WEIGHTS_KEY = "prompt_embeddings"
TASK_TYPES = {"causal": "CAUSAL_LM", "seq2seq": "SEQ_2_SEQ_LM"}
PEFT_INITS = ("RANDOM", "SAMPLE_VOCAB", "TEXT")


# --- what an adapter directory holds ---------------------------------------------------------
@dataclass(frozen=True)
class PeftAdapter:
    """A prompt-tuning adapter read from disk and checked: the prompt PEFT actually uses."""

    path: Path
    config: dict[str, Any]
    prompt: torch.Tensor  # (P, token_dim): the rows PEFT prepends (the encoder half for seq2seq)
    decoder_half: torch.Tensor | None  # seq2seq with 2 submodules: rows PEFT stores, never reads
    tpv_meta: dict[str, Any] = field(default_factory=dict)  # set when tpv wrote the adapter

    @property
    def num_virtual_tokens(self) -> int:
        return int(self.config["num_virtual_tokens"])

    @property
    def token_dim(self) -> int:
        return int(self.config["token_dim"])

    @property
    def task_type(self) -> str:
        return str(self.config["task_type"])

    @property
    def num_transformer_submodules(self) -> int:
        return int(self.config["num_transformer_submodules"])

    @property
    def base_model(self) -> str | None:
        return self.config.get("base_model_name_or_path") or None

    @property
    def init(self) -> str:
        return str(self.config.get("prompt_tuning_init") or "RANDOM").upper()


def _field(path: Path, config: dict, key: str, kinds: tuple[type, ...], minimum: int | None = None):
    value = config.get(key)
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise FormatError(path, f"field {key!r} is {value!r}; expected {kinds[0].__name__}")
    if minimum is not None and value < minimum:
        raise FormatError(path, f"field {key!r} is {value}; expected at least {minimum}")
    return value


def read_peft(adapter_dir: str | Path) -> PeftAdapter:
    """Read and check a PEFT prompt-tuning adapter directory (refusing anything else)."""
    d = Path(adapter_dir)
    if not d.is_dir():
        raise FormatError(d, "not a directory (a PEFT adapter is a directory)")
    cfg_path = d / CONFIG_FILE
    if not cfg_path.is_file():
        raise FormatError(d, f"no {CONFIG_FILE} (not a PEFT adapter directory)")
    try:
        config = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise FormatError(cfg_path, f"not valid JSON ({e})") from None
    if not isinstance(config, dict):
        raise FormatError(cfg_path, f"holds a JSON {type(config).__name__}, not an object")
    peft_type = config.get("peft_type")
    if peft_type != "PROMPT_TUNING":
        raise FormatError(
            cfg_path,
            f"field 'peft_type' is {peft_type!r}, not 'PROMPT_TUNING': only prompt-tuning "
            "adapters hold a soft prompt tpv can use",
        )
    task_type = config.get("task_type")
    if task_type not in TASK_TYPES.values():
        raise FormatError(
            cfg_path,
            f"field 'task_type' is {task_type!r}; tpv prompts work with "
            f"{sorted(TASK_TYPES.values())}",
        )
    P = _field(cfg_path, config, "num_virtual_tokens", (int,), minimum=1)
    dim = _field(cfg_path, config, "token_dim", (int,), minimum=1)
    subs = config.get("num_transformer_submodules")
    if subs is None:  # PEFT fills the default in at load time; so do we
        subs = 2 if task_type == "SEQ_2_SEQ_LM" else 1
        config = {**config, "num_transformer_submodules": subs}
    if isinstance(subs, bool) or subs not in (1, 2):
        raise FormatError(cfg_path, f"field 'num_transformer_submodules' is {subs!r}; expected 1/2")
    if subs == 2 and task_type != "SEQ_2_SEQ_LM":
        raise FormatError(cfg_path, "num_transformer_submodules 2 is only meaningful for seq2seq")

    weights = d / WEIGHTS_FILE
    if not weights.is_file():
        if (d / PICKLE_WEIGHTS_FILE).is_file():
            raise FormatError(
                d,
                f"weights are in {PICKLE_WEIGHTS_FILE} (a pickle, which tpv never loads); "
                "re-save the adapter with save_pretrained(..., safe_serialization=True)",
            )
        raise FormatError(d, f"no {WEIGHTS_FILE}")
    tensors, header = read_safetensors(weights)
    if WEIGHTS_KEY not in tensors:
        raise FormatError(weights, f"no tensor {WEIGHTS_KEY!r} (found {sorted(tensors)})")
    t = tensors[WEIGHTS_KEY]
    expected = (P * subs, dim)
    if tuple(t.shape) != expected:
        raise FormatError(
            weights,
            f"tensor {WEIGHTS_KEY!r} has shape {tuple(t.shape)}, but {CONFIG_FILE} says "
            f"num_virtual_tokens {P} x num_transformer_submodules {subs} by token_dim {dim} "
            f"= {expected}",
        )
    t = t.float()
    if not torch.isfinite(t).all():
        raise FormatError(weights, f"tensor {WEIGHTS_KEY!r} holds NaN/Inf values")
    tpv_meta: dict[str, Any] = {}
    if "tpv" in header:
        with contextlib.suppress(json.JSONDecodeError):
            tpv_meta = json.loads(header["tpv"])
    return PeftAdapter(
        path=d,
        config=config,
        prompt=t[:P].clone(),
        decoder_half=t[P:].clone() if subs == 2 else None,
        tpv_meta=tpv_meta if isinstance(tpv_meta, dict) else {},
    )


# --- export -----------------------------------------------------------------------------------
def _model_config(name: str) -> dict[str, Any] | None:
    """The model's config.json as a dict when it can be found without the network, else None.

    `name` is a recorded model id (tpv.identity): a GGUF's de-quantised cache, a directory's
    own config.json, or a hub id in the local cache."""
    from tpv.identity import split
    from tpv.paths import models_home

    path, tag = split(name)
    candidates = [Path(path) / "config.json"]
    if tag and tag.startswith("sha256:"):
        candidates.insert(0, models_home() / f"{path}-{tag.split(':', 1)[1]}" / "config.json")
    elif tag is None and "/" not in path:  # an older file's bare GGUF stem: its conversion
        candidates += sorted(models_home().glob(f"{path}*/config.json"))
    for c in candidates:
        if c.is_file():
            return json.loads(c.read_text(encoding="utf-8"))
    try:  # a hub id already in the local cache
        from transformers import AutoConfig

        return AutoConfig.from_pretrained(name, local_files_only=True).to_dict()
    except Exception:  # noqa: BLE001 - any failure just means "not known offline"
        return None


def _run_model_config(prompt: object) -> dict[str, Any] | None:
    """A run directory's own config.json names the model it was trained with (--model): a
    local directory, a hub id in the local cache, or a GGUF file's de-quantised cache."""
    if not isinstance(prompt, (str, Path)) or not Path(prompt).is_dir():
        return None
    try:
        spec = json.loads((Path(prompt) / "config.json").read_text(encoding="utf-8"))["model"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError):
        return None
    if not isinstance(spec, str):
        return None  # the embedded model: its id in the prompt already finds its cache
    if spec.endswith(".gguf") and Path(spec).is_file():
        from tpv.identity import gguf_identity

        return _model_config(gguf_identity(spec))
    return _model_config(spec)


def _first(config: dict[str, Any], *keys: str) -> int | None:
    for k in keys:
        if isinstance(config.get(k), int):
            return int(config[k])
    return None


def _refuse_attempt(path: Path) -> None:
    """An ATTEMPT result is a different prompt for every input; a PEFT prompt-tuning adapter
    holds one fixed prompt, so there is nothing faithful to export (docs/attempt.md)."""
    from tpv.attempt import is_attempt

    if is_attempt(path):
        raise ValueError(
            f"{path}: an ATTEMPT mixture makes one prompt per input (attention over source "
            "prompts); a PEFT prompt-tuning adapter holds one fixed prompt, so it cannot be "
            "exported. Evaluate it with `tpv eval --prompt` (see docs/attempt.md)"
        )


def _as_prompt(
    obj: SoftPrompt | TaskPromptVector | Origin | str | Path,
    origin: Origin | str | Path | None,
    coef: float,
) -> SoftPrompt:
    if isinstance(obj, (str, Path)):
        _refuse_attempt(Path(obj))
        # A run directory holds origin, prompt and vector: the prompt is what to export.
        obj = load(file_in_dir(obj, prefer="prompt"))
    if isinstance(obj, TaskPromptVector):
        if origin is None:
            raise ValueError(
                f"vector {obj.name!r} is a difference, not a prompt: give the origin to apply "
                "it to (origin= / --origin)"
            )
        o = origin if isinstance(origin, Origin) else Origin.load(origin)
        return obj.apply(o, coef)
    if isinstance(obj, Origin):
        return obj.as_prompt(name=f"origin-{obj.id}")
    if origin is not None:
        log.warning("origin is only used to apply a vector; ignoring it for a %s", obj.kind)
    return obj


def export_peft(
    prompt: SoftPrompt | TaskPromptVector | Origin | str | Path,
    out: str | Path,
    *,
    origin: Origin | str | Path | None = None,
    coef: float = 1.0,
    backbone=None,
    base_model: str | None = None,
    task_type: str | None = None,
    num_transformer_submodules: int = 1,
    overwrite: bool = False,
) -> Path:
    """Write `prompt` as a PEFT prompt-tuning adapter directory that
    `PeftModel.from_pretrained(base_model, out)` loads and runs like tpv does.

    prompt: a SoftPrompt, an Origin, a TaskPromptVector (with `origin`, applied with `coef`),
      or a path to any of them or to a run directory (its prompt.safetensors).
    backbone: the tpv Backbone the prompt was made for; gives the task type, layer and head
      counts. Without it they come from the model's config found offline, or `task_type`
      ("causal"/"seq2seq" or PEFT's "CAUSAL_LM"/"SEQ_2_SEQ_LM").
    base_model: what to write as base_model_name_or_path (default: the prompt's model id).
    num_transformer_submodules: seq2seq only; 1 (default, exact) or 2 (PEFT's default layout,
      the prompt copied into the decoder half that PEFT >= 0.4 never reads).
    """
    p = _as_prompt(prompt, origin, coef)
    out = Path(out)
    config, peft_task = _export_config(p, backbone, base_model, task_type, run=prompt)
    seq2seq = peft_task == "SEQ_2_SEQ_LM"
    subs = num_transformer_submodules if seq2seq else 1
    if subs not in (1, 2):
        raise ValueError(f"num_transformer_submodules must be 1 or 2, got {subs}")
    adapter_config = _adapter_config(p, config, base_model, peft_task, subs)
    with contextlib.suppress(Exception):
        from importlib.metadata import version

        adapter_config["peft_version"] = version("peft")
    rows = p.tensor if subs == 1 else torch.cat([p.tensor, p.tensor], dim=0)
    readme = _model_card(p, adapter_config)

    def build(tmp: Path) -> None:
        write_json(tmp / CONFIG_FILE, adapter_config)
        write_safetensors(
            tmp / WEIGHTS_FILE,
            {WEIGHTS_KEY: rows.float()},
            {"format": "pt", "tpv": json.dumps(p.metadata())},
        )
        (tmp / "README.md").write_text(readme, encoding="utf-8")

    _write_dir_atomically(out, build, overwrite)
    log.info("exported %s to PEFT adapter %s (%s, %d x %d)", p.name, out, peft_task, *rows.shape)
    return out


def _export_config(
    p: SoftPrompt, backbone, base_model: str | None, task_type: str | None, run: object = None
) -> tuple[dict[str, Any] | None, str]:
    """The model's config (from the backbone, or found offline, or named by the run directory
    `run` the prompt comes from) and PEFT's task type."""
    config: dict[str, Any] | None = None
    if backbone is not None:
        if not same_model(backbone.name, p.model):
            raise IncompatibleError(
                f"prompt {p.name!r} is for model {p.model!r}; the backbone is {backbone.name!r}"
            )
        if backbone.hidden_size != p.hidden_size:
            raise IncompatibleError(
                f"prompt {p.name!r} has hidden size {p.hidden_size}; backbone {backbone.name!r} "
                f"has {backbone.hidden_size}"
            )
        config = backbone.config.to_dict()
        config["is_encoder_decoder"] = backbone.is_encoder_decoder
    elif task_type is None:
        config = (
            _model_config(base_model or p.model) or _model_config(p.model) or _run_model_config(run)
        )

    if task_type is not None:
        peft_task = TASK_TYPES.get(task_type, task_type)
        if peft_task not in TASK_TYPES.values():
            raise ValueError(
                f"task_type {task_type!r}: use causal/seq2seq (or CAUSAL_LM/SEQ_2_SEQ_LM)"
            )
    elif config is not None:
        peft_task = TASK_TYPES["seq2seq" if config.get("is_encoder_decoder") else "causal"]
    else:
        raise ValueError(
            f"cannot tell whether model {p.model!r} is causal or seq2seq without loading it: "
            "pass backbone=, or task_type='causal'/'seq2seq' (CLI: --task-type)"
        )
    return config, peft_task


def _adapter_config(
    p: SoftPrompt, config: dict[str, Any] | None, base_model: str | None, peft_task: str, subs: int
) -> dict[str, Any]:
    """adapter_config.json as PEFT writes it for prompt tuning."""
    if config is not None:
        cfg_dim = _first(config, "hidden_size", "d_model", "n_embd")
        if cfg_dim is not None and cfg_dim != p.hidden_size:
            raise IncompatibleError(
                f"prompt {p.name!r} has hidden size {p.hidden_size}; model {p.model!r} has "
                f"{cfg_dim}"
            )
    config = config or {}
    return {
        "auto_mapping": None,
        "base_model_name_or_path": base_model or display_name(p.model),
        "inference_mode": True,
        "modules_to_save": None,
        "num_attention_heads": _first(config, "num_attention_heads", "num_heads", "n_head"),
        "num_layers": _first(config, "num_hidden_layers", "num_layers", "n_layer"),
        "num_transformer_submodules": subs,
        "num_virtual_tokens": p.num_tokens,
        "peft_type": "PROMPT_TUNING",
        # RANDOM: PEFT builds an empty embedding (no tokenizer, no download) that loading fills.
        "prompt_tuning_init": "RANDOM",
        "prompt_tuning_init_text": None,
        "revision": None,
        "task_type": peft_task,
        "token_dim": p.hidden_size,
        "tokenizer_kwargs": None,
        "tokenizer_name_or_path": None,
    }


def _model_card(p: SoftPrompt, cfg: dict[str, Any]) -> str:
    tasks = ", ".join(p.tasks) or p.name
    return (
        "---\nlibrary_name: peft\ntags: [prompt-tuning, task-prompt-vectors]\n---\n"
        f"# Soft prompt `{p.name}` (tasks: {tasks})\n\n"
        f"Exported by task-prompt-vectors (tpv) from a {p.num_tokens} x {p.hidden_size} prompt "
        f"for model `{p.model}` (origin {p.origin_id}).\n\n"
        "```python\nfrom peft import PeftModel\n"
        "model = PeftModel.from_pretrained(base_model, this_directory)\n```\n\n"
        f"task_type {cfg['task_type']}, num_transformer_submodules "
        f"{cfg['num_transformer_submodules']}.\n"
    )


def _write_dir_atomically(out: Path, build, overwrite: bool) -> None:
    """Build the directory beside `out`, then rename it into place: readers never see a half."""
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} exists and is not empty (pass overwrite=True / --overwrite)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    old: Path | None = None
    try:
        build(tmp)
        if out.exists():
            # Move the old one aside first (rename cannot replace a non-empty directory).
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
            os.replace(out, old / out.name)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not out.exists() and (old / out.name).exists():
            os.replace(old / out.name, out)  # put the previous adapter back
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


# --- import -----------------------------------------------------------------------------------
def _peft_init_origin(adapter: PeftAdapter, backbone, seed: int | None) -> Origin:
    """Rebuild the initialisation PEFT drew for this adapter (`prompt_tuning_init`).

    TEXT is deterministic. RANDOM and SAMPLE_VOCAB draw from torch's global RNG; they are
    reproduced when `torch.manual_seed(seed)` ran just before `get_peft_model` (on CPU):
    PEFT first builds an nn.Embedding(P * submodules, dim) (normal init), then SAMPLE_VOCAB
    draws token ids with torch.randint.
    """
    init, P = adapter.init, adapter.num_virtual_tokens
    total = P * adapter.num_transformer_submodules
    params: dict[str, Any] = {"peft_init": init, "adapter": str(adapter.path)}
    if init == "TEXT":
        text = adapter.config.get("prompt_tuning_init_text")
        if not text:
            raise FormatError(
                adapter.path / CONFIG_FILE, "TEXT init without 'prompt_tuning_init_text'"
            )
        # PEFT tokenises with special tokens, repeats to 2P/P ids and keeps the first rows.
        ids = list(backbone.tokenizer(text)["input_ids"])
        ids = (ids * (total // max(1, len(ids)) + 1))[:total]
        tensor = backbone.embed(torch.tensor(ids[:P]))
        params |= {"text": text, "token_ids": ids[:P]}
        strategy, seed = "peft-text", 0
    elif init in ("RANDOM", "SAMPLE_VOCAB"):
        if seed is None:
            raise ValueError(
                f"{adapter.path}: adapter was made with PromptTuningInit.{init}, drawn from "
                "torch's global RNG; give the origin file, or 'peft:SEED' if torch.manual_seed("
                "SEED) ran just before get_peft_model"
            )
        with torch.random.fork_rng(devices=[]):  # leave the caller's RNG state alone
            torch.manual_seed(seed)
            tensor = torch.nn.Embedding(total, adapter.token_dim).weight.detach()[:P]
            if init == "SAMPLE_VOCAB":
                ids = torch.randint(0, backbone.vocab_size, (total,), dtype=torch.long)
                tensor = backbone.embed(ids[:P])
                params["token_ids"] = ids[:P].tolist()
        strategy = f"peft-{init.lower().replace('_', '-')}"
    else:
        raise FormatError(
            adapter.path / CONFIG_FILE,
            f"field 'prompt_tuning_init' is {init!r}; expected one of {PEFT_INITS}",
        )
    return Origin(tensor=tensor, model=backbone.name, strategy=strategy, seed=seed, params=params)


def resolve_origin(spec: Origin | str | Path | int, adapter: PeftAdapter, backbone=None) -> Origin:
    """The origin for an import, from any of:

    an Origin; a path to an origin file; "SEED" or "vocab:SEED" / "uniform:SEED" (rebuilt with
    `backbone.make_origin`, as `tpv train --origin-seed` does); "peft" or "peft:SEED" (the
    adapter's own PEFT init, see `_peft_init_origin`). The last two need the backbone.
    """
    from tpv.resolve import origin_spec

    o = origin_spec(spec)
    if isinstance(o, Origin):
        return o
    (strategy, seed), text = o, str(spec).strip()
    if backbone is None:
        raise ValueError(f"origin {text!r} is rebuilt from the model: pass backbone= (--model)")
    if backbone.hidden_size != adapter.token_dim:
        raise IncompatibleError(
            f"{adapter.path}: field 'token_dim' is {adapter.token_dim}, but model "
            f"{backbone.name!r} has hidden size {backbone.hidden_size}"
        )
    if strategy == "peft":
        return _peft_init_origin(adapter, backbone, seed)
    if seed is None:
        raise ValueError(f"origin {text!r}: missing seed")
    return backbone.make_origin(adapter.num_virtual_tokens, seed, strategy)


def import_peft(
    adapter_dir: str | Path,
    origin: Origin | str | Path | int,
    *,
    backbone=None,
    name: str | None = None,
    tasks: tuple[str, ...] | list[str] | None = None,
    check_model: bool = True,
) -> TaskPromptVector:
    """A PEFT prompt-tuning adapter as a task prompt vector: its prompt minus `origin`.

    origin: see `resolve_origin` (an Origin, an origin file, a seed, or the adapter's PEFT init).
    check_model: refuse when the adapter's base_model_name_or_path names another model than the
      origin's (model ids differ between a hub id and a local copy: pass False then).
    """
    adapter = read_peft(adapter_dir)
    o = resolve_origin(origin, adapter, backbone)
    where = f"{adapter.path}"
    if o.hidden_size != adapter.token_dim:
        raise IncompatibleError(
            f"{where}: field 'token_dim' is {adapter.token_dim}, but origin {o.id} "
            f"(model {o.model!r}) has hidden size {o.hidden_size}"
        )
    if o.num_tokens != adapter.num_virtual_tokens:
        raise IncompatibleError(
            f"{where}: field 'num_virtual_tokens' is {adapter.num_virtual_tokens}, but origin "
            f"{o.id} has {o.num_tokens} tokens"
        )
    if backbone is not None and not same_model(backbone.name, o.model):
        raise IncompatibleError(f"origin {o.id} is for model {o.model!r}, not {backbone.name!r}")
    if (
        check_model
        and adapter.base_model
        and adapter.base_model not in (o.model, display_name(o.model))
    ):
        raise IncompatibleError(
            f"{where}: field 'base_model_name_or_path' is {adapter.base_model!r}, but origin "
            f"{o.id} is for model {o.model!r} (if both name the same model, pass "
            "check_model=False / --no-check-model)"
        )
    if adapter.decoder_half is not None and not torch.equal(adapter.decoder_half, adapter.prompt):
        log.info("%s: ignoring the decoder half of the seq2seq prompt (PEFT never reads it)", where)
    meta = adapter.tpv_meta
    source_origin = meta.get("origin_id")
    if source_origin and source_origin != o.id:
        log.warning(
            "%s was exported from a prompt on origin %s; subtracting origin %s instead",
            where,
            source_origin,
            o.id,
        )
    tasks = tuple(tasks or meta.get("tasks") or ())
    pname = name or meta.get("name") or adapter.path.name
    tuned = SoftPrompt(
        adapter.prompt,
        o.model,
        name=pname,
        origin_id=o.id,
        tasks=tasks or (pname,),
        record={
            "made_by": "peft import",
            "adapter": str(adapter.path),
            "peft_task_type": adapter.task_type,
            "peft_num_transformer_submodules": adapter.num_transformer_submodules,
            "peft_base_model": adapter.base_model,
        },
    )
    return TaskPromptVector.from_prompts(tuned, o, name=name)
