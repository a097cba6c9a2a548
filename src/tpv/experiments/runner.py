"""Run the declared grid: one JSON row per job, finished rows skipped, shards split by index.

Stages run in order, each a list of jobs with stable keys:
  floors        the best constant answer per task and split (gold labels only, no model)
  sources       tune a prompt per (source task, origin seed)             -> run dirs + rows
  cross_origin  tau trained from origin a applied to origin b, tested    -> "original" vs "mixed"
  similarity    cosine of every pair of source vectors (no model needed)
  multitask     combine vectors of several tasks on one origin (method, lambda searched on the
                mean validation score of the tasks), tested on each task
  fewshot       tune on k shots of a target from: random origin, tpv sum, SpoT prompt; k=0 scores
                the initialisation itself; attempt:A+B trains the ATTEMPT baseline instead
Rows live in OUT/rows/<stage>/<key>.json (atomic writes), so a killed grid resumes where it was,
and `--shard i/n` runs every job whose index in its stage is i mod n. A recorded row is reused
only when its job hash (tpv.experiments.grid) matches the job's settings under this config;
rows made under other settings are refused, or redone with `redo_stale`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tpv import fastpath, merge
from tpv.evaluate import task_mean
from tpv.experiments import rows as rowfile
from tpv.experiments.config import LATER_FIELDS, STAGES, ExperimentConfig
from tpv.experiments.grid import job_hash, job_settings, sources_used
from tpv.experiments.rows import read_rows  # noqa: F401  (re-exported: the old import path)
from tpv.tasks.fewshot import subsample
from tpv.vectors import Origin, SoftPrompt, TaskPromptVector, load, sum_vectors

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    stage: str
    key: str
    params: dict[str, Any]


class MissingDependency(RuntimeError):
    """A job needs the output of an earlier stage that has not run (yet) on this machine."""


class StaleRows(RuntimeError):
    """Recorded rows were made under other settings than this config gives their jobs."""


class Runner:
    def __init__(
        self,
        cfg: ExperimentConfig,
        *,
        backbone=None,
        get_task: Callable | None = None,
        report_to: str = "none",
    ):
        self.cfg = cfg
        # Where the prompt-tuning runs report (tpv.tracking); not part of the grid's identity.
        self.report_to = report_to
        self.out = Path(cfg.out)
        self._backbone = backbone
        self._get_task = get_task
        self._tasks: dict[str, Any] = {}
        self._evaluators: dict[tuple, Any] = {}
        # The paper arm's lambda search for a (target, init) is the same for every shot count
        # and seed (one origin, one validation sample): searched once per process.
        self._lambda_searches: dict[tuple[str, str], merge.SearchResult] = {}

    # --- lazily loaded pieces -----------------------------------------------------------------
    @property
    def backbone(self):
        if self._backbone is None:
            from tpv.backbone import Backbone

            self._backbone = Backbone.load(self.cfg.model)
        return self._backbone

    def task(self, name: str):
        if name not in self._tasks:
            if self._get_task is None:
                from tpv.tasks import get_task

                self._get_task = get_task
            self._tasks[name] = self._get_task(name)
        return self._tasks[name]

    def origin(self, seed: int) -> Origin:
        return self.backbone.make_origin(self.cfg.num_tokens, seed)

    def evaluator(self, task_name: str, split: str, limit: int | None):
        from tpv.evaluate import Evaluator

        key = (task_name, split, limit)
        if key not in self._evaluators:
            task = self.task(task_name)
            rows = subsample(task.split(split), limit)
            self._evaluators[key] = Evaluator(
                self.backbone,
                task,
                rows,
                scorer=self.cfg.scorer,
                max_input_tokens=self.cfg.max_input_tokens,
            )
        return self._evaluators[key]

    def test_score(self, task_name: str, prompt) -> dict:
        return self.evaluator(task_name, "test", self.cfg.test_examples)(prompt)

    def val_score(self, task_name: str, prompt) -> float:
        return self.evaluator(task_name, "validation", self.cfg.eval_examples)(prompt)["score"]

    # --- the grid -----------------------------------------------------------------------------
    def jobs(self, stage: str) -> list[Job]:
        c = self.cfg
        out: list[Job] = []
        if stage == "floors":
            tasks = list(dict.fromkeys([*c.sources, *c.fewshot_targets]))
            out = [Job(stage, t, {"task": t}) for t in tasks]
        elif stage == "sources":
            out = [
                Job(stage, f"{t}__o{s}", {"task": t, "origin_seed": s})
                for t in c.sources
                for s in c.origin_seeds
            ]
            # Learning-rate arms: the same [train] at another lr, on their documented subset.
            out += [
                Job(stage, f"{t}__o{s}{_lr_tag(lr)}", {"task": t, "origin_seed": s, "lr": lr})
                for lr, tasks, seeds in c.lr_arm_grid()
                for t in tasks
                for s in seeds
            ]
        elif stage == "cross_origin" and c.cross_origin:
            arms = [(None, c.sources, c.origin_seeds), *c.lr_arm_grid()]
            for lr, tasks, seeds in arms:
                lr_param = {} if lr is None else {"lr": lr}
                for t in tasks:
                    for a in seeds:
                        prefix = f"{t}{_lr_tag(lr)}__from-o{a}__on-"
                        out += [
                            Job(stage, f"{prefix}o{b}", {"task": t, "from_seed": a, "on_seed": b}
                                | lr_param)
                            for b in seeds
                        ]  # fmt: skip
                        out += [
                            Job(stage, prefix + ctl, {"task": t, "from_seed": a, "control": ctl}
                                | lr_param)
                            for ctl in c.cross_controls
                        ]  # fmt: skip
        elif stage == "similarity" and len(c.sources) * len(c.origin_seeds) > 1:
            out = [Job(stage, "all", {})]
        elif stage == "multitask":
            for combo, seeds in c.multitask_grid():
                for m in c.multitask_methods:
                    for s in seeds:
                        params = {"tasks": list(combo), "method": m, "origin_seed": s}
                        out.append(Job(stage, _multitask_key(**params), params))
        elif stage == "fewshot":
            for sel in c.fewshot_selection:
                out += self._fewshot_jobs(sel)
        return out

    def _fewshot_jobs(self, selection: str) -> list[Job]:
        """One selection arm's few-shot jobs. The "none" arm's keys end in __sel-none; at k=0 it
        has rows only for tpv:A+B (the one init whose start used validation: its lambda); every
        other k=0 start is the same in both arms and is scored once, in the validation arm."""
        c, out = self.cfg, []
        none = selection == "none"
        tag, extra = ("__sel-none", {"selection": "none"}) if none else ("", {})
        for t in c.fewshot_targets:
            for k in c.fewshot_shots:
                for seed in c.fewshot_seeds:
                    for init in c.inits_for(t, selection):
                        # k=0 does no training: one row per init, not per seed.
                        if k == 0 and seed != c.fewshot_seeds[0]:
                            continue
                        if k == 0 and init.startswith("suggest"):
                            continue  # suggest ranks vectors on the k examples: none at k=0
                        if k == 0 and selection == "none" and not init.startswith("tpv:"):
                            continue
                        out.append(
                            Job(
                                "fewshot",
                                f"{t}__k{k}__s{seed}__{init.replace(':', '-')}{tag}",
                                {"target": t, "shots": k, "seed": seed, "init": init} | extra,
                            )
                        )
        return out

    def row_path(self, job: Job) -> Path:
        return rowfile.row_path(self.out, job.stage, job.key)

    def job_hash(self, job: Job) -> str:
        return job_hash(self.cfg, job.stage, job.params)

    def row_state(self, job: Job) -> str:
        """ "missing", "current" (recorded under this job's settings) or "stale"."""
        path = self.row_path(job)
        if not path.exists():
            return "missing"
        return (
            "current" if rowfile.read_row(path).get("job_hash") == self.job_hash(job) else "stale"
        )

    def manifest(self, code_commit: str | None = None) -> dict:
        """The config this directory runs and every job's hash: what the report checks rows
        against (it reads this file, not the config, so it needs no torch)."""
        return {
            "config": asdict(self.cfg),
            "config_file": self.cfg.source,
            "config_sha": self.config_sha,
            "code_commit": code_commit or rowfile.code_commit(),
            "jobs": {s: {j.key: self.job_hash(j) for j in self.jobs(s)} for s in STAGES},
        }

    def run(
        self,
        stages: list[str] | None = None,
        shard: tuple[int, int] = (0, 1),
        *,
        redo_stale: bool = False,
    ) -> dict[str, int]:
        """Run the unfinished jobs of this shard; returns counts of done / skipped / redone rows.

        A recorded row made under other settings (another job hash, or none: rows older than
        job hashes) stops the run before anything runs, unless `redo_stale`: then the row and
        the job's run directory are thrown away and the job runs again.
        """
        i, n = shard
        if not (0 <= i < n):
            raise ValueError(f"shard {i}/{n}: need 0 <= i < n")
        counts = {"done": 0, "skipped": 0, "redone": 0}
        todo = {
            s: [j for idx, j in enumerate(self.jobs(s)) if idx % n == i] for s in stages or STAGES
        }
        stale = self.check_stale([job for jobs in todo.values() for job in jobs], redo_stale)
        code = self.start()
        stale_keys = {(j.stage, j.key) for j in stale}
        for stage, jobs in todo.items():
            for j, job in enumerate(jobs):
                redo = (stage, job.key) in stale_keys
                if self.row_path(job).exists() and not redo:
                    counts["skipped"] += 1
                    continue
                log.info("[%s %d/%d] %s", stage, j + 1, len(jobs), job.key)
                self.record(job, redo=redo, code=code)
                counts["redone" if redo else "done"] += 1
        return counts

    def check_stale(self, jobs: list[Job], redo_stale: bool) -> list[Job]:
        """The jobs whose recorded rows were made under other settings; raises StaleRows unless
        they are to be redone."""
        stale = [job for job in jobs if self.row_state(job) == "stale"]
        if stale and not redo_stale:
            keys = ", ".join(f"{j.stage}/{j.key}" for j in stale[:5])
            raise StaleRows(
                f"{self.out}: {len(stale)} recorded row(s) were made under other settings than "
                f"{self.cfg.source or 'this config'} gives them ({keys}"
                f"{', ...' if len(stale) > 5 else ''}); redo them with --redo-stale, "
                "or run this config into another out directory"
            )
        return stale

    def start(self) -> str:
        """Create the out directory and write the manifest; returns the code commit."""
        self.out.mkdir(parents=True, exist_ok=True)
        code = rowfile.code_commit()
        rowfile.write_manifest(self.out, self.manifest(code))
        return code

    def record(self, job: Job, *, redo: bool = False, code: str = "unknown") -> dict:
        """Run one job and write its row (atomically); a stale row is thrown away first."""
        if redo:
            self._discard(job)
        start = time.perf_counter()
        row = getattr(self, f"_run_{job.stage}")(**job.params)
        row.update(
            stage=job.stage,
            key=job.key,
            params=job.params,
            seconds=time.perf_counter() - start,
            model=self.backbone.name if job.stage != "floors" else self.cfg.model,
            scorer=self.cfg.scorer,
            config_sha=self.config_sha,
            job_hash=self.job_hash(job),
            settings=job_settings(self.cfg, job.stage, job.params),
            code_commit=code,
            **self._compute(job.stage),
        )
        rowfile.write_json_atomic(self.row_path(job), row)
        return row

    def waiting_on(self, job: Job) -> list[str]:
        """The source rows `job` reads that are not recorded yet (keys in rows/sources)."""
        keys = [
            f"{t}__o{s}{_lr_tag(lr)}" for t, s, lr in sources_used(self.cfg, job.stage, job.params)
        ]
        return [k for k in keys if not rowfile.row_path(self.out, "sources", k).exists()]

    def _compute(self, stage: str) -> dict:
        """How the model ran (recorded, not hashed, like the code commit: the report says when
        a table mixes them)."""
        if stage == "floors":
            return {}
        dtype = str(self.backbone.model.dtype).removeprefix("torch.")
        return {"compute_dtype": dtype, "fast_path": fastpath.enabled()}

    def _discard(self, job: Job) -> None:
        """A stale job's row and run outputs, so that nothing of the old settings is resumed."""
        log.warning("redoing %s/%s: recorded under other settings", job.stage, job.key)
        self.row_path(job).unlink(missing_ok=True)
        run_dir = self.out / "runs" / job.stage / job.key
        if run_dir.is_dir():
            shutil.rmtree(run_dir)

    @property
    def config_sha(self) -> str:
        # What was run, not where: the same grid in another directory has the same sha.
        # Fields added later count only when set: a config without them keeps its old sha.
        cfg = {
            k: v
            for k, v in asdict(self.cfg).items()
            if k not in LATER_FIELDS or v != LATER_FIELDS[k]
        }
        blob = json.dumps(cfg | {"source": "", "out": ""}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    # --- stages ---------------------------------------------------------------------------------
    def _run_floors(self, task: str) -> dict:
        """The best constant answer per metric on the same seeded samples the other stages
        score (validation: eval_examples, test: test_examples), with the gold labels."""
        from tpv import metrics
        from tpv.floors import constant_floors

        t = self.task(task)
        limits = {"validation": self.cfg.eval_examples, "test": self.cfg.test_examples}
        splits = {}
        for split, limit in limits.items():
            gold = [ex.label for ex in subsample(t.split(split), limit)]
            floors = constant_floors(gold, len(t.labels), t.metric)
            splits[split] = {"floors": floors, "gold": metrics.encode_labels(gold)}
        return {"task": task, "metric": t.metric, "labels": list(t.labels), "splits": splits}

    def source_dir(self, task: str, seed: int, lr: float | None = None) -> Path:
        return self.out / "runs" / "sources" / f"{task}__o{seed}{_lr_tag(lr)}"

    def source_vector(self, task: str, seed: int, lr: float | None = None) -> TaskPromptVector:
        path = self.source_dir(task, seed, lr) / "vector.safetensors"
        if not path.exists():
            raise MissingDependency(
                f"{path} is missing: run the 'sources' stage for {task} / origin {seed}"
                f"{'' if lr is None else f' / lr {lr:g}'} first (with shards: every shard of it)"
            )
        return load(path)

    def source_row(self, task: str, seed: int) -> dict:
        path = self.out / "rows" / "sources" / f"{task}__o{seed}.json"
        if not path.exists():
            raise MissingDependency(f"{path} is missing: run the 'sources' stage first")
        return json.loads(path.read_text())

    def _train_cfg(self, overrides: dict, **kw):
        from tpv.train import TrainConfig

        base = {
            "num_tokens": self.cfg.num_tokens,
            "max_input_tokens": self.cfg.max_input_tokens,
            "eval_examples": self.cfg.eval_examples,
            "test_examples": self.cfg.test_examples,
            "scorer": self.cfg.scorer,
            "model": self.cfg.model,
            "report_to": self.report_to,
        }
        return TrainConfig.from_dict(base | overrides | kw)

    def _run_sources(self, task: str, origin_seed: int, lr: float | None = None) -> dict:
        from tpv.train import train

        out = self.source_dir(task, origin_seed, lr)
        train_opts = self.cfg.train if lr is None else self.cfg.train | {"lr": lr}
        cfg = self._train_cfg(
            train_opts, task=task, out=str(out), origin_seed=origin_seed, test_init=True
        )
        m = train(cfg, backbone=self.backbone, task=self.task(task), resume=True, progress=False)
        return {
            "task": task,
            "origin_seed": origin_seed,
            "lr": m.lr,
            "lr_arm": lr,  # None: the main sources ([train] lr)
            "test": m.test["score"],
            "init_test": m.init_test["score"],
            "metrics": m.test,  # every metric and the per-example record (bootstrap)
            "init_metrics": m.init_test,
            "best_val": m.best_val,
            "steps": m.steps,
            "vector_norm": m.vector_norm,
            "origin_norm": m.origin_norm,
            "examples_per_s": m.examples_per_s,
            "run_dir": str(out),
        }

    def _run_cross_origin(
        self,
        task: str,
        from_seed: int,
        on_seed: int | None = None,
        control: str | None = None,
        lr: float | None = None,
    ) -> dict:
        """tau of (task, from_seed[, lr arm]) on origin `on_seed`, or on a control origin
        (tpv.experiments.controls); records how big tau is next to the origin it lands on and
        how much the move changed the prompt."""
        from tpv.experiments.controls import control_origin, relative_change

        tau = self.source_vector(task, from_seed, lr)
        own = self.origin(from_seed)
        if control is None:
            origin = self.origin(on_seed)
            where = {"on_seed": on_seed, "mixed": from_seed != on_seed}
            arm = "other" if from_seed != on_seed else "own"
        else:
            origin = control_origin(control, own, from_seed)
            where, arm = {"control": control, "origin_params": origin.params}, control
        prompt = tau.apply(origin)
        r = self.test_score(task, prompt)
        return {
            "task": task,
            "from_seed": from_seed,
            **where,
            "arm": arm,
            "lr_arm": lr,
            "test": r["score"],
            "metrics": r,
            "vector_norm": tau.norm(),
            "origin_norm": origin.norm(),  # of the origin tau was applied to (0: zero control)
            "own_origin_norm": own.norm(),
            "relative_change": relative_change(prompt, tau.apply(own)),
        }

    def _run_similarity(self) -> dict:
        names, vecs = [], []
        for t in self.cfg.sources:
            for s in self.cfg.origin_seeds:
                names.append(f"{t}/o{s}")
                vecs.append(self.source_vector(t, s))
        cos = [[a.cosine(b) for b in vecs] for a in vecs]
        return {"names": names, "cosine": cos, "norms": [v.norm() for v in vecs]}

    def _run_multitask(self, tasks: list[str], method: dict, origin_seed: int) -> dict:
        origin = self.origin(origin_seed)
        vectors = [self.source_vector(t, origin_seed) for t in tasks]
        params = {k: v for k, v in method.items() if k != "method"}
        name = method["method"]
        extra: dict[str, Any] = {}
        # Per-task validation of every prompt the selection scored, by content: the chosen one
        # is recorded in the row without being evaluated a second time.
        seen: dict[bytes, dict[str, float]] = {}

        def val_per_task(p: SoftPrompt) -> dict[str, float]:
            key = p.tensor.numpy().tobytes()
            if key not in seen:
                seen[key] = {t: self.val_score(t, p) for t in tasks}
            return seen[key]

        def mean_val(p: SoftPrompt) -> float:
            return task_mean(val_per_task(p))

        if name in merge.FITTED:
            # Fitted on a balanced mix of the tasks' train examples, best mean validation kept.
            from tpv.compose import FitConfig, fit_multitask

            fit_cfg = FitConfig.from_dict(
                {"mode": name, "max_input_tokens": self.cfg.max_input_tokens} | params
            )
            fit = fit_multitask(
                self.backbone, origin, vectors, [self.task(t) for t in tasks], mean_val, fit_cfg
            )
            prompt, extra = fit.prompt, {"fit": fit.as_dict() | {"steps": fit_cfg.steps}}
            search = merge.SearchResult(None, [])
        else:
            prompt, search = merge.combine_searched(
                name, vectors, origin, mean_val, self.cfg.lambda_grid, names=tasks, **params
            )
        test_metrics = {t: self.test_score(t, prompt) for t in tasks}
        scores = {t: r["score"] for t, r in test_metrics.items()}
        # Kept with the row: the prompt itself (to look at again) and its validation per task
        # (what selection saw, next to test).
        key = _multitask_key(tasks, method, origin_seed)
        prompt_file = prompt.save(self.out / "runs" / "multitask" / f"{key}.safetensors")
        val = val_per_task(prompt)
        # origin + tau is the tuned prompt itself: its test score is in the source row.
        single = {t: self.source_row(t, origin_seed)["test"] for t in tasks}
        kept = {t: scores[t] / single[t] if single[t] > 0 else None for t in tasks}
        return {
            "tasks": tasks,
            "method": _method_label(method),
            "origin_seed": origin_seed,
            "lambda": search.best,
            "lambda_history": search.history,
            "test": scores,
            "test_metrics": test_metrics,
            "val": val,
            "prompt_file": str(prompt_file),
            "single_task_test": single,
            "kept_fraction": kept,
            **extra,
        }

    def _fewshot_init(
        self,
        init: str,
        origin: Origin,
        origin_seed: int,
        target: str,
        shots: int,
        seed: int,
        selection: str = "validation",
    ) -> tuple[SoftPrompt, dict]:
        kind, _, arg = init.partition(":")
        if kind == "random":
            return origin.as_prompt(), {}
        if kind == "spot":
            tuned = load(self.source_dir(arg, origin_seed) / "prompt.safetensors")
            return SoftPrompt(
                tuned.tensor, tuned.model, name=f"spot:{arg}", origin_id=origin.id
            ), {}
        if kind == "suggest":
            return self._suggest_init(origin, origin_seed, target, shots, seed, int(arg or 2))
        vectors = [self.source_vector(t, origin_seed) for t in arg.split("+")]
        tau = sum_vectors(vectors)
        extra: dict[str, Any] = {}
        if selection == "none":
            lam, score = self.cfg.fewshot_none_lambda, None
            if lam == "shots":  # chosen on the k shots themselves; 1.0 when there are none
                lam = 1.0
                if shots:
                    score = self._shots_evaluator(target, shots, seed)
            extra["lambda_chosen_on"] = "fixed" if score is None else "shots"
        else:
            lam = self.cfg.fewshot_lambda
            score = self.evaluator(target, "validation", self.cfg.eval_examples)
            score = score if lam == "search" else None
            extra["lambda_chosen_on"] = "fixed" if score is None else "validation"
        if score is not None:
            key = (target, init)
            res = self._lambda_searches.get(key) if selection != "none" else None
            if res is None:
                res = merge.search_lambda(
                    lambda x: score(tau.apply(origin, x))["score"], self.cfg.lambda_grid
                )
                if selection != "none":
                    self._lambda_searches[key] = res
            lam, extra["lambda_history"] = res.best, res.history
        extra["lambda"] = float(lam)
        return tau.apply(origin, float(lam)), extra

    def _shots_evaluator(self, target: str, shots: int, seed: int):
        """Scores on the k shots a few-shot run of (target, shots, seed) trains on: the same
        sample train() draws (train_examples cap, then k per class)."""
        from tpv.evaluate import Evaluator
        from tpv.tasks.fewshot import sample_k_shot

        key = (target, "shots", shots, seed)
        if key not in self._evaluators:
            task = self.task(target)
            rows = task.split("train")
            cap = self.cfg.fewshot_train.get("train_examples")
            if cap is not None:
                rows = subsample(rows, cap, seed)
            self._evaluators[key] = Evaluator(
                self.backbone,
                task,
                sample_k_shot(rows, shots, seed=seed),
                scorer=self.cfg.scorer,
                max_input_tokens=self.cfg.max_input_tokens,
            )
        return self._evaluators[key]

    def _suggest_init(
        self, origin: Origin, origin_seed: int, target: str, shots: int, seed: int, top: int
    ) -> tuple[SoftPrompt, dict]:
        """Rank every source vector on the same k shots the tuning will see (never on test or
        validation) and start from the proposed weighted combination."""
        from tpv.suggest import suggest_for_task

        candidates = {t: self.source_vector(t, origin_seed) for t in self.cfg.sources}
        s = suggest_for_task(
            self.backbone,
            self.task(target),
            candidates,
            origin,
            shots=shots,
            shots_seed=seed,
            top=top,
            scorer=self.cfg.scorer,
            max_input_tokens=self.cfg.max_input_tokens,
        )
        return s.prompt(candidates, origin), {"suggestion": s.as_dict()}

    def _fewshot_run_dir(self, target: str, shots: int, seed: int, init: str, selection: str):
        tag = "" if selection == "validation" else "__sel-none"
        name = f"{target}__k{shots}__s{seed}__{init.replace(':', '-')}{tag}"
        return self.out / "runs" / "fewshot" / name

    def _fewshot_train(self, selection: str) -> dict:
        from tpv.experiments.grid import none_arm_train

        return self.cfg.fewshot_train if selection == "validation" else none_arm_train(self.cfg)

    def _run_fewshot(
        self, target: str, shots: int, seed: int, init: str, selection: str = "validation"
    ) -> dict:
        from tpv.train import train

        if init.startswith("attempt:"):
            return self._run_fewshot_attempt(target, shots, seed, init, selection)
        s = self.cfg.fewshot_origin_seed
        origin = self.origin(s)
        start, extra = self._fewshot_init(init, origin, s, target, shots, seed, selection)
        row = {"target": target, "shots": shots, "seed": seed, "init": init,
               "selection": selection, **extra}  # fmt: skip
        if shots == 0:
            r = self.test_score(target, start)
            return row | {"test": r["score"], "metrics": r}
        run_dir = self._fewshot_run_dir(target, shots, seed, init, selection)
        # Beside the run directory, not in it: a run directory holds only a run (tpv.rundir).
        init_file = run_dir.parent / f"{run_dir.name}.init.safetensors"
        start.save(init_file)
        cfg = self._train_cfg(
            self._fewshot_train(selection),
            task=target,
            out=str(run_dir),
            origin_seed=s,
            init=[str(init_file)],
            shots=shots,
            shots_seed=seed,
            seed=seed,
        )
        m = train(cfg, backbone=self.backbone, task=self.task(target), resume=True, progress=False)
        return row | {
            "test": m.test["score"],
            "metrics": m.test,  # accuracy beside the primary metric at every k
            "steps": m.steps,
            "best_step": m.best_step,
            "init_val": m.init_val,
            "best_val": m.best_val,
            "run_dir": str(run_dir),
        }

    def _run_fewshot_attempt(
        self, target: str, shots: int, seed: int, init: str, selection: str = "validation"
    ) -> dict:
        """The ATTEMPT baseline: the tuned prompts of the named sources (fewshot origin) frozen,
        the target prompt from the origin, an attention module seeded by `seed`. At k=0 the
        untrained mixture is scored (as every init is scored before tuning)."""
        from tpv.attempt import build
        from tpv.train import train

        s = self.cfg.fewshot_origin_seed
        origin = self.origin(s)
        sources = []
        for t in init.partition(":")[2].split("+"):
            path = self.source_dir(t, s) / "prompt.safetensors"
            if not path.exists():
                raise MissingDependency(f"{path} is missing: run the 'sources' stage first")
            sources.append(str(path))
        row: dict[str, Any] = {"target": target, "shots": shots, "seed": seed, "init": init,
                               "selection": selection}  # fmt: skip
        if shots == 0:
            opts = self.cfg.fewshot_train
            mixture = build(
                sources,
                origin.as_prompt(),
                origin,
                temperature=opts.get("attempt_temperature"),
                rank=opts.get("attempt_rank", 100),
                seed=seed,
            )
            r = self.test_score(target, mixture)
            items = self.evaluator(target, "test", self.cfg.test_examples).items
            weights = mixture.mean_weights(self.backbone, items)
            return row | {"test": r["score"], "metrics": r, "attention": weights}
        run_dir = self._fewshot_run_dir(target, shots, seed, init, selection)
        cfg = self._train_cfg(
            self._fewshot_train(selection),
            task=target,
            out=str(run_dir),
            origin_seed=s,
            method="attempt",
            sources=sources,
            shots=shots,
            shots_seed=seed,
            seed=seed,
        )
        m = train(cfg, backbone=self.backbone, task=self.task(target), resume=True, progress=False)
        return row | {
            "test": m.test["score"],
            "metrics": m.test,
            "attention": m.attention,
            "steps": m.steps,
            "best_step": m.best_step,
            "init_val": m.init_val,
            "best_val": m.best_val,
            "run_dir": str(run_dir),
        }


def _lr_tag(lr: float | None) -> str:
    """The key suffix of a learning-rate arm's sources and cross-origin rows ("" for [train])."""
    return "" if lr is None else f"__lr{lr:g}"


def _multitask_key(tasks: list[str], method: dict, origin_seed: int) -> str:
    return f"{'+'.join(tasks)}__{_method_label(method)}__o{origin_seed}"


def _method_label(m: dict) -> str:
    params = ",".join(f"{k}={v}" for k, v in sorted(m.items()) if k != "method")
    return m["method"] + (f"({params})" if params else "")
