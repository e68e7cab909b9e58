import json
import re
from unittest.mock import MagicMock

import pytest
from huggingface_hub import HfApi, ModelCard

from modeling_rq2 import RQ2Reranker, RQ2Retriever
from modeling_rq2.hub import publish, stage_run

REPOS = {"retriever": "me/rq2-retriever", "reranker": "me/rq2-reranker"}
RESULTS = {
    "retriever": {"ndcg@10": 0.61234, "mrr@10": 0.5},
    "retriever + reranker@20": {"ndcg@10": 0.65, "mrr@10": 0.55},
}


@pytest.fixture
def run_dir(tmp_path, retriever, reranker):
    run = tmp_path / "run"
    retriever.save_pretrained(run / "retriever")
    reranker.save_pretrained(run / "reranker")
    metrics = {"train": {"steps": 3}, "eval": {"dataset": "scifact", "split": "test", "results": RESULTS}, "seconds_total": 9.5}
    (run / "metrics.json").write_text(json.dumps(metrics))
    (run / "training_config.json").write_text(json.dumps({"DataArguments": {"list_size": 4}}))
    return run


def test_staged_folders_hold_models_code_and_cards(run_dir, tmp_path):
    staged = stage_run(run_dir, REPOS, tmp_path / "stage")
    for role, cls in (("retriever", RQ2Retriever), ("reranker", RQ2Reranker)):
        folder = staged[role]
        for name in ("model.safetensors", "modeling_rq2.py", "configuration_rq2.py", "tokenizer.json", "README.md", "metrics.json"):
            assert (folder / name).is_file(), (role, name)
        assert cls.from_pretrained(folder).tokenizer is not None
    card = ModelCard.load(staged["retriever"] / "README.md")
    assert card.data.pipeline_tag == "sentence-similarity" and card.data.library_name == "transformers"
    assert card.data.eval_results[0].metric_value == 0.6123 and card.data.eval_results[0].dataset_split == "test"
    reranker_card = ModelCard.load(staged["reranker"] / "README.md")
    assert reranker_card.data.pipeline_tag == "text-ranking"
    assert {r.metric_name: r.metric_value for r in reranker_card.data.eval_results} == {"ndcg@10": 0.65, "mrr@10": 0.55}
    assert "me/rq2-retriever" in reranker_card.text  # links its partner


def test_card_usage_snippet_runs_against_the_staged_folders(run_dir, tmp_path):
    staged = stage_run(run_dir, REPOS, tmp_path / "stage")
    text = (staged["retriever"] / "README.md").read_text()
    snippet = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    snippet = snippet.replace(REPOS["retriever"], str(staged["retriever"])).replace(REPOS["reranker"], str(staged["reranker"]))
    exec(compile(snippet, "card-snippet", "exec"), {})


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
    monkeypatch.setattr("modeling_rq2.hub.get_token", lambda: None)
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
