"""Folders saved by modeling_rq2 0.1.0 (tests/fixtures/v0.1.0, before the package was regrouped) still load, in
every way users load them, and give the outputs that version gave."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from transformers import AutoModel, AutoModelForSequenceClassification

from modeling_rq2 import RQ2Reranker, RQ2Retriever, format_passage

from conftest import run_without_package

FIXTURES = Path(__file__).parent / "fixtures" / "v0.1.0"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())
ATOL = 1e-5


def test_from_pretrained_gives_the_saved_outputs():
    retriever = RQ2Retriever.from_pretrained(FIXTURES / "retriever")
    reranker = RQ2Reranker.from_pretrained(FIXTURES / "reranker")
    np.testing.assert_allclose(retriever.encode_queries(EXPECTED["queries"]), EXPECTED["query_embeddings"], atol=ATOL)
    np.testing.assert_allclose(retriever.encode_passages(EXPECTED["passages"]), EXPECTED["passage_embeddings"], atol=ATOL)
    pairs = [(q, p) for q in EXPECTED["queries"] for p in EXPECTED["passages"]]
    np.testing.assert_allclose(reranker.score_pairs(pairs), EXPECTED["pair_scores"], atol=ATOL)


def test_auto_classes_load_them_with_the_package():
    assert isinstance(AutoModel.from_pretrained(FIXTURES / "retriever"), RQ2Retriever)
    assert isinstance(AutoModelForSequenceClassification.from_pretrained(FIXTURES / "reranker"), RQ2Reranker)


def test_trust_remote_code_loads_them_without_the_package(tmp_path):
    for role in ("retriever", "reranker"):  # a copy: the remote-code cache must not write into the fixtures
        shutil.copytree(FIXTURES / role, tmp_path / role)
    out = run_without_package(
        f"""
        import json
        from transformers import AutoModel, AutoModelForSequenceClassification
        r = AutoModel.from_pretrained({str(tmp_path / "retriever")!r}, trust_remote_code=True)
        c = AutoModelForSequenceClassification.from_pretrained({str(tmp_path / "reranker")!r}, trust_remote_code=True)
        e = json.loads(open({str(FIXTURES / "expected.json")!r}).read())
        print(json.dumps({{"q": r.encode_queries(e["queries"]).tolist(), "p": r.encode_passages(e["passages"]).tolist(),
                          "s": c.score_pairs([(q, p) for q in e["queries"] for p in e["passages"]]).tolist()}}))
        """,
        tmp_path,
    )
    got = json.loads(out.strip().splitlines()[-1])
    np.testing.assert_allclose(got["q"], EXPECTED["query_embeddings"], atol=ATOL)
    np.testing.assert_allclose(got["p"], EXPECTED["passage_embeddings"], atol=ATOL)
    np.testing.assert_allclose(got["s"], EXPECTED["pair_scores"], atol=ATOL)


def test_sentence_transformers_loads_the_exported_folders():
    st = pytest.importorskip("sentence_transformers", minversion="6.2")
    model = st.SentenceTransformer(str(FIXTURES / "retriever"), device="cpu")
    sep = model.tokenizer.sep_token
    np.testing.assert_allclose(model.encode_query(EXPECTED["queries"]), EXPECTED["query_embeddings"], atol=ATOL)
    passages = [format_passage(p, sep) for p in EXPECTED["passages"]]
    np.testing.assert_allclose(model.encode_document(passages), EXPECTED["passage_embeddings"], atol=ATOL)
    cross = st.CrossEncoder(str(FIXTURES / "reranker"), device="cpu")
    pairs = [(q, format_passage(p, sep)) for q in EXPECTED["queries"] for p in EXPECTED["passages"]]
    np.testing.assert_allclose(cross.predict(pairs), EXPECTED["pair_scores"], atol=ATOL)


@pytest.mark.parametrize("role", ["retriever", "reranker"])
def test_a_run_of_0_1_0_still_gets_a_card_with_the_numbers_and_recipe_it_had(tmp_path, role):
    """The metrics, config (format 0) and cards of `python train.py --epochs 1` run with 0.1.0: today's card (laid out
    anew for issue 18) states the same measured numbers, recipe and time as the card 0.1.0 wrote then."""
    from huggingface_hub import ModelCard

    from modeling_rq2.hub.model_card import render_card

    run = FIXTURES / "run"
    card = render_card(run, role, {"retriever": "before-retriever", "reranker": "before-reranker"}, with_curve=True)
    then = ModelCard.load(run / role / "README.md")
    metrics = {(r.metric_name, r.metric_value, r.dataset_split) for r in then.data.eval_results}
    if role == "reranker":  # issue 18: Recall@100 of a re-ranked top 20 is the retriever's number, not the re-ranker's
        metrics.remove(("recall@100", 0.9533, "test"))
    assert {(r.metric_name, r.metric_value, r.dataset_split) for r in card.data.eval_results} == metrics
    assert (card.data.base_model, card.data.datasets, card.data.license) == (then.data.base_model, then.data.datasets, then.data.license)
    for line in then.text.splitlines():  # the recipe's lines and every results row of this model, as they were
        if line.startswith(("- Loss:", "- Hardware:")) or line.startswith("| ours: retriever |") and role == "retriever":
            assert line.split(" | ", 1)[-1] in card.text, line
    assert "| learning rates | retriever 2e-05, re-ranker 5e-05 (its new head 0.001) |" in card.text
