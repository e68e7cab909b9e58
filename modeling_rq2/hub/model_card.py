"""Model cards for trained RQ2 models: metadata (with model-index) and a body built from a run's files.

Everything a card states comes from the run folder: ``metrics.json`` (measured results, baselines
of the same run, hardware, time), ``training_config.json`` (the recipe) and ``train_log.jsonl``
(the training curve, drawn to ``training_curve.png`` beside the weights). A published card can also carry
a benchmark report of ``bench.quality`` (ours beside the peers, measured in one run).
"""

import json
import platform
from importlib import metadata, resources
from pathlib import Path

import torch
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from ..evaluation.metrics import parse_metric
from ..evaluation.systems import System, find, markdown_table
from ..models.loading import DEFAULT_BACKBONE_ID, default_backbone_path
from ..models.modeling_rq2 import RQ2Reranker, RQ2Retriever, capped_length
from ..training.arguments import JointTrainingArguments, RunConfig

ROLES = ("retriever", "reranker")
CURVE_FILE = "training_curve.png"
BENCHMARK_FILE = "benchmark.json"
_BENCHMARK_KEYS = ("data", "settings", "machine", "summaries")
_ROLE_METADATA = {
    "retriever": {
        "pipeline_tag": "sentence-similarity",
        "tags": ["feature-extraction", "dense-retrieval", "sentence-transformers"],
    },
    "reranker": {"pipeline_tag": "text-ranking", "tags": ["cross-encoder", "re-ranking", "sentence-transformers"]},
}
_TASKS = {"retriever": ("text-retrieval", "Retrieval"), "reranker": ("text-ranking", "Re-ranking")}
_MINILM = DEFAULT_BACKBONE_ID
_BACKBONES = {"default": _MINILM}
_HUB_DATASETS = {"scifact": "BeIR/scifact", "msmarco": "BeIR/msmarco", "nq": "BeIR/nq"}
_DATA_LICENSES = {"scifact": "cc-by-nc-2.0", "msmarco": "other", "nq": "cc-by-sa-3.0"}
"""SciFact: CC BY-NC 2.0; MS MARCO: Microsoft's terms (non-commercial research only, Hub id ``other``); Natural
Questions: CC BY-SA 3.0."""
_MODEL_LICENSES = {_MINILM: "apache-2.0"}
_RESTRICTIVENESS = ("mit", "apache-2.0", "cc-by-4.0", "cc-by-sa-3.0", "cc-by-sa-4.0", "cc-by-nc-2.0", "cc-by-nc-4.0")
"""Licences from the most to the least permissive; anything else (``other``, unknown) counts as the most
restrictive, since a card must never promise more than the data or the base model allows."""
INSTALL = "`pip install .` in a checkout of its source; it is not on PyPI yet"
"""How a card's reader installs this package (a name not on PyPI would fail, or install someone else's package)."""
LIBRARY_NAME = "sentence-transformers"
"""The Hub's "Use this model" button and its widget follow ``library_name``: sentence-transformers loads both staged
folders (``SentenceTransformer`` / ``CrossEncoder``), is what most retrieval users already call, and its snippet runs
without this package; ``transformers`` would show an ``AutoModel`` snippet that needs ``trust_remote_code`` and
returns hidden states, not embeddings or scores."""
CITATION = "https://arxiv.org/abs/2110.07367"


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


def _spread(value: dict) -> str:
    return f"{value['mean']:.4f}" + (f" ± {value['std']:.4f}" if value.get("std") else "")


