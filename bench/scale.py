"""Index and corpus memory and time at 1M passages, extrapolated to MS MARCO (8.8M) and DPR Wikipedia (21M).

    OMP_NUM_THREADS=1 python bench/scale.py                        # ~16 min on one thread: 384-d at 1M, 768-d at 250k
    OMP_NUM_THREADS=1 python bench/scale.py --n 100000 --n768 25000 --arrow_passages 100000 --nlist 256  # smoke run
    OMP_NUM_THREADS=1 python bench/scale.py --only_real   # ~1.5 min: the real-embedding case added to scale.json

Random vectors stand in for embeddings (the model is not the point): float32 normal vectors,
L2-normalised, and queries that are noisy copies of random corpus vectors (noise as large as the
vector, cosine ~0.7 to their source), so each query has one planted neighbour. Isotropic random
vectors are the hardest case for IVF-PQ (real embeddings cluster): its recall here is a floor.

Measured: 384-d (MiniLM, ours) at ``--n`` vectors; 768-d (BERT-base, the paper's) at ``--n768``,
fewer to keep a one-thread run short; an Arrow corpus of ``--arrow_passages`` random-text passages.
Per index: training (the coarse k-means is run once per dimension and shared by the PQ settings,
with the IVF's own clustering parameters, so each index is the one ``DenseIndex.build`` gives), add,
save/load, disk, process RSS after build (psutil, minus the RSS before), queries/s at k=100 on one
thread (through ``DenseIndex.search`` and raw FAISS) and Recall@10/@100 against exact search.
Extrapolated: everything at the target sizes, linearly in the number of passages (training, on a
fixed sample with fixed nlist, is kept constant). Each case runs in a fresh subprocess, so its RSS
is its own.

Real embeddings (``--real_index``, ``--real_model``; by default bench.quality's st_biencoder SciFact index, run
when it exists): its exact flat index's vectors re-indexed as flat16 and IVF-PQ (nlist by the default rule and 64,
PQ48x8 and PQ96x8, several nprobe), with Recall@10/@100 of the exact top-k and nDCG@10 / Recall@100 on the qrels,
beside exact flat: the recall loss the random vectors cannot show. ``--only_real`` runs just this case and adds it
to the existing JSON (the Markdown is remade from the JSON). Writes bench/results/scale.json and scale.md. Never
run in CI.
"""

import argparse
import gc
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from reporting import write_report  # bench/reporting.py (scripts run as python bench/NAME.py)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
REAL = ROOT / "outputs" / "bench" / "quality" / "st_biencoder-lr2e-05-ep1-seed42"  # a bench.quality job folder
TARGETS = {"MS MARCO": 8_841_823, "DPR Wikipedia": 21_015_324}
K = 100


def _threads(n: int) -> None:
    import faiss
    import torch

    faiss.omp_set_num_threads(n)
    torch.set_num_threads(n)


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def _anon_mb() -> float:
    """Resident memory that is the process's own (RSS minus file-backed pages, e.g. a memory-mapped corpus)."""
    import psutil

    info = psutil.Process().memory_info()
    return (info.rss - info.shared) / 2**20


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _vectors(n: int, dim: int, seed: int = 0, chunk: int = 100_000) -> np.ndarray:
    """Unit-norm float32 normal vectors, made in chunks (no float64 copy of the whole corpus)."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, chunk):
        block = rng.standard_normal((min(chunk, n - start), dim), dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[start : start + len(block)] = block
    return out


def _queries(vectors: np.ndarray, count: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Noisy copies of ``count`` random corpus vectors (noise norm ~1, as the vector's) and their sources."""
    rng = np.random.default_rng(seed)
    sources = rng.choice(len(vectors), count, replace=False)
    queries = vectors[sources] + rng.standard_normal((count, vectors.shape[1]), dtype=np.float32) / np.sqrt(
        vectors.shape[1]
    )
    return queries / np.linalg.norm(queries, axis=1, keepdims=True), sources


