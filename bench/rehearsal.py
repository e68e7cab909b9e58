"""A rehearsal of the paper's two presets on the CPU: the whole chain at their list sizes, under 2 processes.

    python bench/rehearsal.py                    # both presets at 200k passages, 2 processes (~1 hour on 2 cores)
    python bench/rehearsal.py --passages 20000 --msmarco_queries 200 --nq_queries 100 --dev_queries 50 \
        --output /tmp/rehearsal_smoke            # smoke run (~5 min)

Synthetic files in the official formats stand in for the data (random but well-formed text: each query shares
words with its positive passage, so retrieval is learnable): an MS MARCO folder (collection.tsv, queries and qrels
of train and dev.small, triples.train.small.tsv with ten negatives a query) and a DPR folder (psgs_w100.tsv with
titles, nq-train.json with BM25-style hard negatives, nq-test.qa.csv with answers). A tiny BERT built from a config
(2 layers, 64 wide, its own word-level vocabulary) stands in for bert-base. Everything else is the preset as
shipped: ``configs/msmarco.yaml`` / ``configs/nq.yaml`` with only the models, the data folder and the output
folder overridden, run by ``accelerate launch --num_processes 2`` on the CPU (gloo): the separate warm-up on lists
of 8, hybrid augmentation over the top 200 / 100, joint training on lists of 128 / 32, evaluation with the paper's
metrics.

Reported per preset: the plan (``--plan true``, the warm-up stage; and the joint stage's plan.json, written before
its step 1), the lists as trained (mean / least passages, padding), what augmentation mined and removed, wall time
and peak resident memory (all processes together, and the largest one) of each stage (the stage boundaries are the
files each stage leaves: warmup/metrics.json, augmented/augmentation_report.json, the final model, metrics.json),
the learning rate after every step of a short linear schedule on the mined lists in 1 process x 24 lists and in
2 processes x 12 (must be equal), and the arithmetic of what the same chain costs at the paper's size (labelled: the
rehearsal's counts of sequences scaled to 8.8M / 21M passages and 503k / 58.9k queries, and BERT-base FLOPs at an
assumed GPU throughput). The synthetic data and the runs stay in WORK_DIR (default outputs/bench/rehearsal), so a
rerun reuses what is complete. Writes bench/results/rehearsal.json and .md. Never run in CI.
"""

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from reporting import write_report  # bench/reporting.py (scripts run as python bench/NAME.py)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
PAPER = {  # the paper's data: passages, training queries (DESIGN.md; MS MARCO qrels.train, DPR nq-train)
    "msmarco": {"passages": 8_841_823, "queries": 502_939, "dev_queries": 6_980},
    "nq": {"passages": 21_015_324, "queries": 58_880, "dev_queries": 3_610},
}
BERT_BASE_PARAMETERS = 110e6
ASSUMED_TFLOPS = 125.0  # effective bf16 TFLOP/s of an A100 on BERT-base (an assumption, not measured here)
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def _words(count: int, rng: np.random.Generator) -> list[str]:
    """``count`` distinct pronounceable words (consonant-vowel syllables), the synthetic language's vocabulary."""
    consonants, vowels = "bdfgklmnprstvz", "aeiou"
    words: dict[str, None] = {}
    while len(words) < count:
        syllables = rng.integers(2, 4)
        words["".join(rng.choice(list(consonants)) + rng.choice(list(vowels)) for _ in range(syllables))] = None
    return list(words)


class Language:
    """Random but well-formed text: passages of 40-70 words in sentences, queries that share words with one."""

    def __init__(self, seed: int, vocabulary: int = 4000):
        self.rng = np.random.default_rng(seed)
        self.words = _words(vocabulary, self.rng)

    def passage(self) -> str:
        words = self.rng.choice(self.words, size=int(self.rng.integers(40, 71)))
        sentences = np.array_split(words, max(1, len(words) // 12))
        return " ".join(" ".join(s).capitalize() + "." for s in sentences)

    def query_about(self, passage: str) -> str:
        own = [w.strip(".").lower() for w in passage.split()]
        picked = list(self.rng.choice(own, size=4, replace=False)) + list(self.rng.choice(self.words, size=2))
        return " ".join(["what", *picked]) + " ?"

    def title(self) -> str:
        return " ".join(self.rng.choice(self.words, size=2)).title()


def write_backbone(folder: Path, language: Language) -> Path:
    """A tiny BERT (random weights) with a word-level tokenizer of the synthetic vocabulary: bert-base's stand-in."""
    if (folder / "config.json").is_file():
        return folder
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab = SPECIALS + sorted(set(language.words)) + [".", "?", "what"] + [chr(c) for c in range(97, 123)]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True)
    tokenizer.model_max_length = 192
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=128,
        max_position_embeddings=192,
    )
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _write_lines(path: Path, lines) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for line in lines:
            f.write(line + "\n")


