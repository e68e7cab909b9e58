"""The report: per-system summaries over seeds, the table, ours against the best peer, the goals, the Markdown."""

import argparse
import os
import platform
import statistics

from modeling_rq2.evaluation.systems import System

from .jobs import BM25_ROW, METRICS, recipe
from .systems import OURS, PAIRED, PEERS, SYSTEMS

HEADERS = ("nDCG@10", "MRR@10", "R@10", "R@100")
NOTE = (
    "train s: wall seconds of training (for ours everything but the final evaluation, so warm-up and augmentation "
    "too); eval s: corpus encoding, search and re-ranking. st_crossencoder re-ranks the selected st_biencoder's "
    "candidates: its train s counts the cross-encoder alone, static's its own epoch (the comparisons and the figure "
    "add the bi-encoder's, the teacher's)."
)
GOALS = {"retriever": 0.77, "retrieve-then-rerank": 0.80}
"""nDCG@10 on the full SciFact test split, means over at least ``GOAL_SEEDS`` seeds."""
GOAL_SEEDS = 3
RETRIEVER = System.retriever().name
RETRIEVER_OF = {"st_crossencoder": "st_biencoder"}
"""A system whose retriever is another's (whose rows hold it)."""


def is_reranked(row: str) -> bool:
    """Whether a row is a re-ranked or fused ranking (not the retriever alone, not BM25)."""
    try:
        return System.parse(row).kind != "retriever"
    except ValueError:
        return False


def is_pure(row: str) -> bool:
    """Whether a row is the re-ranker's own order of the head (no fusion)."""
    try:
        system = System.parse(row)
    except ValueError:
        return False
    return system.kind == "reranked"


# ---------------------------------------------------------------- summaries and the table


