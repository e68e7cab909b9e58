"""Hybrid data augmentation (RocketQAv2 section 3.3): training lists mined and denoised by the models.

For each training query the retriever fetches its top-n passages and the re-ranker scores them.
- Undenoised instances: the gold positives, and every retrieved passage that is not gold as a
  negative (lists sample from them at random each epoch).
- Denoised instances: a retrieved passage stays a negative only if the re-ranker's probability of
  relevance is below ``negative_below`` (likely false negatives are removed), and unlabelled
  passages above ``positive_above`` are added as positives (RocketQA: top 50-100, < 0.1, > 0.9).

The re-ranker's probability: ``sigmoid`` of its logit for a pointwise-trained cross-encoder; for a
listwise-trained one (ours: its logits have no fixed offset) ``platt`` fits sigmoid(a * logit + b)
to the gold labels of the scored pairs first, so the thresholds keep their meaning. The result is
the ``{query_id, query, positives, negatives}`` dataset of ``instances`` plus a ``kind`` column,
saved with ``save_to_disk`` (``--train_instances`` reads it) and a report of what changed.
"""

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import datasets
import numpy as np

from ..data import RetrievalData
from ..data.corpus import lookup_passages
from ..models.modeling_rq2 import RQ2Reranker, RQ2Retriever
from ..retrieval.index import DenseIndex, build_index
from .arguments import SETTING_CHOICES, MiningArguments
from .lists import INSTANCE_FEATURES

logger = logging.getLogger(__name__)

REPORT_FILE = "augmentation_report.json"


def platt_scale(
    logits: np.ndarray, labels: np.ndarray, *, iterations: int = 50, l2: float = 1e-4
) -> tuple[float, float]:
    """(a, b) of sigmoid(a * logit + b) fitted to 0/1 labels by Newton's method (logistic regression)."""
    logits, labels = np.asarray(logits, np.float64), np.asarray(labels, np.float64)
    if labels.min() == labels.max():
        raise ValueError("Platt scaling needs both relevant and non-relevant scored pairs")
    x = np.stack([logits, np.ones_like(logits)], axis=1)
    w = np.zeros(2)
    for _ in range(iterations):
        p = 1 / (1 + np.exp(-(x @ w)))
        gradient = x.T @ (p - labels) + l2 * w
        hessian = (x * (p * (1 - p))[:, None]).T @ x + l2 * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if np.abs(step).max() < 1e-10:
            break
    return float(w[0]), float(w[1])


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


def _probabilities(
    queries: list,
    retrieved: list,
    corpus,
    reranker: RQ2Reranker,
    args: MiningArguments,
    show_progress_bar: bool | None,
) -> tuple[dict[tuple[int, str], float], tuple[float, float]]:
    """The re-ranker's probability of relevance of every retrieved pair ({(query position, doc id): p}) and the
    Platt (a, b) behind it; the gold positives are scored too, as the labels Platt scaling fits."""
    texts, owners = [], []
    for i, ((_, text, gold), hits) in enumerate(zip(queries, retrieved, strict=True)):
        docs = [doc for doc, _ in hits] + [doc for doc in gold if doc not in {d for d, _ in hits}]
        texts += [text] * len(docs)
        owners += [(i, doc, doc in gold) for doc in docs]
    pairs = list(zip(texts, lookup_passages(corpus.by_id(), [doc for _, doc, _ in owners]), strict=True))
    logits = reranker.score_pairs(pairs, args.augment_batch_size, show_progress_bar)
    labels = np.array([is_gold for _, _, is_gold in owners], dtype=np.float64)
    a, b = platt_scale(logits, labels) if args.probability == "platt" else (1.0, 0.0)
    probabilities = _sigmoid(a * logits.astype(np.float64) + b)
    return {(i, doc): p for (i, doc, _), p in zip(owners, probabilities, strict=True)}, (a, b)


def augment_instances(
    data: RetrievalData,
    retriever: RQ2Retriever,
    reranker: RQ2Reranker | None,
    args: MiningArguments | None = None,
    *,
    index: DenseIndex | None = None,
    relevance_threshold: int = 1,
    show_progress_bar: bool | None = None,
) -> tuple[datasets.Dataset, dict]:
    """Undenoised and/or denoised instances for every query of ``data`` with a positive; and a report.

    ``index``: the corpus already encoded by ``retriever`` (encoded here otherwise). ``reranker`` may be None for
    ``instance_mix undenoised``, which never consults it (the report then has no denoising counts).
    """
    args = args or MiningArguments()
    corpus = data.passages()
    corpus_ids = corpus.doc_ids()
    if index is None:
        index = build_index(
            retriever, corpus, corpus_ids, batch_size=args.augment_batch_size, show_progress_bar=show_progress_bar
        )
    queries, skipped = _queries_with_positives(data, relevance_threshold)
    top_n = min(args.augment_top_n, len(corpus_ids))
    retrieved = index.search(retriever.encode_queries([text for _, text, _ in queries], args.augment_batch_size), top_n)

    # one re-ranker pass over every retrieved pair, plus the gold positives (they calibrate the probability);
    # undenoised instances alone need no re-ranker, so it is not run for them
    denoise = args.instance_mix != "undenoised"
    if denoise and reranker is None:
        raise ValueError(f"--instance_mix {args.instance_mix}: denoising needs a re-ranker")
    probability, (a, b) = (
        _probabilities(queries, retrieved, corpus, reranker, args, show_progress_bar) if denoise else ({}, (None, None))
    )
    rows, counts = _instance_rows(queries, retrieved, probability, args, denoise=denoise)
    features = datasets.Features({**INSTANCE_FEATURES, "kind": datasets.Value("string")})
    instances = datasets.Dataset.from_list(rows, features=features)
    report = {
        "dataset": data.name,
        "split": data.split,
        "queries": len(queries),
        "queries_without_positive_skipped": skipped,
        "top_n": top_n,
        "arguments": asdict(args),
        "platt": {"a": a, "b": b} if denoise and args.probability == "platt" else None,
        **counts,
        "instances": {kind: sum(r["kind"] == kind for r in rows) for kind in ("undenoised", "denoised")},
    }
    logger.info(
        "augmentation: %d queries, %d retrieved negatives, %s removed as likely false negatives, %s positives added",
        len(queries),
        counts["negatives_retrieved"],
        counts.get("negatives_removed", "none"),
        counts.get("positives_added", "none"),
    )
    return instances, report


