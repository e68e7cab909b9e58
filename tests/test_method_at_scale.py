"""The method as the paper runs it at scale (issue 16): each test failed before its fix."""

import json
from pathlib import Path

import pytest
import torch

from modeling_rq2 import RQ2RetrieverOutput
from modeling_rq2.training.checkpoints import write_manifest
from modeling_rq2.training.joint import in_batch_scores

from conftest import ROOT, tiny_retriever


def _loud(retriever):
    """A tiny retriever whose embeddings are large (dot products of tens), where bf16 rounding shows."""
    with torch.no_grad():
        for p in retriever.parameters():
            p.mul_(3.0)
    return retriever


def test_scores_entering_the_loss_are_fp32_under_bf16_autocast(tiny_tokenizer):
    retriever = _loud(tiny_retriever(tiny_tokenizer, pooling="mean"))
    queries = retriever.tokenize_queries(["what causes scurvy", "the sun"])
    passages = retriever.tokenize_passages(["scurvy is caused by low vitamin c", "the sun is a star"] * 2)
    passages = {k: v.reshape(2, 2, -1) for k, v in passages.items()}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = retriever(query_input_ids=queries["input_ids"], query_attention_mask=queries["attention_mask"],
                        passage_input_ids=passages["input_ids"], passage_attention_mask=passages["attention_mask"])
        in_batch, _, _ = in_batch_scores(out, torch.ones(2, 2, dtype=torch.bool))
    q, p = out.query_embeddings.float(), out.passage_embeddings.float()
    assert out.scores.abs().max() > 10  # large enough for bf16's 8 bits of mantissa to round by > 0.03
    assert out.scores.dtype == torch.float32 and in_batch.dtype == torch.float32
    torch.testing.assert_close(out.scores, torch.einsum("bd,bld->bl", q, p), rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(in_batch, q @ p.reshape(4, -1).T, rtol=1e-6, atol=1e-5)


def test_in_batch_scores_are_fp32_for_bf16_embeddings():
    torch.manual_seed(0)
    q, p = torch.randn(2, 8) * 4, torch.randn(2, 3, 8) * 4
    output = RQ2RetrieverOutput(scores=None, query_embeddings=q.bfloat16(), passage_embeddings=p.bfloat16())
    scores, _, _ = in_batch_scores(output, torch.ones(2, 3, dtype=torch.bool))
    expected = q.bfloat16().float() @ p.bfloat16().float().reshape(6, 8).T
    assert scores.dtype == torch.float32
    torch.testing.assert_close(scores, expected, rtol=1e-6, atol=1e-5)


def test_a_frozen_static_teacher_scores_in_eval_mode(train_setup, tmp_path, monkeypatch):
    """Static distillation: the frozen re-ranker teacher has its dropout off in every training step."""
    from modeling_rq2.training.chain import run_training
    from modeling_rq2.training.config_files import parse_arguments
    from modeling_rq2.training.joint import JointModel

    from conftest import train_argv

    modes, forward = [], JointModel.forward

    def recording(self, batch):
        modes.append((self.retriever.training, self.reranker.training))
        return forward(self, batch)

    monkeypatch.setattr(JointModel, "forward", recording)
    argv = train_argv(train_setup, tmp_path, "--static", "true", "--kl_warmup_ratio", "0", "--max_steps", "2",
                      "--eval_split", "none")
    run_training(*parse_arguments(argv))
    assert modes and all(modes_ == (True, False) for modes_ in modes), modes


def test_max_train_queries_counts_queries_not_rows(tmp_path, train_setup):
    """Augmented instances hold two rows a query (undenoised, denoised): a limit of N queries keeps both rows of
    each of the first N queries, not the first N rows."""
    import datasets

    from modeling_rq2.data import load_data
    from modeling_rq2.training.arguments import DataArguments
    from modeling_rq2.training.lists import training_instances

    _, data = train_setup
    rows = [{"query_id": f"q{i}", "query": f"what is {i}", "positives": [f"d{i}"], "negatives": [f"d{i + 1}"],
             "kind": kind} for i in range(4) for kind in ("undenoised", "denoised")]
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "augmented"))
    args = DataArguments(data=str(data), train_instances=str(tmp_path / "augmented"), max_train_queries=3)
    kept = training_instances(load_data(str(data), "train"), args)
    assert kept["query_id"] == ["q0", "q0", "q1", "q1", "q2", "q2"]


