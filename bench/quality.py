"""Retrieval quality, ours beside BM25, the zero-shot backbone and sentence-transformers peers, in one run.

    python bench/quality.py                                   # peers + ours + ours_augmented, SciFact train -> test
    python bench/quality.py --systems all --seeds 42 43 44         # + ablations, 3 seeds
    python bench/quality.py --systems all --seeds 42 43 --cached_only   # the report of what has run, starting nothing
    python bench/quality.py --systems bm25 zeroshot st_biencoder st_crossencoder ours --max_train_queries 16 \
        --max_steps 2 --eval_queries 10 --corpus_limit 300 --threads 1 --output /tmp/q_smoke   # smoke: ~6 min, 1 busy core

Systems: ``bm25`` (bm25s); ``zeroshot`` (the backbone untrained); ``st_biencoder`` (SentenceTransformer +
MultipleNegativesRankingLoss on (anchor, positive, negative_1..3) rows, batch 16, grid ``--st_lrs`` x ``--st_epochs``);
``st_crossencoder`` (CrossEncoder, BCE with pos_weight 3 or ListNet, 8 queries a step, grid ``--ce_lrs`` x
``--ce_epochs``, re-ranking the selected st_biencoder's top ``--rerank_top_k``: pure and z-score fused as ours);
``ours`` (``run_training``, the default recipe: 3 joint epochs); ``ours_1_epoch`` (the peers' budget);
``ours_augmented`` (the chain, 1 + 1 epochs: ``--augment true --augment_top_n 30``; its warm-up stage is the
``ours_1_epoch`` job's models when that job ran with the same settings and seed; ``ours`` is its control: about as
many optimizer steps, no augmentation); the ablations of ``FLAGS`` (``--systems ablations``), each one change to
``ours_1_epoch``.

Every system starts from the same backbone (the offline all-MiniLM-L6-v2) and trains on the same lists (each
training query, one positive and BM25 negatives from the top 50; ``build_instances`` + ``ListwiseDataset``, epoch 0)
with our lengths (query 64, passage 128 in training, 256 at evaluation, pairs 128). All are scored by
``modeling_rq2``'s own evaluation (exact search, top 100, trec_eval definitions). The peers' grid points are selected
on the evaluation split itself (optimistic for the peers); with several ``--seeds``, our systems and the peers'
selected points run once per seed (the grid runs at the first seed) and the report gives mean ± standard deviation.

Each job (system, grid point, seed) runs in a fresh subprocess and writes WORK_DIR/<job>/result.json (its
settings included; model folders and a log beside it). A rerun with the same settings skips completed jobs, so a
killed benchmark resumes where it stopped (our training runs resume from their last checkpoint). A change of
this file's code does not invalidate the cache: delete WORK_DIR/<job> to rerun a job. WORK_DIR defaults to
outputs/bench/<name of --output>. Writes OUTPUT.json and OUTPUT.md (default bench/results/quality). Never run in CI.
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from reporting import write_report  # bench/reporting.py (scripts run as python bench/NAME.py)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
METRICS = ("ndcg@10", "mrr@10", "recall@10", "recall@100")
HEADERS = ("nDCG@10", "MRR@10", "R@10", "R@100")
PEERS = ("bm25", "zeroshot", "st_biencoder", "st_crossencoder")
OURS = ("ours", "ours_1_epoch", "ours_augmented")
ONE_EPOCH = ["--epochs", "1"]
AUGMENTED = [*ONE_EPOCH, "--augment", "true", "--augment_top_n", "30"]  # 1 warm-up epoch, 1 joint epoch of 2x the lists
FLAGS = {  # ours is the default recipe; the ablations change one thing of ours_1_epoch (their baseline, 3x cheaper)
    "ours": [],
    "ours_1_epoch": ONE_EPOCH,
    "ours_augmented": AUGMENTED,
    "static": [*ONE_EPOCH, "--static", "true"],
    "direction_reranker_to_retriever": [*ONE_EPOCH, "--direction", "reranker_to_retriever"],
    "no_reranker_kl_gradient": [*ONE_EPOCH, "--reranker_kl_gradient", "false"],
    "paper_loss": [*ONE_EPOCH, "--retriever_supervised_weight", "0", "--in_batch_negatives", "false", "--kl_warmup_ratio", "0"],
    "list_size_8": [*ONE_EPOCH, "--list_size", "8"],
    "list_size_16": [*ONE_EPOCH, "--list_size", "16"],
    "undenoised": [*AUGMENTED, "--instance_mix", "undenoised"],
}
BASELINE = "ours_1_epoch"  # of every ablation but those that change the chain, compared with the chain
BASELINES = {"undenoised": "ours_augmented"}
# static distillation as the paper runs it: the frozen teacher is a trained re-ranker (a cold one teaches nothing),
# here the one ``ours_1_epoch`` trained at the same seed; a fresh retriever learns from it for one epoch
TEACHERS = {"static": BASELINE}
ABLATIONS = tuple(name for name in FLAGS if name not in OURS)
DESCRIPTIONS = {
    "bm25": "BM25 (bm25s)",
    "zeroshot": "the backbone untrained, as a dense retriever",
    "st_biencoder": "sentence-transformers bi-encoder, MultipleNegativesRankingLoss on the same lists",
    "st_crossencoder": "sentence-transformers CrossEncoder trained alone, re-ranking the bi-encoder's candidates",
    "ours": "our default recipe: joint training, 3 epochs on BM25 lists (about the augmented chain's optimizer steps)",
    "ours_1_epoch": "joint training, 1 epoch (the peers' budget; the baseline of the ablations)",
    "ours_augmented": "the chain: 1 joint epoch, hybrid augmentation (top 30, denoised), 1 joint epoch on the 2x larger lists",
    "static": "a fresh retriever distilled for 1 epoch from a frozen teacher, ours_1_epoch's trained re-ranker (static distillation; the teacher's training is not in train s)",
    "direction_reranker_to_retriever": "ours_1_epoch with the KL divergence in the other direction",
    "no_reranker_kl_gradient": "ours_1_epoch without the KL gradient into the re-ranker",
    "paper_loss": "ours_1_epoch with the paper's loss alone (no retriever supervision, no in-batch negatives, no KL warm-up)",
    "list_size_8": "ours_1_epoch with lists of 8 passages (default 4)",
    "list_size_16": "ours_1_epoch with lists of 16 passages",
    "undenoised": "ours_augmented with undenoised instances only (no re-ranker pass; half its second stage's lists and steps)",
}
NOTE = (
    "train s: wall seconds of training (for ours everything but the final evaluation, so warm-up and augmentation too); "
    "eval s: corpus encoding, search and re-ranking. st_crossencoder re-ranks the selected st_biencoder's candidates: its "
    "train s counts the cross-encoder alone (the comparisons add the bi-encoder's)."
)
GOALS = {"retriever": 0.714, "retrieve-then-rerank": 0.734}  # nDCG@10 on the full SciFact test split


def _defaults() -> dict:
    """Our training recipe's defaults, which the peers copy (lengths, list size, BM25 depth, batch)."""
    from modeling_rq2.training import (
        DataArguments,
        JointTrainingArguments,
        ModelArguments,
    )

    model, data, joint = ModelArguments(), DataArguments(), JointTrainingArguments()
    return {
        "query_max_length": model.query_max_length, "passage_max_length": model.passage_max_length,
        "train_passage_max_length": model.train_passage_max_length, "reranker_max_length": model.reranker_max_length,
        "list_size": data.list_size, "negatives_top_n": data.negatives_top_n, "batch_size": joint.batch_size,
    }


