"""What every reader shares: ``RetrievalData``, ``DataFormatError``, and validated records read line by line.

Readers (``beir``, ``msmarco``, ``dpr``) find their files with :func:`find_file` (plain or ``.gz``), read them with
:func:`read_lines` (bad bytes and truncated gzip name their line), and report bad records through a
:class:`ProblemLog`: an error naming file and line, or, with ``skip_invalid``, a count in one logged warning.
Corpora become Arrow datasets (:func:`arrow_dataset`, cached by :func:`file_fingerprint`), and ids are checked
with Arrow compute (:func:`unknown_ids`, :func:`check_unique_ids`), so millions of passages never become Python lists.
"""

import csv
import gzip
import json
import logging
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

if TYPE_CHECKING:
    from .corpus import CorpusSequence

logger = logging.getLogger(__name__)

DEFAULT_METRICS = ("ndcg@10", "mrr@10", "recall@10", "recall@100")
"""What BEIR reports, and what a dataset without metrics of its own is scored by."""


class DataFormatError(ValueError):
    """A data file is missing or malformed; the message names the file and the line."""


@dataclass
class RetrievalData:
    """One split of a retrieval dataset.

    corpus: ``datasets.Dataset`` with columns ``_id``, ``title``, ``text``.
    queries: ``datasets.Dataset`` with ``_id``, ``text``: the queries judged in this split.
    qrels: ``{query_id: {doc_id: grade}}``, as pytrec_eval takes them (empty when the split is
        judged by answers instead).
    answers: ``{query_id: [answer strings]}`` for open-domain QA (DPR's Natural Questions): a
        passage is relevant when it contains an answer (``answer_match`` "string" or "regex").
    negatives: hard negatives shipped with the data (DPR's ``hard_negative_ctxs``), ``{query_id: [doc ids]}``.
    metrics: what the dataset's papers report (e.g. MS MARCO: MRR@10, Recall@50/1000).
    """

    corpus: datasets.Dataset
    queries: datasets.Dataset
    qrels: dict[str, dict[str, int]]
    name: str
    split: str
    answers: dict[str, list[str]] | None = None
    answer_match: str = "string"
    negatives: dict[str, list[str]] | None = None
    metrics: tuple[str, ...] = DEFAULT_METRICS

    def passages(self) -> "CorpusSequence":
        """The corpus as ``{"title", "text"}`` dicts in corpus order (what the models encode), read lazily."""
        from .corpus import CorpusSequence

        return CorpusSequence(self.corpus)


def find_file(folder: Path, name: str, layout: str) -> Path:
    """``folder/name`` or ``folder/name.gz``, whichever exists; ``DataFormatError`` naming both otherwise.

    ``layout``: what the folder is (``"BEIR"``, ``"MS MARCO"``), for the message.
    """
    found = find_first(folder, [name])
    if found is None:
        raise DataFormatError(f"{folder / name}: file not found (nor {name}.gz) in the {layout} folder {folder}")
    return found


def find_first(folder: Path, names: list[str]) -> Path | None:
    """The first of ``names`` (each plain or ``.gz``) that exists in ``folder``, or None."""
    for name in names:
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    return None


