"""Dense passage indexes: FAISS exact inner-product search over retriever embeddings.

A saved index is a folder in pyserini's layout: ``index`` (FAISS) beside ``docid`` (one id per
line), plus ``meta.json`` recording the retriever and the dimension, checked when loading.
"""

import json
import os
from pathlib import Path

import faiss
import numpy as np


class DenseIndex:
    """Doc ids + a FAISS inner-product index over their embeddings."""

    def __init__(self, dim: int, model_name: str = "", index: "faiss.Index | None" = None, doc_ids: list[str] | None = None):
        self.dim = dim
        self.model_name = model_name
        self.index = index if index is not None else faiss.IndexFlatIP(dim)
        self.doc_ids: list[str] = list(doc_ids or [])

    def __len__(self) -> int:
        return len(self.doc_ids)

    def add(self, embeddings: np.ndarray, doc_ids: list[str]) -> None:
        """Add float32 embeddings (n, dim) for ``doc_ids`` (same order)."""
        embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
        if embeddings.ndim != 2 or embeddings.shape[1] != self.dim:
            raise ValueError(f"embeddings must have shape (n, {self.dim}), got {embeddings.shape}")
        if len(doc_ids) != embeddings.shape[0]:
            raise ValueError(f"{len(doc_ids)} doc ids for {embeddings.shape[0]} embeddings")
        self.index.add(embeddings)
        self.doc_ids.extend(str(d) for d in doc_ids)

    def search(self, query_embeddings: np.ndarray, k: int, batch_size: int = 1024) -> list[list[tuple[str, float]]]:
        """Top-k (doc id, score) per query, best first; never more hits than the index holds."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        queries = np.ascontiguousarray(query_embeddings, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise ValueError(f"query embeddings must have shape (n, {self.dim}), got {queries.shape}")
        k = min(k, len(self))
        if k == 0:
            return [[] for _ in range(len(queries))]
        results: list[list[tuple[str, float]]] = []
        for start in range(0, len(queries), batch_size):
            scores, ids = self.index.search(queries[start : start + batch_size], k)
            for row_scores, row_ids in zip(scores, ids):
                results.append([(self.doc_ids[i], float(s)) for s, i in zip(row_scores, row_ids) if i >= 0])
        return results

    def save(self, folder: str | os.PathLike) -> None:
        """Write ``index``, ``docid`` and ``meta.json`` into ``folder``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self.index, str(folder / "index"))
        (folder / "docid").write_text("".join(f"{d}\n" for d in self.doc_ids), encoding="utf-8")
        meta = {"dim": self.dim, "model_name": self.model_name, "size": len(self)}
        (folder / "meta.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")

    @classmethod
    def load(cls, folder: str | os.PathLike, expected_dim: int | None = None) -> "DenseIndex":
        """Read a saved index; refuse one whose dimension or size does not match."""
        folder = Path(folder)
        for name in ("index", "docid", "meta.json"):
            if not (folder / name).is_file():
                raise FileNotFoundError(f"{folder / name}: missing; not a saved DenseIndex folder")
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        index = faiss.read_index(str(folder / "index"))
        doc_ids = (folder / "docid").read_text(encoding="utf-8").splitlines()
        if index.d != meta["dim"] or index.ntotal != len(doc_ids):
            raise ValueError(f"{folder}: index holds {index.ntotal} vectors of dim {index.d}, docid has {len(doc_ids)} ids")
        if expected_dim is not None and expected_dim != index.d:
            raise ValueError(f"{folder}: index dimension {index.d} does not match the retriever's {expected_dim}")
        return cls(index.d, meta.get("model_name", ""), index, doc_ids)
