"""The paper's datasets: hub ids, field mapping, label words, metrics and ATTEMPT splits.

Rows come from tests/fixtures/paper/<task>/<split>.jsonl (the hub schemas) through the
injectable load function, read with `datasets.load_dataset("json")`; only the download
itself is untested.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import datasets
import pytest

from tpv.tasks import TaskError, get_task, list_tasks
from tpv.tasks import paper as paper_mod

FIXTURES = Path(__file__).parent / "fixtures" / "paper"

NLI3 = ("entailment", "neutral", "contradiction")
POL = ("negative", "positive")
# name -> (hub id, config, eval split, {field: hub column}, label words, metric); written out
# from PAPER.md here rather than read back from the code under test.
EXPECTED = {
    "mnli": ("nyu-mll/glue", "mnli", "validation_matched",
             {"premise": "premise", "hypothesis": "hypothesis"}, NLI3, "f1_macro"),
    "qnli": ("nyu-mll/glue", "qnli", "validation",
             {"question": "question", "sentence": "sentence"},
             ("entailment", "not_entailment"), "f1_binary"),
    "qqp": ("nyu-mll/glue", "qqp", "validation",
            {"question1": "question1", "question2": "question2"},
            ("not_duplicate", "duplicate"), "f1_binary"),
    "sst2": ("nyu-mll/glue", "sst2", "validation", {"sentence": "sentence"}, POL, "f1_binary"),
    "stsb": ("nyu-mll/glue", "stsb", "validation",
             {"sentence1": "sentence1", "sentence2": "sentence2"},
             tuple(f"{x / 10:.1f}" for x in range(0, 51, 2)), "pearson_spearman"),
    "mrpc": ("nyu-mll/glue", "mrpc", "validation",
             {"sentence1": "sentence1", "sentence2": "sentence2"},
             ("not_equivalent", "equivalent"), "f1_binary"),
    "rte": ("nyu-mll/glue", "rte", "validation",
            {"sentence1": "sentence1", "sentence2": "sentence2"},
            ("entailment", "not_entailment"), "f1_binary"),
    "cola": ("nyu-mll/glue", "cola", "validation", {"sentence": "sentence"},
             ("unacceptable", "acceptable"), "f1_binary"),
    "dbpedia": ("fancyzhx/dbpedia_14", None, "test", {"title": "title", "content": "content"},
                ("Company", "Educational Institution", "Artist", "Athlete", "Office Holder",
                 "Mean Of Transportation", "Building", "Natural Place", "Village", "Animal",
                 "Plant", "Album", "Film", "Written Work"), "f1_macro"),
    "trec": ("CogComp/trec", None, "test", {"question": "text"},
             ("Abbreviation", "Entity", "Description", "Person", "Location", "Quantity"),
             "f1_macro"),
    "yelp_polarity": ("fancyzhx/yelp_polarity", None, "test", {"sentence": "text"}, POL,
                      "f1_binary"),
    "scitail": ("allenai/scitail", "snli_format", "test",
                {"premise": "sentence1", "hypothesis": "sentence2"},
                ("entailment", "neutral"), "f1_binary"),
    "snli": ("stanfordnlp/snli", None, "test", {"premise": "premise", "hypothesis": "hypothesis"},
             NLI3, "f1_macro"),
    "ag_news": ("fancyzhx/ag_news", None, "test", {"text": "text"},
                ("World", "Sports", "Business", "Sci/Tech"), "f1_macro"),
    "yahoo_answers_topics": ("community-datasets/yahoo_answers_topics", None, "test",
                             {"title": "question_title", "content": "question_content",
                              "answer": "best_answer"},
                             ("Society", "Science", "Health", "Education", "Computers", "Sports",
                              "Business", "Entertainment", "Family", "Politics"), "f1_macro"),
    "imdb": ("stanfordnlp/imdb", None, "test", {"sentence": "text"}, POL, "f1_binary"),
    "sst5": ("SetFit/sst5", None, "validation", {"sentence": "text"},
             ("very negative", "negative", "neutral", "positive", "very positive"), "f1_macro"),
}  # fmt: skip


def fixture_rows(name: str, split: str) -> list[dict]:
    with open(FIXTURES / name / f"{split}.jsonl") as f:
        return [json.loads(line) for line in f]


class FixtureHub:
    """A load_fn serving fixture files through `datasets`; records what was asked for."""

    def __init__(self, name: str, cache_dir: Path):
        self.name, self.cache_dir, self.calls = name, cache_dir, []

    def __call__(self, hub_id, config, split):
        self.calls.append((hub_id, config, split))
        path = FIXTURES / self.name / f"{split}.jsonl"
        return datasets.load_dataset(
            "json", data_files=str(path), split="train", cache_dir=str(self.cache_dir)
        )


def test_registry_has_all_19_paper_tasks():
    sources = list_tasks(role="paper source")
    targets = list_tasks(role="paper target")
    assert set(sources) == {"mnli", "qnli", "qqp", "sst2", "stsb", "mrpc", "rte", "cola",
                            "dbpedia", "trec", "yelp_polarity", "squad_v2", "math"}  # fmt: skip
    assert set(targets) == {"scitail", "snli", "ag_news", "yahoo_answers_topics", "imdb", "sst5"}
    generation = {"squad_v2", "math"}
    assert set(EXPECTED) | generation == set(list_tasks(supported_only=True)) & set(
        sources + targets
    )


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_paper_task_mapping(name, tmp_path):
    hub_id, config, eval_split, field_map, labels, metric = EXPECTED[name]
    hub = FixtureHub(name, tmp_path)
    task = get_task(name, load_fn=hub)
    assert task.input_fields == tuple(field_map)
    assert task.labels == labels
    assert task.metric == metric

    train_rows = [r for r in fixture_rows(name, "train") if r.get("label") != -1]
    eval_rows = [r for r in fixture_rows(name, eval_split) if r.get("label") != -1]
    # Fixture train splits are tiny (<= 10k): ATTEMPT halves the evaluation split.
    assert len(task.split("train")) == len(train_rows)
    assert len(task.split("validation")) == len(eval_rows) // 2
    assert len(task.split("test")) == len(eval_rows) - len(eval_rows) // 2
    assert sorted(hub.calls) == sorted([(hub_id, config, "train"), (hub_id, config, eval_split)])

    # Train keeps the hub order under the small-data rule: row 0 is fixture row 0.
    ex, row = task.split("train")[0], train_rows[0]
    assert ex.fields == {f: str(row[c]) for f, c in field_map.items()}
    t5 = f"{name} " + " ".join(f"{f}: {row[c]}" for f, c in field_map.items())
    assert task.render(ex, "t5") == t5
    instruction = (
        f"Classify the {' and '.join(field_map)} into labels: {', '.join(labels)}. "
        "Reply only the corresponding label.\n"
        + "\n".join(f"{f}: {row[c]}" for f, c in field_map.items())
        + "\nlabel:"
    )
    assert task.render(ex, "instruction") == instruction
    assert task.target(ex) in labels


def test_rendered_text_of_two_tasks_verbatim(tmp_path):
    mnli = get_task("mnli", load_fn=FixtureHub("mnli", tmp_path))
    ex = mnli.split("train")[0]
    assert mnli.render(ex, "t5") == (
        "mnli premise: The man plays a guitar on stage (train 0). "
        "hypothesis: Someone makes music (train 0)."
    )
    assert mnli.target(ex) == "entailment"
    trec = get_task("trec", load_fn=FixtureHub("trec", tmp_path))
    ex = trec.split("train")[1]
    assert trec.render(ex, "instruction") == (
        "Classify the question into labels: Abbreviation, Entity, Description, Person, "
        "Location, Quantity. Reply only the corresponding label.\n"
        "question: What is the name of question train 1 ?\nlabel:"
    )
    assert trec.target(ex) == "Entity"


def test_label_words_follow_hub_label_ids(tmp_path):
    task = get_task("ag_news", load_fn=FixtureHub("ag_news", tmp_path))
    for ex, row in zip(task.split("train"), fixture_rows("ag_news", "train"), strict=True):
        assert task.target(ex) == ("World", "Sports", "Business", "Sci/Tech")[row["label"]]


def test_sst5_is_the_real_five_class_sst(tmp_path):
    # The authors' "sst5_text" loaded SST-2; ours must ask for SetFit/sst5 and keep 5 classes.
    hub = FixtureHub("sst5", tmp_path)
    task = get_task("sst5", load_fn=hub)
    assert hub.calls == []  # rows load lazily, on the first split() call
    assert len(task.labels) == 5
    counts = Counter(ex.label for ex in task.split("train"))
    assert set(counts) == set(range(5))
    assert {c[0] for c in hub.calls} == {"SetFit/sst5"}


def test_snli_drops_unlabelled_rows(tmp_path):
    task = get_task("snli", load_fn=FixtureHub("snli", tmp_path))
    rows = fixture_rows("snli", "train")
    assert any(r["label"] == -1 for r in rows)
    assert len(task.split("train")) == len(rows) - 1
    assert all(0 <= ex.label < 3 for s in ("train", "validation", "test") for ex in task.split(s))


def test_scitail_string_labels(tmp_path):
    task = get_task("scitail", load_fn=FixtureHub("scitail", tmp_path))
    rows = fixture_rows("scitail", "train")
    assert [task.target(ex) for ex in task.split("train")] == [r["gold_label"] for r in rows]


def test_stsb_nearest_step_label_and_gold_value(tmp_path):
    task = get_task("stsb", load_fn=FixtureHub("stsb", tmp_path))
    assert len(task.labels) == 26 and task.labels[0] == "0.0" and task.labels[-1] == "5.0"
    scores = [r["label"] for r in fixture_rows("stsb", "train")]
    got = task.split("train")
    assert [ex.value for ex in got] == scores
    # 2.49 -> "2.4", 4.75 -> "4.8", 1.1 -> "1.2" (nearest 0.2 step; .1 ties round to even)
    by_score = {ex.value: task.target(ex) for ex in got}
    assert by_score[2.49] == "2.4"
    assert by_score[4.75] == "4.8"
    assert by_score[5.0] == "5.0" and by_score[0.0] == "0.0"
    for ex in got:
        assert abs(task.label_value(ex.label) - ex.value) <= 0.1 + 1e-9


def test_large_dataset_rule(tmp_path):
    # Over the threshold: N train rows go to validation, the evaluation split becomes test.
    task = get_task("qnli", load_fn=FixtureHub("qnli", tmp_path), large_threshold=10,
                    large_validation=4)  # fmt: skip
    train_rows, eval_rows = fixture_rows("qnli", "train"), fixture_rows("qnli", "validation")
    assert len(task.split("validation")) == 4
    assert len(task.split("train")) == len(train_rows) - 4
    assert [ex.fields["question"] for ex in task.split("test")] == [
        r["question"] for r in eval_rows
    ]
    train_q = {ex.fields["question"] for ex in task.split("train")}
    val_q = {ex.fields["question"] for ex in task.split("validation")}
    assert not train_q & val_q
    assert train_q | val_q == {r["question"] for r in train_rows}
    # Stratified: both classes in validation.
    assert {ex.label for ex in task.split("validation")} == {0, 1}


def synthetic(n: int, prefix: str) -> list[dict]:
    return [{"sentence": f"{prefix} {i}", "label": i % 2, "idx": i} for i in range(n)]


@pytest.mark.parametrize(
    ("n_train", "expect"), [(10_001, (9_001, 1_000, 872)), (10_000, (10_000, 436, 436))]
)
def test_attempt_threshold_at_default_10k(n_train, expect):
    evaluation = synthetic(872, "dev")

    def load(hub_id, config, split):
        return synthetic(n_train, "train") if split == "train" else evaluation

    task = get_task("sst2", load_fn=load)
    assert tuple(len(task.split(s)) for s in ("train", "validation", "test")) == expect


def test_splits_deterministic_by_seed(tmp_path):
    def val_texts(seed):
        task = get_task("sst2", load_fn=FixtureHub("sst2", tmp_path), seed=seed)
        return [ex.fields["sentence"] for ex in task.split("validation")]

    assert val_texts(42) == val_texts(42)
    assert any(val_texts(42) != val_texts(s) for s in range(5))


def test_train_limit_is_a_stratified_subset(tmp_path):
    task = get_task("sst2", load_fn=FixtureHub("sst2", tmp_path), train_limit=6)
    assert len(task.split("train")) == 6
    assert Counter(ex.label for ex in task.split("train")) == {0: 3, 1: 3}


def test_parquet_fixture_through_datasets(tmp_path):
    rows = fixture_rows("imdb", "train")
    datasets.Dataset.from_list(rows).to_parquet(str(tmp_path / "train.parquet"))
    datasets.Dataset.from_list(fixture_rows("imdb", "test")).to_parquet(
        str(tmp_path / "test.parquet")
    )

    def load(hub_id, config, split):
        return datasets.load_dataset("parquet", data_files=str(tmp_path / f"{split}.parquet"),
                                     split="train", cache_dir=str(tmp_path / "c"))  # fmt: skip

    task = get_task("imdb", load_fn=load)
    assert [ex.fields["sentence"] for ex in task.split("train")] == [r["text"] for r in rows]


def test_aliases_and_legacy_trec_column():
    rows = [{"text": f"q {i}", "label-coarse": i % 6, "label-fine": 0} for i in range(12)]
    task = get_task("trec_coarse", load_fn=lambda h, c, s: rows)
    assert task.name == "trec"
    assert [ex.label for ex in task.split("train")] == [i % 6 for i in range(12)]
    assert get_task("yahoo").name == "yahoo_answers_topics"


def test_missing_column_names_it():
    rows = [{"sentence": "x", "idx": 0}]
    task = get_task("sst2", load_fn=lambda h, c, s: rows)
    with pytest.raises(TaskError, match=r"missing column\(s\) \['label'\]"):
        task.split("train")


def test_out_of_range_label_names_row_and_value():
    rows = synthetic(4, "t") + [{"sentence": "odd", "label": 7, "idx": 4}]
    task = get_task("sst2", load_fn=lambda h, c, s: rows)
    with pytest.raises(TaskError, match=r"train, row 4: label 7 in column 'label'"):
        task.split("train")


def test_unknown_string_label():
    rows = [{"sentence1": "a", "sentence2": "b", "gold_label": "contradiction"}]
    task = get_task("scitail", load_fn=lambda h, c, s: rows)
    with pytest.raises(TaskError, match="'contradiction'"):
        task.split("train")


@pytest.mark.parametrize("name", ["squad_v2", "math"])
def test_generation_tasks_are_registered_and_built(name):
    """Their loaders and metrics are tested in test_tasks_generation.py."""
    assert name in list_tasks(supported_only=True)
    assert get_task(name).is_generation


def test_hub_failure_is_a_clear_task_error(monkeypatch):
    def offline(*args, **kwargs):
        raise ConnectionError("no route to huggingface.co")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    task = get_task("rte")  # the default load_fn: the real hub
    with pytest.raises(TaskError, match=r"could not load split 'train' of nyu-mll/glue \(rte\)"):
        task.split("train")


def test_bad_option_is_a_task_error():
    with pytest.raises(TaskError, match="bad option"):
        get_task("sst2", sede=1)


def test_attempt_split_keeps_every_row_once():
    train = paper_mod.to_examples(paper_mod.SPEC_BY_NAME["sst2"], synthetic(30, "t"), "t")
    evaluation = paper_mod.to_examples(paper_mod.SPEC_BY_NAME["sst2"], synthetic(9, "e"), "e")
    small = paper_mod.attempt_split(train, evaluation, seed=1)
    assert len(small["validation"]) == 4 and len(small["test"]) == 5
    texts = [ex.fields["sentence"] for s in ("validation", "test") for ex in small[s]]
    assert sorted(texts) == sorted(ex.fields["sentence"] for ex in evaluation)