def write_msmarco(folder: Path, language: Language, *, passages: int, queries: int, dev_queries: int) -> Path:
    """MS MARCO's official files: the first ``queries + dev_queries`` passages are the positives of the queries."""
    if (folder / "done").is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    texts = [f"{language.passage()} {i}" for i in range(passages)]  # the number keeps every text distinct
    _write_lines(folder / "collection.tsv", (f"{i}\t{t}" for i, t in enumerate(texts)))
    asked = [language.query_about(texts[i]) + f" {i}" for i in range(queries + dev_queries)]
    for split, ids in (("train", range(queries)), ("dev.small", range(queries, queries + dev_queries))):
        _write_lines(folder / f"queries.{split}.tsv", (f"{100_000 + i}\t{asked[i]}" for i in ids))
        _write_lines(folder / f"qrels.{split}.tsv", (f"{100_000 + i}\t0\t{i}\t1" for i in ids))
    rng = np.random.default_rng(1)
    _write_lines(
        folder / "triples.train.small.tsv",
        (f"{asked[i]}\t{texts[i]}\t{texts[j]}" for i in range(queries) for j in rng.integers(queries, passages, 10)),
    )
    (folder / "done").touch()
    return folder


def write_dpr(folder: Path, language: Language, *, passages: int, queries: int, dev_queries: int) -> Path:
    """DPR's files: titled passages; each question's answer is a number written in its positive passage only."""
    if (folder / "done").is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    texts = [f"{language.passage()} {i}" for i in range(passages)]
    titles = [language.title() for _ in range(passages)]
    with open(folder / "psgs_w100.tsv", "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, delimiter="\t", lineterminator="\n")
        writer.writerow(["id", "text", "title"])
        writer.writerows([i + 1, text, title] for i, (text, title) in enumerate(zip(texts, titles, strict=True)))
    rng = np.random.default_rng(2)

    def ctx(i: int) -> dict:
        return {"title": titles[i], "text": texts[i], "score": 1.0, "passage_id": str(i + 1)}

    with open(folder / "nq-train.json", "w", encoding="utf-8") as f:
        json.dump(
            [
                {
                    "question": language.query_about(texts[i]),
                    "answers": [str(i)],
                    "positive_ctxs": [ctx(i)],
                    "negative_ctxs": [],
                    "hard_negative_ctxs": [ctx(int(j)) for j in rng.integers(queries, passages, 10)],
                }
                for i in range(queries)
            ],
            f,
        )
    _write_lines(
        folder / "nq-test.qa.csv",
        (f"{language.query_about(texts[i])}\t{json.dumps([str(i)])}" for i in range(queries, queries + dev_queries)),
    )
    (folder / "done").touch()
    return folder


class MemorySampler:
    """Resident memory of a process tree every ``interval`` seconds: (time, total over processes, largest one)."""

    def __init__(self, pid: int, interval: float = 0.5):
        import psutil

        self.root, self.interval, self.samples = psutil.Process(pid), interval, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            try:
                tree = [self.root, *self.root.children(recursive=True)]
                rss = [p.memory_info().rss for p in tree if p.is_running()]
                workers = [p.memory_info().rss for p in tree if "train.py" in " ".join(p.cmdline())]
            except psutil.Error:
                rss, workers = [], []
            if rss:
                self.samples.append((time.time(), sum(rss), max(workers or rss)))
            self._stop.wait(self.interval)

    def stop(self) -> list[tuple[float, int, int]]:
        self._stop.set()
        self._thread.join()
        return self.samples


def _launch(argv: list[str], processes: int, log: Path) -> tuple[int, list]:
    """``train.py argv`` under ``accelerate launch`` with ``processes`` CPU processes (gloo); exit code, samples."""
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--num_processes",
        str(processes),
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
    ]
    command += ["--multi_gpu"] if processes > 1 else ["--cpu"]
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "ACCELERATE_USE_CPU": "true",
        "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 2) // processes)),
        "PYTHONPATH": str(ROOT),
    }
    with open(log, "a", encoding="utf-8") as out:
        process = subprocess.Popen(
            [*command, str(ROOT / "train.py"), *argv], env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT
        )
        sampler = MemorySampler(process.pid)
        code = process.wait()
    return code, sampler.stop()


