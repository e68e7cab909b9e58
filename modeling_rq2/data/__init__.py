"""Retrieval data: every reader, behind one entry point, ``load_data``, that picks the reader a ``--data`` value needs.

a folder with collection.tsv       -> MS MARCO's official files   (``msmarco.load_msmarco``)
a folder with psgs_w100.tsv        -> DPR's NQ / open-domain QA   (``dpr.load_dpr``)
a folder with corpus.jsonl, a bundled name (``scifact``) or a Hub dataset (``BeIR/msmarco``)
                                   -> the BEIR layout             (``beir.load_beir``)
"""

import os
from pathlib import Path

from .beir import load_beir
from .dpr import is_dpr_folder, load_dpr
from .msmarco import is_msmarco_folder, load_msmarco
from .records import DataFormatError, RetrievalData, hold_out


def load_data(
    name_or_path: str | os.PathLike = "scifact", split: str = "test", skip_invalid: bool = False
) -> RetrievalData:
    """One split of any supported dataset, read by the reader its files call for."""
    folder = Path(name_or_path)
    if folder.is_dir() and is_msmarco_folder(folder):
        return load_msmarco(folder, split, skip_invalid)
    if folder.is_dir() and is_dpr_folder(folder):
        return load_dpr(folder, split, skip_invalid)
    return load_beir(name_or_path, split, skip_invalid)


__all__ = ["DataFormatError", "RetrievalData", "hold_out", "load_beir", "load_data", "load_dpr", "load_msmarco"]
