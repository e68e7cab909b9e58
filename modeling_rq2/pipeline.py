"""Retrieve-then-rerank: a retriever searches a dense index, a re-ranker re-orders the head."""

from collections.abc import Sequence

import numpy as np

from .index import DenseIndex
from .modeling_rq2 import Passage, RQ2Reranker, RQ2Retriever


class RetrieveThenRerank:
    """Search a corpus with ``retriever`` + ``index``; re-score the top ``rerank_top_k`` with ``reranker``.

    Example:
        >>> pipe = RetrieveThenRerank.from_corpus(retriever, passages, doc_ids, reranker)
        >>> pipe.search(["what causes scurvy?"], top_k=100, rerank_top_k=50)[0][:3]
        [('doc7', 8.1), ('doc2', 5.3), ('doc9', 4.9)]
    """

    def __init__(
        self,
        retriever: RQ2Retriever,
        index: DenseIndex,
        passages: dict[str, Passage],
        reranker: RQ2Reranker | None = None,
    ):
        if index.dim != retriever.embedding_dim:
            raise ValueError(f"index dimension {index.dim} != retriever embedding size {retriever.embedding_dim}")
        self.retriever, self.index, self.passages, self.reranker = retriever, index, passages, reranker

    @classmethod
    def from_corpus(
        cls,
        retriever: RQ2Retriever,
        passages: Sequence[Passage],
        doc_ids: Sequence[str],
        reranker: RQ2Reranker | None = None,
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
    ) -> "RetrieveThenRerank":
        """Encode ``passages`` with the retriever into an exact inner-product index."""
        index = DenseIndex(retriever.embedding_dim, retriever.config.name_or_path)
        index.add(retriever.encode_passages(passages, batch_size, show_progress_bar), list(doc_ids))
        return cls(retriever, index, dict(zip(index.doc_ids, passages)), reranker)

    def retrieve(self, queries: Sequence[str], top_k: int = 100) -> list[list[tuple[str, float]]]:
        """Retriever-only ranking: top_k (doc id, similarity) per query."""
        return self.index.search(self.retriever.encode_queries(list(queries)), top_k)

    def rerank_scores(
        self, queries: Sequence[str], candidates: list[list[tuple[str, float]]], rerank_top_k: int = 50
    ) -> list[list[float]]:
        """Re-ranker logits of the first ``rerank_top_k`` candidates of each query (one forward pass for all)."""
        if self.reranker is None:
            raise ValueError("this pipeline has no re-ranker")
        pairs = [(q, self.passages[doc]) for q, hits in zip(queries, candidates) for doc, _ in hits[:rerank_top_k]]
        logits = iter(self.reranker.score_pairs(pairs).tolist())
        return [[next(logits) for _ in hits[:rerank_top_k]] for hits in candidates]

    def rerank(
        self,
        queries: Sequence[str],
        candidates: list[list[tuple[str, float]]],
        rerank_top_k: int = 50,
        fusion: float = 0.0,
        logits: list[list[float]] | None = None,
    ) -> list[list[tuple[str, float]]]:
        """Re-order the first ``rerank_top_k`` candidates of each query; the tail keeps retriever order.

        ``fusion`` = 0 orders the head by re-ranker logit alone (the paper). ``fusion`` = a in (0, 1]
        orders it by (1 - a) * z(re-ranker) + a * z(retriever), each score standardised over the head
        of its query, so a re-ranker that is still weaker than its retriever can only add to it.
        ``logits`` reuses scores from ``rerank_scores`` (e.g. to compare fusion weights).
        """
        if not 0.0 <= fusion <= 1.0:
            raise ValueError(f"fusion must be in [0, 1], got {fusion}")
        logits = logits if logits is not None else self.rerank_scores(queries, candidates, rerank_top_k)
        results = []
        for hits, head_logits in zip(candidates, logits):
            head = hits[:rerank_top_k]
            scores = np.asarray(head_logits, dtype=np.float64)
            if fusion > 0:
                retrieval = np.asarray([score for _, score in head], dtype=np.float64)
                scores = (1 - fusion) * _standardise(scores) + fusion * _standardise(retrieval)
            order = np.argsort(-scores, kind="stable")
            results.append([(head[i][0], float(scores[i])) for i in order] + hits[rerank_top_k:])
        return results

    def search(
        self, queries: Sequence[str], top_k: int = 100, rerank_top_k: int = 50, fusion: float = 0.0
    ) -> list[list[tuple[str, float]]]:
        """Ranked (doc id, score) lists: retrieve top_k, then re-rank the head when there is a re-ranker."""
        candidates = self.retrieve(queries, top_k)
        if self.reranker is None or rerank_top_k <= 0:
            return candidates
        return self.rerank(queries, candidates, rerank_top_k, fusion)


def _standardise(scores: np.ndarray) -> np.ndarray:
    return (scores - scores.mean()) / (scores.std() + 1e-6) if len(scores) > 1 else np.zeros_like(scores)


def to_run(query_ids: Sequence[str], results: list[list[tuple[str, float]]]) -> dict[str, dict[str, float]]:
    """Ranked lists -> a run dict whose scores preserve the list order exactly (len - position)."""
    return {qid: {doc: float(len(hits) - i) for i, (doc, _) in enumerate(hits)} for qid, hits in zip(query_ids, results)}
