"""Hostile and careless inputs (issue 17): each gets one clear error naming its file, line or field, or is handled
correctly; never a silently wrong result, never a lost file."""

import json

import numpy as np
import pytest
import torch

from modeling_rq2 import RQ2Reranker, RQ2Retriever
from modeling_rq2.models.loading import load_reranker, load_retriever

from conftest import ROOT, tiny_reranker, tiny_retriever


@pytest.fixture
def saved(tmp_path, tiny_tokenizer):
    """A saved retriever (shared towers), re-ranker and plain encoder."""
    tiny_retriever(tiny_tokenizer).save_pretrained(tmp_path / "retriever")
    tiny_reranker(tiny_tokenizer).save_pretrained(tmp_path / "reranker")
    tiny_retriever(tiny_tokenizer).query_encoder.save_pretrained(tmp_path / "encoder")
    return tmp_path


# --- model loading: a folder of the wrong role, weights left random --------------------------------------------


def test_a_reranker_folder_is_refused_as_a_retriever_and_the_mirror(saved):
    with pytest.raises(
        ValueError,
        match=r"reranker: its config.json is model_type 'rq2_reranker', not 'rq2_retriever'"
        r" \(RQ2Retriever\): load it with RQ2Reranker",
    ):
        RQ2Retriever.from_pretrained(saved / "reranker")
    with pytest.raises(
        ValueError, match="model_type 'rq2_retriever', not 'rq2_reranker' .*: load it with RQ2Retriever"
    ):
        RQ2Reranker.from_pretrained(saved / "retriever")


def test_a_plain_encoder_folder_is_refused_by_from_pretrained_with_the_way_to_start_from_it(saved):
    with pytest.raises(ValueError, match="model_type 'bert', not 'rq2_retriever' .*RQ2Retriever.from_backbone"):
        RQ2Retriever.from_pretrained(saved / "encoder")


@pytest.mark.parametrize("role", ["retriever", "reranker"])
def test_training_refuses_a_folder_of_the_other_role(saved, role):
    other = "reranker" if role == "retriever" else "retriever"
    load = load_retriever if role == "retriever" else load_reranker
    with pytest.raises(ValueError, match=f"a saved RQ2{other.title()} .* given where RQ2{role.title()} was expected"):
        load(saved / other)


def test_weights_missing_from_the_files_are_refused_unless_asked_for(saved):
    """A config that asks for a tower the weight files do not hold: an error, not a random passage tower."""
    config_path = saved / "retriever" / "config.json"
    config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps({**config, "shared_towers": False}))
    with pytest.raises(
        ValueError,
        match=r"retriever: 37 weights of RQ2Retriever are not in its weight files .*"
        r"passage_encoder.*allow_missing_weights=True",
    ):
        RQ2Retriever.from_pretrained(saved / "retriever")
    assert RQ2Retriever.from_pretrained(saved / "retriever", allow_missing_weights=True).passage_encoder is not None


def test_shared_towers_loaded_as_separate_ones_start_as_copies_of_the_shared_encoder(saved):
    """The paper's separate towers from a shared-tower folder (the presets do so from a warm-up): both towers are
    the trained encoder, not one trained and one random."""
    shared = RQ2Retriever.from_pretrained(saved / "retriever")
    separate = load_retriever(saved / "retriever", shared_towers=False)
    assert separate.config.shared_towers is False and separate.passage_encoder is not separate.query_encoder
    for name, value in shared.query_encoder.state_dict().items():
        torch.testing.assert_close(separate.passage_encoder.state_dict()[name], value)
    texts = ["the sun is a star", "scurvy is caused by low vitamin c"]
    np.testing.assert_allclose(separate.encode_passages(texts), shared.encode_passages(texts), atol=1e-6)
    separate.save_pretrained(saved / "separate")
    with pytest.raises(ValueError, match="separate towers cannot load as shared ones"):
        load_retriever(saved / "separate", shared_towers=True)


# --- readers: values are what they claim, or the file and line are named ---------------------------------------


@pytest.fixture
def beir(tmp_path):
    from conftest import TINY_CORPUS, write_beir

    queries = [{"_id": "q1", "text": "what causes scurvy"}, {"_id": "q2", "text": "is paris in france"}]
    return write_beir(tmp_path / "beir", TINY_CORPUS, queries, {"test": [("q1", "d1", 1), ("q2", "d4", 1)]})


def _load(folder):
    from modeling_rq2.data import load_beir

    return load_beir(folder, "test")


@pytest.mark.parametrize("score", ["0.5", "0.9", "1.7", "inf", "-inf", "nan", "yes"])
def test_a_qrels_grade_that_is_not_an_integer_is_refused(beir, score):
    """0.5 was truncated to 0: the query lost its only positive and still counted in every mean."""
    from modeling_rq2.data import DataFormatError

    from conftest import corrupt_line

    corrupt_line(beir, "qrels/test.tsv", 2, f"q1\td1\t{score}")
    with pytest.raises(DataFormatError, match=rf"qrels/test.tsv:2: score '{score}' is not an integer grade"):
        _load(beir)


def test_integral_grades_written_as_floats_and_a_bom_before_the_header_are_read(beir):
    path = beir / "qrels" / "test.tsv"
    path.write_text("\ufeffquery-id\tcorpus-id\tscore\nq1\td1\t2.0\nq2\td4\t1\n", encoding="utf-8")
    assert _load(beir).qrels == {"q1": {"d1": 2}, "q2": {"d4": 1}}


def test_one_pair_judged_twice_with_different_grades_is_refused_naming_both_lines(beir):
    from modeling_rq2.data import DataFormatError

    (beir / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td4\t1\nq1\td1\t0\n")
    with pytest.raises(DataFormatError, match=r"test.tsv:4: \(q1, d1\) judged 0 here and 1 on line 2"):
        _load(beir)


@pytest.mark.parametrize(
    "record, message",
    [
        ({"_id": None, "text": "a"}, "'_id' must be a non-empty string, got null"),
        ({"_id": "", "text": "a"}, "'_id' must be a non-empty string"),
        ({"_id": "  ", "text": "a"}, "'_id' must be a non-empty string"),
        ({"_id": 7, "text": "a"}, "'_id' must be a non-empty string, got 7"),
        ({"_id": "d9", "text": ["a", "list"]}, "id 'd9': 'text' must be a string, got list"),
        ({"_id": "d9", "text": {"a": 1}}, "id 'd9': 'text' must be a string, got dict"),
        ({"_id": "d9", "title": 3, "text": "a"}, "id 'd9': 'title' must be a string, got int"),
    ],
    ids=["null-id", "empty-id", "blank-id", "int-id", "list-text", "dict-text", "int-title"],
)
def test_corpus_records_with_ids_or_texts_of_the_wrong_type_are_refused(beir, record, message):
    """They became "None", "7" or the Python repr of a list, and were indexed as such."""
    from modeling_rq2.data import DataFormatError

    from conftest import corrupt_line

    corrupt_line(beir, "corpus.jsonl", 3, json.dumps(record))
    with pytest.raises(DataFormatError, match=rf"corpus.jsonl:3: {message}"):
        _load(beir)


# --- settings: finite and in range before anything loads; a diverged run saves no final model --------------------


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--retriever_lr", "inf"], "--retriever_lr: must be a finite number, got inf"),
        (["--reranker_lr", "nan"], "--reranker_lr: must be a finite number, got nan"),
        (["--max_grad_norm", "-1"], "--max_grad_norm: must be >= 0, got -1"),
        (["--weight_decay", "-0.1"], "--weight_decay: must be >= 0, got -0.1"),
        (["--max_train_queries", "0"], r"--max_train_queries: must be >= 1 \(or unset: all\), got 0"),
        (["--kl_weight", "inf"], "--kl_weight: must be a finite number"),
        (["--reranker_temperature", "nan"], "--reranker_temperature: must be a finite number"),
        (["--fusion", "nan"], "--fusion: must be a finite number"),
        (["--warmup_ratio", "-0.5"], "--warmup_ratio: must be >= 0"),
        (["--ddp_timeout", "0"], "--ddp_timeout: must be >= 1 second"),
        (["--negative_below", "nan"], "--negative_below: must be a finite number"),
    ],
)
def test_nonsensical_numbers_are_refused_before_anything_loads(train_setup, tmp_path, flags, message):
    from modeling_rq2.training.config_files import parse_arguments

    from conftest import train_argv

    with pytest.raises(ValueError, match=message):
        parse_arguments(train_argv(train_setup, tmp_path, *flags))
    assert not (tmp_path / "retriever").exists()


