"""Joint training end to end on tiny models (CPU, seconds)."""

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from modeling_rq2 import RQ2Reranker, RQ2Retriever
from modeling_rq2.training.chain import run_training
from modeling_rq2.training.checkpoints import resolve_checkpoint, write_manifest
from modeling_rq2.training.config_files import parse_arguments

from conftest import assert_same_weights, start_training, train_argv, wait_until

ROOT = Path(__file__).resolve().parents[1]
def test_training_writes_loadable_models_metrics_and_checkpoints(train_setup, tmp_path):
    metrics = run_training(*parse_arguments(train_argv(train_setup, tmp_path, "--epochs", "2", "--max_steps", "4", "--save_steps", "1", "--save_total_limit", "2")))
    retriever = RQ2Retriever.from_pretrained(tmp_path / "retriever")
    reranker = RQ2Reranker.from_pretrained(tmp_path / "reranker")
    assert retriever.encode_queries(["what is sun"]).shape == (1, 32)
    assert reranker.score("what is sun", ["sun is a star"]).shape == (1,)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["train"]["steps"] == 4 == metrics["train"]["steps"]
    assert set(saved["eval"]["results"]) == {"retriever", "retriever + reranker@5", "retriever + reranker@5, fusion 0.5"}
    assert 0 <= saved["eval"]["results"]["retriever"]["ndcg@10"] <= 1
    assert json.loads((tmp_path / "training_config.json").read_text())["data"]["list_size"] == 3
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["checkpoint-3", "checkpoint-4"]
    log = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert {"loss", "kl", "supervised", "queries_per_s", "lr_retriever", "lr_reranker_head"} <= set(log[-1])


def test_training_lowers_the_loss(train_setup, tmp_path):
    extra = ["--epochs", "12", "--logging_steps", "3", "--eval_split", "none", "--save_steps", "0",
             "--retriever_lr", "1e-3", "--reranker_lr", "1e-3", "--lr_scheduler", "constant",
             "--retriever_supervised_weight", "1"]
    run_training(*parse_arguments(train_argv(train_setup, tmp_path, *extra)))
    log = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == 12
    first, last = log[:3], log[-3:]
    mean = lambda rows, key: sum(r[key] for r in rows) / len(rows)  # noqa: E731
    assert mean(last, "loss") < 0.9 * mean(first, "loss")
    assert mean(last, "retriever_ce") < 0.7 * mean(first, "retriever_ce")


def test_warmup_stage_then_joint(train_setup, tmp_path):
    extra = ["--warmup_epochs", "1", "--epochs", "1", "--logging_steps", "1", "--eval_split", "none", "--save_steps", "0"]
    run_training(*parse_arguments(train_argv(train_setup, tmp_path, *extra)))
    phases = [json.loads(line)["phase"] for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert phases == ["warmup"] * 3 + ["joint"] * 3


def test_static_distillation_leaves_the_reranker_unchanged(train_setup, tmp_path):
    root, _ = train_setup
    run_training(*parse_arguments(train_argv(train_setup, tmp_path, "--static", "true", "--kl_warmup_ratio", "0", "--max_steps", "3", "--eval_split", "none")))
    before = load_file(root / "reranker" / "model.safetensors")
    after = load_file(tmp_path / "reranker" / "model.safetensors")
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not torch.equal(
        load_file(root / "retriever" / "model.safetensors")["query_encoder.embeddings.word_embeddings.weight"],
        load_file(tmp_path / "retriever" / "model.safetensors")["query_encoder.embeddings.word_embeddings.weight"],
    )


def test_killed_run_resumes_to_the_same_weights(train_setup, tmp_path):
    """SIGKILL mid-run, resume from the latest complete checkpoint: same final weights as a run never killed."""
    common = ["--epochs", "3", "--save_steps", "1", "--save_total_limit", "3", "--eval_split", "none"]
    run_training(*parse_arguments(train_argv(train_setup, tmp_path / "straight", *common)))

    killed = tmp_path / "killed"
    proc = start_training(train_argv(train_setup, killed, *common))
    wait_until(proc, (killed / "checkpoints" / "checkpoint-4" / "progress.json").exists)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "retriever").exists()
    assert resolve_checkpoint(str(killed), "latest").name.startswith("checkpoint-")

    progress_file = resolve_checkpoint(str(killed), "latest") / "progress.json"
    progress = json.loads(progress_file.read_text())
    assert progress["seconds"] > 0  # the checkpoint keeps the time trained so far
    progress_file.write_text(json.dumps({**progress, "seconds": 1000.0}))  # far more than this tiny run takes
    write_manifest(progress_file.parent)  # as if saved so: an edit the manifest does not know is damage
    metrics = run_training(*parse_arguments(train_argv(train_setup, killed, *common, "--resume_from_checkpoint", "latest")))
    assert_same_weights(tmp_path / "straight", killed)
    assert metrics["train"]["seconds"] > 1000.0  # the killed run's training time is counted, not lost


