"""Shared fixtures: tiny models built from a config (no weights), a tiny tokenizer, a tiny BEIR folder."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach a hub

import copy
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from transformers import BertTokenizer

from modeling_rq2 import RQ2Reranker, RQ2RerankerConfig, RQ2Retriever, RQ2RetrieverConfig

torch.set_num_threads(1)  # tiny models: threads cost more than they give, and a busy machine makes them spin

WORDS = (
    "the a of and to in is was for on with by as at from cause causes caused vitamin scurvy sun moon "
    "cell cells cancer gene protein blood heart risk patients study mice dose drug treatment effect "
    "increase decrease reduce high low what why how does do water light energy star earth paris france"
).split()
TINY_ENCODER = dict(
    model_type="bert", vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
    intermediate_size=37, max_position_embeddings=128,
)


@pytest.fixture(autouse=True)
def fresh_accelerate_state():
    """Each test (and in-process training run) starts from a clean Accelerate state (mixed precision differs between
    tests), and leaves one: a module-scoped fixture that trains is set up before the next test's reset."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


def make_tokenizer() -> BertTokenizer:
    """A word-level BERT tokenizer of exactly 99 tokens (special tokens, words, letters)."""
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    vocab = specials + WORDS + letters
    vocab += [f"tok{i}" for i in range(99 - len(vocab))]
    assert len(vocab) == 99
    tokenizer = BertTokenizer(vocab={token: i for i, token in enumerate(vocab)})
    assert tokenizer.convert_ids_to_tokens(tokenizer("what is the sun")["input_ids"])[1:-1] == ["what", "is", "the", "sun"]
    return tokenizer


@pytest.fixture(scope="session")
def tiny_tokenizer() -> BertTokenizer:
    return make_tokenizer()


def tiny_retriever(tokenizer, **overrides) -> RQ2Retriever:
    torch.manual_seed(0)
    config = RQ2RetrieverConfig(encoder_config=dict(TINY_ENCODER), **overrides)
    return RQ2Retriever(config, tokenizer=tokenizer).eval()


def tiny_reranker(tokenizer, **overrides) -> RQ2Reranker:
    torch.manual_seed(0)
    config = RQ2RerankerConfig(encoder_config=dict(TINY_ENCODER), **overrides)
    return RQ2Reranker(config, tokenizer=tokenizer).eval()


@pytest.fixture(scope="session")
def _retriever(tiny_tokenizer):
    return tiny_retriever(tiny_tokenizer, pooling="mean")


@pytest.fixture
def retriever(_retriever) -> RQ2Retriever:
    """A tiny retriever (shared towers, mean pooling, dot product), deep-copied per test."""
    return copy.deepcopy(_retriever)


@pytest.fixture(scope="session")
def _reranker(tiny_tokenizer):
    return tiny_reranker(tiny_tokenizer)


@pytest.fixture
def reranker(_reranker) -> RQ2Reranker:
    return copy.deepcopy(_reranker)


