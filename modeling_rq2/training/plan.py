"""A run's real shape before it costs anything: ``train.py CONFIG --plan true`` writes ``plan.json`` and stops.

The plan is made from the settings and the training lists alone (the models are built on the meta device, to count
their parameters without weights): processes and batches, optimizer steps, the learning rate along the run, the
lists as they will be (mean / least passages, padding share), tokens a step for each model, the precision of the
scores, an estimate of the memory a process needs, and warnings for what looks wrong. Every training run writes the
same plan into its output folder before step 1.
"""

import json
import math
from pathlib import Path

import torch
from transformers import AutoConfig, get_scheduler

from ..models.loading import resolve_backbone
from ..models.modeling_rq2 import RQ2Reranker, RQ2Retriever
from .arguments import RunConfig

PLAN_FILE = "plan.json"
LR_POINTS = (0.0, 0.1, 0.5, 0.9, 1.0)
PADDING_WARNING = 0.10


def learning_rates(config: RunConfig, total_steps: int) -> dict[str, dict[str, float]]:
    """The learning rate of each parameter group after 0 / 10 / 50 / 90 / 100% of the optimizer steps."""
    args = config.training
    groups = {"retriever": args.retriever_lr, "reranker": args.reranker_lr, "reranker_head": args.reranker_head_lr}
    optimizer = torch.optim.SGD([{"params": [torch.zeros(1, requires_grad=True)], "lr": lr} for lr in groups.values()])
    warmup = 0 if args.lr_scheduler == "constant" else int(args.warmup_ratio * total_steps)
    scheduler = get_scheduler(args.lr_scheduler, optimizer, num_warmup_steps=warmup, num_training_steps=total_steps)
    by_step = []
    for _ in range(total_steps + 1):
        by_step.append({name: g["lr"] for name, g in zip(groups, optimizer.param_groups, strict=True)})
        optimizer.step()
        scheduler.step()
    return {f"{point:.0%}": by_step[round(point * total_steps)] for point in LR_POINTS}


def meta_model(model_class: type, name_or_path: str, **config_overrides) -> torch.nn.Module:
    """The model ``train.py`` would build from ``name_or_path``, on the meta device: its shapes, no weights."""
    config = AutoConfig.from_pretrained(resolve_backbone(name_or_path))
    if config.model_type != model_class.config_class.model_type:
        config = model_class.config_class(encoder_config=config, **config_overrides)
    for key, value in config_overrides.items():  # a saved RQ2 folder takes the run's overrides, as loading does
        setattr(config, key, value)
    with torch.device("meta"):
        return model_class(config)


def activation_bytes(sequences: int, length: int, encoder_config, *, bytes_per_value: int, checkpointing: bool) -> int:
    """Activations kept for backward by ``sequences`` x ``length`` tokens through a transformer encoder: per layer
    s*b*h*(34 + 5*a*s/h) bytes at 16 bits (Korthikanti et al. 2022); with checkpointing, each layer's input plus one
    layer's activations. An estimate, for the order of magnitude."""
    h, layers, heads = encoder_config.hidden_size, encoder_config.num_hidden_layers, encoder_config.num_attention_heads
    per_layer = sequences * length * h * (34 + 5 * heads * length / h) * bytes_per_value / 2
    if checkpointing:
        return int(layers * sequences * length * h * bytes_per_value + per_layer)
    return int(layers * per_layer)


def memory(config: RunConfig) -> dict[str, float]:
    """GiB a process needs for weights, gradients and AdamW state (16 bytes a parameter in fp32), and an estimate of
    the activations of one step's lists (upper bound: every sequence at its maximum length)."""
    model, data, args = config.model, config.data, config.training
    built = (
        meta_model(RQ2Retriever, model.retriever, shared_towers=model.shared_towers),
        meta_model(RQ2Reranker, model.reranker),
    )
    retriever, reranker = (sum(p.numel() for p in m_.parameters()) for m_ in built)
    retriever_config, reranker_config = (m_.config.encoder_config for m_ in built)
    width = 4 if args.mixed_precision == "no" else 2
    batch, m = args.batch_size, data.list_size
    options = {"bytes_per_value": width, "checkpointing": args.gradient_checkpointing}
    activations = (
        activation_bytes(batch, model.query_max_length, retriever_config, **options)
        + activation_bytes(batch * m, model.train_passage_max_length, retriever_config, **options)
        + activation_bytes(batch * m, model.reranker_max_length, reranker_config, **options)
    )
    gib = 1024**3
    return {
        "retriever_parameters": retriever,
        "reranker_parameters": reranker,
        "weights_gradients_optimizer_gib": round(16 * (retriever + reranker) / gib, 2),
        "activations_gib_estimate": round(activations / gib, 2),
    }


