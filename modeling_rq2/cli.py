"""The command-line entry points (``train.py``, ``push_to_hub.py``, ``python -m modeling_rq2.evaluate`` and the
``rq2-*`` console scripts): a mistake of the user's is one line on stderr and exit status 2, as argparse reports a
bad flag, instead of a traceback; ``RQ2_TRACEBACK=1`` shows the traceback."""

import os
import sys
from collections.abc import Callable

USER_ERRORS = (ValueError, TypeError, OSError, FloatingPointError, RuntimeError)
"""What a bad flag, file, setting or folder raises (DataFormatError is a ValueError)."""


def run(main: Callable[[list[str]], object], prog: str) -> None:
    """``main(sys.argv[1:])``, a user error printed as ``PROG: error: MESSAGE`` (exit 2)."""
    try:
        main(sys.argv[1:])
    except USER_ERRORS as err:
        if os.environ.get("RQ2_TRACEBACK"):
            raise
        print(f"{prog}: error: {err}\n(RQ2_TRACEBACK=1 shows where it was raised)", file=sys.stderr)
        raise SystemExit(2) from None


def train() -> None:
    """``rq2-train`` / ``train.py``."""
    from .training.chain import main

    run(main, os.path.basename(sys.argv[0]) or "rq2-train")


def evaluate() -> None:
    """``rq2-evaluate`` / ``python -m modeling_rq2.evaluate``."""
    from .evaluation.evaluate import main

    run(main, "rq2-evaluate")


def augment() -> None:
    """``rq2-augment`` / ``python -m modeling_rq2.training.augmentation``."""
    from .training.augmentation import main

    run(main, "rq2-augment")


def interpolate() -> None:
    """``rq2-interpolate`` / ``python -m modeling_rq2.training.interpolation``."""
    from .training.interpolation import main

    run(main, "rq2-interpolate")


def push() -> None:
    """``rq2-push`` / ``push_to_hub.py``."""
    from .hub.push import main

    run(main, os.path.basename(sys.argv[0]) or "rq2-push")
