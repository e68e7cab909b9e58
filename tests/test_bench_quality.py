"""The quality benchmark's bookkeeping: results that survive the machine (the ledger), jobs that read another
job's models, the dev split every choice is made on, and how paired differences are called."""

import argparse
import json
from pathlib import Path

import pytest
import torch

from bench.quality import runner
from bench.quality.__main__ import parse_args
from bench.quality.report import paired_delta
from bench.quality.runner import ledger_path, ours_config, run_job, sources


def _args(tmp_path: Path, **extra) -> argparse.Namespace:
    args = parse_args(["--output", str(tmp_path / "out" / "quality"), "--threads", "1", *extra.pop("argv", [])])
    for key, value in extra.items():
        setattr(args, key, value)
    return args


@pytest.fixture
def spawned(monkeypatch) -> list[str]:
    """Stand-in for the job subprocess: records the job and writes the result a child would."""
    calls = []

    def spawn(key: str, folder: Path, threads: int) -> None:
        calls.append(key)
        config = json.loads((folder / "job.json").read_text(encoding="utf-8"))
        models = folder / "run" / "reranker"
        models.mkdir(parents=True, exist_ok=True)
        (models / "config.json").write_text("{}", encoding="utf-8")
        ndcg = 0.5 + 0.01 * len(calls)  # each run's numbers differ, as a rerun's may on another machine
        result = {"rows": {"retriever": {"ndcg@10": ndcg}}, "train_seconds": 1.0, "eval_seconds": 1.0}
        if config.get("system") == "st_crossencoder":
            result["rows"]["retriever + reranker@20"] = {"ndcg@10": ndcg}
        if "wise_ft" in config:
            result["wise_ft"] = {f"{w:g}": {"in_domain": {}, "out_of_domain": {}} for w in config["wise_ft"]}
        elif "out_of_domain" in config:
            result["out_of_domain"] = {"med": {"retriever": {"ndcg@10": ndcg}}}
        elif "source" in config:
            result["fusions"] = {f"retriever + reranker@20, fusion {w:g}": {"ndcg@10": ndcg} for w in config["fusions"]}
        (folder / "result.json").write_text(json.dumps({**result, "config": config}), encoding="utf-8")

    monkeypatch.setattr(runner, "_spawn", spawn)
    return calls


def _config(args: argparse.Namespace, name: str, seed: int = 42) -> dict:
    return ours_config(args, runner._common(args, args.data), name, seed)


def test_finished_job_lands_in_the_ledger_and_another_machine_reuses_it(tmp_path, spawned):
    args = _args(tmp_path)
    config = _config(args, "ours_1_epoch")
    first = run_job("ours_1_epoch-seed42", config, tmp_path / "work_a", args)
    assert spawned == ["ours_1_epoch-seed42"]
    entry = ledger_path(Path(args.ledger), "ours_1_epoch-seed42")
    assert json.loads(entry.read_text(encoding="utf-8"))["config"] == config
    # another machine: an empty work folder, the committed ledger
    again = run_job("ours_1_epoch-seed42", config, tmp_path / "work_b", args)
    assert spawned == ["ours_1_epoch-seed42"] and again == first


def test_ledger_entry_of_other_settings_runs_the_job_again(tmp_path, spawned):
    args = _args(tmp_path)
    run_job("ours_1_epoch-seed42", _config(args, "ours_1_epoch"), tmp_path / "work_a", args)
    changed = {**_config(args, "ours_1_epoch"), "fusion": 0.3}
    run_job("ours_1_epoch-seed42", changed, tmp_path / "work_b", args)
    assert spawned == ["ours_1_epoch-seed42"] * 2
    assert json.loads(ledger_path(Path(args.ledger), "ours_1_epoch-seed42").read_text())["config"]["fusion"] == 0.3


def test_static_reruns_its_teacher_where_only_the_teachers_ledger_entry_is_left(tmp_path, spawned):
    args = _args(tmp_path)
    static = _config(args, "static")
    assert sources(static) == [("ours_1_epoch-seed42", _config(args, "ours_1_epoch"))]
    first = run_job("ours_1_epoch-seed42", _config(args, "ours_1_epoch"), tmp_path / "work_a", args)
    # on a fresh machine the teacher's result is in the ledger but its models are not: it runs again first
    run_job("static-seed42", static, tmp_path / "work_b", args)
    assert spawned == ["ours_1_epoch-seed42", "ours_1_epoch-seed42", "static-seed42"]
    assert (tmp_path / "work_b" / "ours_1_epoch-seed42" / "run" / "reranker" / "config.json").is_file()
    # the rerun only rebuilt the models: the numbers reported stay the ledger's, on both machines
    again = run_job("ours_1_epoch-seed42", _config(args, "ours_1_epoch"), tmp_path / "work_b", args)
    assert again["rows"] == first["rows"]
    assert json.loads(ledger_path(Path(args.ledger), "ours_1_epoch-seed42").read_text())["rows"] == first["rows"]


def test_out_of_domain_is_a_job_of_its_own_and_leaves_the_trained_jobs_key_alone(tmp_path, spawned):
    args = _args(tmp_path, argv=["--out_of_domain", "/data/med"])
    config = _config(args, "ours_1_epoch")
    assert config == _config(_args(tmp_path), "ours_1_epoch")
    run = run_job("ours_1_epoch-seed42", config, tmp_path / "work", args)
    runner._out_of_domain(args, tmp_path / "work", {"ours_1_epoch": {"seeds": {42: run}}})
    assert spawned == ["ours_1_epoch-seed42", "ours_1_epoch-seed42-ood"]
    assert run["out_of_domain"] == {"med": {"retriever": {"ndcg@10": 0.52}}}
    ood = json.loads(ledger_path(Path(args.ledger), "ours_1_epoch-seed42-ood").read_text())["config"]
    source = {"folder": "ours_1_epoch-seed42", "config": config}
    assert ood == {"source": source, "out_of_domain": ["/data/med"], "fusions": [0.25, 0.5, 0.75, 0.9]}


