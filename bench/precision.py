"""Inference precision: our models' encoding and re-ranking at fp32, bf16, int8 and on the OpenVINO backend (fp32,
bf16), in one run (a ratio holds on a noisy machine), with the quality each gives.

    python bench/precision.py                                   # zero-shot MiniLM retriever only
    python bench/precision.py --retriever RUN/retriever --reranker RUN/reranker --output bench/results/precision

The retriever encodes the bundled SciFact corpus (5,183 passages at 256 tokens) at each precision and is scored on
the train split's 809 claims and on test's 300; the re-ranker re-orders the fp32 retriever's top 20 of the test
claims at each precision (the same candidates, so only the re-ranker's precision differs). bf16 runs only where the
processor has it natively (an AVX2-only CPU emulates it, 7.9x slower than fp32: speed-bf16-emulated.md). Writes
OUTPUT.json / .md. Never run in CI.
"""

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from modeling_rq2.data import load_data
from modeling_rq2.evaluation.metrics import evaluate_run
from modeling_rq2.models.loading import load_reranker, load_retriever
from modeling_rq2.models.modeling_rq2 import native_bf16
from modeling_rq2.retrieval.index import DenseIndex
from modeling_rq2.retrieval.pipeline import to_run

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reporting import write_report  # noqa: E402  (bench/reporting.py)

RESULTS = Path(__file__).resolve().parent / "results"
METRICS = ["ndcg@10", "recall@100"]


OPENVINO = {"openvino": "fp32", "openvino_bf16": "bf16"}
"""The rows computed by the OpenVINO backend, and at which precision."""


def _options(label: str) -> dict:
    """A report row's call options: a precision, or ``openvino`` / ``openvino_bf16`` (that backend)."""
    return {"backend": "openvino", "precision": OPENVINO[label]} if label in OPENVINO else {"precision": label}


def _cosine(a: np.ndarray, b: np.ndarray) -> dict:
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    return {"mean": round(float(cos.mean()), 5), "min": round(float(cos.min()), 5)}


def retriever_rows(retriever, splits: dict, precisions: list[str], batch_size: int) -> tuple[dict, dict]:
    """Per precision: corpus encoding time and each split's metrics; and the fp32 top 100 per split."""
    corpus = next(iter(splits.values()))
    passages, ids = corpus.passages(), list(corpus.corpus["_id"])
    rows, embeddings, fp32_hits = {}, {}, {}
    for precision in precisions:
        options = _options(precision)
        retriever.encode_passages(list(passages[:batch_size]), batch_size, False, **options)  # warm
        start = time.perf_counter()
        embeddings[precision] = retriever.encode_passages(passages, batch_size, False, **options)
        seconds = time.perf_counter() - start
        index = DenseIndex.build(embeddings[precision], ids)
        row = {"encode_seconds": round(seconds, 1), "passages_per_s": round(len(ids) / seconds, 2)}
        for name, data in splits.items():
            hits = index.search(retriever.encode_queries(data.queries["text"], **options), 100)
            metrics, _ = evaluate_run(to_run(data.queries["_id"], hits), data.qrels, METRICS)
            row[name] = {k: round(v, 4) for k, v in metrics.items()}
            if precision == "fp32":
                fp32_hits[name] = hits
        if precision != "fp32":
            row["cosine_to_fp32"] = _cosine(embeddings["fp32"], embeddings[precision])
        rows[precision] = row
        print("retriever", precision, row, flush=True)
    return rows, fp32_hits


def reranker_rows(reranker, data, hits, precisions: list[str], top_k: int, batch_size: int) -> dict:
    """Per precision: the re-ranker on the same fp32 candidates (its top ``top_k``): pairs/s, nDCG@10, logits' drift."""
    by_id = dict(zip(data.corpus["_id"], data.passages(), strict=True))
    heads = [[doc for doc, _ in found[:top_k]] for found in hits]
    pairs = [(query, by_id[doc]) for query, docs in zip(data.queries["text"], heads, strict=True) for doc in docs]
    rows, logits = {}, {}
    for precision in precisions:
        options = _options(precision)
        reranker.score_pairs(pairs[:batch_size], batch_size, False, **options)  # warm
        start = time.perf_counter()
        logits[precision] = reranker.score_pairs(pairs, batch_size, False, **options)
        seconds = time.perf_counter() - start
        scores, ranked = iter(logits[precision].tolist()), []
        for docs in heads:
            scored = [(doc, next(scores)) for doc in docs]
            ranked.append(sorted(scored, key=lambda hit: -hit[1]))
        metrics, _ = evaluate_run(to_run(data.queries["_id"], ranked), data.qrels, ["ndcg@10"])
        row = {"pairs_per_s": round(len(pairs) / seconds, 2), **{k: round(v, 4) for k, v in metrics.items()}}
        if precision != "fp32":
            drift = np.abs(logits[precision] - logits["fp32"])
            row["logit_abs_diff"] = {"mean": round(float(drift.mean()), 4), "max": round(float(drift.max()), 4)}
        rows[precision] = row
        print("reranker", precision, row, flush=True)
    return rows


