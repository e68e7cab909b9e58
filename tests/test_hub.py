import json
import re
import shutil
from pathlib import Path
from unittest.mock import MagicMock

import numpy as np
import pytest
from huggingface_hub import HfApi, ModelCard

from modeling_rq2 import RQ2Reranker, RQ2Retriever
from modeling_rq2.hub.publish import publish, stage_run

from conftest import run_without_package

REPOS = {"retriever": "me/rq2-retriever", "reranker": "me/rq2-reranker"}
RESULTS = {
    "retriever": {"ndcg@10": 0.61234, "mrr@10": 0.5, "recall@100": 0.9},
    "retriever + reranker@20": {"ndcg@10": 0.65, "mrr@10": 0.55, "recall@100": 0.9},
}


@pytest.fixture
def run_dir(tmp_path, retriever, reranker):
    run = tmp_path / "run"
    retriever.save_pretrained(run / "retriever")
    reranker.save_pretrained(run / "reranker")
    examples = [{"query": "what causes scurvy", "positive": {"title": "Scurvy", "text": "lack of vitamin c"},
                 "negatives": [{"title": "Paris", "text": "capital | of france"}]}]
    metrics = {"train": {"steps": 3, "examples": examples}, "eval": {"dataset": "scifact", "split": "test", "results": RESULTS,
               "baselines": {"BM25 (bm25s)": {"ndcg@10": 0.662, "mrr@10": 0.631, "recall@100": 0.93}}},
               "seconds_total": 9.5, "hardware": {"device": "CPU (2 cores)", "processes": 1}}
    (run / "metrics.json").write_text(json.dumps(metrics))
    config = {"ModelArguments": {"retriever": "default", "reranker": "default"}, "DataArguments": {"data": "scifact", "list_size": 4}}
    (run / "training_config.json").write_text(json.dumps(config))
    (run / "train_log.jsonl").write_text("".join(json.dumps({"step": i, "loss": 3.0 / i, "kl": 0.5 / i}) + "\n" for i in (1, 2, 3)))
    return run


def test_staged_folders_hold_models_code_and_cards(run_dir, tmp_path):
    staged = stage_run(run_dir, REPOS, tmp_path / "stage")
    for role, cls in (("retriever", RQ2Retriever), ("reranker", RQ2Reranker)):
        folder = staged[role]
        for name in ("model.safetensors", "modeling_rq2.py", "configuration_rq2.py", "tokenizer.json", "README.md", "metrics.json"):
            assert (folder / name).is_file(), (role, name)
        assert cls.from_pretrained(folder).tokenizer is not None
    card = ModelCard.load(staged["retriever"] / "README.md")
    assert card.data.pipeline_tag == "sentence-similarity" and card.data.library_name == "sentence-transformers"
    assert card.data.eval_results[0].metric_value == 0.6123 and card.data.eval_results[0].dataset_split == "test"
    reranker_card = ModelCard.load(staged["reranker"] / "README.md")
    assert reranker_card.data.pipeline_tag == "text-ranking"
    # recall@100 of a re-ranked top 20 is the retriever's number: only on the retriever's card
    assert {r.metric_name: r.metric_value for r in reranker_card.data.eval_results} == {"ndcg@10": 0.65, "mrr@10": 0.55}
    assert "recall@100" in {r.metric_name for r in card.data.eval_results}
    assert "me/rq2-retriever" in reranker_card.text  # links its partner


def _snippets(card_text: str, staged: dict) -> dict[str, str]:
    """The card's usage snippets by section, with the repo ids pointing at the staged folders."""
    usage = card_text.split("## Usage")[1].split("## Model details")[0]
    found = {}
    for section in re.split(r"^### ", usage, flags=re.M)[1:]:
        code = re.search(r"```python\n(.*?)```", section, re.S)
        if code:
            found[section.splitlines()[0]] = code.group(1).replace(REPOS["retriever"], str(staged["retriever"])).replace(
                REPOS["reranker"], str(staged["reranker"]))
    return found


def test_every_usage_snippet_of_both_cards_runs_against_the_staged_folders(run_dir, tmp_path):
    """sentence-transformers and transformers snippets in an interpreter without modeling_rq2; the native one with it."""
    staged = stage_run(run_dir, REPOS, tmp_path / "stage")
    for role in ("retriever", "reranker"):
        snippets = _snippets((staged[role] / "README.md").read_text(), staged)
        assert set(snippets) == {"sentence-transformers", "transformers", "modeling_rq2"}, role
        for name in ("sentence-transformers", "transformers"):
            run_without_package(snippets[name], tmp_path)
        exec(compile(snippets["modeling_rq2"], "card-snippet", "exec"), {})
    assert "`modeling_rq2` package installed (`pip install .` in a checkout" in (staged["retriever"] / "README.md").read_text()


