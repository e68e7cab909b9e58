"""The report: per-system summaries over seeds, the table, ours against the best peer, the goals, the Markdown."""

import argparse
import os
import platform
import statistics

from modeling_rq2.evaluation.systems import System

from .jobs import BM25_ROW, METRICS, recipe
from .systems import ABLATIONS, OURS, PEERS, SYSTEMS

HEADERS = ("nDCG@10", "MRR@10", "R@10", "R@100")
NOTE = (
    "train s: wall seconds of training (for ours everything but the final evaluation, so warm-up and augmentation "
    "too); eval s: corpus encoding, search and re-ranking. st_crossencoder re-ranks the selected st_biencoder's "
    "candidates: its train s counts the cross-encoder alone (the comparisons add the bi-encoder's)."
)
GOALS = {"retriever": 0.714, "retrieve-then-rerank": 0.734}  # nDCG@10 on the full SciFact test split
RETRIEVER = System.retriever().name


def _is_reranked(row: str) -> bool:
    """Whether a row is a re-ranked or fused ranking (not the retriever alone, not BM25)."""
    try:
        return System.parse(row).kind != "retriever"
    except ValueError:
        return False


# ---------------------------------------------------------------- summaries and the table


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


def _label(name: str, row: str) -> str:
    """A table row's name: a peer's only ranking goes by the system's name, other rows add the ranking's."""
    return name if row in (BM25_ROW, RETRIEVER) and SYSTEMS[name].is_peer else f"{name}: {row}"


def _table(summaries: dict[str, dict]) -> list[str]:
    lines = ["| system | " + " | ".join(HEADERS) + " | seeds | train s | eval s |", "|---" * (len(HEADERS) + 4) + "|"]
    for name, s in summaries.items():
        times = [str(s["seeds"]), _cell(s["train_seconds"], 0), _cell(s["eval_seconds"], 0)]
        for row, values in s["rows"].items():
            cells = [_cell(values[m]) for m in METRICS] + times
            lines.append(f"| {_label(name, row)} | " + " | ".join(cells) + " |")
    return lines


def table_block(summaries: dict[str, dict]) -> list[str]:
    """The table and one line per system saying what it is (the block model cards embed)."""
    legend = [f"- {name}: {SYSTEMS[name].description}" for name in summaries if name in SYSTEMS]
    return [*_table(summaries), "", *legend]


# ---------------------------------------------------------------- ours against the peers, the goals


def _entries(summaries: dict[str, dict], systems: tuple[str, ...], row_filter) -> dict[str, dict]:
    """{"system: row": metric spreads} of the rows that pass ``row_filter``."""
    return {
        f"{s}: {row}": values
        for s in systems
        if s in summaries
        for row, values in summaries[s]["rows"].items()
        if row_filter(row)
    }


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
    values = {}
    for m in METRICS:
        mine, theirs = ours[m]["mean"], peers[peer][m]["mean"]
        values[m] = {"ours": mine, "peer": theirs, "delta": mine - theirs, "ratio": mine / theirs if theirs else None}
    seconds = {"ours": _train_seconds(summaries, name), "peer": _train_seconds(summaries, peer.split(": ")[0])}
    return {"comparison": f"{name} {label}", "peer": peer, **values, "train_seconds": seconds}


def comparisons(summaries: dict[str, dict], rerank_top_k: int, fusion: float) -> list[dict]:
    """Each of ours against the best peer retriever and the best peer retrieve-then-rerank, like for like."""
    pure, fused = System.reranked(rerank_top_k).name, System.reranked(rerank_top_k, fusion=fusion).name
    kinds = (
        ("retriever vs best peer retriever", RETRIEVER, lambda r: r in (BM25_ROW, RETRIEVER)),
        ("retrieve-then-rerank vs best peer (pure re-ranking)", pure, lambda r: r == pure),
        (f"retrieve-then-rerank vs best peer (fusion {fusion:g})", fused, lambda r: r == fused),
    )
    found = [
        _versus(summaries, label, name, row, _entries(summaries, PEERS, peer_filter))
        for name in OURS
        if name in summaries
        for label, row, peer_filter in kinds
    ]
    return [c for c in found if c]


def goals(summaries: dict[str, dict], full_scifact: bool) -> list[dict]:
    """Our nDCG@10 against the goals (which are set for the full SciFact test split)."""
    found = []
    for name in (s for s in OURS if s in summaries):
        rows = summaries[name]["rows"]
        rerank = max((v["ndcg@10"]["mean"] for r, v in rows.items() if _is_reranked(r)), default=None)
        for goal, value in (("retriever", rows[RETRIEVER]["ndcg@10"]["mean"]), ("retrieve-then-rerank", rerank)):
            if value is not None:
                found.append(
                    {
                        "system": name,
                        "goal": goal,
                        "target": GOALS[goal],
                        "value": value,
                        "met": value >= GOALS[goal],
                        "applies": full_scifact,
                    }
                )
    return found