def markdown(report: dict) -> str:
    lines = [
        f"Machine: {report['machine']['processor']}, {report['machine']['threads']} threads, native bf16: "
        f"{report['machine']['native_bf16']}. Retriever: {report['retriever']}; re-ranker: {report['reranker']}.",
        "",
        "| retriever precision | passages/s | x fp32 | nDCG@10 train | nDCG@10 test | R@100 test | cosine to fp32 |",
        "|---|---|---|---|---|---|---|",
    ]
    rows = report["retriever_rows"]
    for precision, row in rows.items():
        cosine = row.get("cosine_to_fp32", {}).get("mean", 1.0)
        speedup = row["passages_per_s"] / rows["fp32"]["passages_per_s"]
        lines.append(
            f"| {precision} | {row['passages_per_s']:.1f} | {speedup:.2f}"
            f" | {row['train']['ndcg@10']:.4f} | {row['test']['ndcg@10']:.4f} | {row['test']['recall@100']:.4f} |"
            f" {cosine:.5f} |"
        )
    if report.get("reranker_rows"):
        rows = report["reranker_rows"]
        lines += [
            "",
            "| re-ranker precision (test, top 20 of fp32) | pairs/s | x fp32 | nDCG@10 | mean abs logit change |",
        ]
        lines.append("|---|---|---|---|---|")
        for precision, row in rows.items():
            drift = row.get("logit_abs_diff", {}).get("mean", 0.0)
            lines.append(
                f"| {precision} | {row['pairs_per_s']:.1f} | {row['pairs_per_s'] / rows['fp32']['pairs_per_s']:.2f} | "
                f"{row['ndcg@10']:.4f} | {drift:.4f} |"
            )
    if report["skipped"]:
        lines += ["", "Skipped: " + "; ".join(report["skipped"])]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--retriever", default="default")
    parser.add_argument("--reranker", default=None, help="a trained re-ranker folder (an untrained head says nothing)")
    parser.add_argument(
        "--precisions",
        nargs="+",
        default=["fp32", "bf16", "int8", "openvino", "openvino_bf16"],
        choices=["fp32", "bf16", "fp16", "int8", *OPENVINO],
    )
    parser.add_argument("--rerank_top_k", type=int, default=20)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--output", default=str(RESULTS / "precision"))
    parser.add_argument("--label", help="what the models are, for the report (default: their paths)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    precisions, skipped = ["fp32"], []
    for precision in args.precisions:
        if "bf16" in precision and not native_bf16(torch.device("cpu")):
            skipped.append(f"{precision} (this CPU has no native bf16: it would emulate it, slower than fp32)")
        elif precision != "fp32":
            precisions.append(precision)
    splits = {name: load_data("scifact", name) for name in ("train", "test")}
    retriever = load_retriever(args.retriever, passage_max_length=256, query_max_length=64)
    rows, hits = retriever_rows(retriever, splits, precisions, args.batch_size)
    report = {
        "machine": {
            "processor": platform.processor() or platform.machine(),
            "threads": args.threads,
            "native_bf16": native_bf16(torch.device("cpu")),
            "torch": torch.__version__,
        },
        "retriever": args.label or args.retriever,
        "reranker": args.label or args.reranker,
        "retriever_rows": rows,
        "skipped": skipped,
    }
    if args.reranker:
        reranker = load_reranker(args.reranker)
        report["reranker_rows"] = reranker_rows(
            reranker, splits["test"], hits["test"], precisions, args.rerank_top_k, args.batch_size
        )
    return write_report(report, Path(args.output), markdown)


if __name__ == "__main__":
    main()
