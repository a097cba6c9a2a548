"""The switch for tpv's fast path, on by default.

It changes how the frozen model is run, not what it computes:
- on CPU, a batch's decoder rows packed into one sequence without padding (`tpv.packing`);
- the LM head given explicit positions, so that it runs as one matmul;
- on a CPU with native bf16 dot products (AVX512-BF16 or AMX: Zen 4, Sapphire Rapids and
  later), the frozen model's weights in bfloat16 when no dtype is asked for, as on CUDA. The
  trained prompt and its optimiser state stay float32 on every device.
The first two match the plain path to float32 rounding (other matmul shapes sum in another
order); bf16 weights change the model's numbers by bf16 rounding. `tests/test_fastpath.py` and
docs/benchmarks.md state the tolerances and the measured scores.

Turn it off with the environment variable `TPV_FAST_PATH=0`, the CLI's `tpv --plain ...`, or
`with fastpath.plain(): ...` in Python: the plain path is the code before the fast path, bit for
bit (`tests/test_behaviour_pinned.py` runs on it).
"""

from __future__ import annotations

import contextlib
import functools
import os
from pathlib import Path

_OFF = ("0", "false", "no", "off")
_override: bool | None = None


def enabled() -> bool:
    if _override is not None:
        return _override
    return os.environ.get("TPV_FAST_PATH", "1").strip().lower() not in _OFF


def set_enabled(flag: bool | None) -> None:
    """Force the fast path on or off for this process (None: back to the environment)."""
    global _override
    _override = flag


@contextlib.contextmanager
def forced(flag: bool):
    """Run the enclosed code with the fast path on (True) or off (False)."""
    global _override
    before = _override
    _override = flag
    try:
        yield
    finally:
        _override = before


def plain():
    """Run the enclosed code on the plain path: `with fastpath.plain(): ...`."""
    return forced(False)


@functools.cache
def cpu_has_bf16() -> bool:
    """Native bf16 dot products on this CPU (x86 flags avx512_bf16 / amx_bf16; Linux only)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = set(info.split())
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def default_dtype(device=None):
    """The frozen model's dtype when none is asked for: bf16 on CUDA; on CPU bf16 where the
    CPU has native bf16 and the fast path is on, float32 otherwise."""
    import torch

    kind = torch.device(device).type if device is not None else "cpu"
    if kind == "cuda":
        return torch.bfloat16
    if kind == "cpu" and enabled() and cpu_has_bf16():
        return torch.bfloat16
    return torch.float32