# ---------------------------------------------------------------- data


def _first_queries(data, count: int | None, positive_only: bool = False):
    """``data`` restricted to its first ``count`` queries (all if None), qrels too; ``positive_only``: among
    the queries with a positive passage (the ones ``build_instances`` keeps)."""
    from dataclasses import replace

    keep = [i for i, q in enumerate(data.queries["_id"]) if not positive_only or max(data.qrels[q].values()) >= 1]
    queries = data.queries.select(keep[:count])
    return replace(data, queries=queries, qrels={q: data.qrels[q] for q in queries["_id"]})


def _write_jsonl(path: Path, rows) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def _write_beir(folder: Path, splits: dict, corpus) -> None:
    """A BEIR folder: corpus.jsonl, queries.jsonl (every split's queries) and qrels/<split>.tsv."""
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    _write_jsonl(folder / "corpus.jsonl", corpus)
    queries = {q: t for data in splits.values() for q, t in zip(data.queries["_id"], data.queries["text"])}
    _write_jsonl(folder / "queries.jsonl", ({"_id": q, "text": t} for q, t in queries.items()))
    for split, data in splits.items():
        lines = [f"{q}\t{d}\t{g}" for q in data.queries["_id"] for d, g in data.qrels[q].items()]
        (folder / "qrels" / f"{split}.tsv").write_text("query-id\tcorpus-id\tscore\n" + "\n".join(lines) + "\n", encoding="utf-8")


def prepare_data(args: argparse.Namespace, work: Path) -> str:
    """The data every job reads: ``--data`` itself, or (smoke flags) a smaller BEIR copy written under ``work``.

    ``--eval_queries N`` keeps the first N evaluation queries; ``--corpus_limit N`` keeps the judged passages of
    the kept evaluation and training queries (the first ``--max_train_queries`` with a positive) plus the first
    N other passages.
    """
    if not (args.eval_queries or args.corpus_limit):
        return args.data
    from modeling_rq2.data import DataFormatError, load_beir

    evaluation = load_beir(args.data, args.eval_split)
    splits = {args.eval_split: _first_queries(evaluation, args.eval_queries)}
    try:  # whichever systems run, so that every job of this work folder sees the same corpus
        splits[args.train_split] = _first_queries(load_beir(args.data, args.train_split), args.max_train_queries, True)
    except DataFormatError:  # no training split: only bm25 and zeroshot can run
        pass
    judged = {d for data in splits.values() for docs in data.qrels.values() for d in docs}
    ids = evaluation.corpus["_id"]
    others = set([d for d in ids if d not in judged][: args.corpus_limit]) if args.corpus_limit else set(ids)
    corpus = (row for row in evaluation.corpus if row["_id"] in judged or row["_id"] in others)
    folder = work / "data" / Path(args.data).name  # the folder name is the dataset's name in reports
    _write_beir(folder, splits, corpus)
    return str(folder)


def _load(config: dict, split_key: str):
    from modeling_rq2.data import load_beir

    return load_beir(config["data"]["path"], config["data"][split_key])


# ---------------------------------------------------------------- jobs (each runs in a subprocess)


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _score(data, ranked: list) -> dict[str, float]:
    """Our metrics of ranked (doc id, score) lists, one per query of ``data``."""
    from modeling_rq2.evaluation import evaluate_run
    from modeling_rq2.pipeline import to_run

    return evaluate_run(to_run(data.queries["_id"], ranked), data.qrels, METRICS)[0]


