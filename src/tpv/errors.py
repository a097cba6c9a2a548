"""How the `tpv` command reports a refusal: one line on stderr, or one JSON object with --json.

One line whatever the terminal width (no Rich console, so nothing wraps when piped), so scripts
can `tpv ... 2> err` and read the fault; stdout stays for results.
"""

from __future__ import annotations

import json
import sys


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def print_error(message: str, *, as_json: bool = False, kind: str = "error") -> None:
    message = one_line(message)
    if as_json:
        print(json.dumps({"error": message, "type": kind}), file=sys.stderr, flush=True)
    else:
        print(f"error: {message}", file=sys.stderr, flush=True)


def wants_json(argv: list[str] | None = None) -> bool:
    """Did the command line ask for machine-readable output (`--json`, before any `--`)?"""
    args = sys.argv[1:] if argv is None else argv
    return "--json" in args[: args.index("--")] if "--" in args else "--json" in args
