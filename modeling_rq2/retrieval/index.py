"""Dense passage indexes: corpus encoding (sharded, resumable) and FAISS search over the embeddings.

A saved index is a folder in pyserini's layout: ``index`` (FAISS) beside ``docid`` (one id per
line), plus ``meta.json`` recording the retriever (name and a fingerprint of its weights), the
dimension, the index type, a hash of the ids in row order and a fingerprint of the passages' texts,
checked when loading: vectors from another model, a reordered or edited ``docid`` file and passages
whose texts changed since they were encoded are refused, never searched.

Index types are the entries of ``INDEX_REGISTRY`` (a new type is one entry): ``flat`` (exact inner product, the
paper's choice), ``flat16`` (the same exhaustive search over vectors stored as float16: half the memory, scores
within fp16 rounding, no training), ``hnsw`` (graph, no training, fast approximate search) and ``ivfpq`` (inverted
lists + product quantisation: small, trained on the corpus, for millions of passages).
"""

import hashlib
import json
import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import faiss
import numpy as np
from tqdm.auto import tqdm

from ..models.modeling_rq2 import Passage, RQ2Retriever, check_item, title_and_text

SHARDS_META = "shards.json"


@dataclass(frozen=True)
class IndexType:
    """One kind of FAISS index: how to make it empty, whether it must be trained on the corpus before vectors are
    added, and the search-time settings FAISS does not keep in the index file."""

    make: Callable[["IndexOptions", int, int], "faiss.Index"]
    """(options, dimension, corpus size) -> an empty inner-product index."""
    needs_training: bool = False
    search_settings: Callable[["IndexOptions", "faiss.Index"], None] = lambda options, index: None


