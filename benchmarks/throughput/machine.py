"""The machine: description, peak memory, peak bf16 matmul rate."""

from __future__ import annotations

import datetime as dt
import os
import platform
import threading

import torch


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
