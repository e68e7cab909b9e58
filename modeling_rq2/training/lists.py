"""Listwise training instances: each query with its positives and a pool of negatives.

Everything that turns data into instances lives here: BM25 negatives, the data's own (DPR), a triples file's
(MS MARCO), saved instances (augmentation's output), and the per-epoch lists sampled from them.

An instance is a row ``{query_id, query, positives: [doc ids], negatives: [doc ids]}`` in a
``datasets.Dataset``. Negatives come from BM25 (``bm25_negatives``), from a retriever, or from
hybrid data augmentation; all of them give this same format. Every epoch, each query gets a list
of one positive (first) and up to m-1 negatives, sampled with a seed that depends only on
(seed, epoch, query index), so a resumed or multi-process run sees exactly the same lists.
"""

import json
import logging
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

import datasets
import numpy as np
import pyarrow.compute as pc
from torch.utils.data import Dataset

from ..data import DataFormatError, RetrievalData
from ..data.corpus import lookup_passages
from ..data.msmarco import read_triples
from ..data.records import arrow_dataset, file_fingerprint, read_lines
from ..models.modeling_rq2 import Passage, title_and_text
from ..retrieval.bm25 import bm25_search
from .arguments import DataArguments, check_setting

logger = logging.getLogger(__name__)

INSTANCE_FEATURES = {
    "query_id": datasets.Value("string"),
    "query": datasets.Value("string"),
    "positives": datasets.Sequence(datasets.Value("string")),
    "negatives": datasets.Sequence(datasets.Value("string")),
}


def bm25_negatives(data: RetrievalData, top_n: int = 100, *, k1: float = 1.5, b: float = 0.75) -> dict[str, list[str]]:
    """Top-n BM25 doc ids per query of ``data``, judged positives excluded."""
    depth = top_n + max((len(p) for p in data.qrels.values()), default=0)
    return {
        qid: [doc for doc, _ in hits if data.qrels.get(qid, {}).get(doc, 0) <= 0][:top_n]
        for qid, hits in bm25_search(data, depth, k1=k1, b=b).items()
    }


def build_instances(
    data: RetrievalData, negatives: dict[str, list[str]], relevance_threshold: int = 1
) -> datasets.Dataset:
    """One row per query with at least one positive; queries without one are skipped, counted and logged."""
    rows, skipped = [], 0
    for qid, text in zip(data.queries["_id"], data.queries["text"], strict=True):
        judged = data.qrels.get(qid, {})
        positives = [doc for doc, grade in judged.items() if grade >= relevance_threshold]
        if not positives:
            skipped += 1
            continue
        negs = [doc for doc in negatives.get(qid, []) if judged.get(doc, 0) < relevance_threshold]
        rows.append({"query_id": qid, "query": text, "positives": positives, "negatives": negs})
    if skipped:
        logger.warning("skipped %d queries of %s/%s with no positive passage", skipped, data.name, data.split)
    if not rows:
        raise ValueError(f"{data.name}/{data.split}: no query has a positive passage; nothing to train on")
    return datasets.Dataset.from_list(rows, features=datasets.Features(INSTANCE_FEATURES))


def hard_negatives(train: RetrievalData, data_args: DataArguments) -> dict[str, list[str]]:
    """Hard negatives per query: the data's own, a triples file's, or BM25's top ``negatives_top_n``."""
    source = data_args.negatives
    if source == "data" or (source == "auto" and train.negatives is not None):
        check_setting(
            train.negatives is not None,
            "negatives",
            f"{train.name}/{train.split} ships no hard negatives: use bm25 or a triples file",
        )
        return train.negatives
    if source not in ("auto", "bm25"):
        check_setting(Path(source).is_file(), "negatives", f"{source}: not bm25, data, auto or a triples file")
        return read_triples(source, train, data_args.max_triples)
    check_setting(
        data_args.negatives_top_n < len(train.corpus),
        "negatives_top_n",
        f"must be below the corpus size {len(train.corpus)}, got {data_args.negatives_top_n}",
    )
    return bm25_negatives(train, data_args.negatives_top_n)