def _dense(config: dict, model: str, index_folder: Path | None = None) -> tuple[dict[str, float], float]:
    """A retriever (backbone or sentence-transformers folder) evaluated by ours: (metrics, seconds)."""
    from modeling_rq2.backbones import load_retriever
    from modeling_rq2.evaluate import evaluate_retrieval
    from modeling_rq2.pipeline import RetrieveThenRerank

    started = time.perf_counter()
    data, lengths = _load(config, "eval_split"), config["lengths"]
    retriever = load_retriever(model, query_max_length=lengths["query_max_length"], passage_max_length=lengths["passage_max_length"])
    retriever.to(_device()).eval()
    pipe = RetrieveThenRerank.from_pretrained(retriever, None, data, index_folder, batch_size=config["batch_size"])
    means, _, _ = evaluate_retrieval(retriever, data, None, config["top_k"], 0, METRICS, config["batch_size"], pipe=pipe)
    return means["retriever"], time.perf_counter() - started


def job_bm25(config: dict, folder: Path) -> dict:
    """BM25 (bm25s) on the evaluation split."""
    from modeling_rq2.evaluate import bm25_baseline

    started = time.perf_counter()
    means = bm25_baseline(_load(config, "eval_split"), METRICS, config["top_k"])
    return {"rows": {"BM25": means}, "train_seconds": 0.0, "eval_seconds": time.perf_counter() - started}


def job_zeroshot(config: dict, folder: Path) -> dict:
    """The backbone as a dense retriever, untrained."""
    means, seconds = _dense(config, "default")
    return {"rows": {"retriever": means}, "train_seconds": 0.0, "eval_seconds": seconds}


def training_lists(config: dict) -> tuple[list[str], list[list[str]]]:
    """Queries and their lists of formatted passages (positive first), exactly our epoch-0 lists."""
    from modeling_rq2.instances import ListwiseDataset, bm25_negatives, build_instances
    from modeling_rq2.modeling_rq2 import format_passage

    train = _load(config, "train_split")
    instances = build_instances(train, bm25_negatives(train, config["lengths"]["negatives_top_n"]))
    if config["max_train_queries"]:
        instances = instances.select(range(min(config["max_train_queries"], len(instances))))
    passages = dict(zip(train.corpus["_id"], train.passages()))
    lists = ListwiseDataset(instances, passages, config["lengths"]["list_size"], seed=config["seed"])
    texts = [[format_passage(passages[d], "[SEP]") for d in lists.sample(i)] for i in range(len(lists))]
    return list(instances["query"]), texts


def _training_arguments(cls, config: dict, folder: Path, batch_size: int, **extra):
    """Trainer arguments shared by both sentence-transformers peers (no checkpoints, no trackers)."""
    return cls(
        output_dir=str(folder / "trainer"), num_train_epochs=config["epochs"], max_steps=config["max_steps"] or -1,
        per_device_train_batch_size=batch_size, learning_rate=config["lr"], warmup_steps=0.1, weight_decay=0.01,
        seed=config["seed"], data_seed=config["seed"], save_strategy="no", report_to="none", logging_steps=10,
        disable_tqdm=True, **extra,
    )


def job_st_biencoder(config: dict, folder: Path) -> dict:
    """SentenceTransformer + MultipleNegativesRankingLoss on (anchor, positive, negative_1..k) rows of our lists."""
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.base.sampler import BatchSamplers
    from sentence_transformers.sentence_transformer.losses import (
        MultipleNegativesRankingLoss,
    )

    from modeling_rq2.backbones import default_backbone_path

    queries, texts = training_lists(config)
    k = config["lengths"]["list_size"] - 1
    full = [(q, t) for q, t in zip(queries, texts) if len(t) == k + 1]  # MNRL needs every column filled
    columns = {"anchor": [q for q, _ in full], "positive": [t[0] for _, t in full]}
    columns.update({f"negative_{j}": [t[j] for _, t in full] for j in range(1, k + 1)})
    model = SentenceTransformer(default_backbone_path(), device=_device())
    model.max_seq_length = config["lengths"]["train_passage_max_length"]  # one length for all columns in ST
    long_queries = sum(len(ids) > config["lengths"]["query_max_length"] for ids in model.tokenizer(queries)["input_ids"])
    args = _training_arguments(SentenceTransformerTrainingArguments, config, folder, config["batch_size_train"],
                               batch_sampler=BatchSamplers.NO_DUPLICATES)
    started = time.perf_counter()
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=Dataset.from_dict(columns),
                                         loss=MultipleNegativesRankingLoss(model))
    trainer.train()
    # ST keeps max_seq_length in the saved tokenizer (model_max_length), which caps our encoder's lengths:
    # save the evaluation length, as our retriever saves its own
    model.max_seq_length = config["lengths"]["passage_max_length"]
    model.save(str(folder / "model"))
    train_seconds = time.perf_counter() - started
    means, eval_seconds = _dense(config, str(folder / "model"), folder / "index")
    details = {"rows": len(full), "skipped_short_lists": len(queries) - len(full), "steps": trainer.state.global_step,
               "train_max_seq_length": config["lengths"]["train_passage_max_length"], "saved_max_seq_length": model.max_seq_length,
               "queries_over_query_max_length": long_queries}
    return {"rows": {"retriever": means}, "train_seconds": train_seconds, "eval_seconds": eval_seconds, "details": details}


def _cross_dataset(config: dict):
    """BCE: (query, passage, label) rows, 1 positive + k negatives per query; ListNet: (query, [passages], [labels])."""
    from datasets import Dataset

    queries, texts = training_lists(config)
    labels = [[float(j == 0) for j in range(len(t))] for t in texts]
    if config["loss"] == "listnet":
        return Dataset.from_dict({"query": queries, "docs": texts, "labels": labels})
    rows = [(q, p, y) for q, t, ys in zip(queries, texts, labels) for p, y in zip(t, ys)]
    return Dataset.from_dict({"query": [r[0] for r in rows], "passage": [r[1] for r in rows], "label": [r[2] for r in rows]})


