"""What training on SciFact costs outside its domain (issue 20): nDCG@10 of the zero-shot backbone and of trained
runs on other collections in the BEIR layout, retriever, re-ranker on its top 20 and fused, in one run.

    python bench/out_of_domain.py --data ../shared/data/cacm ../shared/data/med --runs outputs/scifact

``--runs``: train.py output folders (their retriever/ and reranker/); the zero-shot MiniLM retriever is always
evaluated beside them. The collections are read from where they are given (they are not shipped with the package).
Writes bench/results/out_of_domain.json / .md. Never run in CI.
"""

import argparse
import os
import sys
from pathlib import Path

import torch

from modeling_rq2.data import load_data
from modeling_rq2.evaluation.evaluate import evaluate_retrieval
from modeling_rq2.evaluation.systems import by_name
from modeling_rq2.models.loading import load_reranker, load_retriever

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reporting import write_report  # noqa: E402  (bench/reporting.py)

RESULTS = Path(__file__).resolve().parent / "results"


def evaluate_system(retriever_path: str, reranker_path: str | None, data, *, rerank_top_k: int) -> dict:
    """nDCG@10 (and Recall@100) of one system by display name, on one collection."""
    retriever = load_retriever(retriever_path)
    reranker = load_reranker(reranker_path) if reranker_path else None
    top_k = min(100, len(data.corpus))
    scored = evaluate_retrieval(
        retriever, data, reranker, top_k=top_k, rerank_top_k=rerank_top_k, metrics=["ndcg@10", "recall@100"],
        fusion=0.5 if reranker else 0.0,
    )  # fmt: skip
    return {system: {k: round(v, 4) for k, v in values.items()} for system, values in by_name(scored.metrics).items()}


def markdown(report: dict) -> str:
    lines = ["| collection | system | ranking | nDCG@10 | Recall@100 |", "|---|---|---|---|---|"]
    for collection, systems in report["results"].items():
        for system, rankings in systems.items():
            for ranking, values in rankings.items():
                lines.append(
                    f"| {collection} | {system} | {ranking} | {values['ndcg@10']:.4f} | {values['recall@100']:.4f} |"
                )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", nargs="+", required=True, help="BEIR folders (their test qrels are read)")
    parser.add_argument("--runs", nargs="*", default=[], help="train.py output folders")
    parser.add_argument("--labels", nargs="*", default=None, help="a name per run for the report")
    parser.add_argument("--rerank_top_k", type=int, default=20)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--output", default=str(RESULTS / "out_of_domain"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    labels = args.labels or [Path(run).name for run in args.runs]
    systems = {"zero-shot all-MiniLM-L6-v2": ("default", None)}
    systems |= {label: (f"{run}/retriever", f"{run}/reranker") for label, run in zip(labels, args.runs, strict=True)}
    results = {}
    for folder in args.data:
        data = load_data(folder, "test")
        name = Path(folder).name
        results[name] = {
            label: evaluate_system(retriever, reranker, data, rerank_top_k=args.rerank_top_k)
            for label, (retriever, reranker) in systems.items()
        }
        print(name, results[name], flush=True)
    report = {"results": results, "rerank_top_k": args.rerank_top_k, "threads": args.threads}
    return write_report(report, Path(args.output), markdown)


if __name__ == "__main__":
    main()
