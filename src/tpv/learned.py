"""Did a vector learn anything? Combining one that did not only adds noise (or nothing).

A run whose validation never beat its start keeps the starting prompt, so its vector is all
zeros (or, when it started from other vectors, records best step 0): train() records
"learned": false in metrics.json, and combine / compose / suggest warn when given such a vector.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from tpv.vectors import TaskPromptVector

log = logging.getLogger(__name__)
_warned: set[tuple[str, str, int]] = set()


def not_learned_reason(v: TaskPromptVector) -> str | None:
    """Why `v` carries no learning, or None when it looks like it learned something."""
    if v.norm() == 0:
        return "is all zeros"
    best = (v.record.get("prompt_record") or {}).get("best_step")
    if best == 0:
        return "comes from a run whose validation never beat its start (best step 0)"
    return None


def warn_unlearned(vectors: Iterable[TaskPromptVector], where: str) -> list[str]:
    """Log one warning per vector that learned nothing; returns their names."""
    names = []
    for v in vectors:
        reason = not_learned_reason(v)
        if reason is not None:
            names.append(v.name)
            key = (where, v.name, id(v))
            if key not in _warned:  # a coefficient search combines the same vectors many times
                _warned.add(key)
                log.warning("%s: vector %r %s: it adds nothing learned", where, v.name, reason)
    return names
