"""The RocketQAv2 chain: warm-up -> hybrid data augmentation -> joint training.

``train.py --augment true`` runs it. Each stage writes into its own folder under ``output_dir``
and is skipped when its output is complete, so a killed chain resumes where it stopped
(within a training stage too, with ``--resume_from_checkpoint latest``):

    OUTPUT/warmup/      both models after ``augment_warmup_epochs`` on BM25 lists: of this joint recipe
                        (``augment_warmup joint``, the default: a re-ranker trained alone on little data
                        stays cold, one taught by the retriever does not) or of each model alone (``separate``,
                        the paper's warm-up, for data large enough for the re-ranker to learn alone)
    OUTPUT/augmented/   the instances mined with the warm retriever and denoised by the warm re-ranker
    OUTPUT/             ``epochs`` of joint training from the warm models on those instances
"""

import json
from dataclasses import replace
from pathlib import Path

from accelerate import PartialState

from .augmentation import (
    REPORT_FILE,
    AugmentationArguments,
    augment_instances,
    save_instances,
)
from .backbones import load_reranker, load_retriever
from .model_card import write_cards
from .sources import load_data
from .training import (
    DataArguments,
    JointTrainingArguments,
    LossArguments,
    ModelArguments,
    train,
)


def run_training(
    model_args: ModelArguments,
    data_args: DataArguments,
    loss_args: LossArguments,
    args: JointTrainingArguments,
    aug_args: AugmentationArguments,
) -> dict:
    """Joint training alone, or the whole chain when ``aug_args.augment``; returns the final metrics."""
    if not aug_args.augment:
        return train(model_args, data_args, loss_args, args)
    if data_args.train_instances:
        raise ValueError("--augment builds its own training instances: drop --train_instances")
    output = Path(args.output_dir)
    warm = output / "warmup"
    if not (warm / "metrics.json").is_file():
        epochs = aug_args.augment_warmup_epochs
        stage = {"warmup_epochs": epochs, "epochs": 0} if aug_args.augment_warmup == "separate" else {"warmup_epochs": 0, "epochs": epochs}
        train(model_args, replace(data_args, eval_split=None), loss_args, replace(args, output_dir=str(warm), eval_steps=0, **stage))

    augmented = output / "augmented"
    state = PartialState()
    with state.main_process_first():  # the main process augments; the others then find its result
        if not (augmented / REPORT_FILE).is_file():
            data = load_data(data_args.data, data_args.train_split)
            if data_args.max_train_queries:
                data = replace(data, queries=data.queries.select(range(min(data_args.max_train_queries, len(data.queries)))))
            instances, report = augment_instances(
                data,
                load_retriever(warm / "retriever"),
                load_reranker(warm / "reranker"),
                aug_args,
                show_progress_bar=state.is_local_main_process,
            )
            save_instances(instances, augmented, report)
            state.print(f"augmentation: {json.dumps({k: v for k, v in report.items() if k != 'arguments'})}")

    metrics = train(
        replace(model_args, retriever=str(warm / "retriever"), reranker=str(warm / "reranker")),
        replace(data_args, train_instances=str(augmented)),
        loss_args,
        replace(args, warmup_epochs=0, epochs=max(1, args.epochs)),
    )
    metrics["augmentation"] = json.loads((augmented / REPORT_FILE).read_text(encoding="utf-8"))
    if state.is_main_process:  # the cards, rendered by train, now also describe the augmentation
        (output / "metrics.json").write_text(json.dumps(metrics, indent=2), encoding="utf-8")
        write_cards(output)
    return metrics
