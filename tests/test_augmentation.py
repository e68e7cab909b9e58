"""Hybrid data augmentation with a re-ranker whose scores the test controls."""

import json

import numpy as np
import pytest

from modeling_rq2.data import load_beir
from modeling_rq2.training.arguments import AugmentationArguments
from modeling_rq2.training.augmentation import REPORT_FILE, augment_instances, main, platt_scale, save_instances
from modeling_rq2.training.lists import ListwiseDataset, load_instances

from conftest import write_beir

# q0's gold passage is g0; the re-ranker is sure about a0 (a false negative), unsure about u0, and rejects n*
CORPUS = [{"_id": d, "title": "", "text": f"passage {d}"} for d in ["g0", "g1", "a0", "u0", "n1", "n2", "n3", "n4"]]
LOGITS = {"g0": 6.0, "g1": 6.0, "a0": 5.0, "u0": 0.0, "n1": -4.0, "n2": -5.0, "n3": -6.0, "n4": -7.0}


@pytest.fixture
def data(tmp_path):
    queries = [{"_id": "q0", "text": "sun"}, {"_id": "q1", "text": "moon"}, {"_id": "q2", "text": "water"}]
    folder = write_beir(tmp_path / "beir", CORPUS, queries, {"train": [("q0", "g0", 1), ("q1", "g1", 1), ("q2", "g1", 0)]})
    return load_beir(folder, "train")


@pytest.fixture
def controlled(reranker, monkeypatch):
    """The re-ranker's logit of (query, passage) is LOGITS[doc id], whatever the query."""
    def score_pairs(pairs, *args, **kwargs):
        return np.array([LOGITS[p["text"].split()[-1]] for _, p in pairs], dtype=np.float32)

    monkeypatch.setattr(reranker, "score_pairs", score_pairs)
    return reranker


def _rows(instances):
    return {(r["query_id"], r["kind"]): r for r in instances}


def test_denoising_obeys_the_thresholds(data, retriever, controlled):
    args = AugmentationArguments(augment_top_n=8, probability="sigmoid", negative_below=0.1, positive_above=0.9)
    instances, report = augment_instances(data, retriever, controlled, args)
    rows = _rows(instances)
    assert set(rows) == {("q0", "undenoised"), ("q0", "denoised"), ("q1", "undenoised"), ("q1", "denoised")}
    # undenoised: every retrieved non-gold passage is a negative
    assert sorted(rows["q0", "undenoised"]["negatives"]) == sorted(d for d in LOGITS if d != "g0")
    assert rows["q0", "undenoised"]["positives"] == ["g0"]
    # denoised: p(a0)=0.993 > 0.9 -> positive; p(u0)=0.5 -> dropped; p(n*) < 0.1 -> negatives; g1 (p 0.998) -> positive for q0
    assert sorted(rows["q0", "denoised"]["positives"]) == ["a0", "g0", "g1"]
    assert sorted(rows["q0", "denoised"]["negatives"]) == ["n1", "n2", "n3", "n4"]
    assert report["queries"] == 2 and report["queries_without_positive_skipped"] == 1
    assert report["negatives_retrieved"] == 14 and report["negatives_removed"] == 6 and report["positives_added"] == 4
    assert report["instances"] == {"undenoised": 2, "denoised": 2} and report["gold_retrieved"] == 2


def test_stricter_thresholds_and_mixes(data, retriever, controlled):
    strict = AugmentationArguments(augment_top_n=8, probability="sigmoid", negative_below=0.01, positive_above=0.999)
    rows = _rows(augment_instances(data, retriever, controlled, strict)[0])
    # p(n1) = 0.018 is no longer confidently negative; p(a0) = 0.9933 is no longer confidently positive
    assert sorted(rows["q0", "denoised"]["negatives"]) == ["n2", "n3", "n4"]
    assert rows["q0", "denoised"]["positives"] == ["g0"]
    only = AugmentationArguments(augment_top_n=8, probability="sigmoid", instance_mix="undenoised")
    assert {k for _, k in _rows(augment_instances(data, retriever, controlled, only)[0])} == {"undenoised"}
    with pytest.raises(ValueError, match="denoising needs a re-ranker"):
        augment_instances(data, retriever, None, AugmentationArguments(augment_top_n=8))