def benchmark_rows(report: dict, role: str) -> list[str]:
    """The benchmark's table cut to this model's rows (the retrievers, or the re-rankings and their starting
    retrievers), named by each system's display title, one column per metric this model can change."""
    summaries, titles = report["summaries"], report.get("titles", {})
    depth = report["settings"].get("rerank_top_k")
    metrics = list(next(iter(next(iter(summaries.values()))["rows"].values())))
    columns = _columns(metrics, role, depth)
    lines = ["| system | " + " | ".join(columns) + " | seeds | train s |", "|---" * (len(columns) + 3) + "|"]
    for name, summary in summaries.items():
        for row, values in summary["rows"].items():
            kind = _kind(row)
            if (role == "retriever") != (kind in ("retriever", "baseline")):
                continue
            label = titles.get(name, name) + ("" if role == "retriever" else f", {_ranking(System.parse(row))}")
            cells = [_spread(values[m]) for m in columns]
            train = summary["train_seconds"]["mean"]
            lines.append(f"| {_cell(label)} | " + " | ".join(cells) + f" | {summary['seeds']} | {train:.0f} |")
    return lines


def benchmark_section(report: dict, role: str) -> str:
    """The benchmark's rows for this model with what they were measured on: data, seeds, machine."""
    data, machine = report["data"], report["machine"]
    seeds = report["settings"].get("seeds")
    header = (
        f"Measured by `python -m bench.quality` on {data['name']} `{data['eval_split']}` ({data['queries']} queries, "
        f"{data['corpus']} passages), seeds {seeds} (mean ± standard deviation where several), "
        f"on {machine.get('device')} "
        f"({machine.get('cpus')} cores, torch {machine.get('torch')}). Every system starts from the same backbone and "
        "trains on the same lists; the peers are sentence-transformers models tuned on a small grid. Seconds are wall "
        "time on that machine, which other jobs may have shared."
        + (
            f" Re-rankers re-order their retriever's top {report['settings'].get('rerank_top_k')}."
            if role == "reranker"
            else ""
        )
    )
    return "\n".join([header, "", *benchmark_rows(report, role)])


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


def _precision(metrics: dict, train: JointTrainingArguments) -> str:
    """Training's mixed precision, and the evaluation's where the run recorded it (``auto`` resolves per machine)."""
    hardware = metrics.get("hardware", {})
    trained = f"`{hardware.get('mixed_precision') or train.mixed_precision or 'no'}`"
    evaluated = hardware.get("evaluation_precision")
    return f"{trained} (evaluation: `{evaluated}`)" if evaluated else trained


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


def framework_versions() -> dict[str, str]:
    """The versions of what trains and runs the models (the cards' "framework versions")."""
    versions = {"Python": platform.python_version()}
    for label, package in (
        ("modeling_rq2", "modeling_rq2"),
        ("PyTorch", "torch"),
        ("Transformers", "transformers"),
        ("Accelerate", "accelerate"),
        ("Sentence Transformers", "sentence-transformers"),
        ("Tokenizers", "tokenizers"),
    ):
        try:
            versions[label] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return versions


def most_restrictive(licenses: list[str | None]) -> str:
    """The licence a card's metadata states: the most restrictive of the base model's and the data's (an unknown
    one is ``other``)."""
    ranks = [_RESTRICTIVENESS.index(name) if name in _RESTRICTIVENESS else len(_RESTRICTIVENESS) for name in licenses]
    worst = max(ranks)
    return _RESTRICTIVENESS[worst] if worst < len(_RESTRICTIVENESS) else "other"


def parameter_count(model_config: dict, role: str) -> int:
    """Parameters of the model a saved ``config.json`` describes, counted on the meta device (no weights read, none
    needed: a folder staged before its weights, or a config alone, counts the same)."""
    cls = RQ2Retriever if role == "retriever" else RQ2Reranker
    config = cls.config_class.from_dict({k: v for k, v in model_config.items() if k != "transformers_version"})
    with torch.device("meta"):
        model = cls(config)
    return sum(parameter.numel() for parameter in model.parameters())


def _millions(count: int) -> str:
    return f"{count / 1e6:.1f}M"