def test_fusion_weights_are_a_job_of_their_own_for_systems_with_a_reranker_only(tmp_path, spawned):
    args = _args(tmp_path, argv=["--fusions", "0.75", "0.25"])
    config = _config(args, "ours_1_epoch")
    assert config == _config(_args(tmp_path), "ours_1_epoch")
    run = run_job("ours_1_epoch-seed42", config, tmp_path / "work", args)
    zeroshot = {"seeds": {None: {"key": "zeroshot", "config": {}}}}
    biencoder = {"seeds": {42: {"key": "st_biencoder-lr2e-05-ep3-seed42", "config": {}}}}
    systems = {"zeroshot": zeroshot, "st_biencoder": biencoder, "ours_1_epoch": {"seeds": {42: run}}}
    runner._fusions(args, tmp_path / "work", systems)  # retrievers alone have nothing to fuse
    assert spawned == ["ours_1_epoch-seed42", "ours_1_epoch-seed42-fusions"]
    assert set(run["fusions"]) == {"retriever + reranker@20, fusion 0.25", "retriever + reranker@20, fusion 0.75"}
    scored = json.loads(ledger_path(Path(args.ledger), "ours_1_epoch-seed42-fusions").read_text())["config"]
    assert scored == {"source": {"folder": "ours_1_epoch-seed42", "config": config}, "fusions": [0.25, 0.75]}


def test_fusion_job_scores_the_trained_models_on_the_evaluation_split(tmp_path, beir_folder, retriever, reranker):
    from bench.quality.jobs import recipe, run_job_function

    source = tmp_path / "work" / "ours_1_epoch-seed42"
    retriever.save_pretrained(source / "run" / "retriever")
    reranker.save_pretrained(source / "run" / "reranker")
    data = {"path": str(beir_folder), "train_split": "train", "eval_split": "test"}
    config = {"data": data, "lengths": recipe(), "top_k": 5, "batch_size": 4, "system": "ours_1_epoch"}
    config |= {"rerank_top_k": 3, "fusion": 0.5}
    job = {"source": {"folder": source.name, "config": config}, "fusions": [0.0, 1.0]}
    rows = run_job_function(job, tmp_path / "work" / "ours_1_epoch-seed42-fusions")["fusions"]
    assert set(rows) == {
        "retriever",
        "retriever + reranker@3",
        "retriever + reranker@3, fusion 0.5",
        "retriever + reranker@3, fusion 1",
    }
    # fusion 1 is the retriever's own order of the head: its nDCG@10 equals the retriever's on these 2 queries
    assert rows["retriever + reranker@3, fusion 1"]["ndcg@10"] == pytest.approx(rows["retriever"]["ndcg@10"])
    # an out-of-domain job of the same models: scored on the collection's test split, at its own fusion weights
    ood = {"source": job["source"], "out_of_domain": [str(beir_folder)], "fusions": [0.25]}
    scored = run_job_function(ood, tmp_path / "work" / "ours_1_epoch-seed42-ood")["out_of_domain"]
    assert list(scored) == ["tiny"] and "retriever + reranker@3, fusion 0.25" in scored["tiny"]
    assert scored["tiny"]["retriever"] == rows["retriever"]


def test_wise_ft_is_a_job_of_its_own_for_our_runs_and_needs_collections_to_choose_on(tmp_path, spawned):
    with pytest.raises(SystemExit, match="--wise_ft: its weight is chosen out of domain"):
        _args(tmp_path, argv=["--wise_ft", "0.5"])
    with pytest.raises(SystemExit, match=r"weights must be in \[0, 1\]"):
        _args(tmp_path, argv=["--wise_ft", "1.5", "--out_of_domain", "/data/cacm"])
    with pytest.raises(SystemExit, match="--wise_ft: interpolates our retrievers"):
        _args(tmp_path, argv=["--wise_ft", "0.5", "--out_of_domain", "/data/cacm", "--systems", "bm25", "zeroshot"])
    args = _args(tmp_path, argv=["--wise_ft", "0.75", "0.5", "--out_of_domain", "/data/med", "/data/cacm"])
    config = _config(args, "ours_1_epoch")
    assert config == _config(_args(tmp_path), "ours_1_epoch")  # the trained job's key stays
    run = run_job("ours_1_epoch-seed42", config, tmp_path / "work", args)
    biencoder = {"seeds": {42: {"key": "st_biencoder-lr2e-05-ep3-seed42", "config": {}}}}
    runner._wise_ft(args, tmp_path / "work", {"st_biencoder": biencoder, "ours_1_epoch": {"seeds": {42: run}}})
    assert spawned == ["ours_1_epoch-seed42", "ours_1_epoch-seed42-wise_ft"]
    assert set(run["wise_ft"]) == {"0.5", "0.75"}
    scored = json.loads(ledger_path(Path(args.ledger), "ours_1_epoch-seed42-wise_ft").read_text())["config"]
    source = {"folder": "ours_1_epoch-seed42", "config": config}
    assert scored == {"source": source, "wise_ft": [0.5, 0.75], "out_of_domain": ["/data/cacm", "/data/med"]}


def test_wise_ft_job_scores_the_interpolated_retriever_in_and_out_of_domain(
    tmp_path, beir_folder, retriever, reranker, monkeypatch
):
    from bench.quality.jobs import recipe, run_job_function

    from conftest import tiny_retriever

    monkeypatch.chdir(tmp_path)  # the trained retriever names its backbone folder as a saved one does: "backbone"
    tiny_retriever(retriever.tokenizer, pooling="mean").save_pretrained(tmp_path / "backbone")
    source = tmp_path / "work" / "ours_1_epoch-seed42"
    torch.manual_seed(3)
    with torch.no_grad():
        for weight in retriever.parameters():
            weight.add_(torch.randn_like(weight) * 0.5)  # trained away from the backbone
    retriever.config.encoder_config._name_or_path = "backbone"
    retriever.save_pretrained(source / "run" / "retriever")
    reranker.save_pretrained(source / "run" / "reranker")
    data = {"path": str(beir_folder), "train_split": "train", "eval_split": "test"}
    config = {"data": data, "lengths": recipe(), "top_k": 5, "batch_size": 4, "system": "ours_1_epoch"}
    config |= {"rerank_top_k": 3, "fusion": 0.5}
    folder = tmp_path / "work"
    job = {"source": {"folder": source.name, "config": config}, "wise_ft": [0.0, 1.0], "out_of_domain": [str(beir_folder)]}
    grid = run_job_function(job, folder / "ours_1_epoch-seed42-wise_ft")["wise_ft"]
    assert set(grid) == {"0", "1"}
    rows = run_job_function({"source": job["source"], "fusions": []}, folder / "ours_1_epoch-seed42-fusions")["fusions"]
    assert grid["1"]["in_domain"] == rows and grid["1"]["out_of_domain"]["tiny"] == rows  # weight 1: as trained
    backbone = {**job["source"], "folder": "backbone-job"}
    (folder / "backbone-job" / "run").mkdir(parents=True)
    (folder / "backbone-job" / "run" / "retriever").symlink_to(tmp_path / "backbone")
    (folder / "backbone-job" / "run" / "reranker").symlink_to(source / "run" / "reranker")
    zero = run_job_function({"source": backbone, "fusions": []}, folder / "backbone-job-fusions")["fusions"]
    assert grid["0"]["in_domain"] == zero != rows  # weight 0: the backbone's retriever, with the job's re-ranker


