"""The typed pieces every stage shares: the run's config file, the evaluated systems' names, index types, loss
variants that describe themselves, the typed batch, the phase schedule."""

import json

import pytest
import torch

from modeling_rq2.evaluation.systems import System, by_name, find
from modeling_rq2.retrieval.index import INDEX_REGISTRY, IndexOptions
from modeling_rq2.training.arguments import JointTrainingArguments, LossArguments, RunConfig
from modeling_rq2.training.collator import ListwiseBatch
from modeling_rq2.training.config_files import parse_arguments
from modeling_rq2.training.losses import DistillationOptions
from modeling_rq2.training.trainer import Schedule


def test_the_run_config_file_round_trips_every_section(tmp_path):
    config = parse_arguments(["--epochs", "2", "--direction", "reranker_to_retriever", "--augment_top_n", "7"])
    config.save(tmp_path)
    saved = json.loads((tmp_path / "training_config.json").read_text())
    assert saved["format_version"] == 1 and set(saved) == {"format_version", *RunConfig._fields}
    assert saved["augmentation"]["augment_top_n"] == 7  # every section, augmentation included
    assert RunConfig.load(tmp_path) == config


def test_a_config_of_0_1_0_reads_and_an_unknown_format_is_refused(tmp_path):
    (tmp_path / "training_config.json").write_text(json.dumps({"ModelArguments": {"retriever": "r"}, "DataArguments": {"list_size": 8}}))
    config = RunConfig.load(tmp_path)
    assert config.model.retriever == "r" and config.data.list_size == 8 and config.loss == LossArguments()
    (tmp_path / "training_config.json").write_text(json.dumps({"format_version": 99}))
    with pytest.raises(ValueError, match="training_config.json: training config format_version 99"):
        RunConfig.load(tmp_path)


@pytest.mark.parametrize("system", [System.retriever(), System.reranked(20), System.reranked(5, fusion=0.25)])
def test_system_names_are_what_reports_show_and_read_back(system):
    assert System.parse(system.name) == system
    assert by_name({system: {"ndcg@10": 1.0}}) == {system.name: {"ndcg@10": 1.0}}


def test_system_names_and_kinds():
    assert [System.retriever().name, System.reranked(20).name, System.reranked(20, fusion=0.5).name] == [
        "retriever", "retriever + reranker@20", "retriever + reranker@20, fusion 0.5"]
    results = {"retriever": {}, "retriever + reranker@3": {}, "retriever + reranker@3, fusion 0.5": {}, "BM25 (bm25s)": {}}
    assert find(results, "reranked") == "retriever + reranker@3" and find(results, "fused").endswith("fusion 0.5")
    with pytest.raises(ValueError, match="BM25"):
        System.parse("BM25 (bm25s)")


def test_every_index_type_is_one_registry_entry():
    assert set(INDEX_REGISTRY) == {"flat", "flat16", "hnsw", "ivfpq"}
    assert [name for name, kind in INDEX_REGISTRY.items() if kind.needs_training] == ["ivfpq"]
    for name in INDEX_REGISTRY:
        index = IndexOptions(name).build(16, train_size=2000)
        assert index.d == 16 and index.is_trained == (not INDEX_REGISTRY[name].needs_training)
    with pytest.raises(ValueError, match="index_type must be one of"):
        IndexOptions("lsh")


def test_loss_variants_describe_themselves_for_cards_and_the_benchmark():
    assert LossArguments().describe() == (
        "dynamic listwise distillation, KL direction `retriever_to_reranker`, KL trains the re-ranker: True, reduction "
        "`query`, static teacher: False; retriever CE weight 1.0 (in-batch negatives: True); share of joint steps where "
        "only the re-ranker learns from the KL: 0.5")
    assert DistillationOptions.ablation("direction", "reranker_to_retriever") == "with the KL divergence in the other direction"
    assert DistillationOptions.ablation("reduction", "element").startswith("with the KL averaged over list entries")
    with pytest.raises(KeyError, match="no ablation kl_weight"):
        DistillationOptions.ablation("kl_weight", 0.5)
    assert "direction" in DistillationOptions().loss_kwargs() and "kl_warmup_ratio" not in LossArguments().loss_kwargs()


def test_the_batch_reads_as_attributes_and_keys_and_moves_whole():
    batch = ListwiseBatch(query_input_ids=torch.ones(2, 3, dtype=torch.long), list_mask=torch.ones(2, 4, dtype=torch.bool))
    assert batch["list_mask"] is batch.list_mask and set(batch.keys()) == {"query_input_ids", "list_mask"}
    moved = batch.to("cpu")
    assert isinstance(moved, ListwiseBatch) and torch.equal(moved.query_input_ids, batch.query_input_ids)
    assert batch.inputs("query") == {"input_ids": batch.query_input_ids}


def test_the_schedule_knows_the_phases():
    args = JointTrainingArguments(epochs=2, warmup_epochs=1, output_dir="x")
    schedule = Schedule.plan(batches_per_epoch=10, num_processes=1, args=args, kl_warmup_ratio=0.5)
    assert (schedule.steps_per_epoch, schedule.total_steps, schedule.kl_warmup_end) == (10, 30, 20)
    assert [schedule.phase(e) for e in range(3)] == ["warmup", "joint", "joint"]
    assert schedule.teacher_phase(19) and not schedule.teacher_phase(20)


def test_train_and_evaluate_share_top_k_and_the_old_name_is_named(tmp_path):
    """train.py's --eval_top_k became --top_k (evaluate's name for the same thing): saved runs still read, and the old
    flag or config key is refused with its new name."""
    assert parse_arguments(["--top_k", "50"]).training.top_k == 50
    saved = RunConfig.from_dict({"format_version": 1, "training": {"eval_top_k": 30}})
    assert saved.training.top_k == 30
    with pytest.raises(ValueError, match="--eval_top_k is now --top_k"):
        parse_arguments(["--eval_top_k", "50"])
    (tmp_path / "old.yaml").write_text("eval_top_k: 50\n")
    with pytest.raises(ValueError, match="old.yaml: unknown keys .*eval_top_k is now top_k"):
        parse_arguments([str(tmp_path / "old.yaml")])
