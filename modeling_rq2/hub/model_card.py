"""Model cards for trained RQ2 models: metadata (with model-index) and a body built from a run's files.

Everything a card states comes from the run folder: ``metrics.json`` (measured results, baselines
of the same run, hardware, time), ``training_config.json`` (the recipe) and ``train_log.jsonl``
(the training curve, drawn to ``training_curve.png`` beside the weights). A published card can also carry
a benchmark report of ``bench.quality`` (ours beside the peers, measured in one run).
"""

import json
from importlib import resources
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from ..evaluation.metrics import parse_metric
from ..evaluation.systems import System, find, markdown_table
from ..training.arguments import RunConfig

ROLES = ("retriever", "reranker")
CURVE_FILE = "training_curve.png"
BENCHMARK_FILE = "benchmark.json"
_BENCHMARK_KEYS = ("data", "settings", "machine", "table")
_ROLE_METADATA = {
    "retriever": {
        "pipeline_tag": "sentence-similarity",
        "tags": ["feature-extraction", "dense-retrieval", "sentence-transformers"],
    },
    "reranker": {"pipeline_tag": "text-ranking", "tags": ["cross-encoder", "re-ranking", "sentence-transformers"]},
}
_BACKBONES = {"default": "sentence-transformers/all-MiniLM-L6-v2"}
_HUB_DATASETS = {"scifact": "BeIR/scifact", "msmarco": "BeIR/msmarco", "nq": "BeIR/nq"}
_LICENSES = {"scifact": "cc-by-nc-2.0"}


def changed_by_reranking(metric: str, depth: int) -> bool:
    """Whether re-ordering the top ``depth`` can change ``metric``: Recall@k and Success@k with k >= depth count the
    same passages whatever their order (the retriever's numbers, not the re-ranker's)."""
    kind, cutoff = parse_metric(metric)
    return not (kind in ("recall", "success") and cutoff is not None and cutoff >= depth)


def _metric_system(role: str, results: dict) -> str | None:
    """The evaluated system (its name in metrics.json) whose numbers belong on this model's card: the retriever's
    own ranking, or for the re-ranker its pure re-ranking of the retriever's top k."""
    return find(results, "retriever" if role == "retriever" else "reranked")


def load_benchmark(path: str | Path) -> dict:
    """A ``bench.quality`` report (OUTPUT.json), checked to hold what the card's benchmark section shows."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no such benchmark report (python -m bench.quality writes bench/results/quality.json)"
        )
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not JSON ({err})") from None
    missing = [key for key in _BENCHMARK_KEYS if not isinstance(report, dict) or key not in report]
    if missing:
        raise ValueError(
            f"{path}: not a bench.quality report (missing {', '.join(missing)}); rerun python -m bench.quality"
        )
    return report


def benchmark_section(report: dict) -> str:
    """The benchmark's table with what it was measured on: data, seeds, machine."""
    data, machine = report["data"], report["machine"]
    seeds = report["settings"].get("seeds")
    header = (
        f"Measured by `python -m bench.quality` on {data['name']} `{data['eval_split']}` ({data['queries']} queries, "
        f"{data['corpus']} passages), seeds {seeds} (mean ± standard deviation where several), "
        f"on {machine.get('device')} "
        f"({machine.get('cpus')} cores, torch {machine.get('torch')}). Every system starts from the same backbone and "
        "trains on the same lists; the peers are sentence-transformers models tuned on a small grid. Seconds are wall "
        "time on that machine, which other jobs may have shared."
    )
    return "\n".join([header, "", *report["table"]])


def plot_training_curve(log_file: str | Path, png_file: str | Path) -> bool:
    """Draw the logged losses against the optimizer step into ``png_file``; False when nothing was logged."""
    log_file = Path(log_file)
    rows = (
        [json.loads(line) for line in log_file.read_text(encoding="utf-8").splitlines() if line.strip()]
        if log_file.is_file()
        else []
    )
    if not rows:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 3.2), dpi=110)
    labels = {
        "loss": "total loss",
        "supervised": "re-ranker listwise CE",
        "kl": "KL(retriever, re-ranker)",
        "retriever_ce": "retriever CE",
    }
    for key, label in labels.items():
        points = [(row["step"], row[key]) for row in rows if key in row]
        if points:
            axis.plot(*zip(*points, strict=True), label=label, linewidth=1.4)
    axis.set_xlabel("optimizer step")
    axis.set_ylabel("loss (mean over the logging window)")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(png_file)
    plt.close(figure)
    return True


def _list_lengths(metrics: dict) -> str:
    """What the lists held when that differs from the configured size (too few negatives for some queries)."""
    lists = metrics.get("train", {}).get("lists")
    if not lists or lists["min"] == lists["size"]:
        return ""
    mean, least, padding = lists["mean"], lists["min"], lists["padding"]
    return f"; as trained: {mean:g} passages a list on average, at least {least} ({padding:.1%} padding)"