def test_a_run_whose_weights_diverge_saves_no_final_model(train_setup, tmp_path, monkeypatch):
    """Weights that became non-finite in the last step (the loss check only sees the next one): the run stops with
    the reason instead of saving models of inf (and a metrics.json with Infinity)."""
    from modeling_rq2.training.chain import run_training
    from modeling_rq2.training.config_files import parse_arguments
    from modeling_rq2.training.trainer import JointTrainer

    from conftest import train_argv

    step = JointTrainer.training_step

    def diverging(self, *args, **kwargs):
        out = step(self, *args, **kwargs)
        with torch.no_grad():
            next(self.joint.parameters()).fill_(float("inf"))
        return out

    monkeypatch.setattr(JointTrainer, "training_step", diverging)
    argv = train_argv(train_setup, tmp_path, "--max_steps", "1", "--eval_split", "none")
    with pytest.raises(FloatingPointError, match="after step 1, 1 weight tensors are not finite .* not saved"):
        run_training(*parse_arguments(argv))
    assert not (tmp_path / "retriever" / "model.safetensors").exists() and not (tmp_path / "metrics.json").exists()
    with pytest.raises(ValueError, match=r"--retriever_lr: must be in \(0, 1\), got 1e\+39"):
        parse_arguments(train_argv(train_setup, tmp_path, "--retriever_lr", "1e39"))


# --- indexes: a saved index is reused only for the corpus and ids it encoded --------------------------------------


@pytest.fixture
def saved_index(retriever, tmp_path):
    """A retriever folder, a corpus and its index saved by ``RetrieveThenRerank.from_pretrained``."""
    from modeling_rq2.retrieval.pipeline import RetrieveThenRerank

    from conftest import TINY_CORPUS

    retriever.save_pretrained(tmp_path / "retriever")
    corpus = {d["_id"]: dict(d) for d in TINY_CORPUS}
    RetrieveThenRerank.from_pretrained(tmp_path / "retriever", None, corpus, tmp_path / "index")
    return tmp_path, corpus


def _reuse(folder, corpus):
    from modeling_rq2.retrieval.pipeline import RetrieveThenRerank

    return RetrieveThenRerank.from_pretrained(folder / "retriever", None, corpus, folder / "index")


def test_an_index_is_refused_for_a_corpus_whose_texts_changed(saved_index):
    folder, corpus = saved_index
    corpus["d2"] = {**corpus["d2"], "text": "the moon is not a star"}
    with pytest.raises(ValueError, match="index: the corpus given has the same ids but other texts .* re-encode it"):
        _reuse(folder, corpus)
    corpus["d2"]["text"], corpus["d1"]["title"] = TINY_CORPUS_TEXT_D2, "scurvy!"  # a title counts too
    with pytest.raises(ValueError, match="other texts"):
        _reuse(folder, corpus)


TINY_CORPUS_TEXT_D2 = "the sun is a star and gives light and energy to earth"


def test_an_index_is_reused_for_the_same_corpus_in_another_order(saved_index, monkeypatch):
    folder, corpus = saved_index
    monkeypatch.setattr(RQ2Retriever, "encode_passages", lambda *a, **k: pytest.fail("the index was re-encoded"))
    first = _reuse(folder, corpus).retrieve(["what causes scurvy"], top_k=5)
    reordered = dict(reversed(list(corpus.items())))
    assert _reuse(folder, reordered).retrieve(["what causes scurvy"], top_k=5) == first


def test_a_reordered_docid_file_is_refused(saved_index):
    from modeling_rq2 import DenseIndex

    folder, corpus = saved_index
    path = folder / "index" / "docid"
    path.write_text("".join(f"{d}\n" for d in reversed(path.read_text().split())))
    with pytest.raises(ValueError, match=r"index/docid: changed since the index was saved .* rebuild the index"):
        DenseIndex.load(folder / "index")


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("meta.json", "{not json", r"meta.json: not valid JSON"),
        ("meta.json", "[1, 2]", r"meta.json: not a DenseIndex meta.json"),
        ("index", b"\x00" * 40, r"index/index: not a readable FAISS index"),
    ],
)
def test_corrupt_index_files_are_named(saved_index, name, content, message):
    from modeling_rq2 import DenseIndex

    folder, _ = saved_index
    path = folder / "index" / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ValueError, match=message):
        DenseIndex.load(folder / "index")


def test_a_truncated_faiss_file_is_named(saved_index):
    from modeling_rq2 import DenseIndex

    folder, _ = saved_index
    path = folder / "index" / "index"
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(ValueError, match=r"index/index: not a readable FAISS index .* rebuild it"):
        DenseIndex.load(folder / "index")


@pytest.mark.parametrize("bad_id", ["d\n1", "d\r1", "d\u20281", "d\x0b1"])
def test_ids_with_a_line_separator_are_refused_before_encoding(retriever, tmp_path, monkeypatch, bad_id):
    from modeling_rq2.retrieval.index import build_index

    monkeypatch.setattr(RQ2Retriever, "encode_passages", lambda *a, **k: pytest.fail("encoded before the check"))
    for shards in (None, tmp_path / "shards"):
        with pytest.raises(ValueError, match="holds a line separator: a saved index keeps one id per line"):
            build_index(retriever, ["a", "b"], ["d0", bad_id], shard_folder=shards)


def test_ivfpq_on_a_corpus_too_small_to_train_is_refused_before_any_model_loads(beir_folder, tmp_path):
    from modeling_rq2.evaluate import main

    with pytest.raises(ValueError, match=r"index_type 'ivfpq' trains 256 centroids on the corpus, which has only 5"):
        main(["--retriever", str(tmp_path / "no-such-model"), "--data", str(beir_folder), "--index_type", "ivfpq",
              "--top_k", "5", "--rerank_top_k", "5", "--output_dir", str(tmp_path / "out")])  # fmt: skip
    assert not (tmp_path / "out").exists()