def test_incomplete_checkpoints_are_never_resumed(tmp_path):
    checkpoints = tmp_path / "checkpoints"
    (checkpoints / "checkpoint-2").mkdir(parents=True)
    (checkpoints / "checkpoint-2" / "progress.json").write_text("{}")
    (checkpoints / "checkpoint-5").mkdir()  # killed before its progress file was written
    (checkpoints / ".tmp-checkpoint-7").mkdir()
    assert resolve_checkpoint(str(tmp_path), "latest") == checkpoints / "checkpoint-2"
    assert resolve_checkpoint(str(tmp_path / "nothing"), "latest") is None
    with pytest.raises(ValueError, match="not a complete checkpoint"):
        resolve_checkpoint(str(tmp_path), str(checkpoints / "checkpoint-5"))


def test_two_process_run_with_accelerate_launch(train_setup, tmp_path):
    """The command users run on several devices, here as 2 CPU processes (gloo), in a fresh interpreter."""
    # several CPU processes (MULTI_CPU, gloo): --multi_gpu starts them, ACCELERATE_USE_CPU makes them CPU processes;
    # --cpu --num_processes 2 would quietly start one
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", str(ROOT / "train.py"),
               *train_argv(train_setup, tmp_path, "--max_steps", "2", "--save_steps", "1", "--eval_split", "none")]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "true"}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["train"]["steps"] == 2
    assert (tmp_path / "checkpoints" / "checkpoint-2" / "progress.json").is_file()
    assert RQ2Retriever.from_pretrained(tmp_path / "retriever").tokenizer is not None
    log = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == 1  # the main process alone writes the log


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--list_size", "1"], "--list_size: must be >= 2"),
        (["--retriever_lr", "-1"], "--retriever_lr: must be >= 0"),
        (["--direction", "sideways"], r"argument --direction: invalid choice: 'sideways' \(choose from"),
        (["--mixed_precision", "fp8"], "--mixed_precision"),
        (["--pooling", "max"], r"argument --pooling: invalid choice: 'max' \(choose from 'cls', 'mean'\)"),
        (["--similarity", "l2"], r"argument --similarity: invalid choice: 'l2' \(choose from 'dot', 'cosine'\)"),
        (["--reranker_pooling", "lasttoken"], "argument --reranker_pooling.*: invalid choice"),
    ],
)
def test_bad_flags_fail_before_any_work(flags, message):
    with pytest.raises(ValueError, match=message):
        parse_arguments(flags)


