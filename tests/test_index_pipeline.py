import copy
import json
import tracemalloc

import numpy as np
import pytest
import torch

from modeling_rq2 import RQ2Retriever
from modeling_rq2.retrieval.index import (
    DenseIndex,
    IndexOptions,
    build_index,
    encode_corpus_shards,
    index_from_shards,
    retriever_fingerprint,
)
from modeling_rq2.retrieval.pipeline import RetrieveThenRerank, to_run

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
        assert [doc for doc, _ in after[3:]] == [doc for doc, _ in before[3:]]
        expected = reranker.score(q, [pipe.passages[d] for d in head])
        assert [doc for doc, _ in after[:3]] == [head[i] for i in np.argsort(-expected, kind="stable")]
        assert np.allclose([s for _, s in after[:3]], sorted(expected, reverse=True), atol=1e-5)  # the logits
        tail_gaps = np.diff([s for _, s in after[3:]])
        assert np.allclose(tail_gaps, np.diff([s for _, s in before[3:]]), atol=1e-6)  # similarities, shifted
        assert all(a[1] > b[1] for a, b in zip(after, after[1:]))  # comparable down the whole list
    for fusion in (0.5, 1.0):  # fused z-scores in the head, shifted similarities in the tail: still decreasing
        for hits in pipe.search(queries, top_k=5, rerank_top_k=3, fusion=fusion):
            assert len(hits) == 5 and all(a[1] > b[1] for a, b in zip(hits, hits[1:])), fusion
    run = to_run(["a", "b"], reranked)
    assert list(run["a"]) == [doc for doc, _ in reranked[0]] and run["a"] == dict(reranked[0])


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


def _clustered(n=400, dim=16, seed=1):
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@pytest.mark.parametrize(
    "options",
    [IndexOptions("flat16"), IndexOptions("hnsw", hnsw_m=16), IndexOptions("ivfpq", ivf_nlist=8, ivf_nprobe=8, pq_m=16, pq_nbits=4)],
    ids=["flat16", "hnsw", "ivfpq"],
)
def test_approximate_indexes_find_the_exact_top1_and_survive_a_round_trip(options, tmp_path):
    vectors = _clustered()
    ids = [f"doc{i}" for i in range(len(vectors))]
    index = DenseIndex.build(vectors, ids, options, "m")
    noisy = vectors[:50] + 0.01 * np.random.default_rng(2).standard_normal((50, 16)).astype(np.float32)
    exact = DenseIndex.build(vectors, ids).search(noisy, k=1)
    hits = index.search(noisy, k=5)
    assert [h[0][0] for h in hits] == [e[0][0] for e in exact] == ids[:50]
    index.save(tmp_path / "idx")
    loaded = DenseIndex.load(tmp_path / "idx")
    assert loaded.options == options and loaded.search(noisy, k=5) == hits
    assert index.search(vectors[:2], k=10_000)[0][-1][0].startswith("doc")  # k > size: no -1 ids


def test_index_options_are_checked():
    with pytest.raises(ValueError, match="index_type must be one of"):
        IndexOptions("annoy")
    with pytest.raises(ValueError, match="pq_m=5 must divide the embedding dimension 16"):
        DenseIndex.build(_clustered(), [str(i) for i in range(400)], IndexOptions("ivfpq", pq_m=5))
    untrained = DenseIndex(16, options=IndexOptions("ivfpq", ivf_nlist=4))
    with pytest.raises(ValueError, match="must be trained first"):
        untrained.add(_clustered(4), list("abcd"))


def test_an_index_from_another_retriever_is_refused(retriever, tiny_tokenizer, tmp_path):
    ids = [d["_id"] for d in TINY_CORPUS]
    index = build_index(retriever, TINY_CORPUS, ids)
    index.save(tmp_path / "idx")
    assert DenseIndex.load(tmp_path / "idx", retriever=retriever).fingerprint == retriever_fingerprint(retriever)
    other = copy.deepcopy(retriever)
    with torch.no_grad():
        next(other.parameters()).add_(0.01)
    with pytest.raises(ValueError, match="re-encode the corpus"):
        DenseIndex.load(tmp_path / "idx", retriever=other)