def test_a_nan_query_or_passage_vector_is_refused_not_answered_with_nothing():
    from modeling_rq2 import DenseIndex

    vectors = np.eye(4, dtype=np.float32)
    index = DenseIndex.build(vectors, ["a", "b", "c", "d"])
    queries = vectors[:3].copy()
    queries[1, 0] = np.nan
    with pytest.raises(ValueError, match=r"1 query embeddings are not finite \(rows \[1\]\)"):
        index.search(queries, k=2)
    vectors[2, 1] = np.inf
    with pytest.raises(ValueError, match=r"1 passage embeddings are not finite \(rows \[2\]\)"):
        DenseIndex.build(vectors, ["a", "b", "c", "d"])


def test_shards_of_a_corpus_whose_texts_changed_are_not_resumed(retriever, tmp_path):
    from modeling_rq2.retrieval.index import encode_corpus_shards

    encode_corpus_shards(retriever, ["a b", "c d", "e f"], ["1", "2", "3"], tmp_path / "shards", shard_size=2)
    with pytest.raises(ValueError, match="holds shards of another encoding"):
        encode_corpus_shards(retriever, ["a b", "c d", "e g"], ["1", "2", "3"], tmp_path / "shards", shard_size=2)


# --- model folders: missing, empty, truncated, altered, broken tokenizer --------------------------------------------


def test_a_missing_or_empty_model_folder_is_named_as_such(saved, tmp_path):
    (tmp_path / "empty").mkdir()
    for load in (RQ2Retriever.from_pretrained, load_retriever):
        with pytest.raises(ValueError, match="empty: a folder without config.json, not a saved model"):
            load(tmp_path / "empty")
        with pytest.raises(FileNotFoundError, match=r"runs/no/such: no such model folder \(and not a Hub repo id"):
            load(str(tmp_path / "runs" / "no" / "such"))


def test_a_truncated_weight_file_is_named(saved):
    path = saved / "retriever" / "model.safetensors"
    (saved / "retriever" / "weights.sha256").unlink()  # a folder of another tool: no manifest to compare with
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(
        ValueError, match="retriever: a weight file is not readable safetensors .* truncated or damaged"
    ):
        RQ2Retriever.from_pretrained(saved / "retriever")


def test_weights_altered_after_saving_are_refused_by_their_manifest(saved):
    """safetensors has no checksum: a flipped byte inside a tensor loads silently without weights.sha256."""
    path = saved / "reranker" / "model.safetensors"
    assert (saved / "reranker" / "weights.sha256").read_text().endswith("  model.safetensors\n")
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF  # a weight's byte, not the header
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"model.safetensors: its bytes differ from the sha256 in weights.sha256"):
        RQ2Reranker.from_pretrained(saved / "reranker")
    (saved / "reranker" / "weights.sha256").unlink()
    RQ2Reranker.from_pretrained(saved / "reranker")  # without the manifest: loads (nothing to check against)


def test_a_folder_without_weight_files_says_so(saved):
    (saved / "retriever" / "model.safetensors").unlink()
    with pytest.raises(OSError, match=r"retriever: holds no weight file \(model.safetensors is missing\)"):
        RQ2Retriever.from_pretrained(saved / "retriever")


def test_a_corrupt_tokenizer_file_is_named(saved):
    (saved / "retriever" / "tokenizer.json").write_text("{broken")
    with pytest.raises(ValueError, match="retriever: its tokenizer files do not load .*JSONDecodeError"):
        RQ2Retriever.from_pretrained(saved / "retriever")


# --- checkpoints: damaged ones are skipped, other settings refused, a full disk leaves nothing behind --------------


@pytest.fixture
def checkpointed(train_setup, tmp_path):
    """A finished 2-epoch run of 6 steps that kept its checkpoints 4 and 6 (and its argv)."""
    from modeling_rq2.training.chain import run_training
    from modeling_rq2.training.config_files import parse_arguments

    from conftest import train_argv

    argv = train_argv(train_setup, tmp_path, "--epochs", "2", "--save_steps", "2", "--eval_split", "none")
    run_training(*parse_arguments(argv))
    checkpoints = sorted((tmp_path / "checkpoints").iterdir(), key=lambda p: int(p.name.split("-")[1]))
    return argv, checkpoints


@pytest.mark.parametrize("damage", ["truncate", "flip", "remove"])
def test_a_damaged_latest_checkpoint_falls_back_to_the_newest_intact_one(checkpointed, damage):
    from modeling_rq2.training.checkpoints import resolve_checkpoint

    argv, checkpoints = checkpointed
    older, latest = checkpoints[-2:]
    weights = next(latest.rglob("model.safetensors"))
    data = weights.read_bytes()
    if damage == "truncate":
        weights.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        weights.write_bytes(data[:-10] + bytes(b ^ 0xFF for b in data[-10:]))
    else:
        next(latest.glob("optimizer*.bin")).unlink()
    with pytest.warns(
        UserWarning, match=rf"skipped damaged checkpoints: .*{latest.name} \(.*\); resuming from .*{older.name}"
    ):
        assert resolve_checkpoint(str(latest.parents[1]), "latest") == older
    with pytest.raises(ValueError, match=f"--resume_from_checkpoint {latest}: damaged, "):
        resolve_checkpoint(str(latest.parents[1]), str(latest))


def test_every_checkpoint_damaged_is_an_error_not_a_fresh_start(checkpointed):
    from modeling_rq2.training.checkpoints import resolve_checkpoint

    _, checkpoints = checkpointed
    for checkpoint in checkpoints:
        (checkpoint / "progress.json").write_text("{half")
    with pytest.raises(ValueError, match="every checkpoint is damaged: .*progress.json unreadable"):
        resolve_checkpoint(str(checkpoints[0].parents[1]), "latest")


@pytest.mark.parametrize(
    "flags, changed",
    [
        (["--batch_size", "3"], "batch_size 4 -> 3"),
        (["--seed", "7"], "seed 42 -> 7"),
        (["--retriever_lr", "1e-4"], "retriever_lr 2e-05 -> 0.0001"),
        (["--list_size", "2"], "list_size 3 -> 2"),
        (["--kl_weight", "0.5"], "kl_weight 1.0 -> 0.5"),
    ],
)
def test_resuming_with_settings_that_decide_the_run_is_refused_unless_overridden(
    checkpointed, monkeypatch, flags, changed
):
    import modeling_rq2.training.trainer as training
    from modeling_rq2.training.chain import run_training
    from modeling_rq2.training.config_files import parse_arguments

    argv, checkpoints = checkpointed
    resume = ["--resume_from_checkpoint", str(checkpoints[0])]
    real_load = training.load_models
    monkeypatch.setattr(training, "load_models", lambda *a, **k: pytest.fail("a model loaded before the refusal"))
    with pytest.raises(ValueError, match=rf"was saved by a run with other settings: {changed}; .*--resume_override"):
        run_training(*parse_arguments(argv + resume + flags))
    monkeypatch.setattr(training, "load_models", real_load)
    name = flags[0].removeprefix("--")
    metrics = run_training(*parse_arguments(argv + resume + flags + ["--resume_override", name]))
    assert metrics["train"]["steps"] >= 1


