"""Publishing a training run: stage each model as a folder with its card, then upload with HfApi."""

import json
import logging
import shutil
import tempfile
from pathlib import Path

from huggingface_hub import HfApi, ModelCard, get_token
from huggingface_hub.utils import HFValidationError, validate_repo_id

from ..models.modeling_rq2 import RQ2Reranker, RQ2Retriever, file_sha256
from ..models.st_export import export_reranker, export_retriever
from ..training.arguments import RunConfig
from ..training.checkpoints import lock_holder
from .model_card import (
    BENCHMARK_FILE,
    CURVE_FILE,
    ROLES,
    load_benchmark,
    plot_training_curve,
    public_config,
    render_card,
    render_model_card,
)

logger = logging.getLogger(__name__)
RUN_FILES = ("metrics.json", "train_log.jsonl")
STAGED_MARKER = ".rq2-staged.json"
"""In a ``--local_dir``: the files each role folder got from staging and their sha256, so staging again replaces
only those, as they were staged (a hand-edited card is kept, and the staging refused)."""


def stage_run(
    run_dir: str | Path,
    repos: dict[str, str],
    local_dir: str | Path | None = None,
    *,
    benchmark: str | Path | None = None,
) -> dict[str, Path]:
    """Copy ``run_dir/{retriever,reranker}`` (weights, tokenizer, modeling code) plus the run's metrics
    and config into ``local_dir/<role>``, each with a generated README.md card. Returns the folders.

    ``benchmark``: a ``bench.quality`` report (JSON): its table goes into both cards, the file beside them.
    """
    run_dir = Path(run_dir)
    holder = lock_holder(run_dir)
    if holder:  # its models may be replaced while they are copied
        raise ValueError(f"--run_dir {run_dir}: a run is still writing into it ({holder}); stage it once it ends")
    for role in ROLES:
        if role not in repos:
            raise ValueError(f"no repo id given for the {role}")
        try:
            validate_repo_id(repos[role])
        except HFValidationError as err:
            raise ValueError(f"bad repo id for the {role}: {err}") from None
        if not (run_dir / role / "config.json").is_file():
            raise FileNotFoundError(f"{run_dir / role}: no saved {role} (expected a train.py output folder)")
    if not (run_dir / "metrics.json").is_file():
        raise FileNotFoundError(f"{run_dir / 'metrics.json'}: missing; cards only carry measured metrics")
    if RunConfig.load(run_dir) is None:  # read (and checked) before anything is staged
        raise FileNotFoundError(f"{run_dir / RunConfig.FILE}: missing; the cards state the recipe a run saved")
    report = load_benchmark(benchmark) if benchmark else None
    root = _staging_root(run_dir, local_dir)
    for role in ROLES:  # every refusal before anything is removed
        _staged_before(root, role)
    config = public_config(RunConfig.load(run_dir), run_dir)
    staged = {}
    for role in ROLES:
        target = root / role
        shutil.rmtree(target, ignore_errors=True)  # only files an earlier staging wrote (checked above)
        shutil.copytree(run_dir / role, target)
        for name in RUN_FILES:
            if (run_dir / name).is_file():
                shutil.copy2(run_dir / name, target / name)
        config.save(target)  # no absolute local path: relative to the run, or a last component
        if report:
            shutil.copy2(benchmark, target / BENCHMARK_FILE)
        # a damaged or altered weight file stops the staging (never a warning); sentence-transformers users load
        # the folders with SentenceTransformer / CrossEncoder
        _export(_load(role, target), target)
        if not (target / CURVE_FILE).is_file():
            plot_training_curve(run_dir / "train_log.jsonl", target / CURVE_FILE)
        card = render_card(run_dir, role, repos, with_curve=(target / CURVE_FILE).is_file(), benchmark=report)
        card.save(target / "README.md")
        staged[role] = target
    _write_marker(root, staged)
    return staged


def _export(model: RQ2Retriever | RQ2Reranker, folder: Path) -> None:
    """Add the sentence-transformers files (a model they cannot describe is uploaded without them, said)."""
    try:
        (export_retriever if isinstance(model, RQ2Retriever) else export_reranker)(model, folder)
    except ValueError as err:
        logger.warning("%s: not exported for sentence-transformers (%s)", folder, err)


def stage_model(
    model: RQ2Retriever | RQ2Reranker,
    folder: str | Path,
    repo_id: str,
    *,
    card: bool = True,
    data_license: str | None = None,
    datasets: list[str] | None = None,
) -> Path:
    """What ``model.push_to_hub`` uploads, written into the new or empty ``folder``: ``save_pretrained``'s files
    (weights, code, tokenizer), the sentence-transformers files and, with ``card``, a model card (``data_license`` /
    ``datasets``: as ``render_model_card``)."""
    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()):
        raise ValueError(f"{folder}: not empty; staging writes into a new or empty folder")
    model.save_pretrained(folder)
    _export(model, folder)
    if card:
        render_model_card(model, repo_id, data_license=data_license, datasets=datasets).save(folder / "README.md")
    return folder


