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
# Claim 1's controls beside own and other origin: the vector alone (added to a zero origin) and
# the vector on a random origin of the same norm as the one it was trained from (tpv.experiments
# .controls).
CROSS_CONTROLS = ("zero", "random")
# How a few-shot run picks its prompt: "validation" (the paper's: the best of the evaluations on
# the validation sample, lambda searched on validation) or "none" (the true few-shot arm: no
# labelled target data beyond the k shots; fixed steps, the last prompt kept).
SELECTIONS = ("validation", "none")


# Fields added with the study's protocol arms (#16), at their defaults: left out of the config
# hash (Runner.config_sha) so that a config without them keeps the hash it had.
LATER_FIELDS: dict[str, Any] = {
    "cross_controls": [],
    "lr_arms": [],
    "fewshot_selection": ["validation"],
    "fewshot_none_inits": None,
    "fewshot_none_lambda": "shots",
}


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
    # [cross_origin] controls: any of CROSS_CONTROLS, for every (task, from-origin) of an arm.
    cross_controls: list[str] = field(default_factory=list)
    # [cross_origin] lr_arms: sources re-trained at another learning rate on a subset, each a
    # table {lr, tasks, origin_seeds (default: every origin)}, with their own cross-origin rows.
    lr_arms: list[dict[str, Any]] = field(default_factory=list)
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
    fewshot_lambda: float | str = 1.0  # a number, or "search" on the target's validation sample
    fewshot_selection: list[str] = field(default_factory=lambda: ["validation"])  # SELECTIONS
    # The "none" arm's inits (None: the target's inits) and lambda for tpv:A+B: "shots" searches
    # the lambda grid on the k shots themselves (1.0, the paper's unscaled sum, at k = 0), or a
    # fixed number.
    fewshot_none_inits: list[str] | None = None
    fewshot_none_lambda: float | str = "shots"
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
        cross = section("cross_origin")
        kw["cross_origin"] = cross.pop("enabled", True)
        if "controls" in cross:
            kw["cross_controls"] = cross.pop("controls")
        if "lr_arms" in cross:
            kw["lr_arms"] = cross.pop("lr_arms")
        if cross:
            raise ConfigError(
                f"{source}: unknown [cross_origin] field(s) {sorted(cross)}; "
                "known: ['controls', 'enabled', 'lr_arms']"
            )
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
            "selection": "fewshot_selection",
            "none_inits": "fewshot_none_inits",
            "none_lambda": "fewshot_none_lambda",
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

    def inits_for(self, target: str, selection: str = "validation") -> list[str]:
        """The inits of `target` in a selection arm (the "none" arm: its documented subset)."""
        if isinstance(self.fewshot_inits, dict):
            inits = list(self.fewshot_inits.get(target, []))
        else:
            inits = list(self.fewshot_inits)
        if selection == "none" and self.fewshot_none_inits is not None:
            return [i for i in inits if i in self.fewshot_none_inits]
        return inits

    def lr_arm_grid(self) -> list[tuple[float, list[str], list[int]]]:
        """(lr, tasks, origin seeds) per learning-rate arm."""
        return [
            (float(a["lr"]), list(a["tasks"]), list(a.get("origin_seeds", self.origin_seeds)))
            for a in self.lr_arms
        ]

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
        self._validate_protocol_arms()
        if self.fewshot_origin_seed not in self.origin_seeds and self.fewshot_targets:
            raise ConfigError(
                f"{where}: [fewshot] origin_seed {self.fewshot_origin_seed} "
                "is not among origin_seeds"
            )

    def _validate_protocol_arms(self) -> None:
        """The study's extra arms (#16): cross-origin controls, learning-rate arms, the true
        few-shot selection arm. One line naming the field at fault."""
        where = self.source
        if not isinstance(self.cross_controls, list) or any(
            c not in CROSS_CONTROLS for c in self.cross_controls
        ):
            raise ConfigError(
                f"{where}: [cross_origin] controls {self.cross_controls!r}: "
                f"a list of {list(CROSS_CONTROLS)}"
            )
        if not isinstance(self.lr_arms, list):
            raise ConfigError(f"{where}: [cross_origin] lr_arms must be a list of tables")
        seen = set()
        for arm in self.lr_arms:
            if not isinstance(arm, dict) or set(arm) - {"lr", "tasks", "origin_seeds"}:
                raise ConfigError(
                    f"{where}: [cross_origin] lr_arms entry {arm!r}: a table takes 'lr', "
                    "'tasks' and optionally 'origin_seeds'"
                )
            lr = arm.get("lr")
            if isinstance(lr, bool) or not isinstance(lr, int | float) or not lr > 0:
                raise ConfigError(f"{where}: [cross_origin] lr_arms lr {lr!r}: a positive number")
            if float(lr) == float(self.train.get("lr", 0.3)) or float(lr) in seen:
                raise ConfigError(
                    f"{where}: [cross_origin] lr_arms lr {lr}: repeats [train] lr or another arm"
                )
            seen.add(float(lr))
            tasks = arm.get("tasks")
            if not isinstance(tasks, list) or not tasks:
                raise ConfigError(f"{where}: [cross_origin] lr_arms tasks {tasks!r}: a list")
            missing = [t for t in tasks if t not in self.sources]
            if missing:
                raise ConfigError(
                    f"{where}: [cross_origin] lr_arms tasks {missing} are not among sources"
                )
            bad = [s for s in arm.get("origin_seeds", []) if s not in self.origin_seeds]
            if bad:
                raise ConfigError(
                    f"{where}: [cross_origin] lr_arms origin_seeds {bad} are not among "
                    f"origin_seeds {self.origin_seeds}"
                )
        if (
            not isinstance(self.fewshot_selection, list)
            or not self.fewshot_selection
            or any(s not in SELECTIONS for s in self.fewshot_selection)
            or len(set(self.fewshot_selection)) != len(self.fewshot_selection)
        ):
            raise ConfigError(
                f"{where}: [fewshot] selection {self.fewshot_selection!r}: "
                f"a list of distinct values from {list(SELECTIONS)}"
            )
        if self.fewshot_none_inits is not None:
            all_inits = (
                {i for v in self.fewshot_inits.values() for i in v}
                if isinstance(self.fewshot_inits, dict)
                else set(self.fewshot_inits)
            )
            if not isinstance(self.fewshot_none_inits, list) or (
                set(self.fewshot_none_inits) - all_inits
            ):
                raise ConfigError(
                    f"{where}: [fewshot] none_inits {self.fewshot_none_inits!r}: "
                    "a list of inits that [fewshot] inits has"
                )
        lam = self.fewshot_none_lambda
        if lam != "shots" and (isinstance(lam, bool) or not isinstance(lam, int | float)):
            raise ConfigError(
                f'{where}: [fewshot] none_lambda {lam!r}: "shots" (searched on the k shots) '
                "or a number"
            )
        if self.fewshot_lambda != "search" and (
            isinstance(self.fewshot_lambda, bool)
            or not isinstance(self.fewshot_lambda, int | float)
        ):
            raise ConfigError(
                f'{where}: [fewshot] lambda {self.fewshot_lambda!r}: "search" or a number'
            )