def test_resuming_with_only_logging_and_checkpoint_settings_changed_is_allowed(checkpointed):
    from modeling_rq2.training.chain import run_training
    from modeling_rq2.training.config_files import parse_arguments

    argv, checkpoints = checkpointed
    extra = ["--resume_from_checkpoint", str(checkpoints[0]), "--logging_steps", "3", "--save_total_limit", "5"]
    assert run_training(*parse_arguments(argv + extra))["train"]["steps"] == 6


def test_a_resume_override_of_no_setting_is_refused(checkpointed):
    from modeling_rq2.training.chain import run_training
    from modeling_rq2.training.config_files import parse_arguments

    argv, checkpoints = checkpointed
    extra = ["--resume_from_checkpoint", str(checkpoints[0]), "--resume_override", "batch_sise"]
    with pytest.raises(ValueError, match=r"--resume_override: not settings that decide a run: \['batch_sise'\]"):
        run_training(*parse_arguments(argv + extra))


@pytest.mark.parametrize("error", ["safetensors", "torch"])
def test_a_full_disk_while_saving_names_the_folder_and_leaves_no_temporary_files(tmp_path, retriever, error):
    """safetensors' and torch's write errors are not OSErrors: the promised message came as a raw trace before."""
    from accelerate import Accelerator
    from safetensors import SafetensorError

    from modeling_rq2.training.checkpoints import Progress, save_checkpoint, save_model

    def full_disk(*args, **kwargs):
        if error == "safetensors":
            raise SafetensorError("Error while serializing: IoError(No space left on device)")
        raise RuntimeError("[enforce fail at inline_container.cc:664] . PytorchStreamWriter failed writing file")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(type(retriever), "save_pretrained", full_disk)
        with pytest.raises(
            OSError, match=r"could not write .*retriever \(.*\); the run's checkpoints are as they were"
        ):
            save_model(retriever, tmp_path / "retriever")
        patch.setattr(Accelerator, "save_state", full_disk)
        with pytest.raises(OSError, match=r"could not write checkpoint .*checkpoint-3 .* no earlier checkpoint exists"):
            save_checkpoint(Accelerator(cpu=True), str(tmp_path), Progress(global_step=3), keep=2)
    assert [p.name for p in tmp_path.rglob("*")] == ["checkpoints"]  # no .tmp-* left, nothing else either


# --- publishing never deletes what it did not stage, and publishes no local path ----------------------------------


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, train_setup):
    """A real (tiny) train.py output folder."""
    from modeling_rq2.training.chain import run_training
    from modeling_rq2.training.config_files import parse_arguments

    from conftest import train_argv

    run = tmp_path_factory.mktemp("published") / "run"
    run_training(*parse_arguments(train_argv(train_setup, run, "--max_steps", "2", "--save_steps", "0")))
    return run


def _snapshot(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


REPOS = {"retriever": "me/rq2-retriever", "reranker": "me/rq2-reranker"}


@pytest.mark.parametrize("where", [".", "staged", "retriever"])
def test_staging_into_or_over_the_run_folder_is_refused_and_deletes_nothing(trained_run, where):
    from modeling_rq2.hub.publish import stage_run

    before = _snapshot(trained_run)
    with pytest.raises(ValueError, match="overlaps --run_dir .*: staging would replace the trained models"):
        stage_run(trained_run, REPOS, trained_run / where)
    assert _snapshot(trained_run) == before


def test_staging_into_a_folder_of_other_files_is_refused_and_deletes_nothing(trained_run, tmp_path):
    from modeling_rq2.hub.publish import stage_run

    (tmp_path / "mine" / "retriever").mkdir(parents=True)
    (tmp_path / "mine" / "retriever" / "notes.txt").write_text("my notes")
    with pytest.raises(ValueError, match="mine: already holds files that push_to_hub did not stage"):
        stage_run(trained_run, REPOS, tmp_path / "mine")
    assert _snapshot(tmp_path / "mine") == {"retriever/notes.txt": b"my notes"}


def test_staging_again_replaces_its_own_files_and_refuses_to_remove_a_users(trained_run, tmp_path):
    from modeling_rq2.hub.publish import stage_run

    staged = stage_run(trained_run, REPOS, tmp_path / "staged")
    stage_run(trained_run, REPOS, tmp_path / "staged")  # its own earlier staging: replaced
    (staged["reranker"] / "my-eval.json").write_text("{}")
    before = _snapshot(tmp_path / "staged")
    with pytest.raises(ValueError, match=r"reranker: holds 'my-eval.json' that no earlier staging wrote"):
        stage_run(trained_run, REPOS, tmp_path / "staged")
    assert _snapshot(tmp_path / "staged") == before


def test_staged_files_carry_no_absolute_local_path(trained_run, train_setup, tmp_path):
    from modeling_rq2.hub.publish import stage_run

    staged = stage_run(trained_run, REPOS, tmp_path / "staged")
    local = [str(trained_run.parent), str(train_setup[0]), str(tmp_path)]
    for role, folder in staged.items():
        for name, data in _snapshot(folder).items():
            if name.endswith((".json", ".jsonl", ".md", ".txt", ".py")):
                text = data.decode("utf-8")
                assert not [p for p in local if p in text], f"{role}/{name} carries a local path"
    config = json.loads((staged["retriever"] / "training_config.json").read_text())
    assert config["model"]["retriever"] == "retriever" and config["training"]["output_dir"] == "."
    assert config["data"]["data"] == train_setup[1].name


# --- one run per output folder -------------------------------------------------------------------------------------


def test_a_second_run_on_a_busy_output_folder_fails_at_once_and_a_killed_run_leaves_no_stale_lock(
    train_setup, tmp_path
):
    import signal

    from modeling_rq2.training.chain import run_training
    from modeling_rq2.training.config_files import parse_arguments

    from conftest import start_training, train_argv, wait_until

    argv = train_argv(train_setup, tmp_path, "--epochs", "50", "--save_steps", "0", "--logging_steps", "1")
    first = start_training(argv)
    try:
        wait_until(first, lambda: (tmp_path / "train_log.jsonl").exists())
        with pytest.raises(RuntimeError, match=rf"--output_dir .*: in use by another run \(pid {first.pid} on "):
            run_training(*parse_arguments(argv))
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    short = train_argv(
        train_setup,
        tmp_path,
        "--max_steps",
        "1",
        "--save_steps",
        "0",
        "--eval_split",
        "none",
        "--overwrite_output_dir",
        "true",
    )
    assert run_training(*parse_arguments(short))["train"]["steps"] == 1  # the killed run's lock went with it


# --- config files: syntax, duplicate keys, alias bombs, tags, long values -------------------------------------------

ALIAS_BOMB = (
    'list_size: [&a ["x","x","x","x","x","x","x","x","x"], &b [*a,*a,*a,*a,*a,*a,*a,*a,*a], '
    "&c [*b,*b,*b,*b,*b,*b,*b,*b,*b], &d [*c,*c,*c,*c,*c,*c,*c,*c,*c], [*d,*d,*d,*d,*d,*d,*d,*d,*d]]\n"
)


@pytest.mark.parametrize(
    "text, message",
    [
        ("epochs: [2\n", r"run.yaml:2:1: not valid YAML \(expected ',' or '\]'"),
        ("epochs: 2\nlist_size: 4\nepochs: 3\n", r"run.yaml:3: 'epochs' given twice \(first on line 1\)"),
        (ALIAS_BOMB, "run.yaml: expands to more than 10,000 values"),
        ('epochs: !!python/object/apply:os.system ["echo owned"]\n', "run.yaml: could not determine a constructor"),
        (
            "list_size: ['" + "x" * 100_000 + "']\n",
            r"list_size must be int, got \['xxx.*\.\.\. \(100,004 characters\)$",
        ),
        ("- epochs\n- 2\n", "run.yaml: expected a mapping of argument names to values"),
        ("\t epochs: 2\n", "run.yaml:1:1: not valid YAML"),
    ],
)
def test_config_files_that_are_not_sensible_yaml_name_the_file_and_line(tmp_path, text, message):
    from modeling_rq2.training.config_files import parse_arguments

    (tmp_path / "run.yaml").write_text(text)
    with pytest.raises(ValueError, match=message) as caught:
        parse_arguments([str(tmp_path / "run.yaml")])
    assert len(str(caught.value)) < 600  # a bounded message, whatever the file expands to


# --- data: typos, empty files, oversized cells, broken instance lines ----------------------------------------------


@pytest.mark.parametrize(
    "name, message",
    [
        ("scifcat", r"scifcat: no such folder, not a bundled dataset \['scifact'\] .*did you mean 'scifact'\?"),
        ("data/nq/../typo", "no such folder, not a bundled dataset"),
        ("./scifact", "no such folder"),
    ],
)
def test_a_data_name_that_is_no_folder_bundled_name_or_hub_id_is_named(name, message, tmp_path, monkeypatch):
    import datasets

    from modeling_rq2.data import load_data

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: pytest.fail("went to the Hub"))
    with pytest.raises(FileNotFoundError, match=message):
        load_data(name, "test")


