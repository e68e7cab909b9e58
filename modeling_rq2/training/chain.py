"""The RocketQAv2 chain: warm-up -> hybrid data augmentation -> joint training.

``train.py --augment true`` runs it. Each stage writes into its own folder under ``output_dir``
and is skipped when its output is complete, so a killed chain resumes where it stopped
(within a training stage too, with ``--resume_from_checkpoint latest``):

    OUTPUT/warmup/      both models after ``augment_warmup_epochs`` on BM25 lists (of ``augment_warmup_list_size``
                        passages, or ``list_size``): of this joint recipe
                        (``augment_warmup joint``, the default: a re-ranker trained alone on little data
                        stays cold, one taught by the retriever does not) or of each model alone (``separate``,
                        the paper's warm-up, for data large enough for the re-ranker to learn alone)
    OUTPUT/augmented/   the instances mined with the warm retriever and denoised by the warm re-ranker
    OUTPUT/             ``epochs`` of joint training from the warm models on those instances

With ``augment_rounds R`` > 1 the augmentation and the joint training repeat, each round mining with the models the
round before trained jointly (RocketQA's pipeline iterates; the last round trains into OUTPUT/):

    OUTPUT/round-K/     round K < R: ``epochs`` of joint training on OUTPUT/augmented-K (round 1: OUTPUT/augmented)
    OUTPUT/augmented-K/ round K >= 2: mined and denoised by OUTPUT/round-(K-1)'s models
"""

import json
import sys
from dataclasses import replace
from pathlib import Path

import torch
from accelerate import PartialState

from ..hub.model_card import write_cards
from ..models.loading import load_reranker, load_retriever
from .arguments import (
    AugmentationArguments,
    DataArguments,
    JointTrainingArguments,
    LossArguments,
    ModelArguments,
    RunConfig,
    check_previous_run,
    check_setting,
)
from .augmentation import REPORT_FILE, augment_instances, save_instances
from .checkpoints import output_lock
from .config_files import parse_arguments
from .trainer import train, training_split


def run_training(
    model_args: ModelArguments,
    data_args: DataArguments,
    loss_args: LossArguments,
    args: JointTrainingArguments,
    aug_args: AugmentationArguments,
) -> dict:
    """Joint training alone, or the whole chain when ``aug_args.augment``; returns the final metrics.

    The arguments are a ``RunConfig``'s sections in order: ``run_training(*parse_arguments(argv))``.
    """
    config = RunConfig(model_args, data_args, loss_args, args, aug_args)
    try:
        with output_lock(args.output_dir):
            return train(config) if not aug_args.augment else _chain(config)
    finally:  # after the last stage: every stage of a chain runs in the same process group
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            PartialState().destroy_process_group()


def main(argv: list[str] | None = None) -> dict:
    """Command-line entry point (``train.py``, ``rq2-train``): flags and an optional config file."""
    return run_training(*parse_arguments(sys.argv[1:] if argv is None else argv))


def _chain(config: RunConfig) -> dict:
    """Warm-up, augmentation, joint training: each stage skipped when its output is complete."""
    data_args, args, aug_args = config.data, config.training, config.augmentation
    if data_args.train_instances:
        raise ValueError("--augment builds its own training instances: drop --train_instances")
    check_setting(  # before any training: the mined lists are checked again, each, once mined
        data_args.short_lists == "pad" or aug_args.augment_top_n >= data_args.list_size,
        "augment_top_n",
        f"{aug_args.augment_top_n} mines at most {aug_args.augment_top_n - 1} negatives a query (at least one "
        f"retrieved passage is its gold one), and lists of {data_args.list_size} need {data_args.list_size - 1} "
        "(--short_lists error; denoising removes more): raise it, lower --list_size, or accept shorter lists with "
        "--short_lists pad",
    )
    output = Path(args.output_dir)
    warm, rounds = output / "warmup", aug_args.augment_rounds
    if args.plan:  # the chain's first stage alone: every later stage trains on lists mined after it
        return train(_warmup_stage(config, warm))
    # before any stage: an OUTPUT holding a run of other settings (e.g. other rounds) is refused now, not after
    # the stages before the last have run
    check_previous_run(_round_stage(config, _round_models(output, rounds), _lists(output, rounds), output))
    if args.overwrite_output_dir or not (warm / "metrics.json").is_file():  # a complete stage is kept
        train(_warmup_stage(config, warm))
    reports = []
    for number in range(1, rounds + 1):
        models, augmented = _round_models(output, number), _lists(output, number)
        _augment(config, models, augmented)
        reports.append(json.loads((augmented / REPORT_FILE).read_text(encoding="utf-8")))
        stage_output = output if number == rounds else output / f"round-{number}"
        stage = _round_stage(config, models, augmented, stage_output)
        if number == rounds:
            metrics = train(stage)
        elif args.overwrite_output_dir or not (stage_output / "metrics.json").is_file():
            train(stage)
    metrics["augmentation"] = reports[-1]
    if rounds > 1:
        metrics["augmentation_rounds"] = reports
    if PartialState().is_main_process:  # the cards, rendered by train, now also describe the augmentation
        (output / "metrics.json").write_text(json.dumps(metrics, indent=2), encoding="utf-8")
        write_cards(output)
    return metrics


