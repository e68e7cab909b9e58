"""The jobs, one function per family (each runs in its own subprocess): ``JOBS[family](config, folder) -> result``.

A job's config is a plain dict (``JobConfig`` types it): it is the cache key, compared with a cached result's
``config`` for equality, so its keys and values must stay as they are.
"""

import json
import os
import re
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypedDict

from .systems import BASELINE, CHAIN, SYSTEMS

METRICS = ("ndcg@10", "mrr@10", "recall@10", "recall@100")
BM25_ROW = "BM25"
"""The bm25 job's row (its cached results name it so; the library's display name is ``systems.BM25``)."""


class DataSettings(TypedDict, total=False):
    """Which data every job reads (``path``: the data itself, or the smaller copy of the smoke flags, or the
    ``--dev_queries`` copy, whose settings then join these)."""

    source: str
    path: str
    train_split: str
    eval_split: str
    eval_queries: int | None
    corpus_limit: int | None
    max_train_queries: int | None
    dev_queries: int
    dev_seed: int


class Lengths(TypedDict):
    """Our recipe's defaults that the peers copy (``recipe()``)."""

    query_max_length: int
    passage_max_length: int
    train_passage_max_length: int
    reranker_max_length: int
    list_size: int
    negatives_top_n: int
    batch_size: int


class JobConfig(TypedDict, total=False):
    """A job's settings, in the order its job.json lists them. bm25 and zeroshot: the first five; trained systems
    add the seed, budgets and re-ranking; the bi-encoder lr, epochs, batch_size_train; the cross-encoder lr, epochs,
    loss, batch_queries and the bi-encoder it re-ranks (``{"folder", "config"}``); ours flags (and a teacher, as the
    bi-encoder); every job the evaluation backend. A job that scores another's models again has only a ``source``
    (as the bi-encoder), the ``fusions`` and, out of domain, the collections (``out_of_domain``)."""

    data: DataSettings
    lengths: Lengths
    top_k: int
    batch_size: int
    system: str
    seed: int
    max_train_queries: int | None
    max_steps: int | None
    rerank_top_k: int
    fusion: float | list[float]
    lr: float
    epochs: int
    batch_size_train: int
    loss: str
    batch_queries: int
    biencoder: dict[str, Any]
    mining: dict[str, Any]
    flags: list[str]
    teacher: dict[str, Any]
    backend: str
    out_of_domain: list[str]
    source: dict[str, Any]
    fusions: list[float]


class JobResult(TypedDict, total=False):
    """What a job writes to result.json (with its ``config`` added by the runner)."""

    rows: dict[str, dict[str, float]]
    train_seconds: float
    eval_seconds: float
    details: dict[str, Any]
    out_of_domain: dict[str, dict[str, dict[str, float]]]
    fusions: dict[str, dict[str, float]]
    config: JobConfig


def recipe() -> Lengths:
    """Our training recipe's defaults, which the peers copy (lengths, list size, BM25 depth, batch)."""
    from modeling_rq2.training.arguments import DataArguments, JointTrainingArguments, ModelArguments

    model, data, joint = ModelArguments(), DataArguments(), JointTrainingArguments()
    return {
        "query_max_length": model.query_max_length,
        "passage_max_length": model.passage_max_length,
        "train_passage_max_length": model.train_passage_max_length,
        "reranker_max_length": model.reranker_max_length,
        "list_size": data.list_size,
        "negatives_top_n": data.negatives_top_n,
        "batch_size": joint.batch_size,
    }


# ---------------------------------------------------------------- shared pieces


def length_tag(config: JobConfig) -> str:
    """``-rl<N>`` in the name of a job whose re-ranker the benchmark ran at N tokens, another length than the
    recipe's, so that runs at two lengths keep apart folders and ledger entries (jobs without a re-ranker, and
    those whose system sets its own length, carry the recipe's: no tag)."""
    length = config["lengths"]["reranker_max_length"]
    return "" if length == recipe()["reranker_max_length"] else f"-rl{length}"


def our_key(name: str, config: JobConfig) -> str:
    """The job name (folder, ledger entry) of our system ``name`` with settings ``config``."""
    return f"{name}{length_tag(config)}-seed{config['seed']}"