# ---------------------------------------------------------------- Markdown


def _comparison_line(c: dict) -> str:
    parts = [
        f"{h} {c[m]['ours']:.4f} vs {c[m]['peer']:.4f} ({c[m]['delta']:+.4f}, x{c[m]['ratio']:.3f})"
        for h, m in zip(HEADERS, METRICS)
        if c[m]["ratio"] is not None
    ]
    seconds = c["train_seconds"]
    return (
        f"- {c['comparison']} ({c['peer']}): "
        + "; ".join(parts)
        + f"; train s {seconds['ours']:.0f} vs {seconds['peer']:.0f}"
    )


def _goal_line(g: dict) -> str:
    verdict = ("met" if g["met"] else "missed") if g["applies"] else "n/a: not the full SciFact test with full budgets"
    return f"- {g['system']} {g['goal']} nDCG@10 >= {g['target']}: {g['value']:.4f} ({verdict})"


def _grid_lines(name: str, system: dict) -> list[str]:
    seed = next(iter(system["seeds"]))
    title = f"{name} grid at seed {seed}, selected on {system['selected_on']}: **{system['best']}**"
    lines = ["", title, "", "| point | " + " | ".join(HEADERS) + " | train s |", "|---" * (len(HEADERS) + 2) + "|"]
    for key, run in system["grid"].items():
        for row, values in run["rows"].items():
            cells = " | ".join(f"{values[m]:.4f}" for m in METRICS)
            lines.append(f"| {key}: {row} | {cells} | {run['train_seconds']:.0f} |")
    return lines


def _ablation_line(name: str, systems: dict[str, dict]) -> str | None:
    """nDCG@10 of an ablation minus its baseline's at the seeds both ran (paired: same data order), per row."""
    baseline = SYSTEMS[name].baseline
    base, runs = systems[baseline]["seeds"], systems[name]["seeds"]
    shared = [seed for seed in runs if seed in base]
    if not shared:
        return None
    rows = [row for row in runs[shared[0]]["rows"] if row in base[shared[0]]["rows"]]
    ndcg = {row: [runs[s]["rows"][row]["ndcg@10"] - base[s]["rows"][row]["ndcg@10"] for s in shared] for row in rows}
    deltas = [f"{row} {sum(d) / len(d):+.4f}" for row, d in ndcg.items()]
    return f"- {name} vs {baseline}, seeds {', '.join(shared)}: " + "; ".join(deltas)


def _ablation_lines(systems: dict[str, dict]) -> list[str]:
    """One line per ablation that ran beside its baseline (``systems``: the report's, seeds keyed by string)."""
    lines = [
        _ablation_line(name, systems) for name in ABLATIONS if name in systems and SYSTEMS[name].baseline in systems
    ]
    lines = [line for line in lines if line]
    title = "Ablations, nDCG@10 minus the system each changes one thing of, at the same seeds:"
    return ["", title, "", *lines] if lines else []


def markdown(report: dict) -> str:
    """The report: the table of systems, the comparisons, the goals, the peers' grids, the ablations."""
    d = report["data"]
    title = (
        f"# Retrieval quality: {d['name']} {d['eval_split']} ({d['queries']} queries, {d['corpus']} passages), "
        f"seeds {report['settings']['seeds']}"
    )
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


# ---------------------------------------------------------------- the JSON


def _machine(args: argparse.Namespace) -> dict:
    """Where the benchmark ran: platform, cores, threads, library versions, device."""
    import sentence_transformers
    import torch
    import transformers

    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "threads": args.threads,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "sentence_transformers": sentence_transformers.__version__,
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
    }


def build_report(args: argparse.Namespace, data_path: str, systems: dict[str, dict]) -> dict:
    """Everything: machine, settings, data, every job's result, per-system summaries, comparisons, goals."""
    from modeling_rq2.data import load_beir

    evaluation = load_beir(data_path, args.eval_split)
    full_scifact = (
        args.data == "scifact"
        and args.eval_split == "test"
        and data_path == args.data
        and not args.max_train_queries
        and not args.max_steps
    )
    summaries = {name: summarise(s) for name, s in systems.items()}
    return {
        "machine": _machine(args),
        "settings": {k: v for k, v in vars(args).items() if k not in ("job", "output")},
        "data": {
            "name": evaluation.name,
            "path": data_path,
            "eval_split": args.eval_split,
            "queries": len(evaluation.queries),
            "corpus": len(evaluation.corpus),
        },
        "recipe": recipe(),
        "systems": {name: {**s, "seeds": {str(k): v for k, v in s["seeds"].items()}} for name, s in systems.items()},
        "summaries": summaries,
        "titles": {name: SYSTEMS[name].title for name in summaries if name in SYSTEMS},
        "table": table_block(summaries),
        "comparisons": comparisons(summaries, args.rerank_top_k, args.fusion),
        "goals": goals(summaries, full_scifact),
    }
