import pytest
from huggingface_hub.errors import StrictDataclassFieldValidationError
from transformers import AutoConfig

from modeling_rq2 import RQ2RerankerConfig, RQ2RetrieverConfig

from conftest import TINY_ENCODER


def test_retriever_config_round_trip_keeps_nested_encoder(tmp_path):
    config = RQ2RetrieverConfig(encoder_config=dict(TINY_ENCODER), shared_towers=False, pooling="mean", similarity="cosine")
    config.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)  # registered: no trust_remote_code needed
    assert isinstance(loaded, RQ2RetrieverConfig)
    assert loaded.encoder_config.hidden_size == 32
    assert (loaded.shared_towers, loaded.pooling, loaded.similarity) == (False, "mean", "cosine")


def test_reranker_config_has_one_label_and_round_trips(tmp_path):
    config = RQ2RerankerConfig(encoder_config=dict(TINY_ENCODER), max_length=200)
    assert config.num_labels == 1
    config.save_pretrained(tmp_path)
    loaded = RQ2RerankerConfig.from_pretrained(tmp_path)
    assert (loaded.max_length, loaded.num_labels, loaded.encoder_config.num_hidden_layers) == (200, 1, 2)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"pooling": "max"}, "pooling"),
        ({"similarity": "l2"}, "similarity"),
        ({"query_max_length": 0}, "query_max_length"),
        ({"passage_max_length": "long"}, "passage_max_length"),
        ({"shared_towers": "yes"}, "shared_towers"),
    ],
)
def test_retriever_config_rejects_bad_values_naming_the_field(kwargs, field):
    with pytest.raises((ValueError, TypeError, StrictDataclassFieldValidationError), match=field):
        RQ2RetrieverConfig(**kwargs)


@pytest.mark.parametrize("kwargs, field", [({"classifier_dropout": 1.5}, "classifier_dropout"), ({"max_length": -1}, "max_length")])
def test_reranker_config_rejects_bad_values_naming_the_field(kwargs, field):
    with pytest.raises((ValueError, TypeError), match=field):
        RQ2RerankerConfig(**kwargs)