def _load(config: JobConfig, split_key: str):
    from modeling_rq2.data import load_beir

    return load_beir(config["data"]["path"], config["data"][split_key])


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _retriever(config: JobConfig, model: str | Path):
    """A retriever (backbone name or folder) at our evaluation lengths, on the device, in eval mode."""
    from modeling_rq2.models.loading import load_retriever

    lengths = config["lengths"]
    retriever = load_retriever(
        model, query_max_length=lengths["query_max_length"], passage_max_length=lengths["passage_max_length"]
    )
    retriever.inference_backend = config.get("backend", "torch")
    return retriever.to(_device()).eval()


def _evaluate(config: JobConfig, retriever, data, index_folder: Path | None, reranker=None):
    """``evaluate_retrieval`` of ``retriever`` (and ``reranker`` on its head) with the job's settings."""
    from modeling_rq2.evaluation.evaluate import evaluate_retrieval
    from modeling_rq2.retrieval.pipeline import RetrieveThenRerank

    pipe = RetrieveThenRerank.from_pretrained(
        retriever, reranker, data, index_folder=index_folder, batch_size=config["batch_size"]
    )
    return evaluate_retrieval(
        retriever,
        data,
        reranker,
        top_k=config["top_k"],
        rerank_top_k=config["rerank_top_k"] if reranker else 0,
        metrics=METRICS,
        batch_size=config["batch_size"],
        fusion=config["fusion"] if reranker else 0.0,
        pipe=pipe,
    )


def _dense(config: JobConfig, model: str, index_folder: Path | None = None) -> tuple[dict[str, float], float]:
    """A retriever (backbone or sentence-transformers folder) evaluated by ours: (metrics, seconds)."""
    from modeling_rq2.evaluation.systems import System

    started = time.perf_counter()
    scored = _evaluate(config, _retriever(config, model), _load(config, "eval_split"), index_folder)
    return scored.metrics[System.retriever()], time.perf_counter() - started


def training_lists(config: JobConfig) -> tuple[list[str], list[list[str]]]:
    """Queries and their lists of formatted passages (positive first), exactly our epoch-0 lists."""
    from modeling_rq2.models.modeling_rq2 import format_passage
    from modeling_rq2.training.lists import ListwiseDataset, bm25_negatives, build_instances

    train = _load(config, "train_split")
    instances = build_instances(train, bm25_negatives(train, config["lengths"]["negatives_top_n"]))
    if config["max_train_queries"]:
        instances = instances.select(range(min(config["max_train_queries"], len(instances))))
    passages = dict(zip(train.corpus["_id"], train.passages()))
    lists = ListwiseDataset(instances, passages, config["lengths"]["list_size"], seed=config["seed"])
    texts = [[format_passage(passages[d], "[SEP]") for d in lists.sample(i)] for i in range(len(lists))]
    return list(instances["query"]), texts


def _training_arguments(cls, config: JobConfig, folder: Path, batch_size: int, **extra):
    """Trainer arguments shared by both sentence-transformers peers (a checkpoint each epoch, so that a killed job
    resumes; no trackers)."""
    return cls(
        output_dir=str(folder / "trainer"),
        num_train_epochs=config["epochs"],
        max_steps=config["max_steps"] or -1,
        per_device_train_batch_size=batch_size,
        learning_rate=config["lr"],
        warmup_steps=0.1,
        weight_decay=0.01,
        seed=config["seed"],
        data_seed=config["seed"],
        save_strategy="epoch",
        save_total_limit=1,
        report_to="none",
        logging_steps=10,
        disable_tqdm=True,
        **extra,
    )


def _train_resumable(trainer, folder: Path) -> bool:
    """``trainer.train()``, from the newest complete epoch checkpoint a killed run left (``trainer_state.json``,
    written last, marks one complete; the others are removed); returns whether it resumed."""
    complete = None
    for checkpoint in sorted((folder / "trainer").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1])):
        if (checkpoint / "trainer_state.json").is_file():
            complete = checkpoint
        else:
            shutil.rmtree(checkpoint)
    if complete is None:  # from scratch: an index of an earlier model's embeddings would not match
        shutil.rmtree(folder / "index", ignore_errors=True)
    trainer.train(resume_from_checkpoint=str(complete) if complete else None)
    return complete is not None