def write_beir(folder: Path, corpus: list[dict], queries: list[dict], qrels: dict[str, list[tuple]]) -> Path:
    """Write a BEIR-layout folder (JSONL + qrels TSV with header)."""
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in corpus), encoding="utf-8")
    (folder / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries), encoding="utf-8")
    for split, rows in qrels.items():
        lines = ["query-id\tcorpus-id\tscore"] + ["\t".join(map(str, row)) for row in rows]
        (folder / "qrels" / f"{split}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def corrupt_line(folder: Path, name: str, line_number: int, text: str) -> Path:
    """Replace line ``line_number`` (1-based) of ``folder/name`` with ``text``; the file's path."""
    path = folder / name
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[line_number - 1] = text
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


TINY_CORPUS = [
    {"_id": "d1", "title": "scurvy", "text": "scurvy is caused by low vitamin c"},
    {"_id": "d2", "title": "sun", "text": "the sun is a star and gives light and energy to earth"},
    {"_id": "d3", "title": "heart", "text": "high blood pressure does increase heart risk in patients"},
    {"_id": "d4", "title": "", "text": "paris is in france"},
    {"_id": "d5", "title": "mice", "text": "a study in mice of a drug dose and its effect on cancer cells"},
]
TINY_QUERIES = [
    {"_id": "q1", "text": "what causes scurvy"},
    {"_id": "q2", "text": "does the sun give light"},
    {"_id": "q3", "text": "heart risk of blood pressure"},
]


@pytest.fixture
def beir_folder(tmp_path) -> Path:
    """A five-passage BEIR folder with train and test qrels."""
    return write_beir(
        tmp_path / "tiny",
        TINY_CORPUS,
        TINY_QUERIES,
        {"test": [("q1", "d1", 1), ("q2", "d2", 1)], "train": [("q3", "d3", 1)]},
    )


TRAIN_WORDS = "scurvy sun moon cell cancer gene protein blood heart risk drug water light energy star earth paris france mice dose".split()


@pytest.fixture(scope="session")
def train_setup(tmp_path_factory, tiny_tokenizer):
    """A BEIR folder with 12 train / 4 test queries, and tiny saved models."""
    root = tmp_path_factory.mktemp("train")
    corpus = [{"_id": f"d{i}", "title": TRAIN_WORDS[i], "text": f"{TRAIN_WORDS[i]} {TRAIN_WORDS[(i + 3) % 20]} is a {TRAIN_WORDS[(i + 7) % 20]}"} for i in range(20)]
    queries = [{"_id": f"q{i}", "text": f"what is {TRAIN_WORDS[i]}"} for i in range(16)]
    data = write_beir(
        root / "beir", corpus, queries,
        {"train": [(f"q{i}", f"d{i}", 1) for i in range(12)], "test": [(f"q{i}", f"d{i}", 1) for i in range(12, 16)]},
    )
    tiny_retriever(tiny_tokenizer, pooling="mean").save_pretrained(root / "retriever")
    tiny_reranker(tiny_tokenizer).save_pretrained(root / "reranker")
    return root, data


def train_argv(train_setup, output_dir, *extra) -> list[str]:
    """Flags of a tiny training run over ``train_setup`` writing into ``output_dir``."""
    root, data = train_setup
    return [
        "--retriever", str(root / "retriever"), "--reranker", str(root / "reranker"), "--data", str(data),
        "--output_dir", str(output_dir), "--report_to", "none", "--list_size", "3", "--batch_size", "4",
        "--passage_max_length", "32", "--train_passage_max_length", "32", "--reranker_max_length", "48",
        "--rerank_top_k", "5", "--top_k", "20", "--negatives_top_n", "10", "--epochs", "1", *extra,
    ]


def run_without_package(script: str, tmp_path: Path) -> str:
    """Run ``script`` in a fresh interpreter where ``modeling_rq2`` cannot be imported (a user without it); its stdout."""
    prelude = textwrap.dedent(
        """
        import importlib.abc, sys
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "modeling_rq2" or name.startswith("modeling_rq2."):
                    raise ImportError("modeling_rq2 is not installed here")
        sys.meta_path.insert(0, Block())
        """
    )
    result = subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(script)], capture_output=True, text=True, timeout=300,
                            env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "HF_HOME": str(tmp_path / "hf"), "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


ROOT = Path(__file__).resolve().parents[1]


def start_training(argv: list[str], output: bool = False) -> subprocess.Popen:
    """``python train.py ARGV`` in a fresh single-threaded process (stdout+stderr piped when ``output``)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    stream = subprocess.PIPE if output else subprocess.DEVNULL
    return subprocess.Popen([sys.executable, str(ROOT / "train.py"), *argv], env=env, stdout=stream,
                            stderr=subprocess.STDOUT if output else subprocess.DEVNULL, text=True)


def wait_until(proc: subprocess.Popen, condition, timeout: float = 240) -> None:
    """Poll ``condition()`` while ``proc`` runs; fail if the run ends (or time runs out) first."""
    deadline = time.time() + timeout
    while not condition():
        assert proc.poll() is None and time.time() < deadline, "the run ended before it could be interrupted"
        time.sleep(0.02)


def assert_same_weights(run_a: Path, run_b: Path) -> None:
    """Both runs saved identical retriever and re-ranker weights."""
    from safetensors.torch import load_file

    for model in ("retriever", "reranker"):
        a, b = load_file(run_a / model / "model.safetensors"), load_file(run_b / model / "model.safetensors")
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), model
