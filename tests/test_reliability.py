"""What users do to a training run and to loaded files: signals, full disks, NaNs, untrusted weights, odd inputs."""

import errno
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from accelerate import Accelerator
from safetensors.torch import load_file

import modeling_rq2.training.trainer as training
from modeling_rq2 import RQ2Retriever
from modeling_rq2.retrieval.pipeline import RetrieveThenRerank
from modeling_rq2.training.chain import run_training
from modeling_rq2.training.collator import ListwiseCollator
from modeling_rq2.training.config_files import parse_arguments
from modeling_rq2.training.losses import listwise_cross_entropy, listwise_distillation_loss

from conftest import TINY_CORPUS, assert_same_weights, start_training, train_argv, wait_until

ROOT = Path(__file__).resolve().parents[1]


def test_sigterm_checkpoints_and_exits_then_resumes_to_the_same_weights(train_setup, tmp_path):
    common = ["--epochs", "10", "--save_steps", "0", "--logging_steps", "1", "--eval_split", "none"]
    run_training(*parse_arguments(train_argv(train_setup, tmp_path / "straight", *common)))

    stopped = tmp_path / "stopped"
    proc = start_training(train_argv(train_setup, stopped, *common), output=True)
    log = stopped / "train_log.jsonl"
    wait_until(proc, lambda: log.exists() and len(log.read_text().splitlines()) >= 3)
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, output[-2000:]
    assert "stopped by a signal" in output and not (stopped / "retriever").exists()
    (checkpoint,) = (stopped / "checkpoints").glob("checkpoint-*")
    assert (checkpoint / "progress.json").is_file()

    run_training(*parse_arguments(train_argv(train_setup, stopped, *common, "--resume_from_checkpoint", "latest")))
    assert_same_weights(tmp_path / "straight", stopped)


def test_a_full_disk_during_a_checkpoint_keeps_the_last_good_one(train_setup, tmp_path, monkeypatch):
    real, calls = Accelerator.save_state, []

    def fails_the_second_time(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Accelerator, "save_state", fails_the_second_time)
    argv = train_argv(train_setup, tmp_path, "--epochs", "2", "--save_steps", "1", "--eval_split", "none")
    with pytest.raises(OSError, match=r"could not write checkpoint .*checkpoint-2 \(No space left on device\); "
                                      r"the last complete one, .*checkpoint-1, is intact"):
        run_training(*parse_arguments(argv))
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["checkpoint-1"]
    monkeypatch.setattr(Accelerator, "save_state", real)
    metrics = run_training(*parse_arguments(argv + ["--resume_from_checkpoint", "latest"]))
    assert metrics["train"]["steps"] == 6


def test_an_unwritable_output_folder_fails_before_any_model_loads(train_setup, tmp_path, monkeypatch):
    (tmp_path / "a_file").write_text("not a folder")
    monkeypatch.setattr(training, "load_retriever", lambda *a, **k: pytest.fail("a model was loaded"))
    with pytest.raises(OSError, match="--output_dir .*a_file/run: cannot write there"):
        run_training(*parse_arguments(train_argv(train_setup, tmp_path / "a_file" / "run")))


def test_a_non_finite_loss_stops_before_the_weights_change(train_setup, tmp_path, monkeypatch):
    real, calls = training.step_losses, []

    def nan_on_the_third_step(*args, **kwargs):
        parts = real(*args, **kwargs)
        calls.append(1)
        if len(calls) == 3:
            parts["loss"] = parts["loss"] * float("nan")
        return parts

    monkeypatch.setattr(training, "step_losses", nan_on_the_third_step)
    with pytest.raises(FloatingPointError, match="non-finite loss .* at step 3: stopped before the weights were touched"):
        run_training(*parse_arguments(train_argv(train_setup, tmp_path, "--epochs", "2", "--save_steps", "1", "--eval_split", "none")))
    state = load_file(tmp_path / "checkpoints" / "checkpoint-2" / "model.safetensors")
    assert all(torch.isfinite(t).all() for t in state.values())


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--list_size", "25"], "--list_size: 25 is more than the 20 passages"),
        (["--top_k", "50"], "--top_k: 50 is more than the 20 passages"),
        (["--negatives_top_n", "20"], "--negatives_top_n: must be below the corpus size 20"),
        (["--rerank_top_k", "25"], "--rerank_top_k: must be <= --top_k 20"),
        (["--top_k", "10"], "--top_k 10 is below the deepest metric cutoff \\(100"),
        (["--augment", "true", "--negative_below", "0.95"], "negative_below <= positive_above"),
    ],
)
def test_settings_the_data_make_impossible_fail_before_any_model_loads(train_setup, tmp_path, monkeypatch, flags, message):
    monkeypatch.setattr(training, "load_retriever", lambda *a, **k: pytest.fail("a model was loaded"))
    with pytest.raises(ValueError, match=message):  # a flag repeated after train_argv's own: the last one wins
        run_training(*parse_arguments(train_argv(train_setup, tmp_path, *flags)))