def test_sharded_encoding_resumes_after_a_kill_and_splits_across_processes(retriever, tmp_path, monkeypatch):
    passages = [{"title": "", "text": f"the sun and the moon {i}"} for i in range(10)] + TINY_CORPUS
    ids = [f"p{i}" for i in range(len(passages))]
    real = retriever.encode_passages
    calls = []

    def dies_on_the_third_shard(batch, *args, **kwargs):
        calls.append(len(batch))
        if len(calls) == 3:
            raise KeyboardInterrupt("killed")
        return real(batch, *args, **kwargs)

    monkeypatch.setattr(retriever, "encode_passages", dies_on_the_third_shard)
    with pytest.raises(KeyboardInterrupt):
        encode_corpus_shards(retriever, passages, ids, tmp_path / "shards", shard_size=4)
    assert sorted(p.name for p in (tmp_path / "shards").glob("shard-*.npy")) == ["shard-00000.npy", "shard-00001.npy"]
    with pytest.raises(ValueError, match="2 of 4 shards not encoded yet"):
        index_from_shards(tmp_path / "shards")
    calls.clear()
    encode_corpus_shards(retriever, passages, ids, tmp_path / "shards", shard_size=4)
    assert calls == [4, 3]  # only shards 2 and 3 were encoded on resume
    sharded = index_from_shards(tmp_path / "shards")
    monkeypatch.setattr(retriever, "encode_passages", real)
    in_memory = build_index(retriever, passages, ids)
    queries = retriever.encode_queries(["what causes scurvy", "the moon"])
    assert sharded.doc_ids == ids and sharded.fingerprint == in_memory.fingerprint
    assert [[d for d, _ in h] for h in sharded.search(queries, 5)] == [[d for d, _ in h] for h in in_memory.search(queries, 5)]

    for process in (0, 1):  # two processes, each its own share of the shards
        encode_corpus_shards(retriever, passages, ids, tmp_path / "two", shard_size=4, process_index=process, num_processes=2)
    assert index_from_shards(tmp_path / "two").doc_ids == ids
    with pytest.raises(ValueError, match="holds shards of another encoding"):
        encode_corpus_shards(retriever, passages, ids, tmp_path / "two", shard_size=5)


def test_pipeline_from_pretrained_saves_then_reuses_its_index(retriever, reranker, tmp_path, monkeypatch):
    retriever.save_pretrained(tmp_path / "retriever")
    reranker.save_pretrained(tmp_path / "reranker")
    corpus = {d["_id"]: d for d in TINY_CORPUS}
    pipe = RetrieveThenRerank.from_pretrained(tmp_path / "retriever", tmp_path / "reranker", corpus, tmp_path / "index")
    first = pipe.search(["what causes scurvy"], top_k=4, rerank_top_k=2)
    assert (tmp_path / "index" / "docid").read_text().split() == list(corpus)
    assert not (tmp_path / "index" / "shards").exists()  # the encoding shards go once the index is saved
    kept = RetrieveThenRerank.from_pretrained(tmp_path / "retriever", None, corpus, tmp_path / "kept", keep_shards=True)
    assert len(kept.index) == len(corpus) and list((tmp_path / "kept" / "shards").glob("shard-*.npy"))

    def no_encoding(*args, **kwargs):
        raise AssertionError("the saved index should have been reused")

    monkeypatch.setattr(RQ2Retriever, "encode_passages", no_encoding)
    again = RetrieveThenRerank.from_pretrained(tmp_path / "retriever", tmp_path / "reranker", corpus, tmp_path / "index")
    assert again.search(["what causes scurvy"], top_k=4, rerank_top_k=2) == first
    with pytest.raises(ValueError, match="not the corpus given"):
        RetrieveThenRerank.from_pretrained(tmp_path / "retriever", None, dict(list(corpus.items())[:3]), tmp_path / "index")


def test_flat16_is_exact_search_in_half_the_memory_and_survives_a_round_trip(tmp_path):
    vectors = _clustered(n=2000, dim=64)
    ids = [f"doc{i}" for i in range(len(vectors))]
    queries = vectors[:100] + 0.05 * np.random.default_rng(3).standard_normal((100, 64)).astype(np.float32)
    flat, half = (DenseIndex.build(vectors, ids, IndexOptions(kind), "m") for kind in ("flat", "flat16"))
    assert half.index.is_trained and half.index.ntotal == 2000
    exact, hits = flat.search(queries, k=10), half.search(queries, k=10)
    assert [h[0][0] for h in hits] == [e[0][0] for e in exact]  # fp16 rounding may swap only near-ties
    assert np.mean([len({d for d, _ in h} & {d for d, _ in e}) / 10 for h, e in zip(hits, exact)]) > 0.98
    assert np.allclose([[s for _, s in h] for h in hits], [[s for _, s in h] for h in exact], atol=2e-3)
    flat.save(tmp_path / "flat")
    half.save(tmp_path / "flat16")
    loaded = DenseIndex.load(tmp_path / "flat16", expected_dim=64)
    assert loaded.options == IndexOptions("flat16") and loaded.search(queries, k=10) == hits
    size = lambda name: (tmp_path / name / "index").stat().st_size
    assert 0.45 < size("flat16") / size("flat") < 0.55


