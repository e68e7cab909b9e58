"""Natural Questions (and DPR's other open-domain QA sets) in DPR's formats, into ``RetrievalData``.

A folder holding DPR's files (plain or ``.gz``; the names DPR's download script uses are accepted):

    psgs_w100.tsv                      id <TAB> text <TAB> title, a header line, csv quoting (21,015,324 passages)
    {split}.json | nq-{split}.json | biencoder-nq-{split}.json    (or .jsonl: one question a line)
        [{"question", "answers": [...], "positive_ctxs": [ctx], "negative_ctxs": [ctx], "hard_negative_ctxs": [ctx]}]
        ctx = {"title", "text", "passage_id" | "psg_id" | "id"}: ids of psgs_w100.tsv
    {split}.qa.csv | nq-{split}.qa.csv | nq-{split}.csv           question <TAB> ["answer", ...]

``load_dpr(folder, "train")`` reads the JSON file (questions, answers, positives as qrels, hard
negatives for training lists); ``load_dpr(folder, "test")`` the question/answer file (answers only:
NQ test is judged by answer matching, ``modeling_rq2.evaluation.answers``). The paper's metrics are the share of
questions with an answer in the top 5/20/100 (``success@k`` over answer judgements) and MRR@10.
The JSON files are read as a stream, one question at a time, never as one document.
"""

import ast
import codecs
import csv
import gzip
import json
import logging
import os
import re
import zlib
from collections.abc import Iterator
from pathlib import Path

import datasets

from .records import (
    DataFormatError,
    ProblemLog,
    RetrievalData,
    arrow_dataset,
    check_unique_ids,
    file_fingerprint,
    find_first,
    read_lines,
    read_tsv_records,
    unknown_ids,
)

NQ_METRICS = ("success@5", "success@20", "success@100", "mrr@10")
CORPUS_NAMES = ("psgs_w100.tsv",)
_ID_KEYS = ("passage_id", "psg_id", "id")

logger = logging.getLogger(__name__)


def is_dpr_folder(folder: Path) -> bool:
    """Whether ``folder`` holds DPR's Wikipedia passages (``psgs_w100.tsv``)."""
    return find_first(folder, list(CORPUS_NAMES)) is not None


def _generate_passages(path: str, skip_invalid: bool, fingerprint: tuple) -> Iterator[dict]:
    yield from read_tsv_records(Path(path), ("_id", "text", "title"), skip_invalid, header="id", quoted=True)


def read_passages(path: str | os.PathLike, skip_invalid: bool = False) -> datasets.Dataset:
    """``psgs_w100.tsv`` as an Arrow dataset (``_id``, ``title``, ``text``), cached and memory-mapped, ids unique."""
    path = Path(path)
    kwargs = {"path": str(path), "skip_invalid": skip_invalid, "fingerprint": file_fingerprint(path)}
    dataset = arrow_dataset(_generate_passages, kwargs, ("_id", "text", "title")).select_columns(
        ["_id", "title", "text"]
    )
    check_unique_ids(dataset, path)
    return dataset


_SEPARATORS = re.compile(r"[ \t\r\n,]*")


