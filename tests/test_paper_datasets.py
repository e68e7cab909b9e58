"""MS MARCO's official TSV files and DPR's Natural Questions files: readers, the paper's metrics, the configs."""

import csv
import gzip
import json
from pathlib import Path

import pytest

from modeling_rq2.data import DataFormatError, load_data
from modeling_rq2.data.corpus import CorpusPassages
from modeling_rq2.data.dpr import NQ_METRICS, iter_json_records, load_dpr
from modeling_rq2.data.msmarco import MSMARCO_METRICS, load_msmarco, read_triples
from modeling_rq2.evaluation.evaluate import judgements
from modeling_rq2.evaluation.metrics import evaluate_run

from conftest import TRAIN_WORDS, corrupt_line

ROOT = Path(__file__).resolve().parents[1]
TEXTS = [f"{TRAIN_WORDS[i]} {TRAIN_WORDS[(i + 3) % 20]} is a {TRAIN_WORDS[(i + 7) % 20]}" for i in range(20)]


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return path


def write_msmarco(folder: Path) -> Path:
    """MS MARCO's layout: pids 0..19, train queries 1000..1011, dev.small 2000..2003 (+ one unjudged)."""
    folder.mkdir(parents=True, exist_ok=True)
    _write(folder / "collection.tsv", [f"{i}\t{t}" for i, t in enumerate(TEXTS)])
    _write(folder / "queries.train.tsv", [f"{1000 + i}\twhat is {TRAIN_WORDS[i]}" for i in range(12)])
    _write(folder / "qrels.train.tsv", [f"{1000 + i}\t0\t{i}\t1" for i in range(12)])
    _write(folder / "queries.dev.small.tsv", [f"{2000 + i}\twhat is {TRAIN_WORDS[i + 12]}" for i in range(5)])
    _write(folder / "qrels.dev.small.tsv", [f"{2000 + i}\t0\t{i + 12}\t1" for i in range(4)])
    _write(folder / "triples.train.small.tsv",
           [f"what is {TRAIN_WORDS[i]}\t{TEXTS[i]}\t{TEXTS[(i + 5) % 20]}" for i in range(12)]
           + [f"what is {TRAIN_WORDS[0]}\t{TEXTS[0]}\t{TEXTS[9]}"])
    return folder