def _recall(found: "np.ndarray | list[np.ndarray]", exact: "np.ndarray | list[np.ndarray]", k: int) -> float:
    return float(np.mean([len(set(f[:k].tolist()) & set(e[:k].tolist())) / k for f, e in zip(found, exact)]))


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def case_index(args) -> dict:
    """One index type at (n, dim): build, memory, disk, search speed and recall."""
    import faiss

    from modeling_rq2.retrieval.index import DenseIndex, IndexOptions

    _threads(args.threads)
    n, dim, kind, work = args.case_n, args.case_dim, args.case_kind, Path(args.workdir)
    vectors = _vectors(n, dim)
    queries, sources = _queries(vectors, args.queries)
    exact_path = work / f"exact-{dim}-{n}.npy"
    exact = np.load(exact_path) if exact_path.is_file() else None
    gc.collect()
    baseline, peak_before = _rss_mb(), _peak_mb()
    result: dict = {"n": n, "dim": dim, "measured": True, "baseline_rss_mb": baseline}

    pq_m = args.case_pq
    options = (
        IndexOptions(kind)
        if kind != "ivfpq"
        else IndexOptions("ivfpq", ivf_nlist=args.nlist, ivf_nprobe=args.nprobe[0], pq_m=pq_m, pq_nbits=8)
    )
    index = options.build(dim, train_size=n)
    train_s = 0.0
    if not index.is_trained:  # IVF-PQ: the sample DenseIndex.build draws, coarse k-means shared across PQ settings
        rows = None if n <= args.train_sample else np.random.default_rng(0).choice(n, args.train_sample, replace=False)
        sample = vectors if rows is None else vectors[rows]
        ivf = faiss.extract_index_ivf(index)
        centroids_path = work / f"coarse-{dim}-{n}-{args.nlist}.npy"
        if centroids_path.is_file():
            coarse = json.loads(centroids_path.with_suffix(".json").read_text())
            result["coarse_train_s"], result["coarse_shared"] = coarse["seconds"], True
            ivf.quantizer.add(np.load(centroids_path))
        else:
            t0 = time.perf_counter()
            faiss.Clustering(dim, args.nlist, ivf.cp).train(sample, ivf.quantizer)  # what IndexIVF.train runs
            result["coarse_train_s"], result["coarse_shared"] = time.perf_counter() - t0, False
            np.save(centroids_path, ivf.quantizer.reconstruct_n(0, args.nlist))
            centroids_path.with_suffix(".json").write_text(json.dumps({"seconds": result["coarse_train_s"]}))
        t0 = time.perf_counter()
        index.train(sample)  # the quantizer holds nlist centroids: only the PQ (on residuals) is trained here
        result["pq_train_s"] = time.perf_counter() - t0
        train_s = result["coarse_train_s"] + result["pq_train_s"]
        del sample
    options.apply_search_settings(index)
    result["train_s"] = train_s
    gc.collect()
    result["rss_before_add_mb"] = _rss_mb() - baseline  # the fixed part: centroids, code books, allocator
    result["disk_index_fixed_bytes"] = len(faiss.serialize_index(index))
    ids = [str(i) for i in range(n)]
    dense = DenseIndex(dim, "bench", index, options=options)
    t0 = time.perf_counter()
    dense.add(vectors, ids)
    result["add_s"] = time.perf_counter() - t0
    del ids
    result["build_s"] = train_s + result["add_s"]  # a shared coarse k-means counts in full for each PQ setting
    gc.collect()
    result["rss_after_build_mb"] = _rss_mb() - baseline
    result["peak_rss_growth_mb"] = max(0.0, _peak_mb() - max(peak_before, baseline))

    folder = work / f"index-{kind}{pq_m or ''}-{dim}-{n}"
    shutil.rmtree(folder, ignore_errors=True)
    t0 = time.perf_counter()
    dense.save(folder)
    result["save_s"] = time.perf_counter() - t0
    result["disk_index_bytes"] = (folder / "index").stat().st_size
    result["disk_docid_bytes"] = (folder / "docid").stat().st_size
    t0 = time.perf_counter()
    loaded = DenseIndex.load(folder, expected_dim=dim)
    result["load_s"] = time.perf_counter() - t0
    same = [h[0][0] for h in loaded.search(queries[:20], 5)] == [h[0][0] for h in dense.search(queries[:20], 5)]
    result["round_trip_same_top1"] = same
    del loaded
    shutil.rmtree(folder)
    gc.collect()

    nprobes = args.nprobe if kind == "ivfpq" else [None]
    result["search"] = {}
    for nprobe in nprobes:
        if nprobe is not None:
            faiss.extract_index_ivf(dense.index).nprobe = nprobe
        dense.search(queries[:10], K)  # warm-up
        t0 = time.perf_counter()
        hits = dense.search(queries, K)
        ours_s = time.perf_counter() - t0
        found = np.array([[int(d) for d, _ in h] for h in hits])
        entry = {"queries_per_s": len(queries) / ours_s}
        if kind != "flat16":  # raw FAISS beside ours (flat: this is also the exact ground truth)
            t0 = time.perf_counter()
            _, raw = dense.index.search(queries, K)
            entry["faiss_queries_per_s"] = len(queries) / (time.perf_counter() - t0)
            assert (raw == found).all(), "DenseIndex.search and FAISS disagree"
        if kind == "flat":
            np.save(exact_path, found)
            exact = found
        if exact is not None:
            entry["recall@10"], entry["recall@100"] = _recall(found, exact, 10), _recall(found, exact, K)
        for k in (1, 10, K):
            entry[f"source@{k}"] = float(np.mean([s in f[:k] for s, f in zip(sources, found)]))
        result["search"][str(nprobe) if nprobe else "-"] = entry
    return result


