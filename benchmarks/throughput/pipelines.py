"""The three pipelines: tpv's loop (its own train_step), PEFT + Trainer (A, B)."""

from __future__ import annotations

import copy
import tempfile
import time
from collections.abc import Sequence

import torch

from benchmarks.throughput.machine import _sync
from benchmarks.throughput.settings import Settings
from benchmarks.throughput.workloads import Data, Workload, summarize_training
from tpv import fastpath, metrics
from tpv.backbone import Backbone
from tpv.data import IGNORE, Encoded
from tpv.evaluate import Evaluator
from tpv.prompted import PromptedModel
from tpv.step import train_step
from tpv.train import lr_factor


# --- pipelines tpv and tpv-plain ---------------------------------------------------------------
def run_tpv(w: Workload, d: Data, s: Settings, peak: float | None, plain: bool = False) -> dict:
    """tpv's loop on its fast path, or (`plain`) on the plain path: the same code with
    TPV_FAST_PATH=0, which is tpv as it ran before the fast path."""
    if plain:
        with fastpath.plain():
            return _run_tpv(w.backbone, w, d, s, peak)
    bb = w.backbone
    dtype = fastpath.default_dtype(s.device)
    if dtype != bb.model.dtype:
        # A copy in the fast path's dtype (bf16 on a CPU with native bf16); A, B and tpv-plain
        # keep the workload's float32 model.
        bb = Backbone(copy.deepcopy(bb.model).to(dtype), bb.tokenizer, name=bb.name)
    return _run_tpv(bb, w, d, s, peak)


def _run_tpv(bb: Backbone, w: Workload, d: Data, s: Settings, peak: float | None) -> dict:
    dev = s.device
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
        # Rows x width, the shared part counted per row; packed rows have no padding.
        mask = batch.attention_mask
        body = int(mask.sum()) if model.packs(mask, d.P + shared) else mask.numel()
        answer = batch.labels.shape[1] if d.seq2seq else 0
        costs.append((len(rows), tokens, len(rows) * (shared + d.P + answer) + body, flops))
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
