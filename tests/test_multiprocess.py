"""Data-parallel training under `accelerate launch`: two CPU processes (gloo) match one."""

import os
import subprocess
import sys
from pathlib import Path

import torch

from tpv.vectors import load

SCRIPT = Path(__file__).parent / "scripts" / "train_tiny.py"


def _run(cmd: list[str]) -> None:
    env = os.environ | {"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def test_two_processes_match_one(tmp_path):
    _run([sys.executable, str(SCRIPT), str(tmp_path / "one")])
    accelerate = Path(sys.executable).parent / "accelerate"
    # `--multi_gpu` selects accelerate's torchrun launcher; with no GPU the processes join a
    # gloo group on the CPU (accelerate's --cpu flag alone would start a single process).
    _run(
        [
            str(accelerate),
            "launch",
            "--multi_gpu",
            "--num_processes",
            "2",
            "--num_machines",
            "1",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
            str(SCRIPT),
            str(tmp_path / "two"),
        ]
    )
    one = load(tmp_path / "one" / "prompt.safetensors")
    two = load(tmp_path / "two" / "prompt.safetensors")
    metrics = (tmp_path / "two" / "metrics.json").read_text()
    assert '"processes": 2' in metrics
    assert not torch.equal(one.tensor, load(tmp_path / "one" / "origin.safetensors").tensor)
    torch.testing.assert_close(two.tensor, one.tensor, rtol=1e-4, atol=1e-4)
