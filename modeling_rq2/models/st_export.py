"""Export saved RocketQAv2 folders so that sentence-transformers loads them as they are.

``export_retriever`` / ``export_reranker`` add sentence-transformers files to a folder written by
``save_pretrained``. They leave every file ``save_pretrained`` wrote untouched, so the folder still loads
with ``RQ2Retriever.from_pretrained(folder)`` (or ``RQ2Reranker``) and with
``AutoModel.from_pretrained(folder, trust_remote_code=True)``.

Retriever, for ``SentenceTransformer(folder)``: the root ``config.json`` is our own model type, which the
sentence-transformers ``Transformer`` module cannot load, so each tower gets a sub-folder holding a plain
encoder ``config.json``, the tokenizer and a ``model.safetensors`` whose tensors keep the root's names
(``query_encoder.…``); its ``sentence_bert_config.json`` strips that prefix at load time (the transformers
``key_mapping`` argument). Shared towers: the root weights file holds exactly that tower, so the sub-folder's
file is a hard link to it (no bytes duplicated; a copy where the file system has no hard links; on the Hub
the two identical files are stored, and cached, as one blob). Separate towers: each sub-folder gets a file with
its own tower's tensors (the root file, holding both, stays as it is), which duplicates the encoder weights
once. A ``Pooling`` (and for cosine a ``Normalize``) module follows. Export again after each
``save_pretrained`` into the folder: a re-save replaces the root weights file, not the sub-folders' ones.

* shared towers: ``encoder/`` -> ``1_Pooling`` -> ``2_Normalize``. ``encode`` truncates at the passage
  length, ``encode_query`` / ``encode_document`` at the query / passage length, as ``encode_queries`` /
  ``encode_passages`` do.
* separate towers: a ``Router`` whose ``query`` route is ``query_encoder/`` and ``document`` route (also
  the default one, for ``encode``) is ``passage_encoder/``, each truncating at its own length.

Reranker, for ``CrossEncoder(folder, trust_remote_code=True)`` (or without it once ``modeling_rq2`` is
imported): one ``Transformer`` module over the root folder itself, which ``AutoModelForSequenceClassification``
resolves to ``RQ2Reranker``, so nothing is duplicated. ``config_sentence_transformers.json`` sets the identity
activation, so ``predict`` returns the raw logits of ``score_pairs`` rather than their sigmoid.

Passages: ``encode_passages`` / ``score_pairs`` render ``{"title", "text"}`` dicts as ``title [SEP] text``;
sentence-transformers takes strings, so pass ``format_passage(passage, tokenizer.sep_token)`` for the same
result (plain string passages are the same in both). A model of ``input_format`` official reads a title and its
text as two segments: pass the retriever a ``(title, text)`` pair, and the re-ranker ``format_passage(passage)``
(``title text``).

The files are plain JSON (exporting does not need sentence-transformers); loading them needs
sentence-transformers >= 6.2 (declared in ``config_sentence_transformers.json``).
"""

import inspect
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from safetensors import safe_open
from safetensors.torch import save_file

from .modeling_rq2 import RQ2Reranker, RQ2Retriever

_WEIGHTS_FILE = "model.safetensors"
_TRANSFORMER = "sentence_transformers.base.modules.transformer.Transformer"
_POOLING = "sentence_transformers.sentence_transformer.modules.pooling.Pooling"
_NORMALIZE = "sentence_transformers.base.modules.normalize.Normalize"
_ROUTER = "sentence_transformers.base.modules.router.Router"
_REQUIREMENTS = {
    "sentence_transformers": {
        "specifier": ">=6.2",
        "reason": "exported by modeling_rq2 for the sentence-transformers 6.2 module layout",
    }
}
# Our pooling / similarity values that are also sentence-transformers' Pooling modes / similarity_fn_names.
_POOLING_MODES = ("cls", "mean")
_SIMILARITY_FNS = ("dot", "cosine")


