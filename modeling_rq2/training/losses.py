"""Listwise losses of RocketQAv2: listwise cross-entropy and dynamic listwise distillation.

Scores come as (batch, m): each query's list of m passages, its positive at ``labels`` (default 0).
``mask`` (batch, m), True for real passages, lets a query have fewer than m candidates: masked
entries get zero probability and contribute nothing (no duplicate padding).
All computations are in float32 with log-softmax, so they stay finite under bf16/fp16 autocast.
"""

import math
from dataclasses import dataclass, field, fields
from typing import Any

import torch
import torch.nn.functional as F

DIRECTIONS = ("retriever_to_reranker", "reranker_to_retriever")
REDUCTIONS = ("query", "element")
_MASKED = -1e9


DESCRIPTION_KEYS = ("card", "ablations")
"""Field metadata of a loss option beside its command-line ``help``."""


def loss_option(default: Any, *, help: str, card: str | None = None, ablations: dict | None = None) -> Any:
    """A dataclass field that describes itself: ``help`` for the command line, ``card`` for the model card
    (``{}`` takes the value; None: not stated), ``ablations`` {value: phrase} for the benchmark's ablation of it."""
    return field(default=default, metadata={"help": help, "card": card, "ablations": ablations or {}})


def check_setting(condition: bool, name: str, message: str) -> None:
    """Raise ``ValueError("--NAME: message")`` unless ``condition``: a setting named as the command line names it."""
    if not condition:
        raise ValueError(f"--{name}: {message}")


