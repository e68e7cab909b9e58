"""Batches of listwise instances -> token tensors for both models (a typed ``ListwiseBatch``)."""

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers.utils import ModelOutput

from ..models.modeling_rq2 import RQ2Reranker, RQ2Retriever


@dataclass
class ListwiseBatch(ModelOutput):
    """One step's lists: queries (batch, seq); passages and (query, passage) pairs (batch, m, seq); ``list_mask``
    (batch, m), False where a query's list is shorter than m; ``in_batch_positives`` (batch, batch * m): True where a
    passage of the batch is one of query i's own positives (other than its list's first), which is never an in-batch
    negative of query i. Fields read as attributes or keys, as model outputs."""

    query_input_ids: torch.Tensor | None = None
    query_attention_mask: torch.Tensor | None = None
    query_token_type_ids: torch.Tensor | None = None
    passage_input_ids: torch.Tensor | None = None
    passage_attention_mask: torch.Tensor | None = None
    passage_token_type_ids: torch.Tensor | None = None
    pair_input_ids: torch.Tensor | None = None
    pair_attention_mask: torch.Tensor | None = None
    pair_token_type_ids: torch.Tensor | None = None
    list_mask: torch.Tensor | None = None
    in_batch_positives: torch.Tensor | None = None

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "ListwiseBatch":
        """The batch on ``device`` (what Accelerate's data loader calls)."""
        return type(self)(**{k: v.to(device, non_blocking=non_blocking) for k, v in self.items()})

    def inputs(self, prefix: str) -> dict[str, torch.Tensor]:
        """The tokens of one input (``query``, ``passage`` or ``pair``) as keyword arguments of a model."""
        return {k[len(prefix) + 1 :]: v for k, v in self.items() if k.startswith(f"{prefix}_")}


class ListwiseCollator:
    """Batch of lists -> token tensors for both models, shaped (batch, m, seq), plus the list mask.

    Tokenisation goes through the models' own ``tokenize_*`` methods, so training sees the inputs
    that inference builds (passages may be cut shorter for training speed). Missing list entries are an empty
    passage with ``list_mask`` False.
    """

    def __init__(
        self,
        retriever: RQ2Retriever,
        reranker: RQ2Reranker,
        list_size: int,
        *,
        passage_max_length: int | None = None,
        pair_max_length: int | None = None,
    ):
        self.retriever, self.reranker, self.list_size = retriever, reranker, list_size
        self.passage_max_length, self.pair_max_length = passage_max_length, pair_max_length

    def __call__(self, items: Sequence[dict]) -> ListwiseBatch:
        batch, m = len(items), self.list_size
        mask = torch.zeros(batch, m, dtype=torch.bool)
        queries, passages, pairs = [], [], []
        for i, item in enumerate(items):
            mask[i, : len(item["passages"])] = True
            queries.append(item["query"])
            padded = list(item["passages"]) + [""] * (m - len(item["passages"]))
            passages += padded
            pairs += [(item["query"], p) for p in padded]
        query_tokens = self.retriever.tokenize_queries(queries)
        passage_tokens = self.retriever.tokenize_passages(passages, self.passage_max_length)
        pair_tokens = self.reranker.tokenize_pairs(pairs, self.pair_max_length)
        fields = {f"query_{k}": v for k, v in query_tokens.items()}
        fields.update({f"passage_{k}": v.reshape(batch, m, -1) for k, v in passage_tokens.items()})
        fields.update({f"pair_{k}": v.reshape(batch, m, -1) for k, v in pair_tokens.items()})
        return ListwiseBatch(**fields, list_mask=mask, in_batch_positives=_in_batch_positives(items, m))


def _in_batch_positives(items: Sequence[dict], m: int) -> torch.Tensor | None:
    """(batch, batch * m): True where entry k of list j is a positive of query i (its own label excepted): a shared
    positive, another of a query's gold passages, a query's other augmented row. None when the items carry no ids."""
    if not all("doc_ids" in item and "positives" in item for item in items):
        return None
    out = torch.zeros(len(items), len(items) * m, dtype=torch.bool)
    for i, item in enumerate(items):
        positives = set(item["positives"])
        for j, other in enumerate(items):
            for k, doc in enumerate(other["doc_ids"]):
                out[i, j * m + k] = doc in positives and (j, k) != (i, 0)
    return out
