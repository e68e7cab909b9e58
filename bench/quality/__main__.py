"""``python -m bench.quality``: the command line (see the package's docstring)."""

import argparse
import os
import time
from pathlib import Path

import bench.quality
from bench.reporting import write_report
from modeling_rq2.models.modeling_rq2 import INFERENCE_BACKENDS

from .figure import write_figure
from .jobs import recipe
from .report import build_report, markdown
from .runner import ROOT, prepare_data, run_child, run_systems
from .systems import BASELINE, GROUPS, LEVERS, OURS, PEERS, SYSTEMS, expand

RESULTS = ROOT / "bench" / "results"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.quality",
        description=bench.quality.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--systems",
        nargs="+",
        default=[*PEERS, *OURS],
        choices=(*SYSTEMS, *GROUPS),
        help=f"'ablations': every ablation (with its baseline, {BASELINE} or the chain); 'levers': candidate "
        "changes to the recipe (choose them with --dev_queries); 'all': everything",
    )
    parser.add_argument("--data", default="scifact", help="BEIR folder, bundled name or Hub dataset")
    parser.add_argument("--train_split", default="train")
    parser.add_argument("--eval_split", default="test")
    parser.add_argument("--seeds", nargs="+", type=int, default=[42])
    parser.add_argument(
        "--dev_queries",
        type=int,
        default=0,
        help="choose on a dev split: N training queries held out (--dev_seed), every system trains on the rest "
        "and is scored on them; the test split is not read",
    )
    parser.add_argument("--dev_seed", type=int, default=0)
    parser.add_argument(
        "--out_of_domain",
        nargs="*",
        default=[],
        metavar="BEIR_FOLDER",
        help="also score every job's models on these collections' test splits (e.g. ../shared/data/cacm "
        "../shared/data/med): what training costs outside its domain",
    )
    parser.add_argument(
        "--ood_fusions",
        nargs="*",
        type=float,
        default=[0.25, 0.5, 0.75, 0.9],
        help="fusion weights (of the retriever) also scored out of domain, one chosen on --ood_choose_on",
    )
    parser.add_argument(
        "--ood_choose_on",
        help="the collection (its name) the fusion and WiSE-FT weights are chosen on; the others only report "
        "(default: the first, by path in alphabetical order)",
    )
    parser.add_argument(
        "--wise_ft",
        nargs="+",
        type=float,
        default=[],
        metavar="W",
        help="also score each of our runs' retriever interpolated with the zero-shot backbone (WiSE-FT; W: the "
        "trained share) in domain and on --out_of_domain, the weight chosen on --ood_choose_on",
    )
    parser.add_argument(
        "--fusions",
        nargs="+",
        type=float,
        default=[],
        help="fusion weights (of the retriever, in [0, 1]) every job with a re-ranker is also scored at, on the "
        "evaluation split (a job of its own per run: one more corpus encoding, and the job trained again where only "
        "its ledger entry is left); the report names the best ranking, a choice on a dev split (--dev_queries)",
    )
    parser.add_argument(
        "--reranker_max_length",
        type=int,
        default=recipe()["reranker_max_length"],
        help="tokens a (query, passage) pair of every re-ranker, ours and the CrossEncoder peer's unless "
        "--peer_reranker_max_length (default: our recipe's); a job's settings name it, so runs at other lengths "
        "stay apart in the cache and the ledger",
    )
    parser.add_argument(
        "--peer_reranker_max_length",
        type=int,
        help="tokens a pair of the CrossEncoder peer, where it differs from --reranker_max_length: one run reports "
        "our recipe at its length beside a peer given a longer one (and our preset at that length)",
    )
    parser.add_argument("--top_k", type=int, default=100)
    parser.add_argument("--rerank_top_k", type=int, default=20)
    parser.add_argument("--fusion", type=float, default=0.5)
    parser.add_argument("--batch_size", type=int, default=64, help="evaluation batch size")
    parser.add_argument(
        "--backend",
        choices=INFERENCE_BACKENDS,
        default="torch",
        help="what runs our encoders in evaluation (openvino: the same nDCG@10, about 1.2x faster on a CPU)",
    )
    # the peers' grids reach past where their best sat in the first runs (bi-encoder: 3 epochs at lr 2e-5, the
    # edge, then 5 epochs at 5e-5, the edge again: 0.757 against 0.729 at 3; CrossEncoder: ListNet, 3 epochs, the
    # edge; then 8 epochs at 1e-4: 0.784, the edge of both; 2e-4 runs at 5 / 8 epochs by hand), so that a best
    # point inside the grid is seen as such
    parser.add_argument("--st_lrs", nargs="+", type=float, default=[2e-5, 5e-5, 1e-4])
    parser.add_argument("--st_epochs", nargs="+", type=int, default=[3, 5, 8, 12])
    parser.add_argument("--st_batch_size", type=int, default=16)
    parser.add_argument("--ce_losses", nargs="+", choices=("bce", "listnet"), default=["listnet", "bce"])
    parser.add_argument("--ce_lrs", nargs="+", type=float, default=[5e-5])
    parser.add_argument("--ce_epochs", nargs="+", type=int, default=[3, 5])
    parser.add_argument(
        "--ce_batch_queries", type=int, default=recipe()["batch_size"], help="queries per CrossEncoder step"
    )
    parser.add_argument("--max_train_queries", type=int, help="budget: the first N training lists, every system")
    parser.add_argument("--max_steps", type=int, help="budget: optimizer steps, every trained system")
    parser.add_argument("--eval_queries", type=int, help="smoke: the first N evaluation queries")
    parser.add_argument(
        "--corpus_limit", type=int, help="smoke: judged passages of the kept queries + the first N others"
    )
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--work_dir", help="jobs' models and cached results (default outputs/bench/<name of --output>)")
    parser.add_argument("--output", default=str(RESULTS / "quality"), help="writes OUTPUT.json and OUTPUT.md")
    parser.add_argument(
        "--ledger",
        help="where each finished job's result is copied, to be committed (default OUTPUT-jobs/): a rerun on "
        "another machine reuses it",
    )
    parser.add_argument(
        "--cached_only",
        action="store_true",
        help="report the jobs that have run (each system with the seeds it has), start none",
    )
    parser.add_argument("--job", help=argparse.SUPPRESS)  # internal: run one job folder in this process
    return parser


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Flags; ``--systems`` groups expanded into system names in a fixed order."""
    args = _parser().parse_args(argv)
    args.systems = expand(args.systems)
    args.ledger = args.ledger or f"{args.output}-jobs"
    args.peer_reranker_max_length = args.peer_reranker_max_length or args.reranker_max_length
    if not all(0.0 <= weight <= 1.0 for weight in (*args.fusions, *args.ood_fusions, *args.wise_ft)):
        given = {"--fusions": args.fusions, "--ood_fusions": args.ood_fusions, "--wise_ft": args.wise_ft}
        raise SystemExit(f"weights must be in [0, 1], got {given}")
    if args.wise_ft and not any(SYSTEMS[name].job == "rq2" for name in args.systems):
        raise SystemExit("--wise_ft: interpolates our retrievers; name one of our systems in --systems")
    if args.wise_ft and not args.out_of_domain:
        raise SystemExit("--wise_ft: its weight is chosen out of domain; name the collections with --out_of_domain")
    return args


def main(argv: list[str] | None = None) -> dict:
    """Run (or reuse) every job, then write and print the report."""
    args = parse_args(argv)
    if args.job:
        run_child(Path(args.job), args.threads)
        return {}
    levers = [name for name in args.systems if name in LEVERS]
    if levers and not args.dev_queries and not args.cached_only:
        print(f"note: {', '.join(levers)} are levers: choose them on a dev split (--dev_queries), then read test once")
    if args.fusions and not args.dev_queries and not args.cached_only:
        print("note: --fusions on the test split is a reading; choose the fusion weight on a dev split (--dev_queries)")
    started = time.perf_counter()
    output = Path(args.output)
    work = Path(args.work_dir or ROOT / "outputs" / "bench" / output.name)
    data_path = prepare_data(args, work)
    systems = run_systems(args, work, data_path)
    report = build_report(args, data_path, systems)
    report["seconds"] = time.perf_counter() - started
    write_report(report, output, markdown)
    figure = write_figure(report, output.with_suffix(".png"))
    print(f"wrote {output.with_suffix('.json')}, .md and {figure.name} in {report['seconds']:.0f} s")
    return report


if __name__ == "__main__":
    main()