def _stages(run: Path, started: float, samples: list) -> dict[str, dict]:
    """Wall time and peak memory of each stage, cut at the files the stages leave behind."""
    ends = [
        ("warm-up", run / "warmup" / "metrics.json"),
        ("augmentation", run / "augmented" / "augmentation_report.json"),
        ("joint training", run / "retriever" / "model.safetensors"),
        ("evaluation and cards", run / "metrics.json"),
    ]
    stages, start = {}, started
    for name, marker in ends:
        end = marker.stat().st_mtime
        inside = [s for s in samples if start <= s[0] <= end]
        stages[name] = {
            "seconds": round(end - start, 1),
            "peak_rss_gib_all_processes": round(max((s[1] for s in inside), default=0) / 2**30, 3),
            "peak_rss_gib_one_process": round(max((s[2] for s in inside), default=0) / 2**30, 3),
        }
        start = end
    return stages


def _lr_trace(folder: Path) -> list[list[float]]:
    rows = map(json.loads, (folder / "train_log.jsonl").read_text(encoding="utf-8").splitlines())
    return [[row["step"], row["lr_retriever"], row["lr_reranker"], row["lr_reranker_head"]] for row in rows]


def lr_traces(preset: str, base: list[str], run: Path, work: Path, *, steps: int) -> dict:
    """The LR after every step of a linear schedule with warm-up, on the mined lists from the warm models: 1 process x
    24 lists and 2 processes x 12 (the same global batch) must agree step for step."""
    traces = {}
    for processes, batch in ((1, 24), (2, 12)):
        out = work / f"lr-{processes}"
        if not (out / "metrics.json").is_file():
            argv = [
                *base,
                "--augment",
                "false",
                "--train_instances",
                str(run / "augmented"),
                "--retriever",
                str(run / "warmup" / "retriever"),
                "--reranker",
                str(run / "warmup" / "reranker"),
                "--output_dir",
                str(out),
                "--batch_size",
                str(batch),
                "--max_steps",
                str(steps),
                "--lr_scheduler",
                "linear",
                "--warmup_ratio",
                "0.2",
                "--logging_steps",
                "1",
                "--eval_split",
                "none",
                "--save_steps",
                "0",
            ]
            code, _ = _launch(argv, processes, work / f"lr-{processes}.log")
            if code:
                raise SystemExit(f"{preset}: the LR run with {processes} process(es) failed; see {work}/lr-*.log")
        traces[f"{processes}x{batch}"] = _lr_trace(out)
    one, two = traces.values()
    return {"traces": traces, "equal": one == two, "steps": len(one)}


def _plan(base: list[str], work: Path) -> dict:
    """``--plan true`` of the chain (its first stage, the warm-up), in one process."""
    out = work / "plan"
    if not (out / "warmup" / "plan.json").is_file():
        code, _ = _launch([*base, "--output_dir", str(out), "--plan", "true"], 1, work / "plan.log")
        if code:
            raise SystemExit(f"--plan failed; see {work}/plan.log")
    return json.loads((out / "warmup" / "plan.json").read_text(encoding="utf-8"))


def rehearse(preset: str, data: Path, backbone: Path, work: Path, *, lr_steps: int) -> dict:
    """The preset's chain under 2 processes, its plans, stages, lists and LR traces."""
    base = [
        str(ROOT / "configs" / f"{preset}.yaml"),
        "--retriever",
        str(backbone),
        "--reranker",
        str(backbone),
        "--data",
        str(data),
        "--report_to",
        "none",
    ]
    if preset == "msmarco":
        base += ["--negatives", str(data / "triples.train.small.tsv")]
    work.mkdir(parents=True, exist_ok=True)
    plan = _plan(base, work)
    run = work / "run"
    samples, started = [], time.time()
    if not (run / "metrics.json").is_file():
        code, samples = _launch([*base, "--output_dir", str(run)], 2, work / "chain.log")
        if code:
            raise SystemExit(f"{preset}: the chain failed (exit {code}); see {work / 'chain.log'}")
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    warm = json.loads((run / "warmup" / "metrics.json").read_text(encoding="utf-8"))
    augmentation = metrics["augmentation"]
    return {
        "plan_warmup": plan,
        "plan_joint": json.loads((run / "plan.json").read_text(encoding="utf-8")),
        "lists": {"warm-up": warm["train"]["lists"], "joint": metrics["train"]["lists"]},
        "augmentation": {k: v for k, v in augmentation.items() if k != "arguments"},
        "stages": _stages(run, started, samples) if samples else json.loads((work / "stages.json").read_text()),
        "results": metrics["eval"]["results"],
        "steps": {"warm-up": warm["train"]["steps"], "joint": metrics["train"]["steps"]},
        "lr": lr_traces(preset, base, run, work, steps=lr_steps),
    }


