"""The publishing command: stage a train.py output folder's two models with their cards, then upload them.

    rq2-push --run_dir outputs/scifact --retriever_repo me/rq2-scifact-retriever \\
        --reranker_repo me/rq2-scifact-reranker --benchmark bench/results/quality.json \\
        --dry_run true --output_dir staged/
"""

from dataclasses import dataclass, field

from ..argparsing import CommandParser
from .publish import describe, publish, stage_run


@dataclass
class PushArguments:
    """The flags of ``push_to_hub.py`` / ``rq2-push``."""

    run_dir: str = field(metadata={"help": "train.py output folder (retriever/, reranker/, metrics.json)"})
    retriever_repo: str = field(metadata={"help": "Hub repo id of the retriever, e.g. user/name-retriever"})
    reranker_repo: str = field(metadata={"help": "Hub repo id of the re-ranker, e.g. user/name-reranker"})
    private: bool = False
    token: str | None = field(default=None, metadata={"help": "Hub token (default: HF_TOKEN or the logged-in token)"})
    revision: str | None = field(default=None, metadata={"help": "branch to push to"})
    commit_message: str = "Upload RocketQAv2 model trained with modeling_rq2"
    dry_run: bool = field(default=False, metadata={"help": "stage only; print what would be uploaded"})
    output_dir: str | None = field(
        default=None,
        metadata={"help": "where to stage (default: a temporary folder)", "aliases": ["--local_dir", "--local-dir"]},
    )
    benchmark: str | None = field(
        default=None, metadata={"help": "bench.quality report (JSON) whose table goes into the cards"}
    )


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point (``push_to_hub.py``, ``rq2-push``)."""
    (args,) = CommandParser(PushArguments).parse_args_into_dataclasses(args=argv)
    repos = {"retriever": args.retriever_repo, "reranker": args.reranker_repo}
    staged = stage_run(args.run_dir, repos, args.output_dir, benchmark=args.benchmark)
    print(describe(staged))
    if args.dry_run:
        print(f"dry run: staged in {staged['retriever'].parent}, nothing uploaded")
        return
    for url in publish(
        staged,
        repos,
        token=args.token,
        private=args.private,
        revision=args.revision,
        commit_message=args.commit_message,
    ):
        print(f"uploaded: {url}")
