"""Generation tasks: SQuAD v2 and MATH loaders on fixture files in the hub schema, their
targets and scorer settings, few-shot sampling without classes, and prompt tuning on a
free-text target (teacher forcing on the answer tokens) for decoder and encoder-decoder models.
"""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest

from tpv.data import Encoder, collate
from tpv.evaluate import Evaluator
from tpv.tasks import TaskError, get_task, list_tasks, sample_k_shot, task_entries
from tpv.tasks.base import NO_LABEL, Example, Task
from tpv.testing import phrase_task, tiny_llama, tiny_t5
from tpv.textmetrics import NO_ANSWER
from tpv.train import TrainConfig, train

FIXTURES = Path(__file__).parent / "fixtures" / "paper"
MATH_FOLDERS = {
    "AI-MO/aimo-validation-math-level-4": "math_l4",
    "AI-MO/aimo-validation-math-level-5": "math_l5",
}


def rows_of(folder: str, split: str) -> list[dict]:
    with open(FIXTURES / folder / f"{split}.jsonl") as f:
        return [json.loads(line) for line in f]


class Hub:
    """Serves fixture files through `datasets` (as the hub would) and records the calls."""

    def __init__(self, cache_dir: Path):
        self.cache_dir, self.calls = cache_dir, []

    def __call__(self, hub_id, config, split):
        self.calls.append((hub_id, config, split))
        folder = MATH_FOLDERS.get(hub_id) or {"rajpurkar/squad_v2": "squad_v2"}[hub_id]
        return datasets.load_dataset(
            "json",
            data_files=str(FIXTURES / folder / f"{split}.jsonl"),
            split="train",
            cache_dir=str(self.cache_dir),
        )


def test_generation_tasks_are_supported_paper_sources():
    supported = set(list_tasks(supported_only=True))
    assert {"squad_v2", "math"} <= supported
    assert {"squad_v2", "math"} <= set(list_tasks(role="paper source"))
    assert all(e.supported for e in task_entries())


def test_squad_v2_from_hub_schema(tmp_path):
    hub = Hub(tmp_path)
    task = get_task("squad_v2", load_fn=hub)
    assert task.is_generation and task.metric == "squad_v2" and task.labels == ()
    assert task.max_new_tokens > 16 and task.no_answer == NO_ANSWER
    assert task.input_fields == ("context", "question")
    train_rows, eval_rows = rows_of("squad_v2", "train"), rows_of("squad_v2", "validation")
    # Small fixture: ATTEMPT's rule halves the hub validation split into validation and test.
    assert len(task.split("train")) == len(train_rows)
    assert len(task.split("validation")) == len(eval_rows) // 2
    assert len(task.split("test")) == len(eval_rows) - len(eval_rows) // 2
    assert sorted(hub.calls) == [
        ("rajpurkar/squad_v2", None, "train"),
        ("rajpurkar/squad_v2", None, "validation"),
    ]
    ex, row = task.split("train")[0], train_rows[0]
    assert ex.label == NO_LABEL
    assert ex.fields == {"context": row["context"], "question": row["question"]}
    assert ex.answers == tuple(row["answers"]["text"])  # every gold answer, duplicates kept
    assert task.target(ex) == row["answers"]["text"][0]
    unanswerable = next(e for e in task.split("train") if not e.answers)
    assert task.target(unanswerable) == NO_ANSWER
    text = task.render(ex)
    assert row["context"] in text and row["question"] in text and NO_ANSWER in text
    # The question closes the input: middle truncation of a long context keeps it.
    assert text.index(row["question"]) > text.index(row["context"])


def test_squad_v2_bad_answers_column_names_row(tmp_path):
    def load(hub_id, config, split):
        return [{"context": "c", "question": "q", "answers": ["flat list"]}]

    with pytest.raises(TaskError, match="row 0: 'answers'"):
        get_task("squad_v2", load_fn=load).split("train")


def test_math_levels_split_and_answers(tmp_path):
    hub = Hub(tmp_path)
    task = get_task("math", load_fn=hub)
    assert task.is_generation and task.metric == "math" and task.max_new_tokens > 16
    assert sorted(hub.calls) == []  # lazy
    sizes = {s: len(task.split(s)) for s in ("train", "validation", "test")}
    assert sum(sizes.values()) == 10
    # 10 rows <= 500 + 200: proportions of the real sizes, test 2/5 and validation 1/5.
    assert sizes == {"train": 4, "validation": 2, "test": 4}
    problems = {r["problem"]: r["answer"] for r in rows_of("math_l4", "train")}
    problems |= {r["problem"]: r["answer"] for r in rows_of("math_l5", "train")}
    seen = [e for s in ("train", "validation", "test") for e in task.split(s)]
    assert {e.fields["problem"] for e in seen} == set(problems)  # every row once
    for e in seen:
        assert e.answers == (problems[e.fields["problem"]],) and task.target(e) == e.answers[0]
    # Stratified by level: each split holds both levels equally.
    l4 = {r["problem"] for r in rows_of("math_l4", "train")}
    for s in ("train", "validation", "test"):
        n4 = sum(e.fields["problem"] in l4 for e in task.split(s))
        assert n4 * 2 == len(task.split(s))
    # Deterministic.
    again = get_task("math", load_fn=Hub(tmp_path))
    assert again.split("test") == task.split("test")