def _queries_with_positives(data: RetrievalData, relevance_threshold: int) -> tuple[list[tuple], int]:
    """(query id, text, gold doc ids) of every query with a positive, and how many had none (skipped)."""
    queries = [
        (qid, text, [d for d, g in data.qrels.get(qid, {}).items() if g >= relevance_threshold])
        for qid, text in zip(data.queries["_id"], data.queries["text"], strict=True)
    ]
    kept = [q for q in queries if q[2]]
    if not kept:
        raise ValueError(f"{data.name}/{data.split}: no query has a positive passage; nothing to augment")
    return kept, len(queries) - len(kept)


def _instance_rows(
    queries: list[tuple], retrieved: list, probability: dict, args: MiningArguments, *, denoise: bool
) -> tuple[list[dict], dict[str, int]]:
    """The instances of each query (undenoised: every retrieved non-gold passage a negative; denoised: the
    re-ranker's likely false negatives removed, its confident positives added) and the counts of what changed."""
    rows = []
    counts = {"negatives_retrieved": 0, "gold_retrieved": 0}
    if denoise:
        counts.update(negatives_removed=0, positives_added=0, denoised_without_negatives=0)
    for i, ((qid, text, gold), hits) in enumerate(zip(queries, retrieved, strict=True)):
        unlabelled = [doc for doc, _ in hits if doc not in gold]
        counts["gold_retrieved"] += len(hits) - len(unlabelled)
        counts["negatives_retrieved"] += len(unlabelled)
        row = {"query_id": qid, "query": text}
        if args.instance_mix in ("both", "undenoised") and unlabelled:
            rows.append({**row, "positives": gold, "negatives": unlabelled, "kind": "undenoised"})
        if denoise:
            clean = [doc for doc in unlabelled if probability[i, doc] < args.negative_below]
            added = [doc for doc in unlabelled if probability[i, doc] > args.positive_above]
            counts["negatives_removed"] += len(unlabelled) - len(clean)
            counts["positives_added"] += len(added)
            if clean:
                rows.append({**row, "positives": gold + added, "negatives": clean, "kind": "denoised"})
            else:
                counts["denoised_without_negatives"] += 1
    if not rows:
        raise ValueError(
            "augmentation left no instance with a negative: "
            "lower --negative_below's strictness or raise --augment_top_n"
        )
    return rows, counts


def save_instances(instances: datasets.Dataset, path: str | os.PathLike, report: dict | None = None) -> Path:
    """Save what ``--train_instances`` reads: a ``save_to_disk`` folder, or a JSONL file when ``path`` ends in
    ``.jsonl``; the report goes beside it (``augmentation_report.json`` inside the folder, or ``PATH.report.json``)."""
    path = Path(path)
    if path.suffix == ".jsonl":
        path.parent.mkdir(parents=True, exist_ok=True)
        instances.to_json(str(path), lines=True)
        report_path = path.with_name(f"{path.name}.report.json")
    else:
        instances.save_to_disk(str(path))
        report_path = path / REPORT_FILE
    if report is not None:  # written last: its presence marks a complete augmentation
        report_path.write_text(json.dumps(report, indent=2), encoding="utf-8")
    return path


@dataclass
class AugmentCommandArguments:
    """``python -m modeling_rq2.training.augmentation``: mine and denoise lists with given models."""

    retriever: str = field(metadata={"help": "saved RQ2Retriever (or a backbone)"})
    reranker: str = field(metadata={"help": "saved RQ2Reranker"})
    output: str = field(metadata={"help": "datasets folder, or a .jsonl file"})
    data: str = "scifact"
    split: str = "train"
    precision: str = field(
        default="auto",
        metadata={"help": "how the models encode and score: fp32, bf16 / fp16 autocast, int8 (CPU), or auto"},
    )
    backend: str = field(
        default="torch", metadata={"help": "what runs the encoders: torch, or openvino (CPU; pip install openvino)"}
    )


def main(argv: list[str] | None = None) -> dict:
    """Command-line entry point; prints and returns the report."""
    from ..argparsing import CommandParser
    from ..data import load_data
    from ..models.loading import load_reranker, load_retriever

    parser = CommandParser((AugmentCommandArguments, MiningArguments), choices=SETTING_CHOICES)
    command, args = parser.parse_args_into_dataclasses(args=argv)
    data = load_data(command.data, command.split)
    retriever, reranker = load_retriever(command.retriever), load_reranker(command.reranker)
    for model in (retriever, reranker):
        model.inference_precision, model.inference_backend = command.precision, command.backend
    instances, report = augment_instances(data, retriever, reranker, args)
    save_instances(instances, command.output, report)
    print(json.dumps({k: v for k, v in report.items() if k != "arguments"}, indent=2))
    print(f"wrote {len(instances)} instances to {command.output}")
    return report


if __name__ == "__main__":
    from ..cli import augment

    augment()