def _words(rng: np.random.Generator, size: int) -> np.ndarray:
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    lengths = rng.integers(2, 10, size)  # 2..9 letters, mean 5.5: English-like
    return np.array(["".join(rng.choice(letters, n)) for n in lengths])


def _passages(n: int, seed: int = 0, chunk: int = 10_000):
    """~60 random words per passage (30..90), MS MARCO's length; ids 0..n-1 as MS MARCO's pids; no title."""
    rng = np.random.default_rng(seed)
    vocab = _words(rng, 30_000)
    for start in range(0, n, chunk):
        count = min(chunk, n - start)
        lengths = rng.integers(30, 91, count)
        words = vocab[rng.integers(0, len(vocab), lengths.sum())].tolist()
        ends = np.cumsum(lengths).tolist()
        for i, (a, b) in enumerate(zip([0] + ends[:-1], ends)):
            yield {"_id": str(start + i), "title": "", "text": " ".join(words[a:b])}


def case_arrow_write(args) -> dict:
    import datasets

    datasets.disable_progress_bars()
    cache = Path(args.workdir) / "arrow-cache"
    shutil.rmtree(cache, ignore_errors=True)
    features = datasets.Features({k: datasets.Value("string") for k in ("_id", "title", "text")})
    t0 = time.perf_counter()
    corpus = datasets.Dataset.from_generator(
        _passages, features=features, cache_dir=str(cache), gen_kwargs={"n": args.arrow_passages}
    )
    write_s = time.perf_counter() - t0
    files = [f["filename"] for f in corpus.cache_files]
    return {
        "n": len(corpus),
        "write_s": write_s,
        "files": files,
        "disk_bytes": sum(os.path.getsize(f) for f in files),
        "cache_folder_bytes": _folder_bytes(cache),
    }


def case_arrow_read(args) -> dict:
    """A fresh process: open the cache memory-mapped, read random batches, list the ids (as the pipeline does)."""
    import datasets

    _threads(args.threads)
    try:  # imported before the baseline: torch and transformers come with it
        from modeling_rq2.data.corpus import CorpusPassages, lookup_passages
    except ImportError:
        CorpusPassages = None
    files = json.loads(Path(args.workdir, "arrow.json").read_text())["files"]
    gc.collect()
    baseline, anon = _rss_mb(), _anon_mb()
    t0 = time.perf_counter()
    corpus = (
        datasets.concatenate_datasets([datasets.Dataset.from_file(f) for f in files])
        if len(files) > 1
        else datasets.Dataset.from_file(files[0])
    )
    result = {
        "n": len(corpus),
        "load_s": time.perf_counter() - t0,
        "rss_after_load_mb": _rss_mb() - baseline,
        "anon_after_load_mb": _anon_mb() - anon,
    }
    rng = np.random.default_rng(2)
    times = []
    for _ in range(args.read_repeats):
        rows = rng.choice(len(corpus), 1000, replace=False).tolist()
        t0 = time.perf_counter()
        batch = corpus[rows]
        times.append(time.perf_counter() - t0)
        assert len(batch["text"]) == 1000
    result["read_1000_random_rows_s"] = {"first": times[0], "median": float(np.median(times))}
    result["words_per_passage"] = float(np.mean([len(t.split()) for t in batch["text"]]))
    result["rss_after_reads_mb"], result["anon_after_reads_mb"] = _rss_mb() - baseline, _anon_mb() - anon
    if CorpusPassages is not None:  # the pipeline's by-id view (consecutive ids: no table) and its one-take lookup
        t0 = time.perf_counter()
        by_id = CorpusPassages(corpus)
        result["by_id_view_s"] = time.perf_counter() - t0
        times = []
        for _ in range(args.read_repeats):
            ids = [str(i) for i in rng.choice(len(corpus), 1000, replace=False)]
            t0 = time.perf_counter()
            lookup_passages(by_id, ids)
            times.append(time.perf_counter() - t0)
        result["lookup_1000_random_ids_s"] = {"first": times[0], "median": float(np.median(times))}
        result["rss_after_by_id_mb"], result["anon_after_by_id_mb"] = _rss_mb() - baseline, _anon_mb() - anon
    before = _rss_mb()
    t0 = time.perf_counter()
    all_ids = list(corpus["_id"])  # what a pipeline over a Dataset corpus holds (beside the index's own id list)
    result["id_list_s"] = time.perf_counter() - t0
    result["id_list_rss_mb"] = _rss_mb() - before
    del all_ids
    return result


