"""The one argument parser of every command line (``train.py``, ``rq2-evaluate``, ``rq2-augment``,
``rq2-interpolate``, ``rq2-push``): dataclass fields as flags (``HfArgumentParser``), never abbreviated, each flag's
default and choices in ``--help``, and a bad flag raised as a ValueError (which ``cli.run`` prints as one line)
instead of argparse's exit."""

import argparse
import copy
import types
from collections.abc import Iterable, Mapping

from transformers import HfArgumentParser

ARGPARSE_KEYS = frozenset({"help", "choices", "metavar", "aliases", "nargs", "required", "const", "action"})
"""The field metadata argparse takes; other keys (the loss options' card texts) stay with the field."""


class _DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every optional flag's default once: added where the help does not state one already (a required flag has
    none to show)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.required:
            text = text.replace("(default: %(default)s)", "").strip()
            return f"{text} (required)" if text else "(required)"
        return text if "(default" in text else super()._get_help_string(action)


class CommandParser(HfArgumentParser):
    """``HfArgumentParser`` over ``dataclass_types`` with ``choices`` (field name -> allowed values) listed in
    ``--help`` and checked by argparse; help-less fields still show their default."""

    def __init__(self, dataclass_types, *, choices: Mapping[str, Iterable] | None = None, **kwargs):
        self._choices = dict(choices or {})
        kwargs.setdefault("formatter_class", _DefaultsFormatter)
        super().__init__(dataclass_types, allow_abbrev=False, **kwargs)

    def _parse_dataclass_field(self, parser, field) -> None:
        trimmed = copy.copy(field)
        metadata = {key: value for key, value in field.metadata.items() if key in ARGPARSE_KEYS}
        if field.name in self._choices:
            metadata["choices"] = tuple(self._choices[field.name])
        metadata.setdefault("help", "(default: %(default)s)")
        trimmed.metadata = types.MappingProxyType(metadata)
        HfArgumentParser._parse_dataclass_field(parser, trimmed)

    def error(self, message: str):
        raise ValueError(message)


__all__ = ["CommandParser"]