def test_publish_creates_repos_and_uploads_each_folder(run_dir, tmp_path):
    staged = stage_run(run_dir, REPOS, tmp_path / "stage")
    api = MagicMock(spec=HfApi)
    publish(staged, REPOS, api=api, token="hf_test", private=True, revision="v1", commit_message="msg")
    assert [c.args[0] for c in api.create_repo.call_args_list] == [REPOS["retriever"], REPOS["reranker"]]
    assert all(c.kwargs["private"] and c.kwargs["exist_ok"] for c in api.create_repo.call_args_list)
    uploads = {c.kwargs["repo_id"]: c.kwargs for c in api.upload_folder.call_args_list}
    assert uploads[REPOS["reranker"]]["folder_path"] == str(staged["reranker"])
    assert uploads[REPOS["retriever"]]["revision"] == "v1" and uploads[REPOS["retriever"]]["commit_message"] == "msg"
    assert api.create_branch.call_count == 2


def test_publish_without_a_token_is_a_clear_error(run_dir, tmp_path, monkeypatch):
    monkeypatch.setattr("modeling_rq2.hub.publish.get_token", lambda: None)
    staged = stage_run(run_dir, REPOS, tmp_path / "stage")
    with pytest.raises(ValueError, match="no Hugging Face token"):
        publish(staged, REPOS, api=MagicMock(spec=HfApi))


def test_bad_inputs_are_named(run_dir, tmp_path):
    with pytest.raises(ValueError, match="bad repo id for the reranker"):
        stage_run(run_dir, {"retriever": "me/ok", "reranker": "not a/valid//id"}, tmp_path / "s")
    with pytest.raises(FileNotFoundError, match="no saved retriever"):
        stage_run(tmp_path / "nowhere", REPOS, tmp_path / "s")
    (run_dir / "metrics.json").unlink()
    with pytest.raises(FileNotFoundError, match="metrics.json: missing"):
        stage_run(run_dir, REPOS, tmp_path / "s")


