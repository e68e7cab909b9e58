"""Evaluate a retriever (and optionally a re-ranker on its top-k) on any supported dataset.

    python -m modeling_rq2.evaluate --retriever default --data scifact --split test
    python -m modeling_rq2.evaluate --retriever out/retriever --reranker out/reranker --rerank_top_k 50
    python -m modeling_rq2.evaluate --retriever out/retriever --data BeIR/nfcorpus --index_type hnsw --index_dir idx/
    accelerate launch -m modeling_rq2.evaluate --retriever out/retriever --data msmarco/ --split dev.small \
        --top_k 1000 --index_dir idx/        # MS MARCO's official files: every process encodes its shards

Metrics default to the dataset's own (BEIR: nDCG@10...; MS MARCO: MRR@10, Recall@50/1000; NQ:
answer hits in the top 5/20/100). Prints a Markdown table, writes ``metrics.json`` (means, and per
query in ``per_query.json``) and TREC run files into ``--output_dir``. With ``--index_dir``, the
corpus is encoded into resumable shards there (a killed run re-encodes at most one shard per process).
"""

import json
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from accelerate import Accelerator

from ..argparsing import CommandParser
from ..data import RetrievalData, load_data
from ..data.corpus import CorpusPassages, lookup_passages
from ..models.loading import DEFAULT_BACKBONE, load_reranker, load_retriever
from ..models.modeling_rq2 import (
    INFERENCE_BACKENDS,
    INFERENCE_PRECISIONS,
    Passage,
    RQ2Reranker,
    RQ2Retriever,
    check_inference,
    default_device,
    resolve_precision,
)
from ..retrieval.bm25 import bm25_search
from ..retrieval.index import INDEX_TYPES, IndexOptions, encode_corpus_shards
from ..retrieval.pipeline import Reranker, RetrieveThenRerank, to_run
from .answers import MATCH_TYPES, answer_judgements
from .metrics import evaluate_run, parse_metric, write_trec_run
from .systems import BM25, System, by_name, markdown_table