def test_config_file_with_overrides_and_unknown_keys(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("list_size: 6\nepochs: 2\n")
    model_args, data_args, loss_args, args, aug_args = parse_arguments([str(config), "--epochs", "3"])
    assert (data_args.list_size, args.epochs) == (6, 3)
    config.write_text("list_size: 6\nlsit_size: 3\n")
    with pytest.raises(ValueError, match=r"unknown keys \['lsit_size'\]"):
        parse_arguments([str(config)])
    with pytest.raises(FileNotFoundError):
        parse_arguments([str(tmp_path / "missing.yaml")])


def test_tracker_mixed_precision_checkpointing_periodic_eval_and_cards(train_setup, tmp_path):
    """TensorBoard logs, bf16 autocast, activation checkpointing and eval every 2 steps in one tiny run."""
    from huggingface_hub import ModelCard

    extra = ["--report_to", "tensorboard", "--mixed_precision", "bf16", "--gradient_checkpointing", "true",
             "--eval_steps", "2", "--epochs", "2", "--max_steps", "4", "--logging_steps", "1"]
    argv = train_argv(train_setup, tmp_path, *extra)
    argv[argv.index("--report_to") + 1] = "tensorboard"
    metrics = run_training(*parse_arguments(argv))
    assert list((tmp_path / "logs").rglob("events.out.tfevents.*"))
    log = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == 4 and all(math.isfinite(row["loss"]) for row in log)
    card = ModelCard.load(tmp_path / "retriever" / "README.md")
    assert card.data.eval_results[0].metric_value == round(metrics["eval"]["results"]["retriever"][card.data.eval_results[0].metric_name], 4)


def test_gradient_accumulation_counts_optimizer_steps(train_setup, tmp_path):
    # 12 queries / batch 4 = 3 batches; accumulating 2 gives 2 optimizer steps (the last one at the end of the data)
    extra = ["--gradient_accumulation_steps", "2", "--eval_split", "none", "--save_steps", "0", "--logging_steps", "1"]
    metrics = run_training(*parse_arguments(train_argv(train_setup, tmp_path, *extra)))
    assert metrics["train"]["steps"] == 2


@pytest.mark.parametrize(
    "preset", ["scifact.yaml", "scifact-best.yaml", "scifact-augmented.yaml", "msmarco.yaml", "nq.yaml"]
)
def test_presets_parse(preset):
    _, data_args, _, args, _ = parse_arguments([str(ROOT / "configs" / preset)])
    assert data_args.list_size >= 4 and args.output_dir.startswith("outputs/")


def test_train_py_without_flags_is_the_scifact_preset():
    """``make demo`` runs ``python train.py``; the README and the benchmark call that ``configs/scifact.yaml``."""
    from dataclasses import asdict

    defaults, preset = parse_arguments([]), parse_arguments([str(ROOT / "configs" / "scifact.yaml")])
    for plain, configured in zip(defaults, preset, strict=True):
        assert asdict(plain) == asdict(configured), type(plain).__name__


def test_the_best_preset_is_the_chain_with_the_reranker_at_256_tokens():
    """What the README and the benchmark (``ours_best``) say of it."""
    from dataclasses import asdict

    chain = parse_arguments([str(ROOT / "configs" / "scifact-augmented.yaml")])
    best = parse_arguments([str(ROOT / "configs" / "scifact-best.yaml")])
    changed = {
        key: (asdict(a)[key], asdict(b)[key]) for a, b in zip(chain, best, strict=True) for key in asdict(a)
        if asdict(a)[key] != asdict(b)[key]
    }
    assert changed == {
        "reranker_max_length": (128, 256),
        "output_dir": ("outputs/scifact-augmented", "outputs/scifact-best"),
    }


def test_step_losses_teacher_phase_and_in_batch_negatives():
    from modeling_rq2 import RQ2RetrieverOutput
    from modeling_rq2.training.arguments import LossArguments
    from modeling_rq2.training.joint import step_losses

    torch.manual_seed(0)
    q = torch.randn(2, 8, requires_grad=True)
    p = torch.randn(2, 3, 8, requires_grad=True)
    output = RQ2RetrieverOutput(scores=torch.einsum("bd,bld->bl", q, p), query_embeddings=q, passage_embeddings=p)
    mask = torch.ones(2, 3, dtype=torch.bool)
    reranker_scores = torch.randn(2, 3, requires_grad=True)
    paper = LossArguments(retriever_supervised_weight=0.0, in_batch_negatives=False)
    step_losses(output, reranker_scores, mask, "joint", True, paper, 1.0)["loss"].backward(retain_graph=True)
    assert (q.grad is None or q.grad.abs().sum() == 0) and reranker_scores.grad.abs().sum() > 0  # teacher phase
    step_losses(output, reranker_scores, mask, "joint", False, paper, 1.0)["loss"].backward(retain_graph=True)
    assert q.grad.abs().sum() > 0
    in_batch = step_losses(output, reranker_scores, mask, "joint", True, LossArguments(in_batch_negatives=True), 1.0)
    flat = q @ p.reshape(6, 8).T  # query i's positive is passage 3 * i
    expected = torch.nn.functional.cross_entropy(flat, torch.tensor([0, 3]))
    torch.testing.assert_close(in_batch["retriever_ce"], expected)
    warm = step_losses(output, reranker_scores, mask, "warmup", False, paper, 1.0)
    assert set(warm) == {"loss", "supervised", "retriever_ce"}


@pytest.mark.parametrize("warmup", ["separate", "joint"])
def test_augmentation_chain_warms_up_augments_then_trains_jointly(train_setup, tmp_path, warmup):
    """--augment: warm-up -> mined + denoised lists -> joint training from the warm models; a rerun skips done stages."""
    argv = train_argv(train_setup, tmp_path, "--augment", "true", "--augment_top_n", "6", "--epochs", "1", "--eval_split", "none",
                      "--augment_warmup", warmup)
    metrics = run_training(*parse_arguments(argv))
    assert RQ2Retriever.from_pretrained(tmp_path / "warmup" / "retriever") is not None
    warm_log = [json.loads(line) for line in (tmp_path / "warmup" / "train_log.jsonl").read_text().splitlines()]
    assert {row["phase"] for row in warm_log} == {"warmup" if warmup == "separate" else "joint"}
    report = json.loads((tmp_path / "augmented" / "augmentation_report.json").read_text())
    assert report["queries"] == 12 and report["top_n"] == 6 and metrics["augmentation"] == report
    config = json.loads((tmp_path / "training_config.json").read_text())
    assert config["data"]["train_instances"] == str(tmp_path / "augmented")
    assert config["model"]["retriever"] == str(tmp_path / "warmup" / "retriever")
    assert metrics["train"]["steps"] == math.ceil(sum(report["instances"].values()) / 4)  # one epoch over the new lists
    assert RQ2Reranker.from_pretrained(tmp_path / "reranker") is not None
    assert "- Augmentation: top 6 retrieved" in (tmp_path / "retriever" / "README.md").read_text()

    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "warmup" / "metrics.json", tmp_path / "augmented" / "augmentation_report.json")}
    run_training(*parse_arguments(argv + ["--resume_from_checkpoint", "latest"]))
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())
    with pytest.raises(ValueError, match="drop --train_instances"):
        run_training(*parse_arguments(argv + ["--train_instances", str(tmp_path / "augmented")]))


