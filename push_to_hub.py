"""Publish a train.py output folder: the retriever and the re-ranker, each with a generated model card
(``modeling_rq2.hub.push``; installed as ``rq2-push`` too).

    python push_to_hub.py --run_dir outputs/scifact --retriever_repo me/rq2-scifact-retriever \
        --reranker_repo me/rq2-scifact-reranker --benchmark bench/results/quality.json \
        --dry_run true --local_dir staged/
"""

from modeling_rq2.cli import push
from modeling_rq2.hub.push import main  # noqa: F401  (the command, for callers that pass their own argv)

if __name__ == "__main__":
    push()