def test_a_hub_dataset_that_cannot_be_loaded_is_named_in_one_line(monkeypatch):
    import datasets

    from modeling_rq2.data import load_data

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'me/nothing' on the Hub (OfflineModeIsEnabled)\n<trace>")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(FileNotFoundError, match=r"me/nothing: not a local folder, and the Hub dataset could not be "):
        load_data("me/nothing", "test")


@pytest.mark.parametrize("name", ["corpus.jsonl", "queries.jsonl"])
def test_an_empty_corpus_or_queries_file_is_named(beir_folder, name):
    from modeling_rq2.data import DataFormatError, load_data

    (beir_folder / name).write_text("\n")
    with pytest.raises(DataFormatError, match=f"{name}: holds no \\(valid\\) records"):
        load_data(beir_folder, "test")


def test_an_oversized_quoted_cell_names_its_line(tmp_path):
    from modeling_rq2.data import DataFormatError, load_data

    from test_paper_datasets import write_dpr

    folder = write_dpr(tmp_path / "nq")
    with open(folder / "psgs_w100.tsv", "a", encoding="utf-8") as f:
        f.write('21\t"' + "word " * 30_000 + '"\tHuge\n')
    with pytest.raises(DataFormatError, match=r"psgs_w100.tsv:22: unreadable quoted cell \(field larger than"):
        load_data(folder, "test")


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"query_id": "q1", "query": "x", "positives": ["d1"], "negatives": ["d2"', "invalid JSON"),
        (
            '{"query_id": 7, "query": "x", "positives": ["d1"], "negatives": []}',
            "'query_id' must be a non-empty string",
        ),
        (
            '{"query_id": "q1", "query": "x", "positives": "d1", "negatives": []}',
            "'positives' must be a list of doc ids",
        ),
        ('["q1", "x"]', "an instance is a JSON object, got list"),
    ],
)
def test_a_broken_train_instances_line_is_named(train_setup, tmp_path, line, message):
    from modeling_rq2.data import DataFormatError
    from modeling_rq2.training.lists import load_instances

    good = '{"query_id": "q0", "query": "y", "positives": ["d1"], "negatives": ["d2"], "kind": "denoised"}'
    (tmp_path / "instances.jsonl").write_text(f"{good}\n{line}\n")
    with pytest.raises(DataFormatError, match=f"instances.jsonl:2: {message}"):
        load_instances(tmp_path / "instances.jsonl")
    (tmp_path / "instances.jsonl").write_text(f"{good}\n")
    assert load_instances(tmp_path / "instances.jsonl")[0]["positives"] == ["d1"]


# --- model inputs: one string is one input; what is not text is refused, naming its position ----------------------


def test_one_string_gives_one_result_not_one_per_character(retriever, reranker):
    """sentence-transformers' rule: a string in, one result out ("hello world" gave an (11, dim) array)."""
    many = retriever.encode_queries(["hello world"])
    assert retriever.encode_queries("hello world").shape == (retriever.embedding_dim,)
    assert np.allclose(retriever.encode_queries("hello world"), many[0], atol=1e-6)
    passage = {"title": "t", "text": "a passage"}
    assert np.allclose(retriever.encode_passages(passage), retriever.encode_passages([passage])[0], atol=1e-6)
    assert retriever.encode_passages("one passage").shape == (retriever.embedding_dim,)
    assert np.ndim(reranker.score("q", "one passage")) == 0
    assert np.isclose(reranker.score("q", "one passage"), reranker.score("q", ["one passage"])[0], atol=1e-6)
    assert np.isclose(reranker.score_pairs(("q", "p")), reranker.score_pairs([("q", "p")])[0], atol=1e-6)


def test_a_pipeline_searched_with_one_string_gives_one_ranked_list(retriever, reranker):
    from modeling_rq2.retrieval.pipeline import RetrieveThenRerank

    from conftest import TINY_CORPUS

    pipe = RetrieveThenRerank.from_corpus(retriever, TINY_CORPUS, [d["_id"] for d in TINY_CORPUS], reranker)
    one = pipe.search("what causes scurvy", top_k=4, rerank_top_k=2, fusion=0.5)
    assert one == pipe.search(["what causes scurvy"], top_k=4, rerank_top_k=2, fusion=0.5)[0]
    assert [len(hit) for hit in one] == [2, 2, 2, 2] and pipe.retrieve("what causes scurvy", top_k=3)[0][0] in {
        d["_id"] for d in TINY_CORPUS
    }


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda r, c: r.encode_queries(["fine", None]), "query 1 must be a string, got NoneType"),
        (lambda r, c: r.encode_queries(None), "expected a string or a list of them, got NoneType"),
        (lambda r, c: r.encode(7), "expected a string, a {'title', 'text'} dict or a list of them, got int: 7"),
        (lambda r, c: r.encode_queries(["fine", 7]), "query 1 must be a string, got int: 7"),
        (lambda r, c: r.encode_queries([["nested", "list"]]), "query 0 must be a string, got list"),
        (lambda r, c: r.encode_passages([{"title": "t", "text": None}]), "passage 0 must be a string or a"),
        (lambda r, c: r.encode_passages([{"title": 3, "text": "x"}]), "passage 0 must be a string or a"),
        (lambda r, c: c.score(None, ["p"]), "the query must be a string, got NoneType"),
        (lambda r, c: c.score_pairs([("q", "p"), ("q", 5)]), "pair 1: the passage must be a string or a"),
    ],
)
def test_inputs_that_are_not_text_are_refused_naming_their_position(retriever, reranker, call, message):
    with pytest.raises(TypeError, match=message):
        call(retriever, reranker)