def test_augmentation_rounds_mine_each_round_with_the_models_the_round_before_trained(train_setup, tmp_path,
                                                                                     monkeypatch):
    """--augment_rounds 2: round 1 trains on the warm models' lists into round-1/ (no evaluation), round 2 mines
    augmented-2/ with round 1's models and trains from them into OUTPUT/; a rerun trains no finished round again,
    and other rounds on a finished OUTPUT are refused before any stage runs."""
    from modeling_rq2.training import chain

    mined_with, load = [], chain.load_retriever
    monkeypatch.setattr(chain, "load_retriever", lambda path: mined_with.append(Path(path).parent) or load(path))
    argv = train_argv(train_setup, tmp_path, "--augment", "true", "--augment_top_n", "6", "--epochs", "1",
                      "--augment_rounds", "2")
    metrics = run_training(*parse_arguments(argv))
    assert mined_with == [tmp_path / "warmup", tmp_path / "round-1"]
    first = json.loads((tmp_path / "round-1" / "training_config.json").read_text())
    assert first["model"]["retriever"] == str(tmp_path / "warmup" / "retriever")
    assert first["data"]["train_instances"] == str(tmp_path / "augmented")
    assert "eval" not in json.loads((tmp_path / "round-1" / "metrics.json").read_text())  # only the last evaluates
    final = json.loads((tmp_path / "training_config.json").read_text())
    assert final["model"]["retriever"] == str(tmp_path / "round-1" / "retriever")
    assert final["model"]["reranker"] == str(tmp_path / "round-1" / "reranker")
    assert final["data"]["train_instances"] == str(tmp_path / "augmented-2")
    second = json.loads((tmp_path / "augmented-2" / "augmentation_report.json").read_text())
    assert [r["queries"] for r in metrics["augmentation_rounds"]] == [12, 12] and metrics["augmentation"] == second
    assert "eval" in metrics and metrics["train"]["steps"] == math.ceil(sum(second["instances"].values()) / 4)
    assert "- Augmentation (2 rounds; figures of the last): top 6" in (
        tmp_path / "retriever" / "README.md").read_text()

    done = [tmp_path / "round-1" / "metrics.json", tmp_path / "augmented-2" / "augmentation_report.json"]
    stamps = {p: p.stat().st_mtime_ns for p in done}
    run_training(*parse_arguments(argv + ["--resume_from_checkpoint", "latest"]))
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())
    with pytest.raises(ValueError, match="augment_rounds"):
        parse_arguments(argv[:-1] + ["0"])
    with pytest.raises(ValueError, match=r"holds a run with other settings \(augment_rounds 2 -> 3"):
        run_training(*parse_arguments(argv[:-1] + ["3"]))
    assert not (tmp_path / "round-2").exists() and not (tmp_path / "augmented-3").exists()


def test_held_out_training_queries_never_train_and_are_what_is_evaluated(train_setup, tmp_path, monkeypatch):
    """``--heldout_queries 4 --eval_split heldout``: the lists (of the joint run and of the chain's mining) hold only
    the other 8 queries, the evaluation reads the 4, and the test split is never read."""
    import datasets

    from modeling_rq2.data import hold_out, load_data
    from modeling_rq2.training import trainer

    read = []
    monkeypatch.setattr(trainer, "load_data", lambda path, split, *a: read.append(split) or load_data(path, split, *a))
    _, data = train_setup
    dev_ids = set(hold_out(load_data(data, "train"), 4, seed=3)[1].queries["_id"])
    argv = train_argv(train_setup, tmp_path, "--heldout_queries", "4", "--heldout_seed", "3", "--eval_split", "heldout",
                      "--augment", "true", "--augment_top_n", "5", "--augment_warmup_epochs", "1", "--max_steps", "1")
    metrics = run_training(*parse_arguments(argv))
    assert "test" not in read and read
    assert metrics["eval"]["split"] == "train[4 held out, seed 3]" and metrics["augmentation"]["queries"] == 8
    mined = datasets.load_from_disk(str(tmp_path / "augmented"))
    assert not set(mined["query_id"]) & dev_ids and len(set(mined["query_id"])) == 8
    with pytest.raises(ValueError, match="--eval_split: heldout evaluates the queries --heldout_queries carves out"):
        parse_arguments(train_argv(train_setup, tmp_path, "--eval_split", "heldout"))
