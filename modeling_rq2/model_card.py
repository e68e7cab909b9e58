"""Model cards for trained RQ2 models: metadata (with model-index) and body from measured metrics."""

import json
from importlib import resources
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from .evaluate import markdown_table

_ROLES = {
    "retriever": {"pipeline_tag": "sentence-similarity", "tags": ["feature-extraction", "dense-retrieval"]},
    "reranker": {"pipeline_tag": "text-ranking", "tags": ["cross-encoder", "re-ranking"]},
}


def _metric_system(role: str, results: dict) -> str | None:
    """The evaluated system whose numbers belong on this model's card."""
    if role == "retriever":
        return "retriever" if "retriever" in results else None
    return next((name for name in results if name != "retriever"), None)


def render_card(
    run_dir: str | Path, role: str, repo_id: str, retriever_repo: str, reranker_repo: str, partner_repo: str | None = None
) -> ModelCard:
    """A card for ``run_dir/<role>`` from the run's metrics.json and training_config.json."""
    if role not in _ROLES:
        raise ValueError(f"role must be one of {sorted(_ROLES)}, got {role!r}")
    run_dir = Path(run_dir)
    metrics_file = run_dir / "metrics.json"
    if not metrics_file.is_file():
        raise FileNotFoundError(f"{metrics_file}: missing; the card's numbers come from a real run's metrics")
    metrics = json.loads(metrics_file.read_text(encoding="utf-8"))
    evaluation = metrics.get("eval", {})
    results = evaluation.get("results", {})
    system = _metric_system(role, results)
    config_file = run_dir / "training_config.json"
    config = json.loads(config_file.read_text(encoding="utf-8")) if config_file.is_file() else {}
    model_config = json.loads((run_dir / role / "config.json").read_text(encoding="utf-8"))
    base_model = config.get("ModelArguments", {}).get(role)
    base_model = "sentence-transformers/all-MiniLM-L6-v2" if base_model in (None, "default") else base_model

    eval_results = [
        EvalResult(
            task_type="text-retrieval" if role == "retriever" else "text-ranking",
            dataset_type=evaluation.get("dataset", ""),
            dataset_name=evaluation.get("dataset", ""),
            dataset_split=evaluation.get("split"),
            metric_type=metric.replace("@", "_at_"),
            metric_name=metric,
            metric_value=round(value, 4),
        )
        for metric, value in (results.get(system, {}) if system else {}).items()
    ]
    card_data = ModelCardData(
        language="en",
        license="cc-by-nc-2.0" if evaluation.get("dataset") == "scifact" else "apache-2.0",
        library_name="transformers",
        pipeline_tag=_ROLES[role]["pipeline_tag"],
        tags=["modeling_rq2", "rocketqav2", *(_ROLES[role]["tags"])],
        base_model=base_model,
        model_name=repo_id,
        eval_results=eval_results or None,
    )
    training = [f"- {section}: `{json.dumps(values, sort_keys=True)}`" for section, values in config.items()]
    training.append(f"- steps: {metrics.get('train', {}).get('steps')}, wall time: {metrics.get('seconds_total')} s")
    training.append(f"- model config: pooling `{model_config.get('pooling')}`, max length {model_config.get('max_length') or model_config.get('passage_max_length')}")
    return ModelCard.from_template(
        card_data,
        template_str=(resources.files("modeling_rq2.model_card_template") / "template.md").read_text(encoding="utf-8"),
        model_name=repo_id,
        role=role,
        partner_repo=partner_repo,
        retriever_repo=retriever_repo,
        reranker_repo=reranker_repo,
        eval_dataset=evaluation.get("dataset", "not evaluated"),
        eval_split=evaluation.get("split", "-"),
        results_table=markdown_table(results, list(next(iter(results.values())))) if results else "No evaluation was run.",
        training_details="\n".join(training),
    )
