"""The throughput benchmark's entry point, run in smoke mode (tiny random models, CPU)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

# `benchmarks` sits beside `src/` at the repository root, which plain `pytest` does not put on
# sys.path (only `python -m pytest` does).
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import benchmarks.throughput as bt  # noqa: E402


def test_smoke_mode_measures_every_pipeline(tmp_path, capsys):
    out = tmp_path / "bench.json"
    returned = bt.main(["--mode", "smoke", "--out", str(out)])
    record = json.loads(out.read_text())

    assert record["config"]["mode"] == "smoke"
    for key in ("cpu_model", "cpu_logical_cores", "torch", "date_utc"):
        assert record["machine"][key]
    assert [r["model"] for r in record["runs"]] == ["tiny-llama", "tiny-t5"]
    for run in record["runs"]:
        assert "error" not in run, run.get("error")
        assert run["nonembedding_params"]["main"] > 0
        for name in bt.PIPELINES:
            p = run["pipelines"][name]
            assert "error" not in p, p.get("error")
            train, ev = p["train"], p["eval"]
            assert train["timed_steps"] == record["config"]["steps"]
            for key in ("examples_per_s", "tokens_per_s", "processed_tokens_per_s"):
                assert train[key] > 0, (run["model"], name, key)
            assert ev["examples_per_s"] > 0
            assert ev["examples"] == record["config"]["eval_examples"]
            assert 0.0 <= ev["score"] <= 1.0
            assert 0.0 <= p["rank_score"] <= 1.0  # every prompt also scored by rank
            assert p["memory"]["peak_mib"] > 0
        assert run["pipelines"]["tpv"]["eval"]["scorer"] == "rank"
        assert run["pipelines"]["tpv-plain"]["eval"]["scorer"] == "rank"
        assert run["pipelines"]["A"]["eval"]["scorer"] == "generate"
        # A pads every row to 256: it processes more tokens than it needs, B and tpv do not.
        a, b = run["pipelines"]["A"]["train"], run["pipelines"]["B"]["train"]
        assert a["processed_tokens_per_s"] / a["tokens_per_s"] > (
            b["processed_tokens_per_s"] / b["tokens_per_s"]
        )
        for key in ("tpv/tpv-plain", "tpv/A", "tpv/B"):
            r = run["ratios"][key]
            for field in ("train_examples_per_s", "eval_examples_per_s"):
                assert r[field] > 0, (run["model"], key, field)

    assert returned["runs"][0]["model"] == "tiny-llama"
    table = bt.format_table(record)
    assert "tpv/A" in table and "tpv/B" in table
    assert "wrote" in capsys.readouterr().out


def test_pipeline_a_tunes_the_same_prompt_as_tpv_without_clipping():
    """The comparison is like for like: with the Trainer's gradient clipping off, PEFT + Trainer
    on the same tokens, order, origin and optimiser ends at the prompt of tpv's plain path (float32,
    float noise apart; the fast path matches the plain one: tests/test_fastpath.py)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for model in ("tiny-llama", "tiny-t5"):
            s = bt.parse_args(["--mode", "smoke", "--max-grad-norm", "0", "--no-tpv-generate"])
            w = bt.build_workload(model, s)
            d = bt.prepare_data(w, s)
            tpv = bt.run_tpv(w, d, s, None, plain=True)["prompt"]
            bt._restore(w.backbone)
            a = bt.run_peft(w, d, s, None, "A")["prompt"]
            assert (tpv - d.origin).abs().max() > 0.1  # it did train
            assert torch.allclose(tpv, a, atol=1e-4), (model, (tpv - a).abs().max())
    finally:
        torch.set_num_threads(threads)


def test_gpu_mode_models_build_on_the_meta_device():
    """The gpu mode runs blind on a lent machine: its model definitions are checked here, built
    on the meta device (no memory, no GPU). Vocabulary size does not enter these counts."""
    s = bt.parse_args(["--mode", "gpu", "--device", "meta"])
    assert s.models == ["llama-1b", "smollm2", "t5-base"]
    assert (s.batch_size, s.prompt_tokens) == (32, 50)
    llama = bt.build_workload("llama-1b", s)
    main, dec = bt.nonembedding_params(llama.backbone.model)
    assert 0.95e9 < main < 1.0e9 and dec == 0  # LLaMA-3.2-1B's shape: 0.97B
    t5 = bt.build_workload("t5-base", s)
    enc, dec = bt.nonembedding_params(t5.backbone.model)
    assert t5.seq2seq and 80e6 < enc < 90e6 and 110e6 < dec < 116e6  # T5-base: 85M + 113M
