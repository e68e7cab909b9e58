"""Exported folders load with sentence-transformers and give the same embeddings and scores as our models."""

import hashlib
import os
from functools import partial

import numpy as np
import pytest
from transformers import AutoModel

from modeling_rq2 import RQ2Retriever, format_passage
from modeling_rq2.models.st_export import export_reranker, export_retriever

from conftest import tiny_reranker, tiny_retriever

st = pytest.importorskip("sentence_transformers", minversion="6.2")

# Short max lengths, so that the long texts below are truncated (a wrong length changes the numbers).
LENGTHS = {"query_max_length": 6, "passage_max_length": 12}
QUERIES = ["what causes scurvy", "does the sun give light and energy to the earth and the moon", "heart"]
PASSAGES = [
    "scurvy is caused by low vitamin c and the sun does not cause scurvy in patients or mice",
    "the sun is a star",
    "paris is in france",
]
DICT_PASSAGES = [{"title": "sun", "text": "the sun is a star and gives light"}, {"title": "", "text": "paris is in france"}]
ATOL = 1e-5


def _saved(model, folder, export):
    model.save_pretrained(folder)
    export(model, folder)
    return str(folder)


def _digests(folder) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def _assert_same_as_ours(model: RQ2Retriever, loaded) -> None:
    np.testing.assert_allclose(loaded.encode_query(QUERIES), model.encode_queries(QUERIES), atol=ATOL)
    np.testing.assert_allclose(loaded.encode_document(PASSAGES), model.encode_passages(PASSAGES), atol=ATOL)
    sep = model.tokenizer.sep_token
    np.testing.assert_allclose(  # dict passages: sentence-transformers takes the formatted string
        loaded.encode_document([format_passage(p, sep) for p in DICT_PASSAGES]),
        model.encode_passages(DICT_PASSAGES),
        atol=ATOL,
    )
    np.testing.assert_allclose(loaded.encode(PASSAGES), model.encode_passages(PASSAGES), atol=ATOL)  # default: passages


@pytest.mark.parametrize(
    "overrides", [{"pooling": "mean"}, {"pooling": "cls", "similarity": "cosine"}], ids=["mean-dot", "cls-cosine"]
)
def test_shared_towers_load_as_a_module_stack(tiny_tokenizer, tmp_path, overrides):
    model = tiny_retriever(tiny_tokenizer, **LENGTHS, **overrides)
    folder = _saved(model, tmp_path / "r", export_retriever)
    loaded = st.SentenceTransformer(folder)

    _assert_same_as_ours(model, loaded)
    assert [type(m).__name__ for m in loaded] == ["Transformer", "Pooling"] + (["Normalize"] if "similarity" in overrides else [])
    assert loaded.similarity_fn_name == model.config.similarity
    assert loaded.max_seq_length == 12  # the passage length; encode_query truncates at the query length
    assert os.path.samefile(tmp_path / "r" / "model.safetensors", tmp_path / "r" / "encoder" / "model.safetensors")


def test_separate_towers_load_as_a_router(tiny_tokenizer, tmp_path):
    model = tiny_retriever(tiny_tokenizer, shared_towers=False, pooling="mean", similarity="cosine", **LENGTHS)
    loaded = st.SentenceTransformer(_saved(model, tmp_path / "r", export_retriever))

    _assert_same_as_ours(model, loaded)
    router = loaded[0]
    assert isinstance(router, st.sentence_transformer.modules.Router)
    assert {route: modules[0].max_seq_length for route, modules in router.sub_modules.items()} == {"query": 6, "document": 12}
    assert not np.allclose(loaded.encode_query(QUERIES[:1]), loaded.encode_document(QUERIES[:1]), atol=1e-3)  # two towers


