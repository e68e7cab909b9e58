"""Retrieve-then-rerank: a retriever searches a dense index, a re-ranker re-orders the head."""

import math
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

import datasets
import numpy as np

from ..data import RetrievalData
from ..data.corpus import CorpusSequence, lookup_passages
from ..models.loading import load_reranker, load_retriever
from ..models.modeling_rq2 import Passage, RQ2Retriever, as_batch
from .index import DenseIndex, IndexOptions, build_index

Corpus = RetrievalData | datasets.Dataset | Mapping[str, Passage]


class Reranker(Protocol):
    """What re-ranks the head: an ``RQ2Reranker``, or any model with its ``score_pairs`` (e.g. a wrapped peer)."""

    def score_pairs(self, pairs: Sequence[tuple[str, Passage]]) -> np.ndarray:
        """One relevance score per (query, passage) pair, higher is more relevant."""


class RetrieveThenRerank:
    """Search a corpus with ``retriever`` + ``index``; re-score the top ``rerank_top_k`` with ``reranker``.

    Example:
        >>> corpus = load_beir("scifact").corpus
        >>> pipe = RetrieveThenRerank.from_pretrained("out/retriever", "out/reranker", corpus, index_folder="out/index")
        >>> pipe.search(["what causes scurvy?"], top_k=100, rerank_top_k=50)[0][:3]
        [('doc7', 8.1), ('doc2', 5.3), ('doc9', 4.9)]
    """

    def __init__(
        self,
        retriever: RQ2Retriever,
        index: DenseIndex,
        passages: Mapping[str, Passage],
        reranker: Reranker | None = None,
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
        reranker: Reranker | None = None,
        *,
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
        options: IndexOptions | None = None,
        accelerator=None,
        shard_folder: str | os.PathLike | None = None,
        shard_size: int = 100_000,
    ) -> "RetrieveThenRerank":
        """Encode ``passages`` with the retriever into an index (exact inner product unless ``options`` say).

        ``shard_folder`` / ``accelerator``: encode into resumable shards on disk, split across processes
        (see ``index.build_index``).
        """
        index = build_index(
            retriever,
            passages,
            doc_ids,
            options=options,
            batch_size=batch_size,
            show_progress_bar=show_progress_bar,
            accelerator=accelerator,
            shard_folder=shard_folder,
            shard_size=shard_size,
        )
        return cls(retriever, index, _by_id(doc_ids, passages), reranker)

    @classmethod
    def from_pretrained(
        cls,
        retriever: "str | os.PathLike | RQ2Retriever",
        reranker: "str | os.PathLike | Reranker | None" = None,
        corpus: Corpus | None = None,
        index_folder: str | os.PathLike | None = None,
        *,
        options: IndexOptions | None = None,
        batch_size: int = 64,
        shard_size: int = 100_000,
        keep_shards: bool = False,
    ) -> "RetrieveThenRerank":
        """Models by name or folder (or instances) + a corpus; the index is loaded from ``index_folder``
        when it holds one made by this retriever of these passages (ids and texts), else encoded (and saved there).

        ``corpus``: a ``RetrievalData``, a ``datasets.Dataset`` with ``_id``/``title``/``text``, or a
        ``{doc_id: passage}`` mapping. With ``index_folder``, the corpus is encoded into resumable shards
        in ``index_folder/shards`` (shards already there, e.g. from several processes, are not encoded again),
        removed once the index is saved (as large as the embeddings: 25 GB for MS MARCO at 768-d) unless
        ``keep_shards`` (to build other index types from the same encoding).
        """
        if corpus is None:
            raise ValueError("a corpus is needed: the passages that the index holds and the re-ranker reads")
        retriever = retriever if isinstance(retriever, RQ2Retriever) else load_retriever(retriever)
        if isinstance(reranker, (str, os.PathLike)):  # else a model: an RQ2Reranker or anything with score_pairs
            reranker = load_reranker(reranker)
        doc_ids, passages = _corpus_items(corpus)
        if index_folder is not None and (Path(index_folder) / "meta.json").is_file():
            index = DenseIndex.load(index_folder, retriever=retriever)
            if options is not None and options.index_type != index.options.index_type:
                raise ValueError(
                    f"{index_folder}: holds a {index.options.index_type!r} index, {options.index_type!r} was asked "
                    "for; use another index_folder (or delete this one) to build it"
                )
            index.check_corpus(doc_ids, passages, index_folder)
            return cls(retriever, index, _by_id(doc_ids, passages), reranker)
        shards = Path(index_folder) / "shards" if index_folder is not None else None
        pipe = cls.from_corpus(
            retriever,
            passages,
            doc_ids,
            reranker,
            batch_size=batch_size,
            options=options,
            shard_folder=shards,
            shard_size=shard_size,
        )
        if shards is not None and list(pipe.index.doc_ids) != list(doc_ids):
            raise ValueError(f"{shards}: holds the shards of another corpus; delete it or use another index_folder")
        if index_folder is not None:
            pipe.index.save(index_folder)
            if not keep_shards:
                shutil.rmtree(shards, ignore_errors=True)
        return pipe

    def retrieve(self, queries: str | Sequence[str], top_k: int = 100) -> list[list[tuple[str, float]]]:
        """Retriever-only ranking: top_k (doc id, similarity) per query; one query string gives its one list."""
        queries, single = as_batch(queries, "query")
        results = self.index.search(self.retriever.encode_queries(queries), top_k)
        return results[0] if single else results

    def rerank_scores(
        self, queries: str | Sequence[str], candidates: list[list[tuple[str, float]]], rerank_top_k: int = 50
    ) -> list[list[float]]:
        """Re-ranker logits of the first ``rerank_top_k`` candidates of each query (one forward pass for all); one
        query string takes its one candidate list and gives its one list of logits."""
        if self.reranker is None:
            raise ValueError("this pipeline has no re-ranker")
        if isinstance(queries, str):
            return self.rerank_scores([queries], [candidates], rerank_top_k)[0]
        queries, _ = as_batch(queries, "query")
        heads = [(q, doc) for q, hits in zip(queries, candidates, strict=True) for doc, _ in hits[:rerank_top_k]]
        pairs = list(zip((q for q, _ in heads), lookup_passages(self.passages, [doc for _, doc in heads]), strict=True))
        logits = iter(self.reranker.score_pairs(pairs).tolist())
        return [[next(logits) for _ in hits[:rerank_top_k]] for hits in candidates]

    def rerank(
        self,
        queries: str | Sequence[str],
        candidates: list[list[tuple[str, float]]],
        rerank_top_k: int = 50,
        *,
        fusion: float = 0.0,
        logits: list[list[float]] | None = None,
    ) -> list[list[tuple[str, float]]]:
        """Re-order the first ``rerank_top_k`` candidates of each query; the tail keeps retriever order.

        Scores are comparable down the whole list: the head carries the re-ranker's logits (or the fused scores),
        the tail the retriever's similarities shifted to sit below the head's lowest one (their gaps kept), so a
        list sorted by score is the list as ranked.

        ``fusion`` = 0 orders the head by re-ranker logit alone (the paper). ``fusion`` = a in (0, 1]
        orders it by (1 - a) * z(re-ranker) + a * z(retriever), each score standardised over the head
        of its query, so a re-ranker that is still weaker than its retriever can only add to it.
        ``logits`` reuses scores from ``rerank_scores`` (e.g. to compare fusion weights).
        """
        if not 0.0 <= fusion <= 1.0:
            raise ValueError(f"fusion must be in [0, 1], got {fusion}")
        if isinstance(queries, str):
            one = None if logits is None else [logits]
            return self.rerank([queries], [candidates], rerank_top_k, fusion=fusion, logits=one)[0]
        logits = logits if logits is not None else self.rerank_scores(queries, candidates, rerank_top_k)
        results = []
        for hits, head_logits in zip(candidates, logits, strict=True):
            head = hits[:rerank_top_k]
            scores = np.asarray(head_logits, dtype=np.float64)
            if fusion > 0:
                retrieval = np.asarray([score for _, score in head], dtype=np.float64)
                scores = (1 - fusion) * _standardise(scores) + fusion * _standardise(retrieval)
            order = np.argsort(-scores, kind="stable")
            tail = hits[rerank_top_k:]
            if tail and len(head):  # below the head: raw similarities there interleaved with logits
                floor, first = float(scores.min()), tail[0][1]
                tail = [(doc, floor - 1.0 - (first - score)) for doc, score in tail]
            results.append([(head[i][0], float(scores[i])) for i in order] + tail)
        return results

    def search(
        self, queries: str | Sequence[str], top_k: int = 100, rerank_top_k: int = 50, *, fusion: float = 0.0
    ) -> list[list[tuple[str, float]]]:
        """Ranked (doc id, score) lists of ``top_k`` passages: retrieve, then re-rank the first ``rerank_top_k`` when
        there is a re-ranker; one query string gives its one list.

        Scores decrease strictly down each whole list, so they sort as the list does: the head carries the
        re-ranker's logits (with ``fusion`` > 0, the interpolated z-scores of logit and similarity), the tail the
        retriever's similarities shifted below the head's lowest score (their gaps kept)."""
        if isinstance(queries, str):
            return self.search([queries], top_k, rerank_top_k, fusion=fusion)[0]
        candidates = self.retrieve(queries, top_k)
        if self.reranker is None or rerank_top_k <= 0:
            return candidates
        return self.rerank(queries, candidates, rerank_top_k, fusion=fusion)