def iter_json_records(path: Path, block_size: int = 1 << 20) -> Iterator[tuple[int, object]]:
    """(line, record) of a JSON array file or a JSON-lines file, decoded one record at a time from
    blocks of ``block_size`` bytes (DPR's NQ training file is several GB: never one document).

    Records are decoded in place (``raw_decode`` at a position): the block is only copied when the next one
    is read, so millions of small records cost no more than a few large ones."""
    text_decoder, decoder = codecs.getincrementaldecoder("utf-8")(), json.JSONDecoder()
    buffer, pos, line, started, eof = "", 0, 1, False, False
    with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as f:
        while True:
            skipped = _SEPARATORS.match(buffer, pos).end()
            line += buffer.count("\n", pos, skipped)
            pos = skipped
            if buffer.startswith("[", pos) and not started:
                pos, started = pos + 1, True
                continue
            if buffer.startswith("]", pos) and started:
                if buffer[pos + 1 :].strip() or f.read(1).strip():
                    raise DataFormatError(f"{path}:{line}: data after the closing ']'")
                return
            if pos < len(buffer):
                try:
                    record, end = decoder.raw_decode(buffer, pos)
                    complete = end < len(buffer) or eof
                except json.JSONDecodeError as err:
                    if eof or len(buffer) - pos > 256 * block_size:  # no question is that long: the file is broken
                        raise DataFormatError(
                            f"{path}:{line + buffer.count(chr(10), pos, err.pos)}: invalid JSON ({err.msg})"
                        ) from None
                    complete = False
                if complete:
                    if not started and not isinstance(record, dict):
                        raise DataFormatError(
                            f"{path}:{line}: expected a JSON array of questions or one question object a line"
                        )
                    yield line, record
                    line += buffer.count("\n", pos, end)
                    pos = end
                    continue
            if eof:
                if started:
                    raise DataFormatError(f"{path}:{line}: the JSON array is not closed (truncated file?)")
                return
            try:
                raw = f.read(block_size)
            except (EOFError, gzip.BadGzipFile, zlib.error) as err:
                raise DataFormatError(
                    f"{path}:{line + buffer.count(chr(10), pos)}: truncated or corrupt gzip file ({err})"
                ) from None
            eof = not raw
            try:
                buffer, pos = buffer[pos:] + text_decoder.decode(raw, final=eof), 0
            except UnicodeDecodeError as err:
                raise DataFormatError(
                    f"{path}:{line + buffer.count(chr(10), pos)}: not valid UTF-8 ({err.reason})"
                ) from None


def _ctx_ids(record: dict, key: str, where: str) -> list[str]:
    ctxs = record.get(key) or []
    if not isinstance(ctxs, list):
        raise DataFormatError(f"{where}: {key} must be a list of contexts")
    ids = []
    for ctx in ctxs:
        found = next((ctx[k] for k in _ID_KEYS if isinstance(ctx, dict) and ctx.get(k) not in (None, "")), None)
        if found is None:
            raise DataFormatError(f"{where}: a context of {key} has no passage id ({' / '.join(_ID_KEYS)})")
        ids.append(str(found))
    return ids


def read_dpr_json(path: str | os.PathLike, split: str, skip_invalid: bool = False) -> dict:
    """Questions of a DPR retriever-training file: query ids (``{split}-{n}``), texts, answers, positives and
    hard negatives."""
    path = Path(path)
    problems = ProblemLog(path, skip_invalid)
    out: dict = {"ids": [], "texts": [], "answers": {}, "positives": {}, "negatives": {}, "lines": {}}
    for number, (line, record) in enumerate(iter_json_records(path)):
        where = f"{path}:{line}"
        question = record.get("question") if isinstance(record, dict) else None
        if not isinstance(question, str) or not question.strip():
            problems(line, "record has no question")
            continue
        answers = record.get("answers", [])
        if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
            problems(line, "answers must be a list of strings")
            continue
        try:
            positives = _ctx_ids(record, "positive_ctxs", where)
            negatives = _ctx_ids(record, "hard_negative_ctxs", where) or _ctx_ids(record, "negative_ctxs", where)
        except DataFormatError as err:
            problems(line, str(err).split(": ", 1)[1])
            continue
        qid = f"{split}-{number}"
        out["ids"].append(qid)
        out["texts"].append(question.strip())
        out["answers"][qid], out["positives"][qid], out["negatives"][qid], out["lines"][qid] = (
            answers,
            positives,
            negatives,
            line,
        )
    problems.report()
    if not out["ids"]:
        raise DataFormatError(f"{path}: no questions read")
    return out