def _real_hits(dense, queries: np.ndarray, data) -> tuple[list[np.ndarray], dict[str, float]]:
    """Top-K doc ids per query and nDCG@10 / Recall@100 against the qrels, scored as bench.quality does.

    An IVF search whose probed lists hold fewer than K passages returns a shorter list: ``short_lists`` counts them.
    """
    from modeling_rq2.evaluation.metrics import evaluate_run
    from modeling_rq2.retrieval.pipeline import to_run

    hits = dense.search(queries, K)
    means = evaluate_run(to_run(data.queries["_id"], hits), data.qrels, ("ndcg@10", "recall@100"))[0]
    quality = {
        "ndcg@10": means["ndcg@10"],
        "qrels_recall@100": means["recall@100"],
        "short_lists": sum(len(h) < K for h in hits),
    }
    return [np.array([d for d, _ in h]) for h in hits], quality


def case_real(args) -> dict:
    """Recall loss of flat16 and IVF-PQ on real embeddings: a saved bench.quality index and its model's queries.

    Queries are encoded as bench/quality/jobs.py's ``_dense`` encoded them (``load_retriever`` on the model folder with
    the job's lengths; the Normalize module makes it cosine), and the index is loaded with that retriever, so a
    fingerprint mismatch (other weights, pooling, normalisation or passage length) is refused.
    """
    import faiss

    from modeling_rq2.data import load_beir
    from modeling_rq2.models.loading import load_retriever
    from modeling_rq2.retrieval.index import DenseIndex, IndexOptions

    _threads(args.threads)
    model, folder = Path(args.real_model), Path(args.real_index)
    job_file = model.parent / "job.json"  # the bench.quality job that built the index
    job = (
        json.loads(job_file.read_text())
        if job_file.is_file()
        else {"data": {"path": "scifact", "eval_split": "test"}, "lengths": {}}
    )
    lengths = {k: job["lengths"][k] for k in ("query_max_length", "passage_max_length") if k in job["lengths"]}
    retriever = load_retriever(str(model), **lengths).eval()
    exact = DenseIndex.load(folder, retriever=retriever)
    data = load_beir(job["data"]["path"], job["data"]["eval_split"])
    queries = retriever.encode_queries(list(data.queries["text"]), batch_size=64, show_progress_bar=False)
    vectors = exact.index.reconstruct_n(0, exact.index.ntotal)
    exact_ids, _ = _real_hits(exact, queries, data)
    n = len(exact)
    result = {
        "index": os.path.relpath(folder.resolve(), ROOT),
        "model": os.path.relpath(model.resolve(), ROOT),
        "dataset": f"{data.name} {data.split}",
        "n": n,
        "queries": len(queries),
        "dim": exact.dim,
        "similarity": retriever.config.similarity,
        "query_max_length": retriever.config.query_max_length,
        "rows": [],
    }

    def row(label: str, dense, nlist: int | None = None, nprobe: int | None = None) -> dict:
        found, quality = _real_hits(dense, queries, data)
        empty = faiss.clone_index(dense.index)
        empty.reset()  # what is left without the codes: centroids and code books (IVF-PQ), a header
        index_bytes, fixed_bytes = len(faiss.serialize_index(dense.index)), len(faiss.serialize_index(empty))
        return {
            "label": label,
            "nlist": nlist,
            "nprobe": nprobe,
            "nprobe_frac": nprobe / nlist if nlist else None,
            "index_bytes": index_bytes,
            "bytes_per_passage": (index_bytes - fixed_bytes) / n,
            "recall@10": _recall(found, exact_ids, 10),
            "recall@100": _recall(found, exact_ids, K),
            **quality,
        }

    result["rows"].append(row(_label("flat", None, 0), exact))
    result["rows"].append(
        row(_label("flat16", None, 0), DenseIndex.build(vectors, exact.doc_ids, IndexOptions("flat16")))
    )
    for nlist in args.real_nlist:
        for pq in args.real_pq:
            dense = DenseIndex.build(
                vectors, exact.doc_ids, IndexOptions("ivfpq", ivf_nlist=nlist or None, pq_m=pq, pq_nbits=8)
            )
            ivf = faiss.extract_index_ivf(dense.index)
            for nprobe in args.real_nprobe:
                ivf.nprobe = nprobe
                result["rows"].append(
                    {**row(_label("ivfpq", pq, ivf.nlist), dense, ivf.nlist, nprobe), "default_nlist": not nlist}
                )
    return result