def hub_base_model(name_or_path: str | None) -> str | None:
    """A backbone as the card's ``base_model`` names it: the Hub id of the bundled MiniLM, another ``owner/name`` Hub
    id as it is, None for a local folder (its path says nothing to a reader, and must not be published)."""
    if not name_or_path:
        return None
    name_or_path = str(name_or_path)
    if name_or_path in _BACKBONES:
        return _BACKBONES[name_or_path]
    if Path(name_or_path).resolve() == Path(default_backbone_path()).resolve():
        return _MINILM
    local = Path(name_or_path).is_absolute() or Path(name_or_path).exists() or "/" not in name_or_path
    return None if local else name_or_path


def _cell(value: object) -> str:
    """A value in a markdown table cell (pipes escaped, newlines flattened)."""
    return str(value).replace("|", "\\|").replace("\n", " ")


def _key_value_table(rows: list[tuple[str, object]]) -> str:
    return "\n".join(["| | |", "|---|---|", *(f"| {name} | {_cell(value)} |" for name, value in rows)])


def model_details(model_config: dict, role: str, *, parameters: int, base_model: str | None, versions: dict) -> str:
    """The model's shape as a table: type, base model, output, similarity, pooling, lengths, size, framework."""
    encoder = model_config.get("encoder_config") or {}
    base = f"[{base_model}](https://huggingface.co/{base_model})" if base_model else "a local backbone"
    if role == "retriever":
        towers = "one encoder for queries and passages" if model_config.get("shared_towers") else "two encoders"
        rows = [
            ("Model type", f"RocketQAv2 dual encoder (`RQ2Retriever`), {towers}"),
            ("Base model", base),
            ("Output", f"{encoder.get('hidden_size')}-dimensional embeddings"),
            ("Similarity", f"`{model_config.get('similarity')}`"),
            ("Pooling", f"`{model_config.get('pooling')}`"),
            (
                "Maximum length",
                f"queries {model_config.get('query_max_length')}, passages {model_config.get('passage_max_length')} "
                "tokens",
            ),
        ]
    else:
        rows = [
            ("Model type", "RocketQAv2 cross-encoder (`RQ2Reranker`): one relevance logit a (query, passage) pair"),
            ("Base model", base),
            ("Output", "one score a pair (a logit: higher is more relevant; no sigmoid)"),
            ("Pooling", f"`{model_config.get('pooling')}`, then a linear head"),
            ("Maximum length", f"query + passage {model_config.get('max_length')} tokens"),
        ]
    rows.append(("Parameters", _millions(parameters)))
    rows.append(("Framework versions", ", ".join(f"{name} {version}" for name, version in versions.items())))
    return _key_value_table(rows)


def _hyperparameters(config: RunConfig, metrics: dict) -> str:
    """The recipe's settings as a table (what a reader needs to rerun it)."""
    data, train, model = config.data, config.training, config.model
    processes = metrics.get("hardware", {}).get("processes", 1)
    accumulation = train.gradient_accumulation_steps or 1
    rows = [
        ("joint epochs / warm-up epochs", f"{train.epochs} / {train.warmup_epochs}"),
        (
            "queries a step",
            f"{train.batch_size * processes * accumulation} ({train.batch_size} a device x {processes} process(es) "
            f"x {accumulation} accumulation)",
        ),
        ("passages a list", f"{data.list_size} (1 positive){_list_lengths(metrics)}"),
        ("optimizer", f"AdamW, weight decay {train.weight_decay}, gradient clipping {train.max_grad_norm}"),
        (
            "learning rates",
            f"retriever {train.retriever_lr}, re-ranker {train.reranker_lr} (its new head {train.reranker_head_lr})",
        ),
        ("schedule", f"`{train.lr_scheduler}`, warm-up ratio {train.warmup_ratio}"),
        ("precision", _precision(metrics, train)),
        (
            "input lengths",
            f"queries {model.query_max_length}, passages {model.passage_max_length} (training lists "
            f"{model.train_passage_max_length}), re-ranker pairs {model.reranker_max_length}",
        ),
        ("seed", train.seed),
    ]
    return "\n".join(["| setting | value |", "|---|---|", *(f"| {name} | {_cell(value)} |" for name, value in rows)])


