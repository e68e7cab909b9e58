"""Retrieval data in the BEIR layout: a folder, a bundled name (``scifact``) or a Hugging Face dataset name.

A BEIR folder holds ``corpus.jsonl`` (``_id``, ``title``, ``text``), ``queries.jsonl`` (``_id``,
``text``) and ``qrels/<split>.tsv`` (``query-id  corpus-id  score``); ``.jsonl.gz`` works too.
Every malformed record raises :class:`DataFormatError` naming the file and line, or, with
``skip_invalid=True``, is skipped and counted in a logged warning: never silently dropped.
Corpora become Arrow datasets (written once to the datasets cache, then memory-mapped), and ids
are checked with Arrow compute, so millions of passages never become Python lists here.
"""

import difflib
import os
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import datasets

from .records import (
    DataFormatError,
    RetrievalData,
    arrow_dataset,
    file_fingerprint,
    find_file,
    read_jsonl_records,
    read_qrels,
)

BUNDLED_DATASETS = {"scifact": "SciFact (BEIR split), CC BY-NC 2.0, bundled with modeling_rq2"}


def bundled_dataset_path(name: str = "scifact") -> Path:
    """Folder of a dataset shipped inside the package (``scifact``)."""
    if name not in BUNDLED_DATASETS:
        raise ValueError(f"no bundled dataset {name!r}; bundled: {sorted(BUNDLED_DATASETS)}")
    return Path(str(resources.files("modeling_rq2.data") / "bundled" / name))


def _jsonl_dataset(path: Path, fields: tuple[str, ...], skip_invalid: bool) -> datasets.Dataset:
    """Arrow-backed dataset of a JSONL file, cached by path, size and modification time."""
    kwargs = {"path": str(path), "fields": fields, "skip_invalid": skip_invalid, "fingerprint": file_fingerprint(path)}
    return arrow_dataset(_generate_records, kwargs, ("_id", *fields))


def _generate_records(path: str, fields: tuple[str, ...], skip_invalid: bool, fingerprint: tuple) -> Iterator[dict]:
    yield from read_jsonl_records(Path(path), fields, skip_invalid)


def load_beir(
    name_or_path: str | os.PathLike = "scifact", split: str = "test", skip_invalid: bool = False
) -> RetrievalData:
    """Load one split of a BEIR-layout dataset.

    ``name_or_path``: a local folder; a bundled name (``"scifact"``); or a Hub dataset in BEIR's
    style (``"BeIR/scifact"``: configs ``corpus`` and ``queries``, qrels in ``BeIR/scifact-qrels``).
    Only the queries judged in ``split`` are kept, as BEIR does.
    """
    folder = Path(name_or_path)
    if not folder.is_dir() and str(name_or_path) in BUNDLED_DATASETS:
        folder = bundled_dataset_path(str(name_or_path))
    if folder.is_dir():
        corpus = _jsonl_dataset(find_file(folder, "corpus.jsonl", "BEIR"), ("title", "text"), skip_invalid)
        queries = _jsonl_dataset(find_file(folder, "queries.jsonl", "BEIR"), ("text",), skip_invalid)
        qrels_path = folder / "qrels" / f"{split}.tsv"
        if not qrels_path.is_file():
            raise DataFormatError(f"{qrels_path}: file not found (no qrels for split {split!r})")
        qrels = read_qrels(qrels_path, queries.data.column("_id"), corpus.data.column("_id"), skip_invalid=skip_invalid)
        name = folder.name
    else:
        name = _hub_dataset_id(str(name_or_path))
        try:
            corpus, queries, qrels = _load_beir_from_hub(name, split)
        except OSError as err:  # offline, no such repo, no such config: datasets' traces name none of them plainly
            raise FileNotFoundError(
                f"{name}: not a local folder, and the Hub dataset could not be loaded "
                f"({type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''})"
            ) from err
    queries = queries.filter(lambda row: row["_id"] in qrels)
    return RetrievalData(corpus=corpus, queries=queries, qrels=qrels, name=name, split=split)


def _hub_dataset_id(name: str) -> str:
    """``name`` when it can be a Hub dataset id ('owner/name'); else one error: no such folder, with the bundled
    dataset it is closest to (a typo of ``scifact`` went to the Hub loader's trace)."""
    if name.count("/") == 1 and not name.startswith((".", "/", "~")) and not Path(name).exists():
        return name
    close = difflib.get_close_matches(name, BUNDLED_DATASETS, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    kind = "a file, not a dataset folder" if Path(name).is_file() else "no such folder"
    raise FileNotFoundError(
        f"{name}: {kind}, not a bundled dataset {sorted(BUNDLED_DATASETS)} and not a Hub id 'owner/name'{hint}"
    )


def _load_beir_from_hub(name: str, split: str) -> tuple[datasets.Dataset, datasets.Dataset, dict]:
    """BEIR-style Hub datasets: ``name`` (configs corpus, queries) and ``name-qrels`` (one split each)."""
    corpus = datasets.load_dataset(name, "corpus", split="corpus")
    queries = datasets.load_dataset(name, "queries", split="queries")
    for column, frame in (("title", corpus), ("text", corpus), ("text", queries)):
        if column not in frame.column_names:
            raise DataFormatError(f"Hub dataset {name!r} lacks the column {column!r} (columns: {frame.column_names})")
    corpus = corpus.select_columns(["_id", "title", "text"])
    queries = queries.select_columns(["_id", "text"])
    qrels_rows = datasets.load_dataset(f"{name}-qrels", split=split)
    qrels: dict[str, dict[str, int]] = {}
    for row in qrels_rows:
        qrels.setdefault(str(row["query-id"]), {})[str(row["corpus-id"])] = int(row["score"])
    return corpus, queries, qrels
