import json

import numpy as np
import pytest
import torch
from transformers import AutoModel, AutoModelForSequenceClassification

from modeling_rq2 import RQ2Reranker, RQ2Retriever, format_passage

from conftest import run_without_package, tiny_retriever

QUERIES = ["what causes scurvy", "does the sun give light and energy to earth", "heart risk"]
PASSAGES = [
    {"title": "scurvy", "text": "scurvy is caused by low vitamin c"},
    "the sun is a star",
    {"title": "", "text": "paris is in france"},
    {"title": "heart", "text": "high blood pressure does increase heart risk in patients and mice"},
]


def _tokens(model, texts, max_length=32):
    return model.tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")


def test_format_passage_uses_title_separator_text():
    assert format_passage({"title": "T", "text": "body"}, "[SEP]") == "T [SEP] body"
    assert format_passage({"title": "  ", "text": "body"}, "[SEP]") == "body"
    assert format_passage("plain", "[SEP]") == "plain"
    with pytest.raises(TypeError, match="'text'"):
        format_passage({"title": "no text"}, "[SEP]")


@pytest.mark.parametrize("shared", [True, False])
def test_retriever_listwise_and_flat_scores(tiny_tokenizer, shared):
    model = tiny_retriever(tiny_tokenizer, shared_towers=shared)
    assert (model.passage_encoder is None) == shared
    q = _tokens(model, QUERIES[:2])
    p = _tokens(model, [format_passage(x, "[SEP]") for x in PASSAGES])
    flat = model(q["input_ids"], p["input_ids"], q["attention_mask"], p["attention_mask"])
    assert flat.scores.shape == (2, 4)
    assert flat.query_embeddings.shape == (2, 32) and flat.passage_embeddings.shape == (4, 32)
    # listwise: query i gets its own list of 2 passages -> (2, 2), equal to the matching flat scores
    listed = {k: v.reshape(2, 2, -1) for k, v in p.items()}
    out = model(q["input_ids"], listed["input_ids"], q["attention_mask"], listed["attention_mask"])
    assert out.scores.shape == (2, 2)
    torch.testing.assert_close(out.scores, torch.stack([flat.scores[0, :2], flat.scores[1, 2:]]))


def test_separate_towers_embed_passages_differently(tiny_tokenizer):
    model = tiny_retriever(tiny_tokenizer, shared_towers=False)
    with torch.no_grad():
        model.passage_encoder.embeddings.word_embeddings.weight.add_(0.5)
    assert not np.allclose(model.encode_queries(["the sun"]), model.encode_passages(["the sun"]))


def test_mean_pooling_ignores_padding(retriever):
    alone = retriever.encode_queries(["scurvy"])
    padded = retriever.encode_queries(["scurvy", "the sun is a star and gives light and energy to earth"])
    np.testing.assert_allclose(alone[0], padded[0], atol=1e-5)


def test_cosine_similarity_gives_unit_embeddings(tiny_tokenizer):
    model = tiny_retriever(tiny_tokenizer, similarity="cosine")
    emb = model.encode_passages(PASSAGES)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)


def test_encode_keeps_input_order_and_dtype(retriever):
    batch = retriever.encode_queries(QUERIES, batch_size=1)
    assert batch.dtype == np.float32 and batch.shape == (3, 32)
    for i, q in enumerate(QUERIES):
        np.testing.assert_allclose(batch[i], retriever.encode_queries([q])[0], atol=1e-5)
    assert retriever.encode_passages([]).shape == (0, 32)


def test_encode_truncates_long_inputs(tiny_tokenizer):
    model = tiny_retriever(tiny_tokenizer, query_max_length=8)
    long_query = " ".join(["sun"] * 500)  # far beyond max_position_embeddings=128
    np.testing.assert_allclose(model.encode_queries([long_query]), model.encode_queries([" ".join(["sun"] * 6)]), atol=1e-5)


def test_encode_restores_training_mode(retriever):
    retriever.train()
    retriever.encode_queries(["sun"])
    assert retriever.training


def test_missing_tokenizer_is_a_clear_error(retriever):
    retriever.tokenizer = None
    with pytest.raises(ValueError, match="no tokenizer"):
        retriever.encode_queries(["sun"])