def push_model(
    model: RQ2Retriever | RQ2Reranker,
    repo_id: str,
    *,
    commit_message: str | None = None,
    commit_description: str | None = None,
    private: bool | None = None,
    token: str | bool | None = None,
    revision: str | None = None,
    create_pr: bool = False,
    tags: list[str] | None = None,
    data_license: str | None = None,
    datasets: list[str] | None = None,
    api: HfApi | None = None,
    **unused,
):
    """``model.push_to_hub``: create (or reuse) the repo, stage the model (``stage_model``) and upload it in one
    commit; a README.md the repo already has is kept (a card written by hand is not replaced). ``data_license`` /
    ``datasets``: the licence and Hub ids of the training data, for the card (the model does not record them).
    Returns the commit info, as transformers' ``push_to_hub`` does."""
    if unused:
        logger.warning("push_to_hub: %s not used (the weights are saved as safetensors, unsharded)", sorted(unused))
    api = api or HfApi()
    repo_id = api.create_repo(repo_id, private=private, token=token, exist_ok=True).repo_id
    if revision:
        api.create_branch(repo_id, branch=revision, exist_ok=True, token=token)
    has_card = api.file_exists(repo_id, "README.md", revision=revision, token=token)
    with tempfile.TemporaryDirectory(prefix="rq2-push-") as tmp:
        folder = stage_model(
            model, Path(tmp) / "model", repo_id, card=not has_card, data_license=data_license, datasets=datasets
        )
        if tags and not has_card:
            card = ModelCard.load(folder / "README.md")
            card.data.tags = [*(card.data.tags or []), *(tag for tag in tags if tag not in (card.data.tags or []))]
            card.save(folder / "README.md")
        return api.upload_folder(
            repo_id=repo_id,
            folder_path=str(folder),
            commit_message=commit_message or f"Upload {type(model).__name__} with modeling_rq2",
            commit_description=commit_description,
            revision=revision,
            create_pr=create_pr,
            token=token,
        )


def _staging_root(run_dir: Path, local_dir: str | Path | None) -> Path:
    """Where to stage: a new temporary folder, or ``local_dir`` when it neither overlaps the run (staging there
    replaced the trained models) nor holds files this tool did not stage."""
    if not local_dir:
        return Path(tempfile.mkdtemp(prefix="rq2-stage-"))
    root, run = Path(local_dir).resolve(), run_dir.resolve()
    if root.is_relative_to(run) or run.is_relative_to(root):
        raise ValueError(
            f"--local_dir {local_dir} overlaps --run_dir {run_dir}: staging would replace the trained models; "
            "stage into a folder outside the run"
        )
    if root.is_file() or (root.is_dir() and any(root.iterdir()) and not (root / STAGED_MARKER).is_file()):
        raise ValueError(
            f"--local_dir {local_dir}: already holds files that push_to_hub did not stage; give a new or empty folder"
        )
    return root


def _staged_before(root: Path, role: str) -> None:
    """Refuse a role folder holding files an earlier staging did not write (they would be deleted)."""
    target = root / role
    if not target.exists():
        return
    try:
        known = dict(json.loads((root / STAGED_MARKER).read_text(encoding="utf-8"))[role])
    except (OSError, ValueError, KeyError, TypeError):
        known = {}
    foreign = sorted(
        path.relative_to(target).as_posix()
        for path in target.rglob("*")
        if path.is_file() and known.get(path.relative_to(target).as_posix()) != file_sha256(path)
    )
    if foreign:
        raise ValueError(
            f"{target}: holds {foreign[0]!r}{f' and {len(foreign) - 1} more files' if len(foreign) > 1 else ''} that "
            "no earlier staging wrote (or that were edited since); move them, or stage into another folder"
        )


def _write_marker(root: Path, staged: dict[str, Path]) -> None:
    files = {
        role: {p.relative_to(folder).as_posix(): file_sha256(p) for p in sorted(folder.rglob("*")) if p.is_file()}
        for role, folder in staged.items()
    }
    (root / STAGED_MARKER).write_text(json.dumps(files, indent=1), encoding="utf-8")


def _load(role: str, folder: Path) -> RQ2Retriever | RQ2Reranker:
    return (RQ2Retriever if role == "retriever" else RQ2Reranker).from_pretrained(folder)


def publish(
    staged: dict[str, Path],
    repos: dict[str, str],
    *,
    api: HfApi | None = None,
    token: str | None = None,
    private: bool = False,
    revision: str | None = None,
    commit_message: str = "Upload RocketQAv2 model trained with modeling_rq2",
) -> list[str]:
    """Create (or reuse) each repo and upload its staged folder; returns the commit URLs."""
    token = token or get_token()
    if token is None:
        raise ValueError("no Hugging Face token: pass --token, set HF_TOKEN, or run `hf auth login`")
    api = api or HfApi()
    urls = []
    for role, folder in staged.items():
        api.create_repo(repos[role], private=private, exist_ok=True, token=token)
        if revision:
            api.create_branch(repos[role], branch=revision, exist_ok=True, token=token)
        info = api.upload_folder(
            repo_id=repos[role], folder_path=str(folder), revision=revision, commit_message=commit_message, token=token
        )
        urls.append(str(getattr(info, "commit_url", info)))
    return urls


def describe(staged: dict[str, Path]) -> str:
    """What a dry run would upload: one line per file."""
    lines = []
    for role, folder in staged.items():
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                lines.append(f"{role}: {path.relative_to(folder)} ({path.stat().st_size:,} bytes)")
    return "\n".join(lines)


__all__ = ["stage_run", "stage_model", "push_model", "publish", "describe"]
