import json
import math
import random

import pytest
import pytrec_eval

from modeling_rq2.evaluation.metrics import evaluate_run, rank, write_trec_run


def test_hand_worked_query():
    qrels = {"q": {"a": 2, "b": 1, "z": 0}}
    run = {"q": {"x": 0.9, "a": 0.8, "y": 0.7, "b": 0.6}}
    means, per_query = evaluate_run(run, qrels, ["mrr@10", "mrr@1", "recall@2", "recall@4", "ndcg@3", "map"])
    assert means["mrr@10"] == 0.5 and means["mrr@1"] == 0.0
    assert means["recall@2"] == 0.5 and means["recall@4"] == 1.0
    assert means["ndcg@3"] == pytest.approx((2 / math.log2(3)) / (2 + 1 / math.log2(3)))
    assert means["map"] == pytest.approx((1 / 2 + 2 / 4) / 2)
    assert per_query["q"]["mrr@10"] == 0.5


def test_relevance_threshold_applies_to_mrr_and_recall_not_ndcg():
    qrels = {"q": {"a": 1, "b": 2}}
    run = {"q": {"a": 2.0, "b": 1.0}}
    means, _ = evaluate_run(run, qrels, ["mrr@10", "recall@1", "ndcg@10"], relevance_threshold=2)
    assert means["mrr@10"] == 0.5 and means["recall@1"] == 0.0
    assert means["ndcg@10"] == evaluate_run(run, qrels, ["ndcg@10"])[0]["ndcg@10"]


def test_queries_missing_from_the_run_count_as_zero():
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}}
    means, _ = evaluate_run({"q1": {"a": 1.0}}, qrels, ["mrr@10"])
    assert means["mrr@10"] == 0.5


def test_ties_break_by_doc_id_descending_like_trec_eval():
    assert rank({"a": 1.0, "c": 1.0, "b": 2.0}) == ["b", "c", "a"]


def test_unknown_metric_is_rejected():
    with pytest.raises(ValueError, match="unknown metric 'precision@5'"):
        evaluate_run({}, {"q": {"a": 1}}, ["precision@5"])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_agrees_with_pytrec_eval(seed):
    rng = random.Random(seed)
    qrels = {f"q{i}": {f"d{rng.randrange(40)}": rng.choice([0, 1, 2, 3]) for _ in range(rng.randint(1, 6))} for i in range(60)}
    # coarse scores make many ties, which both must break the same way
    run = {q: {f"d{j}": round(rng.random(), 1) for j in rng.sample(range(40), 25)} for q in qrels}
    ours, per_query = evaluate_run(run, qrels, ["ndcg@10", "recall@5", "recall@100", "map", "mrr@10"])
    ref = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "recall.5", "recall.100", "map"}).evaluate(run)
    run10 = {q: {d: scores[d] for d in rank(scores)[:10]} for q, scores in run.items()}
    ref_rr = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(run10)
    for ours_name, ref_name, reference in [
        ("ndcg@10", "ndcg_cut_10", ref), ("recall@5", "recall_5", ref), ("recall@100", "recall_100", ref),
        ("map", "map", ref), ("mrr@10", "recip_rank", ref_rr),
    ]:
        for q in qrels:
            assert per_query[q][ours_name] == pytest.approx(reference[q][ref_name], abs=1e-6), (q, ours_name)


def test_trec_run_file_lists_ranked_documents(tmp_path):
    write_trec_run({"q1": {"a": 0.5, "b": 0.9}}, str(tmp_path / "run.trec"), tag="t")
    assert (tmp_path / "run.trec").read_text().splitlines() == ["q1 Q0 b 1 0.9 t", "q1 Q0 a 2 0.5 t"]


def test_evaluate_command_writes_table_json_runs_and_reuses_its_index(beir_folder, retriever, reranker, tmp_path, capsys):
    from modeling_rq2.evaluation.evaluate import main

    retriever.save_pretrained(tmp_path / "r")
    reranker.save_pretrained(tmp_path / "c")
    argv = ["--retriever", str(tmp_path / "r"), "--reranker", str(tmp_path / "c"), "--data", str(beir_folder),
            "--split", "test", "--top_k", "5", "--rerank_top_k", "3", "--fusion", "0.5", "--index_type", "hnsw",
            "--index_dir", str(tmp_path / "index"), "--output_dir", str(tmp_path / "eval")]
    main(argv)
    out = capsys.readouterr().out
    assert "| retriever + reranker@3, fusion 0.5 |" in out
    report = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    per_query = json.loads((tmp_path / "eval" / "per_query.json").read_text())
    assert set(report["results"]) == {"retriever", "retriever + reranker@3", "retriever + reranker@3, fusion 0.5"}
    assert json.loads((tmp_path / "index" / "meta.json").read_text())["options"]["index_type"] == "hnsw"
    # the TREC run file, scored again, gives the reported means
    run = {}
    for line in (tmp_path / "eval" / "run.retriever.trec").read_text().splitlines():
        qid, _, doc, _, score, _ = line.split()
        run.setdefault(qid, {})[doc] = float(score)
    qrels = {"q1": {"d1": 1}, "q2": {"d2": 1}}
    assert evaluate_run(run, qrels)[0] == pytest.approx(report["results"]["retriever"])
    assert per_query["retriever"]["q1"]["ndcg@10"] == evaluate_run(run, qrels)[1]["q1"]["ndcg@10"]
    main(argv)  # second time: the saved index is loaded, same numbers
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["results"] == report["results"]