def _by_id(doc_ids: Sequence[str], passages: Sequence[Passage]) -> Mapping[str, Passage]:
    """Passages by doc id: an Arrow-backed view for an Arrow corpus, else a dict."""
    return passages.by_id() if isinstance(passages, CorpusSequence) else dict(zip(doc_ids, passages, strict=True))


def _corpus_items(corpus: Corpus) -> tuple[list[str], Sequence[Passage]]:
    """(doc ids, passages) of a corpus given in any of the accepted forms (Arrow corpora stay on disk)."""
    if isinstance(corpus, RetrievalData):
        corpus = corpus.corpus
    if isinstance(corpus, datasets.Dataset):
        passages = CorpusSequence(corpus)  # checks the columns
        return passages.doc_ids(), passages
    if isinstance(corpus, Mapping):
        return [str(k) for k in corpus], list(corpus.values())
    raise TypeError(
        "corpus must be RetrievalData, a datasets.Dataset or a {doc_id: passage} mapping, "
        f"got {type(corpus).__name__}"
    )


def _standardise(scores: np.ndarray) -> np.ndarray:
    return (scores - scores.mean()) / (scores.std() + 1e-6) if len(scores) > 1 else np.zeros_like(scores)


def to_run(query_ids: Sequence[str], results: list[list[tuple[str, float]]]) -> dict[str, dict[str, float]]:
    """Ranked lists -> a run dict of the lists' own scores (what TREC run files carry), strictly decreasing down each
    list: an exact tie is nudged one float step below its predecessor, so whatever ranks by score (``evaluate_run``,
    trec_eval reading the file) reads the lists' order."""
    run = {}
    for qid, hits in zip(query_ids, results, strict=True):
        scores, previous = {}, math.inf
        for doc, score in hits:
            value = float(score)
            scores[doc] = previous = value if value < previous else math.nextafter(previous, -math.inf)
        run[qid] = scores
    return run