def _short(passage: dict, length: int = 90) -> str:
    text = " — ".join(part for part in (passage.get("title"), passage.get("text")) if part)
    return text if len(text) <= length else text[: length - 1].rstrip() + "…"


def training_examples(metrics: dict) -> str | None:
    """A few of the lists the models trained on (query, positive, a negative), when the run recorded them."""
    examples = metrics.get("train", {}).get("examples")
    if not examples:
        return None
    lines = ["| query | positive | a negative |", "|---|---|---|"]
    for example in examples:
        negative = _short(example["negatives"][0]) if example.get("negatives") else "-"
        lines.append(
            f"| {_cell(_short({'text': example['query']}))} | {_cell(_short(example['positive']))} | "
            f"{_cell(negative)} |"
        )
    return "\n".join(lines)


def _training_details(config: RunConfig, metrics: dict, model_config: dict, role: str) -> str:
    """The recipe: data, lists, loss (with its source), the hyperparameters, hardware and time, a few examples."""
    data, loss = config.data, config.loss
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
        f"- Data: `{data.data}` split `{data.train_split}`; {lists}.",
        f"- Loss: {loss.describe()}{_temperatures(metrics, loss.reranker_temperature)}. Dynamic listwise "
        f"distillation is RocketQAv2's ([Ren et al., 2021]({CITATION}), section 3); in-batch negatives follow "
        "DPR ([Karpukhin et al., 2020](https://arxiv.org/abs/2004.04906)).",
        "- This model: "
        + "".join(f"{form}; " for form in [passage_input(model_config, role)] if form)
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
        rounds = len(metrics.get("augmentation_rounds") or [augmentation])
        lines.append(
            "- Augmentation"
            + (f" ({rounds} rounds; figures of the last)" if rounds > 1 else "")
            + f": top {augmentation.get('top_n')} retrieved; {denoising}; "
            f"instances {augmentation.get('instances')}."
        )
    blocks = ["\n".join(lines), "### Hyperparameters", _hyperparameters(config, metrics)]
    examples = training_examples(metrics)
    if examples:
        blocks += ["### Training examples", "The first lists of the first epoch (texts cut):", examples]
    return "\n\n".join(blocks)


def _row_name(name: str, role: str) -> str:
    """A results row as a reader of this model's card reads it."""
    try:
        system = System.parse(name)
    except ValueError:
        return name
    if system.kind == "retriever":
        return "this retriever" if role == "retriever" else "the partner retriever (the candidates)"
    model = "this re-ranker" if role == "reranker" else "the partner re-ranker"
    head = f"{model} on the retriever's top {system.rerank_top_k}"
    return f"{head}, fused with the retriever's score (weight {system.fusion:g})" if system.kind == "fused" else head


def _kind(name: str) -> str:
    """A row's system kind (retriever, reranked, fused), or ``baseline`` for another row (BM25)."""
    try:
        return System.parse(name).kind
    except ValueError:
        return "baseline"


def _ranking(system: System) -> str:
    """A re-ranked benchmark row's ranking, beside the system's title."""
    head = f"re-ranking its retriever's top {system.rerank_top_k}"
    return f"{head}, fused with the retriever's score ({system.fusion:g})" if system.kind == "fused" else head


def _concerns(name: str, role: str) -> bool:
    """Whether a results row is about this model: the retriever's card shows the retriever and the baselines, the
    re-ranker's the re-ranked rows and, as their starting point, the retriever and the baselines."""
    return role == "reranker" or _kind(name) in ("retriever", "baseline")


def _columns(metrics: list[str], role: str, depth: int | None) -> list[str]:
    return [m for m in metrics if role == "retriever" or depth is None or changed_by_reranking(m, depth)]