def _hnsw(options: "IndexOptions", dim: int, size: int) -> "faiss.Index":
    index = faiss.IndexHNSWFlat(dim, options.hnsw_m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efSearch = options.hnsw_ef_search
    return index


def _ivfpq(options: "IndexOptions", dim: int, size: int) -> "faiss.Index":
    pq_m = options.pq_m or max(1, dim // 8)
    if dim % pq_m:
        raise ValueError(f"pq_m={pq_m} must divide the embedding dimension {dim}")
    nlist = options.ivf_nlist or max(1, min(int(4 * np.sqrt(max(size, 1))), size // 39))
    # "np": no polysemous training. It only relabels each sub-quantizer's centroids for Hamming
    # pre-filtering, which search never uses (same ids and scores), and took minutes on one thread
    return faiss.index_factory(dim, f"IVF{nlist},PQ{pq_m}x{options.pq_nbits}np", faiss.METRIC_INNER_PRODUCT)


def _set_nprobe(options: "IndexOptions", index: "faiss.Index") -> None:
    faiss.extract_index_ivf(index).nprobe = options.ivf_nprobe


def _set_ef_search(options: "IndexOptions", index: "faiss.Index") -> None:
    index.hnsw.efSearch = options.hnsw_ef_search


INDEX_REGISTRY: dict[str, IndexType] = {
    # exact inner product, the paper's choice
    "flat": IndexType(lambda options, dim, size: faiss.IndexFlatIP(dim)),
    # the same exhaustive search over float16 codes: half the memory; FAISS marks it trained already
    "flat16": IndexType(
        lambda options, dim, size: faiss.IndexScalarQuantizer(
            dim, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT
        )
    ),
    # graph search: no training, fast approximate search
    "hnsw": IndexType(_hnsw, search_settings=_set_ef_search),
    # inverted lists + product quantisation: small, trained on the corpus, for millions of passages
    "ivfpq": IndexType(_ivfpq, needs_training=True, search_settings=_set_nprobe),
}
INDEX_TYPES = tuple(INDEX_REGISTRY)


@dataclass
class IndexOptions:
    """Which FAISS index to build and its search-time settings."""

    index_type: str = "flat"
    hnsw_m: int = 32
    hnsw_ef_search: int = 128
    ivf_nlist: int | None = None
    """Inverted lists (default: about 4 * sqrt(n), at most n / 39 so every list gets training points)."""
    ivf_nprobe: int = 32
    pq_m: int | None = None
    """Sub-quantisers (must divide the dimension; default: dimension / 8, i.e. 8 dims per byte)."""
    pq_nbits: int = 8

    def __post_init__(self):
        if self.index_type not in INDEX_REGISTRY:
            raise ValueError(f"index_type must be one of {INDEX_TYPES}, got {self.index_type!r}")
        for name in ("hnsw_m", "hnsw_ef_search", "ivf_nprobe", "pq_nbits"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    @property
    def kind(self) -> IndexType:
        """This index type's registry entry."""
        return INDEX_REGISTRY[self.index_type]

    def build(self, dim: int, train_size: int = 0) -> "faiss.Index":
        """An empty inner-product index of this type (one that ``kind.needs_training`` still needs ``train``)."""
        return self.kind.make(self, dim, train_size)

    def apply_search_settings(self, index: "faiss.Index") -> None:
        """Search-time knobs FAISS does not keep in the index file (IVF's nprobe, HNSW's efSearch)."""
        self.kind.search_settings(self, index)

    def check_trainable(self, size: int, train_sample: int = 200_000) -> None:
        """Refuse, before anything is encoded, an index type the corpus is too small to train (FAISS's k-means needs
        at least as many points as centroids: 2**pq_nbits per PQ sub-quantiser, ivf_nlist inverted lists)."""
        if not self.kind.needs_training:
            return
        points, needed = min(size, train_sample), max(2**self.pq_nbits, self.ivf_nlist or 1)
        if points < needed:
            raise ValueError(
                f"index_type {self.index_type!r} trains {needed} centroids on the corpus, which has only {points} "
                f"passages to train on: use 'flat' or 'hnsw' for a corpus this small (or lower pq_nbits / ivf_nlist)"
            )


def _train_rows(size: int, train_sample: int, seed: int) -> "np.ndarray | None":
    """Row numbers of the training sample (in draw order), or None for all rows."""
    if size <= train_sample:
        return None
    return np.random.default_rng(seed).choice(size, train_sample, replace=False)


def _trained_index(options: IndexOptions, dim: int, size: int, gather, train_sample: int, seed: int) -> "faiss.Index":
    """An empty index for ``size`` vectors, trained if its type needs it on ``gather(rows)`` (rows None: all)."""
    index = options.build(dim, train_size=size)
    if not index.is_trained:
        index.train(np.ascontiguousarray(gather(_train_rows(size, train_sample, seed)), dtype=np.float32))
    options.apply_search_settings(index)
    return index


def corpus_fingerprint(doc_ids: Sequence[str], passages: Iterable[Passage]) -> str:
    """A fingerprint of the (id, title, text) records, whatever their order (a sum of per-record hashes): an index is
    refused for a corpus whose texts changed since it was encoded, and reused for the same corpus in another order."""
    total = 0
    for position, (doc, passage) in enumerate(zip(doc_ids, passages, strict=True)):
        check_item(passage, "passage", f"passage {position} (id {doc!r})")
        title, text = title_and_text(passage)
        digest = hashlib.blake2b(f"{doc}\x1f{title}\x1f{text}".encode(), digest_size=16).digest()
        total = (total + int.from_bytes(digest, "little")) % (1 << 128)
    return f"{total:032x}"


def docid_text(doc_ids: Sequence[str]) -> str:
    """The ``docid`` file's content (one id per line); an id holding a line separator is refused, since the file
    could not be read back into the same ids."""
    text = "".join(f"{d}\n" for d in doc_ids)
    if len(text.splitlines()) != len(doc_ids):
        bad = next(d for d in doc_ids if str(d).splitlines() != [str(d)])
        raise ValueError(f"doc id {bad!r} holds a line separator: a saved index keeps one id per line; rename it")
    if len(set(doc_ids)) != len(doc_ids):  # a search would return one id twice, a lookup lose a text
        seen: set = set()
        twice = next(d for d in doc_ids if d in seen or seen.add(d))
        raise ValueError(f"doc id {twice!r} is given twice: every passage of an index needs its own id")
    return text


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _check_finite(vectors: np.ndarray, what: str) -> None:
    """Refuse NaN or infinite vectors (a broken model's output): FAISS would return no hits or wrong ones for them."""
    finite = np.isfinite(vectors).all(axis=1)
    if not finite.all():
        rows = np.flatnonzero(~finite)
        raise ValueError(
            f"{len(rows)} {what} embeddings are not finite (rows {rows[:5].tolist()}): the retriever's outputs are "
            "broken (diverged or corrupt weights?)"
        )


def retriever_fingerprint(retriever: RQ2Retriever) -> str:
    """A short hash of what determines passage embeddings: the weights, pooling, similarity, length."""
    digest = hashlib.sha256()
    config = retriever.config
    digest.update(f"{config.pooling}|{config.similarity}|{config.passage_max_length}".encode())
    for name, tensor in sorted(retriever.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


class DenseIndex:
    """Doc ids + a FAISS inner-product index over their embeddings."""

    def __init__(
        self,
        dim: int,
        model_name: str = "",
        index: "faiss.Index | None" = None,
        doc_ids: list[str] | None = None,
        options: IndexOptions | None = None,
        fingerprint: str = "",
        corpus: str = "",
    ):
        self.dim, self.model_name, self.fingerprint = dim, model_name, fingerprint
        self.corpus = corpus
        """``corpus_fingerprint`` of the passages encoded ("" when unknown: then reuse cannot check the texts)."""
        self.options = options or IndexOptions()
        self.index = index if index is not None else self.options.build(dim)
        self.doc_ids: list[str] = list(doc_ids or [])
        self._id_array = np.asarray(self.doc_ids, dtype=object)

    def __len__(self) -> int:
        return len(self.doc_ids)

    @classmethod
    def build(
        cls,
        embeddings: np.ndarray,
        doc_ids: Sequence[str],
        options: IndexOptions | None = None,
        model_name: str = "",
        fingerprint: str = "",
        train_sample: int = 200_000,
        seed: int = 0,
        corpus: str = "",
    ) -> "DenseIndex":
        """An index over ``embeddings`` (n, dim); IVF-PQ is first trained on up to ``train_sample`` of them."""
        embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
        if embeddings.ndim != 2:
            raise ValueError(f"embeddings must be a 2-d array (n, dim), got shape {embeddings.shape}")
        options = options or IndexOptions()
        index = _trained_index(
            options,
            embeddings.shape[1],
            len(embeddings),
            lambda rows: embeddings if rows is None else embeddings[rows],
            train_sample,
            seed,
        )
        dense = cls(embeddings.shape[1], model_name, index, options=options, fingerprint=fingerprint, corpus=corpus)
        dense.add(embeddings, list(doc_ids))
        return dense

    def add(self, embeddings: np.ndarray, doc_ids: list[str]) -> None:
        """Add float32 embeddings (n, dim) for ``doc_ids`` (same order)."""
        embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
        if embeddings.ndim != 2 or embeddings.shape[1] != self.dim:
            raise ValueError(f"embeddings must have shape (n, {self.dim}), got {embeddings.shape}")
        if len(doc_ids) != embeddings.shape[0]:
            raise ValueError(f"{len(doc_ids)} doc ids for {embeddings.shape[0]} embeddings")
        if not self.index.is_trained:
            raise ValueError(
                f"the {self.options.index_type} index must be trained first: build it with DenseIndex.build"
            )
        _check_finite(embeddings, "passage")
        self.index.add(embeddings)
        self.doc_ids.extend(str(d) for d in doc_ids)

    def search(self, query_embeddings: np.ndarray, k: int, batch_size: int = 1024) -> list[list[tuple[str, float]]]:
        """Top-k (doc id, score) per query, best first; never more hits than the index holds, never a -1 id."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        queries = np.ascontiguousarray(query_embeddings, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise ValueError(f"query embeddings must have shape (n, {self.dim}), got {queries.shape}")
        _check_finite(queries, "query")
        k = min(k, len(self))
        if k == 0:
            return [[] for _ in range(len(queries))]
        if len(self._id_array) != len(self.doc_ids):  # ids as a numpy array: one vectorised lookup per batch
            self._id_array = np.asarray(self.doc_ids, dtype=object)
        results: list[list[tuple[str, float]]] = []
        for start in range(0, len(queries), batch_size):
            scores, ids = self.index.search(queries[start : start + batch_size], k)
            docs = self._id_array[np.maximum(ids, 0)].tolist()
            if (ids >= 0).all():
                results.extend(
                    list(zip(row_docs, row_scores, strict=True))
                    for row_docs, row_scores in zip(docs, scores.tolist(), strict=True)
                )
                continue
            for row_docs, row_scores, row_ids in zip(docs, scores.tolist(), ids, strict=True):
                results.append([(d, s) for d, s, i in zip(row_docs, row_scores, row_ids, strict=True) if i >= 0])
        return results

    def save(self, folder: str | os.PathLike) -> None:
        """Write ``index``, ``docid`` and ``meta.json`` into ``folder`` (meta last: it marks a complete save)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "meta.json").unlink(missing_ok=True)
        ids = docid_text(self.doc_ids)
        faiss.write_index(self.index, str(folder / "index"))
        (folder / "docid").write_text(ids, encoding="utf-8")
        meta = {
            "dim": self.dim,
            "model_name": self.model_name,
            "fingerprint": self.fingerprint,
            "size": len(self),
            "options": asdict(self.options),
            "docid_sha256": _sha256(ids),
            "corpus": self.corpus,
        }
        _write_atomic(folder / "meta.json", json.dumps(meta, indent=2))

    @classmethod
    def load(
        cls, folder: str | os.PathLike, expected_dim: int | None = None, retriever: RQ2Retriever | None = None
    ) -> "DenseIndex":
        """Read a saved index; refuse one whose size, dimension or retriever does not match."""
        folder = Path(folder)
        for name in ("index", "docid", "meta.json"):
            if not (folder / name).is_file():
                raise FileNotFoundError(f"{folder / name}: missing; not a (complete) saved DenseIndex folder")
        meta = _read_meta(folder / "meta.json")
        try:
            index = faiss.read_index(str(folder / "index"))
        except RuntimeError as error:  # FAISS's C++ message ends in an assertion, not the file
            raise ValueError(
                f"{folder / 'index'}: not a readable FAISS index ({_first_line(error)}); rebuild it"
            ) from None
        ids = (folder / "docid").read_text(encoding="utf-8")
        if "docid_sha256" in meta and _sha256(ids) != meta["docid_sha256"]:
            raise ValueError(
                f"{folder / 'docid'}: changed since the index was saved (ids edited or reordered: row i would be "
                "reported as another passage); rebuild the index"
            )
        doc_ids = ids.splitlines()
        if index.d != meta["dim"] or index.ntotal != len(doc_ids):
            raise ValueError(
                f"{folder}: index holds {index.ntotal} vectors of dim {index.d}, docid has {len(doc_ids)} ids"
            )
        if retriever is not None:
            expected_dim = retriever.embedding_dim
        if expected_dim is not None and expected_dim != index.d:
            raise ValueError(f"{folder}: index dimension {index.d} does not match the retriever's {expected_dim}")
        if retriever is not None and meta.get("fingerprint"):
            _check_fingerprint(folder, meta, retriever)
        options = IndexOptions(**meta.get("options", {}))
        options.apply_search_settings(index)
        fingerprint, corpus = meta.get("fingerprint", ""), meta.get("corpus", "")
        return cls(index.d, meta.get("model_name", ""), index, doc_ids, options, fingerprint, corpus)

    def check_corpus(self, doc_ids: Sequence[str], passages: Iterable[Passage], folder: str | os.PathLike) -> None:
        """Refuse to search ``passages`` with this index unless they are the ones it encoded (same ids, same texts)."""
        if sorted(self.doc_ids) != sorted(doc_ids):
            raise ValueError(f"{folder}: indexes {len(self)} passages that are not the corpus given ({len(doc_ids)})")
        if not self.corpus:
            warnings.warn(f"{folder}: saved without a fingerprint of its texts (before 0.2): they cannot be checked")
        elif corpus_fingerprint(doc_ids, passages) != self.corpus:
            raise ValueError(
                f"{folder}: the corpus given has the same ids but other texts than the passages this index encoded; "
                "re-encode it (delete the folder or use another index_folder)"
            )


_META_KEYS = ("dim", "fingerprint")


def _read_meta(path: Path) -> dict:
    """meta.json, or one error naming it."""
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: not valid JSON ({error}); rebuild the index") from None
    if not isinstance(meta, dict) or any(key not in meta for key in _META_KEYS):
        raise ValueError(f"{path}: not a DenseIndex meta.json (needs the keys {list(_META_KEYS)}); rebuild the index")
    return meta


def _first_line(error: Exception) -> str:
    lines = str(error).strip().splitlines()
    return lines[-1] if lines else type(error).__name__


def _check_fingerprint(folder: Path, meta: dict, retriever: RQ2Retriever) -> None:
    current = retriever_fingerprint(retriever)
    if current != meta["fingerprint"]:
        raise ValueError(
            f"{folder}: encoded by retriever {meta.get('model_name')!r} (fingerprint {meta['fingerprint']}), "
            f"not by the one given ({retriever.config.name_or_path!r}, {current}); re-encode the corpus with it"
        )


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def encode_corpus_shards(
    retriever: RQ2Retriever,
    passages: Sequence[Passage],
    doc_ids: Sequence[str],
    folder: str | os.PathLike,
    *,
    shard_size: int = 100_000,
    batch_size: int = 64,
    process_index: int = 0,
    num_processes: int = 1,
    show_progress_bar: bool | None = None,
) -> Path:
    """Encode a corpus into ``folder/shard-NNNNN.npy`` (+ ``.docid``), resuming after a kill.

    Shards are written atomically and skipped when already complete, so a killed job re-encodes at
    most the shard it was in. Process ``p`` of ``num_processes`` takes shards p, p + n, ...
    (``accelerator.process_index`` / ``num_processes``). ``shards.json`` records the retriever's
    fingerprint; a folder started by another retriever is refused.
    """
    if len(passages) != len(doc_ids):
        raise ValueError(f"{len(passages)} passages for {len(doc_ids)} doc ids")
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    ids = docid_text(doc_ids)  # before hours of encoding, not at the save
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    meta = {
        "model_name": retriever.config.name_or_path,
        "fingerprint": retriever_fingerprint(retriever),
        "dim": retriever.embedding_dim,
        "size": len(doc_ids),
        "shard_size": shard_size,
        "corpus": corpus_fingerprint(doc_ids, passages),
        "docid_sha256": _sha256(ids),  # shards are by position: the same corpus in another order is another encoding
    }
    meta_path = folder / SHARDS_META
    if meta_path.is_file():
        found = json.loads(meta_path.read_text(encoding="utf-8"))
        if {k: found.get(k) for k in meta if k != "model_name"} != {k: v for k, v in meta.items() if k != "model_name"}:
            raise ValueError(f"{folder}: holds shards of another encoding ({found}); use a new folder or delete it")
    else:  # every process may write it: same content, atomic replace
        _write_atomic(meta_path, json.dumps(meta, indent=2))
    mine = list(range(process_index, _shard_count(len(doc_ids), shard_size), num_processes))
    todo = [s for s in mine if not (folder / f"shard-{s:05d}.npy").is_file()]
    show = show_progress_bar if show_progress_bar is not None else len(todo) > 0 and len(doc_ids) > 4 * batch_size
    for shard in tqdm(todo, desc="encoding shards", unit="shard", disable=not show):
        start, end = shard * shard_size, min((shard + 1) * shard_size, len(doc_ids))
        embeddings = retriever.encode_passages(passages[start:end], batch_size, show_progress_bar=False)
        _write_atomic(folder / f"shard-{shard:05d}.docid", "".join(f"{d}\n" for d in doc_ids[start:end]))
        tmp = folder / f".tmp-{os.getpid()}-shard-{shard:05d}.npy"  # two jobs on one folder never share a file
        with open(tmp, "wb") as f:
            np.save(f, embeddings.astype(np.float32))
        os.replace(tmp, folder / f"shard-{shard:05d}.npy")  # the .npy marks the shard complete
    return folder


def _shard_count(size: int, shard_size: int) -> int:
    return max(1, -(-size // shard_size))


def index_from_shards(
    folder: str | os.PathLike, options: IndexOptions | None = None, *, train_sample: int = 200_000, seed: int = 0
) -> DenseIndex:
    """Build a DenseIndex from a complete shard folder, never holding the corpus in RAM twice.

    The shards are memory-mapped: an index that needs training (IVF-PQ) is trained on the same
    sample ``DenseIndex.build`` would draw (``train_sample`` rows, ``seed``), gathered row by row
    from the shards, and vectors are then added shard by shard. The result equals
    ``DenseIndex.build`` over the concatenated shards with the same options, sample size and seed.
    """
    folder = Path(folder)
    if not (folder / SHARDS_META).is_file():
        raise FileNotFoundError(f"{folder / SHARDS_META}: missing; encode the corpus with encode_corpus_shards first")
    meta = json.loads((folder / SHARDS_META).read_text(encoding="utf-8"))
    count = _shard_count(meta["size"], meta["shard_size"])
    missing = [s for s in range(count) if not (folder / f"shard-{s:05d}.npy").is_file()]
    if missing:
        raise ValueError(
            f"{folder}: {len(missing)} of {count} shards not encoded yet (e.g. shard {missing[0]}); rerun the encoding"
        )
    shard = lambda s: np.load(folder / f"shard-{s:05d}.npy", mmap_mode="r")
    shapes = [shard(s).shape for s in range(count)]
    size, dim = meta["size"], meta["dim"]
    bad = [s for s, shape in enumerate(shapes) if len(shape) != 2 or shape[1] != dim]
    if bad:
        raise ValueError(f"{folder}: shard {bad[0]} holds embeddings of shape {shapes[bad[0]]}, expected dim {dim}")
    if sum(shape[0] for shape in shapes) != size:
        raise ValueError(f"{folder}: shards hold {sum(shape[0] for shape in shapes)} embeddings, expected {size}")
    starts = np.cumsum([0] + [shape[0] for shape in shapes])
    ids = [(folder / f"shard-{s:05d}.docid").read_text(encoding="utf-8").splitlines() for s in range(count)]
    wrong = [s for s in range(count) if len(ids[s]) != shapes[s][0]]
    if wrong:  # checked before any training: a mismatch is found in seconds, not after an hour of k-means
        raise ValueError(
            f"{folder}: shard {wrong[0]} holds {shapes[wrong[0]][0]} embeddings but {len(ids[wrong[0]])} ids"
        )

    def gather(rows):
        if rows is None:  # the whole corpus is the sample (it fits the training budget)
            return np.concatenate([shard(s) for s in range(count)])
        order = np.argsort(rows, kind="stable")
        sample = np.empty((len(rows), dim), dtype=np.float32)
        owner = np.searchsorted(starts, rows[order], side="right") - 1
        for s in np.unique(owner):
            where = order[owner == s]
            sample[where] = shard(s)[rows[where] - starts[s]]
        return sample  # rows in draw order, as DenseIndex.build takes them

    options = options or IndexOptions()
    index = _trained_index(options, dim, size, gather, train_sample, seed)
    dense = DenseIndex(
        dim, meta["model_name"], index, options=options, fingerprint=meta["fingerprint"], corpus=meta.get("corpus", "")
    )
    for s in range(count):  # one shard's pages mapped at a time
        dense.add(shard(s), ids[s])
        ids[s] = None
    return dense


def build_index(
    retriever: RQ2Retriever,
    passages: Sequence[Passage],
    doc_ids: Sequence[str],
    options: IndexOptions | None = None,
    *,
    batch_size: int = 64,
    show_progress_bar: bool | None = None,
    accelerator=None,
    shard_folder: str | os.PathLike | None = None,
    shard_size: int = 100_000,
) -> DenseIndex:
    """Encode a corpus with ``retriever`` and index it.

    In memory by default. With ``shard_folder`` (or an ``accelerate.Accelerator`` running several
    processes, which needs one), embeddings go to resumable shards on disk, each process encoding
    its share; every process then returns the same index built from the shards.
    """
    num_processes = accelerator.num_processes if accelerator is not None else 1
    options = options or IndexOptions()
    options.check_trainable(len(doc_ids))
    if shard_folder is None and num_processes == 1:
        docid_text(doc_ids)
        name, fingerprint = retriever.config.name_or_path, retriever_fingerprint(retriever)
        corpus = corpus_fingerprint(doc_ids, passages)  # 10 s for MS MARCO's 8.8M: a saved index can check its texts
        if len(passages) > shard_size and not options.kind.needs_training:  # add a shard at a time
            index = DenseIndex(retriever.embedding_dim, name, options=options, fingerprint=fingerprint, corpus=corpus)
            starts = range(0, len(passages), shard_size)
            for start in tqdm(starts, desc="encoding", unit="shard", disable=show_progress_bar is False):
                end = start + shard_size
                index.add(retriever.encode_passages(passages[start:end], batch_size, False), list(doc_ids[start:end]))
            return index  # memory: the index and one shard's embeddings, not the corpus' three times over
        embeddings = retriever.encode_passages(passages, batch_size, show_progress_bar)
        return DenseIndex.build(embeddings, doc_ids, options, name, fingerprint, corpus=corpus)
    if shard_folder is None:
        raise ValueError("encoding across several processes needs a shard_folder they all can write")
    process_index = accelerator.process_index if accelerator is not None else 0
    encode_corpus_shards(
        retriever,
        passages,
        doc_ids,
        shard_folder,
        shard_size=shard_size,
        batch_size=batch_size,
        process_index=process_index,
        num_processes=num_processes,
        show_progress_bar=show_progress_bar,
    )
    if accelerator is not None:
        accelerator.wait_for_everyone()
    return index_from_shards(shard_folder, options)
