"""WiSE-FT: a trained model's weights interpolated with its starting point's, as a function and as a command."""

import json

import pytest
import torch

from modeling_rq2 import RQ2Retriever
from modeling_rq2.training.interpolation import (
    INTERPOLATION_FILE,
    interpolate_retriever,
    interpolate_weights,
    main,
)

from conftest import tiny_reranker, tiny_retriever


def _trained(model, seed: int = 1):
    """``model`` with every floating-point weight moved, as training would."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.add_(torch.randn(tensor.shape, generator=generator) * 0.1)
    return model


def test_each_weight_is_the_convex_combination_and_integer_buffers_stay(retriever, tiny_tokenizer):
    base = tiny_retriever(tiny_tokenizer, pooling="mean")
    trained = _trained(retriever)
    before = {name: tensor.clone() for name, tensor in trained.state_dict().items()}
    interpolate_weights(trained, base, weight=0.25)
    after, start = trained.state_dict(), base.state_dict()
    moved = 0
    for name, tensor in after.items():
        if tensor.is_floating_point():
            torch.testing.assert_close(tensor, 0.25 * before[name] + 0.75 * start[name])
            moved += not torch.equal(tensor, before[name])
        else:
            assert torch.equal(tensor, before[name]), name  # position ids are no weights to average
    assert moved > 10


@pytest.mark.parametrize("weight, expected", [(1.0, "trained"), (0.0, "base")])
def test_the_ends_of_the_range_give_back_either_model(retriever, tiny_tokenizer, weight, expected):
    base = tiny_retriever(tiny_tokenizer, pooling="mean")
    trained = _trained(retriever)
    models = {"trained": {n: t.clone() for n, t in trained.state_dict().items()}, "base": base.state_dict()}
    interpolate_weights(trained, base, weight=weight)
    for name, tensor in trained.state_dict().items():
        torch.testing.assert_close(tensor, models[expected][name], rtol=0, atol=0)


def test_a_base_of_another_shape_or_a_weight_outside_the_range_is_refused(retriever, tiny_tokenizer):
    other = tiny_retriever(tiny_tokenizer, pooling="mean")
    other.query_encoder.resize_token_embeddings(120, mean_resizing=False)  # another vocabulary
    with pytest.raises(ValueError, match=r"'query_encoder\.embeddings\.word_embeddings\.weight' is \(99, 32\)"):
        interpolate_weights(retriever, other, weight=0.5)
    with pytest.raises(ValueError, match=r"weight: 1\.5 is not in \[0, 1\]"):
        interpolate_weights(retriever, retriever, weight=1.5)
    with pytest.raises(ValueError, match="'classifier.bias' is missing from the model"):
        interpolate_weights(retriever, tiny_reranker(tiny_tokenizer), weight=0.5)


def test_separate_towers_interpolate_with_a_shared_base_untied(tiny_tokenizer):
    trained = _trained(tiny_retriever(tiny_tokenizer, pooling="mean").untie_towers())
    base = tiny_retriever(tiny_tokenizer, pooling="mean")
    passage_before = trained.passage_encoder.embeddings.word_embeddings.weight.clone()
    interpolate_retriever(trained, base, weight=0.5)
    expected = 0.5 * passage_before + 0.5 * base.query_encoder.embeddings.word_embeddings.weight
    torch.testing.assert_close(trained.passage_encoder.embeddings.word_embeddings.weight, expected)
    with pytest.raises(ValueError, match="shared towers with a base that has separate ones"):
        interpolate_retriever(tiny_retriever(tiny_tokenizer, pooling="mean"), trained, weight=0.5)


def test_the_command_saves_a_loadable_model_and_its_record_beside_never_over_files(retriever, tiny_tokenizer, tmp_path):
    base = tiny_retriever(tiny_tokenizer, pooling="mean")
    base.save_pretrained(tmp_path / "base")
    _trained(retriever).save_pretrained(tmp_path / "trained")
    out = main(["--model", str(tmp_path / "trained"), "--base", str(tmp_path / "base"), "--weight", "0.5",
                "--output_dir", str(tmp_path / "wise")])
    loaded = RQ2Retriever.from_pretrained(out)
    expected = interpolate_weights(RQ2Retriever.from_pretrained(tmp_path / "trained"), base, weight=0.5)
    queries = ["what causes scurvy", "the sun is a star"]
    torch.testing.assert_close(loaded.encode_queries(queries), expected.encode_queries(queries))
    record = json.loads((out / INTERPOLATION_FILE).read_text())
    assert record == {"model": str(tmp_path / "trained"), "base": str(tmp_path / "base"), "weight": 0.5, "method": "WiSE-FT"}
    weights = (out / "model.safetensors").read_bytes()
    with pytest.raises(FileExistsError, match="wise already exists and is not an empty folder"):
        main(["--model", str(tmp_path / "trained"), "--weight", "0.9", "--output_dir", str(out)])
    assert (out / "model.safetensors").read_bytes() == weights
    with pytest.raises(ValueError, match=r"--weight: 2\.0 is not in \[0, 1\]"):
        main(["--model", str(tmp_path / "trained"), "--weight", "2", "--output_dir", str(tmp_path / "never")])
    assert not (tmp_path / "never").exists()


def test_a_reranker_needs_a_base_and_interpolates_with_a_saved_one(tiny_tokenizer, tmp_path):
    tiny_reranker(tiny_tokenizer).save_pretrained(tmp_path / "base")
    _trained(tiny_reranker(tiny_tokenizer)).save_pretrained(tmp_path / "trained")
    with pytest.raises(ValueError, match=r"--base: a re-ranker interpolates only with a saved RQ2Reranker \(none given\)"):
        main(["--model", str(tmp_path / "trained"), "--weight", "0.5", "--output_dir", str(tmp_path / "a")])
    assert not (tmp_path / "a").exists()
    out = main(["--model", str(tmp_path / "trained"), "--base", str(tmp_path / "base"), "--weight", "0.0",
                "--output_dir", str(tmp_path / "b")])
    from modeling_rq2 import RQ2Reranker

    pairs = [("what causes scurvy", "vitamin c")]
    base = RQ2Reranker.from_pretrained(tmp_path / "base")
    torch.testing.assert_close(RQ2Reranker.from_pretrained(out).score_pairs(pairs), base.score_pairs(pairs))


def test_a_backbone_recorded_under_a_name_that_names_nothing_here_asks_for_the_base(retriever):
    retriever.config.encoder_config._name_or_path = "nowhere-backbone"  # a local folder's last component
    with pytest.raises(ValueError, match="records its backbone as 'nowhere-backbone', no folder here and no Hub id"):
        interpolate_retriever(retriever, weight=0.5)


def test_models_of_the_wrong_kind_are_refused_naming_the_flag(retriever, tiny_tokenizer, tmp_path):
    from transformers import BertConfig, BertModel

    from conftest import TINY_ENCODER

    BertModel(BertConfig(**{k: v for k, v in TINY_ENCODER.items() if k != "model_type"})).save_pretrained(tmp_path / "plain")
    retriever.save_pretrained(tmp_path / "retriever")
    tiny_reranker(tiny_tokenizer).save_pretrained(tmp_path / "reranker")
    cases = [
        (["--model", "plain"], r"--model: .*plain is model_type 'bert', not a saved RQ2Retriever or RQ2Reranker"),
        (["--model", "retriever", "--base", "reranker"], r"--base: .*reranker is a saved RQ2Reranker; a retriever"),
        (["--model", "reranker", "--base", "plain"], r"--base: a re-ranker interpolates only with a saved RQ2Reranker"),
        (["--model", "reranker", "--base", "retriever"], r"retriever is model_type 'rq2_retriever'\)"),
    ]
    for (flag, name, *rest), message in cases:
        paths = [str(tmp_path / name)] + ([rest[0], str(tmp_path / rest[1])] if rest else [])
        with pytest.raises(ValueError, match=message):
            main([flag, *paths, "--weight", "0.5", "--output_dir", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


def test_a_tensor_tied_under_two_names_moves_once():
    class Tied(torch.nn.Module):
        def __init__(self, fill: float):
            super().__init__()
            self.embed = torch.nn.Embedding(3, 2)
            self.head = torch.nn.Linear(2, 3, bias=False)
            self.head.weight = self.embed.weight
            torch.nn.init.constant_(self.embed.weight, fill)

    model = interpolate_weights(Tied(1.0), Tied(0.0), weight=0.5)
    torch.testing.assert_close(model.head.weight, torch.full((3, 2), 0.5))
