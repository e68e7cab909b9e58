"""The report's figure: nDCG@10 against training minutes, one point per system and ranking, so a reader sees what
each system's quality costs at a glance: retrievers on the left, retrieve-then-rerank on the right."""

from pathlib import Path

from .report import is_pure, is_reranked, train_seconds
from .systems import OURS_GROUP, PEER, SYSTEMS

MARKERS = {"retriever": "o", "reranked": "s", "fused": "^"}
PANELS = {"retriever": "retriever", "reranked": "retrieve-then-rerank", "fused": "retrieve-then-rerank"}
"""The panel of each kind of ranking."""
COLOURS = {PEER: "tab:blue", OURS_GROUP: "tab:red"}
"""The peers' and our recipes' colours; ablations and levers are grey and smaller, beside them."""


def _kind(row: str) -> str:
    """retriever, reranked or fused (BM25's row counts as a retriever)."""
    if not is_reranked(row):
        return "retriever"
    return "reranked" if is_pure(row) else "fused"


def points(report: dict) -> list[dict]:
    """Every system's rows as (system, its group, kind, panel, minutes, nDCG@10 mean and std, seeds)."""
    summaries = report["summaries"]
    found = []
    for name, summary in summaries.items():
        minutes = train_seconds(summaries, name, "min") / 60
        for row, values in summary["rows"].items():
            ndcg, kind = values["ndcg@10"], _kind(row)
            found.append(
                {
                    "system": name,
                    "group": SYSTEMS[name].group,
                    "kind": kind,
                    "panel": PANELS[kind],
                    "minutes": minutes,
                    "ndcg": ndcg["mean"],
                    "std": ndcg["std"],
                    "seeds": summary["seeds"],
                }
            )
    return found


def _draw(ax, point: dict) -> None:
    """One point with its seed spread and its system's name."""
    main = point["group"] in COLOURS
    ax.errorbar(
        point["minutes"],
        point["ndcg"],
        yerr=point["std"] or None,
        fmt=MARKERS[point["kind"]],
        color=COLOURS.get(point["group"], "tab:gray"),
        markersize=7 if main else 4,
        capsize=3 if main else 0,
        alpha=1.0 if main else 0.7,
        zorder=3 if main else 2,
    )
    ax.annotate(
        point["system"],
        (point["minutes"], point["ndcg"]),
        fontsize=7 if main else 5.5,
        color="black" if main else "dimgray",
        xytext=(4, 2),
        textcoords="offset points",
    )


def write_figure(report: dict, path: Path) -> Path:
    """Draw ``points(report)`` (error bars: the seed spread) into ``path`` (PNG), one panel per kind of ranking."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    found = points(report)
    panels = [panel for panel in dict.fromkeys(PANELS.values()) if any(p["panel"] == panel for p in found)]
    fig, axes = plt.subplots(1, len(panels), figsize=(7 * len(panels), 6.5), sharey=True, squeeze=False)
    for ax, panel in zip(axes[0], panels, strict=True):
        for point in (p for p in found if p["panel"] == panel):
            _draw(ax, point)
        ax.set(xlabel="training minutes (wall, this machine, the fastest seed's; static: with its teacher's)")
        ax.set_title(panel)
        ax.grid(alpha=0.3)
    for kind, marker in MARKERS.items():
        axes[0][-1].plot([], [], marker, color="gray", label={"reranked": "re-ranker alone"}.get(kind, kind))
    for label, colour in (("peers", "tab:blue"), ("ours", "tab:red"), ("ablations, levers", "tab:gray")):
        axes[0][-1].plot([], [], "s", color=colour, label=label)
    axes[0][0].set_ylabel("nDCG@10")
    d = report["data"]
    fig.suptitle(f"{d['name']} {d['eval_split']}: quality against training time (error bars: std over seeds)")
    axes[0][-1].legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