def _temperatures(metrics: dict, reranker_temperature: float) -> str:
    """The softmax temperatures the run used (the retriever's is resolved from its similarity when not set)."""
    used = metrics.get("train", {}).get("retriever_temperature")
    return "" if used is None else f"; temperatures: retriever {used:g}, re-ranker {reranker_temperature:g}"


_PASSAGE_INPUTS = {
    ("retriever", "joined"): "passages read as one segment, `[CLS] title [SEP] text [SEP]`",
    ("retriever", "official"): "passages read as `[CLS] title [SEP] text [SEP]`, text as segment B (RocketQA code)",
    ("reranker", "joined"): "pairs read as `[CLS] query [SEP] title [SEP] text [SEP]`",
    ("reranker", "official"): "pairs read as `[CLS] query [SEP] title text [SEP]` (RocketQA code)",
}


def passage_input(model_config: dict, role: str) -> str | None:
    """How this model reads a titled passage (its config's ``input_format``); None for a 0.1.0 folder (no such
    field; joined), whose card keeps the words it had."""
    form = model_config.get("input_format")
    return _PASSAGE_INPUTS[role, form] if form else None


def public_path(value: str, run_dir: Path) -> str:
    """A setting's value as a published file may carry it: an absolute path becomes relative to the run folder when
    inside it (``warmup/retriever``), else its last component; names and relative paths stay as they are."""
    path = Path(value)
    if not path.is_absolute():
        return value
    run = run_dir.resolve()
    return path.relative_to(run).as_posix() if path.is_relative_to(run) else path.name


def public_config(config: RunConfig, run_dir: Path) -> RunConfig:
    """The run's config with no absolute local path in it (``public_path`` on every string setting)."""
    values = {
        section: (
            {k: public_path(v, run_dir) if isinstance(v, str) else v for k, v in fields_.items()}
            if isinstance(fields_, dict)
            else fields_
        )
        for section, fields_ in config.to_dict().items()
    }
    return RunConfig.from_dict(values)


def _training_details(config: RunConfig, metrics: dict, model_config: dict, role: str) -> str:
    """The recipe in words: data, lists, loss variant, optimisation, hardware and time."""
    model, data, loss, train = config.model, config.data, config.loss, config.training
    hardware = metrics.get("hardware", {})
    augmentation = metrics.get("augmentation")
    lists = (
        "hybrid-augmented lists (retrieved, denoised by the re-ranker)"
        if augmentation
        else (
            f"saved instances `{data.train_instances}`"
            if data.train_instances
            else f"BM25 top {data.negatives_top_n} negatives"
        )
    )
    lines = [
        f"- Data: `{data.data}` split `{data.train_split}`; {lists}; lists of {data.list_size} passages "
        f"(1 positive){_list_lengths(metrics)}.",
        f"- Loss: {loss.describe()}{_temperatures(metrics, loss.reranker_temperature)}.",
        f"- Optimisation: {train.epochs} joint epoch(s) after {train.warmup_epochs} warm-up epoch(s), "
        f"{train.batch_size} queries per device x {hardware.get('processes', 1)} process(es) x "
        f"{train.gradient_accumulation_steps} accumulation; AdamW, learning rates retriever {train.retriever_lr}, "
        f"re-ranker {train.reranker_lr} (new head {train.reranker_head_lr}), schedule `{train.lr_scheduler}`, "
        f"precision `{train.mixed_precision}`, seed {train.seed}.",
        f"- Inputs: queries {model.query_max_length} tokens, passages {model.passage_max_length} "
        f"(training lists {model.train_passage_max_length}), re-ranker pairs {model.reranker_max_length}; "
        "this model: "
        + "".join(f"{form}, " for form in [passage_input(model_config, role)] if form)
        + f"pooling `{model_config.get('pooling')}`"
        + (
            f", similarity `{model_config.get('similarity')}`, shared towers {model_config.get('shared_towers')}."
            if role == "retriever"
            else "."
        ),
        f"- Hardware: {hardware.get('device', 'not recorded')}; "
        f"{metrics.get('train', {}).get('steps')} optimizer steps; "
        f"wall time {metrics.get('seconds_total')} s (training {metrics.get('train', {}).get('seconds')} s).",
    ]
    if augmentation:
        denoising = (
            f"{augmentation['negatives_removed']} of {augmentation.get('negatives_retrieved')} retrieved negatives "
            "removed as "
            f"likely false negatives, {augmentation.get('positives_added')} unlabelled passages added as positives"
            if "negatives_removed" in augmentation
            else f"{augmentation.get('negatives_retrieved')} retrieved negatives kept as they are "
            "(undenoised only: no re-ranker pass)"
        )
        lines.append(
            f"- Augmentation: top {augmentation.get('top_n')} retrieved; {denoising}; "
            f"instances {augmentation.get('instances')}."
        )
    return "\n".join(lines)


