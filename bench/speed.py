"""Speed and memory, ours beside sentence-transformers and raw FAISS, in one run (ratios hold on a noisy machine).

    python bench/speed.py                        # all cases, SciFact passages, the offline MiniLM
    python bench/speed.py --passages 256 --steps 3 --cases encode_ours encode_st

Each case runs in a fresh subprocess, so its peak resident memory (ru_maxrss) is its own. Writes
bench/results/speed.json and speed.md. Never run in CI.
"""

import argparse
import itertools
import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import numpy as np

from reporting import write_report  # bench/reporting.py (scripts run as python bench/NAME.py)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
CASES = (
    "encode_ours",
    "encode_ours_bf16",
    "encode_ours_int8",
    "encode_ours_openvino",
    "encode_ours_openvino_bf16",
    "encode_st",
    "encode_st_bf16",
    "rerank_ours",
    "rerank_ours_bf16",
    "rerank_ours_int8",
    "rerank_ours_openvino",
    "rerank_ours_openvino_bf16",
    "rerank_st",
    "rerank_st_bf16",
    "train_ours",
    "train_ours_bf16",
    "train_ours_fused_adamw",
    "train_ours_compile",
    "train_ours_bf16_fused_adamw",
    "train_ours_bf16_compile",
    "train_ours_bf16_math_attention",
    "train_st",
    "profile_ours",
    "search_ours",
    "search_faiss",
    "scaling",
)
NOT_NATIVE = {"skipped": "no native bf16 on this CPU (emulated bf16 runs slower than fp32)"}


def _passages(n: int) -> list[dict]:
    from modeling_rq2.data import load_beir

    return load_beir("scifact", "test").passages()[:n]


def _lists(batch: int, m: int) -> list[dict]:
    """The same (query, [positive, negatives...]) lists for both systems: SciFact train claims with BM25 negatives."""
    from modeling_rq2.data import load_beir
    from modeling_rq2.training.lists import ListwiseDataset, bm25_negatives, build_instances

    data = load_beir("scifact", "train")
    data.queries = data.queries.select(range(batch * 8))
    instances = build_instances(data, bm25_negatives(data, 20))
    lists = ListwiseDataset(instances, dict(zip(data.corpus["_id"], data.passages(), strict=True)), m)
    return [lists[i] for i in range(len(lists))]