def _memory_or_error(config: RunConfig) -> dict:
    """``memory`` of the run, or what kept it from being estimated (the plan never stops a run)."""
    try:
        return memory(config)
    except Exception as err:  # noqa: BLE001 - an estimate: a backbone it cannot read must not stop training
        return {"error": f"{type(err).__name__}: {err}"}


def make_plan(config: RunConfig, *, lists: dict, instances: int, processes: int, schedule) -> dict:
    """The plan of a run over ``instances`` training lists (``lists``: ``ListwiseDataset.list_lengths()``)."""
    model, data, args = config.model, config.data, config.training
    batch, m = args.batch_size, data.list_size
    epoch_steps = schedule.steps_per_epoch * schedule.total_epochs
    plan = {
        "processes": processes,
        "batch_per_process": batch,
        "gradient_accumulation_steps": args.gradient_accumulation_steps,
        "global_batch": batch * processes * args.gradient_accumulation_steps,
        "training_lists": instances,
        "steps_per_epoch": schedule.steps_per_epoch,
        "epochs": schedule.total_epochs,
        "total_steps": schedule.total_steps,
        "kl_teacher_phase_steps": max(0, schedule.kl_warmup_end - schedule.steps_per_epoch * schedule.warmup_epochs),
        "learning_rates": learning_rates(config, schedule.total_steps),
        "lists": lists,
        "tokens_per_batch_per_process_at_most": {
            "retriever": batch * (model.query_max_length + m * model.train_passage_max_length),
            "reranker": batch * m * model.reranker_max_length,
        },
        "precision": {"mixed_precision": args.mixed_precision, "scores_and_losses": "float32"},
        "memory_per_process": _memory_or_error(config),
    }
    plan["warnings"] = _warnings(plan, epoch_steps=epoch_steps, list_size=m)
    return plan


def _warnings(plan: dict, *, epoch_steps: int, list_size: int) -> list[str]:
    """What looks wrong: lists shorter than asked, padding above 10%, a schedule that ends before its epochs."""
    lists, found = plan["lists"], []
    if "error" in plan["memory_per_process"]:
        found.append(f"memory not estimated ({plan['memory_per_process']['error']})")
    if lists["mean"] < list_size:
        found.append(f"lists hold {lists['mean']:g} passages on average (at least {lists['min']}), not {list_size}")
    if lists["padding"] > PADDING_WARNING:
        found.append(f"{lists['padding']:.1%} of each step's list slots are padding (above {PADDING_WARNING:.0%})")
    if plan["total_steps"] < epoch_steps:
        found.append(f"--max_steps ends the run after {plan['total_steps']} of its {epoch_steps} steps")
    if math.isclose(plan["learning_rates"]["100%"]["retriever"], 0.0) and plan["total_steps"] < epoch_steps:
        found.append("the learning rate reaches 0 at --max_steps, before the epochs end")
    return found


def write_plan(plan: dict, folder: str | Path) -> Path:
    """``folder/plan.json``."""
    path = Path(folder) / PLAN_FILE
    path.write_text(json.dumps(plan, indent=2), encoding="utf-8")
    return path


def describe(plan: dict) -> str:
    """The plan in a few lines, for the console."""
    memory_ = plan["memory_per_process"]
    memory_line = (
        f"memory per process: {memory_['weights_gradients_optimizer_gib']} GiB weights + gradients + AdamW, about "
        f"{memory_['activations_gib_estimate']} GiB activations (estimate)"
        if "error" not in memory_
        else "memory per process: not estimated"
    )
    lines = [
        f"plan: {plan['processes']} process(es) x {plan['batch_per_process']} lists x "
        f"{plan['gradient_accumulation_steps']} accumulation = {plan['global_batch']} lists a step; "
        f"{plan['steps_per_epoch']} steps an epoch, "
        f"{plan['total_steps']} in all",
        f"lists: {plan['lists']['mean']:g} passages on average (asked {plan['lists']['size']}, at least "
        f"{plan['lists']['min']}), {plan['lists']['padding']:.1%} padding",
        "learning rate (retriever) at "
        + ", ".join(f"{k} {v['retriever']:.3g}" for k, v in plan["learning_rates"].items()),
        memory_line,
        *(f"warning: {w}" for w in plan["warnings"]),
    ]
    return "\n".join(lines)
