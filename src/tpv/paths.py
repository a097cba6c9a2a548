"""Where tpv keeps caches (de-quantised models, built corpora) and its library."""

from __future__ import annotations

import os
from pathlib import Path


def tpv_home() -> Path:
    """Root of tpv's caches: $TPV_HOME, else $XDG_CACHE_HOME/tpv, else ~/.cache/tpv."""
    if os.environ.get("TPV_HOME"):
        return Path(os.environ["TPV_HOME"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "tpv"


def data_home() -> Path:
    """Built task data (offline suite splits) and downloaded source archives."""
    return tpv_home() / "data"


def models_home() -> Path:
    """Models converted once into plain transformers directories (e.g. de-quantised GGUF)."""
    return tpv_home() / "models"