def _rerank_rows(config: dict, folder: Path, model) -> tuple[dict[str, dict[str, float]], float]:
    """The CrossEncoder re-ranks the head of the st_biencoder's candidates (pure, and fused as ours)."""
    import torch

    from modeling_rq2.backbones import load_retriever
    from modeling_rq2.modeling_rq2 import format_passage
    from modeling_rq2.pipeline import RetrieveThenRerank

    started = time.perf_counter()
    data, lengths, k, fusion = _load(config, "eval_split"), config["lengths"], config["rerank_top_k"], config["fusion"]
    biencoder = folder.parent / config["biencoder"]["folder"]
    retriever = load_retriever(biencoder / "model", query_max_length=lengths["query_max_length"],
                               passage_max_length=lengths["passage_max_length"]).to(_device()).eval()
    pipe = RetrieveThenRerank.from_pretrained(retriever, None, data, biencoder / "index", batch_size=config["batch_size"])
    queries = data.queries["text"]
    candidates = pipe.retrieve(queries, config["top_k"])
    pairs = [(q, format_passage(pipe.passages[d], "[SEP]")) for q, hits in zip(queries, candidates) for d, _ in hits[:k]]
    scores = iter(model.predict(pairs, batch_size=config["batch_size"], activation_fn=torch.nn.Identity(),
                                show_progress_bar=False).tolist())
    logits = [[next(scores) for _ in hits[:k]] for hits in candidates]
    rows = {f"retriever + reranker@{k}": _score(data, pipe.rerank(queries, candidates, k, 0.0, logits))}
    if fusion > 0:
        rows[f"retriever + reranker@{k}, fusion {fusion:g}"] = _score(data, pipe.rerank(queries, candidates, k, fusion, logits))
    return rows, time.perf_counter() - started


def job_st_crossencoder(config: dict, folder: Path) -> dict:
    """CrossEncoder (BCE or ListNet) on our lists, re-ranking the selected st_biencoder's top ``rerank_top_k``."""
    import torch
    from sentence_transformers import (
        CrossEncoder,
        CrossEncoderTrainer,
        CrossEncoderTrainingArguments,
    )
    from sentence_transformers.cross_encoder.losses import (
        BinaryCrossEntropyLoss,
        ListNetLoss,
    )

    from modeling_rq2.backbones import default_backbone_path

    lengths = config["lengths"]
    model = CrossEncoder(default_backbone_path(), num_labels=1, max_length=lengths["reranker_max_length"], device=_device())
    negatives = lengths["list_size"] - 1
    listnet = config["loss"] == "listnet"
    loss = ListNetLoss(model) if listnet else BinaryCrossEntropyLoss(model, pos_weight=torch.tensor(float(negatives)))
    batch = config["batch_queries"] * (1 if listnet else lengths["list_size"])  # the same queries per step for both
    dataset = _cross_dataset(config)
    args = _training_arguments(CrossEncoderTrainingArguments, config, folder, batch)
    started = time.perf_counter()
    trainer = CrossEncoderTrainer(model=model, args=args, train_dataset=dataset, loss=loss)
    trainer.train()
    model.save(str(folder / "model"))
    train_seconds = time.perf_counter() - started
    rows, eval_seconds = _rerank_rows(config, folder, model)
    return {"rows": rows, "train_seconds": train_seconds, "eval_seconds": eval_seconds,
            "details": {"rows": len(dataset), "steps": trainer.state.global_step, "batch_size": batch,
                        "pos_weight": None if listnet else negatives}}


def job_rq2(config: dict, folder: Path) -> dict:
    """Our joint training (``run_training``, the chain with --augment) with the system's flags."""
    from modeling_rq2.chain import run_training
    from modeling_rq2.training import parse_arguments

    data = config["data"]
    argv = [
        "--output_dir", str(folder / "run"), "--report_to", "none", "--data", data["path"],
        "--train_split", data["train_split"], "--eval_split", data["eval_split"], "--seed", str(config["seed"]),
        "--eval_top_k", str(config["top_k"]), "--rerank_top_k", str(config["rerank_top_k"]),
        "--fusion", str(config["fusion"]), "--eval_batch_size", str(config["batch_size"]),
        "--resume_from_checkpoint", "latest",
    ]
    argv += [a for flag, value in (("--max_train_queries", config["max_train_queries"]), ("--max_steps", config["max_steps"]))
             if value for a in (flag, str(value))]
    if config.get("teacher"):  # static distillation: another job's trained re-ranker, frozen
        teacher = folder.parent / config["teacher"] / "run" / "reranker"
        if not (teacher / "config.json").is_file():
            raise FileNotFoundError(f"{teacher}: the teacher job {config['teacher']} has not run; run it first")
        argv += ["--reranker", str(teacher)]
    reused = _reuse_warmup(config, folder)
    started = time.perf_counter()
    metrics = run_training(*parse_arguments(argv + config["flags"]))
    seconds = time.perf_counter() - started + (reused["train_seconds"] if reused else 0.0)
    for checkpoints in sorted((folder / "run").rglob("checkpoints")):  # done: the saved models are what counts
        shutil.rmtree(checkpoints)
    return {"rows": metrics["eval"]["results"], "train_seconds": seconds - metrics["eval"]["seconds"],
            "eval_seconds": metrics["eval"]["seconds"], "details": {"argv": argv + config["flags"], "train": metrics["train"],
                        "warmup_reused_from": reused and reused["job"]}}


