"""BM25 over a retrieval corpus (bm25s, English stop words, no stemming): negatives and a baseline."""

from ..data import RetrievalData


def bm25_search(data: RetrievalData, k: int, *, k1: float = 1.5, b: float = 0.75) -> dict[str, list[tuple[str, float]]]:
    """Top-k (doc id, BM25 score) per query of ``data``, best first; passages indexed as ``title text``."""
    import bm25s

    corpus_ids = data.corpus["_id"]
    texts = [f"{title} {text}".strip() for title, text in zip(data.corpus["title"], data.corpus["text"], strict=True)]
    index = bm25s.BM25(k1=k1, b=b)
    index.index(bm25s.tokenize(texts, stopwords="en", show_progress=False), show_progress=False)
    hits, scores = index.retrieve(
        bm25s.tokenize(data.queries["text"], stopwords="en", show_progress=False),
        k=min(k, len(corpus_ids)),
        show_progress=False,
    )
    return {
        qid: [(corpus_ids[i], float(s)) for i, s in zip(row, row_scores, strict=True)]
        for qid, row, row_scores in zip(data.queries["_id"], hits, scores, strict=True)
    }