def test_cards_carry_metadata_baselines_and_the_training_curve(run_dir, tmp_path):
    staged = stage_run(run_dir, REPOS, tmp_path / "stage")
    card = ModelCard.load(staged["retriever"] / "README.md")
    assert card.data.datasets == ["BeIR/scifact"] and card.data.base_model == "sentence-transformers/all-MiniLM-L6-v2"
    assert card.data.license == "cc-by-nc-2.0" and card.data.language == "en"
    # the base model's apache-2.0 and the data's CC BY-NC 2.0 both stated, the more restrictive in the metadata
    assert "`apache-2.0`" in card.text and "(scifact) is under `cc-by-nc-2.0`" in card.text
    assert card.data.eval_results[0].task_type == "text-retrieval" and card.data.eval_results[0].task_name == "Retrieval"
    assert "| BM25 (bm25s) | 0.6620 | 0.6310 |" in card.text and "| this retriever | 0.6123 | 0.5000 |" in card.text
    assert "re-ranker on the retriever's top 20" not in card.text  # the re-ranker's rows are on its own card
    assert "not comparable" in card.text and "CPU (2 cores)" in card.text and "@inproceedings{ren-etal-2021-rocketqav2" in card.text
    assert "![training curve](training_curve.png)" in card.text
    assert (staged["retriever"] / "training_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (run_dir / "retriever" / "training_curve.png").exists()  # staging never writes into the run folder


def _spreads(ndcg, std=0.0):
    return {m: {"mean": ndcg, "std": std} for m in ("ndcg@10", "recall@100")}


def _benchmark(path, **changes):
    summaries = {
        "bm25": {"rows": {"BM25": _spreads(0.66)}, "seeds": 1, "train_seconds": {"mean": 0.0, "std": 0.0}},
        "ours_1_epoch": {"rows": {"retriever": _spreads(0.70, 0.01), "retriever + reranker@20": _spreads(0.72)},
                         "seeds": 2, "train_seconds": {"mean": 2400.0, "std": 3.0}}}
    report = {"data": {"name": "scifact", "eval_split": "test", "queries": 300, "corpus": 5183},
              "settings": {"seeds": [42, 43], "rerank_top_k": 20}, "machine": {"device": "cpu", "cpus": 2, "torch": "2.13.0"},
              "summaries": summaries, "titles": {"bm25": "BM25", "ours_1_epoch": "RocketQAv2 joint, 1 epoch (ours)"}}
    path.write_text(json.dumps({**report, **changes}))
    return path


def test_cards_carry_the_benchmark_table_when_given_one(run_dir, tmp_path):
    report = _benchmark(tmp_path / "quality.json")
    staged = stage_run(run_dir, REPOS, tmp_path / "stage", benchmark=report)
    retriever, reranker = (ModelCard.load(staged[role] / "README.md").text.split("## Benchmark")[1] for role in REPOS)
    # display titles, not job names; each card only the rows (and columns) of its model
    assert "| RocketQAv2 joint, 1 epoch (ours) | 0.7000 ± 0.0100 | 0.7000 ± 0.0100 | 2 | 2400 |" in retriever
    assert "| BM25 | 0.6600 |" in retriever and "reranker@20" not in retriever and "ours_1_epoch" not in retriever
    assert "| RocketQAv2 joint, 1 epoch (ours), re-ranking its retriever's top 20 | 0.7200 | 2 | 2400 |" in reranker
    assert "| BM25 |" not in reranker and "recall@100" not in reranker.split("## Training")[0]
    for role in REPOS:
        assert "scifact `test` (300 queries, 5183 passages), seeds [42, 43]" in ModelCard.load(staged[role] / "README.md").text
        assert json.loads((staged[role] / "benchmark.json").read_text()) == json.loads(report.read_text())
    plain = stage_run(run_dir, REPOS, tmp_path / "plain")
    assert "## Benchmark" not in ModelCard.load(plain["retriever"] / "README.md").text


def test_a_bad_benchmark_report_is_named(run_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.json: no such benchmark report"):
        stage_run(run_dir, REPOS, tmp_path / "s", benchmark=tmp_path / "nope.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with pytest.raises(ValueError, match="broken.json: not JSON"):
        stage_run(run_dir, REPOS, tmp_path / "s", benchmark=broken)
    report = json.loads(_benchmark(tmp_path / "old.json").read_text())
    del report["summaries"]
    (tmp_path / "old.json").write_text(json.dumps(report))
    with pytest.raises(ValueError, match=r"old.json: not a bench.quality report \(missing summaries\)"):
        stage_run(run_dir, REPOS, tmp_path / "s", benchmark=tmp_path / "old.json")


def test_push_command_dry_run_never_prints_or_writes_the_token(run_dir, tmp_path, capsys):
    from push_to_hub import main

    main(["--run_dir", str(run_dir), "--retriever_repo", REPOS["retriever"], "--reranker_repo", REPOS["reranker"],
          "--dry-run", "--local-dir", str(tmp_path / "stage"), "--token", "hf_SECRET_value",
          "--benchmark", str(_benchmark(tmp_path / "quality.json"))])
    out = capsys.readouterr()
    assert "dry run" in out.out and "hf_SECRET_value" not in out.out + out.err and "benchmark.json" in out.out
    assert not [p for p in (tmp_path / "stage").rglob("*") if p.is_file() and b"hf_SECRET_value" in p.read_bytes()]


def test_staged_folders_load_in_sentence_transformers_with_the_same_outputs(run_dir, tmp_path, retriever, reranker):
    from sentence_transformers import CrossEncoder, SentenceTransformer

    staged = stage_run(run_dir, REPOS, tmp_path / "stage")
    queries, passages = ["what causes scurvy", "the sun"], ["scurvy is caused by low vitamin c", "paris is in france"]
    st = SentenceTransformer(str(staged["retriever"]), device="cpu")
    assert np.allclose(st.encode_query(queries), retriever.encode_queries(queries), atol=1e-5)
    assert np.allclose(st.encode_document(passages), retriever.encode_passages(passages), atol=1e-5)
    cross = CrossEncoder(str(staged["reranker"]), device="cpu")
    pairs = list(zip(queries, passages))
    assert np.allclose(cross.predict(pairs), reranker.score_pairs(pairs), atol=1e-5)
    assert RQ2Retriever.from_pretrained(staged["retriever"]).config.pooling == retriever.config.pooling


def test_staged_folders_load_without_the_package(run_dir, tmp_path, retriever, reranker):
    """A user without modeling_rq2: transformers with trust_remote_code, and sentence-transformers, on the staged folders."""
    staged = stage_run(run_dir, REPOS, tmp_path / "stage")
    queries, passages = ["what causes scurvy", "the sun"], ["scurvy is caused by low vitamin c", "paris is in france"]
    np.save(tmp_path / "q.npy", retriever.encode_queries(queries))
    np.save(tmp_path / "s.npy", reranker.score_pairs(list(zip(queries, passages))))
    script = f"""
import numpy as np
from transformers import AutoModel
from sentence_transformers import CrossEncoder, SentenceTransformer
expected_q, expected_s = np.load({str(tmp_path / "q.npy")!r}), np.load({str(tmp_path / "s.npy")!r})
r = AutoModel.from_pretrained({str(staged["retriever"])!r}, trust_remote_code=True)
np.testing.assert_allclose(r.encode_queries({queries!r}), expected_q, atol=1e-5)
np.testing.assert_allclose(SentenceTransformer({str(staged["retriever"])!r}).encode_query({queries!r}), expected_q, atol=1e-5)
cross = CrossEncoder({str(staged["reranker"])!r}, trust_remote_code=True)
np.testing.assert_allclose(cross.predict({list(zip(queries, passages))!r}), expected_s, atol=1e-5)
print("ok")
"""
    assert run_without_package(script, tmp_path).strip().endswith("ok")


def test_cards_detail_the_model_and_its_training(run_dir, tmp_path, retriever, reranker):
    staged = stage_run(run_dir, REPOS, tmp_path / "stage")
    text = ModelCard.load(staged["retriever"] / "README.md").text
    details = text.split("## Model details")[1].split("##")[0]
    assert f"| Output | {retriever.config.encoder_config.hidden_size}-dimensional embeddings |" in details
    assert f"| Similarity | `{retriever.config.similarity}` |" in details and f"| Pooling | `{retriever.config.pooling}` |" in details
    assert f"queries {retriever.config.query_max_length}, passages {retriever.config.passage_max_length} tokens" in details
    assert f"| Parameters | {sum(p.numel() for p in retriever.parameters()) / 1e6:.1f}M |" in details
    assert "PyTorch " in details and "Transformers " in details and "modeling_rq2 " in details
    reranker_text = ModelCard.load(staged["reranker"] / "README.md").text
    assert f"| Parameters | {sum(p.numel() for p in reranker.parameters()) / 1e6:.1f}M |" in reranker_text
    training = text.split("## Training\n")[1]
    assert "| learning rates | retriever 2e-05, re-ranker 5e-05 (its new head 0.001) |" in training
    assert "| passages a list | 4 (1 positive) |" in training and "| seed | 42 |" in training
    assert "[Ren et al., 2021](https://arxiv.org/abs/2110.07367)" in training
    assert "| what causes scurvy | Scurvy — lack of vitamin c | Paris — capital \\| of france |" in training  # pipe escaped


def test_no_staged_text_file_holds_an_absolute_local_path(run_dir, tmp_path, retriever):
    from modeling_rq2.models.loading import default_backbone_path

    backbone = tmp_path / "my-backbone"  # a backbone from a local folder, named by its path in the model and the run
    retriever.config.encoder_config._name_or_path = str(backbone)
    retriever.save_pretrained(run_dir / "retriever")
    config = json.loads((run_dir / "training_config.json").read_text())
    config["ModelArguments"]["retriever"] = str(backbone)
    (run_dir / "training_config.json").write_text(json.dumps(config))
    staged = stage_run(run_dir, REPOS, tmp_path / "stage")
    assert retriever.config.encoder_config._name_or_path == str(backbone)  # the model in memory keeps it
    local = [str(tmp_path), str(Path.cwd()), default_backbone_path(), str(Path.home())]
    for folder in staged.values():
        for path in folder.rglob("*"):
            if path.suffix in (".json", ".md", ".py", ".jsonl", ".txt"):
                text = path.read_text(encoding="utf-8")
                assert not [p for p in local if p in text], path


def _mock_api(tmp_path, *, has_card=False):
    """A mocked HfApi whose upload_folder keeps a copy of what it was given (the folder is temporary)."""
    api = MagicMock(spec=HfApi)
    api.create_repo.side_effect = lambda repo_id, **kwargs: MagicMock(repo_id=repo_id)
    api.file_exists.return_value = has_card
    api.upload_folder.side_effect = lambda **kwargs: shutil.copytree(kwargs["folder_path"], tmp_path / "uploaded") and "commit"
    return api


@pytest.mark.parametrize("role", ["retriever", "reranker"])
def test_model_push_to_hub_uploads_what_push_to_hub_py_stages(role, tmp_path, monkeypatch, retriever, reranker):
    model = retriever if role == "retriever" else reranker
    api = _mock_api(tmp_path)
    monkeypatch.setattr("modeling_rq2.hub.publish.HfApi", lambda: api)
    assert model.push_to_hub("me/solo", private=True, tags=["mine"]) == "commit"
    assert api.create_repo.call_args.kwargs["private"] is True
    assert api.upload_folder.call_args.kwargs["repo_id"] == "me/solo"
    uploaded = tmp_path / "uploaded"
    for name in ("model.safetensors", "modeling_rq2.py", "configuration_rq2.py", "tokenizer.json", "README.md",
                 "config_sentence_transformers.json", "modules.json"):
        assert (uploaded / name).is_file(), name
    card = ModelCard.load(uploaded / "README.md")
    assert card.data.library_name == "sentence-transformers" and "mine" in card.data.tags
    assert "## Model details" in card.text
    assert "model.push_to_hub" in card.text and "## Results" not in card.text  # no numbers it did not measure
    snippets = _snippets(card.text.replace("me/solo", str(uploaded)), {"retriever": uploaded, "reranker": uploaded})
    run_without_package(snippets["sentence-transformers"], tmp_path)


def test_model_push_to_hub_keeps_the_card_a_repo_already_has(tmp_path, monkeypatch, retriever):
    api = _mock_api(tmp_path, has_card=True)
    monkeypatch.setattr("modeling_rq2.hub.publish.HfApi", lambda: api)
    retriever.push_to_hub("me/solo")
    assert not (tmp_path / "uploaded" / "README.md").exists() and (tmp_path / "uploaded" / "modules.json").is_file()


def test_the_bundled_backbone_is_recorded_by_its_hub_id():
    from modeling_rq2.hub.model_card import hub_base_model
    from modeling_rq2.models.loading import DEFAULT_BACKBONE_ID, load_retriever

    model = load_retriever("default")
    assert model.config.encoder_config._name_or_path == DEFAULT_BACKBONE_ID == hub_base_model(DEFAULT_BACKBONE_ID)
    assert hub_base_model("/some/folder") is None and hub_base_model("model") is None


def test_the_committed_benchmark_report_renders_with_display_names():
    from modeling_rq2.hub.model_card import benchmark_section, load_benchmark

    report = load_benchmark(Path(__file__).resolve().parents[1] / "bench" / "results" / "quality.json")
    retriever, reranker = benchmark_section(report, "retriever"), benchmark_section(report, "reranker")
    assert "| RocketQAv2 joint training, 3 epochs (ours, default) | 0.7333 |" in retriever
    assert "| sentence-transformers CrossEncoder, re-ranking its retriever's top 20 |" in reranker
    assert not [name for name in report["summaries"] if f"| {name}" in retriever + reranker]  # no job names


def test_a_pushed_models_card_claims_no_training_it_has_no_record_of(tmp_path, retriever):
    """model.push_to_hub's card: no 'trained jointly' / 'fine-tuned on one collection' claims, the base model's
    licence stated as such, and the data's licence (when the uploader names it) decides the metadata."""
    from modeling_rq2.hub.model_card import render_model_card
    from modeling_rq2.models.loading import DEFAULT_BACKBONE_ID

    retriever.config.encoder_config._name_or_path = DEFAULT_BACKBONE_ID
    card = render_model_card(retriever, "me/solo")
    assert card.data.license == "apache-2.0" and "trained **jointly**" not in card.text
    assert "no record of how this model was trained" in card.text and "Fine-tuned on one collection" not in card.text
    assert "The base model's licence is `apache-2.0`." in card.text and "the more restrictive" not in card.text
    assert "no record of the data the model was trained on" in card.text
    card = render_model_card(retriever, "me/solo", data_license="cc-by-nc-2.0", datasets=["BeIR/scifact"])
    assert card.data.license == "cc-by-nc-2.0" and card.data.datasets == ["BeIR/scifact"]
    assert "(BeIR/scifact) is under `cc-by-nc-2.0`" in card.text and "`cc-by-nc-2.0` (the more restrictive" in card.text


def test_cards_state_the_lengths_the_model_reads(tiny_tokenizer, tmp_path):
    """A length beyond the encoder's position embeddings (128 here) is capped by the model; the card said 160."""
    from modeling_rq2.hub.model_card import render_model_card

    from conftest import tiny_reranker, tiny_retriever

    card = render_model_card(tiny_reranker(tiny_tokenizer, max_length=160), "me/rr")
    assert "| Maximum length | query + passage 128 tokens |" in card.text and "160" not in card.text
    card = render_model_card(tiny_retriever(tiny_tokenizer, query_max_length=32, passage_max_length=512), "me/r")
    assert "| Maximum length | queries 32, passages 128 tokens |" in card.text


def test_card_lengths_with_no_known_limit_are_the_configured_ones():
    from modeling_rq2.hub.model_card import lengths_as_used

    config = {"encoder_config": {}, "query_max_length": 32, "passage_max_length": 256}
    assert lengths_as_used(config, None) == config  # min() of one value crashed
