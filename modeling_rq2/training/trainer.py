"""Joint training of the retriever and the re-ranker (RocketQAv2) on Accelerate: ``JointTrainer``.

Read top-down: the constructor sets up the run (accelerator, data, models, optimiser, schedule, resume), ``train``
is a flat loop of ``training_step`` (one batch of lists through both models and the loss) and
``on_optimizer_step`` (log, evaluate, checkpoint, stop), and ``finish`` saves the models, evaluates them and writes
``metrics.json`` and the model cards. A ``Schedule`` knows the phases: each model alone (``warmup_epochs``), then
joint training whose first ``kl_warmup_ratio`` lets the KL train only the re-ranker.
"""

import json
import math
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path

import datasets
import torch
from accelerate import Accelerator
from accelerate.utils import (
    DataLoaderConfiguration,
    GradientAccumulationPlugin,
    InitProcessGroupKwargs,
    ProjectConfiguration,
    set_seed,
)
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import PreTrainedModel, get_scheduler

from ..data import RetrievalData, hold_out, load_data
from ..data.corpus import CorpusPassages
from ..evaluation.evaluate import bm25_baseline, check_cutoffs, evaluate_retrieval
from ..evaluation.systems import BM25, by_name, markdown_table
from ..hub.model_card import framework_versions, write_cards
from ..models.loading import load_reranker, load_retriever
from ..models.modeling_rq2 import RQ2Reranker, RQ2Retriever
from .arguments import (
    HELDOUT,
    DataArguments,
    JointTrainingArguments,
    ModelArguments,
    RunConfig,
    check_previous_run,
    check_resumed_settings,
    check_setting,
    deciding_settings,
)
from .checkpoints import Progress, StopRequest, check_writable, resolve_checkpoint, save_checkpoint, save_model
from .collator import ListwiseBatch, ListwiseCollator
from .joint import JointModel, step_losses
from .lists import ListwiseDataset, training_instances
from .plan import describe as describe_plan
from .plan import make_plan, write_plan

BM25_BASELINE_MAX_PASSAGES = 1_000_000  # beyond, the in-run BM25 baseline would cost more than it tells


@dataclass(frozen=True)
class Schedule:
    """The run's optimizer steps and phases: ``warmup_epochs`` of each model alone, then joint epochs, whose steps
    before ``kl_warmup_end`` let the KL train only the re-ranker (the retriever is its teacher)."""

    steps_per_epoch: int
    warmup_epochs: int
    total_epochs: int
    total_steps: int
    kl_warmup_end: int

    @classmethod
    def plan(
        cls, *, batches_per_epoch: int, num_processes: int, args: JointTrainingArguments, kl_warmup_ratio: float
    ) -> "Schedule":
        """The schedule of ``args`` for a data loader of ``batches_per_epoch`` batches (before sharding)."""
        steps_per_epoch = math.ceil(batches_per_epoch / num_processes / args.gradient_accumulation_steps)
        total_epochs = args.warmup_epochs + args.epochs
        total_steps = min(steps_per_epoch * total_epochs, args.max_steps or math.inf)
        joint_start = min(steps_per_epoch * args.warmup_epochs, total_steps)
        kl_warmup_end = joint_start + int(kl_warmup_ratio * (total_steps - joint_start))
        return cls(steps_per_epoch, args.warmup_epochs, total_epochs, total_steps, kl_warmup_end)

    def phase(self, epoch: int) -> str:
        """``warmup`` (each model alone on the labels) or ``joint``."""
        return "warmup" if epoch < self.warmup_epochs else "joint"

    def teacher_phase(self, global_step: int) -> bool:
        """Whether the KL trains only the re-ranker at this step."""
        return global_step < self.kl_warmup_end


@dataclass
class TrainingData:
    """What a run reads: its instances, the passages they name, and the split evaluated (None: none)."""

    instances: datasets.Dataset
    passages: CorpusPassages
    evaluation: RetrievalData | None


