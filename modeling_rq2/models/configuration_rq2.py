"""Configurations of the RocketQAv2 retriever (dual encoder) and re-ranker (cross-encoder).

Both wrap any Hugging Face encoder (BERT, MiniLM, ERNIE, ...) whose own config is nested as
``encoder_config``, so a saved folder is self-describing and loads without the backbone's repo.
"""

from huggingface_hub.dataclasses import strict
from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

POOLING_MODES = ("cls", "mean")
SIMILARITIES = ("dot", "cosine")
INPUT_FORMATS = ("joined", "official")
"""How a titled passage is tokenized. ``joined``: one segment, ``title [SEP] text`` (retriever) and
``[CLS] query [SEP] title [SEP] text [SEP]`` (re-ranker). ``official``: RocketQA's code,
``[CLS] title [SEP] text [SEP]`` with the text as segment B (retriever) and ``[CLS] query [SEP] title text [SEP]``
(re-ranker)."""


def _check_choice(config: PreTrainedConfig, field: str, choices: tuple[str, ...]) -> None:
    value = getattr(config, field)
    if value not in choices:
        raise ValueError(f"{type(config).__name__}.{field} must be one of {choices}, got {value!r}")


def _check_positive(config: PreTrainedConfig, *fields: str) -> None:
    for field in fields:
        value = getattr(config, field)
        if value <= 0:
            raise ValueError(f"{type(config).__name__}.{field} must be > 0, got {value!r}")


@strict
class RQ2RetrieverConfig(PreTrainedConfig):
    """Dual encoder: a query tower and a passage tower, scored by dot product or cosine.

    The paper (RocketQAv2) uses separate towers, [CLS] pooling and the dot product; sentence-style
    backbones such as all-MiniLM-L6-v2 were trained with mean pooling and cosine, hence the options.
    """

    model_type = "rq2_retriever"
    sub_configs_defaults = {"encoder_config": SubConfigSpec(config_class=AutoConfig, model_type="bert")}

    encoder_config: PreTrainedConfig | dict | None = None
    shared_towers: bool = True
    pooling: str = "cls"
    similarity: str = "dot"
    query_max_length: int = 32
    passage_max_length: int = 128
    input_format: str = "joined"
    query_prompt: str = ""
    """Put before every query (e.g. e5's ``"query: "``), as a sentence-transformers backbone declares it."""
    passage_prompt: str = ""
    """Put before every passage (e.g. ``"passage: "``)."""
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        self.check()
        super().__post_init__(**kwargs)

    def check(self) -> None:
        """Refuse a choice or length no model has; run again after ``from_pretrained(..., pooling=...)`` overrides,
        which are set after construction (``pooling="max"`` loaded and pooled by mean)."""
        _check_choice(self, "pooling", POOLING_MODES)
        _check_choice(self, "similarity", SIMILARITIES)
        _check_choice(self, "input_format", INPUT_FORMATS)
        _check_positive(self, "query_max_length", "passage_max_length")


@strict
class RQ2RerankerConfig(PreTrainedConfig):
    """Cross-encoder: ``[CLS] query [SEP] title [SEP] text [SEP]`` (``input_format`` joined; official: no ``[SEP]``
    between title and text) -> dropout -> linear -> one score."""

    model_type = "rq2_reranker"
    sub_configs_defaults = {"encoder_config": SubConfigSpec(config_class=AutoConfig, model_type="bert")}

    encoder_config: PreTrainedConfig | dict | None = None
    pooling: str = "cls"
    classifier_dropout: float = 0.1
    max_length: int = 160
    input_format: str = "joined"
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        self.check()
        kwargs.setdefault("num_labels", 1)
        super().__post_init__(**kwargs)

    def check(self) -> None:
        """Refuse a choice or length no model has (also after ``from_pretrained`` overrides)."""
        _check_choice(self, "pooling", POOLING_MODES)
        _check_choice(self, "input_format", INPUT_FORMATS)
        _check_positive(self, "max_length")
        if not 0.0 <= self.classifier_dropout < 1.0:
            raise ValueError(f"RQ2RerankerConfig.classifier_dropout must be in [0, 1), got {self.classifier_dropout!r}")


__all__ = ["RQ2RetrieverConfig", "RQ2RerankerConfig"]
