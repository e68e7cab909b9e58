"""The command line of ``train.py``: flags, optionally after a YAML or JSON preset (``configs/``) they override."""

import difflib
import json
import types
import typing
from pathlib import Path

import yaml

from ..argparsing import CommandParser
from .arguments import SETTING_CHOICES, RunConfig

ARGUMENT_CLASSES = tuple(RunConfig.__annotations__.values())
"""The sections' classes in ``RunConfig`` order: what the parser fills."""

USAGE = "%(prog)s [CONFIG.yaml | --config CONFIG.yaml] [--flag value ...]  (flags override the config file's values)"


MAX_CONFIG_NODES = 10_000
"""The most YAML nodes a config file may expand to, aliases followed: a preset has about a hundred, while a few
hundred bytes of nested aliases expand to millions (80 MB of error message, 750 MB of memory)."""


def _short(value, limit: int = 200) -> str:
    """A value for a message, cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


def _read_config(path: Path) -> dict:
    """A config file's mapping: a YAML (or JSON) syntax error, a key given twice, or aliases expanding past
    ``MAX_CONFIG_NODES`` nodes name the file (and line), before anything is built from it."""
    if path.suffix == ".json":
        return _read_json_config(path)
    try:
        node = yaml.compose(path.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ValueError(f"{path}{where}: not valid YAML ({problem})") from None
    if node is None:
        return {}
    if _expanded_size(node, {}) > MAX_CONFIG_NODES:
        raise ValueError(f"{path}: expands to more than {MAX_CONFIG_NODES:,} values (nested aliases?); write it out")
    if not isinstance(node, yaml.MappingNode):
        raise ValueError(f"{path}: expected a mapping of argument names to values")
    seen: dict[str, int] = {}
    for key, _ in node.value:
        if not isinstance(key, yaml.ScalarNode):
            raise ValueError(f"{path}:{key.start_mark.line + 1}: a key must be an argument name, not a {key.id}")
        if key.value in seen:
            raise ValueError(
                f"{path}:{key.start_mark.line + 1}: {key.value!r} given twice (first on line {seen[key.value]})"
            )
        seen[key.value] = key.start_mark.line + 1
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_document(node)
    except yaml.YAMLError as err:  # e.g. a tag safe_load refuses (!!python/object)
        raise ValueError(f"{path}: {str(err).splitlines()[0]}") from None
    finally:
        loader.dispose()


def _read_json_config(path: Path) -> dict:
    """A JSON config (read as JSON: tabs are fine, which YAML refuses), a key given twice named."""

    def unique(pairs: list) -> dict:
        keys = [key for key, _ in pairs]
        twice = next((key for key in keys if keys.count(key) > 1), None)
        if twice is not None:
            raise ValueError(f"{path}: {twice!r} given twice")
        return dict(pairs)

    try:
        values = json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=unique)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}:{err.lineno}:{err.colno}: not valid JSON ({err.msg})") from None
    except RecursionError:
        raise ValueError(f"{path}: nested too deeply to be a config") from None
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a mapping of argument names to values")
    return values


def _expanded_size(node, sizes: dict) -> int:
    """How many nodes ``node`` stands for with every alias expanded (shared nodes counted once per use)."""
    if id(node) in sizes:
        return sizes[id(node)]
    sizes[id(node)] = MAX_CONFIG_NODES + 1  # a cycle (a recursive alias) is over the limit
    children = node.value if isinstance(node.value, list) else []
    flat = [part for child in children for part in (child if isinstance(child, tuple) else (child,))]
    sizes[id(node)] = min(MAX_CONFIG_NODES + 1, 1 + sum(_expanded_size(child, sizes) for child in flat))
    return sizes[id(node)]


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
    raise ValueError(f"{path}: {key} must be {names}, got {_short(value)}")


CONFIG_SUFFIXES = (".yaml", ".yml", ".json")


def split_config_file(argv: list[str]) -> tuple[Path | None, list[str]]:
    """The config file among the flags (``--config FILE``, or a ``.yaml`` / ``.yml`` / ``.json`` argument anywhere
    that is no flag's value) and the flags without it; two config files are refused."""
    found: list[Path] = []
    rest: list[str] = []
    tokens = iter(enumerate(argv))
    for i, token in tokens:
        if token == "--config" or token.startswith("--config="):
            value = token.partition("=")[2] if "=" in token else next(tokens, (None, None))[1]
            if not value:
                raise ValueError("--config needs a file: --config configs/scifact.yaml")
            found.append(Path(value))
        elif token.endswith(CONFIG_SUFFIXES) and not (
            i > 0 and argv[i - 1].startswith("--") and "=" not in argv[i - 1]
        ):
            found.append(Path(token))
        else:
            rest.append(token)
    if len(found) > 1:
        raise ValueError(f"one config file at most, got {[str(path) for path in found]}")
    return (found[0] if found else None), rest


def parse_arguments(argv: list[str]) -> RunConfig:
    """Command-line flags, and optionally a YAML/JSON config file (anywhere, or ``--config FILE``) whose values the
    flags override. Flags are never abbreviated (``--epoch`` is not ``--epochs``).

    Unknown keys and invalid values raise before any data or model is loaded.
    """
    parser = CommandParser(ARGUMENT_CLASSES, choices=SETTING_CHOICES, usage=USAGE)
    path, argv = split_config_file(argv)
    if path is not None:
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} not found")
        values = _read_config(path)
        known = {name: kind for cls in ARGUMENT_CLASSES for name, kind in typing.get_type_hints(cls).items()}
        renamed = {old: new for names in RunConfig.RENAMED.values() for old, new in names.items()}
        unknown = sorted(str(key) for key in set(values) - set(known))
        if unknown:
            hint = "".join(f"; {key} is now {renamed[key]}" for key in unknown if key in renamed)
            raise ValueError(f"{path}: unknown keys {_short(unknown)}{hint}")
        parser.set_defaults(**{key: _typed(path, key, known[key], value) for key, value in values.items()})
    *sections, unused = parser.parse_args_into_dataclasses(args=argv, return_remaining_strings=True)
    if unused:
        raise ValueError(f"unknown flags {_short(unused)}{_closest_flag(parser, unused)}")
    return RunConfig(*sections)


def _closest_flag(parser: CommandParser, unused: list[str]) -> str:
    """ "; did you mean --epochs?" for the first unknown flag close to a known one."""
    flags = [option for action in parser._actions for option in action.option_strings]
    renamed = {f"--{old}": f"--{new}" for names in RunConfig.RENAMED.values() for old, new in names.items()}
    for token in unused:
        if token.partition("=")[0] in renamed:
            return f"; {token.partition('=')[0]} is now {renamed[token.partition('=')[0]]}"
        close = difflib.get_close_matches(token.partition("=")[0], flags, n=1) if token.startswith("--") else []
        if close:
            return f"; did you mean {close[0]}?"
    return ""
