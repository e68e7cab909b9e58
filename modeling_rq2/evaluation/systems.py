"""The rankings an evaluation reports, as structured keys, and the one place their display names are made.

``evaluate_retrieval`` returns results keyed by :class:`System`: the retriever alone, the re-ranker ordering the
retriever's top k, or the two fused with weight w. ``metrics.json``, the model cards, the benchmark and the printed
tables show ``System.name`` ("retriever", "retriever + reranker@20", "retriever + reranker@20, fusion 0.5") and read
it back with ``System.parse``.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass

BM25 = "BM25 (bm25s)"
"""The name of the lexical baseline's row (not one of our systems)."""

_NAME = re.compile(r"^retriever(?: \+ reranker@(\d+)(?:, fusion ([0-9.e+-]+))?)?$")


@dataclass(frozen=True)
class System:
    """One ranking: ``rerank_top_k`` None is the retriever alone; else the re-ranker orders the retriever's top
    ``rerank_top_k`` by its score (``fusion`` 0) or by ``(1 - fusion) z(re-ranker) + fusion z(retriever)``."""

    rerank_top_k: int | None = None
    fusion: float = 0.0

    @classmethod
    def retriever(cls) -> "System":
        return cls()

    @classmethod
    def reranked(cls, top_k: int, *, fusion: float = 0.0) -> "System":
        return cls(rerank_top_k=top_k, fusion=fusion)

    @property
    def kind(self) -> str:
        """``retriever``, ``reranked`` (the re-ranker's score alone) or ``fused``."""
        if self.rerank_top_k is None:
            return "retriever"
        return "fused" if self.fusion > 0 else "reranked"

    @property
    def name(self) -> str:
        """The display name (and the key in metrics.json)."""
        if self.rerank_top_k is None:
            return "retriever"
        reranked = f"retriever + reranker@{self.rerank_top_k}"
        return f"{reranked}, fusion {self.fusion:g}" if self.fusion > 0 else reranked

    def __str__(self) -> str:
        return self.name

    @classmethod
    def parse(cls, name: str) -> "System":
        """The system a display name stands for; ValueError for any other name (e.g. the BM25 row)."""
        match = _NAME.match(name)
        if match is None:
            raise ValueError(f"{name!r} is not the name of a retriever / re-ranked / fused system")
        top_k, fusion = match.groups()
        return cls() if top_k is None else cls(rerank_top_k=int(top_k), fusion=float(fusion or 0.0))


def by_name(results: Mapping[System, dict]) -> dict[str, dict]:
    """Results keyed by display name, in the same order (for JSON files and tables)."""
    return {system.name: values for system, values in results.items()}


def find(results: Mapping[str, dict], kind: str) -> str | None:
    """The first display name in ``results`` (e.g. metrics.json's) of a system of this kind; None if there is none."""
    for name in results:
        try:
            if System.parse(name).kind == kind:
                return name
        except ValueError:
            continue
    return None


def markdown_table(rows: Mapping[str | System, Mapping[str, float]], metrics: list[str]) -> str:
    """One row per system (or baseline), one column per metric (values to 4 decimals)."""
    lines = ["| system | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 1) + "|"]
    lines += [f"| {name} | " + " | ".join(f"{values[m]:.4f}" for m in metrics) + " |" for name, values in rows.items()]
    return "\n".join(lines)