def _save_trained(model, folder: Path) -> None:
    """The trained peer saved as FOLDER/model, then its training checkpoints removed (the model is what counts)."""
    model.save(str(folder / "model"))
    shutil.rmtree(folder / "trainer", ignore_errors=True)


# ---------------------------------------------------------------- peers


def job_bm25(config: JobConfig, folder: Path) -> JobResult:
    """BM25 (bm25s) on the evaluation split."""
    from modeling_rq2.evaluation.evaluate import bm25_baseline

    started = time.perf_counter()
    means = bm25_baseline(_load(config, "eval_split"), metrics=METRICS, top_k=config["top_k"])
    return {"rows": {BM25_ROW: means}, "train_seconds": 0.0, "eval_seconds": time.perf_counter() - started}


def job_zeroshot(config: JobConfig, folder: Path) -> JobResult:
    """The backbone as a dense retriever, untrained."""
    from modeling_rq2.evaluation.systems import System

    means, seconds = _dense(config, "default")
    return {"rows": {System.retriever().name: means}, "train_seconds": 0.0, "eval_seconds": seconds}


def _biencoder_columns(config: JobConfig, queries: list[str], texts: list[list[str]]) -> dict[str, list[str]]:
    """(anchor, positive, negative_1..k) columns of the lists that fill every column (MNRL needs them all)."""
    k = config["lengths"]["list_size"] - 1
    full = [(q, t) for q, t in zip(queries, texts) if len(t) == k + 1]
    columns = {"anchor": [q for q, _ in full], "positive": [t[0] for _, t in full]}
    columns.update({f"negative_{j}": [t[j] for _, t in full] for j in range(1, k + 1)})
    return columns


def job_st_biencoder(config: JobConfig, folder: Path) -> JobResult:
    """SentenceTransformer + MultipleNegativesRankingLoss on (anchor, positive, negative_1..k) rows of our lists."""
    queries, texts = training_lists(config)
    return _train_biencoder(config, folder, queries, _biencoder_columns(config, queries, texts))


def _mined_columns(config: JobConfig, queries: list[str], texts: list[list[str]]) -> tuple[dict, dict]:
    """(anchor, positive, negative_1..k) columns whose negatives sentence-transformers' ``mine_hard_negatives``
    finds with the zero-shot backbone over the whole training corpus (``config["mining"]``), and what it did."""
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.util import mine_hard_negatives

    from modeling_rq2.models.loading import default_backbone_path
    from modeling_rq2.models.modeling_rq2 import format_passage

    model = SentenceTransformer(default_backbone_path(), device=_device())
    model.max_seq_length = config["lengths"]["train_passage_max_length"]
    train = _load(config, "train_split")
    passages = dict(zip(train.corpus["_id"], train.passages()))
    corpus = [format_passage(p, "[SEP]") for p in passages.values()]
    # every gold passage of a claim is one of its positives to mine_hard_negatives, so none is mined as a
    # negative; then, as for the other peers, one row a claim: its first positive (the one our lists use)
    golds = {q: t[0] for q, t in zip(queries, texts)}
    pairs = [(q, golds[q]) for q in queries] + [
        (q, format_passage(passages[d], "[SEP]"))
        for q, qid in zip(queries, _positive_ids(train, queries))
        for d in qid
        if format_passage(passages[d], "[SEP]") != golds[q]
    ]
    mined = mine_hard_negatives(
        Dataset.from_dict({"anchor": [q for q, _ in pairs], "positive": [p for _, p in pairs]}),
        model,
        corpus=corpus,
        num_negatives=config["lengths"]["list_size"] - 1,
        output_format="n-tuple",
        batch_size=config["batch_size"],
        verbose=False,
        **config["mining"],
    )
    rows = mined.filter(lambda row: golds.get(row["anchor"]) == row["positive"])
    rows = rows.select(sorted({row["anchor"]: i for i, row in enumerate(rows)}.values()))  # one row a claim
    report = {"pairs": len(pairs), "mined_rows": len(mined), "rows": len(rows), "corpus": len(corpus)}
    return rows.to_dict(), {**report, **config["mining"]}