# --- accelerate launch's own settings are the defaults, never silently overridden ---------------------------------


def test_accelerate_launch_precision_and_accumulation_stand_when_the_run_sets_none(train_setup, tmp_path, monkeypatch):
    """``accelerate launch --mixed_precision bf16 train.py`` trained in fp32: train.py passed its own "no"."""
    from modeling_rq2.training.config_files import parse_arguments

    from conftest import train_argv

    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    monkeypatch.setenv("ACCELERATE_GRADIENT_ACCUMULATION_STEPS", "3")
    args = parse_arguments(train_argv(train_setup, tmp_path)).training
    assert (args.mixed_precision, args.gradient_accumulation_steps) == ("bf16", 3)
    args = parse_arguments(
        train_argv(train_setup, tmp_path, "--mixed_precision", "no", "--gradient_accumulation_steps", "2")
    ).training
    assert (args.mixed_precision, args.gradient_accumulation_steps) == ("no", 2)  # the run's own flags win
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "fp8")
    with pytest.raises(
        ValueError, match=r"--mixed_precision: must be one of \('no', 'bf16', 'fp16'\), got 'fp8' \(from accelerate launch"
    ):
        parse_arguments(train_argv(train_setup, tmp_path))


def test_the_accumulation_the_run_plans_is_the_one_accelerate_applies(train_setup, tmp_path, monkeypatch):
    """Accelerator reads ACCELERATE_GRADIENT_ACCUMULATION_STEPS over its argument: the plan said 2, it stepped every 4."""
    from modeling_rq2.training.config_files import parse_arguments
    from modeling_rq2.training.trainer import _accelerator

    from conftest import train_argv

    monkeypatch.setenv("ACCELERATE_GRADIENT_ACCUMULATION_STEPS", "4")
    args = parse_arguments(train_argv(train_setup, tmp_path, "--gradient_accumulation_steps", "2")).training
    assert _accelerator(args).gradient_accumulation_steps == 2


# --- the command line: no abbreviations, the config file anywhere ------------------------------------------------


def test_flags_are_never_abbreviated_and_a_close_one_is_suggested():
    from modeling_rq2.training.config_files import parse_arguments

    with pytest.raises(ValueError, match=r"unknown flags \['--epoch', '2'\]; did you mean --epochs\?"):
        parse_arguments(["--epoch", "2"])  # argparse took it as --epochs
    with pytest.raises(ValueError, match=r"unknown flags \['stray'\]"):
        parse_arguments(["stray"])


@pytest.mark.parametrize(
    "argv",
    [
        ["configs/nq.yaml", "--epochs", "1"],
        ["--epochs", "1", "configs/nq.yaml"],
        ["--config", "configs/nq.yaml", "--epochs", "1"],
        ["--epochs", "1", "--config=configs/nq.yaml"],
    ],
)
def test_the_config_file_may_come_anywhere_and_flags_override_it(argv, monkeypatch):
    from modeling_rq2.training.config_files import parse_arguments

    monkeypatch.chdir(ROOT)
    config = parse_arguments(argv)
    assert (config.data.list_size, config.training.epochs) == (32, 1)


def test_two_config_files_are_refused():
    from modeling_rq2.training.config_files import parse_arguments

    with pytest.raises(ValueError, match=r"one config file at most, got \['a.yaml', 'b.yaml'\]"):
        parse_arguments(["a.yaml", "--config", "b.yaml"])


# --- the package: console scripts, declared dependencies, trackers ------------------------------------------------


def _pyproject() -> dict:
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _script_help(script: str, capsys, monkeypatch, *argv: str) -> tuple[int, str, str]:
    """Run a console script's function with ``argv``: (exit status, stdout, stderr)."""
    import importlib
    import sys

    module, _, function = _pyproject()["project"]["scripts"][script].partition(":")
    monkeypatch.setattr(sys, "argv", [script, *argv])
    with pytest.raises(SystemExit) as exit_:
        getattr(importlib.import_module(module), function)()
    out, err = capsys.readouterr()
    return exit_.value.code, out, err


@pytest.mark.parametrize("script", ["rq2-train", "rq2-evaluate", "rq2-augment", "rq2-push"])
def test_each_console_script_names_a_command_whose_help_shows_every_default_and_choice(script, capsys, monkeypatch):
    """Every flag of --help states its default once (or that it is required), and few-valued settings their
    choices: help-less flags showed no default, and some helped ones showed two."""
    import re

    status, out, _ = _script_help(script, capsys, monkeypatch, "--help")
    assert status == 0
    blocks = re.split(r"\n  (?=--)", out.split("options:", 1)[1])[1:]
    assert blocks
    for block in blocks:
        text = " ".join(block.split())
        assert text.count("(default:") + text.count("(required)") == 1, text
    choices = {"rq2-train": "--pooling {cls,mean}", "rq2-evaluate": "--index_type {flat,flat16,hnsw,ivfpq}",
               "rq2-augment": "--instance_mix {both,denoised,undenoised}", "rq2-push": "--dry_run"}
    assert choices[script] in out


@pytest.mark.parametrize(
    "script, prefix",
    [("rq2-train", "--epoch"), ("rq2-evaluate", "--retr"), ("rq2-augment", "--augment_top"), ("rq2-push", "--dry_r")],
)
def test_no_console_script_takes_an_abbreviated_flag(script, prefix, capsys, monkeypatch):
    """argparse's prefix matching took --retr for --retriever; a typo must not become another flag."""
    status, _, err = _script_help(script, capsys, monkeypatch, prefix, "x")
    assert status == 2 and "error:" in err and "Traceback" not in err


def _help_flags(script: str, capsys, monkeypatch) -> set[str]:
    import re

    return set(re.findall(r"^  (--[a-z_]+)", _script_help(script, capsys, monkeypatch, "--help")[1], re.M))


def test_each_command_lists_only_its_own_flags_and_shares_the_names_that_mean_the_same(capsys, monkeypatch):
    """rq2-augment mines and denoises: the chain's stage flags (--augment, --augment_warmup*) did nothing there; the
    depth evaluated is --top_k in both train.py and rq2-evaluate, and both write into --output_dir."""
    train, evaluate, augment = (_help_flags(s, capsys, monkeypatch) for s in ("rq2-train", "rq2-evaluate", "rq2-augment"))
    assert not augment & {"--augment", "--augment_warmup", "--augment_warmup_epochs", "--augment_warmup_list_size"}
    assert {"--augment_top_n", "--negative_below", "--positive_above", "--instance_mix"} <= augment
    assert {"--top_k", "--rerank_top_k", "--fusion", "--output_dir"} <= train & evaluate and "--eval_top_k" not in train
    assert "--output_dir" in _help_flags("rq2-push", capsys, monkeypatch)  # where it stages (--local_dir: an alias)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train.py", "--epoch", "2"], "train.py: error: unknown flags ['--epoch', '2']; did you mean --epochs?"),
        (["-m", "modeling_rq2.evaluate", "--data", "scifcat"], "rq2-evaluate: error: scifcat: no such folder"),
        (["push_to_hub.py", "--run_dir", "nowhere", "--retriever_repo", "a/b", "--reranker_repo", "a/c"],
         "push_to_hub.py: error: nowhere/retriever: no saved retriever"),
    ],
)  # fmt: skip
def test_a_command_line_mistake_is_one_line_not_a_traceback(argv, message):
    import subprocess
    import sys

    done = subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr, done.stderr[-2000:]