def results_table(results: dict, baselines: dict, role: str) -> str:
    """The run's results cut to this model's rows, with display names."""
    reranked = find(results, "reranked") or find(results, "fused")
    depth = System.parse(reranked).rerank_top_k if reranked else None
    columns = _columns(list(next(iter(results.values()))), role, depth)
    rows = {_row_name(name, role): values for name, values in {**results, **baselines}.items() if _concerns(name, role)}
    return markdown_table(rows, columns)


def license_text(
    base_license: str | None, data_license: str | None, data_name: str | None, *, metadata: str | None
) -> str:
    """Both licences in words, and what the metadata states (``metadata``): a card never promises more than the
    base model or the data allows."""
    base = f"The base model's licence is `{base_license}`." if base_license else "The base model's licence applies."
    if data_name is None:
        data = " This card has no record of the data the model was trained on: that data's licence applies too."
    elif data_license and data_license != "other":
        data = f" The training data ({data_name}) is under `{data_license}`, which applies to this model too."
    else:
        data = f" The training data ({data_name}) comes with its own terms (check them), which apply to this model too."
    if metadata is None:
        return f"{base}{data} The metadata states no licence."
    both = " (the more restrictive of the two)" if data_name is not None or data_license else ""
    return f"{base}{data} The metadata states `{metadata}`{both}."


def _template() -> str:
    return (resources.files("modeling_rq2.model_card_template") / "template.md").read_text(encoding="utf-8")


def _card_data(role: str, repo_id: str, *, base_model, license_, dataset, eval_results) -> ModelCardData:
    return ModelCardData(
        language="en",
        license=license_,
        library_name=LIBRARY_NAME,
        pipeline_tag=_ROLE_METADATA[role]["pipeline_tag"],
        tags=["modeling_rq2", "rocketqav2", *(_ROLE_METADATA[role]["tags"])],
        base_model=base_model,
        datasets=[dataset] if dataset else None,
        model_name=repo_id,
        eval_results=eval_results or None,
    )


LENGTH_FIELDS = ("query_max_length", "passage_max_length", "max_length")


def lengths_as_used(model_config: dict, tokenizer_max: int | None) -> dict:
    """``model_config`` with its maximum lengths capped as the model caps them (``capped_length``, by the encoder's
    position embeddings and the tokenizer's ``model_max_length``: a card stated 160 tokens for a re-ranker that
    reads 128)."""
    positions = (model_config.get("encoder_config") or {}).get("max_position_embeddings")
    capped = dict(model_config)
    for name in LENGTH_FIELDS:
        if isinstance(capped.get(name), int):
            capped[name] = capped_length(capped[name], positions, tokenizer_max)
    return capped


def saved_tokenizer_max(folder: Path) -> int | None:
    """The ``model_max_length`` of the tokenizer saved in ``folder`` (None without one)."""
    path = folder / "tokenizer_config.json"
    value = json.loads(path.read_text(encoding="utf-8")).get("model_max_length") if path.is_file() else None
    return value if isinstance(value, int) else None


def saved_sep_token(folder: Path) -> str:
    """The separator a saved tokenizer puts between a title and its text (``[SEP]`` when it names none)."""
    path = folder / "tokenizer_config.json"
    token = json.loads(path.read_text(encoding="utf-8")).get("sep_token") if path.is_file() else None
    token = token.get("content") if isinstance(token, dict) else token
    return token or "[SEP]"