@dataclass
class EvaluateArguments:
    """What to evaluate and where to write the results."""

    retriever: str = field(
        default=DEFAULT_BACKBONE,
        metadata={"help": "saved RQ2Retriever, or a plain encoder ('default' = offline MiniLM)"},
    )
    reranker: str | None = field(default=None, metadata={"help": "saved RQ2Reranker to re-rank the retriever's top-k"})
    data: str = field(default="scifact", metadata={"help": "BEIR / MS MARCO / DPR folder, bundled name or Hub dataset"})
    split: str = "test"
    top_k: int = field(default=100, metadata={"help": "passages retrieved per query"})
    rerank_top_k: int = field(default=50, metadata={"help": "head of the retrieved list that the re-ranker re-orders"})
    fusion: float = field(
        default=0.0, metadata={"help": "also report the head ordered by (1-a) z(reranker) + a z(retriever)"}
    )
    query_max_length: int | None = None
    passage_max_length: int | None = None
    batch_size: int = 32
    precision: str = field(
        default="auto",
        metadata={
            "help": "how the models encode and score: fp32, bf16 / fp16 autocast, int8 (CPU: dynamic quantisation), "
            "or auto (bf16 where the GPU or CPU runs it natively, else fp32)",
            "choices": INFERENCE_PRECISIONS,
        },
    )
    backend: str = field(
        default="torch",
        metadata={"help": "what runs the encoders: torch, or openvino (CPU; pip install openvino)"},
    )
    metrics: list[str] | None = field(
        default=None, metadata={"help": "default: the dataset's own (see the module doc)"}
    )
    relevance_threshold: int = field(
        default=1, metadata={"help": "grade from which MRR/Recall/MAP count a passage relevant (TREC DL: 2)"}
    )
    index_type: str = field(default="flat", metadata={"help": f"FAISS index: {INDEX_TYPES}"})
    bm25: bool = field(default=False, metadata={"help": "also report BM25 on the same queries"})
    index_dir: str | None = field(
        default=None,
        metadata={"help": "load the corpus index from here if it holds one of this retriever, else save it here"},
    )
    shard_size: int = field(
        default=100_000, metadata={"help": "passages per resumable encoding shard (with --index_dir)"}
    )
    keep_shards: bool = field(
        default=False, metadata={"help": "keep --index_dir/shards after the index is saved (default: removed)"}
    )
    answer_match: str = field(
        default="string", metadata={"help": "answer-judged data (DPR): string, or regex (CuratedTREC)"}
    )
    output_dir: str = "outputs/eval"

    def __post_init__(self):
        for name in ("top_k", "batch_size", "relevance_threshold"):  # a threshold of 0 counted grade-0 as relevant
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be >= 1, got {getattr(self, name)}")
        for name in ("query_max_length", "passage_max_length"):  # 0 was ignored, and recorded as 0
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"--{name} must be >= 1 (or unset: the model's own), got {getattr(self, name)}")
        if self.reranker is not None and not 0 <= self.rerank_top_k <= self.top_k:
            raise ValueError(f"--rerank_top_k must be in [0, --top_k={self.top_k}], got {self.rerank_top_k}")
        try:  # before data and models load: int8 and OpenVINO are for the CPU
            check_inference(self.precision, self.backend, default_device())
        except ValueError as err:
            raise ValueError(f"--precision / --backend: {err}") from None
        if not 0 <= self.fusion <= 1:  # also refuses nan
            raise ValueError(f"--fusion must be in [0, 1], got {self.fusion}")
        for metric in self.metrics or []:
            try:
                parse_metric(metric)
            except ValueError as err:
                raise ValueError(f"--metrics: {err}") from None
        if (Path(self.output_dir) / "training_config.json").is_file():  # its metrics.json would be replaced
            raise ValueError(
                f"--output_dir {self.output_dir} holds a training run: its metrics.json would be replaced; "
                f"write the evaluation elsewhere (e.g. {Path(self.output_dir) / 'eval'})"
            )
        if self.index_type not in INDEX_TYPES:
            raise ValueError(f"--index_type must be one of {INDEX_TYPES}, got {self.index_type!r}")
        if self.answer_match not in MATCH_TYPES:
            raise ValueError(f"--answer_match must be one of {MATCH_TYPES}, got {self.answer_match!r}")
        if self.shard_size < 1:
            raise ValueError(f"--shard_size must be >= 1, got {self.shard_size}")


def check_cutoffs(metrics: Sequence[str], top_k: int, corpus_size: int, *, flag: str = "--top_k") -> None:
    """Refuse a metric cut deeper than the retrieved list (success@1000 of a top 100 would be success@100)."""
    deepest = max((parse_metric(m)[1] or 0 for m in metrics), default=0)
    if top_k < min(deepest, corpus_size):
        raise ValueError(
            f"{flag} {top_k} is below the deepest metric cutoff ({deepest}, of {', '.join(metrics)}): "
            f"retrieve at least {min(deepest, corpus_size)}"
        )


def judgements(
    data: RetrievalData, run: dict[str, dict[str, float]], passages: Mapping[str, Passage] | None = None
) -> dict[str, dict[str, int]]:
    """What ``run`` is scored against: the qrels, or for answer-judged data (NQ) the retrieved passages
    that contain an answer (their texts read in one batch from ``passages``, default the corpus)."""
    if data.answers is None:
        return data.qrels
    passages = passages if passages is not None else CorpusPassages(data.corpus)
    ids = sorted({doc for docs in run.values() for doc in docs})
    texts = dict(zip(ids, (p["text"] for p in lookup_passages(passages, ids)), strict=True))
    return answer_judgements(run, data.answers, lambda docs: [texts[d] for d in docs], data.answer_match)


def bm25_baseline(data: RetrievalData, *, metrics: Sequence[str] | None = None, top_k: int = 100) -> dict[str, float]:
    """BM25 (bm25s, k1 1.5, b 0.75, no stemming) on ``data``: the lexical baseline every table should carry."""
    hits = bm25_search(data, top_k)
    run = to_run(list(hits), list(hits.values()))
    return evaluate_run(run, judgements(data, run), metrics or data.metrics)[0]