def test_math_one_level_and_bad_level(tmp_path):
    hub = Hub(tmp_path)
    task = get_task("math", load_fn=hub, levels=[5])
    assert sum(len(task.split(s)) for s in ("train", "validation", "test")) == 5
    assert hub.calls == [("AI-MO/aimo-validation-math-level-5", None, "train")]
    with pytest.raises(TaskError, match="levels"):
        get_task("math", levels=[3])


def test_generation_task_definition_is_checked():
    with pytest.raises(TaskError, match="template"):
        Task(name="g", input_fields=("x",), labels=(), metric="rouge_l")
    with pytest.raises(TaskError, match="no label words"):
        Task(name="g", input_fields=("x",), labels=("a", "b"), metric="rouge_l", template="{x}")
    task = Task(name="g", input_fields=("x",), labels=(), metric="squad_v2", template="{x}")
    with pytest.raises(TaskError, match="no_answer"):
        task.target(Example({"x": "1"}, NO_LABEL))


def test_few_shot_on_generation_rows_draws_k_in_all():
    rows = [Example({"x": str(i)}, NO_LABEL, answers=(str(i),)) for i in range(50)]

    def ids(sample):
        return [e.answers[0] for e in sample]

    five = ids(sample_k_shot(rows, 5, seed=3))
    assert len(five) == 5 and len(set(five)) == 5
    assert ids(sample_k_shot(rows, 5, seed=3)) == five
    assert set(five) <= set(ids(sample_k_shot(rows, 10, seed=3)))  # nested, as for classes
    assert ids(sample_k_shot(rows, 5, seed=4)) != five


@pytest.mark.parametrize("arch", ["llama", "t5"])
def test_answer_tokens_are_the_target_and_long_answers_are_cut(arch):
    backbone = tiny_llama() if arch == "llama" else tiny_t5()
    task = phrase_task()
    enc = Encoder(backbone, task)
    ex = task.split("train")[0]
    item = enc.encode(ex)
    words = backbone.tokenizer(ex.answers[0], add_special_tokens=False)["input_ids"]
    assert item.target_ids == (*words, enc.end_id)
    assert len(item.target_ids) == 4  # three words and the end token: multi-token target
    short = Task(name="p", input_fields=("text",), labels=(), metric="rouge_l",
                 template="{text} label :", max_new_tokens=2, loader=task.loader)  # fmt: skip
    assert Encoder(backbone, short).encode(ex).target_ids == tuple(words[:2])
    batch = collate(enc.encode_all(task.split("train")[:3]), 0, backbone.is_encoder_decoder)
    assert batch.labels.shape == (3, 4)


@pytest.mark.parametrize("arch", ["llama", "t5"])
def test_prompt_learns_a_free_text_target(tmp_path, arch):
    """Teacher forcing on the answer tokens teaches the multi-token phrase; scored by ROUGE-L
    through generation with the task's own max_new_tokens. The tiny random T5's decoder learns
    the phrase slowly (it repeats one word for a while): a smaller gain is asked of it."""
    backbone = tiny_llama() if arch == "llama" else tiny_t5()
    task = phrase_task(n_train=128)
    cfg = TrainConfig(task="phrase", out=str(tmp_path / "run"), num_tokens=8, max_steps=60,
                      batch_size=16, eval_every=20, lr=0.3, test_init=True)  # fmt: skip
    m = train(cfg, backbone=backbone, task=task, progress=False)
    assert m.test["metric"] == "rouge_l" and m.test["scorer"] == "generate"
    assert m.test["max_new_tokens"] == task.max_new_tokens
    gain = {"llama": 0.3, "t5": 0.05}[arch]
    assert m.best_val > m.init_val + gain
    assert m.test["score"] > m.init_test["score"] + (0.2 if arch == "llama" else 0.0)
    assert m.test["samples"][0]["gold"]
    log_rows = (tmp_path / "run" / "log.jsonl").read_text().splitlines()
    losses = [r["loss"] for r in map(json.loads, log_rows) if "loss" in r]
    assert sum(losses[-10:]) < sum(losses[:10])


def test_rank_scorer_request_is_generation_for_generation_tasks():
    backbone, task = tiny_llama(), phrase_task()
    ev = Evaluator(backbone, task, task.split("test")[:4], scorer="rank")
    out = ev(backbone.make_origin(4))
    assert out["scorer"] == "generate" and out["metric"] == "rouge_l" and out["n"] == 4