def test_fusion_choice_is_the_best_ranking_on_the_split_scored_with_its_margin_over_the_jobs_own_weight():
    from bench.quality.report import fusion_choices

    spread = lambda values: {"mean": sum(values) / len(values), "std": 0.0}
    fused = lambda w: f"retriever + reranker@20, fusion {w}"
    ours = {"retriever": spread([0.70]), "retriever + reranker@20": spread([0.68]), fused(0.5): spread([0.72])}
    ours[fused(0.75)] = spread([0.73, 0.74])
    cross = {"retriever": spread([0.69]), fused(0.5): spread([0.60])}
    summaries = {
        "ours": {"rows": {}, "seeds": 3, "fusions": ours, "fusion_seeds": 2},
        "st_crossencoder": {"rows": {}, "seeds": 1, "fusions": cross, "fusion_seeds": 1},
        "st_biencoder": {"rows": {"retriever": {"ndcg@10": spread([0.69])}}, "seeds": 1},
    }
    chosen = {c["system"]: c for c in fusion_choices(summaries, "dev", True, 0.5)}
    assert chosen["ours"]["best"] == fused(0.75) and chosen["ours"]["choice"] and chosen["ours"]["seeds"] == 2
    assert chosen["ours"]["margin_over_own"] == pytest.approx(0.015)
    assert chosen["st_crossencoder"]["best"] == "retriever"  # its bi-encoder alone beats its fusion
    assert "st_biencoder" not in chosen


def test_fusion_weights_out_of_range_are_refused_before_any_job(tmp_path):
    with pytest.raises(SystemExit, match=r"weights must be in \[0, 1\]"):
        _args(tmp_path, argv=["--fusions", "0.5", "1.5"])
    config = _config(_args(tmp_path), "ours_1_epoch")
    assert runner.fusions_config("k", config, [0.75, 0.25, 0.75])["fusions"] == [0.25, 0.75]


def test_a_killed_peer_job_resumes_from_its_last_complete_epoch_and_other_settings_start_afresh(tmp_path, monkeypatch):
    from bench.quality import jobs

    args = _args(tmp_path)
    config = {**runner._common(args, args.data), "system": "st_biencoder", "seed": 42, "lr": 2e-5, "epochs": 3}
    folder = tmp_path / "work" / "st_biencoder-seed42"
    seen = []

    def spawn(key: str, job: Path, threads: int) -> None:  # the job: resumes where the killed one saved an epoch
        class Trainer:
            def train(self, resume_from_checkpoint=None):
                seen.append(resume_from_checkpoint)

        class Model:
            def save(self, path: str) -> None:
                Path(path).mkdir()

        resumed = jobs._train_resumable(Trainer(), job)
        jobs._save_trained(Model(), job)
        (job / "result.json").write_text(json.dumps({"rows": {}, "resumed": resumed, "config": config}))

    monkeypatch.setattr(runner, "_spawn", spawn)
    (folder / "trainer" / "checkpoint-204").mkdir(parents=True)  # the second epoch's, complete
    (folder / "trainer" / "checkpoint-204" / "trainer_state.json").write_text("{}")
    (folder / "trainer" / "checkpoint-306").mkdir()  # killed while the third epoch's was written
    (folder / "job.json").write_text(json.dumps(config))
    assert run_job("st_biencoder-seed42", config, tmp_path / "work", args)["resumed"]
    assert seen == [str(folder / "trainer" / "checkpoint-204")]
    assert (folder / "model").is_dir() and not (folder / "trainer").exists()  # the checkpoints go once it is saved
    (folder / "result.json").unlink()
    (folder / "trainer" / "checkpoint-204").mkdir(parents=True)
    (folder / "trainer" / "checkpoint-204" / "trainer_state.json").write_text("{}")
    other = {**config, "lr": 5e-5}  # a checkpoint of other settings is never resumed
    assert not run_job("st_biencoder-seed42", other, tmp_path / "work", args)["resumed"] and seen[1] is None


def test_a_report_at_another_reranker_length_says_so_in_its_heading():
    from bench.quality.report import report_title

    report = {"data": {"name": "scifact", "eval_split": "test", "queries": 300, "corpus": 5183}}
    heading = report_title({**report, "settings": {"seeds": [42], "reranker_max_length": 256}})
    assert heading.endswith("seeds [42], re-rankers at 256 tokens (the recipe's: 128)")
    assert report_title({**report, "settings": {"seeds": [42], "reranker_max_length": 128}}).endswith("seeds [42]")


def test_train_seconds_leave_out_a_resumed_run_which_timed_only_its_rest():
    from bench.quality.report import summarise

    run = lambda seconds, resumed: {  # noqa: E731
        "rows": {"retriever": {m: 0.7 for m in ("ndcg@10", "mrr@10", "recall@10", "recall@100")}},
        "train_seconds": seconds,
        "eval_seconds": 10.0,
        "details": {"resumed": resumed},
    }
    summary = summarise({"seeds": {42: run(1000.0, False), 43: run(300.0, True), 44: run(1100.0, False)}})
    assert summary["train_seconds"]["min"] == 1000.0 and summary["train_seconds"]["mean"] == 1050.0
    assert summary["train_seconds_of"] == "the 2 not resumed" and summary["eval_seconds"]["mean"] == 10.0
    alone = summarise({"seeds": {42: run(300.0, True)}})
    assert alone["train_seconds"]["min"] == 300.0 and alone["train_seconds_of"] == "resumed runs only (the part after)"
    assert "train_seconds_of" not in summarise({"seeds": {42: run(1000.0, False)}})