def test_reranker_logit_shapes(reranker):
    tokens = reranker.tokenize_pairs([(q, p) for q in QUERIES[:2] for p in PASSAGES[:3]])
    flat = reranker(**tokens).logits
    assert flat.shape == (6,)
    listed = reranker(**{k: v.reshape(2, 3, -1) for k, v in tokens.items()}).logits
    assert listed.shape == (2, 3)
    torch.testing.assert_close(listed.reshape(-1), flat)


def test_reranker_score_matches_score_pairs(reranker):
    scores = reranker.score(QUERIES[0], PASSAGES)
    assert scores.shape == (4,) and scores.dtype == np.float32
    np.testing.assert_allclose(scores, reranker.score_pairs([(QUERIES[0], p) for p in PASSAGES], batch_size=3), atol=1e-5)
    with pytest.raises(TypeError, match="pair 0"):
        reranker.score_pairs(["not a pair"])


def test_round_trip_outputs_equal(tmp_path, retriever, reranker):
    retriever.save_pretrained(tmp_path / "r")
    reranker.save_pretrained(tmp_path / "c")
    assert (tmp_path / "r" / "model.safetensors").is_file() and (tmp_path / "r" / "tokenizer_config.json").is_file()
    r2, c2 = RQ2Retriever.from_pretrained(tmp_path / "r"), RQ2Reranker.from_pretrained(tmp_path / "c")
    assert r2.tokenizer is not None and c2.tokenizer is not None
    np.testing.assert_array_equal(r2.encode_passages(PASSAGES), retriever.encode_passages(PASSAGES))
    np.testing.assert_array_equal(c2.score(QUERIES[0], PASSAGES), reranker.score(QUERIES[0], PASSAGES))


def test_auto_classes_load_without_remote_code_when_installed(tmp_path, retriever, reranker):
    retriever.save_pretrained(tmp_path / "r")
    reranker.save_pretrained(tmp_path / "c")
    assert isinstance(AutoModel.from_pretrained(tmp_path / "r"), RQ2Retriever)
    assert isinstance(AutoModel.from_pretrained(tmp_path / "c"), RQ2Reranker)
    assert isinstance(AutoModelForSequenceClassification.from_pretrained(tmp_path / "c"), RQ2Reranker)


def test_saved_folder_loads_with_trust_remote_code_without_the_package(tmp_path, retriever, reranker):
    """A user without modeling_rq2 installed loads both folders from their copied code alone."""
    retriever.save_pretrained(tmp_path / "r")
    reranker.save_pretrained(tmp_path / "c")
    expected_q = retriever.encode_queries(QUERIES)
    expected_s = reranker.score(QUERIES[0], PASSAGES)
    np.save(tmp_path / "q.npy", expected_q)
    np.save(tmp_path / "s.npy", expected_s)
    script = f"""
import numpy as np
from transformers import AutoModel, AutoModelForSequenceClassification
r = AutoModel.from_pretrained({str(tmp_path / "r")!r}, trust_remote_code=True)
assert type(r).__module__.startswith("transformers_modules"), type(r).__module__
np.testing.assert_allclose(r.encode_queries({QUERIES!r}), np.load({str(tmp_path / "q.npy")!r}), atol=1e-6)
for auto in (AutoModel, AutoModelForSequenceClassification):
    c = auto.from_pretrained({str(tmp_path / "c")!r}, trust_remote_code=True)
    np.testing.assert_allclose(c.score({QUERIES[0]!r}, {PASSAGES!r}), np.load({str(tmp_path / "s.npy")!r}), atol=1e-6)
print("ok")
"""
    assert run_without_package(script, tmp_path).strip().endswith("ok")


def test_from_backbone_copies_backbone_weights(tmp_path, tiny_tokenizer):
    """from_backbone on a plain encoder folder: every tower starts from its weights."""
    from transformers import BertConfig, BertModel

    from conftest import TINY_ENCODER

    torch.manual_seed(1)
    encoder = BertModel(BertConfig(**{k: v for k, v in TINY_ENCODER.items() if k != "model_type"}))
    encoder.save_pretrained(tmp_path / "enc")
    tiny_tokenizer.save_pretrained(tmp_path / "enc")
    model = RQ2Retriever.from_backbone(tmp_path / "enc", shared_towers=False, pooling="mean")
    for tower in (model.query_encoder, model.passage_encoder):
        torch.testing.assert_close(tower.embeddings.word_embeddings.weight, encoder.embeddings.word_embeddings.weight)
    reranker = RQ2Reranker.from_backbone(tmp_path / "enc")
    torch.testing.assert_close(reranker.encoder.encoder.layer[0].output.dense.weight, encoder.encoder.layer[0].output.dense.weight)
    assert reranker.tokenizer is not None and reranker.config.name_or_path == str(tmp_path / "enc")


