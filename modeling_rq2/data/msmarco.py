"""MS MARCO passage ranking from its official files, into the same structures as the BEIR reader.

A folder with the files as Microsoft distributes them (plain or ``.gz``):

    collection.tsv              pid <TAB> passage                       (8,841,823 passages)
    queries.{split}.tsv         qid <TAB> query       split: train, dev, dev.small, eval.small ...
    qrels.{split}.tsv           qid 0 pid 1           (TREC 4 columns)
    triples.train.small.tsv     query <TAB> positive passage <TAB> negative passage   (texts)
    qidpidtriples.train.full.2.tsv   qid <TAB> pid <TAB> pid                          (ids)

``load_msmarco(folder, "dev.small")`` gives a ``RetrievalData`` whose corpus is an Arrow dataset
(written once to the datasets cache, memory-mapped after) and whose metrics are the paper's:
MRR@10 and Recall@50/1000 as RocketQA's ``msmarco_eval`` computes them (a query counts for
Recall@k when a relevant passage is in its top k: ``success@k``). ``read_triples`` turns either
triples file into hard negatives per query id for training. The BEIR copy (``BeIR/msmarco``)
loads with ``load_beir``.
"""

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import datasets
import numpy as np

from .corpus import flat_corpus
from .records import (
    DataFormatError,
    ProblemLog,
    RetrievalData,
    arrow_dataset,
    check_unique_ids,
    file_fingerprint,
    find_file,
    find_first,
    read_lines,
    read_qrels,
    read_tsv_records,
    unknown_ids,
)

MSMARCO_METRICS = ("mrr@10", "success@50", "success@1000", "recall@1000")


def is_msmarco_folder(folder: Path) -> bool:
    """Whether ``folder`` holds MS MARCO's official ``collection.tsv``."""
    return find_first(folder, ["collection.tsv"]) is not None


def _generate_tsv(path: str, with_title: bool, skip_invalid: bool, fingerprint: tuple) -> Iterator[dict]:
    for row in read_tsv_records(Path(path), ("_id", "text"), skip_invalid):
        yield {"_id": row["_id"], "title": "", "text": row["text"]} if with_title else row


def read_tsv_dataset(path: Path, with_title: bool = False, skip_invalid: bool = False) -> datasets.Dataset:
    """``id <TAB> text`` lines as an Arrow dataset (``_id``, [``title`` = ""], ``text``), ids checked unique."""
    kwargs = {
        "path": str(path),
        "with_title": with_title,
        "skip_invalid": skip_invalid,
        "fingerprint": file_fingerprint(path),
    }
    dataset = arrow_dataset(_generate_tsv, kwargs, ("_id", "title", "text") if with_title else ("_id", "text"))
    check_unique_ids(dataset, path)
    return dataset


def load_msmarco(folder: str | os.PathLike, split: str = "dev.small", skip_invalid: bool = False) -> RetrievalData:
    """One split of MS MARCO passage ranking: the collection, the split's judged queries and its qrels."""
    folder = Path(folder)
    corpus = read_tsv_dataset(
        find_file(folder, "collection.tsv", "MS MARCO"), with_title=True, skip_invalid=skip_invalid
    )
    queries = read_tsv_dataset(find_file(folder, f"queries.{split}.tsv", "MS MARCO"), skip_invalid=skip_invalid)
    qrels = read_qrels(
        find_file(folder, f"qrels.{split}.tsv", "MS MARCO"),
        queries.data.column("_id"),
        corpus.data.column("_id"),
        skip_invalid=skip_invalid,
    )
    queries = queries.filter(lambda row: row["_id"] in qrels)
    return RetrievalData(
        corpus=corpus, queries=queries, qrels=qrels, name=folder.name, split=split, metrics=MSMARCO_METRICS
    )


def _text_key(text: str) -> int:
    """A 64-bit key of a whitespace-normalised text (to find a triple's passages in the collection)."""
    return int.from_bytes(hashlib.blake2b(" ".join(text.split()).encode(), digest_size=8).digest(), "little")


def _text_index(dataset: datasets.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Sorted text keys and the matching row numbers: 16 bytes a passage, no dict of texts."""
    keys = np.fromiter(
        (_text_key(t) for batch in dataset.iter(batch_size=10_000) for t in batch["text"]),
        dtype=np.uint64,
        count=len(dataset),
    )
    order = np.argsort(keys, kind="stable")
    return keys[order], order


def _find_rows(keys: np.ndarray, rows: np.ndarray, text: str) -> int | None:
    key = np.uint64(_text_key(text))
    at = int(np.searchsorted(keys, key))
    return int(rows[at]) if at < len(keys) and keys[at] == key else None


def read_triples(
    path: str | os.PathLike, data: RetrievalData, max_triples: int | None = None, *, skip_invalid: bool = False
) -> dict[str, list[str]]:
    """Hard negatives per query id from a triples file: the texts of ``triples.train.small.tsv`` (matched to
    ``data``'s queries and collection) or the ids of ``qidpidtriples.train.full.2.tsv``.

    A text or id not in ``data`` is an error naming the line (or a counted skip with ``skip_invalid``).
    ``max_triples`` reads only the first N lines (the full files hold 40M and 400M triples).
    """
    path = Path(path)
    problems = ProblemLog(path, skip_invalid)
    negatives: dict[str, dict[str, None]] = {}
    corpus = flat_corpus(data.corpus)  # row numbers below index its table
    query_column, doc_column = data.queries.data.column("_id"), corpus.data.column("_id")
    query_rows = doc_index = None
    id_queries: set[str] = set()  # the ids that id triples name: checked in bulk at the end
    id_passages: set[str] = set()
    for number, line in read_lines(path):
        if max_triples is not None and number > max_triples:
            break
        cells = line.rstrip("\r\n").split("\t")
        if not line.strip():
            continue
        if len(cells) != 3:
            problems(number, f"expected 3 tab-separated columns (query, positive, negative), got {len(cells)}")
            continue
        if all(cell.strip().isdigit() for cell in cells):  # qid pid pid
            qid, negative = cells[0].strip(), cells[2].strip()
            id_queries.add(qid)
            id_passages.add(negative)
        else:
            if query_rows is None:  # the first text triple: index the queries and the collection once
                query_rows = {
                    " ".join(t.split()): q for q, t in zip(data.queries["_id"], data.queries["text"], strict=True)
                }
                doc_index = _text_index(corpus)
            qid = query_rows.get(" ".join(cells[0].split()))
            if qid is None:
                problems(number, f"query {cells[0][:60]!r} is not a query of {data.name}/{data.split}")
                continue
            row = _find_rows(*doc_index, cells[2])
            if row is None:
                problems(number, f"negative passage {cells[2][:60]!r} is not in the collection")
                continue
            negative = doc_column[row].as_py()
        negatives.setdefault(qid, {})[negative] = None
    problems.report()
    if id_queries:  # id triples: check every id once, in bulk
        for ids, column, what in (
            (sorted(id_queries), query_column, "query id"),
            (sorted(id_passages), doc_column, "passage id"),
        ):
            missing = unknown_ids(ids, column)
            if missing:
                raise DataFormatError(
                    f"{path}: {len(missing)} {what}s are not in {data.name}/{data.split}, e.g. {ids[missing[0]]!r}"
                )
    if not negatives:
        raise DataFormatError(f"{path}: no triples read")
    return {qid: list(docs) for qid, docs in negatives.items()}