def test_runs_carry_the_models_scores_and_ties_keep_the_list_order(tmp_path):
    """TREC files held rank-derived scores (len - position); they carry the model's, and trec_eval reads the order."""
    from modeling_rq2.evaluation.metrics import rank
    from modeling_rq2.retrieval.pipeline import to_run

    run = to_run(["q"], [[("z", 2.5), ("a", 2.5), ("m", 1.0)]])  # a tie trec_eval would break by doc id
    assert rank(run["q"]) == ["z", "a", "m"] and run["q"]["z"] == 2.5 and run["q"]["a"] < 2.5 and run["q"]["m"] == 1.0
    write_trec_run(run, str(tmp_path / "run.trec"))
    lines = [line.split() for line in (tmp_path / "run.trec").read_text().splitlines()]
    assert [(doc, float(score)) for _, _, doc, _, score, _ in lines] == list(run["q"].items())


def test_evaluate_precision_reaches_both_models(beir_folder, retriever, reranker, tmp_path, monkeypatch):
    from modeling_rq2.evaluation import evaluate as command

    retriever.save_pretrained(tmp_path / "r")
    reranker.save_pretrained(tmp_path / "c")
    seen = []
    real = command._models

    def spy(args):
        models = real(args)
        seen.extend((model.inference_precision, model.inference_backend) for model in models)
        return models

    monkeypatch.setattr(command, "_models", spy)
    report = command.run_evaluation(
        command.EvaluateArguments(
            retriever=str(tmp_path / "r"), reranker=str(tmp_path / "c"), data=str(beir_folder), top_k=5,
            rerank_top_k=2, precision="bf16", backend="openvino", output_dir=str(tmp_path / "out"),
        )
    )  # fmt: skip
    assert seen == [("bf16", "openvino")] * 2 and report["arguments"]["precision"] == "bf16"
    with pytest.raises(ValueError, match="--precision / --backend: precision must be one of"):
        command.EvaluateArguments(precision="int4")


@pytest.mark.parametrize("native, expected", [(True, "bf16"), (False, "fp32")])
def test_evaluate_defaults_to_auto_and_reports_what_it_computed_in(beir_folder, retriever, tmp_path, monkeypatch,
                                                                   native, expected):
    import modeling_rq2.models.modeling_rq2 as modeling
    from modeling_rq2.evaluation import evaluate as command

    retriever.save_pretrained(tmp_path / "r")
    monkeypatch.setattr(modeling, "native_bf16", lambda device: native)
    args = command.EvaluateArguments(retriever=str(tmp_path / "r"), data=str(beir_folder), top_k=5,
                                     output_dir=str(tmp_path / "out"))  # fmt: skip
    report = command.run_evaluation(args)
    assert args.precision == "auto" and report["precision"] == expected


def test_several_fusion_weights_are_scored_in_one_pass_as_each_alone(beir_folder, retriever, reranker, monkeypatch):
    from modeling_rq2.data import load_data
    from modeling_rq2.evaluation.evaluate import evaluate_retrieval
    from modeling_rq2.evaluation.systems import System
    from modeling_rq2.retrieval.pipeline import RetrieveThenRerank

    data = load_data(str(beir_folder), "test")
    options = {"top_k": 5, "rerank_top_k": 3, "metrics": ["ndcg@10"]}
    passes = []
    original = RetrieveThenRerank.rerank_scores
    monkeypatch.setattr(RetrieveThenRerank, "rerank_scores", lambda *a, **k: passes.append(1) or original(*a, **k))
    together = evaluate_retrieval(retriever, data, reranker, fusion=[0.3, 0.0, 0.7], **options).metrics
    assert len(passes) == 1
    for weight in (0.3, 0.7):
        alone = evaluate_retrieval(retriever, data, reranker, fusion=weight, **options).metrics
        assert together[System.reranked(3, fusion=weight)] == alone[System.reranked(3, fusion=weight)]
    assert len(together) == 4  # the retriever, pure re-ranking, two fused (weight 0 is pure re-ranking)