def test_the_package_links_the_paper_and_the_official_code():
    urls = _pyproject()["project"]["urls"]
    assert urls["Paper"] == "https://arxiv.org/abs/2110.07367" and "PaddlePaddle/RocketQA" in urls[
        "Official code (PaddlePaddle)"
    ]


def test_every_third_party_import_of_the_package_is_a_declared_dependency():
    """regex and pyarrow were imported but undeclared: an install could lack them."""
    import ast
    import importlib.metadata
    import re
    import sys

    declared = {
        re.split(r"[<>=!\[ ;]", requirement)[0].lower().replace("_", "-")
        for requirement in _pyproject()["project"]["dependencies"]
    }
    owners = importlib.metadata.packages_distributions()
    imported = set()
    for path in (ROOT / "modeling_rq2").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            names += [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else []
            imported |= {name.split(".")[0] for name in names}
    third_party = {name for name in imported if name not in sys.stdlib_module_names and name != "modeling_rq2"}
    undeclared = {
        name: owners.get(name) for name in third_party
        if not {d.lower().replace("_", "-") for d in owners.get(name, [name])} & declared
    }  # fmt: skip
    optional = {"sentence_transformers", "tensorboard", "openvino"}  # imported where used, saying how to install
    assert set(undeclared) <= optional, undeclared


def test_the_tracker_is_tensorboard_when_installed_and_a_missing_one_is_named(train_setup, tmp_path, monkeypatch):
    import importlib.util

    from modeling_rq2.training.config_files import parse_arguments

    from conftest import train_argv

    argv = [a for a in train_argv(train_setup, tmp_path) if a not in ("--report_to", "none")]
    assert parse_arguments(argv).training.report_to == "tensorboard"  # installed here (the dev extra)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    assert parse_arguments(argv).training.report_to == "none"
    with pytest.raises(ValueError, match=r"--report_to: tensorboard is not installed: pip install tensorboard"):
        parse_arguments(argv + ["--report_to", "tensorboard"])


# --- found by the review of this suite: each failed before its fix ------------------------------------------------


def test_overrides_given_to_from_pretrained_are_checked_like_the_config(saved):
    with pytest.raises(ValueError, match=r"pooling must be one of \('cls', 'mean'\), got 'max'"):
        RQ2Retriever.from_pretrained(saved / "retriever", pooling="max")  # pooled by mean before
    with pytest.raises(ValueError, match="query_max_length must be > 0, got -5"):
        load_retriever(saved / "retriever", query_max_length=-5)  # an OverflowError in the tokenizer before


def test_a_separate_tower_folder_loaded_as_shared_is_refused_not_stripped_of_its_passage_tower(
    tmp_path, tiny_tokenizer
):
    tiny_retriever(tiny_tokenizer, shared_towers=False).save_pretrained(tmp_path / "separate")
    with pytest.raises(ValueError, match=r"weights in its files have no place in this RQ2Retriever .*passage_encoder"):
        RQ2Retriever.from_pretrained(tmp_path / "separate", shared_towers=True)


def test_a_missing_folder_spelled_like_a_hub_id_says_both(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for load in (RQ2Retriever.from_pretrained, load_retriever):
        with pytest.raises(OSError, match="out/retriever: no local folder of that name, and no model could be loaded"):
            load("out/retriever")


def test_staging_refuses_weights_that_differ_from_their_manifest(trained_run, tmp_path):
    import shutil

    from modeling_rq2.hub.publish import stage_run

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    weights = run / "retriever" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-100] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="model.safetensors: its bytes differ from the sha256"):
        stage_run(run, REPOS, tmp_path / "staged")  # a warning before, and the damaged model staged


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--relevance_threshold", "0"], "--relevance_threshold must be >= 1, got 0"),
        (["--metrics", "ndcg@0"], r"--metrics: unknown metric 'ndcg@0'"),
        (["--metrics", "recall@abc"], r"--metrics: unknown metric 'recall@abc'"),
        (["--query_max_length", "0"], r"--query_max_length must be >= 1 \(or unset"),
    ],
)
def test_evaluation_numbers_that_change_what_is_measured_are_refused(beir_folder, tmp_path, flags, message):
    from modeling_rq2.evaluate import main

    with pytest.raises(ValueError, match=message):
        main(["--data", str(beir_folder), "--top_k", "5", "--output_dir", str(tmp_path / "out"), *flags])


def test_evaluation_never_writes_over_a_training_run(trained_run):
    from modeling_rq2.evaluate import main

    before = (trained_run / "metrics.json").read_bytes()
    with pytest.raises(ValueError, match=r"holds a training run: its metrics.json would be replaced"):
        main(["--retriever", str(trained_run / "retriever"), "--output_dir", str(trained_run)])
    assert (trained_run / "metrics.json").read_bytes() == before


def test_evaluation_without_a_reranker_ignores_the_rerank_depth(beir_folder, tmp_path):
    from modeling_rq2.evaluation.evaluate import EvaluateArguments

    assert EvaluateArguments(data=str(beir_folder), top_k=5).rerank_top_k == 50  # refused before: 50 > top_k


def test_a_saved_index_of_another_type_is_refused_not_used_instead(saved_index):
    from modeling_rq2.retrieval.index import IndexOptions
    from modeling_rq2.retrieval.pipeline import RetrieveThenRerank

    folder, corpus = saved_index
    with pytest.raises(ValueError, match=r"index: holds a 'flat' index, 'hnsw' was asked for"):
        RetrieveThenRerank.from_pretrained(
            folder / "retriever", None, corpus, folder / "index", options=IndexOptions("hnsw")
        )


@pytest.mark.parametrize(
    "ids, corpus",
    [(["a", "a", "b"], None), (None, {1: "the sun", "1": "the moon"})],
)
def test_duplicate_doc_ids_are_refused(retriever, ids, corpus):
    from modeling_rq2.retrieval.pipeline import RetrieveThenRerank

    with pytest.raises(ValueError, match=r"doc id '(a|1)' is given twice"):
        if corpus is None:
            RetrieveThenRerank.from_corpus(retriever, ["the sun", "the moon", "cells"], ids)
        else:
            RetrieveThenRerank.from_pretrained(retriever, None, corpus)


