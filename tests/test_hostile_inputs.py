"""Hostile and careless inputs (issue 17): each gets one clear error naming its file, line or field, or is handled
correctly; never a silently wrong result, never a lost file."""

import json

import numpy as np
import pytest
import torch

from modeling_rq2 import RQ2Reranker, RQ2Retriever
from modeling_rq2.models.loading import load_reranker, load_retriever

from conftest import tiny_reranker, tiny_retriever


@pytest.fixture
def saved(tmp_path, tiny_tokenizer):
    """A saved retriever (shared towers), re-ranker and plain encoder."""
    tiny_retriever(tiny_tokenizer).save_pretrained(tmp_path / "retriever")
    tiny_reranker(tiny_tokenizer).save_pretrained(tmp_path / "reranker")
    tiny_retriever(tiny_tokenizer).query_encoder.save_pretrained(tmp_path / "encoder")
    return tmp_path


# --- model loading: a folder of the wrong role, weights left random --------------------------------------------


def test_a_reranker_folder_is_refused_as_a_retriever_and_the_mirror(saved):
    with pytest.raises(ValueError, match=r"reranker: its config.json is model_type 'rq2_reranker', not 'rq2_retriever'"
                                         r" \(RQ2Retriever\): load it with RQ2Reranker"):
        RQ2Retriever.from_pretrained(saved / "reranker")
    with pytest.raises(ValueError, match="model_type 'rq2_retriever', not 'rq2_reranker' .*: load it with RQ2Retriever"):
        RQ2Reranker.from_pretrained(saved / "retriever")


def test_a_plain_encoder_folder_is_refused_by_from_pretrained_with_the_way_to_start_from_it(saved):
    with pytest.raises(ValueError, match="model_type 'bert', not 'rq2_retriever' .*RQ2Retriever.from_backbone"):
        RQ2Retriever.from_pretrained(saved / "encoder")


@pytest.mark.parametrize("role", ["retriever", "reranker"])
def test_training_refuses_a_folder_of_the_other_role(saved, role):
    other = "reranker" if role == "retriever" else "retriever"
    load = load_retriever if role == "retriever" else load_reranker
    with pytest.raises(ValueError, match=f"a saved RQ2{other.title()} .* given where RQ2{role.title()} was expected"):
        load(saved / other)


def test_weights_missing_from_the_files_are_refused_unless_asked_for(saved):
    """A config that asks for a tower the weight files do not hold: an error, not a random passage tower."""
    config_path = saved / "retriever" / "config.json"
    config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps({**config, "shared_towers": False}))
    with pytest.raises(ValueError, match=r"retriever: 37 weights of RQ2Retriever are not in its weight files .*"
                                         r"passage_encoder.*allow_missing_weights=True"):
        RQ2Retriever.from_pretrained(saved / "retriever")
    assert RQ2Retriever.from_pretrained(saved / "retriever", allow_missing_weights=True).passage_encoder is not None


def test_shared_towers_loaded_as_separate_ones_start_as_copies_of_the_shared_encoder(saved):
    """The paper's separate towers from a shared-tower folder (the presets do so from a warm-up): both towers are
    the trained encoder, not one trained and one random."""
    shared = RQ2Retriever.from_pretrained(saved / "retriever")
    separate = load_retriever(saved / "retriever", shared_towers=False)
    assert separate.config.shared_towers is False and separate.passage_encoder is not separate.query_encoder
    for name, value in shared.query_encoder.state_dict().items():
        torch.testing.assert_close(separate.passage_encoder.state_dict()[name], value)
    texts = ["the sun is a star", "scurvy is caused by low vitamin c"]
    np.testing.assert_allclose(separate.encode_passages(texts), shared.encode_passages(texts), atol=1e-6)
    separate.save_pretrained(saved / "separate")
    with pytest.raises(ValueError, match="separate towers cannot load as shared ones"):
        load_retriever(saved / "separate", shared_towers=True)
