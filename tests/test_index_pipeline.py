import numpy as np
import pytest

from modeling_rq2.index import DenseIndex
from modeling_rq2.pipeline import RetrieveThenRerank, to_run

from conftest import TINY_CORPUS


def _random_index(n=20, dim=8, seed=0):
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    index = DenseIndex(dim, "test-model")
    index.add(vectors, [f"doc{i}" for i in range(n)])
    return index, vectors


def test_exact_search_finds_each_vector_first():
    index, vectors = _random_index()
    hits = index.search(vectors / np.linalg.norm(vectors, axis=1, keepdims=True) * 100, k=3)
    expected = np.argmax(vectors @ (vectors * 100 / np.linalg.norm(vectors, axis=1, keepdims=True)).T, axis=0)
    assert [h[0][0] for h in hits] == [f"doc{i}" for i in expected]
    assert all(len(h) == 3 and h[0][1] >= h[1][1] >= h[2][1] for h in hits)


def test_k_larger_than_index_never_leaks_missing_ids():
    index, vectors = _random_index(n=4)
    hits = index.search(vectors[:2], k=50)
    assert [len(h) for h in hits] == [4, 4]
    assert all(doc.startswith("doc") for h in hits for doc, _ in h)
    assert DenseIndex(8).search(vectors[:2], k=5) == [[], []]


def test_save_load_round_trip_gives_identical_results(tmp_path):
    index, vectors = _random_index()
    index.save(tmp_path / "idx")
    assert (tmp_path / "idx" / "docid").read_text().splitlines()[:2] == ["doc0", "doc1"]
    loaded = DenseIndex.load(tmp_path / "idx", expected_dim=8)
    assert loaded.model_name == "test-model"
    assert loaded.search(vectors, k=5) == index.search(vectors, k=5)
    with pytest.raises(ValueError, match="dimension 8 does not match the retriever's 16"):
        DenseIndex.load(tmp_path / "idx", expected_dim=16)


def test_bad_shapes_are_refused():
    index, _ = _random_index()
    with pytest.raises(ValueError, match=r"shape \(n, 8\)"):
        index.add(np.zeros((2, 3), np.float32), ["a", "b"])
    with pytest.raises(ValueError, match="2 doc ids for 1"):
        index.add(np.zeros((1, 8), np.float32), ["a", "b"])


def test_retrieve_then_rerank_reorders_only_the_head(retriever, reranker):
    ids = [d["_id"] for d in TINY_CORPUS]
    pipe = RetrieveThenRerank.from_corpus(retriever, TINY_CORPUS, ids, reranker)
    queries = ["what causes scurvy", "heart risk"]
    retrieved = pipe.retrieve(queries, top_k=5)
    reranked = pipe.search(queries, top_k=5, rerank_top_k=3)
    for q, before, after in zip(queries, retrieved, reranked):
        head = [doc for doc, _ in before[:3]]
        assert sorted(doc for doc, _ in after[:3]) == sorted(head)
        assert after[3:] == before[3:]
        expected = reranker.score(q, [pipe.passages[d] for d in head])
        assert [doc for doc, _ in after[:3]] == [head[i] for i in np.argsort(-expected, kind="stable")]
    run = to_run(["a", "b"], reranked)
    assert list(run["a"]) == [doc for doc, _ in reranked[0]] and run["a"][reranked[0][0][0]] == 5.0


def test_fusion_interpolates_standardised_scores(retriever, reranker):
    ids = [d["_id"] for d in TINY_CORPUS]
    pipe = RetrieveThenRerank.from_corpus(retriever, TINY_CORPUS, ids, reranker)
    queries = ["what causes scurvy"]
    retrieved = pipe.retrieve(queries, top_k=5)
    logits = pipe.rerank_scores(queries, retrieved, rerank_top_k=5)
    # fusion 1 keeps the retriever's order; fusion 0 is pure re-ranking
    assert [d for d, _ in pipe.rerank(queries, retrieved, 5, fusion=1.0, logits=logits)[0]] == [d for d, _ in retrieved[0]]
    assert pipe.rerank(queries, retrieved, 5, fusion=0.0, logits=logits) == pipe.rerank(queries, retrieved, 5)
    z = lambda x: (np.asarray(x) - np.mean(x)) / (np.std(x) + 1e-6)  # noqa: E731
    expected = 0.5 * z(logits[0]) + 0.5 * z([s for _, s in retrieved[0]])
    fused = dict(pipe.rerank(queries, retrieved, 5, fusion=0.5, logits=logits)[0])
    assert [fused[d] for d, _ in retrieved[0]] == pytest.approx(expected.tolist(), abs=1e-9)
    with pytest.raises(ValueError, match="fusion must be in"):
        pipe.rerank(queries, retrieved, 5, fusion=2.0, logits=logits)