def training_split(data_args: DataArguments) -> tuple[RetrievalData, RetrievalData | None]:
    """The split the models train on, and the queries ``--heldout_queries`` carves out of it (None without)."""
    train = load_data(data_args.data, data_args.train_split)
    if not data_args.heldout_queries:
        return train, None
    return hold_out(train, data_args.heldout_queries, seed=data_args.heldout_seed)


def prepare_data(data_args: DataArguments, args: JointTrainingArguments, accelerator: Accelerator) -> TrainingData:
    """Training instances and the eval split (the main process first: it fills the datasets cache).

    Settings that the data make impossible (lists or top-k larger than the corpus) fail here, before any model loads.
    """
    with accelerator.main_process_first():
        train, heldout = training_split(data_args)
        size = len(train.corpus)
        check_setting(
            data_args.list_size <= size,
            "list_size",
            f"{data_args.list_size} is more than the {size} passages of {train.name}",
        )
        instances = training_instances(train, data_args)
        evaluation = (
            (heldout if data_args.eval_split == HELDOUT else load_data(data_args.data, data_args.eval_split))
            if data_args.eval_split
            else None
        )
    if evaluation is not None:
        check_setting(
            args.top_k <= len(evaluation.corpus),
            "top_k",
            f"{args.top_k} is more than the {len(evaluation.corpus)} passages of {evaluation.name}",
        )
        check_cutoffs(evaluation.metrics, args.top_k, len(evaluation.corpus), flag="--top_k")
    return TrainingData(instances, CorpusPassages(train.corpus), evaluation)


def load_models(
    model_args: ModelArguments, *, static: bool, gradient_checkpointing: bool
) -> tuple[RQ2Retriever, RQ2Reranker]:
    """Both models to train, with the run's input settings (a ``static`` re-ranker is frozen)."""
    overrides = {
        "shared_towers": model_args.shared_towers,
        "query_max_length": model_args.query_max_length,
        "passage_max_length": model_args.passage_max_length,
    }
    overrides.update({k: v for k, v in (("pooling", model_args.pooling), ("similarity", model_args.similarity)) if v})
    input_format = {"input_format": model_args.input_format} if model_args.input_format else {}
    overrides.update(input_format)
    encoder_overrides = (
        None if model_args.attention_dropout is None else {"attention_probs_dropout_prob": model_args.attention_dropout}
    )
    retriever = load_retriever(model_args.retriever, encoder_overrides, **overrides)
    reranker = load_reranker(
        model_args.reranker,
        encoder_overrides,
        pooling=model_args.reranker_pooling,
        max_length=model_args.reranker_max_length,
        **input_format,
    )
    if static:
        reranker.requires_grad_(False)
    if gradient_checkpointing:
        for model in (retriever, reranker):  # transformers v5 renamed gradient to activation checkpointing
            if hasattr(model, "activation_checkpointing_enable"):
                model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
            else:
                model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return retriever, reranker


def param_groups(joint: JointModel, args: JointTrainingArguments) -> list[dict]:
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
                groups.append(
                    {"params": params, "lr": lr, "weight_decay": args.weight_decay if decay else 0.0, "name": name}
                )
    return groups


def hardware(accelerator: Accelerator, precision: str) -> dict:
    """Where the run ran, for the cards: device name, process count, training precision and the evaluation's
    (``precision``, resolved from ``auto`` when the arguments were parsed)."""
    if accelerator.device.type == "cuda":
        device = f"{accelerator.num_processes} x {torch.cuda.get_device_name(accelerator.device)}"
    else:
        device = (
            f"{accelerator.device.type.upper()} ({os.cpu_count()} cores, {torch.get_num_threads()} threads per process)"
        )
    return {
        "device": device,
        "processes": accelerator.num_processes,
        "mixed_precision": accelerator.mixed_precision,
        "evaluation_precision": precision,
        "versions": framework_versions(),
    }


