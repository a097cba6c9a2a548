"""The paper's 19 datasets (arXiv 2408.01119), loaded from the Hugging Face hub.

Label words and input fields follow the paper and the authors' code; the hub ids are the
current canonical ones (the authors' short ids such as "glue" or "dbpedia_14" now redirect
there). SQuAD v2 and MATH are generation tasks (free-text answers, see "Generation tasks"
below); the others are classification over label words.

Splits follow ATTEMPT, as the paper does, decided by the size of the hub's train split:
- over 10,000 rows: 1,000 training rows (stratified, seeded) become validation, the rest stay
  train, and the evaluation split becomes test;
- 10,000 or fewer: train stays train; the evaluation split is halved (stratified, seeded) into
  validation (first half, rounded down) and test.
The evaluation split is GLUE's labelled "validation" (MNLI: "validation_matched"), and the
labelled "test" split for datasets without a validation split (DBpedia, TREC, Yelp, AG News,
Yahoo, IMDB) and for SciTail and SNLI, where the authors' code also tests on "test".
SST-5 is the real SetFit/sst5 (the authors' code loaded SST-2 under that name).

Loading is injectable: `load_fn(hub_id, config, split)` returns the rows of one hub split (a
`datasets.Dataset` or any iterable of dicts in the hub schema), so tests feed local files.

Generation tasks:
- squad_v2 (rajpurkar/squad_v2; columns id, title, context, question, answers{text,
  answer_start}): inputs context and question, gold answers every `answers.text`; a question
  without one is unanswerable and the model is taught to write "unanswerable"
  (`tpv.textmetrics.NO_ANSWER`). Metric: the official SQuAD 2.0 script's exact match and F1
  (primary), as fractions. ATTEMPT splits as above (train 130k: 1,000 train rows become
  validation, the hub validation becomes test). At most 32 new tokens.
- math (AI-MO/aimo-validation-math-level-4 and -5, the sets the authors evaluate MATH on;
  columns id, problem, answer; one "train" split each, 754 and 721 rows, integer answers):
  input the problem, target the answer; answers compared by math-verify. The hub gives no
  split, and the authors trained, validated and tested on the same rows: here the union of the
  chosen levels is split once, stratified by level and seeded: test 500, validation 200, train
  the rest (775 for both levels). These are MATH *test* problems: never train on them and then
  report MATH test. At most 32 new tokens.
Their rows carry no class: few-shot sampling draws k examples in all (seeded).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from tpv.textmetrics import NO_ANSWER

from .base import NO_LABEL, Example, Task, TaskError
from .fewshot import stratified_split, subsample
from .registry import TaskEntry, register

log = logging.getLogger(__name__)

LoadFn = Callable[[str, "str | None", str], Iterable[Mapping[str, Any]]]

LARGE_THRESHOLD = 10_000  # ATTEMPT: train splits above this give 1,000 rows to validation
LARGE_VALIDATION = 1_000
DEFAULT_SEED = 42  # ATTEMPT's and the authors' split seed

STSB_LABELS = tuple(f"{i * 0.2:.1f}" for i in range(26))  # "0.0", "0.2", ..., "5.0"


@dataclass(frozen=True)
class PaperSpec:
    """How one hub dataset becomes a Task."""

    name: str
    role: str  # "paper source" | "paper target"
    hub_id: str
    config: str | None
    fields: tuple[tuple[str, str], ...]  # (field name in prompts, hub column)
    labels: tuple[str, ...]
    label_columns: tuple[str, ...] = ("label",)  # first one present is used (schemas moved)
    eval_split: str = "validation"
    label_map: Mapping[Any, int] | None = None  # raw label -> index, when not 0..n-1
    skip_labels: tuple[Any, ...] = ()
    regression: bool = False
    paper_id: str = ""  # what the authors passed to load_dataset
    aliases: tuple[str, ...] = ()

    @property
    def metric(self) -> str:
        if self.regression:
            return "pearson_spearman"
        return "f1_binary" if len(self.labels) == 2 else "f1_macro"


NLI3 = ("entailment", "neutral", "contradiction")
POLARITY = ("negative", "positive")

SPECS: tuple[PaperSpec, ...] = (
    # --- sources ---
    PaperSpec("mnli", "paper source", "nyu-mll/glue", "mnli",
              (("premise", "premise"), ("hypothesis", "hypothesis")), NLI3,
              eval_split="validation_matched", paper_id="glue/mnli"),
    PaperSpec("qnli", "paper source", "nyu-mll/glue", "qnli",
              (("question", "question"), ("sentence", "sentence")),
              ("entailment", "not_entailment"), paper_id="glue/qnli"),
    PaperSpec("qqp", "paper source", "nyu-mll/glue", "qqp",
              (("question1", "question1"), ("question2", "question2")),
              ("not_duplicate", "duplicate"), paper_id="glue/qqp"),
    PaperSpec("sst2", "paper source", "nyu-mll/glue", "sst2",
              (("sentence", "sentence"),), POLARITY, paper_id="glue/sst2"),
    PaperSpec("stsb", "paper source", "nyu-mll/glue", "stsb",
              (("sentence1", "sentence1"), ("sentence2", "sentence2")), STSB_LABELS,
              regression=True, paper_id="glue/stsb"),
    PaperSpec("mrpc", "paper source", "nyu-mll/glue", "mrpc",
              (("sentence1", "sentence1"), ("sentence2", "sentence2")),
              ("not_equivalent", "equivalent"), paper_id="glue/mrpc"),
    PaperSpec("rte", "paper source", "nyu-mll/glue", "rte",
              (("sentence1", "sentence1"), ("sentence2", "sentence2")),
              ("entailment", "not_entailment"), paper_id="glue/rte"),
    PaperSpec("cola", "paper source", "nyu-mll/glue", "cola",
              (("sentence", "sentence"),), ("unacceptable", "acceptable"), paper_id="glue/cola"),
    PaperSpec("dbpedia", "paper source", "fancyzhx/dbpedia_14", None,
              (("title", "title"), ("content", "content")),
              ("Company", "Educational Institution", "Artist", "Athlete", "Office Holder",
               "Mean Of Transportation", "Building", "Natural Place", "Village", "Animal",
               "Plant", "Album", "Film", "Written Work"),
              eval_split="test", paper_id="dbpedia_14", aliases=("dbpedia_14",)),
    PaperSpec("trec", "paper source", "CogComp/trec", None,
              (("question", "text"),),
              ("Abbreviation", "Entity", "Description", "Person", "Location", "Quantity"),
              label_columns=("coarse_label", "label-coarse"), eval_split="test",
              paper_id="trec", aliases=("trec_coarse",)),
    PaperSpec("yelp_polarity", "paper source", "fancyzhx/yelp_polarity", None,
              (("sentence", "text"),), POLARITY, eval_split="test", paper_id="yelp_polarity",
              aliases=("yelp",)),
    # --- targets ---
    PaperSpec("scitail", "paper target", "allenai/scitail", "snli_format",
              (("premise", "sentence1"), ("hypothesis", "sentence2")),
              ("entailment", "neutral"), label_columns=("gold_label",),
              label_map={"entailment": 0, "neutral": 1}, eval_split="test",
              paper_id="scitail/snli_format"),
    PaperSpec("snli", "paper target", "stanfordnlp/snli", None,
              (("premise", "premise"), ("hypothesis", "hypothesis")), NLI3,
              skip_labels=(-1,), eval_split="test", paper_id="snli"),
    PaperSpec("ag_news", "paper target", "fancyzhx/ag_news", None,
              (("text", "text"),), ("World", "Sports", "Business", "Sci/Tech"),
              eval_split="test", paper_id="ag_news"),
    PaperSpec("yahoo_answers_topics", "paper target", "community-datasets/yahoo_answers_topics",
              None,
              (("title", "question_title"), ("content", "question_content"),
               ("answer", "best_answer")),
              ("Society", "Science", "Health", "Education", "Computers", "Sports", "Business",
               "Entertainment", "Family", "Politics"),
              label_columns=("topic",), eval_split="test", paper_id="yahoo_answers_topics",
              aliases=("yahoo",)),
    PaperSpec("imdb", "paper target", "stanfordnlp/imdb", None,
              (("sentence", "text"),), POLARITY, eval_split="test", paper_id="imdb"),
    PaperSpec("sst5", "paper target", "SetFit/sst5", None,
              (("sentence", "text"),),
              ("very negative", "negative", "neutral", "positive", "very positive"),
              paper_id="SetFit/sst5"),
)  # fmt: skip

SPEC_BY_NAME = {spec.name: spec for spec in SPECS}


def hub_load(hub_id: str, config: str | None, split: str) -> Iterable[Mapping[str, Any]]:
    """The real download: one split of a hub dataset (cached by `datasets` as usual)."""
    import datasets  # heavy; only needed when a paper task actually loads

    try:
        return datasets.load_dataset(hub_id, config, split=split)
    except Exception as e:  # network, auth, schema: all end the same way for the user
        where = f"{hub_id}" + (f" ({config})" if config else "")
        raise TaskError(
            f"could not load split {split!r} of {where} from the Hugging Face hub: {e}. "
            "Without hub access use the offline suite (`tpv tasks list`) or your own file."
        ) from e


def _columns(rows: Iterable[Mapping[str, Any]], names: Sequence[str], where: str) -> dict:
    """Column name -> list of values; a `datasets.Dataset` is read column-wise (fast)."""
    if hasattr(rows, "column_names"):
        available = list(rows.column_names)  # type: ignore[attr-defined]
        missing = [n for n in names if n not in available]
        if missing:
            raise TaskError(f"{where}: missing column(s) {missing}; columns are {available}")
        return {n: list(rows[n]) for n in names}  # type: ignore[index]
    rows = list(rows)
    available = list(rows[0]) if rows else []
    missing = [n for n in names if n not in available]
    if rows and missing:
        raise TaskError(f"{where}: missing column(s) {missing}; columns are {available}")
    return {n: [r[n] for r in rows] for n in names}


def _available(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    if hasattr(rows, "column_names"):
        return list(rows.column_names)  # type: ignore[attr-defined]
    first = next(iter(rows), None)  # lists only: iterating does not consume them
    return list(first) if first is not None else []


def to_examples(spec: PaperSpec, rows: Iterable[Mapping[str, Any]], where: str) -> list[Example]:
    """Map hub rows to Examples: fields renamed, label words by index, skipped labels dropped."""
    if not hasattr(rows, "column_names"):
        rows = list(rows)
    available = _available(rows)
    label_col = next((c for c in spec.label_columns if c in available), spec.label_columns[0])
    cols = _columns(rows, [c for _, c in spec.fields] + [label_col], where)
    out: list[Example] = []
    for i, raw in enumerate(cols[label_col]):
        if raw in spec.skip_labels:
            continue
        fields = {name: str(cols[col][i] or "") for name, col in spec.fields}
        if spec.regression:
            score = float(raw)
            # The label word is the nearest 0.2 step; the gold score stays in `value`.
            label = min(max(round(score / 0.2), 0), len(spec.labels) - 1)
            out.append(Example(fields=fields, label=label, value=score))
            continue
        label = spec.label_map.get(raw) if spec.label_map is not None else raw
        if not isinstance(label, int) or not 0 <= label < len(spec.labels):
            raise TaskError(
                f"{where}, row {i}: label {raw!r} in column {label_col!r} is not one of "
                f"{list(spec.label_map) if spec.label_map else list(range(len(spec.labels)))}"
            )
        out.append(Example(fields=fields, label=label))
    return out


def attempt_split(
    train: list[Example],
    evaluation: list[Example],
    seed: int = DEFAULT_SEED,
    large_threshold: int = LARGE_THRESHOLD,
    large_validation: int = LARGE_VALIDATION,
) -> dict[str, list[Example]]:
    """ATTEMPT's rule (see module docstring); stratified by label, deterministic by seed."""
    if len(train) > large_threshold:
        val_idx, rest = stratified_split([e.label for e in train], large_validation, seed)
        return {
            "train": [train[i] for i in rest],
            "validation": [train[i] for i in val_idx],
            "test": list(evaluation),
        }
    val_idx, test_idx = stratified_split([e.label for e in evaluation], len(evaluation) // 2, seed)
    return {
        "train": list(train),
        "validation": [evaluation[i] for i in val_idx],
        "test": [evaluation[i] for i in test_idx],
    }


def _load_splits(
    spec: PaperSpec,
    load_fn: LoadFn,
    seed: int,
    train_limit: int | None,
    large_threshold: int,
    large_validation: int,
) -> dict[str, list[Example]]:
    where = f"{spec.name} ({spec.hub_id}" + (f"/{spec.config}" if spec.config else "") + ")"
    log.info("loading %s: train + %s", where, spec.eval_split)
    train = to_examples(spec, load_fn(spec.hub_id, spec.config, "train"), f"{where} train")
    evaluation = to_examples(
        spec, load_fn(spec.hub_id, spec.config, spec.eval_split), f"{where} {spec.eval_split}"
    )
    if not train or not evaluation:
        raise TaskError(
            f"{where}: no rows in train ({len(train)}) or {spec.eval_split} ({len(evaluation)})"
        )
    splits = attempt_split(train, evaluation, seed, large_threshold, large_validation)
    if train_limit is not None and len(splits["train"]) > train_limit:
        # A seeded stratified subset: huge train splits (Yahoo: 1.4M) rarely need every row.
        keep, _ = stratified_split([e.label for e in splits["train"]], train_limit, seed)
        splits["train"] = [splits["train"][i] for i in keep]
    log.info("%s: %s", spec.name, {k: len(v) for k, v in splits.items()})
    return splits


def make_task(
    name: str,
    *,
    seed: int = DEFAULT_SEED,
    load_fn: LoadFn | None = None,
    train_limit: int | None = None,
    large_threshold: int = LARGE_THRESHOLD,
    large_validation: int = LARGE_VALIDATION,
) -> Task:
    """A paper task; rows are fetched lazily, on the first `split()` call."""
    spec = SPEC_BY_NAME[name]
    loader = partial(
        _load_splits,
        spec,
        load_fn or hub_load,
        seed,
        train_limit,
        large_threshold,
        large_validation,
    )
    hub = spec.hub_id + (f"/{spec.config}" if spec.config else "")
    return Task(
        name=spec.name,
        input_fields=tuple(f for f, _ in spec.fields),
        labels=spec.labels,
        metric=spec.metric,
        source=f"hub:{hub}",
        description=(
            f"{spec.role} of the paper; authors' id {spec.paper_id!r}; ATTEMPT splits "
            f"(train > {large_threshold}: {large_validation} train rows -> validation, "
            f"{spec.eval_split} -> test; else {spec.eval_split} halved), seed {seed}"
        ),
        loader=loader,
    )


# --- generation tasks ---------------------------------------------------------------------
SQUAD_HUB = "rajpurkar/squad_v2"
MATH_HUB = {4: "AI-MO/aimo-validation-math-level-4", 5: "AI-MO/aimo-validation-math-level-5"}
MATH_SIZES = (500, 200)  # test, validation; train is the rest
SQUAD_TEMPLATE = (
    "Answer the question with a short span copied from the context. If the context does not "
    f'answer it, reply only "{NO_ANSWER}".\ncontext: {{context}}\nquestion: {{question}}\nanswer:'
)
MATH_TEMPLATE = "Solve the math problem. Reply only the final answer.\nproblem: {problem}\nanswer:"
GENERATION_MAX_NEW_TOKENS = 32


def squad_examples(rows: Iterable[Mapping[str, Any]], where: str) -> list[Example]:
    """Hub rows of rajpurkar/squad_v2 -> Examples with every gold answer text."""
    cols = _columns(rows, ["context", "question", "answers"], where)
    out = []
    for i, (context, question, answers) in enumerate(
        zip(cols["context"], cols["question"], cols["answers"], strict=True)
    ):
        texts = answers.get("text") if isinstance(answers, Mapping) else None
        if texts is None:
            raise TaskError(f"{where}, row {i}: 'answers' must be {{text: [...], ...}}, "
                            f"got {answers!r}")  # fmt: skip
        out.append(Example(fields={"context": str(context), "question": str(question)},
                           label=NO_LABEL, answers=tuple(str(t) for t in texts)))  # fmt: skip
    return out


def _load_squad(
    load_fn: LoadFn,
    seed: int,
    train_limit: int | None,
    large_threshold: int,
    large_validation: int,
) -> dict[str, list[Example]]:
    log.info("loading squad_v2 (%s): train + validation", SQUAD_HUB)
    train = squad_examples(load_fn(SQUAD_HUB, None, "train"), f"squad_v2 ({SQUAD_HUB}) train")
    evaluation = squad_examples(
        load_fn(SQUAD_HUB, None, "validation"), f"squad_v2 ({SQUAD_HUB}) validation"
    )
    if not train or not evaluation:
        raise TaskError(f"squad_v2 ({SQUAD_HUB}): no rows in train ({len(train)}) or "
                        f"validation ({len(evaluation)})")  # fmt: skip
    splits = attempt_split(train, evaluation, seed, large_threshold, large_validation)
    if train_limit is not None and len(splits["train"]) > train_limit:
        splits["train"] = subsample(splits["train"], train_limit, seed)
    log.info("squad_v2: %s", {k: len(v) for k, v in splits.items()})
    return splits


def make_squad_v2(
    *,
    seed: int = DEFAULT_SEED,
    load_fn: LoadFn | None = None,
    train_limit: int | None = None,
    large_threshold: int = LARGE_THRESHOLD,
    large_validation: int = LARGE_VALIDATION,
) -> Task:
    loader = partial(_load_squad, load_fn or hub_load, seed, train_limit, large_threshold,
                     large_validation)  # fmt: skip
    return Task(
        name="squad_v2",
        input_fields=("context", "question"),
        labels=(),
        metric="squad_v2",
        source=f"hub:{SQUAD_HUB}",
        description=(
            "paper source (generation) of the paper; authors' id 'rajpurkar/squad_v2'; "
            f"extractive QA, unanswerable -> {NO_ANSWER!r}; ATTEMPT splits (train > "
            f"{large_threshold}: {large_validation} train rows -> validation, validation -> "
            f"test), seed {seed}; few-shot draws k examples in all"
        ),
        template=SQUAD_TEMPLATE,
        loader=loader,
        max_new_tokens=GENERATION_MAX_NEW_TOKENS,
        no_answer=NO_ANSWER,
    )


def _load_math(
    load_fn: LoadFn, seed: int, levels: tuple[int, ...], train_limit: int | None
) -> dict[str, list[Example]]:
    rows: list[Example] = []
    level_of: list[int] = []
    for level in levels:
        hub_id = MATH_HUB[level]
        cols = _columns(load_fn(hub_id, None, "train"), ["problem", "answer"], f"math ({hub_id})")
        for problem, answer in zip(cols["problem"], cols["answer"], strict=True):
            rows.append(Example(fields={"problem": str(problem)}, label=NO_LABEL,
                                answers=(str(answer).strip(),)))  # fmt: skip
            level_of.append(level)
    test_n, val_n = MATH_SIZES
    if len(rows) <= test_n + val_n:
        # Small inputs (fixtures, one level's subset): keep the proportions of 500/200/rest.
        test_n, val_n = len(rows) * 2 // 5, len(rows) // 5
    test_idx, rest = stratified_split(level_of, test_n, seed)
    val_pos, train_pos = stratified_split([level_of[i] for i in rest], val_n, seed + 1)
    splits = {
        "train": [rows[rest[p]] for p in train_pos],
        "validation": [rows[rest[p]] for p in val_pos],
        "test": [rows[i] for i in test_idx],
    }
    if train_limit is not None and len(splits["train"]) > train_limit:
        splits["train"] = subsample(splits["train"], train_limit, seed)
    log.info("math (levels %s): %s", list(levels), {k: len(v) for k, v in splits.items()})
    return splits


def make_math(
    *,
    seed: int = DEFAULT_SEED,
    load_fn: LoadFn | None = None,
    levels: Sequence[int] = (4, 5),
    train_limit: int | None = None,
) -> Task:
    levels = tuple(sorted(set(levels)))
    bad = [lv for lv in levels if lv not in MATH_HUB]
    if bad or not levels:
        raise TaskError(f"task 'math': levels {list(levels)}: choose from {sorted(MATH_HUB)}")
    return Task(
        name="math",
        input_fields=("problem",),
        labels=(),
        metric="math",
        source="hub:" + "+".join(MATH_HUB[lv] for lv in levels),
        description=(
            "paper source (generation) of the paper; the authors' AI-MO MATH level "
            f"{'/'.join(map(str, levels))} sets (MATH test problems, integer answers); one "
            f"seeded split stratified by level: test {MATH_SIZES[0]}, validation "
            f"{MATH_SIZES[1]}, train the rest, seed {seed}; answers checked by math-verify; "
            "few-shot draws k examples in all"
        ),
        template=MATH_TEMPLATE,
        loader=partial(_load_math, load_fn or hub_load, seed, levels, train_limit),
        max_new_tokens=GENERATION_MAX_NEW_TOKENS,
    )


GENERATION_TASKS = (
    ("squad_v2", make_squad_v2, f"{SQUAD_HUB}: extractive QA; squad_v2 exact match / F1"),
    ("math", make_math, "AI-MO/aimo-validation-math-level-4/5: answers checked by math-verify"),
)


def _register_all() -> None:
    for spec in SPECS:
        register(TaskEntry(
            name=spec.name,
            factory=partial(make_task, spec.name),
            role=spec.role,
            summary=f"{spec.hub_id}" + (f" ({spec.config})" if spec.config else ""),
            aliases=spec.aliases,
        ))  # fmt: skip
    for name, factory, summary in GENERATION_TASKS:
        register(TaskEntry(name=name, factory=factory, role="paper source", summary=summary))


_register_all()