def training_instances(train: RetrievalData, data_args: DataArguments) -> datasets.Dataset:
    """The instances a run trains on: saved ones (``train_instances``) or built from ``hard_negatives``, then
    those of the first ``max_train_queries`` queries."""
    if data_args.train_instances:
        instances = load_instances(data_args.train_instances)
    else:
        instances = build_instances(train, hard_negatives(train, data_args))
    if data_args.max_train_queries:
        instances = first_queries(instances, data_args.max_train_queries)
    return instances


def first_queries(instances: datasets.Dataset, count: int) -> datasets.Dataset:
    """Every row of the first ``count`` queries (augmented instances hold an undenoised and a denoised row a query)."""
    query_ids = instances["query_id"]
    wanted = set(list(dict.fromkeys(query_ids))[:count])
    return instances.select([i for i, qid in enumerate(query_ids) if qid in wanted])


def load_instances(path: str | os.PathLike) -> datasets.Dataset:
    """Saved instances: a ``save_to_disk`` folder, or a JSONL file of ``{query_id, query, positives, negatives}``."""
    path = Path(path)
    if path.is_dir():
        instances = datasets.load_from_disk(str(path))
    elif path.is_file():
        features = datasets.Features({**INSTANCE_FEATURES, "kind": datasets.Value("string")})
        kwargs = {"path": str(path), "fingerprint": file_fingerprint(path)}
        instances = arrow_dataset(_instance_records, kwargs, tuple(features), features)
    else:
        raise FileNotFoundError(f"{path}: no saved instances (a datasets folder or a JSONL file)")
    missing = set(INSTANCE_FEATURES) - set(instances.column_names)
    if missing:
        raise ValueError(f"{path}: instances lack the columns {sorted(missing)} (have {instances.column_names})")
    for number, row in enumerate(instances, start=1):
        if not row["positives"]:
            raise ValueError(f"{path}: instance {number} (query {row['query_id']!r}) has no positive")
    return instances


def _instance_records(path: str, fingerprint: tuple) -> Iterator[dict]:
    """Validated rows of an instances JSONL file; a bad line raises naming file and line (the json loader of
    datasets gave a trace of its own)."""
    for number, line in read_lines(Path(path)):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataFormatError(f"{where}: invalid JSON ({err.msg} at column {err.colno})") from None
        except RecursionError:
            raise DataFormatError(f"{where}: JSON nested too deeply") from None
        if not isinstance(record, dict):
            raise DataFormatError(f"{where}: an instance is a JSON object, got {type(record).__name__}")
        for key in ("query_id", "query"):
            if not isinstance(record.get(key), str) or not record[key].strip():
                raise DataFormatError(
                    f"{where}: {key!r} must be a non-empty string, got {json.dumps(record.get(key))[:80]}"
                )
        for key in ("positives", "negatives"):
            ids = record.get(key)
            if not isinstance(ids, list) or not all(isinstance(d, str) and d for d in ids):
                raise DataFormatError(
                    f"{where}: {key!r} must be a list of doc ids (strings), got {json.dumps(ids)[:80]}"
                )
        yield {**{key: record[key] for key in INSTANCE_FEATURES}, "kind": record.get("kind")}


