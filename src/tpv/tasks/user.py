"""The user's own data as a Task: a CSV, JSONL/JSON file, a saved HF dataset, or a TOML task file.

Python:

    get_task("reviews.csv", text_columns="review", label_column="stars",
             label_words={"1": "negative", "5": "positive"})

A TOML task file says the same once (paths are relative to the TOML file):

    name = "reviews"
    data = "reviews.csv"            # or train = "...", plus optional validation / test
    text_columns = ["review"]       # default: "text"
    label_column = "stars"          # default: "label"
    [label_words]                   # raw label -> label word; its order is the class order
    "1" = "negative"
    "5" = "positive"

Options: name, data/train, validation, test, text_columns (or text_column), label_column,
label_words (a mapping raw -> word, or a list of allowed words), metric (default f1_binary
for two labels, else f1_macro), template (instruction template over the text columns), seed,
validation_size, test_size (a fraction < 1 or a count; default 0.1 each), description.
Splits not given as files are carved from train, stratified and seeded. Without label_words
the label words are the distinct raw labels, sorted (numerically when they are numbers).

Every error is a TaskError naming the file and, where there is one, the line and column.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .base import METRICS, SPLITS, Example, Task, TaskError
from .fewshot import stratified_split

log = logging.getLogger(__name__)

TABLE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".ndjson", ".json")
OPTION_KEYS = (
    "name", "data", "train", "validation", "test", "text_columns", "text_column",
    "label_column", "label_words", "metric", "template", "seed", "validation_size",
    "test_size", "description",
)  # fmt: skip

# One raw row: where it came from (for messages), and its column values.
Row = tuple[str, Mapping[str, Any]]


# --- reading files ---------------------------------------------------------------------------
def _decode(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")  # -sig: tolerate the BOM spreadsheet tools write
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise TaskError(
            f"{path} line {line}: not UTF-8 text (byte 0x{data[e.start]:02x}); "
            "save the file as UTF-8"
        ) from e


def _read_csv(path: Path) -> list[Row]:
    text = _decode(path)
    if not text.strip():
        raise TaskError(f"{path} is empty")
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    rows: list[Row] = []
    try:
        for rec in reader:
            if None in rec:  # DictReader files surplus cells under the key None
                raise TaskError(f"{path} line {reader.line_num}: more cells than header columns")
            rows.append((f"{path} line {reader.line_num}", rec))
    except csv.Error as e:
        raise TaskError(f"{path} line {reader.line_num}: bad CSV: {e}") from e
    if not rows:
        raise TaskError(f"{path} has a header but no rows")
    return rows


def _read_json(path: Path) -> list[Row]:
    text = _decode(path)
    if not text.strip():
        raise TaskError(f"{path} is empty")
    rows: list[Row] = []
    if path.suffix.lower() == ".json" and text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as e:
            raise TaskError(f"{path} line {e.lineno}: not valid JSON: {e.msg}") from e
        located = [(f"{path} item {i}", item) for i, item in enumerate(items)]
    else:  # JSON lines
        located = []
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                located.append((f"{path} line {n}", json.loads(line)))
            except json.JSONDecodeError as e:
                raise TaskError(f"{path} line {n}: not valid JSON: {e.msg}") from e
    for where, item in located:
        if not isinstance(item, dict):
            raise TaskError(f"{where}: expected a JSON object, got {type(item).__name__}")
        rows.append((where, item))
    if not rows:
        raise TaskError(f"{path} has no rows")
    return rows


def read_table(path: Path) -> list[Row]:
    if not path.exists():
        raise TaskError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        return _read_csv(path)
    if suffix in (".jsonl", ".ndjson", ".json"):
        return _read_json(path)
    raise TaskError(f"{path}: unsupported file type {suffix!r}; use one of {TABLE_SUFFIXES}")


def read_saved_dataset(path: Path) -> dict[str, list[Row]]:
    """A folder written by `datasets` `save_to_disk`: one Dataset, or a DatasetDict of splits."""
    import datasets  # heavy; only for this input kind

    try:
        loaded = datasets.load_from_disk(str(path))
    except Exception as e:  # datasets raises FileNotFoundError/ValueError variants
        raise TaskError(f"{path}: not a dataset saved with save_to_disk: {e}") from e
    parts = dict(loaded) if isinstance(loaded, datasets.DatasetDict) else {"train": loaded}
    unknown = sorted(set(parts) - set(SPLITS))
    if unknown:
        raise TaskError(f"{path}: unknown split(s) {unknown}; name them {list(SPLITS)}")
    out: dict[str, list[Row]] = {}
    for split, ds in parts.items():
        names = {
            col: feat.names
            for col, feat in ds.features.items()
            if isinstance(feat, datasets.ClassLabel)
        }
        rows: list[Row] = []
        for i, rec in enumerate(ds):
            # ClassLabel ints become their names, so label words can name classes.
            rec = {k: (names[k][v] if k in names and v is not None and v >= 0 else v)
                   for k, v in rec.items()}  # fmt: skip
            rows.append((f"{path} [{split}] row {i}", rec))
        if not rows:
            raise TaskError(f"{path}: split {split!r} has no rows")
        out[split] = rows
    return out


# --- rows -> examples ------------------------------------------------------------------------
def _raw_label(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # 1.0 from a JSON number means class "1"
    text = str(value).strip()
    return text or None


def _check_columns(rows: list[Row], file: str, columns: Sequence[str]) -> None:
    available = list(rows[0][1])
    missing = [c for c in columns if c not in available]
    if missing:
        raise TaskError(f"{file}: missing column(s) {missing}; columns are {available}")


def _sort_raw(labels: set[str]) -> list[str]:
    try:
        return sorted(labels, key=float)
    except ValueError:
        return sorted(labels)


def _verbalizer(label_words: Any, raw_labels: set[str]) -> tuple[tuple[str, ...], dict[str, int]]:
    """Label words in class order, and raw label -> class index."""
    if label_words is None:
        words = tuple(_sort_raw(raw_labels))
        if all(re.fullmatch(r"-?\d+", w) for w in words):
            log.warning("labels are numbers %s: give label_words so the model sees words",
                        list(words))  # fmt: skip
        return words, {w: i for i, w in enumerate(words)}
    if isinstance(label_words, Mapping):
        mapping = {str(k): str(v) for k, v in label_words.items()}
        words = tuple(dict.fromkeys(mapping.values()))  # order of first mention
        return words, {k: words.index(v) for k, v in mapping.items()}
    if isinstance(label_words, Sequence) and not isinstance(label_words, str):
        words = tuple(str(w) for w in label_words)
        return words, {w: i for i, w in enumerate(words)}
    raise TaskError(f"label_words must be a mapping raw label -> word or a list, got "
                    f"{type(label_words).__name__}")  # fmt: skip


def _to_examples(
    rows: list[Row], text_columns: Sequence[str], label_column: str, index: Mapping[str, int]
) -> list[Example]:
    out = []
    for where, rec in rows:
        raw = _raw_label(rec.get(label_column))
        if raw is None:
            raise TaskError(f"{where}: empty label in column {label_column!r}")
        if raw not in index:
            raise TaskError(
                f"{where}: label {raw!r} in column {label_column!r} is not in the label words "
                f"(known: {sorted(index)}); add it to label_words"
            )
        fields = {c: "" if rec.get(c) is None else str(rec[c]) for c in text_columns}
        if not any(v.strip() for v in fields.values()):
            raise TaskError(f"{where}: empty text in column(s) {list(text_columns)}")
        out.append(Example(fields=fields, label=index[raw]))
    return out


def _size(value: float | int, n: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise TaskError(f"{what} must be a fraction in (0, 1) or a count, got {value!r}")
    count = round(value * n) if value < 1 else int(value)
    return max(count, 1)


def _name_from(path: Path) -> str:
    return re.sub(r"[^a-z0-9_]+", "_", path.stem.lower()).strip("_") or "task"


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        conf = tomllib.loads(_decode(path))
    except tomllib.TOMLDecodeError as e:
        raise TaskError(f"{path}: not valid TOML: {e}") from e
    unknown = sorted(set(conf) - set(OPTION_KEYS))
    if unknown:
        raise TaskError(f"{path}: unknown key(s) {unknown}; allowed: {list(OPTION_KEYS)}")
    # Paths in a task file are relative to the file, not to the working directory.
    for key in ("data", "train", "validation", "test"):
        if key in conf:
            conf[key] = str((path.parent / conf[key]).resolve())
    conf.setdefault("name", _name_from(path))
    return conf


def _carve_splits(
    examples: dict[str, list[Example]],
    files: dict[str, str],
    conf: Mapping[str, Any],
    words: tuple[str, ...],
    seed: int,
) -> None:
    """Carve missing splits out of train, stratified and seeded (test first, then validation)."""
    for offset, split in enumerate(("test", "validation")):
        if split in examples:
            continue
        train = examples["train"]
        n = _size(conf.get(f"{split}_size", 0.1), len(train), f"{split}_size")
        if f"{split}_size" not in conf:  # default size: room for one row of every class
            n = max(n, len(words))
        if n >= len(train):
            raise TaskError(f"{files['train']}: {len(train)} rows are too few to carve a "
                            f"{split} split of {n} and keep training rows")  # fmt: skip
        part, rest = stratified_split([e.label for e in train], n, seed + offset)
        examples[split] = [train[i] for i in part]
        examples["train"] = [train[i] for i in rest]
        files[split] = f"{files['train']} (carved, seed {seed + offset})"


# --- the public entry ------------------------------------------------------------------------
# Over 80 lines, on purpose: one pass from a file to a Task that reads in the order a user's
# data is checked (options, rows, columns, label words, splits, metric, template).
def load_user_task(path: str | Path, **options: Any) -> Task:
    """Build a Task from a data file, a saved dataset folder, or a TOML task file.

    Keyword options override what a TOML file says; see the module docstring for the keys.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise TaskError(f"{path}: no such file or folder")
    unknown = sorted(set(options) - set(OPTION_KEYS))
    if unknown:
        raise TaskError(f"unknown option(s) {unknown} for a data file; allowed: "
                        f"{list(OPTION_KEYS)}")  # fmt: skip
    conf: dict[str, Any] = {}
    if path.suffix.lower() == ".toml":
        conf = _read_toml(path)
        data = conf.pop("data", None) or conf.get("train")
        if data is None:
            raise TaskError(f'{path}: say where the rows are: data = "file.csv" (or train)')
        data_path = Path(data)
    else:
        data_path = path
    conf.update(options)

    text_columns = conf.get("text_columns", conf.get("text_column", "text"))
    if isinstance(text_columns, str):
        text_columns = [text_columns]
    label_column = str(conf.get("label_column", "label"))
    seed = int(conf.get("seed", 0))

    # Raw rows per split: split files given explicitly win over the main data.
    raw: dict[str, tuple[str, list[Row]]] = {}
    if data_path.is_dir():
        for split, rows in read_saved_dataset(data_path).items():
            raw[split] = (f"{data_path} [{split}]", rows)
    else:
        train_file = Path(conf.get("train") or data_path)
        raw["train"] = (str(train_file), read_table(train_file))
    for split in ("validation", "test"):
        if conf.get(split):
            raw[split] = (str(conf[split]), read_table(Path(conf[split])))

    if "train" not in raw:
        raise TaskError(f"{data_path}: no 'train' split; found {sorted(raw)}")
    for file, rows in raw.values():
        _check_columns(rows, file, [*text_columns, label_column])
    seen = {_raw_label(rec.get(label_column)) for _, rows in raw.values() for _, rec in rows}
    words, index = _verbalizer(conf.get("label_words"), seen - {None})
    if len(words) < 2:
        raise TaskError(f"{raw['train'][0]}: only one class ({list(words)}) in column "
                        f"{label_column!r}; a task needs at least two")  # fmt: skip
    examples = {
        split: _to_examples(rows, text_columns, label_column, index)
        for split, (_, rows) in raw.items()
    }
    files = {split: file for split, (file, _) in raw.items()}

    _carve_splits(examples, files, conf, words, seed)

    for split in SPLITS:
        present = sorted({e.label for e in examples[split]})
        if len(present) < 2:
            only = words[present[0]] if present else "none"
            raise TaskError(
                f"split {split!r} ({files[split]}) has only one class ({only!r}); every split "
                "needs at least two: add rows of the other classes or give split files"
            )

    name = str(conf.get("name") or _name_from(data_path))
    metric = conf.get("metric") or ("f1_binary" if len(words) == 2 else "f1_macro")
    if metric not in METRICS:
        raise TaskError(f"{path}: unknown metric {metric!r}; use one of {METRICS}")
    template = conf.get("template")
    if template is not None:
        try:
            template.format(**{c: "" for c in text_columns})
        except (KeyError, IndexError) as e:
            raise TaskError(f"{path}: template names {e} which is not a text column "
                            f"({list(text_columns)})") from e  # fmt: skip
    sizes = {k: len(v) for k, v in examples.items()}
    log.info("task %s from %s: %s", name, path, sizes)
    return Task(
        name=name,
        input_fields=tuple(text_columns),
        labels=words,
        metric=metric,
        source=f"file:{path}",
        description=str(conf.get("description") or f"user data from {path}"),
        template=template,
        loader=lambda: examples,
    )
