"""modeling_rq2: RocketQAv2 (joint retriever + re-ranker training) for PyTorch and Hugging Face."""

from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification

from .models.configuration_rq2 import RQ2RerankerConfig, RQ2RetrieverConfig
from .models.modeling_rq2 import (
    RQ2Reranker,
    RQ2RerankerOutput,
    RQ2Retriever,
    RQ2RetrieverOutput,
    format_passage,
)

# With the package installed, the Auto classes know our models without trust_remote_code.
AutoConfig.register(RQ2RetrieverConfig.model_type, RQ2RetrieverConfig, exist_ok=True)
AutoConfig.register(RQ2RerankerConfig.model_type, RQ2RerankerConfig, exist_ok=True)
AutoModel.register(RQ2RetrieverConfig, RQ2Retriever, exist_ok=True)
AutoModel.register(RQ2RerankerConfig, RQ2Reranker, exist_ok=True)
AutoModelForSequenceClassification.register(RQ2RerankerConfig, RQ2Reranker, exist_ok=True)

__version__ = "0.1.0"

_LAZY = {
    "RetrieveThenRerank": "retrieval.pipeline",
    "DenseIndex": "retrieval.index",
    "load_beir": "data.beir",
    "load_data": "data",
    "load_msmarco": "data.msmarco",
    "load_dpr": "data.dpr",
    "has_answer": "evaluation.answers",
}


def __getattr__(name: str):
    """The pipeline, index and data reader on demand: importing the models stays light (no FAISS, datasets)."""
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DenseIndex",
    "RetrieveThenRerank",
    "has_answer",
    "load_beir",
    "load_data",
    "load_dpr",
    "load_msmarco",
    "RQ2Reranker",
    "RQ2RerankerConfig",
    "RQ2RerankerOutput",
    "RQ2Retriever",
    "RQ2RetrieverConfig",
    "RQ2RetrieverOutput",
    "format_passage",
]