def test_undenoised_alone_never_runs_the_reranker(data, retriever, reranker, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the re-ranker scored pairs for undenoised instances")

    monkeypatch.setattr(reranker, "score_pairs", refuse)
    args = AugmentationArguments(augment_top_n=8, instance_mix="undenoised")
    for model in (reranker, None):
        instances, report = augment_instances(data, retriever, model, args)
        assert sorted(_rows(instances)["q0", "undenoised"]["negatives"]) == sorted(d for d in LOGITS if d != "g0")
        assert report["instances"] == {"undenoised": 2, "denoised": 0} and report["platt"] is None
        assert "negatives_removed" not in report and report["negatives_retrieved"] == 14
    with pytest.raises(ValueError, match="negative_below <= positive_above"):
        AugmentationArguments(negative_below=0.95, positive_above=0.9)
    with pytest.raises(ValueError, match="--instance_mix"):
        AugmentationArguments(instance_mix="half")


def test_platt_scaling_recovers_a_known_calibration():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, 20_000)
    labels = rng.random(20_000) < 1 / (1 + np.exp(-(1.5 * logits - 2.0)))
    a, b = platt_scale(logits, labels)
    assert a == pytest.approx(1.5, abs=0.08) and b == pytest.approx(-2.0, abs=0.08)
    with pytest.raises(ValueError, match="both relevant and non-relevant"):
        platt_scale(logits[:5], np.ones(5))


def test_platt_probabilities_follow_the_logit_order(data, retriever, controlled):
    instances, report = augment_instances(data, retriever, controlled, AugmentationArguments(augment_top_n=8))
    assert report["platt"]["a"] > 0  # higher logit, higher probability
    denoised = _rows(instances)["q0", "denoised"]
    kept = set(denoised["negatives"])
    assert all(LOGITS[n] < LOGITS[d] for n in kept for d in set(LOGITS) - kept - {"g0"})


def test_saved_instances_train_and_reload(data, retriever, controlled, tmp_path):
    instances, report = augment_instances(data, retriever, controlled, AugmentationArguments(augment_top_n=8, probability="sigmoid"))
    for path in (tmp_path / "folder", tmp_path / "lists.jsonl"):
        save_instances(instances, path, report)
        loaded = load_instances(path)
        assert loaded.to_list() == instances.to_list()
    assert json.loads((tmp_path / "folder" / REPORT_FILE).read_text())["positives_added"] == 4
    assert (tmp_path / "lists.jsonl.report.json").is_file()
    lists = ListwiseDataset(loaded, dict(zip(data.corpus["_id"], data.passages())), list_size=4)
    assert len(lists[0]["passages"]) == 4
    (tmp_path / "bad.jsonl").write_text('{"query_id": "q", "query": "x", "positives": [], "negatives": ["a"]}\n')
    with pytest.raises(ValueError, match="bad.jsonl: instance 1 .* has no positive"):
        load_instances(tmp_path / "bad.jsonl")
    with pytest.raises(FileNotFoundError, match="no saved instances"):
        load_instances(tmp_path / "nowhere")


def test_command_line_writes_instances_and_report(data, retriever, reranker, tmp_path, capsys):
    retriever.save_pretrained(tmp_path / "r")
    reranker.save_pretrained(tmp_path / "c")
    folder = tmp_path / "beir"
    report = main(["--retriever", str(tmp_path / "r"), "--reranker", str(tmp_path / "c"), "--data", str(folder),
                   "--output", str(tmp_path / "out"), "--augment_top_n", "5"])
    assert report["top_n"] == 5 and len(load_instances(tmp_path / "out")) >= 2
    assert "positives_added" in capsys.readouterr().out