def render_card(
    run_dir: str | Path,
    role: str,
    repos: dict[str, str],
    *,
    with_curve: bool | None = None,
    benchmark: dict | None = None,
) -> ModelCard:
    """A card for ``run_dir/<role>`` from the run's metrics.json, training_config.json and config.

    ``repos``: the Hub id of each role (``{"retriever": ..., "reranker": ...}``), for the card's name, links and usage.

    ``with_curve``: embed ``training_curve.png`` (default: when ``run_dir/<role>`` holds one).
    ``benchmark``: a ``load_benchmark`` report, shown in a Benchmark section.
    """
    if role not in _ROLE_METADATA:
        raise ValueError(f"role must be one of {sorted(_ROLE_METADATA)}, got {role!r}")
    repo_id, partner_repo = repos[role], repos[ROLES[1 - ROLES.index(role)]]
    run_dir = Path(run_dir)
    metrics_file = run_dir / "metrics.json"
    if not metrics_file.is_file():
        raise FileNotFoundError(f"{metrics_file}: missing; the card's numbers come from a real run's metrics")
    metrics = json.loads(metrics_file.read_text(encoding="utf-8"))
    evaluation = metrics.get("eval", {})
    results = evaluation.get("results", {})
    system = _metric_system(role, results)
    config = RunConfig.load(run_dir)
    if config is None:
        raise FileNotFoundError(f"{run_dir / RunConfig.FILE}: missing; the card states the recipe a run saved")
    model_config = json.loads((run_dir / role / "config.json").read_text(encoding="utf-8"))
    base_model = getattr(config.model, role)
    base_model = _BACKBONES.get(base_model, base_model) if not Path(str(base_model)).exists() else None
    data_name = str(config.data.data or evaluation.get("dataset", ""))
    hub_dataset = _HUB_DATASETS.get(data_name, data_name if "/" in data_name and not Path(data_name).exists() else None)

    eval_results = [
        EvalResult(
            task_type="text-retrieval" if role == "retriever" else "text-ranking",
            dataset_type=hub_dataset or evaluation.get("dataset", ""),
            dataset_name=evaluation.get("dataset", ""),
            dataset_split=evaluation.get("split"),
            metric_type=metric.replace("@", "_at_"),
            metric_name=metric,
            metric_value=round(value, 4),
        )
        for metric, value in (results.get(system, {}) if system else {}).items()
        if role == "retriever" or changed_by_reranking(metric, System.parse(system).rerank_top_k)
    ]
    card_data = ModelCardData(
        language="en",
        license=_LICENSES.get(data_name, "apache-2.0"),
        library_name="transformers",
        pipeline_tag=_ROLE_METADATA[role]["pipeline_tag"],
        tags=["modeling_rq2", "rocketqav2", *(_ROLE_METADATA[role]["tags"])],
        base_model=base_model,
        datasets=[hub_dataset] if hub_dataset else None,
        model_name=repo_id,
        eval_results=eval_results or None,
    )
    rows = {**{f"ours: {name}": values for name, values in results.items()}, **evaluation.get("baselines", {})}
    return ModelCard.from_template(
        card_data,
        template_str=(resources.files("modeling_rq2.model_card_template") / "template.md").read_text(encoding="utf-8"),
        model_name=repo_id,
        role=role,
        partner_repo=partner_repo,
        retriever_repo=repos["retriever"],
        reranker_repo=repos["reranker"],
        eval_dataset=evaluation.get("dataset", "not evaluated"),
        eval_split=evaluation.get("split", "-"),
        results_table=markdown_table(rows, list(next(iter(results.values())))) if results else "No evaluation was run.",
        has_curve=(run_dir / role / CURVE_FILE).is_file() if with_curve is None else with_curve,
        training_details=_training_details(public_config(config, run_dir), metrics, model_config, role),
        max_length=model_config.get("passage_max_length") or model_config.get("max_length"),
        query_max_length=model_config.get("query_max_length"),
        passage_input=passage_input(model_config, role),
        data_license=_LICENSES.get(data_name, "that of the training data"),
        benchmark=benchmark_section(benchmark) if benchmark else None,
    )


def write_cards(run_dir: str | Path, repos: dict[str, str] | None = None) -> None:
    """Render both models' README.md cards (and their training-curve PNG) inside ``run_dir``.

    ``repos``: Hub ids per role (default: ``<run folder name>-<role>``), used for links and usage.
    """
    run_dir = Path(run_dir)
    repos = repos or {role: f"{run_dir.resolve().name}-{role}" for role in ROLES}
    for role in ROLES:
        plot_training_curve(run_dir / "train_log.jsonl", run_dir / role / CURVE_FILE)
    for role in ROLES:
        render_card(run_dir, role, repos).save(run_dir / role / "README.md")