def test_reranker_loads_as_a_cross_encoder_with_raw_logits(tiny_tokenizer, tmp_path):
    model = tiny_reranker(tiny_tokenizer, max_length=16, pooling="mean")
    loaded = st.CrossEncoder(_saved(model, tmp_path / "rr", export_reranker), trust_remote_code=True)
    pairs = [(q, p) for q in QUERIES for p in PASSAGES]

    np.testing.assert_allclose(loaded.predict(pairs), model.score_pairs(pairs), atol=ATOL)
    np.testing.assert_allclose(loaded.predict(pairs[:1]), model.score_pairs(pairs[:1]), atol=ATOL)  # a batch of one
    assert loaded.predict(pairs[1]) == pytest.approx(model.score_pairs(pairs[1:2])[0], abs=ATOL)  # one bare pair
    dict_pairs = [("what is the sun", p) for p in DICT_PASSAGES]
    sep = model.tokenizer.sep_token
    np.testing.assert_allclose(
        loaded.predict([(q, format_passage(p, sep)) for q, p in dict_pairs]), model.score_pairs(dict_pairs), atol=ATOL
    )
    assert loaded.max_seq_length == 16 and loaded.num_labels == 1


def _outputs(model):
    """What the model computes: passage embeddings for the retriever, pair logits for the re-ranker."""
    if isinstance(model, RQ2Retriever):
        return model.encode_passages(PASSAGES)
    return model.score_pairs(list(zip(QUERIES, PASSAGES)))


@pytest.mark.parametrize(
    "make, export",
    [
        (partial(tiny_retriever, shared_towers=True), export_retriever),
        (partial(tiny_retriever, shared_towers=False), export_retriever),
        (tiny_reranker, export_reranker),
    ],
    ids=["shared-retriever", "separate-retriever", "reranker"],
)
def test_export_leaves_the_saved_model_loadable(tiny_tokenizer, tmp_path, make, export):
    model = make(tiny_tokenizer)
    model.save_pretrained(tmp_path / "m")
    before = _digests(tmp_path / "m")
    export(model, tmp_path / "m")
    export(model, tmp_path / "m")  # again: rewrites its own files only
    assert {name: digest for name, digest in _digests(tmp_path / "m").items() if name in before} == before

    expected = _outputs(model)
    np.testing.assert_allclose(_outputs(type(model).from_pretrained(tmp_path / "m")), expected, atol=ATOL)
    auto = AutoModel.from_pretrained(tmp_path / "m", trust_remote_code=True)
    auto.tokenizer = model.tokenizer
    np.testing.assert_allclose(_outputs(auto), expected, atol=ATOL)


def test_unexportable_configurations_raise(tiny_tokenizer, tmp_path):
    retriever = tiny_retriever(tiny_tokenizer)
    retriever.save_pretrained(tmp_path / "r")
    retriever.config.pooling = "max"
    with pytest.raises(ValueError, match="pooling='max'"):
        export_retriever(retriever, tmp_path / "r")

    reranker = tiny_reranker(tiny_tokenizer)
    reranker.save_pretrained(tmp_path / "rr")
    reranker.config.num_labels = 2
    with pytest.raises(ValueError, match="num_labels"):
        export_reranker(reranker, tmp_path / "rr")

    reranker.config.num_labels, reranker.tokenizer = 1, None
    with pytest.raises(ValueError, match="no tokenizer"):
        export_reranker(reranker, tmp_path / "rr")
    with pytest.raises(FileNotFoundError, match="save_pretrained"):
        export_retriever(tiny_retriever(tiny_tokenizer), tmp_path / "empty")


def test_an_official_input_format_retriever_takes_title_text_pairs_in_sentence_transformers(tiny_tokenizer, tmp_path):
    """RocketQA's passage form has the text as segment B: sentence-transformers builds it from a (title, text) pair;
    an untitled passage is a plain string in both."""
    model = tiny_retriever(tiny_tokenizer, **LENGTHS, pooling="mean", input_format="official")
    loaded = st.SentenceTransformer(_saved(model, tmp_path / "r", export_retriever))
    titled = [p for p in DICT_PASSAGES if p["title"]]
    np.testing.assert_allclose(
        loaded.encode_document([(p["title"], p["text"]) for p in titled]), model.encode_passages(titled), atol=ATOL
    )
    np.testing.assert_allclose(loaded.encode_document(PASSAGES), model.encode_passages(PASSAGES), atol=ATOL)


def _kinds(value) -> tuple:
    """The container and shape of a sentence-transformers result: (type, shape) or ("list", item kinds)."""
    if isinstance(value, list):
        return ("list", len(value), _kinds(value[0]) if value else None)
    return (type(value).__name__, tuple(getattr(value, "shape", ())))