class ListwiseDataset(Dataset):
    """Per-epoch sampled lists: item i is (query, [positive, negative_1, ..., negative_{m-1}]).

    A query with fewer than m-1 negatives gets a shorter list; the collator masks the rest.
    """

    def __init__(
        self,
        instances: datasets.Dataset,
        passages: Mapping[str, Passage],
        list_size: int,
        seed: int = 42,
        *,
        short_lists: str = "pad",
    ):
        if list_size < 1:
            raise ValueError(f"list_size must be >= 1, got {list_size}")
        missing = {doc for row in instances for doc in (*row["positives"], *row["negatives"]) if doc not in passages}
        if missing:
            raise ValueError(
                f"{len(missing)} doc ids of the training lists are not in the corpus, e.g. {sorted(missing)[:3]}"
            )
        self.instances, self.passages, self.list_size, self.seed = instances, passages, list_size, seed
        self.epoch = 0
        # negatives per instance, read in Arrow through the dataset's row selection (``select`` keeps the table)
        self.negative_counts = pc.list_value_length(instances.with_format("arrow")["negatives"]).to_numpy(
            zero_copy_only=False
        )
        self._check_lengths(short_lists)

    def _check_lengths(self, short_lists: str) -> None:
        """Lists shorter than ``list_size`` (too few negatives): refused (``error``) or counted and logged (``pad``)."""
        negatives = self.negative_counts
        short = int((negatives < self.list_size - 1).sum())
        if not short:
            return
        lengths = self.list_lengths()
        message = (
            f"{short} of {len(negatives)} queries have fewer than the {self.list_size - 1} negatives a list of "
            f"{self.list_size} needs (lists hold {lengths['mean']:g} passages on average, at least {lengths['min']}: "
            f"{lengths['padding']:.1%} of the list slots padding)"
        )
        if short_lists == "error":
            raise ValueError(
                f"--short_lists error: {message}; draw negatives from deeper lists (--negatives_top_n, "
                "--augment_top_n), lower --list_size, or accept shorter lists with --short_lists pad"
            )
        logger.warning("%s; padded and masked (--short_lists pad)", message)

    def set_epoch(self, epoch: int) -> None:
        """Lists are re-sampled per epoch (deterministically)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.instances)

    def list_lengths(self) -> dict[str, float]:
        """What the lists hold, as opposed to ``list_size``: mean / min / max passages a list, and the share of the
        batch's list slots that are padding (queries with fewer than ``list_size - 1`` negatives)."""
        lengths = 1 + np.minimum(self.list_size - 1, self.negative_counts)
        return {
            "size": self.list_size,
            "mean": round(float(lengths.mean()), 3),
            "min": int(lengths.min()),
            "max": int(lengths.max()),
            "padding": round(float(1 - lengths.mean() / self.list_size), 4),
        }

    def examples(self, count: int = 3, *, negatives: int = 2) -> list[dict]:
        """The first ``count`` lists of epoch 0 as the cards show them: the query, its positive and ``negatives``
        negatives, as ``{"title", "text"}`` passages (what a reader needs to see what the model learnt from)."""
        rows = []
        for index in range(min(count, len(self))):
            row = self.instances[index]
            passages = lookup_passages(self.passages, self._sample(index, row, epoch=0)[: 1 + negatives])
            title_text = [dict(zip(("title", "text"), title_and_text(p), strict=True)) for p in passages]
            rows.append({"query": row["query"], "positive": title_text[0], "negatives": title_text[1:]})
        return rows

    def sample(self, index: int, row: dict | None = None) -> list[str]:
        """The doc ids of item ``index``'s list this epoch: positive first (``row``: the instance, if already read)."""
        return self._sample(index, row if row is not None else self.instances[index], epoch=self.epoch)

    def _sample(self, index: int, row: dict, *, epoch: int) -> list[str]:
        rng = np.random.default_rng([self.seed, epoch, index])
        positive = row["positives"][rng.integers(len(row["positives"]))]
        negatives = row["negatives"]
        count = min(self.list_size - 1, len(negatives))
        chosen = rng.choice(len(negatives), size=count, replace=False) if count else []
        return [positive, *(negatives[i] for i in chosen)]

    def __getitem__(self, index: int) -> dict:
        row = self.instances[index]
        doc_ids = self.sample(index, row)
        return {
            "query": row["query"],
            "passages": lookup_passages(self.passages, doc_ids),
            "doc_ids": doc_ids,
            "positives": row["positives"],
        }