def _positive_ids(data, queries: list[str]) -> list[list[str]]:
    """Each query text's gold passage ids (relevance >= 1), in ``queries``' order."""
    ids = dict(zip(data.queries["text"], data.queries["_id"]))
    return [[d for d, grade in data.qrels.get(ids[q], {}).items() if grade >= 1] for q in queries]


def job_st_biencoder_mined(config: JobConfig, folder: Path) -> JobResult:
    """The bi-encoder peer on ``mine_hard_negatives``' negatives in place of BM25's (the same queries, positives
    and training settings): sentence-transformers' own answer to false negatives, beside our denoising."""
    queries, texts = training_lists(config)
    started = time.perf_counter()
    columns, mining = _mined_columns(config, queries, texts)
    mining["seconds"] = time.perf_counter() - started
    result = _train_biencoder(config, folder, queries, columns)
    result["train_seconds"] += mining["seconds"]
    result["details"]["mining"] = mining
    return result


def _train_biencoder(config: JobConfig, folder: Path, queries: list[str], columns: dict[str, list[str]]) -> JobResult:
    """Train a SentenceTransformer with MNRL on ``columns`` (anchor, positive, negative_1..k) and evaluate it."""
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.base.sampler import BatchSamplers
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    from modeling_rq2.evaluation.systems import System
    from modeling_rq2.models.loading import default_backbone_path

    lengths = config["lengths"]
    model = SentenceTransformer(default_backbone_path(), device=_device())
    model.max_seq_length = lengths["train_passage_max_length"]  # one length for all columns in ST
    long_queries = sum(len(ids) > lengths["query_max_length"] for ids in model.tokenizer(queries)["input_ids"])
    args = _training_arguments(
        SentenceTransformerTrainingArguments,
        config,
        folder,
        config["batch_size_train"],
        batch_sampler=BatchSamplers.NO_DUPLICATES,
    )
    started = time.perf_counter()
    trainer = SentenceTransformerTrainer(
        model=model, args=args, train_dataset=Dataset.from_dict(columns), loss=MultipleNegativesRankingLoss(model)
    )
    resumed = _train_resumable(trainer, folder)
    # ST keeps max_seq_length in the saved tokenizer (model_max_length), which caps our encoder's lengths:
    # save the evaluation length, as our retriever saves its own
    model.max_seq_length = lengths["passage_max_length"]
    _save_trained(model, folder)
    train_seconds = time.perf_counter() - started
    means, eval_seconds = _dense(config, str(folder / "model"), folder / "index")
    rows = len(columns["anchor"])
    details = {
        "rows": rows,
        "queries_without_a_full_row": len(queries) - rows,  # BM25 lists too short, or too few mined negatives
        "steps": trainer.state.global_step,
        "train_max_seq_length": lengths["train_passage_max_length"],
        "saved_max_seq_length": model.max_seq_length,
        "queries_over_query_max_length": long_queries,
        "resumed": resumed,
    }
    return {
        "rows": {System.retriever().name: means},
        "train_seconds": train_seconds,
        "eval_seconds": eval_seconds,
        "details": details,
    }


def _cross_dataset(config: JobConfig):
    """BCE: (query, passage, label) rows, 1 positive + k negatives per query; ListNet: (query, [passages], [labels])."""
    from datasets import Dataset

    queries, texts = training_lists(config)
    labels = [[float(j == 0) for j in range(len(t))] for t in texts]
    if config["loss"] == "listnet":
        return Dataset.from_dict({"query": queries, "docs": texts, "labels": labels})
    rows = [(q, p, y) for q, t, ys in zip(queries, texts, labels) for p, y in zip(t, ys)]
    return Dataset.from_dict(
        {"query": [q for q, _, _ in rows], "passage": [p for _, p, _ in rows], "label": [y for _, _, y in rows]}
    )