def test_cached_only_starts_nothing_not_even_a_teacher(tmp_path, spawned):
    args = _args(tmp_path, cached_only=True)
    assert run_job("static-seed42", _config(args, "static"), tmp_path / "work", args) is None
    assert spawned == []


def test_dev_split_holds_training_queries_out_and_never_names_the_test_split(tmp_path):
    args = _args(tmp_path, argv=["--dev_queries", "100", "--dev_seed", "3"])
    path = runner.prepare_data(args, tmp_path / "work")
    from modeling_rq2.data import load_beir

    rest, dev = load_beir(path, "train_rest"), load_beir(path, "dev")
    train = load_beir("scifact", "train")
    assert (args.train_split, args.eval_split) == ("train_rest", "dev")
    assert len(dev.queries) == 100 and len(rest.queries) == len(train.queries) - 100
    assert not set(dev.queries["_id"]) & set(rest.queries["_id"])
    assert "test" not in {p.stem for p in (Path(path) / "qrels").iterdir()}
    data = runner._common(args, path)["data"]
    assert (data["dev_queries"], data["dev_seed"]) == (100, 3)
    assert runner.prepare_data(_args(tmp_path, argv=["--dev_queries", "100", "--dev_seed", "3"]), tmp_path / "work") == path


def test_data_path_inside_the_repository_is_relative(tmp_path):
    inside = runner.ROOT / "outputs" / "bench" / "x" / "data" / "scifact"
    assert runner._portable(inside) == "outputs/bench/x/data/scifact"
    assert runner._portable(tmp_path) == str(tmp_path.resolve())


@pytest.mark.parametrize(
    ("deltas", "verdict"),
    [
        ([0.010, 0.012, 0.011], "better"),
        ([-0.010, -0.012, -0.011], "worse"),
        ([0.010, -0.008, 0.001], "inside the seed spread"),
        ([0.02], "one seed"),
    ],
)
def test_paired_delta_is_called_a_difference_only_outside_the_seed_spread(deltas, verdict):
    delta = paired_delta(deltas)
    assert delta["verdict"] == verdict
    assert delta["mean"] == pytest.approx(sum(deltas) / len(deltas))
    if len(deltas) > 1:  # the interval's half width is t(0.975, n-1) * std / sqrt(n)
        low, high = delta["interval"]
        assert (high - low) / 2 == pytest.approx(4.302653 * delta["std"] / 3**0.5, rel=1e-5)


def test_default_settings_keep_the_keys_jobs_had_before_those_settings_existed(tmp_path):
    # the settings every job shared before --backend, --dev_queries and --out_of_domain were added
    before = {
        "data": {
            "source": "scifact",
            "path": "scifact",
            "train_split": "train",
            "eval_split": "test",
            "eval_queries": None,
            "corpus_limit": None,
            "max_train_queries": None,
        },
        "top_k": 100,
        "batch_size": 64,
    }
    plain = runner._common(_args(tmp_path), "scifact")
    assert {k: v for k, v in plain.items() if k != "lengths"} == before
    openvino = runner._common(_args(tmp_path, argv=["--backend", "openvino"]), "scifact")
    assert openvino == {**plain, "backend": "openvino"}


def test_reranker_length_is_every_jobs_setting_and_reaches_ours_and_a_levers_flags_still_win(tmp_path):
    from bench.quality.jobs import _rq2_argv, recipe
    from modeling_rq2.training.config_files import parse_arguments

    plain = runner._common(_args(tmp_path), "scifact")
    assert plain["lengths"] == recipe()  # the default keeps every ledger entry's key
    args = _args(tmp_path, argv=["--reranker_max_length", "256"])
    longer = _config(args, "ours_1_epoch")
    assert longer["lengths"] == {**recipe(), "reranker_max_length": 256} and longer != _config(_args(tmp_path), "ours_1_epoch")
    model_args = parse_arguments([*_rq2_argv(longer, tmp_path), *longer["flags"]])[0]
    assert model_args.reranker_max_length == 256  # ours trains and scores its re-ranker at the benchmark's length
    lever = _config(args, "reranker_length_512")
    assert parse_arguments([*_rq2_argv(lever, tmp_path), *lever["flags"]])[0].reranker_max_length == 512


def test_our_jobs_train_and_score_in_fp32_unless_the_systems_flags_ask_for_bf16(tmp_path):
    """Whatever the defaults or the processor: every ledger entry of ours so far trained and scored in fp32."""
    from bench.quality.jobs import _rq2_argv
    from modeling_rq2.training.config_files import parse_arguments

    def precisions(system: str) -> tuple[str, str]:
        config = _config(_args(tmp_path), system)
        training = parse_arguments([*_rq2_argv(config, tmp_path), *config["flags"]]).training
        return training.mixed_precision, training.precision

    assert precisions("ours") == ("no", "fp32")
    assert precisions("ours_bf16") == ("bf16", "bf16")


def test_rows_measured_at_another_reranker_length_than_the_recipes_are_titled_with_it(tmp_path):
    from bench.quality.jobs import recipe
    from bench.quality.report import display_titles

    assert recipe()["reranker_max_length"] == 128  # the recipe's (train.py's default)
    longer = _args(tmp_path, argv=["--reranker_max_length", "256"])
    runs = lambda args, name: {"seeds": {42: {"config": _config(args, name)}}}  # noqa: E731
    titles = display_titles(
        {
            "zeroshot": {"seeds": {None: {"config": {"lengths": recipe()}}}},
            "ours": runs(longer, "ours"),  # configs/scifact-best.yaml
            "ours_1_epoch": runs(_args(tmp_path), "ours_1_epoch"),
            "reranker_length_256": runs(_args(tmp_path), "reranker_length_256"),  # its own length, in its title
            "reranker_length_512": runs(longer, "reranker_length_512"),  # its flag wins over the benchmark's
            "st_biencoder": {"seeds": {42: {"config": {"lengths": {"reranker_max_length": 256}}}}},  # no re-ranker
        }
    )
    assert titles == {
        "zeroshot": "all-MiniLM-L6-v2, zero-shot",
        "ours": "RocketQAv2 joint training, 3 epochs (ours, default), re-ranker at 256 tokens",
        "ours_1_epoch": "RocketQAv2 joint training, 1 epoch (ours)",
        "reranker_length_256": "lever: the re-ranker reads 256 tokens",
        "reranker_length_512": "lever: the re-ranker reads 512 tokens",
        "st_biencoder": "sentence-transformers bi-encoder (MNRL)",
    }


