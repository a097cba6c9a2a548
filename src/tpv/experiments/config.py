"""The experiment config: one TOML file declares the whole grid of the paper's experiments."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import tomllib

from tpv import merge
from tpv.options import ALIASES

# floors: the best constant answer per task and split, from the gold labels alone (tpv.floors).
STAGES = ("floors", "sources", "cross_origin", "similarity", "multitask", "fewshot")
# attempt:A+B is not an initialisation but the ATTEMPT baseline (tpv.attempt): the source
# prompts of A and B frozen, a target prompt from the origin and an attention module trained.
INIT_KINDS = ("random", "tpv", "spot", "suggest", "attempt")
# Multi-task methods the runner adds to tpv.merge's: per-vector weights searched on validation,
# concatenating the tuned prompts (n * P tokens; a strong non-arithmetic baseline), and the two
# fitted on the tasks' train examples (tpv.compose): per-token coefficients, joint tuning.
FITTED_METHODS = merge.FITTED  # tpv.compose modes, options checked by FitConfig


class ConfigError(ValueError):
    """The experiment config is malformed; the message names the file and the field."""


@dataclass
class ExperimentConfig:
    name: str
    out: str
    model: str | None = None
    num_tokens: int = 50
    origin_seeds: list[int] = field(default_factory=lambda: [0])
    sources: list[str] = field(default_factory=list)
    max_input_tokens: int = 256
    eval_examples: int | None = 200
    test_examples: int | None = None
    scorer: str = "rank"  # tpv.scoring.Scorer; docs/scoring.md
    train: dict[str, Any] = field(default_factory=dict)  # TrainConfig fields for source tuning
    cross_origin: bool = True
    multitask_combinations: list[list[str] | dict[str, Any]] = field(default_factory=list)
    multitask_methods: list[dict[str, Any]] = field(default_factory=list)
    lambda_grid: list[float] | None = None  # None: the paper's 0..1 step 0.05
    multitask_origin_seeds: list[int] | None = None  # None: every origin
    fewshot_targets: list[str] = field(default_factory=list)
    fewshot_shots: list[int] = field(default_factory=lambda: [0])
    fewshot_seeds: list[int] = field(default_factory=lambda: [0])
    fewshot_origin_seed: int = 0
    # One list for every target, or a table target -> list (the paper picks sources per target).
    fewshot_inits: list[str] | dict[str, list[str]] = field(default_factory=lambda: ["random"])
    fewshot_train: dict[str, Any] = field(default_factory=dict)
    fewshot_lambda: float | str = 1.0  # a number, or "search" on the target's k-shot examples
    source: str = ""  # the file it came from

    @classmethod
    def load(cls, path: str | Path) -> ExperimentConfig:
        path = Path(path)
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such config file") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{path}: not valid TOML ({e})") from None
        return cls.from_dict(raw, source=str(path))

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "<dict>") -> ExperimentConfig:
        def section(name: str) -> dict[str, Any]:
            s = raw.get(name, {})
            if not isinstance(s, dict):
                raise ConfigError(f"{source}: [{name}] must be a table")
            return dict(s)

        known_sections = {"experiment", "train", "cross_origin", "multitask", "fewshot"}
        unknown = sorted(set(raw) - known_sections)
        if unknown:
            raise ConfigError(
                f"{source}: unknown section(s) {unknown}; known: {sorted(known_sections)}"
            )
        exp = section("experiment")
        for req in ("name", "out"):
            if req not in exp:
                raise ConfigError(f"{source}: [experiment] needs {req!r}")
        multitask, fewshot = section("multitask"), section("fewshot")
        kw: dict[str, Any] = dict(exp)
        kw["train"] = section("train")
        kw["cross_origin"] = section("cross_origin").get("enabled", True)
        kw["multitask_combinations"] = multitask.pop("combinations", [])
        kw["multitask_methods"] = [
            m if isinstance(m, dict) else {"method": m}
            for m in multitask.pop("methods", [{"method": "sum"}])
        ]
        if "lambda_grid" in multitask:
            kw["lambda_grid"] = multitask.pop("lambda_grid")
        if "origin_seeds" in multitask:
            kw["multitask_origin_seeds"] = multitask.pop("origin_seeds")
        if multitask:
            raise ConfigError(f"{source}: unknown [multitask] field(s) {sorted(multitask)}")
        ft = fewshot.pop("train", {})
        mapping = {
            "targets": "fewshot_targets",
            "shots": "fewshot_shots",
            "seeds": "fewshot_seeds",
            "origin_seed": "fewshot_origin_seed",
            "inits": "fewshot_inits",
            "lambda": "fewshot_lambda",
        }
        for k, v in fewshot.items():
            if k not in mapping:
                raise ConfigError(
                    f"{source}: unknown [fewshot] field {k!r}; "
                    f"known: {sorted(mapping)} + [fewshot.train]"
                )
            kw[mapping[k]] = v
        kw["fewshot_train"] = ft
        known = {f.name for f in fields(cls)}
        bad = sorted(set(kw) - known)
        if bad:
            raise ConfigError(f"{source}: unknown [experiment] field(s) {bad}")
        cfg = cls(**kw, source=source)
        cfg.validate()
        return cfg

    def multitask_grid(self) -> list[tuple[list[str], list[int]]]:
        """(tasks, origin seeds) per combination: a combination is a list of tasks, or a table
        {tasks = [...], origin_seeds = [...]} where one combination needs other origins."""
        default = self.multitask_origin_seeds or self.origin_seeds
        return [
            (list(c["tasks"]), list(c.get("origin_seeds", default)))
            if isinstance(c, dict)
            else (list(c), list(default))
            for c in self.multitask_combinations
        ]

    def inits_for(self, target: str) -> list[str]:
        if isinstance(self.fewshot_inits, dict):
            return list(self.fewshot_inits.get(target, []))
        return list(self.fewshot_inits)

    def validate(self) -> None:
        from tpv.train import TrainConfig

        where = self.source
        from tpv.scoring import Scorer

        try:
            self.scorer = Scorer.parse(self.scorer, "[experiment] scorer").value
        except ValueError as e:
            raise ConfigError(f"{where}: {e}") from None
        for table, opts in (("train", self.train), ("fewshot.train", self.fewshot_train)):
            bad = sorted(set(opts) - {f.name for f in fields(TrainConfig)} - set(ALIASES))
            if bad:
                raise ConfigError(f"{where}: unknown [{table}] option(s) {bad}")
        for m in self.multitask_methods:
            if m.get("method") not in merge.ALL_METHODS:
                raise ConfigError(
                    f"{where}: [multitask] method {m.get('method')!r} unknown; "
                    f"use one of {list(merge.ALL_METHODS)}"
                )
        for m in self.multitask_methods:
            if m.get("method") in FITTED_METHODS:
                from tpv.compose import FitConfig

                opts = {k: v for k, v in m.items() if k != "method"}
                try:
                    FitConfig.from_dict({"mode": m["method"]} | opts)
                except (ValueError, TypeError) as e:
                    raise ConfigError(f"{where}: [multitask] method {m['method']!r}: {e}") from None
        for c in self.multitask_combinations:
            if isinstance(c, dict) and (set(c) - {"tasks", "origin_seeds"} or "tasks" not in c):
                raise ConfigError(
                    f"{where}: [multitask] combination {c}: a table takes 'tasks' and "
                    "optionally 'origin_seeds'"
                )
        for combo, seeds in self.multitask_grid():
            bad_seeds = [s for s in seeds if s not in self.origin_seeds]
            if bad_seeds:
                raise ConfigError(
                    f"{where}: [multitask] combination {combo}: origin seed(s) {bad_seeds} "
                    f"are not among origin_seeds {self.origin_seeds}"
                )
            missing = [t for t in combo if t not in self.sources]
            if missing:
                raise ConfigError(
                    f"{where}: [multitask] combination {combo} uses non-source task(s) {missing}"
                )
        if isinstance(self.fewshot_inits, dict):
            missing = sorted(set(self.fewshot_targets) - set(self.fewshot_inits))
            if missing:
                raise ConfigError(f"{where}: [fewshot.inits] has no list for target(s) {missing}")
        lists = (
            self.fewshot_inits.values()
            if isinstance(self.fewshot_inits, dict)
            else [self.fewshot_inits]
        )
        for init in sorted({i for inits in lists for i in inits}):
            kind, _, arg = init.partition(":")
            if kind not in INIT_KINDS:
                raise ConfigError(
                    f"{where}: [fewshot] init {init!r}: "
                    "use random, tpv:A+B, spot:A, suggest[:TOP] or attempt:A+B"
                )
            if kind == "suggest":
                if arg and not arg.isdigit():
                    raise ConfigError(
                        f"{where}: [fewshot] init {init!r}: suggest:TOP takes a number"
                    )
                continue
            if kind == "attempt" and not arg:
                raise ConfigError(
                    f"{where}: [fewshot] init {init!r}: attempt:A+B names its source tasks"
                )
            missing = [t for t in arg.split("+") if arg and t not in self.sources]
            if missing:
                raise ConfigError(
                    f"{where}: [fewshot] init {init!r} names non-source task(s) {missing}"
                )
        if self.fewshot_origin_seed not in self.origin_seeds and self.fewshot_targets:
            raise ConfigError(
                f"{where}: [fewshot] origin_seed {self.fewshot_origin_seed} "
                "is not among origin_seeds"
            )