@contextmanager
def training_attention(model: torch.nn.Module, device: torch.device, mixed_precision: str) -> Iterator[None]:
    """The attention of ``model``'s training steps: on the CPU under bf16 / fp16 autocast, transformers' eager attention
    (two matmuls and a softmax), as PyTorch's attention kernels are slow there in half precision (an AMX Xeon: the
    fused kernel's backward ran 5.5x its fp32 time, the math kernel's safe softmax held the bf16 step at 1.59x the
    fp32 speed; with eager attention 2.35x, 1.38x the math kernel: bench/results/speed-eager-amx-1thread.md); elsewhere
    the models' own. Restored on exit (in the order set:
    a composite config passes its value to its sub-configs, then each tower takes back its own), so evaluation keeps
    the models' attention."""
    half_on_cpu = device.type == "cpu" and mixed_precision in ("bf16", "fp16")
    models = model.modules() if half_on_cpu else ()
    configs = [module.config for module in models if isinstance(module, PreTrainedModel)]
    kept = [config._attn_implementation for config in configs]
    try:
        for config in configs:
            config._attn_implementation = "eager"
        yield
    finally:
        for config, implementation in zip(configs, kept, strict=True):
            config._attn_implementation = implementation


def _accelerator(args: JointTrainingArguments) -> Accelerator:
    return Accelerator(  # a plugin, as the steps in the environment would override a plain argument
        gradient_accumulation_plugin=GradientAccumulationPlugin(num_steps=args.gradient_accumulation_steps),
        mixed_precision=args.mixed_precision,
        log_with=None if args.report_to == "none" else args.report_to,
        project_config=ProjectConfiguration(
            project_dir=args.output_dir, logging_dir=os.path.join(args.output_dir, "logs")
        ),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=args.seed),
        kwargs_handlers=[InitProcessGroupKwargs(timeout=timedelta(seconds=args.ddp_timeout))],
    )