def _reuse_warmup(config: dict, folder: Path) -> dict | None:
    """For the chain, the finished ``ours_1_epoch`` job of the same settings and seed as its warm-up stage, if any.

    The default warm-up (``augment_warmup joint``, 1 epoch) is exactly ``ours_1_epoch`` trained without evaluation, so its
    models are hard-linked into RUN/warmup instead of trained again; the chain skips the stage and the job's train
    seconds add the ``ours`` job's. Returns that job's name and train seconds, or None (the chain trains the warm-up).
    """
    if "--augment" not in config["flags"] or "--augment_warmup" in config["flags"] or "--augment_warmup_epochs" in config["flags"]:
        return None
    job = f"{BASELINE}-seed{config['seed']}"
    source, warm = folder.parent / job, folder / "run" / "warmup"
    result = source / "result.json"
    if not result.is_file() or not (source / "run" / "metrics.json").is_file():
        return None
    done = json.loads(result.read_text(encoding="utf-8"))
    if done["config"] != {**config, "system": BASELINE, "flags": FLAGS[BASELINE]}:
        return None
    if not (warm / "metrics.json").is_file():
        shutil.rmtree(warm, ignore_errors=True)
        staging = warm.with_name("warmup.partial")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        for name in ("retriever", "reranker"):
            shutil.copytree(source / "run" / name, staging / name, copy_function=os.link)
        shutil.copy2(source / "run" / "metrics.json", staging / "metrics.json")
        staging.replace(warm)
    print(f"warm-up: the models of {job} (the same recipe and seed), not trained again", flush=True)
    return {"job": job, "train_seconds": done["train_seconds"]}


def _family(system: str) -> str:
    return system if system in PEERS else "rq2"


def run_child(folder: Path, threads: int) -> None:
    """Inside the subprocess: run the job described by ``folder/job.json`` and write ``result.json``."""
    import torch
    from transformers import set_seed

    torch.set_num_threads(threads)
    config = json.loads((folder / "job.json").read_text(encoding="utf-8"))
    set_seed(config.get("seed", 0))  # the peers' fresh heads are drawn before their trainers seed anything
    result = globals()[f"job_{_family(config['system'])}"](config, folder)
    result["config"] = config
    partial = folder / "result.json.partial"
    partial.write_text(json.dumps(result, indent=2), encoding="utf-8")
    partial.replace(folder / "result.json")


# ---------------------------------------------------------------- orchestration


def run_job(key: str, config: dict, work: Path, args: argparse.Namespace) -> dict | None:
    """A job's cached result when its settings match, else run it in a subprocess (log in WORK_DIR/<job>/log.txt);
    None with ``--cached_only`` when it has not run."""
    folder, config = work / key, json.loads(json.dumps(config))  # as it reads back from JSON
    cached = folder / "result.json"
    if cached.is_file() and json.loads(cached.read_text(encoding="utf-8"))["config"] == config:
        print(f"{key}: cached", flush=True)
        return json.loads(cached.read_text(encoding="utf-8"))
    if args.cached_only:
        print(f"{key}: not run (--cached_only)", flush=True)
        return None
    spec = folder / "job.json"
    resumable = _family(config["system"]) == "rq2" and spec.is_file() and json.loads(spec.read_text(encoding="utf-8")) == config
    if folder.exists() and not resumable:  # stale models, indexes or checkpoints of other settings
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    spec.write_text(json.dumps(config, indent=2), encoding="utf-8")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    started = time.perf_counter()
    with open(folder / "log.txt", "a", encoding="utf-8") as log:
        proc = subprocess.run([sys.executable, __file__, "--job", str(folder), "--threads", str(args.threads)],
                              stdout=log, stderr=subprocess.STDOUT, env=env, check=False)
    if proc.returncode != 0:
        tail = (folder / "log.txt").read_text(encoding="utf-8")[-3000:]
        raise RuntimeError(f"job {key} failed (exit {proc.returncode}); end of {folder / 'log.txt'}:\n{tail}")
    result = json.loads(cached.read_text(encoding="utf-8"))
    print(f"{key}: done in {time.perf_counter() - started:.0f} s", flush=True)
    return result


def _common(args: argparse.Namespace, data_path: str) -> dict:
    """Settings every job shares (and whose change invalidates its cache)."""
    data = {"source": args.data, "path": data_path, "train_split": args.train_split, "eval_split": args.eval_split,
            "eval_queries": args.eval_queries, "corpus_limit": args.corpus_limit,
            "max_train_queries": args.max_train_queries if data_path != args.data else None}
    return {"data": data, "lengths": _defaults(), "top_k": args.top_k, "batch_size": args.batch_size}


def _training(args: argparse.Namespace, common: dict, system: str, seed: int) -> dict:
    """Settings of a trained system's job: the common ones, the seed, the budgets and the re-ranking evaluation."""
    return {**common, "system": system, "seed": seed, "max_train_queries": args.max_train_queries,
            "max_steps": args.max_steps, "rerank_top_k": args.rerank_top_k, "fusion": args.fusion}


def _best(runs: dict[str, dict], row: str) -> str:
    """The grid point with the highest nDCG@10 of ``row`` (selected on the evaluation split)."""
    return max(runs, key=lambda key: runs[key]["rows"][row]["ndcg@10"])


