"""Retrieve-then-rerank: a retriever searches a dense index, a re-ranker re-orders the head."""

from collections.abc import Sequence

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

    def rerank(
        self, queries: Sequence[str], candidates: list[list[tuple[str, float]]], rerank_top_k: int = 50
    ) -> list[list[tuple[str, float]]]:
        """Re-order the first ``rerank_top_k`` candidates of each query by re-ranker logit.

        The re-ranked head comes first (scored by the re-ranker); the tail keeps retriever order and scores.
        """
        if self.reranker is None:
            raise ValueError("this pipeline has no re-ranker")
        pairs = [(q, self.passages[doc]) for q, hits in zip(queries, candidates) for doc, _ in hits[:rerank_top_k]]
        logits = iter(self.reranker.score_pairs(pairs).tolist())
        results = []
        for hits in candidates:
            head = sorted(((doc, next(logits)) for doc, _ in hits[:rerank_top_k]), key=lambda h: -h[1])
            results.append(head + hits[rerank_top_k:])
        return results

    def search(self, queries: Sequence[str], top_k: int = 100, rerank_top_k: int = 50) -> list[list[tuple[str, float]]]:
        """Ranked (doc id, score) lists: retrieve top_k, then re-rank the head when there is a re-ranker."""
        candidates = self.retrieve(queries, top_k)
        if self.reranker is None or rerank_top_k <= 0:
            return candidates
        return self.rerank(queries, candidates, rerank_top_k)


def to_run(query_ids: Sequence[str], results: list[list[tuple[str, float]]]) -> dict[str, dict[str, float]]:
    """Ranked lists -> a run dict whose scores preserve the list order exactly (len - position)."""
    return {qid: {doc: float(len(hits) - i) for i, (doc, _) in enumerate(hits)} for qid, hits in zip(query_ids, results)}