def test_a_two_process_run_has_the_single_process_learning_rates(train_setup, tmp_path):
    """The LR after every optimizer step of 2 processes x 4 queries equals that of 1 process x 8 (same global batch,
    same steps): Accelerate steps the scheduler once per process, so it must be sized for that."""
    import json
    import os
    import subprocess
    import sys

    from modeling_rq2.training.chain import run_training
    from modeling_rq2.training.config_files import parse_arguments

    from conftest import ROOT, train_argv

    schedule = ["--lr_scheduler", "linear", "--warmup_ratio", "0.34", "--logging_steps", "1", "--epochs", "3",
                "--eval_split", "none", "--save_steps", "0"]

    def lrs(folder):
        return [(row["step"], row["lr_retriever"], row["lr_reranker_head"])
                for row in map(json.loads, (folder / "train_log.jsonl").read_text().splitlines())]

    run_training(*parse_arguments(train_argv(train_setup, tmp_path / "one", *schedule, "--batch_size", "8")))
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", str(ROOT / "train.py"),
               *train_argv(train_setup, tmp_path / "two", *schedule, "--batch_size", "4")]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "true"}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    single = lrs(tmp_path / "one")
    assert len(single) == 6 and single[-1][1] == 0.0  # linear: 0 at the last step
    assert lrs(tmp_path / "two") == single


def test_in_batch_negatives_are_never_positives_of_the_query(retriever, reranker):
    """Query 0's gold passages are d1 and d4: d1 is also in query 1's list (a shared positive) and d4 is query 2's
    sampled positive. Both are masked out of query 0's in-batch negatives (as sentence-transformers' MNRL drops
    duplicates); the other queries' negatives stay, and each query keeps its own label."""
    from modeling_rq2.training.arguments import LossArguments
    from modeling_rq2.training.collator import ListwiseCollator
    from modeling_rq2.training.joint import step_losses

    items = [
        {"query": "what causes scurvy", "passages": ["scurvy is low vitamin c", "the sun"], "doc_ids": ["d1", "d2"],
         "positives": ["d1", "d4"]},
        {"query": "vitamin c", "passages": ["vitamin c is in fruit", "scurvy is low vitamin c"], "doc_ids": ["d3", "d1"],
         "positives": ["d3"]},
        {"query": "fruit", "passages": ["lack of fruit", "paris"], "doc_ids": ["d4", "d5"], "positives": ["d4"]},
    ]
    batch = ListwiseCollator(retriever, reranker, 2)(items)
    expected_mask = torch.zeros(3, 6, dtype=torch.bool)
    expected_mask[0, 3] = expected_mask[0, 4] = True  # d1 in list 1, d4 heading list 2
    assert torch.equal(batch.in_batch_positives, expected_mask)
    torch.manual_seed(0)
    q, p = torch.randn(3, 8), torch.randn(3, 2, 8)
    output = RQ2RetrieverOutput(scores=torch.einsum("bd,bld->bl", q, p), query_embeddings=q, passage_embeddings=p)
    parts = step_losses(output, torch.randn(3, 2), batch.list_mask, "joint", False, LossArguments(), 1.0,
                        in_batch_positives=batch.in_batch_positives)
    flat = (q @ p.reshape(6, 8).T).masked_fill(expected_mask, float("-inf"))
    expected = torch.nn.functional.cross_entropy(flat, torch.tensor([0, 2, 4]))
    torch.testing.assert_close(parts["retriever_ce"], expected)