def export_retriever(model: RQ2Retriever, folder: str | os.PathLike) -> None:
    """Make ``folder`` (written by ``model.save_pretrained(folder)``) load with ``SentenceTransformer(folder)``.

    The loaded model's ``encode_query`` / ``encode_document`` give ``model.encode_queries`` /
    ``model.encode_passages`` (see the module docstring for the layout and for dict passages).
    """
    folder = Path(folder)
    config = model.config
    pooling = _choice(config, "pooling", _POOLING_MODES)
    similarity = _choice(config, "similarity", _SIMILARITY_FNS)
    tokenizer = model._require_tokenizer()
    query_length = model._length(config.query_max_length)
    passage_length = model._length(config.passage_max_length)
    tower_names = ["query_encoder"] if config.shared_towers else ["query_encoder", "passage_encoder"]
    root_file = _saved_weights(folder)
    tensor_names = _tensor_names_by_tower(root_file, tower_names)

    def write_tower(tower_name: str, subfolder: str, settings: dict[str, Any]) -> None:
        """One ``Transformer`` module: plain encoder config, tokenizer, the tower's weights and settings."""
        target = folder / subfolder
        target.mkdir(exist_ok=True)
        config.encoder_config.save_pretrained(target)
        tokenizer.save_pretrained(target)
        _write_tower_weights(root_file, tensor_names[tower_name], target / _WEIGHTS_FILE, link=config.shared_towers)
        model_kwargs: dict[str, Any] = {"key_mapping": {f"^{re.escape(tower_name)}\\.": ""}}
        if "add_pooling_layer" in inspect.signature(type(getattr(model, tower_name)).__init__).parameters:
            model_kwargs["add_pooling_layer"] = False  # our towers have no pooler (see _build_encoder)
        _write_json(
            target / "sentence_bert_config.json",
            {
                "transformer_task": "feature-extraction",
                "modality_config": {"text": {"method": "forward", "method_output_name": "last_hidden_state"}},
                "module_output_name": "token_embeddings",
                "model_kwargs": model_kwargs,
                **settings,
            },
        )

    if config.shared_towers:
        write_tower(
            "query_encoder",
            "encoder",
            {
                "max_seq_length": passage_length,
                "query_length": query_length,
                "document_length": passage_length,
            },
        )
        modules = [_module(0, "encoder", _TRANSFORMER)]
    else:
        write_tower("query_encoder", "query_encoder", {"max_seq_length": query_length})
        write_tower("passage_encoder", "passage_encoder", {"max_seq_length": passage_length})
        _write_json(
            folder / "router_config.json",
            {
                "types": {"query_encoder": _TRANSFORMER, "passage_encoder": _TRANSFORMER},
                "structure": {"query": ["query_encoder"], "document": ["passage_encoder"]},
                "parameters": {"default_route": "document", "allow_empty_key": True, "route_mappings": {}},
            },
        )
        modules = [_module(0, "", _ROUTER)]

    (folder / "1_Pooling").mkdir(exist_ok=True)
    _write_json(
        folder / "1_Pooling" / "config.json",
        {
            "embedding_dimension": model.embedding_dim,
            "pooling_mode": pooling,
            "include_prompt": True,
        },
    )
    modules.append(_module(1, "1_Pooling", _POOLING))
    if similarity == "cosine":
        (folder / "2_Normalize").mkdir(exist_ok=True)
        _write_json(
            folder / "2_Normalize" / "config.json",
            {
                "module_input_name": "sentence_embedding",
                "module_output_name": "sentence_embedding",
            },
        )
        modules.append(_module(2, "2_Normalize", _NORMALIZE))
    _write_json(folder / "modules.json", modules)
    _write_json(
        folder / "config_sentence_transformers.json",
        {
            "model_type": "SentenceTransformer",
            "prompts": {"query": config.query_prompt, "document": config.passage_prompt},
            "default_prompt_name": "document" if config.passage_prompt else None,  # encode() is the passage route
            "similarity_fn_name": similarity,
            "requirements": _REQUIREMENTS,
        },
    )


def export_reranker(model: RQ2Reranker, folder: str | os.PathLike) -> None:
    """Make ``folder`` (written by ``model.save_pretrained(folder)``) load with ``CrossEncoder(folder)``.

    Pass ``trust_remote_code=True`` unless ``modeling_rq2`` is imported. ``predict`` then returns
    ``model.score_pairs``'s raw logits, truncated at the same length; no weights are duplicated.
    """
    folder = Path(folder)
    if model.config.num_labels != 1:
        raise ValueError(f"RQ2RerankerConfig.num_labels must be 1 to export, got {model.config.num_labels}")
    model._require_tokenizer()
    _saved_weights(folder)
    _write_json(
        folder / "sentence_bert_config.json",
        {
            "transformer_task": "sequence-classification",
            "modality_config": {"text": {"method": "forward", "method_output_name": "logits"}},
            "module_output_name": "scores",
            "max_seq_length": model._length(model.config.max_length),
        },
    )
    _write_json(folder / "modules.json", [_module(0, "", _TRANSFORMER)])
    _write_json(
        folder / "config_sentence_transformers.json",
        {
            "model_type": "CrossEncoder",
            "prompts": {},
            "default_prompt_name": None,
            "activation_fn": "torch.nn.modules.linear.Identity",  # raw logits, as score_pairs
            "requirements": _REQUIREMENTS,
        },
    )


def _choice(config, field: str, supported: tuple[str, ...]) -> str:
    """A config choice that sentence-transformers shares; ValueError naming the field otherwise."""
    value = getattr(config, field)
    if value not in supported:
        raise ValueError(
            f"{type(config).__name__}.{field}={value!r} has no sentence-transformers equivalent "
            f"(supported: {supported})"
        )
    return value


def _saved_weights(folder: Path) -> Path:
    """The folder's ``model.safetensors``: the export completes a folder written by ``save_pretrained``."""
    path = folder / _WEIGHTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: export a folder written by save_pretrained (one safetensors file)")
    return path


def _tensor_names_by_tower(root_file: Path, tower_names: list[str]) -> dict[str, list[str]]:
    """Tensor names of the root weights file per tower; every tensor must belong to one (none may be dropped)."""
    with safe_open(root_file, framework="pt") as f:
        names = list(f.keys())
    by_tower = {tower: [name for name in names if name.startswith(f"{tower}.")] for tower in tower_names}
    left = set(names).difference(*by_tower.values())
    if left:
        raise ValueError(f"{root_file} holds tensors outside the towers {tower_names}: {sorted(left)[:5]}")
    return by_tower


def _write_tower_weights(root_file: Path, tensor_names: list[str], target: Path, link: bool) -> None:
    """Give ``target`` a tower's tensors: a hard link to the root file if ``link`` (it holds only that tower),
    else a new file with just them."""
    target.unlink(missing_ok=True)  # never write through an earlier hard link into the root file
    if link:
        try:
            os.link(root_file, target)
        except OSError:  # no hard links on this file system
            shutil.copyfile(root_file, target)
        return
    with safe_open(root_file, framework="pt") as f:
        tensors = {name: f.get_tensor(name) for name in tensor_names}
    save_file(tensors, target, metadata={"format": "pt"})


def _module(idx: int, path: str, class_ref: str) -> dict[str, Any]:
    return {"idx": idx, "name": str(idx), "path": path, "type": class_ref}


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


__all__ = ["export_reranker", "export_retriever"]