class CrossEncoderReranker:
    """A sentence-transformers CrossEncoder in our pipeline's re-ranker seat: ``score_pairs`` of (query, passage)
    pairs gives its raw logits of ``(query, title [SEP] text)``, scored ``batch_size`` pairs at a time."""

    def __init__(self, model, batch_size: int):
        self.model, self.batch_size = model, batch_size

    def score_pairs(self, pairs: Sequence[tuple[str, Any]]):
        """Logits (no activation), one per pair, in order (a NumPy array, as ``RQ2Reranker.score_pairs``)."""
        import torch

        from modeling_rq2.models.modeling_rq2 import format_passage

        texts = [(query, format_passage(passage, "[SEP]")) for query, passage in pairs]
        return self.model.predict(
            texts, batch_size=self.batch_size, activation_fn=torch.nn.Identity(), show_progress_bar=False
        )


def _rerank_rows(config: JobConfig, folder: Path, model) -> tuple[dict[str, dict[str, float]], float]:
    """The CrossEncoder re-ranks the head of the st_biencoder's candidates (pure, and fused as ours)."""
    started = time.perf_counter()
    biencoder = folder.parent / config["biencoder"]["folder"]
    reranker = CrossEncoderReranker(model, config["batch_size"])
    scored = _evaluate(
        config, _retriever(config, biencoder / "model"), _load(config, "eval_split"), biencoder / "index", reranker
    )
    rows = {system.name: means for system, means in scored.metrics.items() if system.kind != "retriever"}
    return rows, time.perf_counter() - started


def job_st_crossencoder(config: JobConfig, folder: Path) -> JobResult:
    """CrossEncoder (BCE or ListNet) on our lists, re-ranking the selected st_biencoder's top ``rerank_top_k``."""
    import torch
    from sentence_transformers import CrossEncoder, CrossEncoderTrainer, CrossEncoderTrainingArguments
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss, ListNetLoss

    from modeling_rq2.models.loading import default_backbone_path

    lengths = config["lengths"]
    model = CrossEncoder(
        default_backbone_path(), num_labels=1, max_length=lengths["reranker_max_length"], device=_device()
    )
    negatives = lengths["list_size"] - 1
    listnet = config["loss"] == "listnet"
    loss = ListNetLoss(model) if listnet else BinaryCrossEntropyLoss(model, pos_weight=torch.tensor(float(negatives)))
    batch = config["batch_queries"] * (1 if listnet else lengths["list_size"])  # the same queries per step for both
    dataset = _cross_dataset(config)
    args = _training_arguments(CrossEncoderTrainingArguments, config, folder, batch)
    started = time.perf_counter()
    trainer = CrossEncoderTrainer(model=model, args=args, train_dataset=dataset, loss=loss)
    resumed = _train_resumable(trainer, folder)
    _save_trained(model, folder)
    train_seconds = time.perf_counter() - started
    rows, eval_seconds = _rerank_rows(config, folder, model)
    return {
        "rows": rows,
        "train_seconds": train_seconds,
        "eval_seconds": eval_seconds,
        "details": {
            "rows": len(dataset),
            "steps": trainer.state.global_step,
            "batch_size": batch,
            "pos_weight": None if listnet else negatives,
            "resumed": resumed,
        },
    }


# ---------------------------------------------------------------- ours


def _rq2_argv(config: JobConfig, folder: Path) -> list[str]:
    """``run_training``'s command line for this job, before the system's flags."""
    data = config["data"]
    argv = [
        "--output_dir",
        str(folder / "run"),
        "--report_to",
        "none",
        "--data",
        data["path"],
        "--train_split",
        data["train_split"],
        "--eval_split",
        data["eval_split"],
        "--seed",
        str(config["seed"]),
        "--top_k",
        str(config["top_k"]),
        "--rerank_top_k",
        str(config["rerank_top_k"]),
        "--fusion",
        str(config["fusion"]),
        "--eval_batch_size",
        str(config["batch_size"]),
        "--resume_from_checkpoint",
        "latest",
        "--backend",
        config.get("backend", "torch"),
        "--reranker_max_length",  # the benchmark's, which a system's flags may change
        str(config["lengths"]["reranker_max_length"]),
        "--mixed_precision",  # fp32 whatever the defaults or processor (as every ledger entry); flags may change it
        "no",
        "--precision",
        "fp32",
    ]
    budgets = (("--max_train_queries", config["max_train_queries"]), ("--max_steps", config["max_steps"]))
    argv += [a for flag, value in budgets if value for a in (flag, str(value))]
    if config.get("teacher"):  # static distillation: another job's trained re-ranker, frozen
        teacher = folder.parent / config["teacher"]["folder"] / "run" / "reranker"
        if not (teacher / "config.json").is_file():
            raise FileNotFoundError(f"{teacher}: the teacher job {config['teacher']['folder']} has not run")
        argv += ["--reranker", str(teacher)]
    return argv


