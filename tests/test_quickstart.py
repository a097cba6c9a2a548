"""Runs every command of docs/quickstart.md (with tiny step counts) so the page stays true."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
DOC = Path(__file__).parent.parent / "docs" / "quickstart.md"
# Same commands, fewer steps and examples: what is checked is that they run and connect.
SHRINK = {
    r"--steps \d+": "--steps 2",
    r"--eval-every \d+": "--eval-every 2",
    r"--eval-examples \d+": "--eval-examples 8",
    r"--test-examples \d+": "--test-examples 8",
    r"--max-examples \d+": "--max-examples 8",
    r"--shots \d+": "--shots 2",
}


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", DOC.read_text(), flags=re.S)


def test_quickstart_commands_run(tmp_path):
    env = os.environ | {"TPV_LIBRARY": str(tmp_path / "library"), "OMP_NUM_THREADS": "2"}
    bin_dir = Path(sys.executable).parent
    commands = [line for block in _blocks("bash") for line in block.splitlines() if line.strip()]
    assert len(commands) >= 10
    for cmd in commands:
        for pattern, repl in SHRINK.items():
            cmd = re.sub(pattern, repl, cmd)
        assert cmd.startswith("tpv "), cmd
        proc = subprocess.run(
            [str(bin_dir / "tpv"), *cmd.split()[1:]],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert proc.returncode == 0, f"{cmd}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    metrics = (tmp_path / "runs/qs/amazon/metrics.json").read_text()
    assert '"init_test"' in metrics
    for block in _blocks("python"):
        proc = subprocess.run(
            [sys.executable, "-c", block],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert proc.returncode == 0, f"{block}\n{proc.stderr[-2000:]}"
