"""The command line of ``train.py``: flags, optionally after a YAML or JSON preset (``configs/``) they override."""

import copy
import types
import typing
from pathlib import Path

from transformers import HfArgumentParser

from .arguments import RunConfig
from .losses import DESCRIPTION_KEYS

ARGUMENT_CLASSES = tuple(RunConfig.__annotations__.values())
"""The sections' classes in ``RunConfig`` order: what the parser fills."""


class _ArgumentParser(HfArgumentParser):
    """``HfArgumentParser`` given only the argparse part of each field's metadata (loss options also carry
    their card and benchmark descriptions, ``losses.loss_option``, which argparse does not take)."""

    @staticmethod
    def _parse_dataclass_field(parser, field) -> None:
        trimmed = copy.copy(field)
        trimmed.metadata = types.MappingProxyType(
            {k: v for k, v in field.metadata.items() if k not in DESCRIPTION_KEYS}
        )
        HfArgumentParser._parse_dataclass_field(parser, trimmed)


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


def parse_arguments(argv: list[str]) -> RunConfig:
    """Command-line flags, optionally after a YAML/JSON config file whose values they override.

    Unknown keys and invalid values raise before any data or model is loaded.
    """
    import yaml

    parser = _ArgumentParser(ARGUMENT_CLASSES)
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
    return RunConfig(*parser.parse_args_into_dataclasses(args=argv))
