"""``python -m modeling_rq2.evaluate``: the evaluation command (``modeling_rq2.evaluation.evaluate``)."""

import sys

from .evaluation.evaluate import main

if __name__ == "__main__":
    main(sys.argv[1:])