def _array(value) -> np.ndarray:
    import torch

    if isinstance(value, list):
        return np.stack([_array(v) for v in value])
    return value.float().cpu().numpy() if torch.is_tensor(value) else np.asarray(value)


@pytest.mark.parametrize("prompts", [{}, {"query_prompt": "query: ", "passage_prompt": "passage: "}], ids=["", "e5"])
@pytest.mark.parametrize("shared", [True, False], ids=["shared", "separate"])
def test_our_retriever_answers_sentence_transformers_calls_as_the_exported_folder_does(
    tiny_tokenizer, tmp_path, shared, prompts
):
    """The same-named calls (encode, encode_query, encode_document, similarity, their options, the model's prompts)
    give equal arrays."""
    import torch

    model = tiny_retriever(
        tiny_tokenizer, shared_towers=shared, pooling="mean", similarity="cosine", **LENGTHS, **prompts
    )
    loaded = st.SentenceTransformer(_saved(model, tmp_path / "r", export_retriever))
    for call, texts in (("encode", PASSAGES), ("encode_query", QUERIES), ("encode_document", PASSAGES)):
        for options in ({}, {"normalize_embeddings": True, "batch_size": 2}, {"prompt": "query: "}):
            ours, theirs = getattr(model, call)(texts, **options), getattr(loaded, call)(texts, **options)
            np.testing.assert_allclose(ours, theirs, atol=ATOL, err_msg=f"{call} {options}")
        assert getattr(model, call)(texts[0]).shape == getattr(loaded, call)(texts[0]).shape == (model.embedding_dim,)
        tensor = getattr(model, call)(texts, convert_to_tensor=True)
        assert torch.is_tensor(tensor) and tensor.shape == (len(texts), model.embedding_dim)
        for inputs in (texts, texts[0]):  # the return types of sentence-transformers, a batch or one input alone
            for options in ({"convert_to_numpy": False}, {"convert_to_tensor": True}):
                ours, theirs = getattr(model, call)(inputs, **options), getattr(loaded, call)(inputs, **options)
                assert _kinds(ours) == _kinds(theirs), (call, options, inputs is texts)
                np.testing.assert_allclose(_array(ours), _array(theirs), atol=ATOL)
    q, p = model.encode_query(QUERIES), model.encode_document(PASSAGES)
    np.testing.assert_allclose(model.similarity(q, p).numpy(), loaded.similarity(q, p).numpy(), atol=ATOL)
    with pytest.raises(ValueError, match=r"prompt_name must be one of this model's prompts \['document', 'query'\]"):
        model.encode(PASSAGES, prompt_name="classification")


def test_our_reranker_answers_cross_encoder_calls_as_the_exported_folder_does(tiny_tokenizer, tmp_path):
    import torch

    model = tiny_reranker(tiny_tokenizer, max_length=16, pooling="mean")
    loaded = st.CrossEncoder(_saved(model, tmp_path / "rr", export_reranker), trust_remote_code=True)
    pairs = [(q, p) for q in QUERIES for p in PASSAGES]
    np.testing.assert_allclose(model.predict(pairs), loaded.predict(pairs), atol=ATOL)
    assert model.predict(list(pairs[1])) == pytest.approx(loaded.predict(list(pairs[1])), abs=ATOL)  # one pair
    np.testing.assert_allclose(
        model.predict(pairs, activation_fn=torch.sigmoid), loaded.predict(pairs, activation_fn=torch.sigmoid), atol=ATOL
    )
    for inputs in (pairs, pairs[1]):
        for options in ({"convert_to_numpy": False}, {"convert_to_tensor": True}):
            ours, theirs = model.predict(inputs, **options), loaded.predict(inputs, **options)
            assert _kinds(ours) == _kinds(theirs), (options, inputs is pairs)
            np.testing.assert_allclose(_array(ours), _array(theirs), atol=ATOL)
    ours = model.rank(QUERIES[0], PASSAGES, top_k=2, return_documents=True)
    theirs = loaded.rank(QUERIES[0], PASSAGES, top_k=2, return_documents=True)
    assert [(r["corpus_id"], r["text"]) for r in ours] == [(r["corpus_id"], r["text"]) for r in theirs]
    assert [r["score"] for r in ours] == pytest.approx([r["score"] for r in theirs], abs=ATOL)