def _write_shards(folder, vectors, ids, shard_size):
    folder.mkdir(parents=True)
    for s, start in enumerate(range(0, len(vectors), shard_size)):
        np.save(folder / f"shard-{s:05d}.npy", vectors[start : start + shard_size])
        (folder / f"shard-{s:05d}.docid").write_text("".join(f"{d}\n" for d in ids[start : start + shard_size]))
    meta = {"model_name": "m", "fingerprint": "f", "dim": vectors.shape[1], "size": len(ids), "shard_size": shard_size}
    (folder / "shards.json").write_text(json.dumps(meta))
    return folder


@pytest.mark.parametrize("train_sample", [600, 250], ids=["sample-is-all-rows", "sample-across-shards"])
@pytest.mark.parametrize(
    "options",
    [IndexOptions("flat"), IndexOptions("flat16"), IndexOptions("ivfpq", ivf_nlist=4, ivf_nprobe=2, pq_m=8, pq_nbits=4)],
    ids=["flat", "flat16", "ivfpq"],
)
def test_index_from_shards_equals_build_over_the_concatenated_vectors(options, train_sample, tmp_path):
    rng = np.random.default_rng(4)
    vectors = rng.standard_normal((600, 16)).astype(np.float32)
    ids = [f"doc{i}" for i in range(600)]
    folder = _write_shards(tmp_path / "shards", vectors, ids, shard_size=200)
    sharded = index_from_shards(folder, options, train_sample=train_sample, seed=7)
    whole = DenseIndex.build(vectors, ids, options, "m", "f", train_sample=train_sample, seed=7)
    queries = rng.standard_normal((40, 16)).astype(np.float32)
    assert sharded.doc_ids == ids and (sharded.model_name, sharded.fingerprint) == ("m", "f")
    assert sharded.search(queries, k=20) == whole.search(queries, k=20)
    if options.index_type == "ivfpq":  # same sample, same k-means: identical codes
        assert faiss_bytes(sharded.index) == faiss_bytes(whole.index)


def faiss_bytes(index):
    import faiss

    return faiss.serialize_index(index).tobytes()


def test_index_from_shards_never_copies_the_corpus(tmp_path):
    vectors = np.random.default_rng(5).standard_normal((6000, 256)).astype(np.float32)  # 6 MB in 3 shards
    ids = [str(i) for i in range(6000)]
    folder = _write_shards(tmp_path / "shards", vectors, ids, shard_size=2000)
    for options in (IndexOptions("flat"), IndexOptions("ivfpq", ivf_nlist=8, pq_m=8)):
        tracemalloc.start()  # numpy arrays and the id strings are traced (FAISS's own storage is not)
        index_from_shards(folder, options, train_sample=500)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < vectors.nbytes / 3, (options.index_type, peak)


def test_index_from_shards_checks_ids_before_training(tmp_path):
    vectors = np.random.default_rng(6).standard_normal((30, 8)).astype(np.float32)
    folder = _write_shards(tmp_path / "shards", vectors, [str(i) for i in range(30)], shard_size=10)
    (folder / "shard-00001.docid").write_text("a\nb\n")
    with pytest.raises(ValueError, match="shard 1 holds 10 embeddings but 2 ids"):
        index_from_shards(folder, IndexOptions("ivfpq", ivf_nlist=2, pq_m=2))


def test_ivfpq_skips_polysemous_training():
    """It costs minutes per index on one thread and changes no search result (8-bit codes only)."""
    import faiss

    index = IndexOptions("ivfpq", ivf_nlist=4, pq_m=4, pq_nbits=8).build(16, 1000)
    assert faiss.downcast_index(index).do_polysemous_training is False


def test_in_memory_build_of_a_corpus_larger_than_a_shard_streams_the_same_index(retriever):
    from modeling_rq2.retrieval.index import build_index

    passages = [f"passage {i} about {w}" for i, w in enumerate(["sun", "moon", "cell", "gene", "heart"] * 5)]
    ids = [f"d{i}" for i in range(len(passages))]
    queries = retriever.encode_queries(["what is the sun", "gene"])
    whole = build_index(retriever, passages, ids, IndexOptions("flat"))
    for kind in ("flat", "flat16"):
        streamed = build_index(retriever, passages, ids, IndexOptions(kind), shard_size=7)
        assert streamed.doc_ids == ids and streamed.index.ntotal == len(ids)
        assert [[d for d, _ in hits] for hits in streamed.search(queries, 5)] == [[d for d, _ in hits] for hits in whole.search(queries, 5)]