def run_grid(args: argparse.Namespace, points: Callable[[int], dict[str, dict]], row: str, work: Path) -> dict | None:
    """Every grid point (``points(seed)``: {name: job settings}) at the first seed; the best one at the other seeds."""
    first = args.seeds[0]
    grid = _found({f"{key}-seed{first}": run_job(f"{key}-seed{first}", config, work, args) for key, config in points(first).items()})
    if not grid:
        return None
    best = _best(grid, row).removesuffix(f"-seed{first}")
    seeds = {first: grid[f"{best}-seed{first}"]}
    for seed in args.seeds[1:]:
        config = points(seed).get(best)  # none when --cached_only lacks what this point depends on
        if config is not None:
            seeds[seed] = run_job(f"{best}-seed{seed}", config, work, args)
    return {"grid": grid, "best": best, "selected_on": f"{args.eval_split} (the evaluation split itself)", "seeds": _found(seeds)}


def _found(results: dict) -> dict:
    """The jobs that have results (``--cached_only`` leaves the others out)."""
    return {key: result for key, result in results.items() if result is not None}


def st_points(args: argparse.Namespace, common: dict, seed: int) -> dict[str, dict]:
    """The bi-encoder grid: learning rates x epochs."""
    return {f"st_biencoder-lr{lr:g}-ep{epochs}": {**_training(args, common, "st_biencoder", seed), "lr": lr, "epochs": epochs,
                                                  "batch_size_train": args.st_batch_size}
            for lr in args.st_lrs for epochs in args.st_epochs}


def ce_points(args: argparse.Namespace, common: dict, biencoder: dict, seed: int) -> dict[str, dict]:
    """The cross-encoder grid on top of the selected bi-encoder of the same seed (its settings are part of the job's)."""
    if seed not in biencoder["seeds"]:  # --cached_only and the bi-encoder never ran at this seed
        return {}
    folder = f"{biencoder['best']}-seed{seed}"
    source = {"folder": folder, "config": biencoder["seeds"][seed]["config"]}
    return {f"st_crossencoder-{args.ce_loss}-lr{lr:g}-ep{epochs}": {
        **_training(args, common, "st_crossencoder", seed), "lr": lr, "epochs": epochs, "loss": args.ce_loss,
        "batch_queries": args.ce_batch_queries, "biencoder": source}
        for lr in args.ce_lrs for epochs in args.ce_epochs}


def run_systems(args: argparse.Namespace, work: Path, data_path: str) -> dict[str, dict]:
    """Every selected system's runs, in a fixed order (peers first: the cross-encoder needs the bi-encoder)."""
    common, systems = _common(args, data_path), {}
    for name in ("bm25", "zeroshot"):
        if name in args.systems:
            systems[name] = {"seeds": _found({None: run_job(name, {**common, "system": name}, work, args)})}
    if {"st_biencoder", "st_crossencoder"} & set(args.systems):
        systems["st_biencoder"] = run_grid(args, lambda seed: st_points(args, common, seed), "retriever", work)
    if "st_crossencoder" in args.systems and systems["st_biencoder"]:
        biencoder, rerank = systems["st_biencoder"], f"retriever + reranker@{args.rerank_top_k}"
        systems["st_crossencoder"] = run_grid(args, lambda seed: ce_points(args, common, biencoder, seed), rerank, work)
    for name in (s for s in FLAGS if s in args.systems):
        jobs = {seed: {**_training(args, common, name, seed), "flags": FLAGS[name],
                       **({"teacher": f"{TEACHERS[name]}-seed{seed}"} if name in TEACHERS else {})} for seed in args.seeds}
        systems[name] = {"seeds": _found({seed: run_job(f"{name}-seed{seed}", job, work, args) for seed, job in jobs.items()})}
    return {name: system for name, system in systems.items() if system and system["seeds"]}


# ---------------------------------------------------------------- report


