"""WiSE-FT (Wortsman et al., CVPR 2022): a fine-tuned model's weights averaged with those it started from.

Fine-tuning a retriever on one collection can make it forget what its backbone knew about others. Interpolating
the weights, ``weight * trained + (1 - weight) * base``, trades some of the in-domain gain back for the backbone's
behaviour elsewhere, after training, with no retraining: choose the weight on a collection of the domain you care
about (``bench.quality --wise_ft``), not on the test split you report.

    python -m modeling_rq2.training.interpolation --model outputs/scifact/retriever --weight 0.5 \
        --output_dir outputs/scifact/retriever-wise-0.5
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from transformers import PreTrainedConfig

from ..models.loading import DEFAULT_BACKBONE, DEFAULT_BACKBONE_ID, load_reranker, load_retriever, resolve_backbone
from ..models.modeling_rq2 import RQ2PreTrainedModel, RQ2Reranker, RQ2Retriever, local_model_folder
from .checkpoints import save_model

INTERPOLATION_FILE = "interpolation.json"
"""Written beside the interpolated weights: the trained model, the base and the weight it was made from."""


def _check_weight(weight: float, name: str) -> None:
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"{name}: {weight} is not in [0, 1] (1 keeps the trained weights, 0 the base's)")


def interpolate_weights(model: nn.Module, base: nn.Module, *, weight: float) -> nn.Module:
    """``model``'s floating-point weights set to ``weight * model + (1 - weight) * base``, in place (integer
    buffers such as position ids are kept, a tensor tied under several names moves once); returns ``model``. The
    two must have the same weights by name and shape: anything else is refused, naming the first difference."""
    _check_weight(weight, "weight")
    theirs = base.state_dict()
    ours = model.state_dict()
    if missing := sorted(set(ours) ^ set(theirs)):
        side = "the base" if missing[0] in ours else "the model"
        raise ValueError(f"cannot interpolate: {missing[0]!r} is missing from {side} ({len(missing)} weights differ)")
    for name, tensor in ours.items():
        if tensor.shape != theirs[name].shape:
            raise ValueError(
                f"cannot interpolate: {name!r} is {tuple(tensor.shape)} in the model, {tuple(theirs[name].shape)} in "
                "the base (another architecture or vocabulary)"
            )
    moved = set()
    with torch.no_grad():
        for name, tensor in ours.items():
            if tensor.is_floating_point() and tensor.numel() and tensor.data_ptr() not in moved:
                moved.add(tensor.data_ptr())
                tensor.lerp_(theirs[name].to(tensor.device, tensor.dtype), 1.0 - weight)
    return model


def starting_backbone(model: RQ2PreTrainedModel) -> str:
    """The backbone ``model`` was built on, as its config records it (``default`` for the offline MiniLM)."""
    name = model.config.encoder_config._name_or_path
    return DEFAULT_BACKBONE if name == DEFAULT_BACKBONE_ID else name


def _backbone_retriever(trained: RQ2Retriever) -> RQ2Retriever:
    """A fresh retriever from the backbone ``trained`` records; refused where the record names no folder here and
    no Hub id (a saved config keeps only a local folder's last component)."""
    name = starting_backbone(trained)
    if name != DEFAULT_BACKBONE and not Path(name).is_dir() and name.count("/") != 1:
        raise ValueError(
            f"the retriever records its backbone as {name!r}, no folder here and no Hub id (a saved config keeps only "
            "the last component of a local path): pass the base"
        )
    try:
        return load_retriever(name)
    except OSError as err:
        raise OSError(
            f"the retriever's backbone, recorded as {name!r}, does not load here; pass the base ({err})"
        ) from err


def interpolate_retriever(trained: RQ2Retriever, base: RQ2Retriever | None = None, *, weight: float) -> RQ2Retriever:
    """WiSE-FT of a retriever: ``trained`` interpolated with ``base`` (default: a fresh retriever from the backbone
    it was built on, the zero-shot model), in place; the base's towers are untied where ``trained``'s are."""
    base = _backbone_retriever(trained) if base is None else base
    if not trained.config.shared_towers:
        base.untie_towers()
    elif not base.config.shared_towers:
        raise ValueError("cannot interpolate a retriever with shared towers with a base that has separate ones")
    return interpolate_weights(trained, base, weight=weight)


@dataclass
class InterpolateArguments:
    """``python -m modeling_rq2.training.interpolation``: a saved model interpolated with its base, saved apart."""

    model: str = field(metadata={"help": "saved RQ2Retriever or RQ2Reranker (the fine-tuned weights)"})
    weight: float = field(metadata={"help": "the trained weights' share, in [0, 1] (1: the model as it is)"})
    output_dir: str = field(metadata={"help": "a new folder for the interpolated model (never one that has files)"})
    base: str | None = field(
        default=None,
        metadata={
            "help": "what to interpolate with: for a retriever, default the backbone it was built on (zero-shot); a "
            "re-ranker needs a saved RQ2Reranker here (its backbone has no trained head)"
        },
    )


_SAVED = frozenset({"rq2_retriever", "rq2_reranker"})
"""The model types of a saved, fine-tuned RQ2 model."""


def _model_type(name_or_path: str) -> str | None:
    """The model type a folder or Hub repo's config.json names (a missing folder refused with its name)."""
    path = resolve_backbone(name_or_path)
    local_model_folder(path, {})
    return PreTrainedConfig.get_config_dict(path)[0].get("model_type")


def _load_pair(args: InterpolateArguments) -> tuple[RQ2PreTrainedModel, RQ2PreTrainedModel | None]:
    """The trained model in its role, and its base (None: a retriever's own backbone); each flag's model checked
    to be what that role interpolates with."""
    role = _model_type(args.model)
    if role not in _SAVED:
        raise ValueError(
            f"--model: {args.model} is model_type {role!r}, not a saved RQ2Retriever or RQ2Reranker: nothing was "
            "fine-tuned to interpolate"
        )
    base_role = None if args.base is None else _model_type(args.base)
    if role == "rq2_retriever":
        if base_role == "rq2_reranker":
            raise ValueError(f"--base: {args.base} is a saved RQ2Reranker; a retriever interpolates with a retriever")
        return load_retriever(args.model), None if args.base is None else load_retriever(args.base)
    if base_role != "rq2_reranker":
        found = "none given" if args.base is None else f"{args.base} is model_type {base_role!r}"
        raise ValueError(
            f"--base: a re-ranker interpolates only with a saved RQ2Reranker ({found}): a backbone has no trained head"
        )
    return load_reranker(args.model), load_reranker(args.base)


def main(argv: list[str] | None = None) -> Path:
    """Command-line entry point: writes the interpolated model into ``--output_dir``; returns the folder."""
    from ..argparsing import CommandParser

    (args,) = CommandParser(InterpolateArguments).parse_args_into_dataclasses(args=argv)
    _check_weight(args.weight, "--weight")  # before any model loads
    output = Path(args.output_dir)
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise FileExistsError(f"--output_dir: {output} already exists and is not an empty folder; name a new one")
    model, base = _load_pair(args)
    if isinstance(model, RQ2Reranker):
        interpolate_weights(model, base, weight=args.weight)
    else:
        interpolate_retriever(model, base, weight=args.weight)
    base_name = args.base or starting_backbone(model)
    save_model(model, output)
    record = {"model": args.model, "base": base_name, "weight": args.weight, "method": "WiSE-FT"}
    (output / INTERPOLATION_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {output}: {args.weight:g} x {args.model} + {1 - args.weight:g} x {base_name}")
    return output


if __name__ == "__main__":
    from ..cli import interpolate

    interpolate()
