"""Joint training of the retriever and the re-ranker (RocketQAv2) on Accelerate.

One ``JointModel`` holds both models so ``accelerator.prepare`` sees a single module (DDP and
DeepSpeed take one). Each step scores every query's list with both models and minimises the
dynamic listwise distillation loss; an optional warm-up stage first trains each model alone on
the same lists. Checkpoints are written atomically (a temporary folder renamed into place) and
``resume_from_checkpoint`` continues exactly where a killed run stopped.
"""

import json
import logging
import math
import os
import shutil
import signal
import threading
import time
import types
import typing
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import (
    DataLoaderConfiguration,
    InitProcessGroupKwargs,
    ProjectConfiguration,
    set_seed,
)
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import get_scheduler

from .augmentation import AugmentationArguments
from .backbones import DEFAULT_BACKBONE, load_reranker, load_retriever
from .corpus import CorpusPassages
from .evaluate import bm25_baseline, check_cutoffs, evaluate_retrieval, markdown_table
from .instances import (
    ListwiseCollator,
    ListwiseDataset,
    bm25_negatives,
    build_instances,
    load_instances,
)
from .losses import (
    DIRECTIONS,
    REDUCTIONS,
    listwise_cross_entropy,
    listwise_distillation_loss,
)
from .model_card import write_cards
from .modeling_rq2 import RQ2Reranker, RQ2Retriever, RQ2RetrieverOutput
from .msmarco import read_triples
from .sources import load_data

logger = logging.getLogger(__name__)

CHECKPOINT_PREFIX = "checkpoint-"
BM25_BASELINE_MAX_PASSAGES = 1_000_000  # beyond, the in-run BM25 baseline would cost more than it tells
PROGRESS_FILE = "progress.json"


def _require(condition: bool, field_name: str, message: str) -> None:
    if not condition:
        raise ValueError(f"--{field_name}: {message}")


@dataclass
class ModelArguments:
    """Which models to start from, and their input settings."""

    retriever: str = field(default=DEFAULT_BACKBONE, metadata={"help": "backbone or saved RQ2Retriever ('default' = offline all-MiniLM-L6-v2)"})
    reranker: str = field(default=DEFAULT_BACKBONE, metadata={"help": "backbone or saved RQ2Reranker"})
    shared_towers: bool = field(default=True, metadata={"help": "one encoder for queries and passages (the paper: separate)"})
    pooling: str | None = field(default=None, metadata={"help": "retriever pooling cls|mean (default: the backbone's)"})
    similarity: str | None = field(default=None, metadata={"help": "retriever similarity dot|cosine (default: the backbone's)"})
    reranker_pooling: str = field(default="mean", metadata={"help": "re-ranker pooling cls|mean"})
    query_max_length: int = 64
    passage_max_length: int = field(default=256, metadata={"help": "retriever passage length at inference"})
    train_passage_max_length: int = field(default=128, metadata={"help": "retriever passage length in training lists"})
    reranker_max_length: int = 128
    attention_dropout: float | None = field(
        default=0.0, metadata={"help": "attention dropout of both backbones (None: keep theirs); 0 halves CPU step time"}
    )

    def __post_init__(self):
        for name in ("query_max_length", "passage_max_length", "train_passage_max_length", "reranker_max_length"):
            _require(getattr(self, name) > 0, name, f"must be > 0, got {getattr(self, name)}")
        _require(
            self.attention_dropout is None or 0 <= self.attention_dropout < 1,
            "attention_dropout",
            f"must be in [0, 1), got {self.attention_dropout}",
        )


