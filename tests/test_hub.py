import json
import re
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
    metrics = {"train": {"steps": 3}, "eval": {"dataset": "scifact", "split": "test", "results": RESULTS,
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
    assert card.data.pipeline_tag == "sentence-similarity" and card.data.library_name == "transformers"
    assert card.data.eval_results[0].metric_value == 0.6123 and card.data.eval_results[0].dataset_split == "test"
    reranker_card = ModelCard.load(staged["reranker"] / "README.md")
    assert reranker_card.data.pipeline_tag == "text-ranking"
    # recall@100 of a re-ranked top 20 is the retriever's number: only on the retriever's card
    assert {r.metric_name: r.metric_value for r in reranker_card.data.eval_results} == {"ndcg@10": 0.65, "mrr@10": 0.55}
    assert "recall@100" in {r.metric_name for r in card.data.eval_results}
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
    assert "| BM25 (bm25s) | 0.6620 | 0.6310 |" in card.text and "| ours: retriever | 0.6123 | 0.5000 |" in card.text
    assert "not comparable" in card.text and "CPU (2 cores)" in card.text and "@inproceedings{ren-etal-2021-rocketqav2" in card.text
    assert "![training curve](training_curve.png)" in card.text
    assert (staged["retriever"] / "training_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (run_dir / "retriever" / "training_curve.png").exists()  # staging never writes into the run folder


def _benchmark(path, **changes):
    report = {"data": {"name": "scifact", "eval_split": "test", "queries": 300, "corpus": 5183},
              "settings": {"seeds": [42, 43]}, "machine": {"device": "cpu", "cpus": 2, "torch": "2.13.0"},
              "table": ["| system | nDCG@10 |", "|---|---|", "| ours: retriever | 0.7000 ± 0.0100 |", "",
                        "- ours: joint training, 1 epoch on BM25 lists (the quick start)"]}
    path.write_text(json.dumps({**report, **changes}))
    return path


def test_cards_carry_the_benchmark_table_when_given_one(run_dir, tmp_path):
    report = _benchmark(tmp_path / "quality.json")
    staged = stage_run(run_dir, REPOS, tmp_path / "stage", benchmark=report)
    for role in ("retriever", "reranker"):
        text = ModelCard.load(staged[role] / "README.md").text
        assert "## Benchmark" in text and "| ours: retriever | 0.7000 ± 0.0100 |" in text
        assert "scifact `test` (300 queries, 5183 passages), seeds [42, 43]" in text and "- ours: joint training" in text
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
    del report["table"]
    (tmp_path / "old.json").write_text(json.dumps(report))
    with pytest.raises(ValueError, match=r"old.json: not a bench.quality report \(missing table\)"):
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
