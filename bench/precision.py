"""Inference precision: our retriever's passage encoding in fp32 and under bf16 autocast, in one run (a ratio holds on
a noisy machine), with the retrieval quality each gives.

    python bench/precision.py        # the offline MiniLM, bundled SciFact's 5,183 passages at 256 tokens, 2 threads

Quality on SciFact's *train* split (809 judged claims; the test split is not read). Writes
bench/results/precision.json. Never run in CI. Next: the re-ranker, int8, and sentence-transformers beside ours.
"""

import json
import time
from pathlib import Path

import numpy as np
import torch

from modeling_rq2.data import load_data
from modeling_rq2.evaluation.metrics import evaluate_run
from modeling_rq2.models.loading import load_retriever
from modeling_rq2.retrieval.index import DenseIndex
from modeling_rq2.retrieval.pipeline import to_run


def main() -> None:
    """Encode in fp32, then bf16; print and write the report."""
    torch.set_num_threads(2)
    data = load_data("scifact", "train")
    retriever = load_retriever("default", passage_max_length=256, query_max_length=64)
    passages, ids = data.passages(), data.corpus["_id"]
    queries = data.queries["text"]
    out = {
        "threads": 2,
        "passages": len(ids),
        "queries": len(queries),
        "cpu_bf16": bool(torch.cpu._is_avx512_bf16_supported()),
    }
    embeddings = {}
    for precision in ("fp32", "bf16"):
        retriever.encode_passages(list(passages[:64]), precision=precision)  # warm
        start = time.perf_counter()
        embeddings[precision] = retriever.encode_passages(passages, 32, False, precision=precision)
        seconds = time.perf_counter() - start
        q = retriever.encode_queries(queries, precision=precision)
        hits = DenseIndex.build(embeddings[precision], ids).search(q, 100)
        metrics, _ = evaluate_run(to_run(data.queries["_id"], hits), data.qrels, ["ndcg@10", "recall@100"])
        out[precision] = {"encode_seconds": round(seconds, 1), **{k: round(v, 4) for k, v in metrics.items()}}
        print(precision, out[precision], flush=True)
    a, b = embeddings["fp32"], embeddings["bf16"]
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    out["cosine_fp32_bf16"] = {"mean": round(float(cos.mean()), 5), "min": round(float(cos.min()), 5)}
    out["speedup"] = round(out["fp32"]["encode_seconds"] / out["bf16"]["encode_seconds"], 2)
    print(json.dumps(out, indent=1))
    (Path(__file__).resolve().parent / "results" / "precision.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
