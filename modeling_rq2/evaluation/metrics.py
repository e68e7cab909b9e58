"""Ranking metrics with trec_eval's definitions (MRR@k, Recall@k, nDCG@k, MAP, Success@k).

``success@k`` is 1 when any relevant document is in the top k (trec_eval's ``success_k``): what
RocketQA's ``msmarco_eval`` reports as Recall@50/1000 and DPR as top-k retrieval accuracy (Recall@k).

Runs and qrels are pytrec_eval-style dicts: ``run = {qid: {docid: score}}``,
``qrels = {qid: {docid: grade}}``. Documents are ranked by score, ties broken by doc id in
reverse order as trec_eval does. Means are taken over every judged query (a query missing from
the run scores 0, as ``trec_eval -c``), so a retriever cannot gain by skipping hard queries.
"""

import math
import re
from collections.abc import Iterable

from ..data.records import DEFAULT_METRICS

_METRIC = re.compile(r"^(ndcg|mrr|recall|map|success)(?:@(\d+))?$")


def parse_metric(metric: str) -> tuple[str, int | None]:
    """``"ndcg@10"`` -> ``("ndcg", 10)``, ``"map"`` -> ``("map", None)``; anything else (``ndcg@0``, ``recall@abc``)
    is refused."""
    match = _METRIC.match(str(metric).lower())
    cutoff = int(match.group(2)) if match and match.group(2) else None
    if not match or (match.group(1) != "map" and cutoff is None) or cutoff == 0:
        raise ValueError(f"unknown metric {metric!r}: use ndcg@k, mrr@k, recall@k, success@k (k >= 1) or map")
    return match.group(1), cutoff


def rank(scores: dict[str, float]) -> list[str]:
    """Doc ids by decreasing score; ties by doc id in reverse lexicographic order (trec_eval)."""
    return [doc for doc, _ in sorted(scores.items(), key=lambda item: (item[1], item[0]), reverse=True)]


def _query_metric(kind: str, k: int | None, ranking: list[str], judged: dict[str, int], threshold: int) -> float:
    relevant = {doc for doc, grade in judged.items() if grade >= threshold}
    top = ranking if k is None else ranking[:k]
    if kind == "mrr":
        return next((1.0 / i for i, doc in enumerate(top, start=1) if doc in relevant), 0.0)
    if kind == "success":
        return float(any(doc in relevant for doc in top))
    if kind == "recall":
        return sum(doc in relevant for doc in top) / len(relevant) if relevant else 0.0
    if kind == "map":
        hits, total = 0, 0.0
        for i, doc in enumerate(top, start=1):
            if doc in relevant:
                hits += 1
                total += hits / i
        return total / len(relevant) if relevant else 0.0
    # ndcg: linear gains from the grades, log2 discount, ideal from every positively judged doc
    dcg = sum(max(judged.get(doc, 0), 0) / math.log2(i + 1) for i, doc in enumerate(top, start=1))
    ideal = sorted((g for g in judged.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 1) for i, g in enumerate(ideal, start=1))
    return dcg / idcg if idcg > 0 else 0.0


def evaluate_run(
    run: dict[str, dict[str, float]],
    qrels: dict[str, dict[str, int]],
    metrics: Iterable[str] = DEFAULT_METRICS,
    *,
    relevance_threshold: int = 1,
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Score a run against qrels.

    Returns (means, per_query): ``{metric: mean over judged queries}`` and
    ``{qid: {metric: value}}``. nDCG uses the grades; MRR, Recall and MAP count a document as
    relevant when its grade is >= ``relevance_threshold`` (TREC DL uses 2).
    """
    parsed = {metric: parse_metric(metric) for metric in metrics}
    if not qrels:
        raise ValueError("qrels are empty: nothing to evaluate against")
    per_query: dict[str, dict[str, float]] = {}
    for qid, judged in qrels.items():
        ranking = rank(run.get(qid, {}))
        per_query[qid] = {
            metric: _query_metric(kind, k, ranking, judged, relevance_threshold) for metric, (kind, k) in parsed.items()
        }
    means = {metric: sum(values[metric] for values in per_query.values()) / len(per_query) for metric in parsed}
    return means, per_query


def write_trec_run(run: dict[str, dict[str, float]], path: str, tag: str = "modeling_rq2") -> None:
    """Write a run in TREC format (``qid Q0 docid rank score tag``), ranked as ``evaluate_run`` ranks it."""
    with open(path, "w", encoding="utf-8") as f:
        for qid, scores in run.items():
            for position, doc in enumerate(rank(scores), start=1):
                f.write(f"{qid} Q0 {doc} {position} {scores[doc]!r} {tag}\n")  # every digit: no ties made