def _spread(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def summarise(system: dict) -> dict:
    """Mean and standard deviation across seeds of every row's metrics and of the wall times."""
    runs = list(system["seeds"].values())
    rows = {row: {m: _spread([r["rows"][row][m] for r in runs]) for m in METRICS} for row in runs[0]["rows"]}
    times = {k: _spread([r[k] for r in runs]) for k in ("train_seconds", "eval_seconds")}
    return {"rows": rows, **times, "seeds": len(runs)}


def _cell(spread: dict[str, float], digits: int = 4) -> str:
    return f"{spread['mean']:.{digits}f}" + (f" ± {spread['std']:.{digits}f}" if spread["std"] else "")


def _table(summaries: dict[str, dict]) -> list[str]:
    lines = ["| system | " + " | ".join(HEADERS) + " | seeds | train s | eval s |", "|---" * (len(HEADERS) + 4) + "|"]
    for name, s in summaries.items():
        for row, values in s["rows"].items():
            label = name if row in ("BM25", "retriever") and name not in (*OURS, *ABLATIONS) else f"{name}: {row}"
            cells = [_cell(values[m]) for m in METRICS] + [str(s["seeds"]), _cell(s["train_seconds"], 0), _cell(s["eval_seconds"], 0)]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def table_block(summaries: dict[str, dict]) -> list[str]:
    """The table and one line per system saying what it is (the block model cards embed)."""
    legend = [f"- {name}: {DESCRIPTIONS[name]}" for name in summaries if name in DESCRIPTIONS]
    return [*_table(summaries), "", *legend]


def _entries(summaries: dict[str, dict], systems: tuple[str, ...], row_filter) -> dict[str, dict]:
    """{"system: row": metric spreads} of the rows that pass ``row_filter``."""
    return {f"{s}: {row}": values for s in systems if s in summaries
            for row, values in summaries[s]["rows"].items() if row_filter(row)}


def _train_seconds(summaries: dict[str, dict], system: str) -> float:
    """Mean training seconds of a system; a re-ranking peer counts its bi-encoder's too."""
    extra = summaries["st_biencoder"]["train_seconds"]["mean"] if system == "st_crossencoder" else 0.0
    return summaries[system]["train_seconds"]["mean"] + extra


def _versus(summaries: dict[str, dict], label: str, name: str, row: str, peers: dict[str, dict]) -> dict | None:
    """Ours (``name``'s ``row``) against the best of ``peers`` (by nDCG@10): values, deltas and ratios."""
    ours = summaries[name]["rows"].get(row)
    if ours is None or not peers:
        return None
    peer = max(peers, key=lambda k: peers[k]["ndcg@10"]["mean"])
    values = {m: {"ours": ours[m]["mean"], "peer": peers[peer][m]["mean"], "delta": ours[m]["mean"] - peers[peer][m]["mean"],
                  "ratio": ours[m]["mean"] / peers[peer][m]["mean"] if peers[peer][m]["mean"] else None} for m in METRICS}
    seconds = {"ours": _train_seconds(summaries, name), "peer": _train_seconds(summaries, peer.split(": ")[0])}
    return {"comparison": f"{name} {label}", "peer": peer, **values, "train_seconds": seconds}


def comparisons(summaries: dict[str, dict], args: argparse.Namespace) -> list[dict]:
    """Ours (and ours_augmented) against the best peer retriever and the best peer retrieve-then-rerank, like for like."""
    pure = f"retriever + reranker@{args.rerank_top_k}"
    fused = f"{pure}, fusion {args.fusion:g}"
    found = []
    for name in (s for s in OURS if s in summaries):
        for label, row, peer_filter in (
            ("retriever vs best peer retriever", "retriever", lambda r: r in ("BM25", "retriever")),
            ("retrieve-then-rerank vs best peer (pure re-ranking)", pure, lambda r: r == pure),
            (f"retrieve-then-rerank vs best peer (fusion {args.fusion:g})", fused, lambda r: r == fused),
        ):
            found.append(_versus(summaries, label, name, row, _entries(summaries, PEERS, peer_filter)))
    return [c for c in found if c]


def goals(summaries: dict[str, dict], args: argparse.Namespace, full_scifact: bool) -> list[dict]:
    """Our nDCG@10 against the goals (which are set for the full SciFact test split)."""
    found = []
    for name in (s for s in OURS if s in summaries):
        rows = summaries[name]["rows"]
        rerank = max((v["ndcg@10"]["mean"] for r, v in rows.items() if r.startswith("retriever + reranker")), default=None)
        for goal, value in (("retriever", rows["retriever"]["ndcg@10"]["mean"]), ("retrieve-then-rerank", rerank)):
            if value is not None:
                found.append({"system": name, "goal": goal, "target": GOALS[goal], "value": value,
                              "met": value >= GOALS[goal], "applies": full_scifact})
    return found


def _comparison_line(c: dict) -> str:
    parts = [f"{h} {c[m]['ours']:.4f} vs {c[m]['peer']:.4f} ({c[m]['delta']:+.4f}, x{c[m]['ratio']:.3f})"
             for h, m in zip(HEADERS, METRICS) if c[m]["ratio"] is not None]
    seconds = c["train_seconds"]
    return f"- {c['comparison']} ({c['peer']}): " + "; ".join(parts) + f"; train s {seconds['ours']:.0f} vs {seconds['peer']:.0f}"


def _goal_line(g: dict) -> str:
    verdict = ("met" if g["met"] else "missed") if g["applies"] else "n/a: not the full SciFact test with full budgets"
    return f"- {g['system']} {g['goal']} nDCG@10 >= {g['target']}: {g['value']:.4f} ({verdict})"


def _grid_lines(name: str, system: dict) -> list[str]:
    title = f"{name} grid at seed {next(iter(system['seeds']))}, selected on {system['selected_on']}: **{system['best']}**"
    lines = ["", title, "", "| point | " + " | ".join(HEADERS) + " | train s |", "|---" * (len(HEADERS) + 2) + "|"]
    for key, run in system["grid"].items():
        for row, values in run["rows"].items():
            lines.append(f"| {key}: {row} | " + " | ".join(f"{values[m]:.4f}" for m in METRICS) + f" | {run['train_seconds']:.0f} |")
    return lines


def _ablation_baseline(name: str) -> str:
    """The system an ablation changes one thing of."""
    return BASELINES.get(name, BASELINE)


def _ablation_lines(systems: dict[str, dict]) -> list[str]:
    """nDCG@10 of each ablation minus its baseline's at the same seeds (paired: same data order), per row."""
    lines = []
    for name in (a for a in ABLATIONS if a in systems and _ablation_baseline(a) in systems):
        base, runs = systems[_ablation_baseline(name)]["seeds"], systems[name]["seeds"]
        shared = [seed for seed in runs if seed in base]
        if not shared:
            continue
        rows = [row for row in runs[shared[0]]["rows"] if row in base[shared[0]]["rows"]]
        ndcg = {row: [runs[s]["rows"][row]["ndcg@10"] - base[s]["rows"][row]["ndcg@10"] for s in shared] for row in rows}
        deltas = [f"{row} {sum(d) / len(d):+.4f}" for row, d in ndcg.items()]
        lines.append(f"- {name} vs {_ablation_baseline(name)}, seeds {', '.join(shared)}: " + "; ".join(deltas))
    return ["", "Ablations, nDCG@10 minus the system each changes one thing of, at the same seeds:", "", *lines] if lines else []


def markdown(report: dict) -> str:
    """The report: the table of systems, the comparisons, the goals, the peers' grids, the ablations."""
    d = report["data"]
    title = (f"# Retrieval quality: {d['name']} {d['eval_split']} ({d['queries']} queries, {d['corpus']} passages), "
             f"seeds {report['settings']['seeds']}")
    lines = [title, "", *report["table"]]
    if report["comparisons"]:
        lines += ["", "Ours vs the best peer (delta, ratio):", "", *map(_comparison_line, report["comparisons"])]
    if report["goals"]:
        lines += ["", "Goals (full SciFact test):", "", *map(_goal_line, report["goals"])]
    for name in ("st_biencoder", "st_crossencoder"):
        if name in report["systems"]:
            lines += _grid_lines(name, report["systems"][name])
    lines += _ablation_lines(report["systems"])
    lines += ["", NOTE]
    return "\n".join(lines)


def _machine(args: argparse.Namespace) -> dict:
    """Where the benchmark ran: platform, cores, threads, library versions, device."""
    import sentence_transformers
    import torch
    import transformers

    return {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
            "threads": args.threads, "torch": torch.__version__, "transformers": transformers.__version__,
            "sentence_transformers": sentence_transformers.__version__,
            "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"}


def build_report(args: argparse.Namespace, data_path: str, systems: dict[str, dict]) -> dict:
    """Everything: machine, settings, data, every job's result, per-system summaries, comparisons, goals."""
    from modeling_rq2.data import load_beir

    evaluation = load_beir(data_path, args.eval_split)
    full_scifact = (args.data == "scifact" and args.eval_split == "test" and data_path == args.data
                    and not args.max_train_queries and not args.max_steps)
    summaries = {name: summarise(s) for name, s in systems.items()}
    return {
        "machine": _machine(args),
        "settings": {k: v for k, v in vars(args).items() if k not in ("job", "output")},
        "data": {"name": evaluation.name, "path": data_path, "eval_split": args.eval_split,
                 "queries": len(evaluation.queries), "corpus": len(evaluation.corpus)},
        "recipe": _defaults(),
        "systems": {name: {**s, "seeds": {str(k): v for k, v in s["seeds"].items()}} for name, s in systems.items()},
        "summaries": summaries,
        "table": table_block(summaries),
        "comparisons": comparisons(summaries, args),
        "goals": goals(summaries, args, full_scifact),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Flags; ``--systems`` groups expanded into system names in a fixed order."""
    choices = (*PEERS, *FLAGS, "ablations", "all")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--systems", nargs="+", default=[*PEERS, *OURS], choices=choices,
                        help=f"'ablations': every ablation (with its baseline, {BASELINE} or the chain); 'all': everything")
    parser.add_argument("--data", default="scifact", help="BEIR folder, bundled name or Hub dataset")
    parser.add_argument("--train_split", default="train")
    parser.add_argument("--eval_split", default="test")
    parser.add_argument("--seeds", nargs="+", type=int, default=[42])
    parser.add_argument("--top_k", type=int, default=100)
    parser.add_argument("--rerank_top_k", type=int, default=20)
    parser.add_argument("--fusion", type=float, default=0.5)
    parser.add_argument("--batch_size", type=int, default=64, help="evaluation batch size")
    parser.add_argument("--st_lrs", nargs="+", type=float, default=[2e-5, 5e-5])
    parser.add_argument("--st_epochs", nargs="+", type=int, default=[1])
    parser.add_argument("--st_batch_size", type=int, default=16)
    parser.add_argument("--ce_loss", choices=("bce", "listnet"), default="bce")
    parser.add_argument("--ce_lrs", nargs="+", type=float, default=[5e-5])
    parser.add_argument("--ce_epochs", nargs="+", type=int, default=[1])
    parser.add_argument("--ce_batch_queries", type=int, default=_defaults()["batch_size"], help="queries per CrossEncoder step")
    parser.add_argument("--max_train_queries", type=int, help="budget: the first N training lists, every system")
    parser.add_argument("--max_steps", type=int, help="budget: optimizer steps, every trained system")
    parser.add_argument("--eval_queries", type=int, help="smoke: the first N evaluation queries")
    parser.add_argument("--corpus_limit", type=int, help="smoke: judged passages of the kept queries + the first N others")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--work_dir", help="jobs' models and cached results (default outputs/bench/<name of --output>)")
    parser.add_argument("--output", default=str(RESULTS / "quality"), help="writes OUTPUT.json and OUTPUT.md")
    parser.add_argument("--cached_only", action="store_true",
                        help="report the jobs that have run (each system with the seeds it has), start none")
    parser.add_argument("--job", help=argparse.SUPPRESS)  # internal: run one job folder in this process
    args = parser.parse_args(argv)
    groups = {"all": (*PEERS, *FLAGS), "ablations": ABLATIONS}
    expanded = [s for name in args.systems for s in groups.get(name, (name,))]
    expanded += [_ablation_baseline(name) for name in set(expanded) & set(ABLATIONS)]
    args.systems = [s for s in (*PEERS, *FLAGS) if s in expanded]
    return args


def main(argv: list[str] | None = None) -> dict:
    """Run (or reuse) every job, then write and print the report."""
    args = parse_args(argv)
    if args.job:
        run_child(Path(args.job), args.threads)
        return {}
    started = time.perf_counter()
    output = Path(args.output)
    work = Path(args.work_dir or ROOT / "outputs" / "bench" / output.name)
    data_path = prepare_data(args, work)
    systems = run_systems(args, work, data_path)
    report = build_report(args, data_path, systems)
    report["seconds"] = time.perf_counter() - started
    write_report(report, output, markdown)
    print(f"wrote {output.with_suffix('.json')} and .md in {report['seconds']:.0f} s")
    return report


if __name__ == "__main__":
    main()
