import gzip
import logging

import pytest

from modeling_rq2.data import DataFormatError, load_beir
from modeling_rq2.data.beir import bundled_dataset_path
from modeling_rq2.data.records import read_qrels

from conftest import TINY_CORPUS, TINY_QUERIES, corrupt_line


def test_bundled_scifact_matches_its_source_counts():
    test = load_beir("scifact", "test")
    assert (len(test.corpus), len(test.queries), len(test.qrels)) == (5183, 300, 300)
    assert sum(len(docs) for docs in test.qrels.values()) == 339
    train = load_beir("scifact", "train")
    assert (len(train.queries), sum(len(d) for d in train.qrels.values())) == (809, 919)
    assert set(test.qrels).isdisjoint(train.qrels)
    assert (bundled_dataset_path() / "SOURCE.md").is_file()


def test_folder_reader_gives_datasets_and_passages(beir_folder):
    data = load_beir(beir_folder, "test")
    assert data.corpus.column_names == ["_id", "title", "text"]
    assert data.queries["_id"] == ["q1", "q2"]  # only the queries judged in the split
    assert data.qrels == {"q1": {"d1": 1}, "q2": {"d2": 1}}
    assert data.passages()[0] == {"title": "scurvy", "text": "scurvy is caused by low vitamin c"}


def test_gzipped_files_are_read(beir_folder):
    raw = (beir_folder / "corpus.jsonl").read_bytes()
    (beir_folder / "corpus.jsonl").unlink()
    (beir_folder / "corpus.jsonl.gz").write_bytes(gzip.compress(raw))
    assert len(load_beir(beir_folder, "test").corpus) == len(TINY_CORPUS)


@pytest.mark.parametrize(
    "name, line, text, message",
    [
        ("corpus.jsonl", 3, '{"_id": "d3", "text": ', "invalid JSON"),
        ("corpus.jsonl", 2, '{"title": "x", "text": "no id"}', "record has no '_id'"),
        ("corpus.jsonl", 4, '{"_id": "d4", "title": " ", "text": "   "}', "id 'd4' has empty title and text"),
        ("corpus.jsonl", 5, '{"_id": "d1", "title": "dup", "text": "dup"}', "duplicate id 'd1' \\(first on line 1\\)"),
        ("queries.jsonl", 2, '{"_id": "q2", "text": ""}', "id 'q2' has empty text"),
    ],
)
def test_bad_jsonl_line_names_file_and_line(beir_folder, name, line, text, message):
    path = corrupt_line(beir_folder, name, line, text)
    with pytest.raises(DataFormatError, match=f"{path}:{line}: {message}"):
        load_beir(beir_folder, "test")


def test_non_utf8_bytes_name_the_line(beir_folder):
    path = beir_folder / "corpus.jsonl"
    path.write_bytes(path.read_bytes() + b'{"_id": "d9", "text": "caf\xe9"}\n')
    with pytest.raises(DataFormatError, match=f"{path}:6: not valid UTF-8"):
        load_beir(beir_folder, "test")


def test_skip_invalid_counts_and_logs(beir_folder, caplog):
    corrupt_line(beir_folder, "corpus.jsonl", 3, "not json")
    with caplog.at_level(logging.WARNING):
        data = load_beir(beir_folder, "test", skip_invalid=True)
    assert len(data.corpus) == len(TINY_CORPUS) - 1
    assert "skipped 1 invalid records" in caplog.text and "corpus.jsonl:3" in caplog.text


@pytest.mark.parametrize(
    "row, message",
    [
        ("q1\td1", "expected 3 columns"),
        ("q1\td1\thigh", "score 'high' is not an integer grade"),
        ("q9\td1\t1", "query id 'q9' is not in the queries file"),
        ("q1\td9\t1", "corpus id 'd9' is not in the corpus file"),
    ],
)
def test_bad_qrels_line_names_file_and_line(beir_folder, row, message):
    path = beir_folder / "qrels" / "test.tsv"
    path.write_text(path.read_text() + row + "\n")
    with pytest.raises(DataFormatError, match=f"{path}:4: {message}"):
        load_beir(beir_folder, "test")


def test_trec_four_column_qrels(tmp_path):
    path = tmp_path / "qrels.txt"
    path.write_text("q1 0 d1 2\nq1 0 d2 0\n")
    assert read_qrels(path) == {"q1": {"d1": 2, "d2": 0}}


@pytest.mark.parametrize("missing", ["corpus.jsonl", "queries.jsonl", "qrels/test.tsv"])
def test_missing_file_is_named(beir_folder, missing):
    (beir_folder / missing).unlink()
    with pytest.raises(DataFormatError, match=f"{missing}: file not found"):
        load_beir(beir_folder, "test")


def test_hub_dataset_name_reads_beir_configs(monkeypatch):
    """A Hub name goes through datasets.load_dataset with BEIR's configs (network replaced here)."""
    import datasets

    calls = []

    def fake_load_dataset(name, config=None, split=None):
        calls.append((name, config, split))
        if config == "corpus":
            return datasets.Dataset.from_list([{**d, "extra": 1} for d in TINY_CORPUS])
        if config == "queries":
            return datasets.Dataset.from_list(TINY_QUERIES)
        return datasets.Dataset.from_list([{"query-id": "q1", "corpus-id": "d1", "score": 1}])

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    data = load_beir("BeIR/tiny", "test")
    assert calls == [("BeIR/tiny", "corpus", "corpus"), ("BeIR/tiny", "queries", "queries"), ("BeIR/tiny-qrels", None, "test")]
    assert data.corpus.column_names == ["_id", "title", "text"]
    assert data.qrels == {"q1": {"d1": 1}} and data.queries["_id"] == ["q1"]


def test_held_out_queries_are_a_seeded_disjoint_dev_split(train_setup):
    """``hold_out`` splits a training split's queries (and their judgements) into two disjoint parts, the same
    for the same seed; a count that leaves nothing to train on is refused."""
    from modeling_rq2.data import hold_out, load_data

    _, data = train_setup
    train = load_data(data, "train")
    rest, dev = hold_out(train, 4, seed=0)
    assert sorted([*rest.queries["_id"], *dev.queries["_id"]]) == sorted(train.queries["_id"]) and len(dev.queries) == 4
    assert not set(rest.queries["_id"]) & set(dev.queries["_id"])
    assert set(dev.qrels) == set(dev.queries["_id"]) and set(rest.qrels) == set(rest.queries["_id"])
    assert dev.split == "train[4 held out, seed 0]" and len(dev.corpus) == len(train.corpus)
    assert list(hold_out(train, 4, seed=0)[1].queries["_id"]) == list(dev.queries["_id"])
    assert list(hold_out(train, 4, seed=1)[1].queries["_id"]) != list(dev.queries["_id"])
    with pytest.raises(ValueError, match="--heldout_queries: must be between 1 and 11"):
        hold_out(train, 12)
