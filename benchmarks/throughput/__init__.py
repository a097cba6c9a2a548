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

from benchmarks.throughput.driver import (
    _restore,
    format_table,
    main,
    parse_args,
    ratios,
    run_workload,
)
from benchmarks.throughput.machine import PeakMemory, machine_description, peak_bf16_tflops
from benchmarks.throughput.pipelines import run_peft, run_tpv
from benchmarks.throughput.settings import (
    DESCRIPTIONS,
    MODE_DEFAULTS,
    MODES,
    PIPELINES,
    Settings,
    log,
)
from benchmarks.throughput.workloads import (
    Data,
    Workload,
    build_workload,
    nonembedding_params,
    pack_assets,
    prepare_data,
    summarize_training,
    use_assets,
)

__all__ = [
    "_restore", "DESCRIPTIONS", "MODES", "MODE_DEFAULTS", "PIPELINES", "Data", "PeakMemory",
    "Settings",
    "Workload", "build_workload", "format_table", "log", "machine_description", "main",
    "nonembedding_params", "pack_assets", "parse_args", "peak_bf16_tflops", "prepare_data",
    "ratios", "run_peft", "run_tpv", "run_workload", "summarize_training", "use_assets",
]  # fmt: skip
