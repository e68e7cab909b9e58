"""Both models in one module, and the loss of one step of lists.

``accelerator.prepare`` sees a single ``JointModel`` (DDP and DeepSpeed take one module). ``step_losses`` turns its
output into the loss of the current phase: each model alone on the labels (``warmup``), or dynamic listwise
distillation plus the optional retriever cross-entropy (``joint``).
"""

from dataclasses import dataclass

import torch
from torch import nn
from transformers.utils import ModelOutput

from ..models.modeling_rq2 import RQ2Reranker, RQ2Retriever, RQ2RetrieverOutput, similarity_scores
from .arguments import LossArguments
from .collator import ListwiseBatch
from .losses import listwise_cross_entropy, listwise_distillation_loss


@dataclass
class JointOutput(ModelOutput):
    """The retriever's output ((batch, m) scores and the embeddings) and the re-ranker's (batch, m) logits."""

    retriever: RQ2RetrieverOutput | None = None
    reranker_scores: torch.Tensor | None = None


class JointModel(nn.Module):
    """Both models in one module: ``forward`` scores a batch of lists with each.

    ``frozen_reranker``: the re-ranker is a fixed teacher (static distillation) and stays in eval mode (no dropout)
    when the module trains.
    """

    def __init__(self, retriever: RQ2Retriever, reranker: RQ2Reranker, *, frozen_reranker: bool = False):
        super().__init__()
        self.retriever, self.reranker, self.frozen_reranker = retriever, reranker, frozen_reranker

    def train(self, mode: bool = True) -> "JointModel":
        super().train(mode)
        if self.frozen_reranker:
            self.reranker.eval()
        return self

    def forward(self, batch: ListwiseBatch) -> JointOutput:
        queries, passages = batch.inputs("query"), batch.inputs("passage")
        retriever_output = self.retriever(
            query_input_ids=queries["input_ids"],
            passage_input_ids=passages["input_ids"],
            query_attention_mask=queries.get("attention_mask"),
            passage_attention_mask=passages.get("attention_mask"),
            query_token_type_ids=queries.get("token_type_ids"),
            passage_token_type_ids=passages.get("token_type_ids"),
        )
        return JointOutput(retriever=retriever_output, reranker_scores=self.reranker(**batch.inputs("pair")).logits)


def in_batch_scores(
    output: RQ2RetrieverOutput, mask: torch.Tensor, in_batch_positives: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each query against every passage of the batch: scores (batch, batch*m), labels, mask.

    ``in_batch_positives`` (batch, batch*m, ``ListwiseBatch.in_batch_positives``): passages that are positives of
    query i, masked for query i (they are no negatives of it).
    """
    batch, m = mask.shape
    scores = similarity_scores(output.query_embeddings, output.passage_embeddings.reshape(batch * m, -1))
    labels = torch.arange(batch, device=scores.device) * m
    in_batch_mask = mask.reshape(1, -1).expand(batch, -1)
    if in_batch_positives is not None:
        in_batch_mask = in_batch_mask & ~in_batch_positives.to(in_batch_mask.device)
    return scores, labels, in_batch_mask


def step_losses(
    retriever_output: RQ2RetrieverOutput,
    reranker_scores: torch.Tensor,
    mask: torch.Tensor,
    phase: str,
    teacher_phase: bool,
    loss_args: LossArguments,
    retriever_temperature: float,
    *,
    in_batch_positives: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """The loss to optimise (``loss``) and its logged parts for one batch of lists.

    ``warmup``: each model alone, listwise CE on the labels. ``joint``: dynamic listwise distillation
    (the KL reaches the retriever only after the teacher phase) plus the optional retriever CE.
    ``in_batch_positives``: ``ListwiseBatch.in_batch_positives``, the batch's passages that are no in-batch negatives.
    """
    if loss_args.in_batch_negatives:
        ce_scores, ce_labels, ce_mask = in_batch_scores(retriever_output, mask, in_batch_positives)
    else:
        ce_scores, ce_labels, ce_mask = retriever_output.scores, None, mask
    retriever_ce = listwise_cross_entropy(ce_scores, ce_labels, ce_mask, temperature=retriever_temperature)
    if phase == "warmup":
        reranker_ce = listwise_cross_entropy(reranker_scores, mask=mask, temperature=loss_args.reranker_temperature)
        return {"loss": retriever_ce + reranker_ce, "supervised": reranker_ce, "retriever_ce": retriever_ce}
    loss = listwise_distillation_loss(
        retriever_output.scores,
        reranker_scores,
        mask=mask,
        retriever_kl_gradient=not teacher_phase,
        **loss_args.loss_options(retriever_temperature),
    )
    total = loss.total + loss_args.retriever_supervised_weight * retriever_ce
    return {"loss": total, "kl": loss.kl, "supervised": loss.supervised, "retriever_ce": retriever_ce}