def _round_models(output: Path, number: int) -> Path:
    """The models round ``number`` mines with and trains from: the warm-up's, then the round before's."""
    return output / ("warmup" if number == 1 else f"round-{number - 1}")


def _lists(output: Path, number: int) -> Path:
    """Round ``number``'s mined lists."""
    return output / ("augmented" if number == 1 else f"augmented-{number}")


def _round_stage(config: RunConfig, models: Path, augmented: Path, output: Path) -> RunConfig:
    """A round's joint training: from ``models`` on the lists in ``augmented``, into ``output``; a round before the
    last does not evaluate (its models only mine the next round's lists)."""
    model_args, data_args, args = config.model, config.data, config.training
    final = output == Path(args.output_dir)
    return config._replace(
        model=replace(model_args, retriever=str(models / "retriever"), reranker=str(models / "reranker")),
        data=replace(data_args, train_instances=str(augmented), eval_split=data_args.eval_split if final else None),
        training=replace(
            args,
            output_dir=str(output),
            warmup_epochs=0,
            epochs=max(1, args.epochs),
            eval_steps=args.eval_steps if final else 0,
        ),
    )


def _warmup_stage(config: RunConfig, warm: Path) -> RunConfig:
    """The first stage: this recipe (``joint``) or each model alone (``separate``), no evaluation."""
    epochs = config.augmentation.augment_warmup_epochs
    stage = (
        {"warmup_epochs": epochs, "epochs": 0}
        if config.augmentation.augment_warmup == "separate"
        else {"warmup_epochs": 0, "epochs": epochs}
    )
    list_size = config.augmentation.augment_warmup_list_size or config.data.list_size
    return config._replace(
        data=replace(config.data, eval_split=None, list_size=list_size),
        training=replace(config.training, output_dir=str(warm), eval_steps=0, **stage),
    )


def _augment(config: RunConfig, warm: Path, augmented: Path) -> None:
    """Mine and denoise the training queries' lists with the ``warm`` models (the main process; the others wait)."""
    state = PartialState()
    if state.is_main_process and (config.training.overwrite_output_dir or not (augmented / REPORT_FILE).is_file()):
        _mine(config, warm, augmented)
    state.wait_for_everyone()  # the others then read its result (they never mine: one writer a folder)


def _mine(config: RunConfig, warm: Path, augmented: Path) -> None:
    """The lists of ``_augment``, mined and saved."""
    state, data_args = PartialState(), config.data
    data, _ = training_split(data_args)  # without the held-out queries
    if data_args.max_train_queries:
        data = replace(data, queries=data.queries.select(range(min(data_args.max_train_queries, len(data.queries)))))
    retriever, reranker = load_retriever(warm / "retriever"), load_reranker(warm / "reranker")
    for model in (retriever, reranker):
        model.inference_precision, model.inference_backend = config.training.precision, config.training.backend
    instances, report = augment_instances(
        data, retriever, reranker, config.augmentation, show_progress_bar=state.is_local_main_process
    )
    save_instances(instances, augmented, report)
    state.print(f"augmentation: {json.dumps({k: v for k, v in report.items() if k != 'arguments'})}")