def _step_batches(args) -> Iterator[list[dict]]:
    """Successive batches of ``queries_per_step`` lists, in a cycle: lengths vary from step to step as in training."""
    n = args.queries_per_step
    lists = _lists(n, args.list_size)
    return itertools.cycle([lists[i * n : (i + 1) * n] for i in range(len(lists) // n)])


def _timed(fn, repeats: int) -> float:
    fn()  # warm-up (allocations, kernels)
    started = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - started) / repeats


def _native_bf16() -> bool:
    """Whether bf16 cases run: the CPU computes bf16 natively, or ``--allow_emulated_bf16`` asks to see the cost."""
    import torch

    from modeling_rq2.models.modeling_rq2 import native_bf16

    return native_bf16(torch.device("cpu")) or os.environ.get("RQ2_BENCH_EMULATED_BF16") == "1"


def _ours(args, task: str, precision: str, backend: str = "torch") -> dict:
    """Our retriever encoding passages (``task`` encode) or our re-ranker scoring pairs (rerank) at ``precision`` on
    ``backend``."""
    from modeling_rq2.models.loading import load_reranker, load_retriever

    if precision == "bf16" and not _native_bf16():
        return dict(NOT_NATIVE)
    if task == "encode":
        model, items = load_retriever("default", passage_max_length=args.max_length), _passages(args.passages)
        call, unit = model.encode_passages, "passages_per_s"
    else:
        model, items = load_reranker("default", max_length=args.max_length), _pairs(args)
        call, unit = model.score_pairs, "pairs_per_s"
    seconds = _timed(lambda: call(items, args.batch_size, False, precision=precision, backend=backend), 1)
    return {unit: len(items) / seconds}


def _encode_st(args, dtype: str | None) -> dict:
    from sentence_transformers import SentenceTransformer

    from modeling_rq2.models.loading import default_backbone_path
    from modeling_rq2.models.modeling_rq2 import format_passage

    if dtype == "bfloat16" and not _native_bf16():
        return dict(NOT_NATIVE)
    kwargs = {"model_kwargs": {"dtype": dtype}} if dtype else {}
    model = SentenceTransformer(default_backbone_path(), device="cpu", **kwargs)
    model.max_seq_length = args.max_length
    texts = [format_passage(p, "[SEP]") for p in _passages(args.passages)]
    seconds = _timed(lambda: model.encode(texts, batch_size=args.batch_size, show_progress_bar=False), 1)
    return {"passages_per_s": len(texts) / seconds}


def _pairs(args) -> list[tuple[str, dict]]:
    """(claim, passage) pairs: SciFact train claims, each with passages of the corpus in turn."""
    from modeling_rq2.data import load_beir

    data = load_beir("scifact", "train")
    passages, claims = _passages(args.pairs), data.queries["text"]
    return [(claims[i % len(claims)], passage) for i, passage in enumerate(passages)]


def _rerank_st(args, dtype: str | None) -> dict:
    """``CrossEncoder.predict`` on the same pairs (our re-ranker's input form: ``title [SEP] text``), its weights in
    ``dtype`` when given."""
    from sentence_transformers import CrossEncoder

    from modeling_rq2.models.loading import default_backbone_path
    from modeling_rq2.models.modeling_rq2 import format_passage

    if dtype == "bfloat16" and not _native_bf16():
        return dict(NOT_NATIVE)
    kwargs = {"model_kwargs": {"dtype": dtype}} if dtype else {}
    model = CrossEncoder(default_backbone_path(), num_labels=1, device="cpu", max_length=args.max_length, **kwargs)
    pairs = [(q, format_passage(p, "[SEP]")) for q, p in _pairs(args)]
    seconds = _timed(lambda: model.predict(pairs, batch_size=args.batch_size, show_progress_bar=False), 1)
    return {"pairs_per_s": len(pairs) / seconds}


def _joint_setup(args, *, fused_adamw: bool = False, compiled: bool = False):
    """Both models as the trainer builds them (dropout off in attention), their collator, AdamW (its fused CPU kernel
    when asked), the step batches and the loss; both towers under ``torch.compile`` when asked."""
    import torch

    from modeling_rq2.models.loading import load_reranker, load_retriever
    from modeling_rq2.training.arguments import LossArguments
    from modeling_rq2.training.collator import ListwiseCollator
    from modeling_rq2.training.joint import JointModel, step_losses

    dropout = {"attention_probs_dropout_prob": 0.0}
    retriever = load_retriever("default", dropout, passage_max_length=args.train_length)
    reranker = load_reranker("default", dropout, pooling="mean", max_length=args.train_length)
    collate = ListwiseCollator(
        retriever, reranker, args.list_size, passage_max_length=args.train_length, pair_max_length=args.train_length
    )
    joint = JointModel(retriever, reranker).train()
    optimizer = torch.optim.AdamW(joint.parameters(), lr=1e-5, fused=fused_adamw)
    if compiled:
        joint.retriever, joint.reranker = torch.compile(joint.retriever), torch.compile(joint.reranker)
    return torch, collate, joint, optimizer, _step_batches(args), LossArguments(), step_losses


def _train_ours(
    args, *, bf16: bool, fused_adamw: bool = False, compiled: bool = False, math_attention: bool = False
) -> dict:
    """Joint steps as the trainer takes them, each on the next batch (lengths vary as in training): the forward under
    bf16 autocast when asked (with the trainer's attention), the loss in float32; optionally AdamW's fused CPU
    kernel, both towers under ``torch.compile`` (its first step, which compiles, is reported apart), or PyTorch's math
    attention kernel in place of the trainer's (what it ran under bf16 before transformers' eager attention)."""
    if bf16 and not _native_bf16():
        return dict(NOT_NATIVE)
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from modeling_rq2.training.trainer import training_attention

    setup = _joint_setup(args, fused_adamw=fused_adamw, compiled=compiled)
    torch, collate, joint, optimizer, batches, loss_args, step_losses = setup
    losses, step_seconds = [], []

    def step():
        started = time.perf_counter()
        batch = collate(next(batches))
        if math_attention:
            attention = sdpa_kernel([SDPBackend.MATH])
        else:  # the trainer's
            attention = training_attention(joint, torch.device("cpu"), "bf16" if bf16 else "no")
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16), attention:
            output = joint(batch)
        scores = output.reranker_scores.float()
        loss = step_losses(output.retriever, scores, batch.list_mask, "joint", False, loss_args, 0.05)["loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
        step_seconds.append(time.perf_counter() - started)

    seconds = _timed(step, args.steps)
    return {
        "queries_per_s": args.queries_per_step / seconds,
        "seconds_per_step": seconds,
        "first_step_s": step_seconds[0],
        "losses": losses,
    }


def case_profile_ours(args) -> dict:
    """Where a joint step's time goes: tokenisation, each model's forward, backward, optimizer."""
    torch, collate, joint, optimizer, batches, loss_args, step_losses = _joint_setup(args)
    phases = {k: 0.0 for k in ("collate", "retriever_forward", "reranker_forward", "loss", "backward", "optimizer")}
    for repeat in range(args.steps + 1):
        marks = [time.perf_counter()]
        batch = collate(next(batches))
        marks.append(time.perf_counter())
        q, p = batch.inputs("query"), batch.inputs("passage")
        retriever_output = joint.retriever(
            query_input_ids=q["input_ids"],
            passage_input_ids=p["input_ids"],
            query_attention_mask=q["attention_mask"],
            passage_attention_mask=p["attention_mask"],
        )
        marks.append(time.perf_counter())
        reranker_scores = joint.reranker(**batch.inputs("pair")).logits
        marks.append(time.perf_counter())
        loss = step_losses(retriever_output, reranker_scores, batch.list_mask, "joint", False, loss_args, 0.05)["loss"]
        marks.append(time.perf_counter())
        loss.backward()
        marks.append(time.perf_counter())
        optimizer.step()
        optimizer.zero_grad()
        marks.append(time.perf_counter())
        if repeat:  # the first step warms up
            for name, start, end in zip(phases, marks, marks[1:]):
                phases[name] += (end - start) / args.steps
    total = sum(phases.values())
    return {"seconds": phases, "share": {k: v / total for k, v in phases.items()}}


def case_train_st(args) -> dict:
    """sentence-transformers doing the same work separately: a bi-encoder MNRL step and a CrossEncoder step on the
    same lists."""
    import torch
    from sentence_transformers import CrossEncoder, SentenceTransformer, losses

    from modeling_rq2.models.loading import default_backbone_path
    from modeling_rq2.models.modeling_rq2 import format_passage

    path = default_backbone_path()
    bi = SentenceTransformer(path, device="cpu", model_kwargs={"attn_implementation": "sdpa"})
    bi.max_seq_length = args.train_length
    bi.train()
    mnrl = losses.MultipleNegativesRankingLoss(bi)
    cross = CrossEncoder(path, num_labels=1, device="cpu", max_length=args.train_length)
    cross.train()
    bce = torch.nn.BCEWithLogitsLoss()
    optimizer = torch.optim.AdamW([*bi.parameters(), *cross.parameters()], lr=1e-5)
    batches, m = _step_batches(args), args.list_size

    def step():
        items = next(batches)
        texts = [[format_passage(p, "[SEP]") for p in item["passages"]] for item in items]
        columns = [[item["query"] for item in items]] + [[t[j] for t in texts] for j in range(m)]
        features = [bi.preprocess(column) for column in columns]
        loss = mnrl(features, torch.zeros(len(items)))
        pairs = [(item["query"], t) for item, t_list in zip(items, texts, strict=True) for t in t_list]
        logits = cross(cross.preprocess(pairs))["scores"]
        labels = torch.tensor([float(j == 0) for _ in items for j in range(m)])
        loss = loss + bce(logits.reshape(-1), labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    seconds = _timed(step, args.steps)
    return {"queries_per_s": args.queries_per_step / seconds, "seconds_per_step": seconds}


def _vectors(n: int, dim: int = 384, seed: int = 0) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def case_search_ours(args) -> dict:
    from modeling_rq2.retrieval.index import DenseIndex

    index = DenseIndex.build(_vectors(args.vectors), [str(i) for i in range(args.vectors)])
    queries = _vectors(args.search_queries, seed=1)
    seconds = _timed(lambda: index.search(queries, 100), 1)
    return {"queries_per_s": len(queries) / seconds}


def case_search_faiss(args) -> dict:
    import faiss

    index = faiss.IndexFlatIP(384)
    index.add(_vectors(args.vectors))
    queries = _vectors(args.search_queries, seed=1)
    seconds = _timed(lambda: index.search(queries, 100), 1)
    return {"queries_per_s": len(queries) / seconds}


def case_scaling(args) -> dict:
    """Index build and search time against corpus size: the fitted exponent should stay near 1 (never 2)."""
    from modeling_rq2.retrieval.index import DenseIndex

    sizes, build, search = [25_000, 50_000, 100_000, 200_000], [], []
    queries = _vectors(200, seed=1)
    for n in sizes:
        vectors, ids = _vectors(n), [str(i) for i in range(n)]
        started = time.perf_counter()
        index = DenseIndex.build(vectors, ids)
        build.append(time.perf_counter() - started)
        search.append(_timed(lambda: index.search(queries, 100), 1))
    slope = lambda ys: float(np.polyfit(np.log(sizes), np.log(ys), 1)[0])  # noqa: E731
    return {
        "sizes": sizes,
        "build_seconds": build,
        "search_seconds": search,
        "build_exponent": slope(build),
        "search_exponent": slope(search),
    }


VARIANTS = {
    "encode_ours": partial(_ours, task="encode", precision="fp32"),
    "encode_ours_bf16": partial(_ours, task="encode", precision="bf16"),
    "encode_ours_int8": partial(_ours, task="encode", precision="int8"),
    "encode_ours_openvino": partial(_ours, task="encode", precision="fp32", backend="openvino"),
    "encode_ours_openvino_bf16": partial(_ours, task="encode", precision="bf16", backend="openvino"),
    "encode_st": partial(_encode_st, dtype=None),
    "encode_st_bf16": partial(_encode_st, dtype="bfloat16"),
    "rerank_ours": partial(_ours, task="rerank", precision="fp32"),
    "rerank_ours_bf16": partial(_ours, task="rerank", precision="bf16"),
    "rerank_ours_int8": partial(_ours, task="rerank", precision="int8"),
    "rerank_ours_openvino": partial(_ours, task="rerank", precision="fp32", backend="openvino"),
    "rerank_ours_openvino_bf16": partial(_ours, task="rerank", precision="bf16", backend="openvino"),
    "rerank_st": partial(_rerank_st, dtype=None),
    "rerank_st_bf16": partial(_rerank_st, dtype="bfloat16"),
    "train_ours": partial(_train_ours, bf16=False),
    "train_ours_bf16": partial(_train_ours, bf16=True),
    "train_ours_fused_adamw": partial(_train_ours, bf16=False, fused_adamw=True),
    "train_ours_compile": partial(_train_ours, bf16=False, compiled=True),
    "train_ours_bf16_fused_adamw": partial(_train_ours, bf16=True, fused_adamw=True),
    "train_ours_bf16_compile": partial(_train_ours, bf16=True, compiled=True),
    "train_ours_bf16_math_attention": partial(_train_ours, bf16=True, math_attention=True),
}
"""The cases that are one function at a setting; the others are ``case_<name>``."""


def run_case(name: str, args) -> dict:
    """One case in this process; adds its peak resident memory."""
    import torch

    torch.set_num_threads(args.threads)
    result = (VARIANTS[name] if name in VARIANTS else globals()[f"case_{name}"])(args)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def _median_run(runs: list[dict]) -> dict:
    """The run with the median throughput (every round's throughput kept under ``rounds``)."""
    key = next((k for k in runs[0] if k.endswith("_per_s")), None)
    if key is None:
        return runs[-1]
    ordered = sorted(runs, key=lambda run: run[key])
    return {**ordered[len(ordered) // 2], "rounds": [run[key] for run in runs]}


def _cpu_flags() -> list[str]:
    """The processor's vector and matrix flags that decide bf16 / int8 speed (Linux)."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split("flags", 1)[1].split("\n", 1)[0].split()
    except (OSError, IndexError):
        return []
    return sorted({f for f in flags if f.startswith(("avx2", "avx512", "amx", "avx_vnni", "avx512_vnni"))})


def _ratio(results: dict, ours: str, peer: str, key: str) -> float | None:
    """ours / peer on ``key``; None where either did not run (skipped, or not asked for)."""
    if key in results.get(ours, {}) and key in results.get(peer, {}):
        return results[ours][key] / results[peer][key]
    return None


def markdown(report: dict) -> str:
    """The report as a Markdown table of cases and the ratios."""
    r = report["results"]
    machine = report["machine"]
    lines = [
        f"{machine['platform']}, {machine['threads']} threads, CPU flags: {' '.join(machine.get('cpu_flags', []))}; "
        "quality at each precision: bench/results/precision.md (AVX2 CPU), precision-amx.md (AMX Xeon)",
        "",
        "| case | throughput | peak RSS (MB) |",
        "|---|---|---|",
    ]
    for name, values in r.items():
        rate = next((f"{values[k]:.1f} {k.replace('_per_s', '')}/s" for k in values if k.endswith("_per_s")), "")
        rate = rate or values.get("skipped", "")
        if "first_step_s" in values:
            rate += f" (first step {values['first_step_s']:.1f} s)"
        if name == "scaling":
            rate = f"build exponent {values['build_exponent']:.2f}, search exponent {values['search_exponent']:.2f}"
        if name == "profile_ours":
            rate = ", ".join(f"{k} {v:.0%}" for k, v in values["share"].items())
        lines.append(f"| {name} | {rate} | {values.get('peak_rss_mb', 0):.0f} |")
    lines += ["", "| ratio (ours / peer) | value |", "|---|---|"]
    lines += [f"| {k} | {v:.2f} |" for k, v in report["ratios"].items() if v is not None]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES)
    parser.add_argument("--passages", type=int, default=1024, help="SciFact passages encoded")
    parser.add_argument("--pairs", type=int, default=512, help="(claim, passage) pairs re-ranked")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--max_length", type=int, default=256, help="passage length when encoding")
    parser.add_argument("--train_length", type=int, default=128, help="passage and pair length in training steps")
    parser.add_argument("--list_size", type=int, default=4)
    parser.add_argument("--queries_per_step", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--vectors", type=int, default=100_000, help="index size for the search cases")
    parser.add_argument("--search_queries", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument(
        "--repeats", type=int, default=1, help="rounds over the cases; each case reports its median round"
    )
    parser.add_argument(
        "--allow_emulated_bf16", action="store_true", help="run the bf16 cases on a CPU without native bf16 too"
    )
    parser.add_argument("--case", help=argparse.SUPPRESS)  # internal: run one case and print its JSON
    parser.add_argument("--output", default=str(RESULTS / "speed"))
    args = parser.parse_args(argv)
    if args.case:
        print(json.dumps(run_case(args.case, args)))
        return {}

    forwarded = [a for a in (argv if argv is not None else sys.argv[1:]) if a]
    forwarded = [a for a in forwarded if a != "--cases" and a not in CASES]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env["RQ2_BENCH_EMULATED_BF16"] = "1" if args.allow_emulated_bf16 else "0"
    runs: dict[str, list[dict]] = {name: [] for name in args.cases}
    for _ in range(args.repeats):  # rounds over all cases, so a slow spell of the machine hits both sides
        for name in args.cases:
            started = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, __file__, *forwarded, "--case", name], capture_output=True, text=True, env=env
            )
            if proc.returncode != 0:
                raise RuntimeError(f"case {name} failed:\n{proc.stderr[-3000:]}")
            runs[name].append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(f"{name}: {runs[name][-1]} ({time.perf_counter() - started:.0f} s)", flush=True)
    results = {name: _median_run(found) for name, found in runs.items()}
    report = {
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "threads": args.threads,
            "cpu_flags": _cpu_flags(),
        },
        "settings": {k: v for k, v in vars(args).items() if k not in ("case", "output")},
        "results": results,
        "ratios": {
            "encoding ours/sentence-transformers": _ratio(results, "encode_ours", "encode_st", "passages_per_s"),
            "encoding ours int8 / sentence-transformers fp32": _ratio(
                results, "encode_ours_int8", "encode_st", "passages_per_s"
            ),
            "encoding ours bf16 / sentence-transformers fp32": _ratio(
                results, "encode_ours_bf16", "encode_st", "passages_per_s"
            ),
            "encoding ours bf16 / sentence-transformers bf16": _ratio(
                results, "encode_ours_bf16", "encode_st_bf16", "passages_per_s"
            ),
            "encoding ours openvino / sentence-transformers fp32": _ratio(
                results, "encode_ours_openvino", "encode_st", "passages_per_s"
            ),
            "encoding ours openvino bf16 / sentence-transformers fp32": _ratio(
                results, "encode_ours_openvino_bf16", "encode_st", "passages_per_s"
            ),
            "encoding ours openvino bf16 / sentence-transformers bf16": _ratio(
                results, "encode_ours_openvino_bf16", "encode_st_bf16", "passages_per_s"
            ),
            "re-ranking ours / CrossEncoder.predict": _ratio(results, "rerank_ours", "rerank_st", "pairs_per_s"),
            "re-ranking ours openvino / CrossEncoder.predict fp32": _ratio(
                results, "rerank_ours_openvino", "rerank_st", "pairs_per_s"
            ),
            "re-ranking ours int8 / CrossEncoder.predict fp32": _ratio(
                results, "rerank_ours_int8", "rerank_st", "pairs_per_s"
            ),
            "re-ranking ours bf16 / CrossEncoder.predict fp32": _ratio(
                results, "rerank_ours_bf16", "rerank_st", "pairs_per_s"
            ),
            "re-ranking ours bf16 / CrossEncoder.predict bf16": _ratio(
                results, "rerank_ours_bf16", "rerank_st_bf16", "pairs_per_s"
            ),
            "re-ranking ours openvino bf16 / CrossEncoder.predict bf16": _ratio(
                results, "rerank_ours_openvino_bf16", "rerank_st_bf16", "pairs_per_s"
            ),
            "joint step bf16 / fp32": _ratio(results, "train_ours_bf16", "train_ours", "queries_per_s"),
            "joint step fused AdamW / AdamW": _ratio(results, "train_ours_fused_adamw", "train_ours", "queries_per_s"),
            "joint step torch.compile / eager": _ratio(results, "train_ours_compile", "train_ours", "queries_per_s"),
            "joint step bf16, fused AdamW / AdamW": _ratio(
                results, "train_ours_bf16_fused_adamw", "train_ours_bf16", "queries_per_s"
            ),
            "joint step bf16, torch.compile / eager": _ratio(
                results, "train_ours_bf16_compile", "train_ours_bf16", "queries_per_s"
            ),
            "joint step bf16, eager / math attention kernel": _ratio(
                results, "train_ours_bf16", "train_ours_bf16_math_attention", "queries_per_s"
            ),
            "training ours (joint) / sentence-transformers (bi + cross)": _ratio(
                results, "train_ours", "train_st", "queries_per_s"
            ),
            "training ours bf16 (joint) / sentence-transformers fp32 (bi + cross)": _ratio(
                results, "train_ours_bf16", "train_st", "queries_per_s"
            ),
            "search ours / raw FAISS": _ratio(results, "search_ours", "search_faiss", "queries_per_s"),
        },
    }
    return write_report(report, Path(args.output), markdown)


if __name__ == "__main__":
    main()
