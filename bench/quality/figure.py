"""The report's figure: nDCG@10 against training minutes, one point per system and ranking, so a reader sees what
each system's quality costs at a glance."""

from pathlib import Path

from .report import is_pure, is_reranked, train_seconds
from .systems import PEERS

MARKERS = {"retriever": "o", "reranked": "s", "fused": "^"}


def _kind(row: str) -> str:
    """retriever, reranked or fused (BM25's row counts as a retriever)."""
    if not is_reranked(row):
        return "retriever"
    return "reranked" if is_pure(row) else "fused"


def points(report: dict) -> list[dict]:
    """Every system's rows as (system, kind, minutes, nDCG@10 mean and std, seeds)."""
    summaries = report["summaries"]
    found = []
    for name, summary in summaries.items():
        minutes = train_seconds(summaries, name, "min") / 60
        for row, values in summary["rows"].items():
            ndcg = values["ndcg@10"]
            found.append(
                {
                    "system": name,
                    "kind": _kind(row),
                    "minutes": minutes,
                    "ndcg": ndcg["mean"],
                    "std": ndcg["std"],
                    "seeds": summary["seeds"],
                }
            )
    return found


def write_figure(report: dict, path: Path) -> Path:
    """Draw ``points(report)`` (error bars: the seed spread) into ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 6.5))
    for point in points(report):
        ax.errorbar(
            point["minutes"],
            point["ndcg"],
            yerr=point["std"] or None,
            fmt=MARKERS[point["kind"]],
            color="tab:blue" if point["system"] in PEERS else "tab:red",
            capsize=3,
        )
        ax.annotate(
            point["system"], (point["minutes"], point["ndcg"]), fontsize=7, xytext=(4, 2), textcoords="offset points"
        )
    for kind, marker in MARKERS.items():
        ax.plot([], [], marker, color="gray", label=kind)
    ax.plot([], [], "s", color="tab:blue", label="peers")
    ax.plot([], [], "s", color="tab:red", label="ours")
    d = report["data"]
    ax.set(
        xlabel="training minutes (wall, this machine, the fastest seed's; static: with its teacher's)",
        ylabel="nDCG@10",
        title=f"{d['name']} {d['eval_split']}: quality against training time (error bars: std over seeds)",
    )
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