@pytest.mark.parametrize("pooling_config, expected", [({"pooling_mode": "cls"}, "cls"), ({"pooling_mode_mean_tokens": True}, "mean")])
def test_sentence_transformers_pooling_is_read_in_old_and_new_formats(tmp_path, pooling_config, expected):
    from modeling_rq2.models.modeling_rq2 import _sentence_transformers_defaults

    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps(pooling_config))
    modules = [{"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
               {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]
    (tmp_path / "modules.json").write_text(json.dumps(modules))
    assert _sentence_transformers_defaults(str(tmp_path)) == {"pooling": expected, "similarity": "cosine"}


def test_a_length_beyond_the_backbone_is_capped_and_logged_once(tiny_tokenizer, caplog):
    import logging

    model = tiny_retriever(tiny_tokenizer, passage_max_length=256)  # position embeddings: 128
    with caplog.at_level(logging.WARNING, logger="modeling_rq2.models.modeling_rq2"):
        for _ in range(3):
            assert model.tokenize_passages([" ".join(["sun"] * 300)])["input_ids"].shape == (1, 128)
    assert [r.getMessage() for r in caplog.records] == [
        "RQ2Retriever: max length 256 capped at 128 (position embeddings 128, tokenizer model_max_length -)"
    ]


def test_reranker_forward_with_labels_returns_the_loss_trainer_fine_tunes(reranker, tmp_path):
    """As a one-label ``...ForSequenceClassification``: labels in, a loss out (BCE on the logit; MSE for
    problem_type regression), so ``transformers.Trainer`` can fine-tune the re-ranker."""
    import datasets
    from transformers import Trainer, TrainingArguments

    batch = reranker.tokenize_pairs([("scurvy", "vitamin c"), ("scurvy", "paris is in france")])
    labels = torch.tensor([1.0, 0.0])
    output = reranker(**batch, labels=labels)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(output.logits, labels)
    assert torch.allclose(output.loss, expected) and reranker(**batch).loss is None
    reranker.config.problem_type = "regression"
    assert torch.allclose(reranker(**batch, labels=labels).loss, ((output.logits - labels) ** 2).mean())
    reranker.config.problem_type = None

    rows = [{**{k: v[i].tolist() for k, v in batch.items()}, "labels": float(labels[i])} for i in range(2)]
    before = {k: v.clone() for k, v in reranker.state_dict().items()}
    args = TrainingArguments(str(tmp_path), max_steps=2, per_device_train_batch_size=2, report_to=[], use_cpu=True)
    Trainer(model=reranker, args=args, train_dataset=datasets.Dataset.from_list(rows)).train()
    assert any(not torch.equal(before[k], v) for k, v in reranker.state_dict().items())


def test_the_retriever_works_as_a_feature_extractor(retriever, tmp_path):
    """``model(**tokenizer(texts))`` and ``pipeline("feature-extraction")`` give the query embeddings."""
    from transformers import pipeline

    texts = ["what causes scurvy", "the sun is a star"]
    expected = retriever.encode_queries(texts)
    tokens = retriever.tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        embeddings = retriever(**tokens).embeddings
    assert np.allclose(embeddings.numpy(), expected, atol=1e-5)
    retriever.save_pretrained(tmp_path / "r")
    extractor = pipeline("feature-extraction", model=str(tmp_path / "r"), framework="pt", device="cpu")
    assert np.allclose(np.asarray(extractor(texts[0]))[0], expected[0], atol=1e-5)
    with pytest.raises(ValueError, match="not both"):
        retriever(input_ids=tokens["input_ids"], query_input_ids=tokens["input_ids"])


def _st_folder(tmp_path, tiny_tokenizer, pooling: dict, *extra_modules: dict, max_seq_length: int | None = None):
    """A sentence-transformers folder of a tiny encoder: its weights, modules.json, pooling and extras."""
    folder = tmp_path / "st"
    tiny_retriever(tiny_tokenizer).query_encoder.save_pretrained(folder)
    tiny_tokenizer.save_pretrained(folder)
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        *extra_modules,
    ]
    (folder / "modules.json").write_text(json.dumps(modules))
    if max_seq_length:
        (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": max_seq_length}))
    return folder


@pytest.mark.parametrize(
    "pooling, mode",
    [
        ({"pooling_mode": "lasttoken"}, "lasttoken"),
        ({"pooling_mode": "max"}, "max"),
        ({"pooling_mode_weightedmean_tokens": True}, "weightedmean"),
        ({"pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": True}, r"mean \+ max"),
    ],
)
def test_a_sentence_transformers_pooling_we_lack_is_refused_naming_it(tmp_path, tiny_tokenizer, pooling, mode):
    """lasttoken became cls before: a silently different model."""
    folder = _st_folder(tmp_path, tiny_tokenizer, pooling)
    with pytest.raises(ValueError, match=rf"st: pools by {mode}, which RQ2Retriever does not \(cls, mean\)"):
        RQ2Retriever.from_backbone(folder)
    assert RQ2Retriever.from_backbone(folder, pooling="mean").config.pooling == "mean"  # the caller's choice stands


def test_a_dense_projection_is_refused_and_the_folders_length_and_dtype_are_honoured(tmp_path, tiny_tokenizer):
    dense = {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"}
    folder = _st_folder(tmp_path, tiny_tokenizer, {"pooling_mode": "mean"}, dense, max_seq_length=24)
    with pytest.raises(ValueError, match=r"st: its embeddings go through a Dense projection \(2_Dense\)"):
        RQ2Retriever.from_backbone(folder)
    (folder / "modules.json").write_text(json.dumps(json.loads((folder / "modules.json").read_text())[:2]))
    model = RQ2Retriever.from_backbone(folder, dtype=torch.bfloat16)
    assert (model.config.pooling, model.config.passage_max_length) == ("mean", 24)  # max_seq_length: 128 before
    assert next(model.parameters()).dtype == torch.bfloat16  # dropped silently before


def test_inference_precision_autocasts_and_returns_float32(retriever, reranker, monkeypatch):
    """bf16 encodes and scores close to fp32 (a tiny model: loose), outputs stay float32; ``auto`` asks the hardware."""
    import modeling_rq2.models.modeling_rq2 as modeling

    texts = ["what causes scurvy", "the sun is a star and gives light and energy to earth"]
    fp32 = retriever.encode_passages(texts)
    bf16 = retriever.encode_passages(texts, precision="bf16")
    assert bf16.dtype == np.float32 and not np.array_equal(bf16, fp32)
    cosine = (bf16 * fp32).sum(1) / np.linalg.norm(bf16, axis=1) / np.linalg.norm(fp32, axis=1)
    assert cosine.min() > 0.99
    scores = reranker.score_pairs([(t, t) for t in texts], precision="bf16")
    assert scores.dtype == np.float32 and np.allclose(scores, reranker.score_pairs([(t, t) for t in texts]), atol=0.1)
    for native, expected in ((True, torch.bfloat16), (False, None)):
        monkeypatch.setattr(modeling, "native_bf16", lambda device, native=native: native)
        assert modeling.inference_dtype("auto", torch.device("cpu")) is expected
    with pytest.raises(ValueError, match=r"precision must be one of \('auto', 'fp32', 'bf16', 'fp16', 'int8'\)"):
        retriever.encode_queries(texts, precision="int4")


def test_int8_quantises_the_encoders_once_and_keeps_the_model_as_it_was(retriever, reranker):
    """int8: dynamic quantisation of the linear layers (feed-forward outputs kept float), made once per model and
    remade after a weight changes; the model itself, its state dict and its outputs in fp32 are untouched."""
    from torch.ao.nn.quantized.dynamic import Linear as Int8Linear

    texts = ["what causes scurvy", "the sun is a star and gives light and energy to earth"]
    fp32, state = retriever.encode_passages(texts), {k: v.clone() for k, v in retriever.state_dict().items()}
    int8 = retriever.encode_passages(texts, precision="int8")
    assert int8.dtype == np.float32 and not np.array_equal(int8, fp32)
    cosine = (int8 * fp32).sum(1) / np.linalg.norm(int8, axis=1) / np.linalg.norm(fp32, axis=1)
    assert cosine.min() > 0.98
    towers = retriever.int8_towers()
    layer = towers["query_encoder"].encoder.layer[0]
    assert isinstance(layer.intermediate.dense, Int8Linear) and isinstance(layer.attention.self.query, Int8Linear)
    assert type(layer.output.dense) is torch.nn.Linear  # the feed-forward output stays float
    assert retriever.int8_towers() is towers  # cached
    assert type(retriever.query_encoder.encoder.layer[0].intermediate.dense) is torch.nn.Linear
    assert all(torch.equal(v, state[k]) for k, v in retriever.state_dict().items())
    np.testing.assert_array_equal(retriever.encode_passages(texts), fp32)
    with torch.no_grad():
        retriever.query_encoder.embeddings.word_embeddings.weight.mul_(1.0)  # a training step's in-place update
    assert retriever.int8_towers() is not towers
    pairs = [(t, t) for t in texts]
    assert np.allclose(reranker.score_pairs(pairs, precision="int8"), reranker.score_pairs(pairs), atol=0.1)
    assert isinstance(reranker.int8_towers()["encoder"].encoder.layer[0].intermediate.dense, Int8Linear)
    with pytest.raises(ValueError, match="int8 is dynamic quantisation for the CPU"):
        import modeling_rq2.models.modeling_rq2 as modeling

        modeling.inference_dtype("int8", torch.device("cuda"))


def test_the_int8_copies_are_dropped_whenever_the_weights_may_change(retriever):
    """A fused AdamW step or a ``.data`` update leaves a tensor's version as it was: the copies must not outlive
    training mode, ``load_state_dict`` or ``.to()``."""
    towers = retriever.int8_towers()
    retriever.train()
    assert retriever.int8_towers() is not towers
    towers = retriever.int8_towers()
    retriever.load_state_dict(retriever.state_dict())
    assert retriever.int8_towers() is not towers
    towers = retriever.int8_towers()
    retriever.to(torch.float32)
    assert retriever.int8_towers() is not towers
    retriever.eval()


def test_a_failing_int8_call_leaves_the_model_as_it_was(retriever, monkeypatch):
    import modeling_rq2.models.modeling_rq2 as modeling

    retriever.train()
    encoder = retriever.query_encoder
    monkeypatch.setattr(modeling, "quantize_int8", lambda module: (_ for _ in ()).throw(RuntimeError("no kernel")))
    with pytest.raises(RuntimeError, match="no kernel"):
        retriever.encode_queries(["q"], precision="int8")
    assert retriever.training and retriever.query_encoder is encoder
    retriever.eval()


@pytest.mark.parametrize("capability, native", [((7, 0), False), ((7, 5), False), ((8, 0), True), ((9, 0), True)])
def test_only_a_gpu_that_computes_bf16_counts_as_native(monkeypatch, capability, native):
    """torch.cuda.is_bf16_supported() also says yes for a V100 / T4, which emulate bf16: auto chose it there."""
    import modeling_rq2.models.modeling_rq2 as modeling

    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert modeling.native_bf16(torch.device("cuda")) is native


def test_the_prompts_a_sentence_transformers_folder_declares_are_honoured(tmp_path, tiny_tokenizer):
    """e5-style backbones were trained with "query: " / "passage: ": starting from them without was another model."""
    folder = _st_folder(tmp_path, tiny_tokenizer, {"pooling_mode": "mean"})
    (folder / "config_sentence_transformers.json").write_text(
        json.dumps({"prompts": {"query": "query: ", "document": "passage: "}, "default_prompt_name": None})
    )
    model = RQ2Retriever.from_backbone(folder)
    assert (model.config.query_prompt, model.config.passage_prompt) == ("query: ", "passage: ")
    plain = RQ2Retriever.from_backbone(folder, query_prompt="", passage_prompt="")
    np.testing.assert_allclose(model.encode_queries(["sun"]), plain.encode_queries(["query: sun"]), atol=1e-6)
    np.testing.assert_allclose(
        model.encode_passages([{"title": "t", "text": "x"}]),
        plain.encode_passages([{"title": "passage: t", "text": "x"}]),
        atol=1e-6,
    )
    model.save_pretrained(tmp_path / "saved")
    assert RQ2Retriever.from_pretrained(tmp_path / "saved").config.query_prompt == "query: "


@pytest.mark.parametrize(
    "similarity_fn_name, normalize, expected",
    [(None, False, "cosine"), ("dot", False, "dot"), ("dot", True, "cosine"), ("cosine", False, "cosine")],
)
def test_from_backbone_scores_as_the_sentence_transformers_folder_does(
    tmp_path, tiny_tokenizer, similarity_fn_name, normalize, expected
):
    """A folder without Normalize scores by cosine in sentence-transformers (its default) unless it names dot: it
    became dot before (old msmarco-distilbert-style models)."""
    extra = [{"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]
    folder = _st_folder(tmp_path, tiny_tokenizer, {"pooling_mode": "mean"}, *(extra if normalize else []))
    if similarity_fn_name:
        (folder / "config_sentence_transformers.json").write_text(json.dumps({"similarity_fn_name": similarity_fn_name}))
    assert RQ2Retriever.from_backbone(folder).config.similarity == expected
    assert RQ2Retriever.from_backbone(folder, similarity="dot").config.similarity == "dot"  # the caller's choice


def test_a_sentence_transformers_similarity_we_lack_is_refused_unless_one_is_given(tmp_path, tiny_tokenizer):
    folder = _st_folder(tmp_path, tiny_tokenizer, {"pooling_mode": "mean"})
    (folder / "config_sentence_transformers.json").write_text(json.dumps({"similarity_fn_name": "euclidean"}))
    with pytest.raises(ValueError, match="scores by euclidean similarity, which RQ2Retriever does not"):
        RQ2Retriever.from_backbone(folder)
    assert RQ2Retriever.from_backbone(folder, similarity="cosine").config.similarity == "cosine"


def test_a_dense_projection_left_out_for_a_given_pooling_is_logged(tmp_path, tiny_tokenizer, caplog):
    import logging

    dense = {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"}
    folder = _st_folder(tmp_path, tiny_tokenizer, {"pooling_mode": "mean"}, dense)
    with caplog.at_level(logging.WARNING, logger="modeling_rq2.models.modeling_rq2"):
        RQ2Retriever.from_backbone(folder, pooling="mean")
    assert "its Dense projection (2_Dense) is left out (pooling given)" in caplog.text


def test_the_openvino_backend_gives_the_torch_outputs_and_compiles_once(retriever, reranker):
    """backend='openvino': the encoders compiled by OpenVINO stand in for the towers (1.25x faster encoding on an
    AVX2 CPU, bench/results/speed-precision.md); same embeddings and logits, float32, compiled once per model."""
    pytest.importorskip("openvino")
    texts = ["what causes scurvy", "the sun is a star and gives light and energy to earth"]
    for call in (retriever.encode_queries, retriever.encode_passages):
        ours = call(texts, backend="openvino")
        assert ours.dtype == np.float32 and np.allclose(ours, call(texts), atol=1e-5)
    import modeling_rq2.models.modeling_rq2 as modeling

    towers = retriever.__dict__["_inference_towers"]["openvino-fp32"][1]  # built by the calls above (equal outputs
    assert isinstance(towers["query_encoder"], modeling.OpenVINOEncoder)  # alone would not show OpenVINO ran)
    assert retriever.openvino_towers() is towers  # compiled once
    assert towers["query_encoder"].compiled.get_property("ENABLE_CPU_PINNING") is False  # shares the cores it is given
    pairs = [(t, t) for t in texts]
    assert np.allclose(reranker.score_pairs(pairs, backend="openvino"), reranker.score_pairs(pairs), atol=1e-5)
    retriever.inference_backend = "openvino"
    assert np.allclose(retriever.encode_queries(texts[0]), retriever.encode_queries(texts[0], backend="torch"), atol=1e-5)
    retriever.inference_backend = "torch"
    with pytest.raises(ValueError, match="backend openvino runs on the CPU in fp32 or bf16, got int8"):
        retriever.encode_queries(texts, precision="int8", backend="openvino")
    with pytest.raises(ValueError, match=r"backend must be one of \('torch', 'openvino'\), got 'onnx'"):
        retriever.encode_queries(texts, backend="onnx")