def _sequences(report: dict, *, passages: int) -> dict[str, float]:
    """What each stage of the rehearsal processed, in sequences (a passage encoded, a pair scored, a list entry
    trained through both models)."""
    lists, aug, warm, joint = report["lists"], report["augmentation"], report["plan_warmup"], report["plan_joint"]
    return {
        "warm-up: list entries trained": warm["training_lists"] * warm["epochs"] * lists["warm-up"]["mean"],
        "augmentation: passages encoded": passages,
        "augmentation: pairs scored": aug["queries"] * aug["top_n"],
        "joint: list entries trained": joint["training_lists"] * joint["epochs"] * lists["joint"]["mean"],
        "evaluation: passages encoded": passages,
    }


def bert_base_memory(preset: str, folder: Path) -> dict:
    """The plan's memory estimate for the preset with bert-base shapes (a config-only folder: meta-device models)."""
    from transformers import BertConfig

    from modeling_rq2.training.config_files import parse_arguments
    from modeling_rq2.training.plan import memory

    folder.mkdir(parents=True, exist_ok=True)
    BertConfig().save_pretrained(folder)  # bert-base-uncased's shapes: 12 x 768, vocabulary 30,522
    config = parse_arguments(
        [
            str(ROOT / "configs" / f"{preset}.yaml"),
            "--retriever",
            str(folder),
            "--reranker",
            str(folder),
            "--report_to",
            "none",
        ]
    )
    return memory(config)


def extrapolate(preset: str, report: dict, *, queries: int, passages: int, dev_queries: int) -> dict:
    """The same chain at the paper's size (arithmetic): sequences scaled by passages or queries, and BERT-base GPU
    hours at ``ASSUMED_TFLOPS`` (forward 2 x 110M x tokens; training 3x that, plus a recomputed forward under
    gradient checkpointing; tokens at the preset's maximum lengths, an upper bound)."""
    from modeling_rq2.training.config_files import parse_arguments

    settings = parse_arguments([str(ROOT / "configs" / f"{preset}.yaml")])
    model, rerank_top_k = settings.model, settings.training.rerank_top_k
    paper = PAPER[preset]
    by_queries, by_passages = paper["queries"] / queries, paper["passages"] / passages
    flops = {  # per sequence
        "train": 8 * BERT_BASE_PARAMETERS * (model.train_passage_max_length + model.reranker_max_length),
        "encode": 2 * BERT_BASE_PARAMETERS * model.passage_max_length,
        "score": 2 * BERT_BASE_PARAMETERS * model.reranker_max_length,
    }

    def hours(sequences: float, kind: str) -> float:
        return round(sequences * flops[kind] / (ASSUMED_TFLOPS * 1e12) / 3600, 2)

    rows = {}
    for name, value in _sequences(report, passages=passages).items():
        kind = "train" if "trained" in name else ("encode" if "encoded" in name else "score")
        at_paper = value * (by_passages if "encoded" in name else by_queries)
        rows[name] = {"rehearsal": round(value), "paper_scale": round(at_paper), "gpu_hours": hours(at_paper, kind)}
    reranked = paper["dev_queries"] * rerank_top_k
    rows["evaluation: pairs re-ranked"] = {
        "rehearsal": dev_queries * rerank_top_k,
        "paper_scale": reranked,
        "gpu_hours": hours(reranked, "score"),
    }
    return {
        "rows": rows,
        "gpu_hours_total": round(sum(r["gpu_hours"] for r in rows.values()), 1),
        "scale": {"queries": round(by_queries, 1), "passages": round(by_passages, 1)},
    }