@dataclass
class DataArguments:
    """Training lists and the evaluation split."""

    data: str = field(default="scifact", metadata={"help": "BEIR / MS MARCO / DPR folder, bundled name or Hub dataset"})
    train_split: str = "train"
    eval_split: str | None = field(default="test", metadata={"help": "split evaluated after training (none: skip)"})
    train_instances: str | None = field(default=None, metadata={"help": "saved listwise instances (datasets folder) instead of BM25 lists"})
    negatives: str = field(
        default="auto",
        metadata={"help": "bm25 | data (the data's own hard negatives: DPR's hard_negative_ctxs) | a triples file "
                          "(MS MARCO triples.train.small.tsv or qidpidtriples); auto: the data's own when it has them, else bm25"},
    )
    max_triples: int | None = field(default=None, metadata={"help": "read only the first N lines of a triples file"})
    list_size: int = field(default=4, metadata={"help": "m: passages per query list (1 positive + m-1 negatives)"})
    negatives_top_n: int = field(default=50, metadata={"help": "BM25 depth the negatives are drawn from"})
    max_train_queries: int | None = field(default=None, metadata={"help": "use only the first N training queries"})

    def __post_init__(self):
        _require(self.list_size >= 2, "list_size", f"must be >= 2 (a positive and a negative), got {self.list_size}")
        _require(self.negatives_top_n >= 1, "negatives_top_n", f"must be >= 1, got {self.negatives_top_n}")
        if self.eval_split in ("", "none", "None"):
            self.eval_split = None


@dataclass
class LossArguments:
    """Dynamic listwise distillation (see ``modeling_rq2.losses``)."""

    direction: str = field(default="retriever_to_reranker", metadata={"help": f"KL direction: {DIRECTIONS}"})
    reranker_kl_gradient: bool = field(default=True, metadata={"help": "the KL also trains the re-ranker (paper: yes)"})
    reduction: str = field(default="query", metadata={"help": f"KL reduction: {REDUCTIONS}"})
    static: bool = field(default=False, metadata={"help": "frozen re-ranker teacher (static-distillation ablation)"})
    kl_weight: float = 1.0
    supervised_weight: float = 1.0
    retriever_supervised_weight: float = field(default=1.0, metadata={"help": "extra listwise CE on the retriever (paper: 0)"})
    in_batch_negatives: bool = field(default=True, metadata={"help": "the retriever CE also ranks the other lists' passages"})
    kl_warmup_ratio: float = field(
        default=0.5, metadata={"help": "share of joint steps in which the KL trains only the re-ranker (paper: 0)"}
    )
    retriever_temperature: float | None = field(default=None, metadata={"help": "t_de (default: 1 for dot, 0.05 for cosine)"})
    reranker_temperature: float = 1.0

    def __post_init__(self):
        _require(self.direction in DIRECTIONS, "direction", f"must be one of {DIRECTIONS}, got {self.direction!r}")
        _require(self.reduction in REDUCTIONS, "reduction", f"must be one of {REDUCTIONS}, got {self.reduction!r}")
        for name in ("kl_weight", "supervised_weight", "retriever_supervised_weight"):
            _require(getattr(self, name) >= 0, name, f"must be >= 0, got {getattr(self, name)}")
        _require(0 <= self.kl_warmup_ratio <= 1, "kl_warmup_ratio", f"must be in [0, 1], got {self.kl_warmup_ratio}")
        for name in ("retriever_temperature", "reranker_temperature"):
            value = getattr(self, name)
            _require(value is None or value > 0, name, f"must be > 0, got {value}")

    def loss_options(self, retriever_temperature: float) -> dict:
        """Keyword arguments of ``listwise_distillation_loss``."""
        return dict(
            direction=self.direction,
            reranker_kl_gradient=self.reranker_kl_gradient,
            reduction=self.reduction,
            static=self.static,
            kl_weight=self.kl_weight,
            supervised_weight=self.supervised_weight,
            retriever_temperature=retriever_temperature,
            reranker_temperature=self.reranker_temperature,
        )


