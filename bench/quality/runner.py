"""Jobs on disk: the data they read, their folders and cache, the child process, the peers' grids and the seeds.

WORK_DIR/<job key>/job.json holds a job's config; result.json its result (the config included), log.txt the child's
output. A cached result counts when its config equals the new one.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from modeling_rq2.evaluation.systems import System

from .jobs import JobConfig, JobResult, length_tag, our_key, recipe, run_job_function
from .systems import SYSTEMS

ROOT = Path(__file__).resolve().parents[2]

# ---------------------------------------------------------------- data


def _first_queries(data, count: int | None, positive_only: bool = False):
    """``data`` restricted to its first ``count`` queries (all if None), qrels too; ``positive_only``: among
    the queries with a positive passage (the ones ``build_instances`` keeps)."""
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
        text = "query-id\tcorpus-id\tscore\n" + "\n".join(lines) + "\n"
        (folder / "qrels" / f"{split}.tsv").write_text(text, encoding="utf-8")


def prepare_data(args: argparse.Namespace, work: Path) -> str:
    """The data every job reads: ``--data`` itself, or (smoke flags) a smaller BEIR copy written under ``work``.

    ``--eval_queries N`` keeps the first N evaluation queries; ``--corpus_limit N`` keeps the judged passages of
    the kept evaluation and training queries (the first ``--max_train_queries`` with a positive) plus the first
    N other passages.
    """
    if args.dev_queries:
        return _dev_copy(args, work)
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
    return _portable(folder)


DEV_TRAIN, DEV = "train_rest", "dev"
"""The splits of the ``--dev_queries`` copy: the training queries left to train on, and those held out."""


def _dev_copy(args: argparse.Namespace, work: Path) -> str:
    """A BEIR copy whose ``dev`` split is ``--dev_queries`` training queries drawn with ``--dev_seed``
    (``hold_out``, as ``train.py --heldout_queries``) and ``train_rest`` the others; every system trains on the
    latter and is scored on the former, so settings are chosen without reading the test split."""
    from modeling_rq2.data import load_beir
    from modeling_rq2.data.records import hold_out

    if args.eval_queries or args.corpus_limit:
        raise SystemExit("--dev_queries: not with the smoke flags --eval_queries / --corpus_limit")
    rest, dev = hold_out(load_beir(args.data, args.train_split), args.dev_queries, seed=args.dev_seed)
    folder = work / "data" / f"{Path(args.data).name}-dev{args.dev_queries}-seed{args.dev_seed}"
    if not (folder / "qrels" / f"{DEV}.tsv").is_file():
        _write_beir(folder, {DEV_TRAIN: rest, DEV: dev}, rest.corpus)
    args.train_split, args.eval_split = DEV_TRAIN, DEV
    return _portable(folder)


def _portable(folder: Path) -> str:
    """A data folder as jobs' settings name it: relative to the repository (where jobs run) when inside it, so
    that a ledger entry made on one machine matches on another."""
    folder = folder.resolve()
    return str(folder.relative_to(ROOT)) if folder.is_relative_to(ROOT) else str(folder)


# ---------------------------------------------------------------- one job


def run_child(folder: Path, threads: int) -> None:
    """Inside the subprocess: run the job described by ``folder/job.json`` and write ``result.json``."""
    import torch
    from transformers import set_seed

    torch.set_num_threads(threads)
    config = json.loads((folder / "job.json").read_text(encoding="utf-8"))
    set_seed(config.get("seed", 0))  # the peers' fresh heads are drawn before their trainers seed anything
    result = run_job_function(config, folder)
    result["config"], result["commit"] = config, os.environ.get(COMMIT_VARIABLE) or _commit()
    partial = folder / "result.json.partial"
    partial.write_text(json.dumps(result, indent=2), encoding="utf-8")
    partial.replace(folder / "result.json")


COMMIT_VARIABLE = "BENCH_QUALITY_COMMIT"
"""How the parent tells a job the code it started on (``_commit`` when the job starts, not when it ends)."""


def _commit() -> str:
    """The code a job runs: this repository's commit, ``+changes`` when the tree (results aside) differs from it."""
    git = lambda *argv: subprocess.run(["git", *argv], cwd=ROOT, capture_output=True, text=True, check=False).stdout
    changed = git("status", "--porcelain", "--", ".", ":(exclude)bench/results").strip()
    return git("rev-parse", "--short", "HEAD").strip() + ("+changes" if changed else "")