def test_jobs_without_a_reranker_keep_their_keys_at_another_reranker_length(tmp_path):
    from bench.quality.runner import ce_points, st_points

    plain, longer = _args(tmp_path), _args(tmp_path, argv=["--reranker_max_length", "256"])
    common = {args.reranker_max_length: runner._common(args, "scifact") for args in (plain, longer)}
    assert st_points(longer, common[256], 42) == st_points(plain, common[128], 42)  # one bi-encoder grid for both
    assert runner.at_recipe_length(common[256]) == runner.at_recipe_length(common[128]) == common[128]
    biencoder = {"best": "st_biencoder-lr2e-05-ep3", "seeds": {42: {"config": {}}}}
    cross = {n: ce_points(a, common[n], biencoder, 42) for n, a in ((128, plain), (256, longer))}
    assert all(point["lengths"]["reranker_max_length"] == 256 for point in cross[256].values())
    assert cross[256] != cross[128]


def test_the_crossencoder_peer_runs_at_its_own_length_beside_our_recipe_and_the_report_says_so(tmp_path, spawned):
    from bench.quality.jobs import METRICS
    from bench.quality.report import comparisons, display_titles, report_title, summarise

    grid = ["--st_lrs", "2e-5", "--st_epochs", "3", "--ce_losses", "listnet", "--ce_epochs", "3"]
    args = _args(tmp_path, argv=["--systems", "st_crossencoder", "ours", "--peer_reranker_max_length", "256", *grid])
    systems = runner.run_systems(args, tmp_path / "work", "scifact")
    peer_job = "st_crossencoder-listnet-lr5e-05-ep3-rl256-seed42"
    assert spawned == ["st_biencoder-lr2e-05-ep3-seed42", peer_job, "ours-seed42"]
    titles = display_titles(systems)
    assert titles["st_crossencoder"] == "sentence-transformers CrossEncoder, re-ranker at 256 tokens"
    assert titles["ours"] == "RocketQAv2 joint training, 3 epochs (ours, default)"
    report = {"data": {"name": "scifact", "eval_split": "test", "queries": 300, "corpus": 5183}}
    heading = report_title({**report, "settings": vars(args)})
    assert heading.endswith("seeds [42], the CrossEncoder peer's at 256 tokens")
    reranked = "retriever + reranker@20"
    systems["ours"]["seeds"][42]["rows"][reranked] = {"ndcg@10": 0.6}
    for system in systems.values():  # every metric, as a real job writes them
        for result in system["seeds"].values():
            result["rows"] = {row: dict.fromkeys(METRICS, v["ndcg@10"]) for row, v in result["rows"].items()}
    summaries = {name: summarise(system) for name, system in systems.items()}
    found = comparisons(summaries, systems, titles, rerank_top_k=20, fusion=0.5)
    versus = next(c for c in found if c["kind"].startswith("retrieve-then-rerank"))
    assert versus["titles"]["peer"] == f"{titles['st_crossencoder']}: {reranked}"  # the lengths shown side by side
    # a run of the peer at 256 as the benchmark's length finds the same job: nothing trains again
    again = _args(tmp_path, argv=["--systems", "st_crossencoder", "--reranker_max_length", "256", *grid])
    runner.run_systems(again, tmp_path / "work", "scifact")
    assert spawned == ["st_biencoder-lr2e-05-ep3-seed42", peer_job, "ours-seed42"]


def test_runs_at_two_reranker_lengths_keep_apart_jobs_and_ledger_entries(tmp_path, spawned):
    from bench.quality.jobs import _reuse_stages, our_key

    plain, longer = _args(tmp_path), _args(tmp_path, argv=["--reranker_max_length", "256"])
    for args in (plain, longer, plain):  # the second run at 128 finds its jobs: nothing trains again
        for name in ("ours", "static", "reranker_length_256"):
            run_job(our_key(name, _config(args, name)), _config(args, name), tmp_path / "work", args)
    assert spawned == [
        "ours-seed42", "ours_1_epoch-seed42", "static-seed42", "reranker_length_256-seed42",
        "ours-rl256-seed42", "ours_1_epoch-rl256-seed42", "static-rl256-seed42",  # the lever sets its own length
    ]
    ledger = {path.stem for path in Path(plain.ledger).glob("*.json")}
    assert {"ours-seed42", "ours-rl256-seed42", "static-seed42", "static-rl256-seed42"} <= ledger
    chain = _config(longer, "denoise_0.3_0.7")  # its warm-up is the one-epoch job of the same length
    warm = tmp_path / "work" / "ours_1_epoch-rl256-seed42" / "run"
    (warm / "retriever").mkdir()
    (warm / "metrics.json").write_text("{}")
    reused = _reuse_stages(chain, tmp_path / "work" / our_key("denoise_0.3_0.7", chain))
    assert reused["job"] == "ours_1_epoch-rl256-seed42"


def test_the_benchmarks_preset_is_configs_scifact_best_and_its_default_the_quick_start():
    from dataclasses import asdict

    from bench.quality.systems import SYSTEMS
    from modeling_rq2.training.config_files import parse_arguments

    root = Path(__file__).resolve().parents[1]
    for name, preset in (("ours", "scifact"), ("ours_best", "scifact-best")):
        from_file = parse_arguments([str(root / "configs" / f"{preset}.yaml")])
        benchmarked = parse_arguments(["--output_dir", f"outputs/{preset}", *SYSTEMS[name].flags])
        assert [asdict(a) for a in benchmarked] == [asdict(b) for b in from_file], name


def test_every_system_of_ours_is_accepted_by_train_py_and_changes_its_baseline_by_adding_flags():
    from bench.quality.systems import SYSTEMS
    from modeling_rq2.training.config_files import parse_arguments

    for name, system in SYSTEMS.items():
        if system.job != "rq2":
            continue
        teacher = ["--reranker", "/nonexistent/teacher"] if system.teacher else []
        parse_arguments(["--output_dir", "/nonexistent/out", *system.flags, *teacher])
        if system.baseline:
            base = SYSTEMS[system.baseline].flags
            assert system.flags[: len(base)] == base, name
            assert len(system.flags) > len(base), name