@dataclass
class JointTrainingArguments:
    """Optimisation, schedule, checkpoints, logging."""

    output_dir: str = "outputs/scifact"
    epochs: int = field(default=3, metadata={"help": "joint epochs (3: bench/results/quality.md, SciFact: retriever 0.694 -> 0.733, re-ranked 0.657 -> 0.728 nDCG@10 from 1 to 3)"})
    warmup_epochs: int = field(default=0, metadata={"help": "epochs training each model alone before joint training"})
    max_steps: int | None = field(default=None, metadata={"help": "stop after this many optimizer steps"})
    batch_size: int = field(default=8, metadata={"help": "queries per device per step"})
    gradient_accumulation_steps: int = 1
    retriever_lr: float = 2e-5
    reranker_lr: float = 5e-5
    reranker_head_lr: float = 1e-3
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    lr_scheduler: str = field(default="constant_with_warmup", metadata={"help": "constant_with_warmup | linear | constant"})
    warmup_ratio: float = 0.1
    mixed_precision: str = field(default="no", metadata={"help": "no | bf16 | fp16"})
    gradient_checkpointing: bool = False
    seed: int = 42
    logging_steps: int = 10
    save_steps: int = field(default=50, metadata={"help": "checkpoint every N optimizer steps (0: never)"})
    save_total_limit: int = 2
    resume_from_checkpoint: str | None = field(default=None, metadata={"help": "'latest' or a checkpoint folder"})
    report_to: str = field(default="tensorboard", metadata={"help": "Accelerate tracker: tensorboard | wandb | ... | none"})
    eval_steps: int = field(default=0, metadata={"help": "evaluate on the eval split every N optimizer steps (0: only at the end)"})
    eval_top_k: int = 100
    ddp_timeout: int = field(
        default=1800,
        metadata={"help": "seconds processes wait for each other (the main one alone evaluates and augments: raise it for big corpora)"},
    )
    rerank_top_k: int = 20
    fusion: float = field(default=0.5, metadata={"help": "also evaluate the head ordered by (1-a) z(reranker) + a z(retriever); 0: off"})
    eval_batch_size: int = 64

    def __post_init__(self):
        _require(self.epochs >= 0, "epochs", f"must be >= 0, got {self.epochs}")
        _require(self.epochs + self.warmup_epochs >= 1, "epochs", "epochs + warmup_epochs must be >= 1")
        for name in ("batch_size", "gradient_accumulation_steps", "logging_steps", "eval_top_k", "eval_batch_size"):
            _require(getattr(self, name) >= 1, name, f"must be >= 1, got {getattr(self, name)}")
        for name in ("warmup_epochs", "save_steps", "save_total_limit", "rerank_top_k", "eval_steps"):
            _require(getattr(self, name) >= 0, name, f"must be >= 0, got {getattr(self, name)}")
        for name in ("retriever_lr", "reranker_lr", "reranker_head_lr"):
            _require(getattr(self, name) > 0, name, f"must be > 0, got {getattr(self, name)}")
        _require(0 <= self.fusion <= 1, "fusion", f"must be in [0, 1], got {self.fusion}")
        _require(self.rerank_top_k <= self.eval_top_k, "rerank_top_k", f"must be <= --eval_top_k {self.eval_top_k}, got {self.rerank_top_k}")
        _require(self.max_steps is None or self.max_steps >= 1, "max_steps", f"must be >= 1, got {self.max_steps}")
        _require(0 <= self.warmup_ratio < 1, "warmup_ratio", f"must be in [0, 1), got {self.warmup_ratio}")
        _require(self.mixed_precision in ("no", "bf16", "fp16"), "mixed_precision", f"must be no|bf16|fp16, got {self.mixed_precision!r}")
        _require(
            self.lr_scheduler in ("constant_with_warmup", "linear", "constant"),
            "lr_scheduler",
            f"must be constant_with_warmup|linear|constant, got {self.lr_scheduler!r}",
        )


ARGUMENT_CLASSES = (ModelArguments, DataArguments, LossArguments, JointTrainingArguments, AugmentationArguments)


class JointModel(nn.Module):
    """Both models in one module: ``forward`` scores a batch of lists with each."""

    def __init__(self, retriever: RQ2Retriever, reranker: RQ2Reranker):
        super().__init__()
        self.retriever, self.reranker = retriever, reranker

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[RQ2RetrieverOutput, torch.Tensor]:
        """(retriever output with (batch, m) scores and embeddings, re-ranker logits (batch, m))."""
        pick = lambda prefix: {k[len(prefix):]: v for k, v in batch.items() if k.startswith(prefix)}  # noqa: E731
        queries, passages = pick("query_"), pick("passage_")
        retriever_output = self.retriever(
            query_input_ids=queries["input_ids"],
            passage_input_ids=passages["input_ids"],
            query_attention_mask=queries.get("attention_mask"),
            passage_attention_mask=passages.get("attention_mask"),
            query_token_type_ids=queries.get("token_type_ids"),
            passage_token_type_ids=passages.get("token_type_ids"),
        )
        reranker_scores = self.reranker(**pick("pair_")).logits
        return retriever_output, reranker_scores