def read_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of a UTF-8 text file, gzip or plain; bad bytes name their line."""
    opener = gzip.open if path.suffix == ".gz" else open
    number = 0
    try:
        with opener(path, "rb") as f:
            for number, raw in enumerate(f, start=1):
                try:
                    yield number, raw.decode("utf-8")
                except UnicodeDecodeError as err:
                    raise DataFormatError(
                        f"{path}:{number}: not valid UTF-8 ({err.reason} at byte {err.start})"
                    ) from None
    except (EOFError, gzip.BadGzipFile, zlib.error) as err:
        raise DataFormatError(f"{path}:{number + 1}: truncated or corrupt gzip file ({err})") from None


class ProblemLog:
    """Raise on the first bad record, or count and log skips when the caller allows skipping."""

    def __init__(self, path: Path, skip: bool):
        self.path, self.skip, self.count, self.first = path, skip, 0, None

    def __call__(self, line: int, message: str) -> None:
        where = f"{self.path}:{line}: {message}"
        if not self.skip:
            raise DataFormatError(where)
        self.count += 1
        self.first = self.first or where

    def report(self) -> None:
        if self.count:
            logger.warning("skipped %d invalid records in %s (first: %s)", self.count, self.path, self.first)


def _encodable(row: dict) -> bool:
    try:
        for value in row.values():
            value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def read_jsonl_records(path: Path, fields: tuple[str, ...], skip_invalid: bool = False) -> Iterator[dict]:
    """Validated records of a BEIR JSONL file: ``_id`` and the given text fields, all strings."""
    problems = ProblemLog(path, skip_invalid)
    seen: dict[str, int] = {}
    for number, line in read_lines(path):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            problems(number, f"invalid JSON ({err.msg} at column {err.colno})")
            continue
        except RecursionError:
            problems(number, "JSON nested too deeply")
            continue
        if not isinstance(record, dict) or "_id" not in record:
            problems(number, "record has no '_id' field")
            continue
        doc_id = record["_id"]
        if not isinstance(doc_id, str) or not doc_id.strip():
            problems(number, f"'_id' must be a non-empty string, got {json.dumps(doc_id)[:80]}")
            continue
        wrong = [f for f in fields if record.get(f) is not None and not isinstance(record[f], str)]
        if wrong:
            problems(number, f"id {doc_id!r}: {wrong[0]!r} must be a string, got {type(record[wrong[0]]).__name__}")
            continue
        row = {"_id": doc_id, **{field: record.get(field) or "" for field in fields}}
        if "\\ud" in line.lower() and not _encodable(row):  # a lone surrogate escape: no UTF-8 text has it
            problems(number, f"id {doc_id!r}: a lone UTF-16 surrogate (\\ud800-\\udfff) is not text")
            continue
        if not any(row[field].strip() for field in fields):
            problems(number, f"id {doc_id!r} has empty {' and '.join(fields)}")
            continue
        if doc_id in seen:
            problems(number, f"duplicate id {doc_id!r} (first on line {seen[doc_id]})")
            continue
        seen[doc_id] = number
        yield row
    problems.report()


def read_tsv_records(
    path: Path, columns: tuple[str, ...], skip_invalid: bool = False, *, header: str | None = None, quoted: bool = False
) -> Iterator[dict]:
    """Validated records of a tab-separated file: exactly ``len(columns)`` columns, a non-empty id and text.

    ``header``: the first cell of a header line to skip (e.g. ``"id"``); ``quoted``: cells may be in
    double quotes with ``""`` escapes (the csv module's dialect, as DPR writes ``psgs_w100.tsv``).
    """
    problems, first = ProblemLog(path, skip_invalid), True
    for number, line in read_lines(path):
        line = line.rstrip("\r\n").lstrip("\ufeff") if first else line.rstrip("\r\n")
        if not line.strip():
            continue
        try:
            cells = next(csv.reader([line], delimiter="\t")) if quoted else line.split("\t")
        except csv.Error as err:  # e.g. a cell over the csv module's 131,072-character limit
            problems(number, f"unreadable quoted cell ({err})")
            continue
        if header is not None and first and cells[0].strip().lstrip("\ufeff").lower() == header:
            first = False
            continue
        first = False
        if len(cells) != len(columns):
            problems(number, f"expected {len(columns)} tab-separated columns ({', '.join(columns)}), got {len(cells)}")
            continue
        row = dict(zip(columns, (cell.strip() for cell in cells), strict=True))
        if not row["_id"]:
            problems(number, "empty id")
            continue
        if not row["text"]:
            problems(number, f"id {row['_id']!r} has an empty text")
            continue
        yield row
    problems.report()


def check_unique_ids(dataset: datasets.Dataset, path: Path) -> None:
    """Raise naming the lines of the first duplicate ``_id`` of a TSV-read dataset (checked in Arrow: no Python set)."""
    ids = dataset.data.column("_id")
    if pc.count_distinct(ids).as_py() == len(ids):
        return
    counts = pc.value_counts(ids)
    duplicate = counts.field("values").filter(pc.greater(counts.field("counts"), 1))[0].as_py()
    lines = []
    for number, line in read_lines(path):  # the error path only: find where the id occurs
        if line.split("\t", 1)[0].strip().strip('"') == duplicate:
            lines.append(number)
    raise DataFormatError(f"{path}: duplicate id {duplicate!r} (lines {', '.join(map(str, lines[:2])) or '?'})")


def unknown_ids(ids: list[str], known: "pa.ChunkedArray | pa.Array") -> list[int]:
    """Positions in ``ids`` of the ids that ``known`` (an Arrow column, e.g. a corpus' ``_id``) lacks."""
    if not ids:
        return []
    found = pc.is_in(pa.array(ids, type=pa.string()), value_set=known)
    return [i for i, ok in enumerate(found.to_pylist()) if not ok]


def arrow_dataset(
    generator, gen_kwargs: dict, columns: tuple[str, ...], features: datasets.Features | None = None
) -> datasets.Dataset:
    """An Arrow dataset of string columns (or ``features``) from a record generator, cached by its arguments (file
    size and time among them); our DataFormatError comes out as itself, naming the file and line, and a file with
    no records says so (datasets reports 'Instruction "train" corresponds to no data!')."""
    try:
        return datasets.Dataset.from_generator(
            generator,
            gen_kwargs=gen_kwargs,
            features=features or datasets.Features({c: datasets.Value("string") for c in columns}),
        )
    except datasets.exceptions.DatasetGenerationError as err:
        if isinstance(err.__cause__, DataFormatError):
            raise err.__cause__ from None
        raise
    except ValueError as err:
        if "corresponds to no data" not in str(err):
            raise
        raise DataFormatError(f"{gen_kwargs.get('path', 'the file')}: holds no (valid) records") from None


def file_fingerprint(path: Path) -> tuple[str, int, int]:
    """What makes a cached dataset of ``path`` stale: its resolved path, size and modification time."""
    stat = path.stat()
    return str(path.resolve()), stat.st_size, stat.st_mtime_ns


def read_qrels(
    path: Path,
    query_ids: "pa.ChunkedArray | None" = None,
    doc_ids: "pa.ChunkedArray | None" = None,
    *,
    skip_invalid: bool = False,
) -> dict[str, dict[str, int]]:
    """Read a qrels TSV (``query-id corpus-id score``, optional header; TREC 4-column also accepted).

    ``query_ids`` / ``doc_ids``: Arrow columns of the known ids (a dataset's ``.data.column("_id")``);
    judgements naming other ids are errors (checked in bulk, so an 8.8M-passage corpus costs no Python set).
    """
    problems = ProblemLog(path, skip_invalid)
    rows: list[tuple[int, str, str, int]] = []
    for number, line in read_lines(path):
        columns = (line.lstrip("\ufeff") if number == 1 else line).split()
        if not columns:
            continue
        if number == 1 and columns[0].lower() in ("query-id", "query_id", "qid"):
            continue
        if len(columns) == 4:  # TREC: qid iteration docid grade
            columns = [columns[0], columns[2], columns[3]]
        if len(columns) != 3:
            problems(number, f"expected 3 columns (query-id, corpus-id, score), got {len(columns)}")
            continue
        qid, did, score = columns
        grade = _grade(score)
        if grade is None:
            problems(number, f"score {score!r} is not an integer grade (qrels grades are 0, 1, 2, ...)")
            continue
        rows.append((number, qid, did, grade))
    bad: dict[int, str] = {}
    for known, column, what in (
        (query_ids, 1, "query id {!r} is not in the queries file"),
        (doc_ids, 2, "corpus id {!r} is not in the corpus file"),
    ):
        if known is not None:
            for i in unknown_ids([row[column] for row in rows], known):
                bad.setdefault(i, what.format(rows[i][column]))
    qrels: dict[str, dict[str, int]] = {}
    first_line: dict[tuple[str, str], int] = {}
    for i, (number, qid, did, grade) in enumerate(rows):
        if i in bad:
            problems(number, bad[i])
            continue
        judged = qrels.setdefault(qid, {})
        if did in judged and judged[did] != grade:
            problems(number, f"({qid}, {did}) judged {grade} here and {judged[did]} on line {first_line[qid, did]}")
            continue
        first_line.setdefault((qid, did), number)
        judged[did] = grade
    problems.report()
    if not qrels:
        raise DataFormatError(f"{path}: no relevance judgements")
    return qrels


def _grade(score: str) -> int | None:
    """A qrels score as an integer grade ("2", "1.0"), or None for anything else ("0.5", "inf", "nan", "yes", and
    grades beyond a 32-bit integer: "1e300" is no judgement)."""
    try:
        value = float(score)
    except ValueError:
        return None
    return int(value) if value.is_integer() and abs(value) < 2**31 else None


def hold_out(data: RetrievalData, count: int, *, seed: int = 0) -> tuple[RetrievalData, RetrievalData]:
    """(the rest, ``count`` queries drawn at random with ``seed``): a dev split carved out of a training split, so
    that settings are chosen on queries the models never trained on and the test split stays unread."""
    total = len(data.queries)
    if not 0 < count < total:
        raise ValueError(
            f"--heldout_queries: must be between 1 and {total - 1} ({data.name}/{data.split} has {total}"
            f" queries), got {count}"
        )
    chosen = set(np.random.default_rng(seed).choice(total, size=count, replace=False).tolist())
    label = f"{data.split}[{count} held out, seed {seed}]"

    def part(keep: bool, split: str) -> RetrievalData:
        rows = [i for i in range(total) if (i in chosen) == keep]
        queries = data.queries.select(rows)
        ids = set(queries["_id"])
        return replace(
            data,
            queries=queries,
            split=split,
            qrels={q: judged for q, judged in data.qrels.items() if q in ids},
            answers=None if data.answers is None else {q: a for q, a in data.answers.items() if q in ids},
            negatives=None if data.negatives is None else {q: n for q, n in data.negatives.items() if q in ids},
        )

    return part(False, f"{data.split}[rest of {count} held out, seed {seed}]"), part(True, label)