def test_metrics_and_cards_record_the_lists_and_temperature_as_trained(train_setup, tmp_path):
    """Lists of 8 asked from a pool of 10 BM25 negatives hold 8; asked of 12 passages with 3 negatives they hold 4:
    the card says what the run trained on, and the temperature it used (not the configured None)."""
    import json

    from modeling_rq2.training.chain import run_training
    from modeling_rq2.training.config_files import parse_arguments

    from conftest import train_argv

    argv = train_argv(train_setup, tmp_path, "--list_size", "8", "--negatives_top_n", "3", "--max_steps", "1",
                      "--eval_split", "none")
    metrics = run_training(*parse_arguments(argv))
    assert metrics["train"]["lists"] == {"size": 8, "mean": 4.0, "min": 4, "max": 4, "padding": 0.5}
    assert metrics["train"]["retriever_temperature"] == 1.0
    assert json.loads((tmp_path / "metrics.json").read_text())["train"]["lists"]["padding"] == 0.5
    card = (tmp_path / "retriever" / "README.md").read_text()
    assert "| passages a list | 8 (1 positive); as trained: 4 passages a list on average, at least 4 (50.0% padding) |" in card
    assert "temperatures: retriever 1, re-ranker 1" in card
    # the card's training examples and framework versions come from the run's record
    first = metrics["train"]["examples"][0]
    assert len(metrics["train"]["examples"]) == 3 and len(first["negatives"]) == 2 and set(first["positive"]) == {"title", "text"}
    assert first["query"] in card and metrics["hardware"]["versions"]["PyTorch"] == torch.__version__


COMBINATIONS = [  # (static, reranker_kl_gradient, kl_warmup_ratio, retriever_supervised_weight, kl_weight, supervised_weight)
    (s, g, w, r, k, c) for s in (False, True) for g in (True, False) for w in (0.0, 0.5, 1.0) for r in (0.0, 1.0)
    for k in (0.0, 1.0) for c in (0.0, 1.0)
]


def _trains(static, kl_gradient, warmup, retriever_weight, kl_weight, supervised_weight):
    """What each combination means: which model learns in the teacher phase and after it; None: refused."""
    reranker_from_kl = kl_weight > 0 and kl_gradient and not static
    reranker = not static and (supervised_weight > 0 or reranker_from_kl)
    joint = {"retriever": kl_weight > 0 or retriever_weight > 0, "reranker": reranker}  # after the teacher phase
    teacher = {"retriever": retriever_weight > 0, "reranker": reranker}
    if warmup > 0 and not reranker_from_kl:  # a teacher phase whose KL trains nothing
        return None
    if not (joint["retriever"] if warmup < 1 else teacher["retriever"]) or not (static or reranker):
        return None  # a model that never learns (with a teacher phase of the whole run, the KL never reaches it)
    return {"teacher": teacher if warmup > 0 else None, "joint": joint if warmup < 1 else None}


@pytest.mark.parametrize("combination", COMBINATIONS)
def test_every_loss_combination_trains_what_it_says_or_is_refused(combination):
    """Which parameters receive gradient in each phase of every combination of the loss options; a combination in
    which a phase or a model trains nothing is refused before any data loads."""
    from modeling_rq2.training.arguments import LossArguments
    from modeling_rq2.training.joint import step_losses

    static, kl_gradient, warmup, retriever_weight, kl_weight, supervised_weight = combination
    options = dict(static=static, reranker_kl_gradient=kl_gradient, kl_warmup_ratio=warmup, kl_weight=kl_weight,
                   retriever_supervised_weight=retriever_weight, supervised_weight=supervised_weight)
    expected = _trains(*combination)
    if expected is None:
        with pytest.raises(ValueError, match="trains nothing|never learns"):
            LossArguments(**options)
        return
    loss_args = LossArguments(**options)
    for phase, teacher in (("teacher", True), ("joint", False)):
        if expected[phase] is None:
            continue
        torch.manual_seed(0)
        q, p = torch.randn(2, 8, requires_grad=True), torch.randn(2, 3, 8)
        output = RQ2RetrieverOutput(scores=torch.einsum("bd,bld->bl", q, p), query_embeddings=q, passage_embeddings=p)
        reranker_scores = torch.randn(2, 3, requires_grad=True)
        parts = step_losses(output, reranker_scores, torch.ones(2, 3, dtype=torch.bool), "joint", teacher, loss_args, 1.0)
        if parts["loss"].requires_grad:
            parts["loss"].backward()
        got = {"retriever": q.grad is not None and bool(q.grad.abs().sum() > 0),
               "reranker": reranker_scores.grad is not None and bool(reranker_scores.grad.abs().sum() > 0)}
        assert got == expected[phase], (phase, options)