def in_batch_scores(output: RQ2RetrieverOutput, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each query against every passage of the batch: scores (batch, batch*m), labels, mask."""
    batch, m = mask.shape
    scores = output.query_embeddings @ output.passage_embeddings.reshape(batch * m, -1).T
    labels = torch.arange(batch, device=scores.device) * m
    return scores, labels, mask.reshape(1, -1).expand(batch, -1)


def step_losses(
    retriever_output: RQ2RetrieverOutput,
    reranker_scores: torch.Tensor,
    mask: torch.Tensor,
    phase: str,
    teacher_phase: bool,
    loss_args: LossArguments,
    retriever_temperature: float,
) -> dict[str, torch.Tensor]:
    """The loss to optimise (``loss``) and its logged parts for one batch of lists.

    ``warmup``: each model alone, listwise CE on the labels. ``joint``: dynamic listwise distillation
    (the KL reaches the retriever only after the teacher phase) plus the optional retriever CE.
    """
    if loss_args.in_batch_negatives:
        ce_scores, ce_labels, ce_mask = in_batch_scores(retriever_output, mask)
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


def _param_groups(joint: JointModel, args: JointTrainingArguments) -> list[dict]:
    """AdamW groups: retriever / re-ranker encoder / re-ranker head learning rates; no decay on norms and biases."""
    groups = []
    parts = (
        ("retriever", joint.retriever, args.retriever_lr, lambda n: True),
        ("reranker", joint.reranker, args.reranker_lr, lambda n: not n.startswith("classifier.")),
        ("reranker_head", joint.reranker, args.reranker_head_lr, lambda n: n.startswith("classifier.")),
    )
    for name, module, lr, keep in parts:
        named = [(n, p) for n, p in module.named_parameters() if p.requires_grad and keep(n)]
        no_decay = lambda n: n.endswith("bias") or "LayerNorm" in n or "layer_norm" in n or ".norm" in n  # noqa: E731
        for decay in (True, False):
            params = [p for n, p in named if no_decay(n) != decay]
            if params:
                groups.append({"params": params, "lr": lr, "weight_decay": args.weight_decay if decay else 0.0, "name": name})
    return groups


def _checkpoints(folder: Path) -> list[Path]:
    """Complete checkpoints (with their progress file), oldest first."""
    found = [p for p in folder.glob(f"{CHECKPOINT_PREFIX}*") if (p / PROGRESS_FILE).is_file()]
    return sorted(found, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX):]))


def resolve_checkpoint(output_dir: str, resume: str | None) -> Path | None:
    """``latest`` -> newest complete checkpoint of the run (None if there is none); a path must be complete."""
    if resume is None:
        return None
    if resume == "latest":
        found = _checkpoints(Path(output_dir) / "checkpoints")
        return found[-1] if found else None
    path = Path(resume)
    if not (path / PROGRESS_FILE).is_file():
        raise ValueError(f"--resume_from_checkpoint {resume}: not a complete checkpoint (no {PROGRESS_FILE})")
    return path


def _check_writable(output_dir: str) -> None:
    """Fail before any work when the output folder cannot be created or written."""
    try:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        probe = Path(output_dir) / f".write-test-{os.getpid()}"
        probe.write_text("ok", encoding="utf-8")
        probe.unlink()
    except OSError as err:
        raise OSError(f"--output_dir {output_dir}: cannot write there ({err.strerror or err})") from err


def save_checkpoint(accelerator: Accelerator, output_dir: str, progress: dict, keep: int) -> Path:
    """``save_state`` into a temporary folder, then rename: a half-written checkpoint is never taken as complete.

    Older checkpoints are pruned only after the new one is complete; a failed write (disk full,
    permissions) removes its temporary folder and leaves the last complete checkpoint as it was.
    """
    root = Path(output_dir) / "checkpoints"
    final = root / f"{CHECKPOINT_PREFIX}{progress['global_step']}"
    tmp = root / f".tmp-{final.name}"
    try:
        if accelerator.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        accelerator.wait_for_everyone()
        accelerator.save_state(str(tmp))
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            with open(tmp / PROGRESS_FILE, "w", encoding="utf-8") as f:
                json.dump(progress, f)
                f.flush()
                os.fsync(f.fileno())
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        complete = _checkpoints(root)
        last = f"the last complete one, {complete[-1]}, is intact" if complete else "no earlier checkpoint exists"
        raise OSError(f"could not write checkpoint {final} ({err.strerror or err}); {last}") from err
    if accelerator.is_main_process:
        for old in _checkpoints(root)[:-keep] if keep else []:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def _save_model(model: nn.Module, folder: Path) -> None:
    """``save_pretrained`` into a temporary folder renamed into place: never a half-written model folder."""
    tmp = folder.with_name(f".tmp-{folder.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)


class StopRequest:
    """SIGINT / SIGTERM ask the loop to checkpoint and exit after the current optimizer step.

    The first signal sets a flag and restores the previous handlers, so a second Ctrl-C stops at once.
    """

    def __init__(self):
        self.signal: int | None = None
        self._previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, frame) -> None:
        self.signal = signum
        self.restore()

    def restore(self) -> None:
        """Put the handlers that were there before back."""
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def requested(self, accelerator: Accelerator) -> bool:
        """Whether any process got a signal (all processes agree, so they stop at the same step)."""
        flag = torch.tensor([float(self.signal is not None)], device=accelerator.device)
        return bool((accelerator.gather(flag) if accelerator.num_processes > 1 else flag).max() > 0)


def _evaluate(accelerator: Accelerator, joint: nn.Module, evaluation, args: "JointTrainingArguments", step: int) -> dict:
    """Retriever (and re-ranker on its top-k) metrics on the eval split, computed on the main process and logged."""
    results = {}
    if accelerator.is_main_process:
        model = accelerator.unwrap_model(joint)
        results, _, _ = evaluate_retrieval(
            model.retriever, evaluation, model.reranker, args.eval_top_k, args.rerank_top_k, evaluation.metrics,
            args.eval_batch_size, args.fusion,
        )
        accelerator.log({f"eval/{s}/{m}": v for s, r in results.items() for m, v in r.items()}, step=step)
        print(f"step {step}:\n{markdown_table(results, list(evaluation.metrics))}")
    accelerator.wait_for_everyone()
    return results


def _hardware(accelerator: Accelerator) -> dict:
    """Where the run ran, for the cards: device name, process count, precision."""
    if accelerator.device.type == "cuda":
        device = f"{accelerator.num_processes} x {torch.cuda.get_device_name(accelerator.device)}"
    else:
        device = f"{accelerator.device.type.upper()} ({os.cpu_count()} cores, {torch.get_num_threads()} threads per process)"
    return {"device": device, "processes": accelerator.num_processes, "mixed_precision": accelerator.mixed_precision}


def _prepare_lists(data_args: DataArguments, args: "JointTrainingArguments", accelerator: Accelerator):
    """Training instances (BM25 negatives unless saved instances are given) and the eval split.

    Settings that the data make impossible (lists or top-k larger than the corpus) fail here, before any model loads.
    """
    with accelerator.main_process_first():
        train = load_data(data_args.data, data_args.train_split)
        size = len(train.corpus)
        _require(data_args.list_size <= size, "list_size", f"{data_args.list_size} is more than the {size} passages of {train.name}")
        if data_args.train_instances:
            instances = load_instances(data_args.train_instances)
        else:
            instances = build_instances(train, _negatives(train, data_args))
        if data_args.max_train_queries:
            instances = instances.select(range(min(data_args.max_train_queries, len(instances))))
        evaluation = load_data(data_args.data, data_args.eval_split) if data_args.eval_split else None
    if evaluation is not None:
        _require(args.eval_top_k <= len(evaluation.corpus), "eval_top_k",
                 f"{args.eval_top_k} is more than the {len(evaluation.corpus)} passages of {evaluation.name}")
        check_cutoffs(evaluation.metrics, args.eval_top_k, len(evaluation.corpus), "--eval_top_k")
    return instances, CorpusPassages(train.corpus), evaluation


def _negatives(train, data_args: DataArguments) -> dict[str, list[str]]:
    """Hard negatives per query: the data's own, a triples file's, or BM25's top ``negatives_top_n``."""
    source = data_args.negatives
    if source == "data" or (source == "auto" and train.negatives is not None):
        _require(train.negatives is not None, "negatives", f"{train.name}/{train.split} ships no hard negatives: use bm25 or a triples file")
        return train.negatives
    if source not in ("auto", "bm25"):
        _require(Path(source).is_file(), "negatives", f"{source}: not bm25, data, auto or a triples file")
        return read_triples(source, train, data_args.max_triples)
    _require(data_args.negatives_top_n < len(train.corpus), "negatives_top_n",
             f"must be below the corpus size {len(train.corpus)}, got {data_args.negatives_top_n}")
    return bm25_negatives(train, data_args.negatives_top_n)


def train(
    model_args: ModelArguments,
    data_args: DataArguments,
    loss_args: LossArguments,
    args: JointTrainingArguments,
) -> dict:
    """Run joint training end to end; returns the metrics also written to ``OUTPUT/metrics.json``."""
    started = time.perf_counter()
    accelerator = Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        log_with=None if args.report_to == "none" else args.report_to,
        project_config=ProjectConfiguration(project_dir=args.output_dir, logging_dir=os.path.join(args.output_dir, "logs")),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=args.seed),
        kwargs_handlers=[InitProcessGroupKwargs(timeout=timedelta(seconds=args.ddp_timeout))],
    )
    set_seed(args.seed)
    _check_writable(args.output_dir)
    instances, passages, evaluation = _prepare_lists(data_args, args, accelerator)

    overrides = {
        "shared_towers": model_args.shared_towers,
        "query_max_length": model_args.query_max_length,
        "passage_max_length": model_args.passage_max_length,
    }
    overrides.update({k: v for k, v in (("pooling", model_args.pooling), ("similarity", model_args.similarity)) if v})
    encoder_overrides = (
        None if model_args.attention_dropout is None else {"attention_probs_dropout_prob": model_args.attention_dropout}
    )
    retriever = load_retriever(model_args.retriever, encoder_overrides, **overrides)
    reranker = load_reranker(
        model_args.reranker, encoder_overrides, pooling=model_args.reranker_pooling, max_length=model_args.reranker_max_length
    )
    if loss_args.static:
        reranker.requires_grad_(False)
    if args.gradient_checkpointing:
        for model in (retriever, reranker):  # transformers v5 renamed gradient to activation checkpointing
            if hasattr(model, "activation_checkpointing_enable"):
                model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
            else:
                model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    retriever_temperature = loss_args.retriever_temperature or (0.05 if retriever.config.similarity == "cosine" else 1.0)

    dataset = ListwiseDataset(instances, passages, data_args.list_size, seed=args.seed)
    loader = DataLoader(
        dataset,
        batch_size=args.batch_size,
        shuffle=True,
        collate_fn=ListwiseCollator(retriever, reranker, data_args.list_size, model_args.train_passage_max_length),
    )
    joint = JointModel(retriever, reranker)
    optimizer = torch.optim.AdamW(_param_groups(joint, args))
    steps_per_epoch = math.ceil(len(loader) / accelerator.num_processes / args.gradient_accumulation_steps)
    total_epochs = args.warmup_epochs + args.epochs
    total_steps = min(steps_per_epoch * total_epochs, args.max_steps or math.inf)
    scheduler = get_scheduler(
        args.lr_scheduler,
        optimizer,
        num_warmup_steps=0 if args.lr_scheduler == "constant" else int(args.warmup_ratio * total_steps),
        num_training_steps=total_steps,
    )
    joint, optimizer, loader, scheduler = accelerator.prepare(joint, optimizer, loader, scheduler)

    config = {cls.__name__: asdict(a) for cls, a in zip(ARGUMENT_CLASSES, (model_args, data_args, loss_args, args))}
    if accelerator.is_main_process:
        Path(args.output_dir).mkdir(parents=True, exist_ok=True)
        (Path(args.output_dir) / "training_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    accelerator.init_trackers("rq2", config={f"{k}.{n}": str(v) for k, a in config.items() for n, v in a.items()})

    progress = {"epoch": 0, "step_in_epoch": 0, "global_step": 0}
    earlier_seconds = 0.0  # training time of the runs a resumed one continues (kept in each checkpoint)
    checkpoint = resolve_checkpoint(args.output_dir, args.resume_from_checkpoint)
    if checkpoint is not None:
        accelerator.load_state(str(checkpoint))
        progress = json.loads((checkpoint / PROGRESS_FILE).read_text(encoding="utf-8"))
        earlier_seconds = progress.pop("seconds", 0.0)
        accelerator.print(f"resumed from {checkpoint} (step {progress['global_step']})")

    log_path = Path(args.output_dir) / "train_log.jsonl"
    bar = tqdm(total=total_steps, initial=progress["global_step"], disable=not accelerator.is_local_main_process, desc="training")
    window, window_start, last = [], time.perf_counter(), {}
    done = progress["global_step"] >= total_steps
    joint_start = min(steps_per_epoch * args.warmup_epochs, total_steps)
    kl_warmup_end = joint_start + int(loss_args.kl_warmup_ratio * (total_steps - joint_start))
    stop = StopRequest()
    try:
        for epoch in range(progress["epoch"], total_epochs):
            if done:
                break
            phase = "warmup" if epoch < args.warmup_epochs else "joint"
            dataset.set_epoch(epoch)
            loader.set_epoch(epoch)
            skip = progress["step_in_epoch"] if epoch == progress["epoch"] else 0
            batches = accelerator.skip_first_batches(loader, skip) if skip else loader
            joint.train()
            for batch_index, batch in enumerate(batches, start=skip):
                # dropout draws from a seed of its own per batch, so a resumed run repeats them exactly
                torch.manual_seed(args.seed + 1_000_003 * epoch + 1_009 * batch_index + accelerator.process_index)
                with accelerator.accumulate(joint):
                    retriever_output, reranker_scores = joint(batch)
                    teacher_phase = progress["global_step"] < kl_warmup_end
                    parts = step_losses(
                        retriever_output, reranker_scores, batch["list_mask"], phase, teacher_phase, loss_args, retriever_temperature
                    )
                    finite = torch.isfinite(parts["loss"].detach()).float().reshape(1)
                    if accelerator.num_processes > 1:  # every process stops together, none waits forever in backward
                        finite = accelerator.gather(finite).min()
                    if not finite:
                        raise FloatingPointError(
                            f"non-finite loss ({ {k: round(v.item(), 4) for k, v in parts.items()} }) at step "
                            f"{progress['global_step'] + 1}: stopped before the weights were touched; try a lower learning "
                            "rate, --max_grad_norm, or --mixed_precision no, and resume from the last checkpoint"
                        )
                    accelerator.backward(parts["loss"])
                    if accelerator.sync_gradients and args.max_grad_norm > 0:
                        accelerator.clip_grad_norm_(joint.parameters(), args.max_grad_norm)
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad()
                window.append({k: v.detach().float() for k, v in parts.items()})
                progress.update(epoch=epoch, step_in_epoch=batch_index + 1)
                if not accelerator.sync_gradients:
                    continue
                progress["global_step"] += 1
                bar.update(1)
                step = progress["global_step"]
                if step % args.logging_steps == 0 or step == total_steps:
                    elapsed = time.perf_counter() - window_start
                    last = {k: accelerator.gather(torch.stack([w[k] for w in window])).mean().item() for k in window[0]}
                    last.update(
                        phase=phase,
                        epoch=epoch,
                        **{f"lr_{g['name']}": g["lr"] for g in optimizer.param_groups},
                        queries_per_s=len(window) * args.batch_size * accelerator.num_processes / elapsed,
                    )
                    accelerator.log({k: v for k, v in last.items() if k != "phase"}, step=step)
                    bar.set_postfix(loss=f"{last['loss']:.3f}", sup=f"{last['supervised']:.3f}", kl=f"{last.get('kl', 0):.3f}")
                    if accelerator.is_main_process:
                        with open(log_path, "a", encoding="utf-8") as f:
                            f.write(json.dumps({"step": step, **last}) + "\n")
                    window, window_start = [], time.perf_counter()
                if args.eval_steps and evaluation is not None and step % args.eval_steps == 0 and step < total_steps:
                    _evaluate(accelerator, joint, evaluation, args, step)
                stopping = stop.requested(accelerator) and step < total_steps
                if stopping or (args.save_steps and step % args.save_steps == 0):
                    seconds = round(earlier_seconds + time.perf_counter() - started, 1)
                    saved = save_checkpoint(accelerator, args.output_dir, {**progress, "seconds": seconds}, args.save_total_limit)
                if stopping:
                    accelerator.print(f"\nstopped by a signal at step {step}; saved {saved}; continue with --resume_from_checkpoint latest")
                    accelerator.end_training()
                    raise SystemExit(128 + (stop.signal or signal.SIGTERM))
                if step >= total_steps:
                    done = True
                    break
            else:
                progress.update(epoch=epoch + 1, step_in_epoch=0)
    finally:
        stop.restore()
        bar.close()
    train_seconds = earlier_seconds + time.perf_counter() - started

    model = accelerator.unwrap_model(joint)
    metrics = {"train": {"steps": progress["global_step"], "seconds": round(train_seconds, 1), "last_log": last}}
    output = Path(args.output_dir)
    if accelerator.is_main_process:
        _save_model(model.retriever, output / "retriever")
        _save_model(model.reranker, output / "reranker")
    if evaluation is not None:
        eval_started = time.perf_counter()
        results = _evaluate(accelerator, joint, evaluation, args, progress["global_step"])
        metrics["eval"] = {"dataset": evaluation.name, "split": evaluation.split, "results": results,
                           "seconds": round(time.perf_counter() - eval_started, 1)}
        if accelerator.is_main_process and len(evaluation.corpus) <= BM25_BASELINE_MAX_PASSAGES:
            # the lexical baseline of the same queries, for the cards (seconds on small corpora)
            metrics["eval"]["baselines"] = {"BM25 (bm25s)": bm25_baseline(evaluation, evaluation.metrics, args.eval_top_k)}
    metrics["hardware"] = _hardware(accelerator)
    if accelerator.is_main_process:
        metrics["seconds_total"] = round(time.perf_counter() - started, 1)
        (output / "metrics.json").write_text(json.dumps(metrics, indent=2), encoding="utf-8")
        write_cards(output)
        print(f"wrote {output}/retriever, {output}/reranker (with model cards) and metrics.json in {metrics['seconds_total']} s")
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return metrics


def _typed(path: Path, key: str, annotation, value):
    """A config file's value checked against the field's type (YAML may give numbers as strings: '1e-5')."""
    allowed = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (annotation,)
    if value is None and type(None) in allowed:
        return None
    for kind in allowed:
        if kind is bool and (isinstance(value, bool) or str(value).lower() in ("true", "false")):
            return value if isinstance(value, bool) else str(value).lower() == "true"
        if kind in (int, float) and not isinstance(value, (bool, list, dict)):
            try:
                converted = kind(value)
            except (TypeError, ValueError):
                continue
            if kind is int and isinstance(value, float) and converted != value:
                continue
            return converted
        if kind is str and isinstance(value, str):
            return value
        if typing.get_origin(kind) is list and isinstance(value, list):
            return value
    names = " or ".join(getattr(k, "__name__", str(k)) for k in allowed)
    raise ValueError(f"{path}: {key} must be {names}, got {value!r}")


def parse_arguments(
    argv: list[str],
) -> tuple[ModelArguments, DataArguments, LossArguments, JointTrainingArguments, AugmentationArguments]:
    """Command-line flags, optionally after a YAML/JSON config file whose values they override.

    Unknown keys and invalid values raise before any data or model is loaded.
    """
    import yaml
    from transformers import HfArgumentParser

    parser = HfArgumentParser(ARGUMENT_CLASSES)
    if argv and argv[0].endswith((".yaml", ".yml", ".json")):
        path, argv = Path(argv[0]), argv[1:]
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} not found")
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(values, dict):
            raise ValueError(f"{path}: expected a mapping of argument names to values")
        known = {name: kind for cls in ARGUMENT_CLASSES for name, kind in typing.get_type_hints(cls).items()}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(f"{path}: unknown keys {unknown}")
        parser.set_defaults(**{key: _typed(path, key, known[key], value) for key, value in values.items()})
    return tuple(parser.parse_args_into_dataclasses(args=argv))