def _spread(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def summarise(system: dict) -> dict:
    """Mean and standard deviation across seeds of every row's metrics and of the wall times."""
    runs = list(system["seeds"].values())
    rows = {row: {m: _spread([r["rows"][row][m] for r in runs]) for m in METRICS} for row in runs[0]["rows"]}
    whole = [r for r in runs if not r.get("details", {}).get("resumed")]  # a resumed run timed its rest only
    timed = {"train_seconds": whole or runs, "eval_seconds": runs}
    times = {k: {**_spread([r[k] for r in found]), "min": min(r[k] for r in found)} for k, found in timed.items()}
    summary = {"rows": rows, **times, "seeds": len(runs), "steps": steps(runs[0])}
    if len(whole) < len(runs):
        summary["train_seconds_of"] = f"the {len(whole)} not resumed" if whole else "resumed runs only (the part after)"
    if all("out_of_domain" in r for r in runs):
        collections = runs[0]["out_of_domain"]
        summary["out_of_domain"] = {
            name: {row: _spread([r["out_of_domain"][name][row]["ndcg@10"] for r in runs]) for row in found}
            for name, found in collections.items()
        }
    if scored := [r["fusions"] for r in runs if "fusions" in r]:  # the seeds scored at --fusions, said how many
        summary["fusions"] = {row: _spread([f[row]["ndcg@10"] for f in scored]) for row in scored[0]}
        summary["fusion_seeds"] = len(scored)
    if scored := [_with_trained(r) for r in runs if "wise_ft" in r]:  # the seeds scored at --wise_ft
        weights = sorted(set.intersection(*(set(grid) for grid in scored)), key=float)
        summary["wise_ft"] = {weight: _wise_ft_spread([grid[weight] for grid in scored]) for weight in weights}
        summary["wise_ft_seeds"] = len(scored)
    return summary


def _with_trained(run: dict) -> dict:
    """A run's WiSE-FT grid with the trained retriever as weight 1 (its own rows and out-of-domain scores, where it
    has them and the grid has no measured 1)."""
    grid = run["wise_ft"]
    first = next(iter(grid.values()))
    if "1" in grid or not set(first["out_of_domain"]) <= set(run.get("out_of_domain", {})):
        return grid
    rows = list(first["in_domain"])
    trained = {
        "in_domain": {row: run["rows"][row] for row in rows},
        "out_of_domain": {c: {row: run["out_of_domain"][c][row] for row in rows} for c in first["out_of_domain"]},
    }
    return {**grid, "1": trained}


def _wise_ft_spread(grids: list[dict]) -> dict:
    """One WiSE-FT weight over seeds: nDCG@10 mean ± std of every row, in domain and per collection."""
    ndcg = lambda rows, row: [r[row]["ndcg@10"] for r in rows]  # noqa: E731
    in_domain = [g["in_domain"] for g in grids]
    return {
        "in_domain": {row: _spread(ndcg(in_domain, row)) for row in in_domain[0]},
        "out_of_domain": {
            c: {row: _spread(ndcg([g["out_of_domain"][c] for g in grids], row)) for row in rows}
            for c, rows in grids[0]["out_of_domain"].items()
        },
    }


def steps(run: dict) -> int | None:
    """A job's optimizer steps (ours: all stages; a re-ranking peer: its own, not its bi-encoder's), if trained."""
    details = run.get("details", {})
    return details.get("steps", details.get("train", {}).get("steps"))


def _cell(spread: dict[str, float], digits: int = 4) -> str:
    return f"{spread['mean']:.{digits}f}" + (f" ± {spread['std']:.{digits}f}" if spread["std"] else "")


def _label(name: str, row: str) -> str:
    """A table row's name: a peer's only ranking goes by the system's name, other rows add the ranking's."""
    return name if row in (BM25_ROW, RETRIEVER) and SYSTEMS[name].is_peer else f"{name}: {row}"


def _table(summaries: dict[str, dict]) -> list[str]:
    lines = [
        "| system | " + " | ".join(HEADERS) + " | seeds | steps | train s | eval s |",
        "|---" * (len(HEADERS) + 5) + "|",
    ]
    for name, s in summaries.items():
        trained = "-" if s.get("steps") is None else str(s["steps"])
        times = [str(s["seeds"]), trained, _cell(s["train_seconds"], 0), _cell(s["eval_seconds"], 0)]
        for row, values in s["rows"].items():
            cells = [_cell(values[m]) for m in METRICS] + times
            lines.append(f"| {_label(name, row)} | " + " | ".join(cells) + " |")
    return lines


def table_block(summaries: dict[str, dict]) -> list[str]:
    """The table and one line per system saying what it is (the block model cards embed)."""
    legend = [f"- {name}: {SYSTEMS[name].description}" for name in summaries if name in SYSTEMS]
    return [*_table(summaries), "", *legend]


README_BEGIN = "<!-- quality table: generated by python -m bench.quality (report.readme_table); do not edit -->"
README_END = "<!-- end of the quality table -->"


def _ranking(row: str) -> str:
    """A row's ranking in words (BM25's and a retriever's: the retriever)."""
    if not is_reranked(row):
        return "retriever"
    system = System.parse(row)
    head = f"re-ranked top {system.rerank_top_k}"
    return f"{head}, fused {system.fusion:g}" if system.fusion else head


def display_titles(systems: dict[str, dict]) -> dict[str, str]:
    """Each system's display title (README, cards), with its re-ranker's length where the benchmark ran it at
    another one than the recipe's (rows at another length never pass for the recipe's; a system that sets its own
    length says so in its title)."""
    found = {}
    for name, system in systems.items():
        length = benchmark_reranker_length(name, next(iter(system["seeds"].values()))["config"])
        differs = length is not None and length != recipe()["reranker_max_length"]
        found[name] = SYSTEMS[name].title + (f", re-ranker at {length} tokens" if differs else "")
    return found


def benchmark_reranker_length(name: str, config: dict) -> int | None:
    """The pair length the benchmark gave system ``name``'s re-ranker (job settings ``config``), or None for a
    system without a re-ranker or one whose flags set its own."""
    if SYSTEMS[name].job not in ("rq2", "st_crossencoder") or "--reranker_max_length" in SYSTEMS[name].flags:
        return None
    return config["lengths"]["reranker_max_length"]


def readme_table(summaries: dict[str, dict], titles: dict[str, str]) -> list[str]:
    """The README's table: every system by display title and ranking, nDCG@10 (mean ± std over seeds), seeds,
    optimizer steps and training minutes (the fastest seed's, with what the system needs: a bi-encoder, a
    teacher)."""
    lines = [
        README_BEGIN,
        "| system | ranking | nDCG@10 | seeds | steps | train min |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, summary in summaries.items():
        minutes = train_seconds(summaries, name, "min") / 60
        trained = "-" if summary.get("steps") is None else str(summary["steps"])
        for row, values in summary["rows"].items():
            cells = [titles.get(name, name), _ranking(row), _cell(values["ndcg@10"], 3), str(summary["seeds"])]
            lines.append("| " + " | ".join([*cells, trained, f"{minutes:.0f}"]) + " |")
    return [*lines, README_END]


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


def train_seconds(summaries: dict[str, dict], system: str, stat: str = "mean") -> float:
    """Training seconds of a system (``stat``: the mean over seeds, or the ``min``, the run least slowed by
    whatever shared the machine), with those of the system it needs (a re-ranking peer's bi-encoder, static
    distillation's teacher): what it costs to have it."""
    needs = RETRIEVER_OF.get(system) or (SYSTEMS[system].teacher if system in SYSTEMS else None)
    source = summaries.get(needs or "")
    extra = source["train_seconds"].get(stat, source["train_seconds"]["mean"]) if source else 0.0
    return summaries[system]["train_seconds"].get(stat, summaries[system]["train_seconds"]["mean"]) + extra


def _paired_ndcg(systems: dict[str, dict], name: str, row: str, peer: str) -> dict | None:
    """nDCG@10 of ours minus the peer's (``"system: row"``) at the seeds both ran, or None where none is shared."""
    peer_name, peer_row = peer.split(": ", 1)
    ours, theirs = systems[name]["seeds"], systems[peer_name]["seeds"]
    shared = [seed for seed in ours if seed is not None and seed in theirs]
    if not shared:
        return None
    return paired_delta([ours[s]["rows"][row]["ndcg@10"] - theirs[s]["rows"][peer_row]["ndcg@10"] for s in shared])


def _versus(
    summaries: dict[str, dict],
    systems: dict[str, dict],
    titles: dict[str, str],
    label: str,
    name: str,
    row: str,
    peers: dict[str, dict],
) -> dict | None:
    """Ours (``name``'s ``row``) against the best of ``peers`` (by nDCG@10): values, deltas and ratios, the
    nDCG@10 difference paired by seed where both ran the same seeds, and both display titles (which name a
    re-ranker's length where it is not the recipe's)."""
    ours = summaries[name]["rows"].get(row)
    if ours is None or not peers:
        return None
    peer = max(peers, key=lambda k: peers[k]["ndcg@10"]["mean"])
    values = {}
    for m in METRICS:
        mine, theirs = ours[m]["mean"], peers[peer][m]["mean"]
        values[m] = {"ours": mine, "peer": theirs, "delta": mine - theirs, "ratio": mine / theirs if theirs else None}
    peer_name, _, peer_row = peer.partition(": ")
    seconds = {"ours": train_seconds(summaries, name), "peer": train_seconds(summaries, peer_name)}
    paired = _paired_ndcg(systems, name, row, peer)
    shown = {"ours": titles.get(name, name), "peer": f"{titles.get(peer_name, peer_name)}: {peer_row}"}
    return {
        "comparison": f"{name} {label}",
        "kind": label,
        "peer": peer,
        "titles": shown,
        **values,
        "train_seconds": seconds,
        "paired": paired,
    }


def comparisons(
    summaries: dict[str, dict], systems: dict[str, dict], titles: dict[str, str], *, rerank_top_k: int, fusion: float
) -> list[dict]:
    """Each of ours against the best peer retriever and the best peer retrieve-then-rerank, by kind of ranking (the
    titles say where the re-rankers read different lengths)."""
    pure, fused = System.reranked(rerank_top_k).name, System.reranked(rerank_top_k, fusion=fusion).name
    kinds = (
        ("retriever vs best peer retriever", RETRIEVER, lambda r: r in (BM25_ROW, RETRIEVER)),
        ("retrieve-then-rerank vs best peer (pure re-ranking)", pure, lambda r: r == pure),
        (f"retrieve-then-rerank vs best peer (fusion {fusion:g})", fused, lambda r: r == fused),
    )
    found = [
        _versus(summaries, systems, titles, label, name, row, _entries(summaries, PEERS, peer_filter))
        for name in OURS
        if name in summaries
        for label, row, peer_filter in kinds
    ]
    return [c for c in found if c]


RERANKER_ABOVE = "re-ranker alone above its retriever"


def goals(summaries: dict[str, dict], full_scifact: bool) -> list[dict]:
    """Our nDCG@10 against the goals (set for the full SciFact test split, means over 3 seeds): the retriever's,
    the best re-ranked or fused ranking's, and the re-ranker alone strictly above its own retriever."""
    found = []
    for name in (s for s in OURS if s in summaries):
        rows = summaries[name]["rows"]
        retriever = rows[RETRIEVER]["ndcg@10"]["mean"]
        rerank = max((v["ndcg@10"]["mean"] for r, v in rows.items() if is_reranked(r)), default=None)
        pure = next((v["ndcg@10"]["mean"] for r, v in rows.items() if is_pure(r)), None)
        targets = {**GOALS, RERANKER_ABOVE: retriever}
        values = {"retriever": retriever, "retrieve-then-rerank": rerank, RERANKER_ABOVE: pure}
        for goal, value in values.items():
            if value is None:
                continue
            strict = goal == RERANKER_ABOVE
            found.append(
                {
                    "system": name,
                    "goal": goal,
                    "target": targets[goal],
                    "value": value,
                    "strict": strict,
                    "met": value > targets[goal] if strict else value >= targets[goal],
                    "seeds": summaries[name]["seeds"],
                    "applies": full_scifact and summaries[name]["seeds"] >= GOAL_SEEDS,
                }
            )
    return found


OOD_RETRIEVER_DROP = 0.01
"""Out-of-domain goal: a trained retriever no more than this below the zero-shot backbone's nDCG@10."""


def out_of_domain_checks(summaries: dict[str, dict]) -> list[dict]:
    """Per trained system and collection: its retriever against the zero-shot backbone's (at most 1 point below)
    and each re-ranked or fused ranking against its own retriever (never below), nDCG@10 means."""
    zeroshot = summaries.get("zeroshot", {}).get("out_of_domain", {})
    checks = []
    for name, summary in summaries.items():
        for collection, rows in summary.get("out_of_domain", {}).items():
            own = summaries.get(RETRIEVER_OF.get(name, name), {}).get("out_of_domain", {}).get(collection, {})
            retriever = own.get(RETRIEVER) or own.get(BM25_ROW)
            base = zeroshot.get(collection, {}).get(RETRIEVER)
            if name not in ("zeroshot", "bm25") and base and RETRIEVER in rows:
                checks.append(_check(name, collection, RETRIEVER, retriever, base, -OOD_RETRIEVER_DROP, "zero-shot"))
            for row, value in rows.items():  # the system's own rankings (the other fusion weights: a choice)
                if is_reranked(row) and retriever and row in summary.get("rows", {}):
                    checks.append(_check(name, collection, row, value, retriever, 0.0, "its retriever"))
    return checks


def _check(name: str, collection: str, row: str, value: dict, base: dict, allowed: float, against: str) -> dict:
    delta = round(value["mean"] - base["mean"], 4)  # as reported: 1 point below is within "1 point below"
    return {
        "system": name,
        "collection": collection,
        "row": row,
        "against": against,
        "delta": delta,
        "met": delta >= allowed,
    }


def ood_choices(summaries: dict[str, dict], choose_on: str | None) -> list[dict]:
    """Per system with a re-ranker, the ranking (retriever, re-ranked, or fused at one weight) best on the
    collection ``choose_on`` (default: the first), and what it gives on the others beside the system's retriever
    there: a fusion weight chosen out of domain, reported where nothing was chosen."""
    found = []
    for name, summary in summaries.items():
        own = summaries.get(RETRIEVER_OF.get(name, name), {}).get("out_of_domain", {})
        rankings = {c: {**own.get(c, {}), **rows} for c, rows in summary.get("out_of_domain", {}).items()}
        if not rankings:
            continue
        chooser = _chooser(list(rankings), choose_on)
        if not any(is_reranked(row) for row in rankings[chooser]):
            continue
        row = max(rankings[chooser], key=lambda r: rankings[chooser][r]["mean"])
        reported = {
            c: {"value": rows[row]["mean"], "retriever": rows[RETRIEVER]["mean"]}
            for c, rows in rankings.items()
            if c != chooser and row in rows and RETRIEVER in rows
        }
        on_chooser = rankings[chooser][row]["mean"]
        found.append({"system": name, "chosen_on": chooser, "row": row, "on_chooser": on_chooser, "reported": reported})
    return found


def _ood_choice_lines(choices: list[dict]) -> list[str]:
    if not choices:
        return []
    lines = ["", "Out of domain, the ranking chosen on one collection, reported on the others:", ""]
    for c in choices:
        others = "; ".join(
            f"{collection} {e['value']:.4f} (its retriever {e['retriever']:.4f}, {e['value'] - e['retriever']:+.4f})"
            for collection, e in c["reported"].items()
        )
        lines.append(f"- {c['system']}: {c['row']} chosen on {c['chosen_on']} ({c['on_chooser']:.4f}); {others}")
    return lines


def wise_ft_choices(summaries: dict[str, dict], choose_on: str | None) -> list[dict]:
    """Per system scored at ``--wise_ft``: every weight's rankings in and out of domain (1: the trained retriever),
    and the weight chosen on the collection ``choose_on`` (default: the first) by its retriever: the largest weight
    at most ``OOD_RETRIEVER_DROP`` below the zero-shot backbone there (the goal), else the best there."""
    zeroshot = summaries.get("zeroshot", {}).get("out_of_domain", {})
    found = []
    for name, summary in summaries.items():
        if "wise_ft" not in summary:
            continue
        grid = summary["wise_ft"]
        chooser = _chooser(list(next(iter(grid.values()))["out_of_domain"]), choose_on)
        retriever = {weight: scored["out_of_domain"][chooser][RETRIEVER]["mean"] for weight, scored in grid.items()}
        floor = zeroshot.get(chooser, {}).get(RETRIEVER, {}).get("mean")
        within = [w for w, value in retriever.items() if floor is not None and value >= floor - OOD_RETRIEVER_DROP]
        best = max(within, key=float) if within else max(retriever, key=retriever.get)
        rule = (
            f"the largest weight within {OOD_RETRIEVER_DROP:g} of zero-shot"
            if within
            else "the best retriever, no weight within the goal"
            if floor is not None
            else "the best retriever, zero-shot not scored"
        )
        found.append(
            {
                "system": name,
                "chosen_on": chooser,
                "weight": float(best),
                "rule": rule,
                "grid": grid,
                "zeroshot": {c: rows[RETRIEVER]["mean"] for c, rows in zeroshot.items() if RETRIEVER in rows},
                "seeds": summary["wise_ft_seeds"],
            }
        )
    return found


def _chooser(collections: list[str], choose_on: str | None) -> str:
    """The collection a setting is chosen on: ``choose_on``, which must be one scored, else the first."""
    if choose_on is None:
        return collections[0]
    if choose_on not in collections:
        raise SystemExit(f"--ood_choose_on: {choose_on!r} is none of the collections scored ({', '.join(collections)})")
    return choose_on


def _wise_ft_lines(choices: list[dict]) -> list[str]:
    if not choices:
        return []
    lines = [
        "",
        "WiSE-FT: the retriever interpolated with the zero-shot backbone (weight: the trained share; 1 is the trained "
        "retriever), nDCG@10 of the retriever / re-ranked / fused, in domain and out of domain; the weight is chosen "
        "on one collection by its retriever, the others report:",
        "",
    ]
    for c in choices:
        collections = list(next(iter(c["grid"].values()))["out_of_domain"])
        lines += [
            f"{c['system']} ({c['seeds']} seed{'s' * (c['seeds'] != 1)}), chosen on {c['chosen_on']} as {c['rule']}: "
            f"**{c['weight']:g}**",
            "",
            "| weight | in domain | " + " | ".join(collections) + " |",
            "|---" * (len(collections) + 2) + "|",
        ]
        for weight, scored in c["grid"].items():
            cells = [_rankings(scored["in_domain"])]
            cells += [_rankings(scored["out_of_domain"].get(collection, {})) for collection in collections]
            lines.append(f"| {weight} | " + " | ".join(cells) + " |")
        if c["zeroshot"]:
            zero = " | ".join(f"{c['zeroshot'].get(collection, float('nan')):.4f}" for collection in collections)
            lines.append(f"| zero-shot retriever | - | {zero} |")
        lines.append("")
    return lines


def _rankings(rows: dict) -> str:
    """A cell of every ranking's nDCG@10 mean, retriever first, as ``a / b / c``."""
    return " / ".join(f"{v['mean']:.4f}" for v in rows.values()) or "-"


def fusion_choices(summaries: dict[str, dict], split: str, dev: bool, fusion: float) -> list[dict]:
    """Per system scored at ``--fusions``: its rankings' nDCG@10 means on the evaluation split ``split`` (retriever,
    re-ranked, fused at each weight, all from the same models), the best of them and its margin over the job's own
    weight ``fusion``; a choice where ``dev``, a reading otherwise."""
    found = []
    for name, summary in summaries.items():
        if "fusions" not in summary:
            continue
        rankings = summary["fusions"]
        best = max(rankings, key=lambda row: rankings[row]["mean"])
        own = next((row for row in rankings if is_reranked(row) and System.parse(row).fusion == fusion), None)
        found.append(
            {
                "system": name,
                "split": split,
                "choice": dev,
                "rankings": rankings,
                "best": best,
                "margin_over_own": rankings[best]["mean"] - rankings[own]["mean"] if own else None,
                "seeds": summary["fusion_seeds"],
            }
        )
    return found


def _fusion_lines(choices: list[dict]) -> list[str]:
    if not choices:
        return []
    split, dev = choices[0]["split"], choices[0]["choice"]
    use = "the choice" if dev else f"a reading of {split}, not a choice (choose on a dev split, --dev_queries)"
    lines = ["", f"Fusion weights (of the retriever) scored on {split}, nDCG@10; the best is {use}:", ""]
    for c in choices:
        cells = "; ".join(f"{row} {_cell(value)}" for row, value in c["rankings"].items())
        margin = "" if c["margin_over_own"] is None else f" ({c['margin_over_own']:+.4f} over the job's own weight)"
        lines.append(f"- {c['system']} ({c['seeds']} seeds): {cells}; best: **{c['best']}**{margin}")
    return lines


def _out_of_domain_lines(summaries: dict[str, dict], checks: list[dict]) -> list[str]:
    """The out-of-domain table (nDCG@10 per collection, mean ± std over seeds) and its goals."""
    found = {name: s["out_of_domain"] for name, s in summaries.items() if "out_of_domain" in s}
    if not found:
        return []
    collections = list(next(iter(found.values())))
    lines = ["", "Out of domain, nDCG@10 (trained on the training split above, scored on each collection's test):", ""]
    lines += ["| system | " + " | ".join(collections) + " | seeds |", "|---" * (len(collections) + 2) + "|"]
    for name, scored in found.items():
        for row in next(iter(scored.values())):
            cells = [_cell(scored[c][row]) if row in scored.get(c, {}) else "-" for c in collections]
            lines.append(f"| {_label(name, row)} | " + " | ".join(cells) + f" | {summaries[name]['seeds']} |")
    goal = f"retriever at most {OOD_RETRIEVER_DROP:g} below zero-shot; re-ranking never below its own retriever"
    lines += ["", f"Out-of-domain goals ({goal}):", ""]
    lines += [
        f"- {c['system']} {c['collection']} {c['row']} vs {c['against']}: {c['delta']:+.4f} "
        f"({'met' if c['met'] else 'missed'})"
        for c in checks
    ]
    return lines


# ---------------------------------------------------------------- Markdown


def _comparison_line(c: dict) -> str:
    parts = [
        f"{h} {c[m]['ours']:.4f} vs {c[m]['peer']:.4f} ({c[m]['delta']:+.4f}, x{c[m]['ratio']:.3f})"
        for h, m in zip(HEADERS, METRICS)
        if c[m]["ratio"] is not None
    ]
    seconds = c["train_seconds"]
    paired = f"; paired by seed: {_delta_text('nDCG@10', c['paired'])}" if c.get("paired") else ""
    return (
        f"- {c['titles']['ours']}, {c['kind']} ({c['titles']['peer']}): "
        + "; ".join(parts)
        + f"; train s {seconds['ours']:.0f} vs {seconds['peer']:.0f}{paired}"
    )


def _goal_line(g: dict) -> str:
    verdict = ("met" if g["met"] else "missed") if g["applies"] else "n/a: not full SciFact test, full budgets, 3 seeds"
    relation = ">" if g.get("strict") else ">="
    value = f"{g['value']:.4f}, {g['seeds']} seeds"
    return f"- {g['system']} {g['goal']}: nDCG@10 {relation} {g['target']:.4f}: {value} ({verdict})"


def _grid_lines(name: str, system: dict) -> list[str]:
    seed = next(iter(system["seeds"]))
    title = f"{name} grid at seed {seed}, selected on {system['selected_on']}: **{system['best']}**"
    lines = ["", title, "", "| point | " + " | ".join(HEADERS) + " | train s |", "|---" * (len(HEADERS) + 2) + "|"]
    for key, run in system["grid"].items():
        for row, values in run["rows"].items():
            cells = " | ".join(f"{values[m]:.4f}" for m in METRICS)
            lines.append(f"| {key}: {row} | {cells} | {run['train_seconds']:.0f} |")
    return lines


def paired_delta(deltas: list[float]) -> dict:
    """Mean and spread of per-seed differences, and whether they are told apart from 0: the 95% interval of a
    paired t-test (mean ± t * std / sqrt(n)) excludes 0. One seed tells nothing apart."""
    from scipy import stats

    n, mean = len(deltas), statistics.fmean(deltas)
    if n < 2:
        return {"mean": mean, "std": None, "seeds": n, "interval": None, "verdict": "one seed"}
    std = statistics.stdev(deltas)
    half = stats.t.ppf(0.975, n - 1) * std / n**0.5
    verdict = "inside the seed spread" if abs(mean) <= half else ("better" if mean > 0 else "worse")
    return {"mean": mean, "std": std, "seeds": n, "interval": [mean - half, mean + half], "verdict": verdict}


def _delta_text(row: str, delta: dict) -> str:
    if delta["std"] is None:
        return f"{row} {delta['mean']:+.4f} (one seed)"
    low, high = delta["interval"]
    return f"{row} {delta['mean']:+.4f} ± {delta['std']:.4f} (95% [{low:+.4f}, {high:+.4f}]: {delta['verdict']})"


ALSO_PAIRED = (("denoised", "undenoised"),)
"""Ablations also compared with each other: denoised vs undenoised is the re-ranker's filter alone (one mined list
a claim each)."""


def ablation_deltas(name: str, systems: dict[str, dict], baseline: str | None = None) -> dict[str, dict] | None:
    """nDCG@10 of an ablation minus its baseline's (or ``baseline``'s), paired at the seeds both ran (same data
    order), per row."""
    baseline = baseline or SYSTEMS[name].baseline
    base, runs = systems[baseline]["seeds"], systems[name]["seeds"]
    shared = [seed for seed in runs if seed in base]
    if not shared:
        return None
    rows = [row for row in runs[shared[0]]["rows"] if row in base[shared[0]]["rows"]]
    return {
        row: paired_delta([runs[s]["rows"][row]["ndcg@10"] - base[s]["rows"][row]["ndcg@10"] for s in shared])
        for row in rows
    }


def _ablation_line(name: str, systems: dict[str, dict], baseline: str) -> str | None:
    deltas = ablation_deltas(name, systems, baseline)
    if deltas is None:
        return None
    seeds = [seed for seed in systems[name]["seeds"] if seed in systems[baseline]["seeds"]]
    parts = [_delta_text(row, delta) for row, delta in deltas.items()]
    return f"- {name} vs {baseline}, seeds {', '.join(map(str, seeds))}: " + "; ".join(parts)


def _ablation_lines(systems: dict[str, dict]) -> list[str]:
    """One line per ablation that ran beside its baseline, and per pair of ``ALSO_PAIRED`` that both ran."""
    lines = [
        _ablation_line(name, systems, SYSTEMS[name].baseline)
        for name in PAIRED
        if name in systems and SYSTEMS[name].baseline in systems
    ]
    lines += [_ablation_line(a, systems, b) for a, b in ALSO_PAIRED if a in systems and b in systems]
    lines = [line for line in lines if line]
    title = (
        "Ablations and levers, nDCG@10 minus the system each changes one thing of, paired by seed (mean ± std of "
        "the differences; a 95% paired-t interval that holds 0 is called inside the seed spread):"
    )
    return ["", title, "", *lines] if lines else []


def report_title(report: dict) -> str:
    """The report's heading: data, split, seeds, and the re-rankers' length where it is not the recipe's."""
    d, recipe_length = report["data"], recipe()["reranker_max_length"]
    length = report["settings"].get("reranker_max_length", recipe_length)
    peer = report["settings"].get("peer_reranker_max_length") or length
    other = f", re-rankers at {length} tokens (the recipe's: {recipe_length})" if length != recipe_length else ""
    other += f", the CrossEncoder peer's at {peer} tokens" if peer != length else ""
    return (
        f"# Retrieval quality: {d['name']} {d['eval_split']} ({d['queries']} queries, {d['corpus']} passages), "
        f"seeds {report['settings']['seeds']}{other}"
    )


def markdown(report: dict) -> str:
    """The report: the table of systems, the comparisons, the goals, the peers' grids, the ablations."""
    lines = [report_title(report), "", *report["table"]]
    timing = {name: s["train_seconds_of"] for name, s in report["summaries"].items() if "train_seconds_of" in s}
    lines += ["", *(f"- {name}: train s of {of}" for name, of in timing.items())] if timing else []
    if report["comparisons"]:
        lines += ["", "Ours vs the best peer (delta, ratio):", "", *map(_comparison_line, report["comparisons"])]
    if report["goals"]:
        lines += ["", "Goals (full SciFact test):", "", *map(_goal_line, report["goals"])]
    for name in ("st_biencoder", "st_crossencoder"):
        if name in report["systems"]:
            lines += _grid_lines(name, report["systems"][name])
    lines += _ablation_lines(report["systems"])
    lines += _fusion_lines(report.get("fusion_choices", []))
    lines += _out_of_domain_lines(report["summaries"], report["out_of_domain"])
    lines += _ood_choice_lines(report.get("ood_choices", []))
    lines += _wise_ft_lines(report.get("wise_ft_choices", []))
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
    titles = display_titles({name: s for name, s in systems.items() if name in SYSTEMS})
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
        "titles": titles,
        "table": table_block(summaries),
        "comparisons": comparisons(summaries, systems, titles, rerank_top_k=args.rerank_top_k, fusion=args.fusion),
        "goals": goals(summaries, full_scifact),
        "out_of_domain": out_of_domain_checks(summaries),
        "readme_table": readme_table(summaries, titles),
        "ood_choices": ood_choices(summaries, args.ood_choose_on),
        "fusion_choices": fusion_choices(summaries, args.eval_split, bool(args.dev_queries), args.fusion),
        "wise_ft_choices": wise_ft_choices(summaries, args.ood_choose_on),
        "ablations": {
            name: ablation_deltas(name, systems)
            for name in PAIRED
            if name in systems and SYSTEMS[name].baseline in systems
        },
    }