def test_short_lists_are_refused_or_counted_never_silent(caplog):
    """Lists of 4 from pools of 1 and 3 negatives: ``error`` refuses with the numbers, ``pad`` says so in a warning."""
    import logging

    import datasets

    from modeling_rq2.training.lists import ListwiseDataset

    rows = [{"query_id": "q1", "query": "a", "positives": ["d1"], "negatives": ["d2"]},
            {"query_id": "q2", "query": "b", "positives": ["d2"], "negatives": ["d1", "d3", "d4"]}]
    instances, passages = datasets.Dataset.from_list(rows), {f"d{i}": f"passage {i}" for i in range(1, 5)}
    with pytest.raises(ValueError, match=r"--short_lists error: 1 of 2 queries have fewer than the 3 negatives a list of 4"):
        ListwiseDataset(instances, passages, 4, short_lists="error")
    with caplog.at_level(logging.WARNING, logger="modeling_rq2.training.lists"):
        padded = ListwiseDataset(instances, passages, 4)
    assert "1 of 2 queries have fewer than the 3 negatives" in caplog.text and "25.0% of the list slots padding" in caplog.text
    assert padded.list_lengths() == {"size": 4, "mean": 3.0, "min": 2, "max": 4, "padding": 0.25}


def _deep_msmarco(folder: Path, passages: int = 1100, queries: int = 12) -> Path:
    """MS MARCO's official files with a corpus deep enough for the preset's lists (top 200, lists of 128) and metrics (top 1000)."""
    from conftest import TRAIN_WORDS

    folder.mkdir(parents=True, exist_ok=True)
    texts = [f"{TRAIN_WORDS[i % 20]} {TRAIN_WORDS[(i // 20) % 20]} is a {TRAIN_WORDS[(i * 7) % 20]} {i}" for i in range(passages)]
    (folder / "collection.tsv").write_text("".join(f"{i}\t{t}\n" for i, t in enumerate(texts)), encoding="utf-8")
    for split, first in (("train", 0), ("dev.small", queries)):
        count = queries if split == "train" else 4
        (folder / f"queries.{split}.tsv").write_text(
            "".join(f"{first + i}\twhat is {TRAIN_WORDS[(first + i) % 20]} {first + i}\n" for i in range(count)), encoding="utf-8"
        )
        (folder / f"qrels.{split}.tsv").write_text("".join(f"{first + i}\t0\t{first + i}\t1\n" for i in range(count)), encoding="utf-8")
    (folder / "triples.train.small.tsv").write_text(  # ten BM25-style negatives a query, for the warm-up's lists of 8
        "".join(f"what is {TRAIN_WORDS[i % 20]} {i}\t{texts[i]}\t{texts[(i + 13 * k + 20) % passages]}\n"
                for i in range(queries) for k in range(10)),
        encoding="utf-8",
    )
    return folder