def load_dpr(folder: str | os.PathLike, split: str = "test", skip_invalid: bool = False) -> RetrievalData:
    """One split of a DPR-format dataset over ``psgs_w100.tsv``: a training file when the split has one
    (qrels from ``positive_ctxs``, negatives from ``hard_negative_ctxs``), else its question/answer file."""
    folder = Path(folder)
    corpus_path = find_first(folder, list(CORPUS_NAMES))
    if corpus_path is None:
        raise DataFormatError(f"{folder / CORPUS_NAMES[0]}: file not found in the DPR folder {folder}")
    corpus = read_passages(corpus_path, skip_invalid)
    json_names = [f"{p}{split}.{e}" for p in ("", "nq-", "biencoder-nq-") for e in ("json", "jsonl")]
    qa_names = [f"{split}.qa.csv", f"nq-{split}.qa.csv", f"nq-{split}.csv", f"qas/nq-{split}.csv"]
    source = find_first(folder, json_names)
    if source is not None:
        read = read_dpr_json(source, split, skip_invalid)
        ids, texts, answers = read["ids"], read["texts"], read["answers"]
        _check_ctx_ids(source, read, corpus, skip_invalid)
        qrels = {q: {d: 1 for d in docs} for q, docs in read["positives"].items() if docs}
        negatives = read["negatives"]
    else:
        source = find_first(folder, qa_names)
        if source is None:
            raise DataFormatError(
                f"{folder}: no questions for split {split!r} (looked for {', '.join(json_names + qa_names)})"
            )
        ids, texts, answer_lists = read_qa_file(source)
        ids = [f"{split}-{i}" for i in ids]
        answers, qrels, negatives = dict(zip(ids, answer_lists, strict=True)), {}, None
    queries = datasets.Dataset.from_dict({"_id": ids, "text": texts})
    return RetrievalData(
        corpus=corpus,
        queries=queries,
        qrels=qrels,
        name=folder.name,
        split=split,
        answers=answers,
        negatives=negatives,
        metrics=NQ_METRICS,
    )


def _check_ctx_ids(path: Path, read: dict, corpus: datasets.Dataset, skip_invalid: bool = False) -> None:
    """Every context id of the questions must be a passage of the corpus (one Arrow lookup for all);
    ``skip_invalid`` drops the contexts of passages the corpus lacks (e.g. skipped as invalid) instead."""
    owners = [(key, q, d) for key in ("positives", "negatives") for q, docs in read[key].items() for d in docs]
    missing = unknown_ids([d for _, _, d in owners], corpus.data.column("_id"))
    if not missing:
        return
    key, qid, doc = owners[missing[0]]
    where = f"{path}:{read['lines'][qid]}: passage id {doc!r} is not in the corpus"
    if not skip_invalid:
        raise DataFormatError(f"{where} ({len(missing)} context ids are not)")
    dropped = {(owners[i][0], owners[i][1], owners[i][2]) for i in missing}
    for key in ("positives", "negatives"):
        for q, docs in read[key].items():
            read[key][q] = [d for d in docs if (key, q, d) not in dropped]
    logger.warning("dropped %d contexts whose passage is not in the corpus (first: %s)", len(missing), where)


def read_qa_file(path: str | Path) -> tuple[list[str], list[str], list[list[str]]]:
    """Read DPR's ``*.qa.csv`` (``question<TAB>["answer", ...]``, plain or .gz).

    Returns (query ids, questions, answer lists); the ids are "0", "1", ... in record order
    (blank lines skipped), the question indices DPR's results use. Fields are split by
    ``csv.reader`` with a tab delimiter, as DPR reads them (so a question in double quotes loses
    its quotes, as in DPR); the answers are a Python list literal, read with ``ast.literal_eval``
    rather than DPR's ``eval``. A malformed line raises :class:`DataFormatError` naming file and line.
    """
    path = Path(path)
    query_ids: list[str] = []
    questions: list[str] = []
    answer_lists: list[list[str]] = []
    for number, line in read_lines(path):
        if not line.strip():
            continue
        try:
            row = next(csv.reader([line], delimiter="\t"))
        except csv.Error as err:  # e.g. a cell over the csv module's 131,072-character limit
            raise DataFormatError(f"{path}:{number}: unreadable quoted cell ({err})") from None
        if len(row) != 2:
            raise DataFormatError(
                f"{path}:{number}: expected 2 tab-separated columns (question, answers), got {len(row)}"
            )
        question, answer_field = row
        if not question.strip():
            raise DataFormatError(f"{path}:{number}: empty question")
        try:
            answers = ast.literal_eval(answer_field)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            raise DataFormatError(
                f"{path}:{number}: answers {answer_field[:200]!r} are not a Python list literal"
            ) from None
        if not isinstance(answers, list) or not all(isinstance(answer, str) for answer in answers):
            raise DataFormatError(f"{path}:{number}: answers {answer_field[:200]!r} are not a list of strings")
        if not answers:
            raise DataFormatError(f"{path}:{number}: the question has no answers")
        query_ids.append(str(len(questions)))
        questions.append(question)
        answer_lists.append(answers)
    if not questions:
        raise DataFormatError(f"{path}: holds no questions (an empty file?)")
    return query_ids, questions, answer_lists