class JointTrainer:
    """One training run of ``config``: ``JointTrainer(config).train()`` then ``.finish()`` (see the module doc)."""

    def __init__(self, config: RunConfig):
        self.config, args = config, config.training
        self.started = time.perf_counter()
        self.accelerator = _accelerator(args)
        set_seed(args.seed)
        check_writable(args.output_dir)
        checkpoint = None if args.plan else self._checkpoint_to_resume()  # before the data: refusals come first
        if checkpoint is None and not args.plan:
            check_previous_run(config)
        self.data = prepare_data(config.data, args, self.accelerator)
        self.dataset = ListwiseDataset(
            self.data.instances,
            self.data.passages,
            config.data.list_size,
            seed=args.seed,
            short_lists=config.data.short_lists,
        )
        self.schedule = Schedule.plan(
            batches_per_epoch=math.ceil(len(self.dataset) / args.batch_size),
            num_processes=self.accelerator.num_processes,
            args=args,
            kl_warmup_ratio=config.loss.kl_warmup_ratio,
        )
        self.plan = self._write_plan()
        if args.plan:  # --plan: the run's shape is all that is asked for; no model is built
            return
        retriever, reranker = load_models(
            config.model, static=config.loss.static, gradient_checkpointing=args.gradient_checkpointing
        )
        self.retriever_temperature = config.loss.retriever_temperature or (
            0.05 if retriever.config.similarity == "cosine" else 1.0
        )
        loader = self._loader(retriever, reranker)
        joint = JointModel(retriever, reranker, frozen_reranker=config.loss.static)
        optimizer, scheduler = self._optimisation(joint)
        self.joint, self.optimizer, self.loader, self.scheduler = self.accelerator.prepare(
            joint, optimizer, loader, scheduler
        )
        self._save_config()
        self.progress = self._resume(checkpoint)
        self.earlier_seconds = self.progress.seconds  # training time of the runs a resumed one continues
        self.output = Path(args.output_dir)
        if self.progress.global_step == 0 and self.accelerator.is_main_process:  # a fresh start logs afresh
            (self.output / "train_log.jsonl").unlink(missing_ok=True)
        self._window, self._window_start, self.last_log, self._bar = [], time.perf_counter(), {}, None

    def _write_plan(self) -> dict:
        """The run's plan (``training.plan``), written to OUTPUT/plan.json and printed by the main process."""
        with torch.random.fork_rng(devices=[]):  # the meta-device models of the plan draw nothing from the run's RNG
            plan = make_plan(
                self.config,
                lists=self.dataset.list_lengths(),
                instances=len(self.dataset),
                processes=self.accelerator.num_processes,
                schedule=self.schedule,
            )
        if self.accelerator.is_main_process:
            Path(self.config.training.output_dir).mkdir(parents=True, exist_ok=True)
            path = write_plan(plan, self.config.training.output_dir)
            print(f"{describe_plan(plan)}\nwrote {path}")
        return plan

    def _loader(self, retriever: RQ2Retriever, reranker: RQ2Reranker) -> DataLoader:
        """The shuffled lists of each epoch, tokenised for both models."""
        config = self.config
        collate = ListwiseCollator(
            retriever, reranker, config.data.list_size, passage_max_length=config.model.train_passage_max_length
        )
        return DataLoader(self.dataset, batch_size=config.training.batch_size, shuffle=True, collate_fn=collate)

    def _optimisation(self, joint: JointModel) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
        """AdamW over the parameter groups and the learning-rate scheduler sized by the run's ``Schedule``."""
        args = self.config.training
        optimizer = torch.optim.AdamW(param_groups(joint, args))
        warmup_steps = 0 if args.lr_scheduler == "constant" else int(args.warmup_ratio * self.schedule.total_steps)
        # Accelerate steps a prepared scheduler once per process at each optimizer step (its batches are per process):
        # sized in those steps, the schedule follows the optimizer steps whatever the process count
        per_step = self.accelerator.num_processes  # (batches are never split across processes here)
        scheduler = get_scheduler(
            args.lr_scheduler,
            optimizer,
            num_warmup_steps=warmup_steps * per_step,
            num_training_steps=self.schedule.total_steps * per_step,
        )
        return optimizer, scheduler

    def _save_config(self) -> None:
        """``training_config.json`` (the main process) and the trackers' hyperparameters."""
        if self.accelerator.is_main_process:
            Path(self.config.training.output_dir).mkdir(parents=True, exist_ok=True)
            self.config.save(self.config.training.output_dir)
        # trackers name each setting by its section's class, as 0.1.0 did (runs stay comparable)
        hyperparameters = {
            f"{type(section).__name__}.{n}": str(v) for section in self.config for n, v in asdict(section).items()
        }
        self.accelerator.init_trackers("rq2", config=hyperparameters)

    def _checkpoint_to_resume(self) -> Path | None:
        """The intact checkpoint to resume from, checked against this run (processes, settings) before any model
        loads; None for a fresh start."""
        checkpoint = resolve_checkpoint(self.config.training.output_dir, self.config.training.resume_from_checkpoint)
        if checkpoint is None:
            return None
        progress = Progress.read(checkpoint)
        processes = self.accelerator.num_processes
        check_setting(
            progress.processes in (None, processes),
            "resume_from_checkpoint",
            f"{checkpoint} was saved by a run of {progress.processes} processes, this one has {processes}: its "
            "data order and learning-rate schedule are per process count; resume with the same count",
        )
        check_resumed_settings(checkpoint, progress.settings, self.config)
        return checkpoint

    def _resume(self, checkpoint: Path | None) -> Progress:
        """The progress of the checkpoint to resume from (its state loaded), or a fresh start."""
        if checkpoint is None:
            return Progress()
        progress = Progress.read(checkpoint)
        self.accelerator.load_state(str(checkpoint))
        self.accelerator.print(f"resumed from {checkpoint} (step {progress.global_step})")
        return progress

    def train(self) -> "JointTrainer":
        """Every remaining optimizer step; a signal saves a checkpoint and exits (``SystemExit``)."""
        stop = StopRequest()
        self._bar = tqdm(
            total=self.schedule.total_steps,
            initial=self.progress.global_step,
            disable=not self.accelerator.is_local_main_process,
            desc="training",
        )
        try:
            for epoch, index, batch in self._batches():
                self._window.append(self.training_step(batch, epoch=epoch, index=index))
                self.progress.epoch, self.progress.step_in_epoch = epoch, index + 1
                if not self.accelerator.sync_gradients:
                    continue
                self.progress.global_step += 1
                self._bar.update(1)
                self.on_optimizer_step(epoch, stop)
                if self.progress.global_step >= self.schedule.total_steps:
                    break
        finally:
            stop.restore()
            self._bar.close()
        return self

    def _batches(self) -> Iterator[tuple[int, int, ListwiseBatch]]:
        """(epoch, batch index, batch) from where the run stands; a resumed epoch skips the batches it has done."""
        for epoch in range(self.progress.epoch, self.schedule.total_epochs):
            if self.progress.global_step >= self.schedule.total_steps:
                return
            self.dataset.set_epoch(epoch)
            self.loader.set_epoch(epoch)
            skip = self.progress.step_in_epoch if epoch == self.progress.epoch else 0
            batches = self.accelerator.skip_first_batches(self.loader, skip) if skip else self.loader
            self.joint.train()
            for index, batch in enumerate(batches, start=skip):
                yield epoch, index, batch
            self.progress.epoch, self.progress.step_in_epoch = epoch + 1, 0

    def training_step(self, batch: ListwiseBatch, *, epoch: int, index: int) -> dict[str, torch.Tensor]:
        """One batch through both models, the loss of its phase, backward and (when due) the optimizer step."""
        args, accelerator = self.config.training, self.accelerator
        # dropout draws from a seed of its own per batch, so a resumed run repeats them exactly
        torch.manual_seed(args.seed + 1_000_003 * epoch + 1_009 * index + accelerator.process_index)
        attention = training_attention(self.joint, accelerator.device, accelerator.mixed_precision)
        with accelerator.accumulate(self.joint), attention:
            output = self.joint(batch)
            parts = step_losses(
                output.retriever,
                output.reranker_scores,
                batch.list_mask,
                self.schedule.phase(epoch),
                self.schedule.teacher_phase(self.progress.global_step),
                self.config.loss,
                self.retriever_temperature,
                in_batch_positives=batch.in_batch_positives,
            )
            self._check_finite(parts)
            accelerator.backward(parts["loss"])
            if accelerator.sync_gradients and args.max_grad_norm > 0:
                accelerator.clip_grad_norm_(self.joint.parameters(), args.max_grad_norm)
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad()
        return {k: v.detach().float() for k, v in parts.items()}

    def _check_finite(self, parts: dict[str, torch.Tensor]) -> None:
        """Stop before backward when the loss is not finite on any process (none waits forever in backward)."""
        finite = torch.isfinite(parts["loss"].detach()).float().reshape(1)
        if self.accelerator.num_processes > 1:
            finite = self.accelerator.gather(finite).min()
        if not finite:
            raise FloatingPointError(
                f"non-finite loss ({ {k: round(v.item(), 4) for k, v in parts.items()} }) at step "
                f"{self.progress.global_step + 1}: stopped before the weights were touched; try a lower learning "
                "rate, --max_grad_norm, or --mixed_precision no, and resume from the last checkpoint"
            )

    def on_optimizer_step(self, epoch: int, stop: StopRequest) -> None:
        """After each optimizer step: log, evaluate, checkpoint, and stop when a signal asked to."""
        args, step, total = self.config.training, self.progress.global_step, self.schedule.total_steps
        if step % args.logging_steps == 0 or step == total:
            self._log(epoch)
        if args.eval_steps and self.data.evaluation is not None and step % args.eval_steps == 0 and step < total:
            self.evaluate()
        stopping = stop.requested(self.accelerator) and step < total
        if stopping or (args.save_steps and step % args.save_steps == 0):
            saved = self.save_checkpoint()
        if stopping:
            self.accelerator.print(
                f"\nstopped by a signal at step {step}; saved {saved}; continue with --resume_from_checkpoint latest"
            )
            self.accelerator.end_training()
            raise SystemExit(128 + (stop.signal or signal.SIGTERM))

    def _log(self, epoch: int) -> None:
        """The logging window's mean losses (over every process), learning rates and speed: to the trackers and
        train_log.jsonl."""
        elapsed = time.perf_counter() - self._window_start
        window, step = self._window, self.progress.global_step
        last = {k: self.accelerator.gather(torch.stack([w[k] for w in window])).mean().item() for k in window[0]}
        last.update(
            phase=self.schedule.phase(epoch),
            epoch=epoch,
            **{f"lr_{g['name']}": g["lr"] for g in self.optimizer.param_groups},
            queries_per_s=len(window) * self.config.training.batch_size * self.accelerator.num_processes / elapsed,
        )
        self.accelerator.log({k: v for k, v in last.items() if k != "phase"}, step=step)
        self._bar.set_postfix(
            loss=f"{last['loss']:.3f}", sup=f"{last['supervised']:.3f}", kl=f"{last.get('kl', 0):.3f}"
        )
        if self.accelerator.is_main_process:
            with open(self.output / "train_log.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps({"step": step, **last}) + "\n")
        self.last_log, self._window, self._window_start = last, [], time.perf_counter()

    def seconds_trained(self) -> float:
        """Training seconds of this run, the processes it resumed included."""
        return self.earlier_seconds + time.perf_counter() - self.started

    def save_checkpoint(self) -> Path:
        """An atomic checkpoint of the current step (``save_total_limit`` kept)."""
        self.progress.seconds = round(self.seconds_trained(), 1)
        self.progress.processes = self.accelerator.num_processes
        self.progress.settings = deciding_settings(self.config)
        return save_checkpoint(
            self.accelerator, self.config.training.output_dir, self.progress, keep=self.config.training.save_total_limit
        )

    def evaluate(self) -> dict[str, dict[str, float]]:
        """Retriever (and re-ranker on its top-k) metrics on the eval split, by system name: computed on the main
        process, logged and printed."""
        args, evaluation, results = self.config.training, self.data.evaluation, {}
        if self.accelerator.is_main_process:
            model = self.accelerator.unwrap_model(self.joint)
            for tower in (model.retriever, model.reranker):
                tower.inference_precision, tower.inference_backend = args.precision, args.backend
            scored = evaluate_retrieval(
                model.retriever,
                evaluation,
                model.reranker,
                top_k=args.top_k,
                rerank_top_k=args.rerank_top_k,
                metrics=evaluation.metrics,
                batch_size=args.eval_batch_size,
                fusion=args.fusion,
            )
            results = by_name(scored.metrics)
            step = self.progress.global_step
            self.accelerator.log({f"eval/{s}/{m}": v for s, r in results.items() for m, v in r.items()}, step=step)
            print(f"step {step}:\n{markdown_table(results, list(evaluation.metrics))}")
        self.accelerator.wait_for_everyone()
        return results

    def finish(self) -> dict:
        """Save both models, evaluate them, write ``metrics.json`` and the model cards; the metrics."""
        accelerator, evaluation = self.accelerator, self.data.evaluation
        train_seconds = self.seconds_trained()
        model = accelerator.unwrap_model(self.joint)
        state = accelerator.get_state_dict(self.joint)  # every process: gathered when sharded (FSDP, ZeRO-3)
        metrics = {
            "train": {
                "steps": self.progress.global_step,
                "seconds": round(train_seconds, 1),
                "last_log": self.last_log,
                "lists": self.dataset.list_lengths(),
                "retriever_temperature": self.retriever_temperature,
                "examples": self.dataset.examples(),
            }
        }
        _check_finite_weights(state, self.progress.global_step)
        if accelerator.is_main_process:
            for name in ("retriever", "reranker"):
                save_model(getattr(model, name), self.output / name, _part(state, f"{name}.", getattr(model, name)))
        if evaluation is not None:
            metrics["eval"] = self._final_evaluation()
        metrics["hardware"] = hardware(accelerator, self.config.training.precision)
        if accelerator.is_main_process:
            metrics["seconds_total"] = round(time.perf_counter() - self.started, 1)
            (self.output / "metrics.json").write_text(json.dumps(metrics, indent=2), encoding="utf-8")
            write_cards(self.output)
            print(
                f"wrote {self.output}/retriever, {self.output}/reranker (with model cards) and metrics.json "
                f"in {metrics['seconds_total']} s"
            )
        accelerator.wait_for_everyone()
        end_trackers(accelerator)
        return metrics

    def _final_evaluation(self) -> dict:
        """The eval split's results, time, and (on corpora small enough) the BM25 baseline of the same queries."""
        evaluation, started = self.data.evaluation, time.perf_counter()
        results = self.evaluate()
        report = {
            "dataset": evaluation.name,
            "split": evaluation.split,
            "results": results,
            "seconds": round(time.perf_counter() - started, 1),
        }
        if self.accelerator.is_main_process and len(evaluation.corpus) <= BM25_BASELINE_MAX_PASSAGES:
            report["baselines"] = {
                BM25: bm25_baseline(evaluation, metrics=evaluation.metrics, top_k=self.config.training.top_k)
            }
        return report


def _check_finite_weights(state: dict[str, torch.Tensor], step: int) -> None:
    """Refuse to save final models with a non-finite weight (a diverged run); its checkpoints stay as they are."""
    broken = [key for key, value in state.items() if value.is_floating_point() and not torch.isfinite(value).all()]
    if broken:
        raise FloatingPointError(
            f"after step {step}, {len(broken)} weight tensors are not finite (e.g. {broken[:2]}): the final models "
            "were not saved; try a lower learning rate or --max_grad_norm, and resume from a checkpoint"
        )


def end_trackers(accelerator: Accelerator) -> None:
    """The trackers' end, and nothing else: ``Accelerator.end_training`` also destroys the process group, which the
    chain's next stages (mining on the main process, joint training) still need; ``run_training`` destroys it last."""
    for tracker in accelerator.trackers:
        tracker.finish()


def _part(state: dict, prefix: str, model: torch.nn.Module) -> dict:
    """``model``'s weights in the joint module's ``state`` (under ``prefix``; ``_orig_mod.`` of torch.compile
    removed), refused unless they are exactly the model's own tensors by name."""
    state = {key.removeprefix("_orig_mod."): value for key, value in state.items()}
    part = {key[len(prefix) :]: value for key, value in state.items() if key.startswith(prefix)}
    expected = set(model.state_dict())
    if set(part) != expected:
        missing = sorted(expected - set(part))[:3]
        raise RuntimeError(f"the gathered weights under {prefix!r} do not match the model's (missing e.g. {missing})")
    return part


def train(config: RunConfig) -> dict:
    """Run joint training end to end; returns the metrics also written to ``OUTPUT/metrics.json`` (with
    ``training.plan``, only ``{"plan": ...}``: nothing is trained)."""
    trainer = JointTrainer(config)
    if config.training.plan:
        end_trackers(trainer.accelerator)
        return {"plan": trainer.plan}
    return trainer.train().finish()