def markdown(report: dict) -> str:
    setup = report["setup"]
    lines = [
        "# Rehearsal of the paper's presets on the CPU (bench/rehearsal.py)",
        "",
        f"{setup['processes']} processes (gloo) on {setup['machine']}; synthetic data in the official formats, "
        f"{setup['passages']:,} passages each; {setup['msmarco_queries']:,} MS MARCO / {setup['nq_queries']:,} NQ "
        f"training queries, {setup['dev_queries']} evaluation queries; a tiny BERT (2 x 64) for bert-base. "
        "Everything else as the presets ship.",
    ]
    for preset, r in report["presets"].items():
        joint, warm, scale = r["plan_joint"], r["plan_warmup"], r["extrapolation"]["scale"]
        lines += [
            "",
            f"## {preset}",
            "",
            f"- Lists: warm-up {r['lists']['warm-up']['mean']:g} passages a list (asked "
            f"{r['lists']['warm-up']['size']}, padding {r['lists']['warm-up']['padding']:.1%}); joint "
            f"{r['lists']['joint']['mean']:g} (asked {r['lists']['joint']['size']}, least "
            f"{r['lists']['joint']['min']}, padding {r['lists']['joint']['padding']:.1%}).",
            f"- Augmentation: {r['augmentation']['queries']} queries, top {r['augmentation']['top_n']}; "
            f"{r['augmentation'].get('negatives_removed', 0):,} of {r['augmentation']['negatives_retrieved']:,} "
            f"retrieved negatives removed, {r['augmentation'].get('positives_added', 0):,} positives added; instances "
            f"{r['augmentation']['instances']}.",
            f"- Plan: warm-up {warm['total_steps']} steps; joint {joint['total_steps']} steps of "
            f"{joint['global_batch']} lists ({joint['processes']} processes x {joint['batch_per_process']}); "
            f"warnings: {'; '.join(joint['warnings']) or 'none'}.",
            f"- Memory a process needs with bert-base at the preset's batch (the plan's estimate): "
            f"{r['bert_base_memory']['weights_gradients_optimizer_gib']} GiB weights, gradients and AdamW + about "
            f"{r['bert_base_memory']['activations_gib_estimate']} GiB activations.",
            f"- Learning rate after each of {r['lr']['steps']} steps (linear, 20% warm-up): 1 process x 24 and "
            f"2 x 12 {'equal' if r['lr']['equal'] else 'DIFFERENT'}.",
            "",
            "| stage | seconds | peak RSS, all processes (GiB) | peak RSS, one process (GiB) |",
            "| --- | --- | --- | --- |",
            *(
                f"| {name} | {s['seconds']} | {s['peak_rss_gib_all_processes']} | {s['peak_rss_gib_one_process']} |"
                for name, s in r["stages"].items()
            ),
            "",
            "Results (synthetic data, tiny model: a check that the metrics are computed, not a quality figure): "
            + "; ".join(
                f"{system}: " + ", ".join(f"{k} {v:.3f}" for k, v in values.items())
                for system, values in r["results"].items()
            ),
            "",
            f"At the paper's size (arithmetic, not measured: sequences scaled x{scale['queries']} by queries or "
            f"x{scale['passages']} by passages; BERT-base at an assumed "
            f"{ASSUMED_TFLOPS:g} TFLOP/s, maximum lengths):",
            "",
            "| work | rehearsal | paper scale | GPU hours |",
            "| --- | --- | --- | --- |",
            *(
                f"| {name} | {row['rehearsal']:,} | {row['paper_scale']:,} | {row['gpu_hours']} |"
                for name, row in r["extrapolation"]["rows"].items()
            ),
            f"| total | | | {r['extrapolation']['gpu_hours_total']} |",
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--passages", type=int, default=200_000)
    parser.add_argument("--msmarco_queries", type=int, default=2_000)
    parser.add_argument("--nq_queries", type=int, default=1_000)
    parser.add_argument("--dev_queries", type=int, default=200)
    parser.add_argument("--lr_steps", type=int, default=20)
    parser.add_argument("--presets", nargs="+", default=["msmarco", "nq"], choices=sorted(PAPER))
    parser.add_argument("--work_dir", type=Path, default=ROOT / "outputs" / "bench" / "rehearsal")
    parser.add_argument("--output", type=Path, default=RESULTS / "rehearsal")
    args = parser.parse_args()
    work = args.work_dir / f"p{args.passages}"
    language = Language(seed=0)
    backbone = write_backbone(work / "backbone", language)
    writers = {"msmarco": (write_msmarco, args.msmarco_queries), "nq": (write_dpr, args.nq_queries)}
    report = {
        "setup": {
            "passages": args.passages,
            "msmarco_queries": args.msmarco_queries,
            "nq_queries": args.nq_queries,
            "dev_queries": args.dev_queries,
            "processes": 2,
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        },
        "presets": {},
    }
    for preset in args.presets:
        write, queries = writers[preset]
        data = write(
            work / f"data-{preset}", language, passages=args.passages, queries=queries, dev_queries=args.dev_queries
        )
        result = rehearse(preset, data, backbone, work / preset, lr_steps=args.lr_steps)
        (work / preset / "stages.json").write_text(json.dumps(result["stages"]), encoding="utf-8")
        result["bert_base_memory"] = bert_base_memory(preset, work / "bert-base-config")
        result["extrapolation"] = extrapolate(
            preset, result, queries=queries, passages=args.passages, dev_queries=args.dev_queries
        )
        report["presets"][preset] = result
    write_report(report, args.output, markdown)


if __name__ == "__main__":
    main()