def write_dpr(folder: Path) -> Path:
    """DPR's layout: psgs_w100.tsv (ids 1..20, csv quoting), nq-train.json (an indented array), nq-test.qa.csv."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "psgs_w100.tsv", "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, delimiter="\t", lineterminator="\n")
        writer.writerow(["id", "text", "title"])
        for i, text in enumerate(TEXTS):
            writer.writerow([i + 1, text if i != 4 else f'{text} "quoted" word', TRAIN_WORDS[i].title()])

    def ctx(i: int) -> dict:
        return {"title": TRAIN_WORDS[i].title(), "text": TEXTS[i], "score": 1.0, "passage_id": str(i + 1)}

    questions = [{"question": f"what is {TRAIN_WORDS[i]}", "answers": [TRAIN_WORDS[(i + 3) % 20]],
                  "positive_ctxs": [ctx(i)], "negative_ctxs": [ctx((i + 1) % 20)],
                  "hard_negative_ctxs": [ctx((i + 5) % 20), ctx((i + 6) % 20)]} for i in range(12)]
    (folder / "nq-train.json").write_text(json.dumps(questions, indent=4), encoding="utf-8")
    _write(folder / "nq-test.qa.csv", [f"what is {TRAIN_WORDS[i]}\t{json.dumps([TRAIN_WORDS[(i + 3) % 20]])}" for i in range(12, 16)])
    return folder


@pytest.fixture
def msmarco(tmp_path) -> Path:
    return write_msmarco(tmp_path / "msmarco")


@pytest.fixture
def nq(tmp_path) -> Path:
    return write_dpr(tmp_path / "nq")


def test_msmarco_official_files_load_like_beir(msmarco):
    dev = load_data(msmarco, "dev.small")
    assert (len(dev.corpus), dev.corpus.column_names) == (20, ["_id", "title", "text"])
    assert dev.queries["_id"] == ["2000", "2001", "2002", "2003"]  # the unjudged 2004 is dropped, as BEIR does
    assert dev.qrels["2001"] == {"13": 1} and dev.metrics == MSMARCO_METRICS
    passages = CorpusPassages(dev.corpus)
    assert passages._rows is None  # pids 0..N-1: rows are computed, no id table
    assert passages.get_many(["19", "3"]) == [{"title": "", "text": TEXTS[19]}, {"title": "", "text": TEXTS[3]}]
    assert "20" not in passages and "03" not in passages


@pytest.mark.parametrize(
    "name, line, text, message",
    [
        ("collection.tsv", 3, "2 only-one-column-without-tab", "expected 2 tab-separated columns"),
        ("collection.tsv", 4, "3\t   ", "id '3' has an empty text"),
        ("collection.tsv", 6, "1\tthe same pid again", "duplicate id '1' \\(lines 2, 6\\)"),
        ("qrels.dev.small.tsv", 2, "2001\t0\t99\t1", "corpus id '99' is not in the corpus file"),
        ("qrels.dev.small.tsv", 3, "2002\t0", "expected 3 columns"),
    ],
)
def test_msmarco_bad_lines_name_file_and_line(msmarco, name, line, text, message):
    path = corrupt_line(msmarco, name, line, text)
    with pytest.raises(DataFormatError, match=f"{path}(:{line})?: {message}"):
        load_msmarco(msmarco, "dev.small")


def test_msmarco_gzipped_and_missing_files(msmarco):
    raw = (msmarco / "collection.tsv").read_bytes()
    (msmarco / "collection.tsv").unlink()
    (msmarco / "collection.tsv.gz").write_bytes(gzip.compress(raw))
    assert len(load_data(msmarco, "dev.small").corpus) == 20
    with pytest.raises(DataFormatError, match="queries.dev.tsv: file not found"):
        load_msmarco(msmarco, "dev")


def test_triples_give_hard_negatives_by_text_or_by_id(msmarco):
    train = load_msmarco(msmarco, "train")
    negatives = read_triples(msmarco / "triples.train.small.tsv", train)
    assert negatives["1000"] == ["5", "9"] and negatives["1011"] == ["16"] and len(negatives) == 12
    assert read_triples(msmarco / "triples.train.small.tsv", train, max_triples=2) == {"1000": ["5"], "1001": ["6"]}
    _write(msmarco / "qidpidtriples.tsv", ["1000\t0\t7", "1000\t0\t8", "1003\t3\t2"])
    assert read_triples(msmarco / "qidpidtriples.tsv", train) == {"1000": ["7", "8"], "1003": ["2"]}
    _write(msmarco / "bad.tsv", [f"what is {TRAIN_WORDS[0]}\t{TEXTS[0]}\ta passage nobody wrote"])
    with pytest.raises(DataFormatError, match="bad.tsv:1: negative passage 'a passage nobody wrote' is not in the collection"):
        read_triples(msmarco / "bad.tsv", train)
    _write(msmarco / "bad-ids.tsv", ["1000\t0\t7", "1000\t0\t777"])
    with pytest.raises(DataFormatError, match="1 passage ids are not in .*'777'"):
        read_triples(msmarco / "bad-ids.tsv", train)


def test_msmarco_mrr_and_recall_follow_msmarco_eval():
    # msmarco_eval: reciprocal rank of the first relevant passage within the top 10, averaged over every query of
    # the qrels (a query missing from the run counts 0); RocketQA's Recall@k: the share of queries with a relevant
    # passage in the top k (success@k)
    qrels = {"a": {"p1": 1}, "b": {"p2": 1, "p3": 1}, "c": {"p4": 1}}
    run = {"a": {f"x{i}": 100 - i for i in range(12)} | {"p1": 100 - 10.5},  # rank 11: outside the top 10
           "b": {"x": 3.0, "p3": 2.0, "p2": 1.0}}  # first relevant at rank 2
    means, _ = evaluate_run(run, qrels, ("mrr@10", "success@2", "success@50", "recall@2"))
    assert means["mrr@10"] == pytest.approx((0 + 1 / 2 + 0) / 3)
    assert means["success@2"] == pytest.approx(1 / 3) and means["success@50"] == pytest.approx(2 / 3)
    assert means["recall@2"] == pytest.approx((0 + 1 / 2 + 0) / 3)  # recall counts relevant passages, success queries


def test_dpr_training_file_corpus_and_questions(nq):
    train = load_data(nq, "train")
    assert train.metrics == NQ_METRICS and len(train.corpus) == 20
    assert train.corpus[4] == {"_id": "5", "title": "Cancer", "text": f'{TEXTS[4]} "quoted" word'}  # csv quoting undone
    assert train.queries["_id"][:2] == ["train-0", "train-1"] and train.queries["text"][1] == f"what is {TRAIN_WORDS[1]}"
    assert train.qrels["train-0"] == {"1": 1} and train.negatives["train-0"] == ["6", "7"]  # hard negatives first
    assert train.answers["train-2"] == [TRAIN_WORDS[5]]
    assert CorpusPassages(train.corpus)._offset == 1  # ids 1..N: rows computed
    test = load_dpr(nq, "test")
    assert test.qrels == {} and test.negatives is None and test.answers["test-3"] == [TRAIN_WORDS[18]]


def test_dpr_json_streams_in_blocks_with_line_numbers(tmp_path):
    records = [{"question": f"q{i}", "answers": ["a"], "positive_ctxs": [{"passage_id": str(i)}]} for i in range(5)]
    array = tmp_path / "array.json"
    array.write_text(json.dumps(records, indent=4), encoding="utf-8")
    read = list(iter_json_records(array, block_size=7))  # records cut across many blocks
    assert [r for _, r in read] == records
    text = array.read_text().splitlines()
    assert all(text[line - 1].strip() == "{" for line, _ in read)
    lines = tmp_path / "lines.jsonl"
    lines.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    assert [(line, r) for line, r in iter_json_records(lines, block_size=5)] == list(zip(range(1, 6), records))
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(records, indent=4)[:-40], encoding="utf-8")
    with pytest.raises(DataFormatError, match="broken.json:[0-9]+: invalid JSON"):
        list(iter_json_records(broken, block_size=64))


def test_dpr_bad_records_name_file_and_line(nq):
    questions = json.loads((nq / "nq-train.json").read_text())
    questions[3]["positive_ctxs"][0]["passage_id"] = "404"
    (nq / "nq-train.json").write_text(json.dumps(questions, indent=4), encoding="utf-8")
    start = [i for i, t in enumerate((nq / "nq-train.json").read_text().splitlines(), 1) if t == "    {"][3]  # the 4th question
    with pytest.raises(DataFormatError, match=f"nq-train.json:{start}: passage id '404' is not in the corpus"):
        load_dpr(nq, "train")
    skipped = load_dpr(nq, "train", skip_invalid=True)  # the unknown context is dropped, the question kept
    assert "train-3" not in skipped.qrels and skipped.negatives["train-3"] == ["9", "10"] and len(skipped.qrels) == 11
    questions[3]["positive_ctxs"][0] = {"title": "no id", "text": "x"}
    (nq / "nq-train.json").write_text(json.dumps(questions, indent=4), encoding="utf-8")
    with pytest.raises(DataFormatError, match="a context of positive_ctxs has no passage id"):
        load_dpr(nq, "train")
    with pytest.raises(DataFormatError, match="no questions for split 'dev'"):
        load_dpr(nq, "dev")


def test_answer_judged_metrics_read_the_retrieved_texts(nq):
    test = load_dpr(nq, "test")  # test-0 asks TRAIN_WORDS[12]; answer TRAIN_WORDS[15], in TEXTS[12] = passage 13
    run = {"test-0": {"1": 3.0, "13": 2.0}, "test-1": {"2": 1.0}}
    judged = judgements(test, run)
    assert judged == {"test-0": {"13": 1}, "test-1": {}, "test-2": {}, "test-3": {}}
    means, _ = evaluate_run(run, judged, ("success@1", "success@2", "mrr@10"))
    assert means == {"success@1": 0.0, "success@2": 0.25, "mrr@10": 0.125}


@pytest.mark.parametrize("preset, write, metrics", [("msmarco.yaml", write_msmarco, MSMARCO_METRICS), ("nq.yaml", write_dpr, NQ_METRICS)])
def test_paper_config_runs_the_chain_on_tiny_files_in_the_official_formats(train_setup, tmp_path, preset, write, metrics):
    from modeling_rq2.training.chain import run_training
    from modeling_rq2.training.config_files import parse_arguments

    root, _ = train_setup
    data = write(tmp_path / "data")
    overrides = [  # tiny models and files; everything else is the paper's preset (separate warm-up, augmentation, joint)
        "--retriever", str(root / "retriever"), "--reranker", str(root / "reranker"), "--data", str(data),
        "--output_dir", str(tmp_path / "run"), "--report_to", "none", "--list_size", "3", "--batch_size", "4",
        "--epochs", "1", "--mixed_precision", "no", "--reranker_max_length", "48", "--passage_max_length", "32",
        "--train_passage_max_length", "32", "--top_k", "20", "--rerank_top_k", "5", "--augment_top_n", "5",
    ]
    if preset == "msmarco.yaml":  # a triple a query: shorter lists than the preset allows (see test_method_at_scale)
        overrides += ["--negatives", str(data / "triples.train.small.tsv"), "--short_lists", "pad"]
    metrics_out = run_training(*parse_arguments([str(ROOT / "configs" / preset), *overrides]))
    results = metrics_out["eval"]["results"]
    assert set(results) == {"retriever", "retriever + reranker@5"}
    assert all(set(r) == set(metrics) and all(0 <= v <= 1 for v in r.values()) for r in results.values())
    assert metrics_out["augmentation"]["queries"] == 12 and (tmp_path / "run" / "warmup" / "reranker").is_dir()
    assert (tmp_path / "run" / "retriever" / "model.safetensors").is_file()


def test_metric_cutoffs_deeper_than_the_retrieved_list_are_refused(msmarco, train_setup, tmp_path):
    from modeling_rq2.evaluation.evaluate import main as evaluate_main

    root, _ = train_setup
    with pytest.raises(ValueError, match="--top_k 10 is below the deepest metric cutoff \\(1000"):
        evaluate_main(["--retriever", str(root / "retriever"), "--data", str(msmarco), "--split", "dev.small",
                       "--top_k", "10", "--rerank_top_k", "0", "--output_dir", str(tmp_path / "eval")])


def test_broken_files_fail_naming_the_file(msmarco, nq, tmp_path):
    raw = gzip.compress((msmarco / "collection.tsv").read_bytes())
    (msmarco / "collection.tsv").unlink()
    (msmarco / "collection.tsv.gz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataFormatError, match="collection.tsv.gz:[0-9]+: truncated or corrupt gzip"):
        load_msmarco(msmarco, "dev.small")
    unclosed = tmp_path / "unclosed.json"
    unclosed.write_text(json.dumps([{"question": "q", "answers": []}])[:-1], encoding="utf-8")
    with pytest.raises(DataFormatError, match="not closed"):
        list(iter_json_records(unclosed))
    unclosed.write_text(json.dumps([{"question": "q"}]) + "\n[]", encoding="utf-8")
    with pytest.raises(DataFormatError, match="data after the closing"):
        list(iter_json_records(unclosed))
    text = (nq / "psgs_w100.tsv").read_text(encoding="utf-8")
    (nq / "psgs_w100.tsv").write_text("\ufeff" + text, encoding="utf-8")  # a byte-order mark before the header
    assert len(load_dpr(nq, "test").corpus) == 20


def test_corpus_views_take_integer_ids_and_refuse_odd_digits():
    import datasets

    from modeling_rq2.data.corpus import CorpusSequence

    corpus = datasets.Dataset.from_dict({"_id": [1, 2, 3], "text": ["a", "b", "c"]})
    passages = CorpusPassages(corpus)
    assert passages["2"] == {"title": "", "text": "b"} and "\u00b2" not in passages and "2" in passages
    assert CorpusSequence(corpus)[-1] == {"title": "", "text": "c"}


def test_mixed_triples_check_their_ids(msmarco):
    train = load_msmarco(msmarco, "train")
    _write(msmarco / "mixed.tsv", [f"what is {TRAIN_WORDS[0]}\t{TEXTS[0]}\t{TEXTS[9]}", "1000\t0\t404"])
    with pytest.raises(DataFormatError, match="'404'"):
        read_triples(msmarco / "mixed.tsv", train)