def _common(model_config: dict, role: str, repos: dict[str, str], *, sep_token: str) -> dict:
    """Template values every card has: names, usage, limitations."""
    return {
        "sep_token": sep_token,
        "model_name": repos[role],
        "role": role,
        "partner_repo": repos.get(ROLES[1 - ROLES.index(role)]),
        "retriever_repo": repos.get("retriever"),
        "reranker_repo": repos.get("reranker"),
        "max_length": model_config.get("passage_max_length") or model_config.get("max_length"),
        "query_max_length": model_config.get("query_max_length"),
        "passage_input": passage_input(model_config, role),
        "official_input": model_config.get("input_format") == "official",
        "install": INSTALL,
    }


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
    ``benchmark``: a ``load_benchmark`` report, shown in a Benchmark section (this model's rows).
    """
    if role not in _ROLE_METADATA:
        raise ValueError(f"role must be one of {sorted(_ROLE_METADATA)}, got {role!r}")
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
    model_config = lengths_as_used(model_config, saved_tokenizer_max(run_dir / role))
    base_model = hub_base_model(getattr(config.model, role))
    data_name = str(config.data.data or evaluation.get("dataset", ""))
    hub_dataset = _HUB_DATASETS.get(data_name, data_name if "/" in data_name and not Path(data_name).exists() else None)
    base_license, data_license = _MODEL_LICENSES.get(base_model), _DATA_LICENSES.get(data_name)
    task_type, task_name = _TASKS[role]
    eval_results = [
        EvalResult(
            task_type=task_type,
            task_name=task_name,
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
    license_ = most_restrictive([base_license, data_license])
    card_data = _card_data(
        role, repos[role], base_model=base_model, license_=license_, dataset=hub_dataset, eval_results=eval_results
    )
    return ModelCard.from_template(
        card_data,
        template_str=_template(),
        **_common(model_config, role, repos, sep_token=saved_sep_token(run_dir / role)),
        details=model_details(
            model_config,
            role,
            parameters=parameter_count(model_config, role),
            base_model=base_model,
            versions=metrics.get("hardware", {}).get("versions") or framework_versions(),
        ),
        eval_dataset=evaluation.get("dataset", "not evaluated"),
        eval_split=evaluation.get("split", "-"),
        results_table=(
            results_table(results, evaluation.get("baselines", {}), role) if results else "No evaluation was run."
        ),
        has_curve=(run_dir / role / CURVE_FILE).is_file() if with_curve is None else with_curve,
        training_details=_training_details(public_config(config, run_dir), metrics, model_config, role),
        license_text=license_text(
            base_license, data_license, public_path(data_name, run_dir) or None, metadata=license_
        ),
        benchmark=benchmark_section(benchmark, role) if benchmark else None,
    )


def render_model_card(
    model: RQ2Retriever | RQ2Reranker,
    repo_id: str,
    *,
    data_license: str | None = None,
    datasets: list[str] | None = None,
) -> ModelCard:
    """A card for one model pushed on its own (``model.push_to_hub``): what it is, how to use it, its shape; no
    results or recipe (they live in a training run: ``push_to_hub.py`` publishes those). ``data_license`` /
    ``datasets``: the licence and Hub ids of the data it was trained on, which the model alone does not record; the
    metadata states the more restrictive of that licence and the base model's."""
    role = "retriever" if isinstance(model, RQ2Retriever) else "reranker"
    model_config = lengths_as_used(model.config.to_dict(), getattr(model.tokenizer, "model_max_length", None))
    base_model = hub_base_model((model_config.get("encoder_config") or {}).get("_name_or_path"))
    base_license = _MODEL_LICENSES.get(base_model)
    license_ = most_restrictive([base_license, data_license]) if data_license else base_license
    card_data = _card_data(role, repo_id, base_model=base_model, license_=license_, dataset=None, eval_results=None)
    card_data.datasets = list(datasets) if datasets else None
    data_name = ", ".join(datasets) if datasets else ("the data its uploader named" if data_license else None)
    return ModelCard.from_template(
        card_data,
        template_str=_template(),
        **_common(
            model_config, role, {role: repo_id}, sep_token=getattr(model.tokenizer, "sep_token", None) or "[SEP]"
        ),
        details=model_details(
            model_config,
            role,
            parameters=sum(p.numel() for p in model.parameters()),
            base_model=base_model,
            versions=framework_versions(),
        ),
        license_text=license_text(base_license, data_license, data_name, metadata=license_),
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