def job_rq2(config: JobConfig, folder: Path) -> JobResult:
    """Our joint training (``run_training``, the chain with --augment) with the system's flags."""
    from modeling_rq2.training.chain import run_training
    from modeling_rq2.training.config_files import parse_arguments

    argv = _rq2_argv(config, folder) + config["flags"]
    reused = _reuse_stages(config, folder)
    resumed = any((folder / "run").rglob("checkpoint-*"))  # a killed job's: its train seconds count the rest only
    started = time.perf_counter()
    metrics = run_training(*parse_arguments(argv))
    seconds = time.perf_counter() - started + (reused["train_seconds"] if reused else 0.0)
    for checkpoints in sorted((folder / "run").rglob("checkpoints")):  # done: the saved models are what counts
        shutil.rmtree(checkpoints)
    return {
        "rows": metrics["eval"]["results"],
        "train_seconds": seconds - metrics["eval"]["seconds"],
        "eval_seconds": metrics["eval"]["seconds"],
        "details": {
            "argv": argv,
            "train": metrics["train"],
            "steps": metrics["train"]["steps"] + _stage_steps(folder / "run"),
            "warmup_reused_from": reused and reused["job"],
            "resumed": resumed,
            "augmentation": _augmentation_counts(metrics.get("augmentation")),
        },
    }


def _augmentation_counts(report: dict | None) -> dict | None:
    """What the chain's augmentation mined (instances of each kind, negatives retrieved and removed, positives
    added), so that ablations of it can be compared by the amount of data too."""
    if not report:
        return None
    keys = ("instances", "negatives_retrieved", "negatives_removed", "positives_added", "denoised_without_negatives")
    return {key: report[key] for key in keys if key in report}


def _stage_steps(run: Path) -> int:
    """The optimizer steps of the chain's stages before its last (warm-up, rounds before the last; 0 without a
    chain): their metrics hold them."""
    stages = [run / "warmup", *(stage for stage in run.glob("round-*") if re.fullmatch(r"round-\d+", stage.name))]
    return sum(
        json.loads((stage / "metrics.json").read_text(encoding="utf-8"))["train"]["steps"]
        for stage in stages
        if (stage / "metrics.json").is_file()
    )


def _rounds(flags: Sequence[str]) -> tuple[int, list[str]]:
    """The chain's ``--augment_rounds`` in ``flags`` (1 when absent) and the flags without it."""
    if "--augment_rounds" not in flags:
        return 1, list(flags)
    at = list(flags).index("--augment_rounds")
    return int(flags[at + 1]), [*flags[:at], *flags[at + 2 :]]


REUSED = "reused_stages.json"