def run_case(args) -> dict:
    result = globals()[f"case_{args.case}"](args)
    result["peak_rss_mb"] = _peak_mb()
    return result


def _subprocess(args, argv: list[str], name: str, **extra) -> dict:
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(args.threads),
        "OPENBLAS_NUM_THREADS": str(args.threads),
        "MKL_NUM_THREADS": str(args.threads),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
    }
    more = [x for k, v in extra.items() for x in (f"--{k}", str(v))]
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, __file__, *argv, "--case", name, *more], capture_output=True, text=True, env=env, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"case {name} {extra} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"{name} {extra}: {json.dumps(result)} ({time.perf_counter() - started:.0f} s)", flush=True)
    return result


def _label(kind: str, pq: int | None, nlist: int) -> str:
    return {"flat": "flat (IndexFlatIP, fp32)", "flat16": "flat16 (SQ fp16)"}.get(kind) or f"ivfpq IVF{nlist},PQ{pq}x8"


def extrapolate(measured: dict, n_to: int) -> dict:
    """A measured index (or corpus) scaled linearly in passages; training (fixed sample and nlist) kept constant."""
    ratio = n_to / measured["n"]
    out = {"n": n_to, "dim": measured.get("dim"), "measured": False, "from_n": measured["n"]}
    if "write_s" in measured:  # Arrow corpus
        out.update(
            disk_bytes=measured["disk_bytes"] * ratio,
            rss_after_load_mb=measured["rss_after_load_mb"],
            anon_after_reads_mb=measured["anon_after_reads_mb"],
            id_list_rss_mb=measured["id_list_rss_mb"] * ratio,
            read_1000_random_rows_s=measured["read_1000_random_rows_s"]["median"],
        )
        return out
    fixed_rss, fixed_disk = measured["rss_before_add_mb"], measured["disk_index_fixed_bytes"]  # + a per-passage part
    out.update(
        train_s=measured["train_s"],
        add_s=measured["add_s"] * ratio,
        build_s=measured["train_s"] + measured["add_s"] * ratio,
        disk_index_bytes=fixed_disk + (measured["disk_index_bytes"] - fixed_disk) * ratio,
        disk_docid_bytes=measured["disk_docid_bytes"] * ratio,
        rss_after_build_mb=fixed_rss + (measured["rss_after_build_mb"] - fixed_rss) * ratio,
        load_s=measured["load_s"] * ratio,
    )
    out["search"] = {
        p: {"queries_per_s": s["queries_per_s"] / ratio, **{k: v for k, v in s.items() if k.startswith("recall")}}
        for p, s in measured["search"].items()
    }  # exhaustive: exact; IVF at fixed nlist/nprobe: lists grow with n
    return out


def _fmt_s(seconds: float) -> str:
    return (
        f"{seconds:.1f} s"
        if seconds < 120
        else f"{seconds / 60:.1f} min"
        if seconds < 7200
        else f"{seconds / 3600:.1f} h"
    )