def _deep_dpr(folder: Path, passages: int = 120, questions: int = 12) -> Path:
    """DPR's files with a corpus deep enough for the NQ preset's lists (top 100, lists of 32)."""
    import csv

    from conftest import TRAIN_WORDS

    folder.mkdir(parents=True, exist_ok=True)
    texts = [f"{TRAIN_WORDS[i % 20]} {TRAIN_WORDS[(i // 20) % 20]} is a {TRAIN_WORDS[(i * 7) % 20]} {i}" for i in range(passages)]
    with open(folder / "psgs_w100.tsv", "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, delimiter="\t", lineterminator="\n")
        writer.writerow(["id", "text", "title"])
        writer.writerows([i + 1, text, TRAIN_WORDS[i % 20].title()] for i, text in enumerate(texts))

    def ctx(i: int) -> dict:
        return {"title": TRAIN_WORDS[i % 20].title(), "text": texts[i], "score": 1.0, "passage_id": str(i + 1)}

    train = [{"question": f"what is {TRAIN_WORDS[i % 20]} {i}", "answers": [f"{i}"], "positive_ctxs": [ctx(i)],
              "negative_ctxs": [], "hard_negative_ctxs": [ctx((i + 11 * k + 20) % passages) for k in range(10)]}
             for i in range(questions)]
    (folder / "nq-train.json").write_text(json.dumps(train), encoding="utf-8")
    (folder / "nq-test.qa.csv").write_text(
        "".join(f"what is {TRAIN_WORDS[i % 20]} {i}\t{json.dumps([str(i)])}\n" for i in range(questions, questions + 4)),
        encoding="utf-8",
    )
    return folder


@pytest.mark.parametrize("preset, write, list_size, top_n", [("msmarco.yaml", _deep_msmarco, 128, 200), ("nq.yaml", _deep_dpr, 32, 100)])
def test_the_paper_presets_train_on_full_lists_of_their_own_size_and_depth(train_setup, tmp_path, preset, write, list_size, top_n):
    """The preset as shipped (list size, mining depth, warm-up lists, every training setting) on a corpus reduced to
    a few hundred passages, tiny models: the joint stage's lists are the paper's 128 / 32 passages, none padded, mined
    from the preset's top n; the warm-up trains on its lists of 8 from the BM25 negatives."""
    from modeling_rq2.training.chain import run_training
    from modeling_rq2.training.config_files import parse_arguments

    root, _ = train_setup
    data = write(tmp_path / "data")
    argv = [str(ROOT / "configs" / preset), "--retriever", str(root / "retriever"), "--reranker", str(root / "reranker"),
            "--data", str(data), "--output_dir", str(tmp_path / "run"), "--report_to", "none"]
    if preset == "msmarco.yaml":
        argv += ["--negatives", str(data / "triples.train.small.tsv")]
    config = parse_arguments(argv)
    assert (config.data.list_size, config.augmentation.augment_top_n) == (list_size, top_n)
    metrics = run_training(*config)
    assert metrics["augmentation"]["top_n"] == top_n and metrics["augmentation"]["instances"] == {"undenoised": 12, "denoised": 12}
    assert metrics["train"]["lists"] == {"size": list_size, "mean": list_size, "min": list_size, "max": list_size, "padding": 0.0}
    warmup = json.loads((tmp_path / "run" / "warmup" / "metrics.json").read_text())
    assert warmup["train"]["lists"] == {"size": 8, "mean": 8, "min": 8, "max": 8, "padding": 0.0}


def test_lists_too_deep_for_the_mined_pool_are_refused_before_any_training(train_setup, tmp_path, monkeypatch):
    """``--short_lists error`` with a mining depth that cannot fill the lists (top 50 for lists of 128): refused
    before the warm-up, instead of days of training on lists of at most 51 passages padded to 128."""
    from modeling_rq2.training import trainer
    from modeling_rq2.training.chain import run_training
    from modeling_rq2.training.config_files import parse_arguments

    root, _ = train_setup
    data = _deep_msmarco(tmp_path / "data")
    monkeypatch.setattr(trainer, "load_retriever", lambda *a, **k: pytest.fail("a model was loaded"))
    argv = [str(ROOT / "configs" / "msmarco.yaml"), "--retriever", str(root / "retriever"), "--reranker",
            str(root / "reranker"), "--data", str(data), "--negatives", str(data / "triples.train.small.tsv"),
            "--output_dir", str(tmp_path / "run"), "--report_to", "none", "--augment_top_n", "50", "--short_lists", "error"]
    with pytest.raises(ValueError, match="--augment_top_n: 50 mines at most 49 negatives a query .* lists of 128 need 127"):
        run_training(*parse_arguments(argv))


def test_the_rerankers_logits_are_fp32_under_bf16_autocast(tiny_tokenizer):
    """The re-ranker's scores enter the KL and its cross-entropy: its head runs in float32 under autocast too."""
    from conftest import tiny_reranker

    reranker = _loud(tiny_reranker(tiny_tokenizer))
    pairs = reranker.tokenize_pairs([("what causes scurvy", "scurvy is caused by low vitamin c"), ("sun", "a star")])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = reranker(**pairs).logits
    assert logits.dtype == torch.float32 and logits.shape == (2,)


def test_list_lengths_count_the_selected_rows_only():
    """A dataset ``select``ed out of a larger one (``first_queries`` does so) keeps the whole table underneath: the
    list statistics and the short-list check read only the rows selected."""
    import datasets

    from modeling_rq2.training.lists import ListwiseDataset

    rows = [{"query_id": f"q{i}", "query": "a", "positives": ["d0"], "negatives": ["d1"] * (1 + 2 * (i % 2))}
            for i in range(6)]
    kept = datasets.Dataset.from_list(rows).select([1, 3, 5])  # the rows with 3 negatives
    dataset = ListwiseDataset(kept, {"d0": "x", "d1": "y"}, 4, short_lists="error")
    assert dataset.list_lengths() == {"size": 4, "mean": 4.0, "min": 4, "max": 4, "padding": 0.0}


def test_a_checkpoint_resumes_only_on_its_process_count(train_setup, tmp_path):
    """The data order and the learning-rate schedule are per process count: a checkpoint saved by 2 processes is
    refused by a single-process resume, naming both counts."""
    import json

    from modeling_rq2.training.chain import run_training
    from modeling_rq2.training.config_files import parse_arguments

    from conftest import train_argv

    run_training(*parse_arguments(train_argv(train_setup, tmp_path, "--max_steps", "1", "--save_steps", "1",
                                             "--eval_split", "none")))
    progress = tmp_path / "checkpoints" / "checkpoint-1" / "progress.json"
    saved = json.loads(progress.read_text())
    assert saved["processes"] == 1
    progress.write_text(json.dumps({**saved, "processes": 2}))
    write_manifest(progress.parent)  # as if a 2-process run had saved it
    with pytest.raises(ValueError, match="checkpoint-1 was saved by a run of 2 processes, this one has 1"):
        run_training(*parse_arguments(train_argv(train_setup, tmp_path, "--max_steps", "2", "--eval_split", "none",
                                                 "--resume_from_checkpoint", "latest")))


def test_plan_shows_the_runs_shape_before_any_model_loads(train_setup, tmp_path, monkeypatch):
    """``--plan true``: steps, learning rates along the run, the lists as they will be, tokens, memory and warnings in
    plan.json, and nothing trained (no model loads)."""
    import json

    from modeling_rq2.training import trainer
    from modeling_rq2.training.chain import run_training
    from modeling_rq2.training.config_files import parse_arguments

    from conftest import train_argv

    monkeypatch.setattr(trainer, "load_retriever", lambda *a, **k: pytest.fail("a model was loaded"))
    argv = train_argv(train_setup, tmp_path, "--plan", "true", "--list_size", "8", "--negatives_top_n", "3",
                      "--lr_scheduler", "linear", "--warmup_ratio", "0.1", "--epochs", "10", "--eval_split", "none")
    plan = run_training(*parse_arguments(argv))["plan"]
    assert plan == json.loads((tmp_path / "plan.json").read_text())
    assert (plan["processes"], plan["global_batch"], plan["steps_per_epoch"], plan["total_steps"]) == (1, 4, 3, 30)
    assert plan["learning_rates"]["0%"]["retriever"] == 0.0 and plan["learning_rates"]["10%"]["retriever"] == 2e-5
    assert plan["learning_rates"]["100%"]["reranker_head"] == 0.0
    assert plan["lists"] == {"size": 8, "mean": 4.0, "min": 4, "max": 4, "padding": 0.5}
    assert plan["tokens_per_batch_per_process_at_most"] == {"retriever": 4 * (64 + 8 * 32), "reranker": 4 * 8 * 48}
    assert plan["memory_per_process"]["retriever_parameters"] > 0 and plan["precision"]["scores_and_losses"] == "float32"
    assert any("lists hold 4 passages on average" in w for w in plan["warnings"])
    assert any("50.0% of each step's list slots are padding" in w for w in plan["warnings"])
    assert not (tmp_path / "retriever").exists() and not (tmp_path / "checkpoints").exists()


def test_every_run_writes_its_plan_before_step_1(train_setup, tmp_path):
    from modeling_rq2.training.chain import run_training
    from modeling_rq2.training.config_files import parse_arguments

    from conftest import train_argv

    run_training(*parse_arguments(train_argv(train_setup, tmp_path, "--max_steps", "1", "--eval_split", "none")))
    import json

    plan = json.loads((tmp_path / "plan.json").read_text())
    assert plan["total_steps"] == 1 and any("--max_steps ends the run after 1 of its 3 steps" in w for w in plan["warnings"])


def test_models_saved_from_the_joint_state_dict_are_the_models_own(retriever, reranker, tmp_path):
    """finish() saves each model from the joint module's state dict (what FSDP / ZeRO-3 gather): the files hold
    exactly what save_pretrained of the model itself writes."""
    from safetensors.torch import load_file

    from modeling_rq2.training.checkpoints import save_model
    from modeling_rq2.training.joint import JointModel
    from modeling_rq2.training.trainer import _part

    state = JointModel(retriever, reranker).state_dict()
    for name, model in (("retriever", retriever), ("reranker", reranker)):
        save_model(model, tmp_path / f"{name}-own")
        save_model(model, tmp_path / f"{name}-joint", _part(state, f"{name}.", model))
        own, joint = (load_file(tmp_path / f"{name}-{k}" / "model.safetensors") for k in ("own", "joint"))
        assert own.keys() == joint.keys() and all(torch.equal(own[k], joint[k]) for k in own)


def test_the_plans_learning_rates_have_every_point_on_short_runs():
    from modeling_rq2.training.arguments import RunConfig
    from modeling_rq2.training.plan import learning_rates

    config = RunConfig.from_dict({"format_version": 1, "training": {"lr_scheduler": "linear", "warmup_ratio": 0.0}})
    for steps in (1, 3, 5):
        trace = learning_rates(config, steps)
        assert list(trace) == ["0%", "10%", "50%", "90%", "100%"] and trace["100%"]["retriever"] == 0.0


def test_a_compiled_joint_modules_weights_are_saved_whole(retriever, reranker):
    """torch.compile prefixes the gathered state dict with ``_orig_mod.``; each model still gets all its weights,
    and a part that lacks some is refused rather than saved empty."""
    from modeling_rq2.training.joint import JointModel
    from modeling_rq2.training.trainer import _part

    state = {f"_orig_mod.{k}": v for k, v in JointModel(retriever, reranker).state_dict().items()}
    assert set(_part(state, "retriever.", retriever)) == set(retriever.state_dict())
    with pytest.raises(RuntimeError, match="do not match the model's"):
        _part({k: v for k, v in state.items() if "query_encoder.embeddings" not in k}, "retriever.", retriever)


TITLED = [{"title": "Scurvy", "text": "scurvy is caused by low vitamin c"}, "the sun is a star",
          {"title": "  ", "text": "paris is in france"}, {"title": "Sun", "text": "a star"}]


def test_the_official_input_format_reads_title_and_text_as_rocketqas_code_does(tiny_tokenizer):
    """``input_format official``: a titled passage is ``[CLS] title [SEP] text [SEP]`` with the text as segment B
    (RocketQA's reader), the re-ranker's pair ``[CLS] query [SEP] title text [SEP]``; untitled passages are their
    text alone, in input order within a mixed batch; ``joined`` (the default) is unchanged."""
    from conftest import tiny_reranker

    retriever = tiny_retriever(tiny_tokenizer, input_format="official")
    tokens = retriever.tokenize_passages(TITLED)
    for row, passage in enumerate(TITLED):
        title, text = ("", passage) if isinstance(passage, str) else (passage["title"].strip(), passage["text"])
        expected = tiny_tokenizer(title, text) if title else tiny_tokenizer(text)
        length = len(expected["input_ids"])
        assert tokens["input_ids"][row, :length].tolist() == expected["input_ids"]
        assert tokens["token_type_ids"][row, :length].tolist() == expected["token_type_ids"]
        assert tokens["attention_mask"][row].sum() == length
    assert tokens["token_type_ids"][0].max() == 1 and tokens["token_type_ids"][1].max() == 0
    joined = tiny_retriever(tiny_tokenizer).tokenize_passages(TITLED[:1])
    assert joined["input_ids"][0].tolist() == tiny_tokenizer("Scurvy [SEP] scurvy is caused by low vitamin c")["input_ids"]

    reranker = tiny_reranker(tiny_tokenizer, input_format="official")
    pairs = reranker.tokenize_pairs([("what causes it", TITLED[0])])
    assert pairs["input_ids"][0].tolist() == tiny_tokenizer("what causes it", "Scurvy scurvy is caused by low vitamin c")["input_ids"]
    assert tiny_reranker(tiny_tokenizer).tokenize_pairs([("q", TITLED[0])])["input_ids"][0].tolist() == (
        tiny_tokenizer("q", "Scurvy [SEP] scurvy is caused by low vitamin c")["input_ids"]
    )
    with pytest.raises(ValueError, match="input_format must be one of"):
        tiny_retriever(tiny_tokenizer, input_format="paddle")


def test_a_run_with_the_official_input_format_saves_it_and_its_cards_say_so(train_setup, tmp_path):
    from transformers import AutoConfig

    from modeling_rq2.training.chain import run_training
    from modeling_rq2.training.config_files import parse_arguments

    from conftest import train_argv

    argv = train_argv(train_setup, tmp_path, "--input_format", "official", "--max_steps", "1", "--eval_split", "none")
    run_training(*parse_arguments(argv))
    for role in ("retriever", "reranker"):
        assert AutoConfig.from_pretrained(tmp_path / role).input_format == "official"
    assert "text as segment B (RocketQA code)" in (tmp_path / "retriever" / "README.md").read_text()
    assert "`[CLS] query [SEP] title text [SEP]` (RocketQA code)" in (tmp_path / "reranker" / "README.md").read_text()
    with pytest.raises(ValueError, match="--input_format.*invalid choice: 'paddle'"):
        parse_arguments(train_argv(train_setup, tmp_path, "--input_format", "paddle"))


def test_the_chain_runs_under_two_processes(train_setup, tmp_path):
    """Warm-up, mining on the main process, joint training, all under ``accelerate launch --num_processes 2``: each
    stage ends its trackers only, so the next stage still has its process group (``end_training`` destroyed it,
    and the mining stage failed with "Default process group has not been initialized" on every multi-GPU chain)."""
    import os
    import subprocess
    import sys

    from conftest import train_argv

    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", str(ROOT / "train.py"),
               *train_argv(train_setup, tmp_path, "--augment", "true", "--augment_top_n", "5", "--batch_size", "2",
                           "--augment_warmup", "separate", "--eval_split", "none")]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "true"}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["augmentation"]["queries"] == 12 and metrics["hardware"]["processes"] == 2
    assert (tmp_path / "warmup" / "retriever" / "model.safetensors").is_file()