def _reuse_stages(config: JobConfig, folder: Path) -> dict | None:
    """For the chain, the finished stages of a cheaper job of the same settings and seed, if it ran.

    The default warm-up (``augment_warmup joint``, 1 epoch) is exactly ``ours_1_epoch`` trained without evaluation;
    a chain of several rounds starts with the whole one-round chain (``ours_augmented``: warm-up, its augmented
    lists and its joint models, which are round 1). Their folders are hard-linked into RUN instead of trained
    again, all or none (a job that has finished a stage of its own trains on by itself); the chain skips them and
    the job's train seconds add the source job's. Returns the source job's name and train seconds (also on a
    resumed job, from RUN/reused_stages.json), or None (the chain trains every stage).
    """
    run = folder / "run"
    if (run / REUSED).is_file():
        return json.loads((run / REUSED).read_text(encoding="utf-8"))
    flags = config["flags"]
    if "--augment" not in flags or "--augment_warmup" in flags or "--augment_warmup_epochs" in flags:
        return None
    rounds, one_round = _rounds(flags)
    source_system = CHAIN if rounds > 1 and one_round == list(SYSTEMS[CHAIN].flags) else BASELINE
    job = our_key(source_system, config)
    source = folder.parent / job
    stages = (
        {"warmup": (source / "run", ("retriever", "reranker", "metrics.json"))}
        if source_system == BASELINE
        else {
            "warmup": (source / "run" / "warmup", None),
            "augmented": (source / "run" / "augmented", None),
            "round-1": (source / "run", ("retriever", "reranker", "metrics.json")),
        }
    )
    if any((run / name / done).is_file() for name in stages for done in ("metrics.json", "augmentation_report.json")):
        return None  # the job's own stages: not mixed with another run's
    result = source / "result.json"
    if not result.is_file() or not (source / "run" / "metrics.json").is_file():
        print(f"{job} has not run here: this job trains its {', '.join(stages)} itself", flush=True)
        return None
    done = json.loads(result.read_text(encoding="utf-8"))
    if done["config"] != {**config, "system": source_system, "flags": list(SYSTEMS[source_system].flags)}:
        return None
    for name, (origin, entries) in stages.items():
        _link_folder(origin, run / name, entries)
    reused = {"job": job, "train_seconds": done["train_seconds"]}
    (run / REUSED).write_text(json.dumps(reused), encoding="utf-8")
    print(f"{', '.join(stages)}: those of {job} (the same recipe and seed), not trained again", flush=True)
    return reused