def _fmt_b(value: float) -> str:
    return f"{value / 2**30:.2f} GiB" if value >= 2**30 else f"{value / 2**20:.0f} MiB"


def markdown(report: dict) -> str:
    s = report["settings"]
    lines = [
        (
            f"One thread (faiss, torch, BLAS), {report['machine']['cpus']}-core {report['machine']['platform']} "
            "shared with another job: "
            "times are noisy, ratios and memory are not. RSS = psutil resident set of the process after the build, "
            "minus the RSS before it (vectors already in memory): the index plus its doc-id list. Disk = `index` + "
            "`docid` files. "
            f"Queries/s: {s['queries']} queries, k={K}, through `DenseIndex.search` (raw FAISS in brackets). "
            f"Recall@k: share of exact flat top-k ids found; planted@k: queries whose source passage is in the top k. "
            "**M** = measured; **E** = extrapolated linearly in passages from the measured row of the same index and "
            "dimension "
            "(RSS and disk as the measured fixed part, e.g. centroids, plus the per-passage part times the passages; "
            "training on a fixed sample with fixed nlist is kept constant; IVF search time scales with list length "
            "at fixed "
            "nlist/nprobe, a pessimistic figure since a larger corpus would use more lists; recall is carried over, "
            "not measured)."
        ),
        "",
        (
            "On isotropic random vectors every neighbour but the planted one is a near-tie (cosines ~N(0, 1/d)), so "
            "the exact "
            "top-k past rank 1 is noise that no quantiser keeps: IVF-PQ's Recall@k here is a floor, not what real "
            "(clustered) "
            "embeddings get; planted@k shows the one meaningful neighbour is found whenever its inverted list is "
            "probed. "
            "Its recall on encoded passages is measured in the real-embedding table below. flat16 scans every code "
            "per query (no BLAS "
            "batching), so it searches several times slower than flat for half the memory."
        ),
        "",
        "| dim | index | nprobe | passages | M/E | train | add | RSS | disk | load | queries/s | R@10 | R@100 | "
        "planted@10 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in report["rows"]:
        for nprobe, search in row["search"].items():
            qps = (
                f"{search['queries_per_s']:.1f}" if search["queries_per_s"] >= 10 else f"{search['queries_per_s']:.2f}"
            )
            if "faiss_queries_per_s" in search:
                qps += f" ({search['faiss_queries_per_s']:.0f})"
            cells = [
                row["dim"],
                row["label"],
                nprobe,
                f"{row['n']:,}",
                "M" if row["measured"] else "E",
                _fmt_s(row["train_s"]) if row["train_s"] else "-",
                _fmt_s(row["add_s"]),
                _fmt_b(row["rss_after_build_mb"] * 2**20),
                _fmt_b(row["disk_index_bytes"] + row["disk_docid_bytes"]),
                _fmt_s(row["load_s"]),
                qps,
                *(f"{search[k]:.3f}" if k in search else "-" for k in ("recall@10", "recall@100", "source@10")),
            ]
            lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    lines += [
        "",
        (
            "IVF-PQ's R@10 / R@100 above are a floor measured on isotropic random vectors (every neighbour past the "
            "planted one a near-tie), not an estimate for real embeddings: see the recall loss on real embeddings "
            "below."
        ),
    ]
    if report.get("real"):
        lines += ["", markdown_real(report["real"])]
    a = report.get("arrow")
    if a:
        m, extra = a["measured"], a["extrapolated"]
        lines += [
            "",
            (
                f"Arrow corpus (`datasets`, ~{m['words_per_passage']:.0f} random words per passage, empty title, ids "
                "0..n-1), "
                "memory-mapped from the cache file (`Dataset.from_file`) in a fresh process (page cache warm: just "
                "written). "
                "RSS after load: growth of the whole resident set; private: growth of the process's own memory after "
                f"{s['read_repeats']} random reads (the rest is the file's pages, shared page cache the kernel can "
                "drop). "
                "Lookup: `CorpusPassages.get_many` (the pipeline's by-id view). "
                "Id list: `list(corpus['_id'])`, what a pipeline over a Dataset corpus keeps. Write time is our "
                "random-text "
                "generator's (not extrapolated)."
            ),
            "",
            "| passages | M/E | write | disk | RSS after load | private after reads | read 1,000 random rows | "
            "lookup 1,000 random ids | id list RSS |",
            "|---|---|---|---|---|---|---|---|---|",
            f"| {m['n']:,} | M | {_fmt_s(m['write_s'])} | {_fmt_b(m['disk_bytes'])} | {m['rss_after_load_mb']:.0f} "
            "MiB | "
            f"{m['anon_after_reads_mb']:.0f} MiB | "
            f"{m['read_1000_random_rows_s']['median'] * 1000:.0f} ms (first "
            f"{m['read_1000_random_rows_s']['first'] * 1000:.0f} ms) | "
            f"{m['lookup_1000_random_ids_s']['median'] * 1000:.0f} ms | {m['id_list_rss_mb']:.0f} MiB |"
            if "lookup_1000_random_ids_s" in m
            else f"| {m['n']:,} | M | ... |",
        ]
        for name, e in extra.items():
            lines.append(
                f"| {e['n']:,} ({name}) | E | - | {_fmt_b(e['disk_bytes'])} | ~{e['rss_after_load_mb']:.0f} MiB | "
                f"~{e['anon_after_reads_mb']:.0f} MiB | "
                f"~{e['read_1000_random_rows_s'] * 1000:.0f} ms | - | {_fmt_b(e['id_list_rss_mb'] * 2**20)} |"
            )
        lines += ["", "DPR's passages are 100 words plus a title: scale its disk figure by ~1.7."]
    lines += [
        "",
        "Embedding shards on disk while encoding (float32 .npy, exact): "
        + ", ".join(f"{name} {_fmt_b(n * d * 4)} at {d}-d" for name, n in TARGETS.items() for d in (384, 768))
        + ".",
    ]
    return "\n".join(lines)


def markdown_real(real: dict) -> str:
    """The real-embedding table: recall of the exact top-k and retrieval quality, beside exact flat."""
    flat = real["rows"][0]
    lines = [
        f"### Recall loss on real embeddings (SciFact, {real['n']:,} passages, fine-tuned MiniLM)",
        "",
        (
            "The exact index bench.quality saved for its st_biencoder peer (all-MiniLM-L6-v2 fine-tuned on "
            "SciFact train, "
            f"{real['dim']}-d, {real['similarity']}: `{real['index']}`); "
            f"its vectors re-indexed with `DenseIndex.build`; the {real['queries']} {real['dataset']} queries "
            "encoded as "
            f"bench.quality did (`load_retriever`, query length {real['query_max_length']}, index fingerprint "
            "checked). "
            "R@k vs exact: share of exact flat top-k ids found (a query whose probed lists hold fewer than 100 "
            "passages gets a short list, its missing ranks count as misses); nDCG@10 and Recall@100 against the "
            "qrels (our evaluation, "
            "as bench.quality), Δ against exact flat. nlist: IndexOptions' default rule at this size (min(4√n, "
            "n/39)) "
            "and 64; nprobe/nlist, the share of the corpus scanned, is what carries over to a larger corpus at its own "
            "nlist. Index bytes: `faiss.serialize_index`; per passage: without the fixed part (centroids, PQ code "
            "books, "
            "which dominate at this size). PQ code books are trained on the whole corpus, fewer points than FAISS "
            "recommends (39 x 256), so PQ is a little worse here than on a large corpus."
        ),
        "",
        "| index | nlist | nprobe | nprobe/nlist | index bytes | bytes/passage | R@10 vs exact | R@100 vs exact | "
        "nDCG@10 (Δ) | Recall@100 (Δ) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in real["rows"]:
        cells = [
            r["label"],
            r["nlist"] or "-",
            r["nprobe"] or "-",
            f"{r['nprobe_frac']:.1%}" if r["nprobe_frac"] else "-",
            f"{r['index_bytes'] / 2**10:,.0f} KiB",
            f"{r['bytes_per_passage']:.0f}",
            f"{r['recall@10']:.3f}",
            f"{r['recall@100']:.3f}",
            *(f"{r[k]:.3f} ({r[k] - flat[k]:+.3f})" for k in ("ndcg@10", "qrels_recall@100")),
        ]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1_000_000, help="vectors measured at 384-d")
    parser.add_argument(
        "--n768", type=int, default=250_000, help="vectors measured at 768-d (extrapolated to 1M and beyond)"
    )
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--nlist", type=int, default=4096)
    parser.add_argument("--nprobe", type=int, nargs="+", default=[32, 64])
    parser.add_argument(
        "--pq384", type=int, nargs="*", default=[48, 96], help="PQ sub-quantisers at 384-d (8 and 4 dims per byte)"
    )
    parser.add_argument(
        "--pq768", type=int, nargs="*", default=[96], help="PQ sub-quantisers at 768-d (8 dims per byte)"
    )
    parser.add_argument(
        "--train_sample", type=int, default=200_000, help="IVF-PQ training sample (DenseIndex.build's default)"
    )
    parser.add_argument("--arrow_passages", type=int, default=1_000_000)
    parser.add_argument("--read_repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--workdir", default="/tmp/rq2-scale", help="scratch space (vectors are regenerated, not stored)"
    )
    parser.add_argument("--output", default=str(RESULTS / "scale"))
    parser.add_argument(
        "--real_index", default=str(REAL / "index"), help="a saved exact DenseIndex (skipped if missing)"
    )
    parser.add_argument(
        "--real_model", default=str(REAL / "model"), help="the model that encoded it (skipped if missing)"
    )
    parser.add_argument(
        "--real_nlist", type=int, nargs="+", default=[0, 64], help="IVF lists on real embeddings (0: the default rule)"
    )
    parser.add_argument("--real_pq", type=int, nargs="+", default=[48, 96])
    parser.add_argument("--real_nprobe", type=int, nargs="+", default=[4, 8, 16, 32])
    parser.add_argument(
        "--only_real",
        action="store_true",
        help="measure only the real-embedding case and add it to the existing OUTPUT.json, rewriting OUTPUT.md",
    )
    parser.add_argument("--case", help=argparse.SUPPRESS)  # internal: run one case and print its JSON
    for name in ("case_n", "case_dim", "case_pq"):
        parser.add_argument(f"--{name}", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--case_kind", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.case:
        print(json.dumps(run_case(args)))
        return {}
    forwarded = [a for a in (argv if argv is not None else sys.argv[1:])]
    output = Path(args.output)
    has_real = Path(args.real_index).is_dir() and Path(args.real_model).is_dir()
    if args.only_real:
        if not has_real:
            raise SystemExit(f"--only_real: {args.real_index} or {args.real_model} is missing")
        report = json.loads(output.with_suffix(".json").read_text(encoding="utf-8"))
        report["real"] = _subprocess(args, forwarded, "real")
        return write_report(report, output, markdown)

    work = Path(args.workdir)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    started = time.perf_counter()
    rows = []
    for dim, n, pqs in ((384, args.n, args.pq384), (768, args.n768, args.pq768)):
        if n <= 0:
            continue
        for kind, pq in [("flat", None), ("flat16", None)] + [("ivfpq", m) for m in pqs]:
            extra = {"case_n": n, "case_dim": dim, "case_kind": kind, **({"case_pq": pq} if pq else {})}
            measured = _subprocess(args, forwarded, "index", **extra)
            label = _label(kind, pq, args.nlist)
            rows.append({**measured, "label": label})
            for n_to in sorted({1_000_000, *TARGETS.values()} - {n}):
                if n_to > n:
                    rows.append({**extrapolate(measured, n_to), "label": label})
    arrow = None
    if args.arrow_passages > 0:
        written = _subprocess(args, forwarded, "arrow_write")
        (work / "arrow.json").write_text(json.dumps(written))
        read = _subprocess(args, forwarded, "arrow_read")
        measured = {**written, **read}
        arrow = {"measured": measured, "extrapolated": {name: extrapolate(measured, n) for name, n in TARGETS.items()}}
    shutil.rmtree(work, ignore_errors=True)
    import faiss

    report = {
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "threads": args.threads,
            "faiss": faiss.__version__,
            "numpy": np.__version__,
        },
        "settings": {k: v for k, v in vars(args).items() if not k.startswith("case")},
        "targets": TARGETS,
        "rows": rows,
        "arrow": arrow,
        "real": _subprocess(args, forwarded, "real") if has_real else None,
        "wall_s": time.perf_counter() - started,
    }
    return write_report(report, output, markdown)


if __name__ == "__main__":
    main()