def _read(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


def _spawn(key: str, folder: Path, threads: int) -> None:
    """``python -m bench.quality --job FOLDER`` from the repository root, its output appended to FOLDER/log.txt."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", COMMIT_VARIABLE: _commit()}
    command = [sys.executable, "-m", "bench.quality", "--job", str(folder.resolve()), "--threads", str(threads)]
    with open(folder / "log.txt", "a", encoding="utf-8") as log:
        proc = subprocess.run(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env, check=False)
    if proc.returncode != 0:
        tail = (folder / "log.txt").read_text(encoding="utf-8")[-3000:]
        raise RuntimeError(f"job {key} failed (exit {proc.returncode}); end of {folder / 'log.txt'}:\n{tail}")


def _cached(path: Path, config: JobConfig) -> JobResult | None:
    """The result at ``path`` if it is there and was made with ``config``."""
    if path.is_file() and (result := _read(path))["config"] == config:
        return result
    return None


def ledger_path(ledger: Path, key: str) -> Path:
    """Where the committed copy of job ``key``'s result lives."""
    return ledger / f"{key}.json"


def _record(ledger: Path, key: str, result: JobResult) -> None:
    """A finished job's result copied into the ledger (committed with the report: a later session on another
    machine reuses it, where WORK_DIR, models and all, is gone)."""
    ledger.mkdir(parents=True, exist_ok=True)
    partial = ledger_path(ledger, key).with_suffix(".json.partial")
    partial.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    partial.replace(ledger_path(ledger, key))


RESUMABLE = ("rq2", "st_biencoder", "st_biencoder_mined", "st_crossencoder")
"""The job families that checkpoint their training: a killed job of the same settings goes on from its folder."""


def run_job(
    key: str, config: JobConfig, work: Path, args: argparse.Namespace, *, models: bool = False
) -> JobResult | None:
    """A job's cached result when its settings match (WORK_DIR/<job>/result.json, else the ledger's copy), else run
    it in a subprocess (log in WORK_DIR/<job>/log.txt); None with ``--cached_only`` when it has not run.

    ``models``: another job reads this one's models, so only a result whose folder holds them counts (a ledger
    entry alone is run again). Before a job runs, the jobs whose models it reads are made sure of likewise.
    """
    folder, config = work / key, json.loads(json.dumps(config))  # as it reads back from JSON
    cached, ledger = folder / "result.json", Path(args.ledger)
    local, ledgered = _cached(cached, config), _cached(ledger_path(ledger, key), config)
    if local is not None and ledgered is None:  # missing, or of other settings
        _record(ledger, key, local)
        ledgered = local
    if ledgered is not None and (local is not None or not models):  # the ledger's numbers are the ones reported
        print(f"{key}: cached" + ("" if local is not None else f" in {ledger}"), flush=True)
        return {**ledgered, "key": key}
    if args.cached_only:
        print(f"{key}: not run (--cached_only)", flush=True)
        return None
    for source, source_config in sources(config):
        if run_job(source, source_config, work, args, models=True) is None:
            return None
    spec = folder / "job.json"
    trains = "system" in config and SYSTEMS[config["system"]].job in RESUMABLE
    resumable = trains and spec.is_file() and _read(spec) == config
    if folder.exists() and not resumable:  # stale models, indexes or checkpoints of other settings
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    spec.write_text(json.dumps(config, indent=2), encoding="utf-8")
    started = time.perf_counter()
    _spawn(key, folder, args.threads)
    result = _read(cached)
    if ledgered is None:  # a rerun that only rebuilt the models keeps the numbers already reported
        _record(ledger, key, result)
        ledgered = result
    print(f"{key}: done in {time.perf_counter() - started:.0f} s", flush=True)
    return {**ledgered, "key": key}


# ---------------------------------------------------------------- job settings


def _common(args: argparse.Namespace, data_path: str) -> JobConfig:
    """Settings every job shares (and whose change invalidates its cache)."""
    data = {
        "source": args.data,
        "path": data_path,
        "train_split": args.train_split,
        "eval_split": args.eval_split,
        "eval_queries": args.eval_queries,
        "corpus_limit": args.corpus_limit,
        "max_train_queries": args.max_train_queries if data_path != args.data else None,
        **({"dev_queries": args.dev_queries, "dev_seed": args.dev_seed} if args.dev_queries else {}),
    }
    lengths = {**recipe(), "reranker_max_length": args.reranker_max_length}
    common = {"data": data, "lengths": lengths, "top_k": args.top_k, "batch_size": args.batch_size}
    # named only when not the default, so that the jobs that ran before it existed keep their keys
    return {**common, "backend": args.backend} if args.backend != "torch" else common


def at_recipe_length(common: JobConfig) -> JobConfig:
    """The common settings of a job the benchmark's re-ranker length does not reach (no re-ranker: BM25, zero-shot,
    the bi-encoders; or a system that sets its own): the length pinned to the recipe's, so that a run at another
    ``--reranker_max_length`` reuses them."""
    return {**common, "lengths": {**common["lengths"], "reranker_max_length": recipe()["reranker_max_length"]}}


def _training(args: argparse.Namespace, common: JobConfig, system: str, seed: int) -> JobConfig:
    """Settings of a trained system's job: the common ones, the seed, the budgets and the re-ranking evaluation."""
    return {
        **common,
        "system": system,
        "seed": seed,
        "max_train_queries": args.max_train_queries,
        "max_steps": args.max_steps,
        "rerank_top_k": args.rerank_top_k,
        "fusion": args.fusion,
    }


def st_points(args: argparse.Namespace, common: JobConfig, seed: int) -> dict[str, JobConfig]:
    """The bi-encoder grid: learning rates x epochs (a fresh model for each point)."""
    training = _training(args, at_recipe_length(common), "st_biencoder", seed)
    return {
        f"st_biencoder-lr{lr:g}-ep{epochs}": {
            **training,
            "lr": lr,
            "epochs": epochs,
            "batch_size_train": args.st_batch_size,
        }
        for lr in args.st_lrs
        for epochs in args.st_epochs
    }


def ce_points(args: argparse.Namespace, common: JobConfig, biencoder: dict, seed: int) -> dict[str, JobConfig]:
    """The cross-encoder grid on the selected bi-encoder of the same seed (whose settings are part of the job's)."""
    if seed not in biencoder["seeds"]:  # --cached_only and the bi-encoder never ran at this seed
        return {}
    source = {"folder": f"{biencoder['best']}-seed{seed}", "config": biencoder["seeds"][seed]["config"]}
    training = _training(args, common, "st_crossencoder", seed)
    return {
        f"st_crossencoder-{loss}-lr{lr:g}-ep{epochs}{length_tag(training)}": {
            **training,
            "lr": lr,
            "epochs": epochs,
            "loss": loss,
            "batch_queries": args.ce_batch_queries,
            "biencoder": source,
        }
        for loss in args.ce_losses
        for lr in args.ce_lrs
        for epochs in args.ce_epochs
    }


def ours_config(args: argparse.Namespace, common: JobConfig, name: str, seed: int) -> JobConfig:
    """The job of one of our systems (or an ablation) at one seed: its flags, and its teacher's job if it has one."""
    system = SYSTEMS[name]
    own = at_recipe_length(common) if "--reranker_max_length" in system.flags else common
    config = {**_training(args, own, name, seed), "flags": list(system.flags)}
    if not system.teacher:
        return config
    teacher_config = ours_config(args, common, system.teacher, seed)
    teacher = {"folder": our_key(system.teacher, teacher_config), "config": teacher_config}
    return {**config, "teacher": teacher}


def sources(config: JobConfig) -> list[tuple[str, JobConfig]]:
    """The jobs whose models ``config``'s job reads: (key, settings) of its bi-encoder, its teacher, or (an
    out-of-domain or fusions job) the job it scores."""
    names = ("biencoder", "teacher", "source")
    return [(config[name]["folder"], config[name]["config"]) for name in names if name in config]


def ood_config(key: str, config: JobConfig, collections: list[str], fusions: list[float]) -> JobConfig:
    """The out-of-domain job of job ``key``: its models scored on ``collections``, fused with each of ``fusions``
    too (a job of its own, so that the trained job's key is the same with or without it)."""
    paths = sorted(_portable(Path(c)) for c in collections)
    return {"source": {"folder": key, "config": config}, "out_of_domain": paths, "fusions": sorted(fusions)}


def fusions_config(key: str, config: JobConfig, fusions: list[float]) -> JobConfig:
    """The job that scores job ``key``'s models again on its evaluation split, fused with each of ``fusions`` (a
    job of its own, as the out-of-domain one)."""
    return {"source": {"folder": key, "config": config}, "fusions": sorted(set(fusions))}


def wise_ft_config(key: str, config: JobConfig, weights: list[float], collections: list[str]) -> JobConfig:
    """The job that scores job ``key``'s retriever interpolated with the backbone at each of ``weights`` (WiSE-FT),
    on its evaluation split and on ``collections`` (a job of its own, as the out-of-domain one)."""
    paths = sorted(_portable(Path(c)) for c in collections)
    return {"source": {"folder": key, "config": config}, "wise_ft": sorted(set(weights)), "out_of_domain": paths}


def _score_runs(
    args: argparse.Namespace, work: Path, systems: dict[str, dict], suffix: str, field: str, config_of, families=None
) -> None:
    """Each reported run (of the job ``families``, or all) scored by a job of its own, ``<run>-<suffix>`` with
    settings ``config_of(run)``: ``run[field]`` set where it ran."""
    for name, system in systems.items():
        if families is not None and SYSTEMS[name].job not in families:
            continue
        for run in system["seeds"].values():
            if (scored := run_job(f"{run['key']}-{suffix}", config_of(run), work, args)) is not None:
                run[field] = scored[field]


def _wise_ft(args: argparse.Namespace, work: Path, systems: dict[str, dict]) -> None:
    """Each reported run of ours scored at ``--wise_ft``."""
    config_of = lambda run: wise_ft_config(run["key"], run["config"], args.wise_ft, args.out_of_domain)  # noqa: E731
    _score_runs(args, work, systems, "wise_ft", "wise_ft", config_of, families=("rq2",))


def _fusions(args: argparse.Namespace, work: Path, systems: dict[str, dict]) -> None:
    """Each reported run with a re-ranker scored at ``--fusions``."""
    config_of = lambda run: fusions_config(run["key"], run["config"], args.fusions)  # noqa: E731
    _score_runs(args, work, systems, "fusions", "fusions", config_of, families=("rq2", "st_crossencoder"))


def _out_of_domain(args: argparse.Namespace, work: Path, systems: dict[str, dict]) -> None:
    """Each reported run's models scored on ``--out_of_domain``."""
    config_of = lambda run: ood_config(run["key"], run["config"], args.out_of_domain, args.ood_fusions)  # noqa: E731
    _score_runs(args, work, systems, "ood", "out_of_domain", config_of)


# ---------------------------------------------------------------- systems


def _found(results: dict) -> dict:
    """The jobs that have results (``--cached_only`` leaves the others out)."""
    return {key: result for key, result in results.items() if result is not None}


def _best(runs: dict[str, JobResult], row: str) -> str:
    """The grid point with the highest nDCG@10 of ``row`` (selected on the evaluation split)."""
    return max(runs, key=lambda key: runs[key]["rows"][row]["ndcg@10"])


Points = Callable[[int], dict[str, JobConfig]]
"""A grid: seed -> {point name: job settings}."""


def run_grid(args: argparse.Namespace, points: Points, row: str, work: Path) -> dict | None:
    """Every grid point (``points(seed)``: {name: job settings}) at the first seed; the best one at the other seeds."""
    first = args.seeds[0]
    grid = _found(
        {
            f"{key}-seed{first}": run_job(f"{key}-seed{first}", config, work, args)
            for key, config in points(first).items()
        }
    )
    if not grid:
        return None
    best = _best(grid, row).removesuffix(f"-seed{first}")
    seeds = {first: grid[f"{best}-seed{first}"]}
    for seed in args.seeds[1:]:
        config = points(seed).get(best)  # none when --cached_only lacks what this point depends on
        if config is not None:
            seeds[seed] = run_job(f"{best}-seed{seed}", config, work, args)
    return {
        "grid": grid,
        "best": best,
        "selected_on": f"{args.eval_split} (the evaluation split itself)",
        "seeds": _found(seeds),
    }


MINING = {"range_max": recipe()["negatives_top_n"], "relative_margin": 0.05, "sampling_strategy": "top"}
"""``mine_hard_negatives``' settings: the top 50 (our BM25 depth), NV-Retriever's TopK-PercPos (95%), as its
docstring recommends."""


def _mined_peer(args: argparse.Namespace, work: Path, common: JobConfig, biencoder: dict) -> dict:
    """The mined-negatives bi-encoder at each seed, with the selected bi-encoder point's learning rate and epochs."""
    point = next(iter(biencoder["seeds"].values()))["config"]
    runs = {}
    for seed in args.seeds:
        config = {
            **_training(args, at_recipe_length(common), "st_biencoder_mined", seed),
            **{key: point[key] for key in ("lr", "epochs", "batch_size_train")},
            "mining": MINING,
        }
        runs[seed] = run_job(f"st_biencoder_mined-seed{seed}", config, work, args)
    return {"seeds": _found(runs)}


def _peer_systems(args: argparse.Namespace, work: Path, common: JobConfig) -> dict[str, dict | None]:
    """The peers' runs: bm25 and zeroshot once, the bi-encoder grid, the cross-encoder grid on its selected point."""
    systems = {}
    for name in ("bm25", "zeroshot"):
        if name in args.systems:
            job = {**at_recipe_length(common), "system": name}
            systems[name] = {"seeds": _found({None: run_job(name, job, work, args)})}
    if {"st_biencoder", "st_biencoder_mined", "st_crossencoder"} & set(args.systems):
        points = lambda seed: st_points(args, common, seed)
        systems["st_biencoder"] = run_grid(args, points, System.retriever().name, work)
    if "st_biencoder_mined" in args.systems and systems["st_biencoder"]:
        systems["st_biencoder_mined"] = _mined_peer(args, work, common, systems["st_biencoder"])
    if "st_crossencoder" in args.systems and systems["st_biencoder"]:
        biencoder = systems["st_biencoder"]
        peer = {**common, "lengths": {**common["lengths"], "reranker_max_length": args.peer_reranker_max_length}}
        points = lambda seed: ce_points(args, peer, biencoder, seed)
        systems["st_crossencoder"] = run_grid(args, points, System.reranked(args.rerank_top_k).name, work)
    return systems


def _our_systems(args: argparse.Namespace, work: Path, common: JobConfig) -> dict[str, dict]:
    """Ours and the ablations, one job per seed."""
    systems = {}
    for name in (s for s in SYSTEMS if not SYSTEMS[s].is_peer and s in args.systems):
        jobs = {seed: ours_config(args, common, name, seed) for seed in args.seeds}
        systems[name] = {
            "seeds": _found({seed: run_job(our_key(name, job), job, work, args) for seed, job in jobs.items()})
        }
    return systems


def run_systems(args: argparse.Namespace, work: Path, data_path: str) -> dict[str, dict]:
    """Every selected system's runs, in a fixed order (peers first: the cross-encoder needs the bi-encoder)."""
    common = _common(args, data_path)
    systems = {**_peer_systems(args, work, common), **_our_systems(args, work, common)}
    systems = {name: system for name, system in systems.items() if system and system["seeds"]}
    if args.fusions:
        _fusions(args, work, systems)
    if args.out_of_domain:
        _out_of_domain(args, work, systems)
    if args.wise_ft:
        _wise_ft(args, work, systems)
    return systems