def _summary(seeds: int, ood: dict[str, dict[str, float]]) -> dict:
    spread = lambda v: {"mean": v, "std": 0.0}
    return {
        "seeds": seeds,
        "rows": {row: {} for rows in ood.values() for row in rows},
        "out_of_domain": {c: {row: spread(v) for row, v in rows.items()} for c, rows in ood.items()},
    }


def test_out_of_domain_goals_compare_with_zero_shot_and_with_the_systems_own_retriever():
    from bench.quality.report import out_of_domain_checks

    fused = "retriever + reranker@20, fusion 0.5"
    summaries = {
        "zeroshot": _summary(1, {"cacm": {"retriever": 0.42}}),
        "ours": _summary(3, {"cacm": {"retriever": 0.405, "retriever + reranker@20": 0.43, fused: 0.40}}),
    }
    checks = {(c["system"], c["row"]): c for c in out_of_domain_checks(summaries)}
    assert checks[("ours", "retriever")]["delta"] == pytest.approx(-0.015)
    assert not checks[("ours", "retriever")]["met"]  # more than 1 point below zero-shot
    assert checks[("ours", "retriever + reranker@20")]["met"]
    assert not checks[("ours", fused)]["met"]  # re-ranking below its own retriever
    assert ("zeroshot", "retriever") not in checks


def test_goals_need_three_seeds_and_the_reranker_strictly_above_its_retriever():
    from bench.quality.report import goals

    spread = lambda v: {m: {"mean": v, "std": 0.0} for m in ("ndcg@10",)}
    rows = {"retriever": spread(0.78), "retriever + reranker@20": spread(0.78), "retriever + reranker@20, fusion 0.5": spread(0.81)}
    found = {g["goal"]: g for g in goals({"ours": {"rows": rows, "seeds": 3}}, full_scifact=True)}
    assert found["retriever"]["met"] and found["retrieve-then-rerank"]["met"] and found["retriever"]["applies"]
    assert not found["re-ranker alone above its retriever"]["met"]  # level is not above
    one_seed = goals({"ours": {"rows": rows, "seeds": 1}}, full_scifact=True)
    assert not any(g["applies"] for g in one_seed)