def check_numbers(section: Any) -> None:
    """Every number of a settings dataclass is finite (an infinite learning rate trained every weight to inf and
    exited 0) and at least 0, seeds below 2**32; checked before any data or model loads."""
    for item in fields(section):
        value = getattr(section, item.name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        check_setting(math.isfinite(value), item.name, f"must be a finite number, got {value}")
        if item.name.endswith("seed"):  # numpy's and torch's seeds are unsigned 32-bit
            check_setting(0 <= value < 2**32, item.name, f"must be in [0, 2**32), got {value}")
        else:
            check_setting(value >= 0, item.name, f"must be >= 0, got {value}")


@dataclass
class DistillationOptions:
    """The variants of ``listwise_distillation_loss`` (where the paper and its official code differ).

    Each field is one variant, described once: the command line, the model card and the benchmark read it from
    here (``describe``, ``ablation``), so a new variant is one field and its branch in the loss.
    """

    direction: str = loss_option(
        "retriever_to_reranker",
        help=f"KL direction: {DIRECTIONS}",
        card="KL direction `{}`",
        ablations={"reranker_to_retriever": "with the KL divergence in the other direction"},
    )
    reranker_kl_gradient: bool = loss_option(
        True,
        help="the KL also trains the re-ranker (paper: yes)",
        card="KL trains the re-ranker: {}",
        ablations={False: "without the KL gradient into the re-ranker"},
    )
    reduction: str = loss_option(
        "query",
        help=f"KL reduction: {REDUCTIONS}",
        card="reduction `{}`",
        ablations={"element": "with the KL averaged over list entries, as Paddle's kldiv_loss (1/m of the default)"},
    )
    static: bool = loss_option(
        False, help="frozen re-ranker teacher (static-distillation ablation)", card="static teacher: {}"
    )
    kl_weight: float = loss_option(1.0, help="weight of the KL term")
    supervised_weight: float = loss_option(1.0, help="weight of the re-ranker's listwise cross-entropy")

    def __post_init__(self):
        check_numbers(self)
        check_setting(self.direction in DIRECTIONS, "direction", f"must be one of {DIRECTIONS}, got {self.direction!r}")
        check_setting(self.reduction in REDUCTIONS, "reduction", f"must be one of {REDUCTIONS}, got {self.reduction!r}")
        for name in ("kl_weight", "supervised_weight"):
            check_setting(getattr(self, name) >= 0, name, f"must be >= 0, got {getattr(self, name)}")

    def loss_kwargs(self) -> dict[str, Any]:
        """These options as keyword arguments of ``listwise_distillation_loss``."""
        return {f.name: getattr(self, f.name) for f in fields(DistillationOptions)}

    def describe(self) -> str:
        """The loss in words, for model cards: every option that has a ``card`` phrase, with its value."""
        options = fields(DistillationOptions)
        stated = [f.metadata["card"].format(getattr(self, f.name)) for f in options if f.metadata.get("card")]
        return "dynamic listwise distillation, " + ", ".join(stated)

    @classmethod
    def ablation(cls, name: str, value: Any) -> str:
        """What setting option ``name`` to ``value`` changes, in words (the benchmark's ablation descriptions)."""
        option = next((f for f in fields(cls) if f.name == name), None)
        if option is None or value not in option.metadata["ablations"]:
            raise KeyError(f"no ablation {name}={value!r} is described in {cls.__name__}")
        return option.metadata["ablations"][value]


@dataclass
class DistillationLoss:
    """The total loss and its parts (for logging): ``total = kl_weight * kl + supervised_weight * supervised``."""

    total: torch.Tensor
    kl: torch.Tensor
    supervised: torch.Tensor


def _log_probs(scores: torch.Tensor, mask: torch.Tensor | None, temperature: float) -> torch.Tensor:
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    scores = scores.float() / temperature
    if mask is not None:
        scores = scores.masked_fill(~mask, _MASKED)
    return F.log_softmax(scores, dim=-1)


def _check(scores: torch.Tensor, mask: torch.Tensor | None, labels: torch.Tensor | None) -> torch.Tensor:
    if scores.dim() != 2:
        raise ValueError(f"listwise scores must have shape (batch, m), got {tuple(scores.shape)}")
    if labels is None:
        labels = torch.zeros(scores.shape[0], dtype=torch.long, device=scores.device)
    if mask is not None:
        if mask.shape != scores.shape:
            raise ValueError(f"mask shape {tuple(mask.shape)} != scores shape {tuple(scores.shape)}")
        if not mask.gather(1, labels[:, None]).all():
            raise ValueError("the positive passage of a list is masked out")
    return labels


def listwise_cross_entropy(
    scores: torch.Tensor,
    labels: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    *,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Mean over queries of -log softmax(scores / temperature)[positive]: the listwise supervised loss."""
    labels = _check(scores, mask, labels)
    return F.nll_loss(_log_probs(scores, mask, temperature), labels)


def listwise_distillation_loss(
    retriever_scores: torch.Tensor,
    reranker_scores: torch.Tensor,
    *,
    labels: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    retriever_temperature: float = 1.0,
    reranker_temperature: float = 1.0,
    kl_weight: float = 1.0,
    supervised_weight: float = 1.0,
    direction: str = "retriever_to_reranker",
    reranker_kl_gradient: bool = True,
    retriever_kl_gradient: bool = True,
    reduction: str = "query",
    static: bool = False,
) -> DistillationLoss:
    """Dynamic listwise distillation (RocketQAv2 Eq. 4-6): L = w_kl * KL + w_sup * CE(re-ranker, positive).

    direction: ``retriever_to_reranker`` is KL(de || ce) as the paper writes it (Eq. 4);
        ``reranker_to_retriever`` is KL(ce || de), the official code's, with the re-ranker as target.
    reranker_kl_gradient: whether the KL also updates the re-ranker (the paper's "dynamic"; the
        official code's target gets no gradient).
    retriever_kl_gradient: whether the KL updates the retriever; off, the retriever is the teacher
        (used early in training, while the re-ranker is still cold).
    reduction: ``query`` sums the KL over a list and averages over queries; ``element`` averages
        over all (unmasked) list entries, as Paddle's kldiv_loss does (1/m of the former for full lists).
    static: the re-ranker is a fixed teacher (the paper's static-distillation ablation): it receives
        no gradient and its supervised loss is reported but left out of the total.
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if retriever_scores.shape != reranker_scores.shape:
        raise ValueError(
            f"retriever scores {tuple(retriever_scores.shape)} and "
            f"re-ranker scores {tuple(reranker_scores.shape)} differ"
        )
    labels = _check(retriever_scores, mask, labels)
    if static:
        reranker_scores = reranker_scores.detach()
    teacher_scores = reranker_scores if reranker_kl_gradient else reranker_scores.detach()

    student_scores = retriever_scores if retriever_kl_gradient else retriever_scores.detach()
    log_de = _log_probs(student_scores, mask, retriever_temperature)
    log_ce = _log_probs(teacher_scores, mask, reranker_temperature)
    target, other = (log_de, log_ce) if direction == "retriever_to_reranker" else (log_ce, log_de)
    terms = target.exp() * (target - other)
    if mask is not None:
        terms = torch.where(mask, terms, torch.zeros_like(terms))
    if reduction == "query":
        kl = terms.sum(dim=-1).mean()
    else:
        kl = terms.sum() / (mask.sum() if mask is not None else terms.numel())

    supervised = F.nll_loss(_log_probs(reranker_scores, mask, reranker_temperature), labels)
    total = kl_weight * kl + (0.0 if static else supervised_weight) * supervised
    return DistillationLoss(total=total, kl=kl, supervised=supervised)