def test_shards_resumed_with_the_corpus_in_another_order_are_refused(retriever, tmp_path):
    from modeling_rq2.retrieval.index import encode_corpus_shards

    texts, ids = ["a b", "c d", "e f", "g h"], ["1", "2", "3", "4"]
    encode_corpus_shards(retriever, texts, ids, tmp_path / "shards", shard_size=2)
    with pytest.raises(ValueError, match="holds shards of another encoding"):  # shards are by position
        encode_corpus_shards(retriever, texts[::-1], ids[::-1], tmp_path / "shards", shard_size=2)


def test_a_passage_without_text_is_named_when_an_index_is_built(retriever):
    from modeling_rq2.retrieval.pipeline import RetrieveThenRerank

    with pytest.raises(TypeError, match=r"passage 0 \(id 'a'\) must be a string or a"):
        RetrieveThenRerank.from_pretrained(retriever, None, {"a": {"title": "x"}})  # a KeyError before


@pytest.mark.parametrize("flag", ["--seed", "--heldout_seed"])
def test_a_negative_seed_is_refused_before_anything_loads(train_setup, tmp_path, flag):
    from modeling_rq2.training.config_files import parse_arguments

    from conftest import train_argv

    with pytest.raises(ValueError, match=rf"{flag}: must be in \[0, 2\*\*32\), got -1"):
        parse_arguments(train_argv(train_setup, tmp_path, flag, "-1", "--heldout_queries", "1"))


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"_id": "d9", "title": "", "text": "bad \\ud800 text"}', r"id 'd9': a lone UTF-16 surrogate"),
        ('{"_id": "d9", "text": ' + "[" * 200_000 + "]" * 200_000 + "}", "JSON nested too deeply"),
    ],
)
def test_jsonl_lines_that_json_reads_but_no_text_is_are_named(beir_folder, line, message):
    from modeling_rq2.data import DataFormatError

    from conftest import corrupt_line

    corrupt_line(beir_folder, "corpus.jsonl", 2, line)
    with pytest.raises(DataFormatError, match=f"corpus.jsonl:2: {message}"):
        _load(beir_folder)


def test_config_keys_that_are_not_names_are_refused_and_json_configs_read_as_json(tmp_path):
    from modeling_rq2.training.config_files import parse_arguments

    (tmp_path / "run.yaml").write_text("? [a, b]\n: 1\n")
    with pytest.raises(ValueError, match="run.yaml:1: a key must be an argument name, not a sequence"):
        parse_arguments([str(tmp_path / "run.yaml")])
    (tmp_path / "run.json").write_text('{\n\t"epochs": 2,\n\t"list_size": 5\n}\n')  # tabs: JSON, refused as YAML
    assert parse_arguments([str(tmp_path / "run.json")]).data.list_size == 5
    (tmp_path / "run.json").write_text('{"epochs": 2, "epochs": 3}')
    with pytest.raises(ValueError, match="run.json: 'epochs' given twice"):
        parse_arguments([str(tmp_path / "run.json")])


def test_resuming_with_the_same_folders_spelled_otherwise_is_allowed(checkpointed, train_setup, monkeypatch):
    import os

    from modeling_rq2.training.chain import run_training
    from modeling_rq2.training.config_files import parse_arguments

    argv, checkpoints = checkpointed
    monkeypatch.chdir(train_setup[1].parent)
    relative = [os.path.relpath(a) if a == str(train_setup[1]) else a for a in argv]  # --data as a relative path
    assert relative != argv
    resume = ["--resume_from_checkpoint", str(checkpoints[0]), "--augment_top_n", "7"]  # no augmentation: ignored
    assert run_training(*parse_arguments(relative + resume))["train"]["steps"] == 6


def test_a_fresh_run_over_a_finished_run_of_other_settings_is_refused_unless_overwriting(checkpointed):
    from modeling_rq2.training.chain import run_training
    from modeling_rq2.training.config_files import parse_arguments

    argv, checkpoints = checkpointed
    folder = checkpoints[0].parents[1]
    before = _snapshot(folder / "retriever")
    with pytest.raises(ValueError, match=r"--output_dir: .* holds a run with other settings \(seed 42 -> 7\)"):
        run_training(*parse_arguments(argv + ["--seed", "7"]))
    assert _snapshot(folder / "retriever") == before
    run_training(*parse_arguments(argv + ["--seed", "7", "--overwrite_output_dir", "true"]))
    log = (folder / "train_log.jsonl").read_text().splitlines()
    assert log and [json.loads(line)["step"] for line in log] == sorted(
        {json.loads(line)["step"] for line in log}
    )  # one run's


def test_staging_again_keeps_a_hand_edited_staged_card(trained_run, tmp_path):
    from modeling_rq2.hub.publish import stage_run

    staged = stage_run(trained_run, REPOS, tmp_path / "staged")
    (staged["retriever"] / "README.md").write_text("my own card")
    with pytest.raises(
        ValueError, match=r"retriever: holds 'README.md' that no earlier staging wrote \(or that were edited"
    ):
        stage_run(trained_run, REPOS, tmp_path / "staged")
    assert (staged["retriever"] / "README.md").read_text() == "my own card"


def test_a_grade_beyond_any_integer_type_is_no_judgement(beir_folder):
    from modeling_rq2.data import DataFormatError

    from conftest import corrupt_line

    corrupt_line(beir_folder, "qrels/test.tsv", 2, "q1\td1\t1e300")
    with pytest.raises(DataFormatError, match="test.tsv:2: .*is not an integer grade"):
        _load(beir_folder)


def test_a_run_still_writing_is_not_staged(trained_run, tmp_path):
    from modeling_rq2.hub.publish import stage_run
    from modeling_rq2.training.checkpoints import output_lock

    with output_lock(str(trained_run)):  # as a live run holds it
        with pytest.raises(ValueError, match=r"a run is still writing into it \(pid \d+ on "):
            stage_run(trained_run, REPOS, tmp_path / "staged")
    assert stage_run(trained_run, REPOS, tmp_path / "staged")  # the lock went with the run


def test_few_valued_settings_list_their_choices_in_help_and_a_config_file_is_checked_too(tmp_path, capsys):
    from modeling_rq2.training.config_files import parse_arguments

    with pytest.raises(SystemExit):
        parse_arguments(["--help"])
    help_text = capsys.readouterr().out
    assert "--pooling {cls,mean}" in help_text and "--short_lists {pad,error}" in help_text
    (tmp_path / "run.yaml").write_text("pooling: max\n")  # not through argparse: the settings' own check
    with pytest.raises(ValueError, match=r"--pooling: must be one of \('cls', 'mean'\), got 'max'"):
        parse_arguments([str(tmp_path / "run.yaml")])


def test_a_saved_position_ids_buffer_is_not_taken_for_a_dropped_weight(saved):
    """Folders saved by older transformers hold ``embeddings.position_ids`` (a buffer): the dropped-weights refusal
    must not catch it (transformers leaves it out of the unexpected keys)."""
    from safetensors.torch import load_file, save_file

    path = saved / "retriever" / "model.safetensors"
    state = load_file(path)
    state["query_encoder.embeddings.position_ids"] = torch.arange(128).unsqueeze(0)
    save_file(state, path, metadata={"format": "pt"})
    (saved / "retriever" / "weights.sha256").unlink()
    RQ2Retriever.from_pretrained(saved / "retriever")