@dataclass
class Evaluation:
    """What ``evaluate_retrieval`` measured, per system: mean metrics, per-query metrics, and the runs scored."""

    metrics: dict[System, dict[str, float]]
    per_query: dict[System, dict[str, dict[str, float]]]
    runs: dict[System, dict[str, dict[str, float]]]


def evaluate_retrieval(
    retriever: RQ2Retriever,
    data: RetrievalData,
    reranker: Reranker | None = None,
    *,
    top_k: int = 100,
    rerank_top_k: int = 50,
    metrics: Sequence[str] | None = None,
    batch_size: int = 32,
    fusion: float | Sequence[float] = 0.0,
    relevance_threshold: int = 1,
    pipe: RetrieveThenRerank | None = None,
) -> Evaluation:
    """Retrieve (and re-rank the head) for every query of ``data`` and score each system.

    With a re-ranker, both pure re-ranking and, for each ``fusion`` weight > 0, the fused ranking are reported
    (several weights cost one re-ranker pass: where a weight is chosen on a dev split, all are scored at once).
    ``metrics``: default the dataset's own. ``pipe``: a pipeline over ``data``'s corpus already built
    (else the corpus is encoded into an exact index).
    """
    metrics = metrics or data.metrics
    check_cutoffs(metrics, top_k, len(data.corpus))
    pipe = pipe or RetrieveThenRerank.from_corpus(
        retriever, data.passages(), data.corpus["_id"], reranker, batch_size=batch_size
    )
    query_ids, query_texts = data.queries["_id"], data.queries["text"]
    candidates = pipe.retrieve(query_texts, top_k)
    systems = {System.retriever(): candidates}
    if reranker is not None and rerank_top_k > 0:
        logits = pipe.rerank_scores(query_texts, candidates, rerank_top_k)
        systems[System.reranked(rerank_top_k)] = pipe.rerank(query_texts, candidates, rerank_top_k, logits=logits)
        for weight in [fusion] if isinstance(fusion, int | float) else fusion:
            if weight > 0:
                systems[System.reranked(rerank_top_k, fusion=weight)] = pipe.rerank(
                    query_texts, candidates, rerank_top_k, fusion=weight, logits=logits
                )
    runs = {system: to_run(query_ids, ranked) for system, ranked in systems.items()}
    judged = judgements(data, runs[System.retriever()], pipe.passages)  # re-ranking only re-orders these candidates
    scored = {
        system: evaluate_run(run, judged, metrics, relevance_threshold=relevance_threshold)
        for system, run in runs.items()
    }
    return Evaluation({s: v[0] for s, v in scored.items()}, {s: v[1] for s, v in scored.items()}, runs)


def run_evaluation(args: EvaluateArguments) -> dict:
    """Encode the corpus, retrieve (and re-rank), score; returns the report written to metrics.json."""
    data, metrics = _checked_data(args)
    retriever, reranker = _models(args)
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    accelerator = Accelerator()
    # under ``accelerate launch``, the processes share the corpus encoding
    retriever.to(accelerator.device)
    if reranker is not None:
        reranker.to(accelerator.device)
    if accelerator.num_processes > 1:
        _encode_shards_together(args, data, retriever, accelerator)
        if not accelerator.is_main_process:  # the index, the search and the scoring exist once
            return {}
    pipe = RetrieveThenRerank.from_pretrained(
        retriever,
        reranker,
        data,
        index_folder=args.index_dir,
        options=IndexOptions(args.index_type),
        batch_size=args.batch_size,
        shard_size=args.shard_size,
        keep_shards=args.keep_shards,
    )
    scored = evaluate_retrieval(
        retriever,
        data,
        reranker,
        top_k=args.top_k,
        rerank_top_k=args.rerank_top_k,
        metrics=metrics,
        batch_size=args.batch_size,
        fusion=args.fusion,
        relevance_threshold=args.relevance_threshold,
        pipe=pipe,
    )
    results = by_name(scored.metrics)
    if args.bm25:
        results[BM25] = bm25_baseline(data, metrics=metrics, top_k=args.top_k)
    write_runs(scored.runs, output_dir)
    report = {
        "dataset": data.name,
        "split": args.split,
        "queries": len(data.queries),
        "corpus": len(data.corpus),
        "seconds": round(time.perf_counter() - started, 1),
        "arguments": asdict(args),
        "precision": resolve_precision(args.precision, accelerator.device),  # what auto computed in, here
        "results": results,
    }
    _write_report(report, by_name(scored.per_query), output_dir, metrics)
    return report