@pytest.mark.parametrize(
    "yaml_text, message",
    [
        ("epochs: two\n", "epochs must be int, got 'two'"),
        ("list_size: [4, 8]\n", r"list_size must be int, got \[4, 8\]"),
        ("gradient_checkpointing: maybe\n", "gradient_checkpointing must be bool"),
        ("retriever_lr: -1e-5\n", "--retriever_lr: must be >= 0, got -1e-05"),
    ],
)
def test_config_file_values_of_the_wrong_type_name_the_key(tmp_path, yaml_text, message):
    config = tmp_path / "c.yaml"
    config.write_text(yaml_text)
    with pytest.raises(ValueError, match=message):
        parse_arguments([str(config)])


def test_yaml_numbers_written_without_a_dot_are_read_as_numbers(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("retriever_lr: 1e-5\nmax_steps: null\n")
    _, _, _, args, _ = parse_arguments([str(config)])
    assert args.retriever_lr == 1e-5 and args.max_steps is None


def test_pickle_weights_are_refused_unless_allowed(retriever, tmp_path):
    retriever.save_pretrained(tmp_path / "m")
    state = load_file(tmp_path / "m" / "model.safetensors")
    (tmp_path / "m" / "model.safetensors").unlink()
    torch.save(state, tmp_path / "m" / "pytorch_model.bin")
    with pytest.raises(OSError, match="no safetensors weights .* pass allow_pickle=True"):
        RQ2Retriever.from_pretrained(tmp_path / "m")
    with pytest.raises(ValueError, match="pass allow_pickle=True as well"):
        RQ2Retriever.from_pretrained(tmp_path / "m", use_safetensors=False)
    loaded = RQ2Retriever.from_pretrained(tmp_path / "m", allow_pickle=True)
    assert torch.equal(loaded.state_dict()["query_encoder.embeddings.word_embeddings.weight"],
                       retriever.state_dict()["query_encoder.embeddings.word_embeddings.weight"])


def test_long_inputs_are_truncated_and_empty_batches_behave(retriever, reranker):
    long_text = " ".join(["scurvy"] * 5000)
    assert retriever.encode_passages([{"title": "t", "text": long_text}]).shape == (1, 32)
    assert retriever.encode_queries([long_text]).shape == (1, 32)
    assert reranker.score(long_text, [long_text]).shape == (1,)
    assert retriever.encode_queries([]).shape == (0, 32) and retriever.encode_passages([]).shape == (0, 32)
    assert reranker.score_pairs([]).shape == (0,)
    pipe = RetrieveThenRerank.from_corpus(retriever, TINY_CORPUS, [d["_id"] for d in TINY_CORPUS], reranker)
    assert pipe.search([], top_k=3) == []
    assert len(pipe.search([long_text], top_k=3, rerank_top_k=3)[0]) == 3


def test_a_single_passage_list_trains_without_nan(retriever, reranker):
    collate = ListwiseCollator(retriever, reranker, list_size=4, passage_max_length=16, pair_max_length=24)
    batch = collate([{"query": "what causes scurvy", "passages": ["scurvy is caused by low vitamin c"]},
                     {"query": "the sun", "passages": ["the sun is a star", "paris is in france"]}])
    assert batch["list_mask"].tolist() == [[True, False, False, False], [True, True, False, False]]
    assert batch["passage_input_ids"].shape[:2] == (2, 4)
    scores = torch.randn(2, 4, requires_grad=True)
    loss = listwise_distillation_loss(scores, torch.randn(2, 4, requires_grad=True), mask=batch["list_mask"])
    assert torch.isfinite(loss.total) and loss.kl.item() >= 0
    single = listwise_cross_entropy(scores[:1], mask=batch["list_mask"][:1])
    assert single.item() == pytest.approx(0.0, abs=1e-6)
    loss.total.backward()
    assert torch.isfinite(scores.grad).all() and np.allclose(scores.grad[0, 1:].numpy(), 0)