@pytest.mark.integration
def test_mined_peer_never_mines_a_claims_other_gold_passage_as_a_negative(tmp_path):
    from bench.quality.jobs import _mined_columns

    folder = tmp_path / "tiny"
    docs = {
        "g1": "Vitamin D deficiency raises the risk of bone fractures in elderly adults.",
        "g2": "Low vitamin D levels are linked to more fractures in older people.",
        **{f"n{i}": f"Vitamin D and bone health study number {i} with unrelated results." for i in range(6)},
    }
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": d, "title": "", "text": t}) + "\n" for d, t in docs.items()), encoding="utf-8"
    )
    (folder / "queries.jsonl").write_text(
        json.dumps({"_id": "q1", "text": "Vitamin D deficiency increases fracture risk."}) + "\n", encoding="utf-8"
    )
    (folder / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\nq1\tg1\t1\nq1\tg2\t1\n", encoding="utf-8")
    config = {
        "data": {"path": str(folder), "train_split": "train"},
        "lengths": {"train_passage_max_length": 64, "list_size": 4},
        "batch_size": 8,
        "mining": {"range_max": 8, "relative_margin": 0.0, "sampling_strategy": "top"},
    }
    gold = docs["g1"]
    columns, report = _mined_columns(config, ["Vitamin D deficiency increases fracture risk."], [[gold]])
    negatives = [columns[f"negative_{j}"][0] for j in (1, 2, 3)]
    assert columns["positive"] == [gold] and report["rows"] == 1
    assert not any("Low vitamin D levels" in n for n in negatives)


def _run(seed: int, ndcg: dict[str, float], steps: int = 102) -> dict:
    from bench.quality.jobs import recipe

    metrics = lambda v: {"ndcg@10": v, "mrr@10": v, "recall@10": v, "recall@100": v}
    return {
        "rows": {row: metrics(v) for row, v in ndcg.items()},
        "train_seconds": 100.0,
        "eval_seconds": 10.0,
        "details": {"train": {"steps": steps}},
        "config": {"seed": seed, "lengths": recipe()},
    }


def test_report_pairs_ablations_and_peers_by_seed_and_marks_what_one_seed_cannot_tell(tmp_path):
    from bench.quality.report import build_report, markdown

    fused = "retriever + reranker@20, fusion 0.5"
    base = {s: _run(s, {"retriever": 0.70 + d, fused: 0.72 + d}) for s, d in ((42, 0.0), (43, 0.004), (44, -0.003))}
    static = {s: _run(s, {"retriever": r["rows"]["retriever"]["ndcg@10"] - 0.01, fused: 0.72}) for s, r in base.items()}
    for run in (base[42], base[43]):  # scored at --fusions too, two of the three seeds
        run["fusions"] = {"retriever": run["rows"]["retriever"]}
        run["fusions"] |= {fused: {"ndcg@10": 0.72}, "retriever + reranker@20, fusion 0.75": {"ndcg@10": 0.73}}
    peer = {42: {**_run(42, {"retriever": 0.69}), "details": {"steps": 153}}}
    systems = {
        "st_biencoder": {"seeds": peer, "grid": {"st_biencoder-lr2e-05-ep3-seed42": peer[42]}, "best": "x",
                         "selected_on": "test"},
        "kl_whole_run": {"seeds": base},
        "static": {"seeds": static},
        "ours_1_epoch": {"seeds": {42: _run(42, {"retriever": 0.69})}},
        "reranker_lr_1e-4": {"seeds": {42: _run(42, {"retriever": 0.695})}},  # a lever: paired as the ablations
    }  # fmt: skip
    args = _args(tmp_path, argv=["--seeds", "42", "43", "44"])
    report = build_report(args, "scifact", systems)
    text = markdown(report)
    assert "- static vs kl_whole_run, seeds 42, 43, 44: retriever -0.0100 ± 0.0000" in text
    assert "(95% [-0.0100, -0.0100]: worse)" in text
    assert "retriever + reranker@20, fusion 0.5 -0.0003" in text and "inside the seed spread" in text
    assert (
        "- RocketQAv2 joint training, 1 epoch (ours), retriever vs best peer retriever (sentence-transformers "
        "bi-encoder (MNRL): retriever)" in text
    )
    assert "scored on test, nDCG@10; the best is a reading of test, not a choice" in text
    assert "- kl_whole_run (2 seeds): retriever 0.7020 ± 0.0028; " in text
    assert "best: **retriever + reranker@20, fusion 0.75** (+0.0100 over the job's own weight)" in text
    assert "paired by seed: nDCG@10 +0.0000 (one seed)" in text
    assert "- reranker_lr_1e-4 vs ours_1_epoch, seeds 42: retriever +0.0050 (one seed)" in text
    assert "reranker_lr_1e-4" in report["ablations"] and "reranker_lr_1e-4" not in {g["system"] for g in report["goals"]}
    assert report["summaries"]["st_biencoder"]["steps"] == 153 and report["summaries"]["static"]["steps"] == 102
    assert all(not g["applies"] for g in report["goals"])  # one seed of ours_1_epoch
    from bench.quality.report import train_seconds

    assert train_seconds(report["summaries"], "static") == 200.0  # its epoch and its teacher's (ours_1_epoch)
    assert train_seconds(report["summaries"], "kl_whole_run") == 100.0


def test_wise_ft_weight_is_the_largest_within_the_goal_on_one_collection_with_the_trained_one_as_weight_1():
    from bench.quality.report import _wise_ft_lines, summarise, wise_ft_choices

    fused = "retriever + reranker@20, fusion 0.5"
    ndcg = lambda v: {"ndcg@10": v}  # noqa: E731
    scored = lambda d, c, m: {  # noqa: E731
        "in_domain": {"retriever": ndcg(d), fused: ndcg(d + 0.03)},
        "out_of_domain": {"cacm": {"retriever": ndcg(c), fused: ndcg(c)}, "med": {"retriever": ndcg(m), fused: ndcg(m)}},
    }
    trained = lambda c, m: {  # noqa: E731  (a run's own out-of-domain rows: more fusion weights than the grid's)
        name: {"retriever": ndcg(v), fused: ndcg(v), "retriever + reranker@20, fusion 0.9": ndcg(0.1)}
        for name, v in (("cacm", c), ("med", m))
    }
    metrics = lambda v: {m: v for m in ("ndcg@10", "mrr@10", "recall@10", "recall@100")}  # noqa: E731
    run = lambda seed, ood: {  # noqa: E731
        "rows": {"retriever": metrics(0.74), fused: metrics(0.77)},
        "train_seconds": 1.0,
        "eval_seconds": 1.0,
        "wise_ft": {"0.5": scored(0.70, 0.44 + seed / 1000, 0.77), "0.75": scored(0.73, 0.425, 0.78)},
        **({"out_of_domain": trained(0.41, 0.77)} if ood else {}),
    }
    both = summarise({"seeds": {42: run(0, True), 43: run(2, True)}})
    assert both["wise_ft_seeds"] == 2 and list(both["wise_ft"]) == ["0.5", "0.75", "1"]
    assert both["wise_ft"]["0.5"]["out_of_domain"]["cacm"]["retriever"]["mean"] == pytest.approx(0.441)
    assert both["wise_ft"]["1"]["out_of_domain"]["med"] == {"retriever": {"mean": 0.77, "std": 0.0}, fused: {"mean": 0.77, "std": 0.0}}
    assert list(summarise({"seeds": {42: run(0, True), 43: run(2, False)}})["wise_ft"]) == ["0.5", "0.75"]  # same seeds

    spread = lambda v: {"mean": v, "std": 0.0}  # noqa: E731
    zeroshot = {"rows": {}, "seeds": 1, "out_of_domain": {"cacm": {"retriever": spread(0.43)}, "med": {"retriever": spread(0.776)}}}
    (choice,) = wise_ft_choices({"zeroshot": zeroshot, "ours": both}, None)
    assert (choice["chosen_on"], choice["weight"]) == ("cacm", 0.75)  # 0.425 is within a point of 0.43; 1 is not
    assert wise_ft_choices({"zeroshot": zeroshot, "ours": both}, "med")[0]["weight"] == 1.0  # 0.77 is within a point
    (alone,) = wise_ft_choices({"ours": both}, None)
    assert (alone["weight"], alone["rule"]) == (0.5, "the best retriever, zero-shot not scored")
    with pytest.raises(SystemExit, match=r"--ood_choose_on: '../shared/data/med' is none of the collections scored \(cacm, med\)"):
        wise_ft_choices({"ours": both}, "../shared/data/med")
    text = "\n".join(_wise_ft_lines([choice]))
    assert "ours (2 seeds), chosen on cacm as the largest weight within 0.01 of zero-shot: **0.75**" in text
    assert "| 1 | 0.7400 / 0.7700 | 0.4100 / 0.4100 | 0.7700 / 0.7700 |" in text
    assert "| zero-shot retriever | - | 0.4300 | 0.7760 |" in text


def test_fusion_weight_is_chosen_on_one_collection_and_reported_on_the_other():
    from bench.quality.report import ood_choices

    rows = lambda r, a, b: {"retriever": r, "retriever + reranker@20": a, "retriever + reranker@20, fusion 0.75": b}
    ours = _summary(3, {"cacm": rows(0.42, 0.44, 0.48), "med": rows(0.79, 0.74, 0.785)})
    cross = _summary(3, {"cacm": {"retriever + reranker@20": 0.40}, "med": {"retriever + reranker@20": 0.80}})
    biencoder = _summary(3, {"cacm": {"retriever": 0.43}, "med": {"retriever": 0.78}})
    summaries = {"ours": ours, "st_crossencoder": cross, "st_biencoder": biencoder}
    chosen = {c["system"]: c for c in ood_choices(summaries, None)}
    assert chosen["ours"]["row"] == "retriever + reranker@20, fusion 0.75" and chosen["ours"]["chosen_on"] == "cacm"
    assert chosen["ours"]["reported"] == {"med": {"value": 0.785, "retriever": 0.79}}
    # the CrossEncoder's retriever is its bi-encoder's: on CACM the retriever alone wins, and so it is reported
    assert chosen["st_crossencoder"]["row"] == "retriever"
    assert chosen["st_crossencoder"]["reported"] == {"med": {"value": 0.78, "retriever": 0.78}}
    assert "st_biencoder" not in chosen  # nothing to choose
    assert ood_choices(summaries, "med")[0]["row"] == "retriever"


def test_readmes_quality_table_is_the_committed_reports():
    from bench.quality.report import README_BEGIN, README_END, readme_table

    root = Path(__file__).resolve().parents[1]
    report = json.loads((root / "bench" / "results" / "quality-seeds.json").read_text(encoding="utf-8"))
    readme = (root / "README.md").read_text(encoding="utf-8")
    block = readme[readme.index(README_BEGIN) : readme.index(README_END) + len(README_END)]
    assert block.splitlines() == readme_table(report["summaries"], report["titles"]) == report["readme_table"]


def _finished_job(folder: Path, config: dict, stages: dict[str, int]) -> None:
    """A finished chain job's folder: result.json, and each stage's models and metrics (its optimizer steps)."""
    for stage, steps in stages.items():
        stage_folder = folder / "run" / stage
        for model in ("retriever", "reranker"):
            (stage_folder / model).mkdir(parents=True)
            (stage_folder / model / "model.safetensors").write_bytes(b"weights")
        (stage_folder / "metrics.json").write_text(json.dumps({"train": {"steps": steps}}), encoding="utf-8")
    (folder / "run" / "augmented").mkdir()
    (folder / "run" / "augmented" / "augmentation_report.json").write_text("{}", encoding="utf-8")
    (folder / "result.json").write_text(json.dumps({"config": config, "train_seconds": 100.0}), encoding="utf-8")


def test_second_augmentation_round_starts_from_the_finished_one_round_chain(tmp_path):
    """ours_augmented_2_rounds trains round 2 only: the one-round chain of the same settings and seed is its warm-up,
    augmented lists and round 1 (models hard-linked, not copied), its steps and seconds counted in."""
    from bench.quality import jobs

    args = _args(tmp_path)
    chain, two = _config(args, "ours_augmented"), _config(args, "ours_augmented_2_rounds")
    _finished_job(tmp_path / "ours_augmented-seed42", chain, {"warmup": 5, ".": 7})
    run = tmp_path / "ours_augmented_2_rounds-seed42" / "run"
    (run / "round-1").mkdir(parents=True)  # a round 1 the chain left unfinished is replaced
    assert jobs._reuse_stages(two, run.parent) == {"job": "ours_augmented-seed42", "train_seconds": 100.0}
    source = tmp_path / "ours_augmented-seed42" / "run" / "retriever" / "model.safetensors"
    assert (run / "round-1" / "retriever" / "model.safetensors").stat().st_ino == source.stat().st_ino
    assert (run / "augmented" / "augmentation_report.json").is_file()
    assert jobs._stage_steps(run) == 5 + 7
    (run / "round-2.partial").mkdir()  # a staging folder is not a stage
    assert jobs._stage_steps(run) == 5 + 7
    assert jobs._reuse_stages(two, run.parent)["job"] == "ours_augmented-seed42"  # resumed: still credited

    other_settings = {**two, "fusion": 0.7}
    assert jobs._reuse_stages(other_settings, tmp_path / "elsewhere") is None
    own = tmp_path / "own" / "run" / "warmup"  # a job with a finished stage of its own is not mixed with another's
    own.mkdir(parents=True)
    (own / "metrics.json").write_text(json.dumps({"train": {"steps": 5}}), encoding="utf-8")
    assert jobs._reuse_stages(two, own.parents[1]) is None and not (own.parent / "round-1").exists()


def test_denoising_threshold_levers_start_from_the_one_epoch_warm_up(tmp_path):
    """A chain lever that changes only what comes after the warm-up trains no warm-up of its own."""
    from bench.quality import jobs

    args = _args(tmp_path)
    _finished_job(tmp_path / "ours_1_epoch-seed42", _config(args, "ours_1_epoch"), {".": 6})
    lever = _config(args, "denoise_0.3_0.7")
    assert lever["flags"][-4:] == ["--negative_below", "0.3", "--positive_above", "0.7"]
    run = tmp_path / "denoise_0.3_0.7-seed42" / "run"
    assert jobs._reuse_stages(lever, run.parent) == {"job": "ours_1_epoch-seed42", "train_seconds": 100.0}
    assert (run / "warmup" / "reranker" / "model.safetensors").is_file() and jobs._stage_steps(run) == 6


def test_the_figure_draws_retrievers_apart_from_reranked_rankings_and_the_peers_and_recipes_apart_from_ablations(
    tmp_path,
):
    from bench.quality.figure import points, write_figure
    from bench.quality.report import build_report

    reranked, fused = "retriever + reranker@20", "retriever + reranker@20, fusion 0.5"
    systems = {
        "zeroshot": {"seeds": {None: _run(0, {"retriever": 0.65})}},
        "ours": {"seeds": {42: _run(42, {"retriever": 0.73, reranked: 0.72, fused: 0.77}, steps=306)}},
        "ours_1_epoch": {"seeds": {42: _run(42, {"retriever": 0.69, reranked: 0.66, fused: 0.71})}},
        "list_size_8": {"seeds": {42: _run(42, {"retriever": 0.70, reranked: 0.68, fused: 0.72})}},
    }
    report = build_report(_args(tmp_path), "scifact", systems)
    found = {(p["system"], p["kind"]): p for p in points(report)}
    assert {key: (p["panel"], p["group"]) for key, p in found.items() if key[0] != "ours_1_epoch"} == {
        ("zeroshot", "retriever"): ("retriever", "peer"),
        ("ours", "retriever"): ("retriever", "ours"),
        ("ours", "reranked"): ("retrieve-then-rerank", "ours"),
        ("ours", "fused"): ("retrieve-then-rerank", "ours"),
        ("list_size_8", "retriever"): ("retriever", "ablation"),
        ("list_size_8", "reranked"): ("retrieve-then-rerank", "ablation"),
        ("list_size_8", "fused"): ("retrieve-then-rerank", "ablation"),
    }
    assert found[("ours", "fused")]["ndcg"] == 0.77 and found[("ours", "fused")]["minutes"] == pytest.approx(100 / 60)
    assert write_figure(report, tmp_path / "quality.png").stat().st_size > 0