def _link_folder(origin: Path, target: Path, entries: Sequence[str] | None) -> None:
    """``origin``'s ``entries`` (all when None) into ``target``, which appears whole or not at all: folders (models,
    lists) hard-linked, files copied (a stage's files are rewritten in place, its models are not)."""
    shutil.rmtree(target, ignore_errors=True)
    staging = target.with_name(f"{target.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for name in entries or sorted(p.name for p in origin.iterdir()):
        if (origin / name).is_dir():
            shutil.copytree(origin / name, staging / name, copy_function=os.link)
        else:
            shutil.copy2(origin / name, staging / name)
    staging.replace(target)


JOBS: dict[str, Callable[[JobConfig, Path], JobResult]] = {
    "bm25": job_bm25,
    "zeroshot": job_zeroshot,
    "st_biencoder": job_st_biencoder,
    "st_biencoder_mined": job_st_biencoder_mined,
    "st_crossencoder": job_st_crossencoder,
    "rq2": job_rq2,
}
"""The job function of each family (``BenchSystem.job``)."""


def _trained_models(config: JobConfig, folder: Path) -> tuple[Any, Any]:
    """The (retriever, re-ranker or None) a finished job trained, as its evaluation used them."""
    from sentence_transformers import CrossEncoder

    from modeling_rq2.models.loading import load_reranker

    family = SYSTEMS[config["system"]].job
    if family == "zeroshot":
        return _retriever(config, "default"), None
    if family in ("st_biencoder", "st_biencoder_mined"):
        return _retriever(config, folder / "model"), None
    if family == "st_crossencoder":
        biencoder = folder.parent / config["biencoder"]["folder"] / "model"
        cross = CrossEncoder(str(folder / "model"), device=_device())
        return _retriever(config, biencoder), CrossEncoderReranker(cross, config["batch_size"])
    reranker = load_reranker(folder / "run" / "reranker")
    reranker.inference_backend = config.get("backend", "torch")
    return _retriever(config, folder / "run" / "retriever"), reranker.to(_device()).eval()


def _rows(config: JobConfig, models: tuple[Any, Any], data, fusions: Sequence[float]) -> dict[str, dict[str, float]]:
    """``models`` scored on ``data`` with the job's settings (top 100 or the corpus, re-ranking and its fusion) and
    each of ``fusions`` too: {row: metrics}."""
    weights = sorted({config.get("fusion", 0.0), *fusions})
    local = {**config, "top_k": min(config["top_k"], len(data.corpus)), "fusion": weights}
    return {s.name: m for s, m in _evaluate(local, models[0], data, None, models[1]).metrics.items()}


def out_of_domain(
    config: JobConfig, folder: Path, collections: list[str], fusions: Sequence[float] = ()
) -> dict[str, dict[str, dict[str, float]]]:
    """The models of the job ``config`` in ``folder`` scored on each collection (BEIR folder, its test split),
    with the job's own settings and the other ``fusions`` (a weight to choose on one collection):
    {collection: {row: metrics}}."""
    from modeling_rq2.data import load_beir
    from modeling_rq2.evaluation.evaluate import bm25_baseline
    from modeling_rq2.evaluation.systems import System

    scored = {}
    models = None if config["system"] == "bm25" else _trained_models(config, folder)
    for path in collections:
        data = load_beir(path, "test")
        if models is None:
            top_k = min(config["top_k"], len(data.corpus))
            scored[data.name] = {BM25_ROW: bm25_baseline(data, metrics=METRICS, top_k=top_k)}
        else:
            scored[data.name] = rows = _rows(config, models, data, fusions)
            if config["system"] == "st_crossencoder":  # its retriever is the bi-encoder's, reported there
                rows.pop(System.retriever().name)
    return scored


def fusion_grid(config: JobConfig, folder: Path, fusions: Sequence[float]) -> dict[str, dict[str, float]]:
    """The models of the job ``config`` in ``folder`` scored again on its own evaluation split, fused with each of
    ``fusions``: {row: metrics} (a CrossEncoder's retriever row included: every row from the same models), where
    the fusion weight is chosen when that split is a dev split."""
    return _rows(config, _trained_models(config, folder), _load(config, "eval_split"), fusions)


def wise_ft_grid(
    config: JobConfig, folder: Path, weights: Sequence[float], collections: Sequence[str]
) -> dict[str, dict]:
    """WiSE-FT of the job's retriever: interpolated with its zero-shot backbone at each weight (the trained share),
    with the job's re-ranker, scored on the job's evaluation split and on each collection (BEIR folder, its test
    split): {weight: {"in_domain": {row: metrics}, "out_of_domain": {collection: {row: metrics}}}}."""
    from modeling_rq2.data import load_beir
    from modeling_rq2.training.interpolation import interpolate_retriever, starting_backbone

    trained, reranker = _trained_models(config, folder)
    base = _retriever(config, starting_backbone(trained))
    in_domain = _load(config, "eval_split")
    others = [load_beir(path, "test") for path in collections]
    scored = {}
    for weight in weights:  # a fresh load each time: the interpolation is in place
        retriever = interpolate_retriever(_retriever(config, folder / "run" / "retriever"), base, weight=weight)
        scored[f"{weight:g}"] = {
            "in_domain": _rows(config, (retriever, reranker), in_domain, ()),
            "out_of_domain": {data.name: _rows(config, (retriever, reranker), data, ()) for data in others},
        }
    return scored


def run_job_function(config: JobConfig, folder: Path) -> JobResult:
    """The job of ``config["system"]`` (or, for a job with a ``source``, the scoring of its source's models out of
    domain, at more fusion weights, or interpolated with the backbone), run in this process."""
    if "source" not in config:
        return JOBS[SYSTEMS[config["system"]].job](config, folder)
    started = time.perf_counter()
    source, models = config["source"], folder.parent / config["source"]["folder"]
    if "wise_ft" in config:
        scored = {"wise_ft": wise_ft_grid(source["config"], models, config["wise_ft"], config["out_of_domain"])}
    elif "out_of_domain" in config:
        scored = {
            "out_of_domain": out_of_domain(source["config"], models, config["out_of_domain"], config.get("fusions", ()))
        }
    else:
        scored = {"fusions": fusion_grid(source["config"], models, config["fusions"])}
    return {**scored, "train_seconds": 0.0, "eval_seconds": time.perf_counter() - started}