def _checked_data(args: EvaluateArguments) -> tuple[RetrievalData, list[str]]:
    """The split to evaluate and its metrics; a ``--top_k`` the corpus or the metrics make impossible fails here,
    before any model loads."""
    data = load_data(args.data, args.split)
    data.answer_match = args.answer_match
    metrics = args.metrics or list(data.metrics)
    if args.top_k > len(data.corpus):
        raise ValueError(f"--top_k {args.top_k} is more than the {len(data.corpus)} passages of {data.name}")
    check_cutoffs(metrics, args.top_k, len(data.corpus))
    IndexOptions(args.index_type).check_trainable(len(data.corpus))
    return data, metrics


def _models(args: EvaluateArguments) -> tuple[RQ2Retriever, RQ2Reranker | None]:
    """The retriever (with the lengths asked for) and the re-ranker, if any."""
    lengths = {"query_max_length": args.query_max_length, "passage_max_length": args.passage_max_length}
    retriever = load_retriever(args.retriever, **{k: v for k, v in lengths.items() if v})
    reranker = load_reranker(args.reranker) if args.reranker else None
    for model in (retriever, reranker):
        if model is not None:
            model.inference_precision, model.inference_backend = args.precision, args.backend
    return retriever, reranker


def _encode_shards_together(args: EvaluateArguments, data: RetrievalData, retriever: RQ2Retriever, accelerator) -> None:
    """Under several processes, each encodes its shards of the corpus into ``--index_dir``; the main one indexes."""
    if args.index_dir is None:
        raise ValueError("several processes encode into shards in --index_dir: give one")
    if not (Path(args.index_dir) / "meta.json").is_file():
        passages = data.passages()
        encode_corpus_shards(
            retriever,
            passages,
            passages.doc_ids(),
            Path(args.index_dir) / "shards",
            shard_size=args.shard_size,
            batch_size=args.batch_size,
            process_index=accelerator.process_index,
            num_processes=accelerator.num_processes,
        )
    accelerator.wait_for_everyone()


def _write_report(report: dict, per_query: dict, output_dir: Path, metrics: list[str]) -> None:
    """metrics.json, per_query.json, and the table on the console."""
    (output_dir / "metrics.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    (output_dir / "per_query.json").write_text(json.dumps(per_query, indent=1), encoding="utf-8")
    print(
        f"{report['dataset']} ({report['split']}): {report['queries']} queries, {report['corpus']} passages, "
        f"{report['seconds']} s"
    )
    print(markdown_table(report["results"], metrics))
    print(f"wrote {output_dir / 'metrics.json'}")


def write_runs(runs: Mapping[System, dict[str, dict[str, float]]], folder: Path) -> None:
    """One TREC run file per system, ``run.<system name as a slug>.trec``."""
    for system, run in runs.items():
        slug = "".join(c if c.isalnum() else "_" for c in system.name).strip("_")
        write_trec_run(run, str(folder / f"run.{slug}.trec"))


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point (``python -m modeling_rq2.evaluate``)."""
    choices = {"index_type": INDEX_TYPES, "answer_match": MATCH_TYPES, "backend": INFERENCE_BACKENDS}
    (args,) = CommandParser(EvaluateArguments, choices=choices).parse_args_into_dataclasses(args=argv)
    run_evaluation(args)


if __name__ == "__main__":
    main(sys.argv[1:])
