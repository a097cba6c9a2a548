"""The user's own data: CSV, JSONL, saved HF datasets, TOML task files, and their errors."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import datasets
import pytest
from typer.testing import CliRunner

from tpv.cli.tasks import app
from tpv.tasks import TaskError, get_task, load_user_task

FIX = Path(__file__).parent / "fixtures" / "user"


def write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def csv_rows(n: int, labels=("neg", "pos")) -> str:
    return "text,label\n" + "".join(f"row {i},{labels[i % len(labels)]}\n" for i in range(n))


# --- good inputs -----------------------------------------------------------------------------
def test_toml_task_file():
    task = get_task(str(FIX / "reviews.toml"))
    assert task.name == "reviews"
    assert task.input_fields == ("review",)
    assert task.labels == ("negative", "positive")
    assert task.metric == "f1_binary"
    sizes = {s: len(task.split(s)) for s in ("train", "validation", "test")}
    assert sizes == {"train": 12, "validation": 4, "test": 4}
    for s in ("validation", "test"):  # stratified: 2 of each class out of a 50/50 file
        assert Counter(ex.label for ex in task.split(s)) == {0: 2, 1: 2}
    ex = next(e for e in task.split("train") if e.fields["review"] == "Broke after two days")
    assert task.render(ex, "instruction") == "Review: Broke after two days\nSentiment:"
    assert task.render(ex, "t5") == "reviews review: Broke after two days"
    assert task.target(ex) == "negative"


def test_carved_splits_deterministic_and_disjoint():
    def parts(seed):
        task = get_task(FIX / "reviews.csv", text_columns="review", label_column="stars",
                        label_words={"1": "negative", "5": "positive"}, seed=seed)  # fmt: skip
        return {s: [e.fields["review"] for e in task.split(s)] for s in ("train", "validation",
                                                                         "test")}  # fmt: skip

    a, b = parts(0), parts(0)
    assert a == b
    flat = a["train"] + a["validation"] + a["test"]
    assert len(flat) == len(set(flat)) == 20
    assert any(parts(s)["test"] != a["test"] for s in range(1, 6))


def test_csv_quotes_and_label_words_order():
    task = get_task(FIX / "reviews.csv", text_columns=["review"], label_column="stars",
                    label_words={"5": "positive", "1": "negative"})  # fmt: skip
    assert task.labels == ("positive", "negative")  # order of the mapping
    texts = {e.fields["review"] for s in ("train", "validation", "test") for e in task.split(s)}
    assert 'Beautiful, "solid" build' in texts


def test_jsonl_string_labels_sorted_and_macro_f1():
    task = get_task(FIX / "pairs.jsonl", text_columns=["premise", "hypothesis"])
    assert task.labels == ("contradiction", "entailment", "neutral")
    assert task.metric == "f1_macro"
    ex = task.split("train")[0]
    assert task.render(ex, "t5").startswith("pairs premise: A man is cooking dinner")
    assert "Classify the premise and hypothesis into labels" in task.render(ex, "instruction")


def test_explicit_split_files_and_label_word_list():
    task = get_task(FIX / "split" / "task.toml")
    assert task.name == "headlines"
    assert task.labels == ("business", "sport")
    assert [len(task.split(s)) for s in ("train", "validation", "test")] == [12, 4, 4]
    assert task.split("test")[0].fields["text"] == "test headline 0 about money"


def test_numeric_labels_sort_numerically(tmp_path):
    body = "text,label\n" + "".join(f"r{i},{[2, 10, 1][i % 3]}\n" for i in range(30))
    task = load_user_task(write(tmp_path / "n.csv", body))
    assert task.labels == ("1", "2", "10")


def test_tsv_and_json_array(tmp_path):
    tsv = write(
        tmp_path / "d.tsv", "text\tlabel\n" + "".join(f"t{i}\t{i % 2}\n" for i in range(20))
    )
    assert load_user_task(tsv, label_words={"0": "no", "1": "yes"}).labels == ("no", "yes")
    arr = [{"text": f"t{i}", "label": i % 2} for i in range(20)]
    js = write(tmp_path / "d.json", json.dumps(arr))
    assert load_user_task(js, label_words={"0": "no", "1": "yes"}).labels == ("no", "yes")


def test_saved_hf_dataset_dir_with_classlabel(tmp_path):
    feats = datasets.Features(
        {"sentence": datasets.Value("string"),
         "label": datasets.ClassLabel(names=["bad", "good"])}
    )  # fmt: skip
    rows = {"sentence": [f"s{i}" for i in range(20)], "label": [i % 2 for i in range(20)]}
    datasets.Dataset.from_dict(rows, features=feats).save_to_disk(str(tmp_path / "ds"))
    task = get_task(str(tmp_path / "ds"), text_columns="sentence")
    assert task.labels == ("bad", "good")
    assert sum(len(task.split(s)) for s in ("train", "validation", "test")) == 20


def test_saved_dataset_dict_keeps_its_splits(tmp_path):
    def part(n, tag):
        return datasets.Dataset.from_dict(
            {"text": [f"{tag}{i}" for i in range(n)], "label": [i % 2 for i in range(n)]}
        )

    dd = datasets.DatasetDict({"train": part(10, "tr"), "test": part(4, "te")})
    dd.save_to_disk(str(tmp_path / "dd"))
    task = get_task(str(tmp_path / "dd"), label_words={"0": "no", "1": "yes"})
    assert [e.fields["text"] for e in task.split("test")] == ["te0", "te1", "te2", "te3"]
    assert len(task.split("train")) + len(task.split("validation")) == 10


# --- errors, each naming what is at fault ----------------------------------------------------
def test_missing_column(tmp_path):
    path = write(tmp_path / "m.csv", csv_rows(10))
    with pytest.raises(TaskError, match=r"m\.csv: missing column\(s\) \['review'\]; columns are "
                                        r"\['text', 'label'\]"):  # fmt: skip
        load_user_task(path, text_columns="review")


def test_empty_file(tmp_path):
    with pytest.raises(TaskError, match=r"e\.csv is empty"):
        load_user_task(write(tmp_path / "e.csv", ""))
    with pytest.raises(TaskError, match=r"h\.csv has a header but no rows"):
        load_user_task(write(tmp_path / "h.csv", "text,label\n"))
    with pytest.raises(TaskError, match=r"e\.jsonl is empty"):
        load_user_task(write(tmp_path / "e.jsonl", "\n\n"))


def test_label_not_in_label_words_names_line(tmp_path):
    body = csv_rows(8) + "surprise,maybe\n"
    path = write(tmp_path / "u.csv", body)
    with pytest.raises(TaskError, match=r"u\.csv line 10: label 'maybe' in column 'label' is not "
                                        r"in the label words"):  # fmt: skip
        load_user_task(path, label_words={"neg": "negative", "pos": "positive"})


def test_label_not_in_word_list(tmp_path):
    path = write(tmp_path / "w.jsonl", "".join(
        json.dumps({"text": f"t{i}", "label": ["a", "b", "c"][i % 3]}) + "\n" for i in range(9)
    ))  # fmt: skip
    with pytest.raises(TaskError, match=r"w\.jsonl line 3: label 'c'"):
        load_user_task(path, label_words=["a", "b"])


def test_non_utf8_names_line(tmp_path):
    body = csv_rows(5).encode() + "caf\u00e9,pos\n".encode("latin-1") + b"x,neg\n"
    path = write(tmp_path / "l1.csv", body)
    with pytest.raises(TaskError, match=r"l1\.csv line 7: not UTF-8 text \(byte 0xe9\)"):
        load_user_task(path)


def test_one_class_only(tmp_path):
    path = write(tmp_path / "one.csv", csv_rows(10, labels=("pos",)))
    with pytest.raises(TaskError, match=r"only one class \(\['pos'\]\)"):
        load_user_task(path)


def test_split_file_with_one_class(tmp_path):
    train = write(tmp_path / "train.csv", csv_rows(10))
    test = write(tmp_path / "test.csv", csv_rows(4, labels=("pos",)))
    with pytest.raises(TaskError, match=r"split 'test' \(.*test\.csv\) has only one class "
                                        r"\('pos'\)"):  # fmt: skip
        load_user_task(train, test=str(test))


def test_bad_json_line(tmp_path):
    path = write(tmp_path / "b.jsonl", '{"text": "a", "label": "x"}\n{"text": "b", label}\n')
    with pytest.raises(TaskError, match=r"b\.jsonl line 2: not valid JSON"):
        load_user_task(path)


def test_extra_csv_cells(tmp_path):
    path = write(tmp_path / "x.csv", "text,label\na,pos\nb,neg,oops\n")
    with pytest.raises(TaskError, match=r"x\.csv line 3: more cells than header columns"):
        load_user_task(path)


def test_empty_text_and_empty_label(tmp_path):
    with pytest.raises(TaskError, match=r"t\.csv line 3: empty text in column\(s\) \['text'\]"):
        load_user_task(write(tmp_path / "t.csv", "text,label\na,pos\n  ,neg\n"))
    with pytest.raises(TaskError, match=r"l\.csv line 3: empty label in column 'label'"):
        load_user_task(write(tmp_path / "l.csv", "text,label\na,pos\nb,\nc,neg\n"))


def test_toml_errors(tmp_path):
    write(tmp_path / "d.csv", csv_rows(20))
    bad_key = write(tmp_path / "k.toml", 'data = "d.csv"\nlabel_colum = "label"\n')
    with pytest.raises(TaskError, match=r"k\.toml: unknown key\(s\) \['label_colum'\]"):
        get_task(str(bad_key))
    no_data = write(tmp_path / "n.toml", 'name = "x"\n')
    with pytest.raises(TaskError, match=r"n\.toml: say where the rows are"):
        get_task(str(no_data))
    broken = write(tmp_path / "b.toml", 'data = "d.csv\n')
    with pytest.raises(TaskError, match=r"b\.toml: not valid TOML"):
        get_task(str(broken))
    tmpl = write(tmp_path / "t.toml", 'data = "d.csv"\ntemplate = "Review: {review}"\n')
    with pytest.raises(TaskError, match=r"template names 'review' which is not a text column"):
        get_task(str(tmpl))
    metric = write(tmp_path / "m.toml", 'data = "d.csv"\nmetric = "bleu"\n')
    with pytest.raises(TaskError, match=r"unknown metric 'bleu'"):
        get_task(str(metric))


def test_too_few_rows_to_carve(tmp_path):
    path = write(tmp_path / "s.csv", csv_rows(2))
    with pytest.raises(TaskError, match="too few to carve"):
        load_user_task(path)


def test_missing_file_and_unknown_name(tmp_path):
    with pytest.raises(TaskError, match=r"nope\.csv: no such file"):
        get_task(str(tmp_path / "nope.csv"))
    with pytest.raises(TaskError, match="Did you mean rotten_tomatoes"):
        get_task("rotten_tomatoe")
    with pytest.raises(TaskError, match=r"unsupported file type '\.xlsx'"):
        load_user_task(write(tmp_path / "a.xlsx", "x"))


def test_unknown_option(tmp_path):
    with pytest.raises(TaskError, match=r"unknown option\(s\) \['text_colums'\]"):
        load_user_task(FIX / "reviews.csv", text_colums="review")


# --- CLI on a user file ------------------------------------------------------------------------
def test_cli_show_user_file_json():
    result = CliRunner().invoke(app, ["show", str(FIX / "reviews.toml"), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["sizes"] == {"train": 12, "validation": 4, "test": 4}
    assert info["class_counts"]["test"] == {"negative": 2, "positive": 2}
    assert info["example"]["render_instruction"].startswith("Review: ")
    assert info["example"]["render_t5"].startswith("reviews review: ")


def test_cli_show_error_exit_code(tmp_path):
    path = write(tmp_path / "one.csv", csv_rows(10, labels=("pos",)))
    result = CliRunner().invoke(app, ["show", str(path)])
    assert result.exit_code == 1
    assert "only one class" in result.output


def test_split_files_and_metric_from_the_command_line(tmp_path):
    """The task-file options every --task command shares: separate split files, --metric."""

    def write(name: str, n: int) -> Path:
        rows = "".join(f"w{i} sunny,yes\nw{i} rainy,no\n" for i in range(n))
        (tmp_path / name).write_text("review,stars\n" + rows)
        return tmp_path / name

    train, val, test = write("train.csv", 10), write("val.csv", 3), write("test.csv", 4)
    args = ["show", str(train), "--text-column", "review", "--label-column", "stars"]
    args += ["--validation-file", str(val), "--test-file", str(test), "--metric", "accuracy"]
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["sizes"] == {"train": 20, "validation": 6, "test": 8}  # nothing carved
    assert info["metric"] == "accuracy"
