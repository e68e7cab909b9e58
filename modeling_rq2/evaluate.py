"""``python -m modeling_rq2.evaluate``: the evaluation command (``modeling_rq2.evaluation.evaluate``)."""

from .cli import evaluate
from .evaluation.evaluate import main  # noqa: F401  (the command, for callers that pass their own argv)

if __name__ == "__main__":
    evaluate()
