"""RocketQAv2 models: the dual-encoder retriever and the cross-encoder re-ranker.

This file is self-contained (it imports only transformers, its safetensors, torch, numpy and its configuration),
because ``save_pretrained`` copies it next to the weights so that a saved folder loads with
``trust_remote_code=True`` where the ``modeling_rq2`` package is not installed.
"""

import contextlib
import copy
import hashlib
import json
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from torch import nn
from transformers import AutoModel, AutoTokenizer, PreTrainedConfig, PreTrainedModel, PreTrainedTokenizerBase
from transformers.utils import ModelOutput, cached_file

from .configuration_rq2 import RQ2RerankerConfig, RQ2RetrieverConfig

logger = logging.getLogger(__name__)

Passage = str | dict
"""A passage is a plain string or a mapping with ``text`` and an optional ``title``."""

# Keyword arguments of ``from_pretrained`` that also locate the tokenizer in the same repo or folder.
_HUB_KWARGS = ("cache_dir", "force_download", "local_files_only", "token", "revision", "subfolder", "proxies")
_TOKENIZER_KWARGS = (*_HUB_KWARGS, "trust_remote_code")
WEIGHTS_MANIFEST = "weights.sha256"
"""Written by ``save_pretrained``: the sha256 of each weight file (``sha256sum -c`` reads it), checked on load, since
safetensors files carry no checksum and altered bytes would load silently."""


def title_and_text(passage: Passage) -> tuple[str, str]:
    """A passage's (title, text): a plain string is a text without a title."""
    if isinstance(passage, str):
        return "", passage
    if not isinstance(passage, dict) or "text" not in passage:
        raise TypeError(
            f"a passage must be a str or a dict with a 'text' key, got {type(passage).__name__}: {passage!r:.80}"
        )
    return (passage.get("title") or "").strip(), passage["text"]


def as_batch(values, what: str) -> tuple[list, bool]:
    """``values`` as a list, and whether one item came alone: a string (or a passage dict) in, one result out, as
    in sentence-transformers (iterating a string gave one embedding per character). Queries must be strings,
    passages strings or ``{"title", "text"}`` dicts of strings; anything else is refused naming its position
    (``None`` or a number became the text "None" or "7")."""
    single = isinstance(values, str) or (what == "passage" and isinstance(values, dict))
    if not single and not isinstance(values, Iterable):
        expected = "a string" if what == "query" else "a string, a {'title', 'text'} dict"
        raise TypeError(f"expected {expected} or a list of them, got {type(values).__name__}: {values!r:.80}")
    items = [values] if single else list(values)
    for position, item in enumerate(items):
        check_item(item, what, f"{what} {position}")
    return items, single


def check_item(item, what: str, where: str) -> None:
    """Refuse a query that is not a string, or a passage that is not a string or a dict of string title / text."""
    if isinstance(item, str):
        return
    if what == "passage" and isinstance(item, dict):
        if isinstance(item.get("text"), str) and isinstance(item.get("title") or "", str):
            return
    expected = "a string" if what == "query" else "a string or a {'title', 'text'} dict of strings"
    raise TypeError(f"{where} must be {expected}, got {type(item).__name__}: {item!r:.80}")


def format_passage(passage: Passage, separator: str = "") -> str:
    """Render a passage as ``title <separator> text`` (the paper's passage input), or ``text`` alone."""
    title, text = title_and_text(passage)
    return " ".join(part for part in (title, separator, text) if part) if title else text


def pool(hidden_states: torch.Tensor, attention_mask: torch.Tensor, mode: str) -> torch.Tensor:
    """Pool token vectors (batch, seq, dim) into one vector per sequence: ``cls`` or masked ``mean``."""
    if mode == "cls":
        return hidden_states[:, 0]
    mask = attention_mask.unsqueeze(-1).to(hidden_states.dtype)
    return (hidden_states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


def similarity_scores(queries: torch.Tensor, passages: torch.Tensor) -> torch.Tensor:
    """Query-passage scores in float32 whatever the autocast (every score that enters a softmax or a KL comes from
    here): (b, d) x (b, m, d) -> (b, m), each query against its own list; (b, d) x (n, d) -> (b, n)."""
    with torch.autocast(device_type=queries.device.type, enabled=False):
        queries, passages = queries.float(), passages.float()
        return torch.einsum("bd,bld->bl", queries, passages) if passages.dim() == 3 else queries @ passages.T


def _build_encoder(encoder_config) -> PreTrainedModel:
    """A bare encoder from its config, without the unused pooler (unused parameters break DDP)."""
    try:
        return AutoModel.from_config(encoder_config, add_pooling_layer=False)
    except TypeError:
        return AutoModel.from_config(encoder_config)


def _load_backbone_weights(tower: nn.Module, backbone: PreTrainedModel, name_or_path: str) -> None:
    """Copy a pretrained encoder's weights into a tower; every tower weight must be covered."""
    missing, _unexpected = tower.load_state_dict(backbone.state_dict(), strict=False)
    if missing:
        raise ValueError(f"backbone {name_or_path!r} lacks weights for {missing[:5]} ({len(missing)} in all)")


@contextlib.contextmanager
def _safetensors_only(name_or_path, allow_pickle: bool, use_safetensors: bool | None = None):
    """Yield the ``use_safetensors`` keyword to load with; turn a missing-safetensors error into a clear one."""
    if allow_pickle:
        yield {} if use_safetensors is None else {"use_safetensors": use_safetensors}
        return
    if use_safetensors is False:
        raise ValueError(
            "use_safetensors=False loads pickle weights, which can run code: pass allow_pickle=True as well"
        )
    try:
        yield {"use_safetensors": True}
    except OSError as err:
        if "safetensors" not in str(err):
            raise
        folder = Path(name_or_path)
        if folder.is_dir() and not any(folder.glob("*.bin")):
            raise OSError(f"{name_or_path}: holds no weight file (model.safetensors is missing)") from err
        raise OSError(
            f"{name_or_path}: no safetensors weights (only pickle files such as pytorch_model.bin, which can run code "
            "when loaded). Convert them to safetensors, or pass allow_pickle=True if you trust their source."
        ) from err


INFERENCE_PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")
"""How encoding and scoring compute: ``auto`` picks bf16 where the hardware runs it natively, else fp32; ``int8``
is dynamic quantisation of the CPU model's linear layers (``int8_towers``)."""


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 natively: a GPU of compute capability 8.0 or more (``is_bf16_supported`` also
    says yes for a V100 or T4, which emulate it), a CPU with AVX512-BF16 or AMX (asked of the processor at run time:
    an AVX2-only CPU emulates bf16, slower than fp32)."""
    if device.type == "cuda":
        return torch.cuda.get_device_capability(device) >= (8, 0)
    if device.type == "cpu":
        probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        return any(getattr(torch.cpu, name, lambda: False)() for name in probes)
    return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """``precision`` as it computes on ``device``: ``auto`` -> bf16 where the device runs it natively, else fp32."""
    if precision not in INFERENCE_PRECISIONS:
        raise ValueError(f"precision must be one of {INFERENCE_PRECISIONS}, got {precision!r}")
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return precision


def inference_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of an inference call at ``precision`` (None: plain float32, or int8's own layers)."""
    precision = resolve_precision(precision, device)
    if precision == "int8" and device.type != "cpu":
        raise ValueError(f"precision int8 is dynamic quantisation for the CPU; this model is on {device}: use bf16")
    return {"fp32": None, "int8": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


INFERENCE_BACKENDS = ("torch", "openvino")
"""What runs the encoders at inference: PyTorch, or an OpenVINO compilation of them (CPU; ``pip install openvino``),
which encoded 1.25x faster than PyTorch on an AVX2 CPU with the same embeddings."""


class OpenVINOEncoder(nn.Module):
    """An encoder compiled by OpenVINO, called as the transformers encoder it stands in for (``last_hidden_state``)."""

    def __init__(self, compiled):
        super().__init__()
        self.compiled = compiled
        self.anchor = nn.Parameter(torch.empty(0), requires_grad=False)  # so the model still has a device

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, **_):
        attention_mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        token_type_ids = torch.zeros_like(input_ids) if token_type_ids is None else token_type_ids
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
        hidden = self.compiled({name: value.cpu().numpy() for name, value in inputs.items()})[0]
        return ModelOutput(last_hidden_state=torch.from_numpy(hidden))


class _HiddenStates(nn.Module):
    """An encoder's forward as positional inputs to last_hidden_state (what OpenVINO traces)."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids, attention_mask, token_type_ids):
        return self.encoder(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        ).last_hidden_state


def compile_openvino(module: nn.Module, *, precision: str = "fp32") -> OpenVINOEncoder:
    """An OpenVINO compilation of ``module`` for the CPU (dynamic batch and length), computing in ``precision``
    (fp32, or bf16 where the CPU has it; OpenVINO would otherwise choose bf16 itself on AMX CPUs)."""
    try:
        import openvino
    except ImportError as err:
        raise ImportError("backend openvino needs the openvino package: pip install openvino") from err
    ids = torch.ones((2, 8), dtype=torch.long)
    example = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}
    traced = _HiddenStates(copy.deepcopy(module).float().eval())
    with torch.no_grad():
        graph = openvino.convert_model(traced, example_input=example)
    hint = {"fp32": "f32", "bf16": "bf16"}[precision]
    config = {
        "INFERENCE_NUM_THREADS": str(torch.get_num_threads()),
        "INFERENCE_PRECISION_HINT": hint,
        # OpenVINO pins its threads to cores by default: beside another process pinned the same way (two runs at one
        # thread each on two cores) both landed on core 0, and encoding ran at 0.7x; the OS schedules better
        "ENABLE_CPU_PINNING": "NO",
    }
    return OpenVINOEncoder(openvino.Core().compile_model(graph, "CPU", config))


def default_device() -> torch.device:
    """The device a run will compute on: a GPU when one is visible (and ``accelerate launch --cpu`` did not refuse
    it), else the CPU."""
    cpu = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
    return torch.device("cuda" if torch.cuda.is_available() and not cpu else "cpu")


def check_inference(precision: str, backend: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``precision`` on ``backend`` (None where the backend computes without autocast), or a
    ValueError for a pair ``device`` cannot run (int8 and OpenVINO are for the CPU; OpenVINO in fp32 or bf16): the
    one check of the models' calls and of the command lines, which run it before anything loads or trains."""
    if backend not in INFERENCE_BACKENDS:
        raise ValueError(f"backend must be one of {INFERENCE_BACKENDS}, got {backend!r}")
    dtype = inference_dtype(precision, device)
    if backend == "openvino" and (device.type != "cpu" or precision not in ("auto", "fp32", "bf16")):
        raise ValueError(f"backend openvino runs on the CPU in fp32 or bf16, got {precision} on {device}")
    return dtype


def _keeps_float(name: str) -> bool:
    """Linear layers int8 leaves in float32: each layer's feed-forward output (``output.dense``, whose GELU inputs
    have outliers a per-tensor activation scale crushes). Measured on all-MiniLM-L6-v2, 128 SciFact passages at 256
    tokens: every linear layer in int8 gave a cosine to fp32 of 0.924 on average (0.882 at worst); these kept in
    float32, 0.991 (0.986). BERT's layer names: another architecture's (DistilBERT's ``ffn.lin2``) is all
    quantised, the 0.92 case."""
    return name.endswith("output.dense") and ".attention." not in f".{name}"


def quantize_int8(module: nn.Module) -> nn.Module:
    """A copy of ``module`` with its linear layers, but ``_keeps_float``'s, dynamically quantised to int8 (weights
    per tensor, activations per batch). ``torch.ao``'s dynamic quantisation: torchao's int8 (its successor) ran 16x
    slower than float32 on the CPU with torch 2.13, having no CPU kernel for it."""
    import warnings

    from torch.ao.quantization import quantize_dynamic

    names = {name for name, child in module.named_modules() if isinstance(child, nn.Linear) and not _keeps_float(name)}
    with warnings.catch_warnings():  # torch.ao's deprecation notices, once per layer
        warnings.simplefilter("ignore")
        return quantize_dynamic(copy.deepcopy(module).float().eval(), names, dtype=torch.qint8)


NO_TOKENIZER_LIMIT = 1_000_000
"""A tokenizer's ``model_max_length`` at or above this is transformers' "no limit" placeholder (about 1e30)."""


def capped_length(requested: int, positions: int | None, tokenizer_max: int | None) -> int:
    """A max length the backbone can take: ``requested``, never beyond its position embeddings or its tokenizer's
    ``model_max_length`` (where they are known)."""
    limits = [positions, tokenizer_max if tokenizer_max is not None and tokenizer_max < NO_TOKENIZER_LIMIT else None]
    return min([requested, *(limit for limit in limits if isinstance(limit, int))])


def file_sha256(path: Path) -> str:
    """The sha256 of a file, read in 4 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def write_weights_manifest(folder: str | os.PathLike) -> None:
    """``weights.sha256`` beside the weights: one ``<sha256>  <file>`` line per safetensors file."""
    folder = Path(folder)
    lines = [f"{file_sha256(path)}  {path.name}\n" for path in sorted(folder.glob("*.safetensors"))]
    (folder / WEIGHTS_MANIFEST).write_text("".join(lines), encoding="utf-8")


def check_weights_manifest(folder: Path) -> None:
    """Refuse weight files whose bytes differ from those saved (a folder without a manifest is not checked)."""
    manifest = folder / WEIGHTS_MANIFEST
    if not manifest.is_file():
        return
    for number, line in enumerate(manifest.read_text(encoding="utf-8").splitlines(), 1):
        digest, _, name = line.partition("  ")
        path = folder / name
        if len(digest) != 64 or not name or "/" in name or "\\" in name:
            raise ValueError(f"{manifest}:{number}: not a '<sha256>  <file>' line")
        if path.is_file() and file_sha256(path) != digest:  # a missing one cannot load silently: the loader names it
            raise ValueError(
                f"{path}: its bytes differ from the sha256 in {WEIGHTS_MANIFEST} written when it was saved (altered or "
                "damaged); restore the file or save the model again"
            )


def local_model_folder(name_or_path, hub_kwargs: dict) -> Path | None:
    """The local folder a name points to (None: a Hub repo id); a path that names no folder, or a folder with no
    config.json, is refused with that reason (transformers would report a bad repo id, or model type None)."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        if "subfolder" not in hub_kwargs and not (path / "config.json").is_file():
            raise ValueError(f"{name_or_path}: a folder without config.json, not a saved model (see save_pretrained)")
        return path
    text = str(name_or_path)
    if path.exists() or text.startswith((".", "/", "~")) or text.count("/") > 1 or "\\" in text:
        raise FileNotFoundError(f"{name_or_path}: no such model folder (and not a Hub repo id 'owner/name')")
    return None


def _to(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {key: value.to(device) for key, value in batch.items()}


def _flatten_list_dim(*tensors: torch.Tensor | None) -> tuple[torch.Tensor | None, ...]:
    """(batch, list, seq) -> (batch * list, seq); 2-D tensors and None pass through."""
    return tuple(t.reshape(-1, t.shape[-1]) if t is not None and t.dim() == 3 else t for t in tensors)


def _tokenize_segments(tokenizer, parts: list[tuple[str, str]], max_length: int) -> dict[str, torch.Tensor]:
    """(title, text) pairs as segments A and B, a text without a title as a single segment; padded, in input order."""
    rows: dict[int, dict] = {}
    for titled in (True, False):
        indices = [i for i, (title, _) in enumerate(parts) if bool(title) == titled]
        if indices:
            first = [parts[i][0 if titled else 1] for i in indices]
            second = [parts[i][1] for i in indices] if titled else None
            encoded = tokenizer(first, second, truncation=True, max_length=max_length)
            rows.update({i: {key: values[n] for key, values in encoded.items()} for n, i in enumerate(indices)})
    return tokenizer.pad([rows[i] for i in range(len(parts))], return_tensors="pt")


@dataclass
class RQ2RetrieverOutput(ModelOutput):
    """Retriever output.

    scores: (batch, list) when passages come as (batch, list, seq), one list per query, as in
        RocketQAv2 training; (batch, n_passages) for a flat (n_passages, seq) batch.
    """

    embeddings: torch.FloatTensor | None = None
    """(batch, dim) when called as a feature extractor, ``model(input_ids=..., attention_mask=...)``."""
    scores: torch.FloatTensor | None = None
    query_embeddings: torch.FloatTensor | None = None
    passage_embeddings: torch.FloatTensor | None = None


@dataclass
class RQ2RerankerOutput(ModelOutput):
    """Re-ranker output. logits: (batch,) for pairs, (batch, list) for (batch, list, seq) inputs; loss: with
    ``labels``, as a ``...ForSequenceClassification`` returns it."""

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None


class RQ2PreTrainedModel(PreTrainedModel):
    """Shared plumbing: the tokenizer travels with the model, and models start from a plain backbone."""

    base_model_prefix = "rq2"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _extra_auto_classes: tuple[str, ...] = ()
    _encoder_names: tuple[str, ...] = ()
    """The attributes holding transformer encoders (what ``int8_towers`` quantises)."""

    def __init__(self, config, tokenizer: PreTrainedTokenizerBase | None = None):
        super().__init__(config)
        self.tokenizer = tokenizer
        self._warned_caps: set[tuple[int, int]] = set()
        self.inference_precision = "fp32"
        """What encoding and scoring calls use when they are given no ``precision`` (``INFERENCE_PRECISIONS``)."""
        self.inference_backend = "torch"
        """What runs the encoders in those calls when they name none (``INFERENCE_BACKENDS``)."""
        self.register_load_state_dict_post_hook(self._drop_inference_towers)

    @classmethod
    def _config_from_backbone(cls, name_or_path: str, encoder_config, overrides: dict):
        return cls.config_class(encoder_config=encoder_config, **overrides)

    def _drop_inference_towers(self, *_) -> None:
        self.__dict__.pop("_inference_towers", None)

    def train(self, mode: bool = True):
        """As ``nn.Module.train``; training mode also drops the int8 / OpenVINO copies (the weights are about to
        change, by updates a tensor's version does not always count: fused optimizers, ``.data``; a model trained in
        the mode it already had, as one fresh from ``from_backbone``, relies on the versions)."""
        if mode:
            self._drop_inference_towers()
        return super().train(mode)

    def _apply(self, fn, *args, **kwargs):
        self._drop_inference_towers()  # .to(), .float(), .cuda(): the copies no longer match
        return super()._apply(fn, *args, **kwargs)

    def _cached_towers(self, kind: str, make) -> dict[str, nn.Module]:
        """``make(encoder)`` of each encoder by attribute name, made once per ``kind`` and kept in memory until a
        weight may change: training mode, ``load_state_dict``, ``.to()``, or any in-place update a tensor's version
        counts."""
        encoders = {name: getattr(self, name) for name in self._encoder_names if getattr(self, name) is not None}
        stamp = tuple((id(p), p._version) for module in encoders.values() for p in module.parameters())
        cache = self.__dict__.setdefault("_inference_towers", {})  # outside _modules: never saved, moved or trained
        if kind not in cache or cache[kind][0] != stamp:
            cache[kind] = (stamp, {name: make(module) for name, module in encoders.items()})
        return cache[kind][1]

    def int8_towers(self) -> dict[str, nn.Module]:
        """The encoders' int8 copies (``quantize_int8``), cached (``_cached_towers``)."""
        return self._cached_towers("int8", quantize_int8)

    def openvino_towers(self, precision: str = "fp32") -> dict[str, nn.Module]:
        """The encoders compiled by OpenVINO (``compile_openvino``) at ``precision``, cached (``_cached_towers``)."""
        return self._cached_towers(
            f"openvino-{precision}", lambda module: compile_openvino(module, precision=precision)
        )

    def _stand_ins(self, precision: str, backend: str, dtype: torch.dtype | None) -> dict[str, nn.Module]:
        """The modules that stand in for the encoders during an inference call (``check_inference``'d values)."""
        if backend == "openvino":
            return self.openvino_towers("bf16" if dtype == torch.bfloat16 else "fp32")
        return self.int8_towers() if precision == "int8" else {}

    @classmethod
    def from_backbone(
        cls,
        name_or_path: str | os.PathLike,
        encoder_overrides: dict | None = None,
        allow_pickle: bool = False,
        dtype: torch.dtype | None = None,
        **config_overrides,
    ):
        """Build a fresh model from a plain pretrained encoder (a Hub name or a local folder).

        Keyword arguments override config fields (e.g. ``pooling="mean"``); ``encoder_overrides``
        override the backbone's own config (e.g. ``{"attention_probs_dropout_prob": 0.0}``). The
        backbone's tokenizer becomes the model's tokenizer. Weights load from safetensors only,
        unless ``allow_pickle`` (pickle files can run code when loaded). ``dtype`` (e.g. ``torch.bfloat16``):
        the weights' type, as ``from_pretrained`` takes it (it was dropped silently).
        """
        name_or_path = str(name_or_path)
        with _safetensors_only(name_or_path, allow_pickle) as safe:
            backbone = AutoModel.from_pretrained(name_or_path, **safe, **(encoder_overrides or {}))
        config = cls._config_from_backbone(name_or_path, backbone.config, dict(config_overrides))
        model = cls(config, tokenizer=AutoTokenizer.from_pretrained(name_or_path))
        for tower in model._towers():
            _load_backbone_weights(tower, backbone, name_or_path)
        model.config.name_or_path = name_or_path
        return model if dtype is None else model.to(dtype)

    def _towers(self) -> list[nn.Module]:
        raise NotImplementedError

    def save_pretrained(self, save_directory: str | os.PathLike, *args, **kwargs) -> None:
        """Save config, safetensors weights, the modeling code (for ``trust_remote_code``) and the tokenizer; the
        backbone's local path (the encoder config's ``_name_or_path``) is written as its last component."""
        if self._auto_class is not None:
            auto_map = dict(getattr(self.config, "auto_map", None) or {})
            for auto_class in self._extra_auto_classes:
                auto_map[auto_class] = f"modeling_rq2.{type(self).__name__}"
            self.config.auto_map = auto_map
        encoder = getattr(self.config, "encoder_config", None)
        source = getattr(encoder, "_name_or_path", "")
        if source and os.path.isabs(source):  # a local path is no name to publish: its last component
            encoder._name_or_path = Path(source).name
        try:
            super().save_pretrained(save_directory, *args, **kwargs)
        finally:
            if source:
                encoder._name_or_path = source
        if kwargs.get("is_main_process", True):
            write_weights_manifest(save_directory)
            if self.tokenizer is not None:
                self.tokenizer.save_pretrained(save_directory)

    def push_to_hub(self, repo_id: str, **kwargs) -> Any:
        """Upload this model as ``push_to_hub.py`` stages one: weights, code, tokenizer, the sentence-transformers
        files and a model card (kept when the repo already has one). Keyword options as transformers'
        ``push_to_hub`` (``private``, ``token``, ``revision``, ``create_pr``, ``commit_message``, ``tags``, ...).
        Staging needs the ``modeling_rq2`` package installed (a folder loaded with ``trust_remote_code`` has only
        its modeling code)."""
        try:
            from modeling_rq2.hub.publish import push_model
        except ImportError as err:
            raise ImportError(
                f"{type(self).__name__}.push_to_hub stages the sentence-transformers files and the model card with "
                "the modeling_rq2 package, which is not installed here (install it from its source: pip install .)"
            ) from err
        return push_model(self, repo_id, **kwargs)

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path,
        *args,
        allow_pickle: bool = False,
        allow_missing_weights: bool = False,
        **kwargs,
    ):
        """Load a saved model and, when the folder or repo holds one, its tokenizer.

        Weights load from safetensors only: a folder with just pickle weights (``pytorch_model.bin``)
        is refused unless ``allow_pickle=True``, since unpickling can run code. A folder of another model type
        (the other role, a plain encoder) is refused, and so is any load that leaves weights at their random
        initialisation, unless ``allow_missing_weights=True``. A local folder's weight files are checked against the
        sha256 ``save_pretrained`` recorded (``weights.sha256``), when it is there.
        """
        hub_kwargs = {key: kwargs[key] for key in _HUB_KWARGS if key in kwargs}
        tokenizer_kwargs = {key: kwargs[key] for key in _TOKENIZER_KWARGS if key in kwargs}
        folder = local_model_folder(pretrained_model_name_or_path, hub_kwargs)
        if not isinstance(kwargs.get("config"), PreTrainedConfig):
            try:
                cls._check_model_type(pretrained_model_name_or_path, hub_kwargs)
            except OSError as err:
                if folder is not None:
                    raise
                raise OSError(
                    f"{pretrained_model_name_or_path}: no local folder of that name, and no model could be loaded "
                    f"from the Hub under it ({str(err).splitlines()[0][:200]})"
                ) from err
        if folder is not None:
            check_weights_manifest(folder)
        want_info = kwargs.pop("output_loading_info", False)
        with _safetensors_only(
            pretrained_model_name_or_path, allow_pickle, kwargs.pop("use_safetensors", None)
        ) as safe:
            try:
                model, info = super().from_pretrained(
                    pretrained_model_name_or_path, *args, **safe, output_loading_info=True, **kwargs
                )
            except SafetensorError as err:
                raise ValueError(
                    f"{pretrained_model_name_or_path}: a weight file is not readable safetensors ({err}): truncated or "
                    "damaged; restore it or save the model again"
                ) from None
        model.config.check()  # overrides given to from_pretrained are set after the config was checked
        if info["missing_keys"] and not allow_missing_weights:
            missing = sorted(info["missing_keys"])
            raise ValueError(
                f"{pretrained_model_name_or_path}: {len(missing)} weights of {cls.__name__} are not in its weight "
                f"files (e.g. {missing[:3]}); they would be random. Pass allow_missing_weights=True to load anyway"
            )
        if info["unexpected_keys"] and not allow_missing_weights:
            unused = sorted(info["unexpected_keys"])
            raise ValueError(
                f"{pretrained_model_name_or_path}: {len(unused)} weights in its files have no place in this "
                f"{cls.__name__} (e.g. {unused[:3]}; a separate passage tower loaded with shared_towers=True?): they "
                "would be dropped. Load with the folder's own config, or pass allow_missing_weights=True"
            )
        tokenizer_file = cached_file(
            pretrained_model_name_or_path,
            "tokenizer_config.json",
            _raise_exceptions_for_missing_entries=False,
            **hub_kwargs,
        )
        if tokenizer_file is not None:
            try:
                model.tokenizer = AutoTokenizer.from_pretrained(pretrained_model_name_or_path, **tokenizer_kwargs)
            except Exception as err:  # the tokenizers library raises a bare Exception for a malformed tokenizer.json
                raise ValueError(
                    f"{pretrained_model_name_or_path}: its tokenizer files do not load ({type(err).__name__}: "
                    f"{str(err)[:200]}); restore them (tokenizer.json, tokenizer_config.json, vocab) or save again"
                ) from None
        return (model, info) if want_info else model

    @classmethod
    def _check_model_type(cls, name_or_path, hub_kwargs: dict) -> None:
        """Refuse a folder or repo whose config is not this class's model type (e.g. a re-ranker as a retriever)."""
        config, _ = PreTrainedConfig.get_config_dict(name_or_path, **hub_kwargs)
        found, expected = config.get("model_type"), cls.config_class.model_type
        if found != expected:
            other = {"rq2_retriever": "RQ2Retriever", "rq2_reranker": "RQ2Reranker"}.get(found)
            hint = f"load it with {other}" if other else f"start from it with {cls.__name__}.from_backbone"
            raise ValueError(
                f"{name_or_path}: its config.json is model_type {found!r}, not {expected!r} ({cls.__name__}): {hint}"
            )

    def _length(self, requested: int) -> int:
        """A max length the backbone can take: never beyond its position embeddings or tokenizer limit.

        A cap below the requested length is logged once (a tokenizer saved by sentence-transformers
        carries its ``max_seq_length`` as ``model_max_length``).
        """
        positions = getattr(self.config.encoder_config, "max_position_embeddings", None)
        tokenizer_max = getattr(self.tokenizer, "model_max_length", None)
        length = capped_length(requested, positions, tokenizer_max)
        if length < requested and (requested, length) not in self._warned_caps:
            self._warned_caps.add((requested, length))
            logger.warning(
                "%s: max length %d capped at %d (position embeddings %s, tokenizer model_max_length %s)",
                type(self).__name__,
                requested,
                length,
                positions if positions is not None else "-",
                tokenizer_max if tokenizer_max is not None and tokenizer_max < NO_TOKENIZER_LIMIT else "-",
            )
        return length

    def _require_tokenizer(self) -> PreTrainedTokenizerBase:
        if self.tokenizer is None:
            raise ValueError(
                f"{type(self).__name__} has no tokenizer: build it with from_backbone(...), load a folder saved "
                "with one, or set `model.tokenizer = AutoTokenizer.from_pretrained(...)`"
            )
        return self.tokenizer

    @torch.inference_mode()
    def _batched(
        self,
        texts: Sequence,
        encode_batch,
        batch_size: int,
        show_progress_bar: bool | None,
        desc: str,
        precision: str | None = None,
        backend: str | None = None,
    ):
        """Run ``encode_batch`` over texts sorted by length (less padding) and restore the input order, at
        ``precision`` on ``backend`` (``_stand_ins``); the outputs come back as float32."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        precision, backend = precision or self.inference_precision, backend or self.inference_backend
        dtype = check_inference(precision, backend, self.device)  # a bad value named before anything is built
        order = np.argsort([-len(str(t)) for t in texts], kind="stable")
        was_training = self.training
        self.eval()
        starts = range(0, len(texts), batch_size)
        if show_progress_bar is None:
            show_progress_bar = len(texts) > 4 * batch_size
        if show_progress_bar:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc=desc, unit="batch")
        originals = {}
        try:
            towers = self._stand_ins(precision, backend, dtype)
            originals = {name: getattr(self, name) for name in towers}
            self._modules.update(towers)  # the int8 / OpenVINO copies stand in for the encoders during the call
            autocast = dtype is not None and backend == "torch"  # OpenVINO computes at its own precision
            with torch.autocast(device_type=self.device.type, dtype=dtype, enabled=autocast):
                chunks = [encode_batch([texts[i] for i in order[s : s + batch_size]]).float().cpu() for s in starts]
        finally:
            self._modules.update(originals)
            nn.Module.train(self, was_training)  # back as it was, the copies kept: nothing trained in between
        if not chunks:
            return None
        out = torch.cat(chunks).numpy()
        result = np.empty_like(out)
        result[order] = out
        return result


class RQ2Retriever(RQ2PreTrainedModel):
    """RocketQAv2 dual encoder: embeds queries and passages apart; relevance is their similarity.

    Example:
        >>> retriever = RQ2Retriever.from_backbone("sentence-transformers/all-MiniLM-L6-v2", pooling="mean")
        >>> q = retriever.encode_queries(["what causes scurvy?"])
        >>> p = retriever.encode_passages([{"title": "Scurvy", "text": "Scurvy is caused by ..."}])
        >>> (q @ p.T).shape
        (1, 1)
    """

    config_class = RQ2RetrieverConfig
    _encoder_names = ("query_encoder", "passage_encoder")

    def __init__(self, config: RQ2RetrieverConfig, tokenizer: PreTrainedTokenizerBase | None = None):
        super().__init__(config, tokenizer)
        self.query_encoder = _build_encoder(config.encoder_config)
        self.passage_encoder = None if config.shared_towers else _build_encoder(config.encoder_config)
        self.post_init()

    def untie_towers(self) -> "RQ2Retriever":
        """Separate query and passage towers from shared ones, the passage tower starting as a copy of the shared
        encoder (as both towers start from one backbone in ``from_backbone``); in place, returns self."""
        if self.passage_encoder is None:
            self.passage_encoder = copy.deepcopy(self.query_encoder)
            self.config.shared_towers = False
        return self

    @classmethod
    def _config_from_backbone(cls, name_or_path: str, encoder_config, overrides: dict):
        """Take pooling, similarity and passage length from a sentence-transformers folder unless the caller set
        them (a pooling the caller sets skips the folder's)."""
        declared = _sentence_transformers_defaults(
            name_or_path, cls.__name__, strict="pooling" not in overrides, read_similarity="similarity" not in overrides
        )
        for key, value in declared.items():
            overrides.setdefault(key, value)
        default = cls.config_class.query_max_length  # never beyond what the folder says a sequence may be
        overrides.setdefault("query_max_length", min(default, overrides.get("passage_max_length", default)))
        return cls.config_class(encoder_config=encoder_config, **overrides)

    def _towers(self) -> list[nn.Module]:
        return [self.query_encoder] if self.passage_encoder is None else [self.query_encoder, self.passage_encoder]

    @property
    def passage_tower(self) -> nn.Module:
        """The passage encoder: the query encoder itself when towers are shared."""
        return self.query_encoder if self.passage_encoder is None else self.passage_encoder

    def _embed(self, encoder: nn.Module, input_ids, attention_mask, token_type_ids=None) -> torch.Tensor:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        hidden = encoder(input_ids=input_ids, attention_mask=attention_mask, **extra).last_hidden_state
        embeddings = pool(hidden.float(), attention_mask, self.config.pooling)  # sums in float32, under autocast too
        if self.config.similarity == "cosine":
            embeddings = nn.functional.normalize(embeddings, p=2, dim=-1)
        return embeddings

    def embed_queries(self, input_ids, attention_mask=None, token_type_ids=None) -> torch.Tensor:
        """Query embeddings (batch, dim) from token ids, with gradient (for training)."""
        return self._embed(self.query_encoder, input_ids, attention_mask, token_type_ids)

    def embed_passages(self, input_ids, attention_mask=None, token_type_ids=None) -> torch.Tensor:
        """Passage embeddings from token ids: (n, dim) for (n, seq), (batch, list, dim) for (batch, list, seq)."""
        shape = input_ids.shape
        input_ids, attention_mask, token_type_ids = _flatten_list_dim(input_ids, attention_mask, token_type_ids)
        embeddings = self._embed(self.passage_tower, input_ids, attention_mask, token_type_ids)
        return embeddings.reshape(*shape[:-1], -1)

    def forward(
        self,
        query_input_ids: torch.LongTensor | None = None,
        passage_input_ids: torch.LongTensor | None = None,
        query_attention_mask: torch.Tensor | None = None,
        passage_attention_mask: torch.Tensor | None = None,
        query_token_type_ids: torch.LongTensor | None = None,
        passage_token_type_ids: torch.LongTensor | None = None,
        return_dict: bool | None = None,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
    ) -> RQ2RetrieverOutput | tuple:
        """Score queries against passages.

        Passages of shape (batch, list, seq) give each query its own list -> scores (batch, list);
        passages of shape (n, seq) are scored against every query -> scores (batch, n). Called as a feature
        extractor, ``model(input_ids=..., attention_mask=...)`` (``model(**tokenizer(texts))``,
        ``pipeline("feature-extraction")``), it returns the inputs' ``embeddings`` (batch, dim) from the query
        tower (the same tower as passages' when they are shared; ``embed_passages`` for the passage tower).
        """
        use_dict = return_dict if return_dict is not None else self.config.return_dict
        if input_ids is not None:
            if query_input_ids is not None or passage_input_ids is not None:
                raise ValueError("pass input_ids (embeddings) or query_/passage_input_ids (scores), not both")
            output = RQ2RetrieverOutput(embeddings=self.embed_queries(input_ids, attention_mask, token_type_ids))
            return output if use_dict else output.to_tuple()
        if query_input_ids is None or passage_input_ids is None:
            raise ValueError("the retriever scores query_input_ids against passage_input_ids (or embeds input_ids)")
        queries = self.embed_queries(query_input_ids, query_attention_mask, query_token_type_ids)
        passages = self.embed_passages(passage_input_ids, passage_attention_mask, passage_token_type_ids)
        if passages.dim() == 3:
            if passages.shape[0] != queries.shape[0]:
                raise ValueError(
                    f"listwise passages have batch size {passages.shape[0]} but there are {queries.shape[0]} queries"
                )
        scores = similarity_scores(queries, passages)
        output = RQ2RetrieverOutput(scores=scores, query_embeddings=queries, passage_embeddings=passages)
        return output if use_dict else output.to_tuple()

    def tokenize_queries(
        self, queries: Sequence[str], max_length: int | None = None, *, prompt: str | None = None
    ) -> dict[str, torch.Tensor]:
        """Token tensors of queries, each after ``prompt`` (default ``config.query_prompt``), padded and truncated to
        ``max_length or query_max_length`` (on the CPU)."""
        prompt = self.config.query_prompt if prompt is None else prompt
        return self._require_tokenizer()(
            [prompt + str(q) for q in queries],
            padding=True,
            truncation=True,
            max_length=self._length(max_length or self.config.query_max_length),
            return_tensors="pt",
        )

    def tokenize_passages(
        self, passages: Sequence[Passage], max_length: int | None = None, *, prompt: str | None = None
    ) -> dict[str, torch.Tensor]:
        """Token tensors of passages, truncated to ``max_length or passage_max_length``: ``title [SEP] text`` as one
        segment (``input_format`` joined), or a title and its text as segments A and B (official; RocketQA's code);
        a passage without a title is its text alone in both. ``prompt`` (default ``config.passage_prompt``) comes
        first."""
        tokenizer = self._require_tokenizer()
        length = self._length(max_length or self.config.passage_max_length)
        prompt = self.config.passage_prompt if prompt is None else prompt
        if self.config.input_format == "official":
            parts = [title_and_text(p) for p in passages]
            parts = [(prompt + title, text) if title else ("", prompt + text) for title, text in parts]
            return _tokenize_segments(tokenizer, parts, length)
        texts = [prompt + format_passage(p, tokenizer.sep_token or "|") for p in passages]
        return tokenizer(texts, padding=True, truncation=True, max_length=length, return_tensors="pt")

    def encode_queries(
        self,
        queries: str | Sequence[str],
        batch_size: int = 64,
        show_progress_bar: bool | None = None,
        *,
        precision: str | None = None,
        prompt: str | None = None,
        backend: str | None = None,
    ) -> np.ndarray:
        """Embed query strings: float32 array (n, dim), in input order; one string gives one vector (dim,).
        ``prompt``: put before each query instead of ``config.query_prompt``.
        ``precision``: ``fp32``, ``bf16`` / ``fp16`` autocast, ``int8`` (CPU), or ``auto`` (bf16 where the hardware
        has it); default the model's ``inference_precision`` (fp32 unless set). ``backend``: ``torch`` or
        ``openvino`` (CPU, fp32 / bf16); default the model's ``inference_backend`` (torch unless set)."""
        queries, single = as_batch(queries, "query")

        def encode_batch(batch):
            return self.embed_queries(**_to(self.tokenize_queries(batch, prompt=prompt), self.device))

        result = self._batched(queries, encode_batch, batch_size, show_progress_bar, "queries", precision, backend)
        result = result if result is not None else np.zeros((0, self.embedding_dim), dtype=np.float32)
        return result[0] if single else result

    def encode_passages(
        self,
        passages: Passage | Sequence[Passage],
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
        *,
        precision: str | None = None,
        prompt: str | None = None,
        backend: str | None = None,
    ) -> np.ndarray:
        """Embed passages (strings or {title, text} dicts, as ``title [SEP] text``): float32 (n, dim); one passage
        gives one vector (dim,). ``precision`` and ``backend`` as ``encode_queries``; ``prompt``: instead of
        ``config.passage_prompt``."""
        passages, single = as_batch(passages, "passage")

        def encode_batch(batch):
            return self.embed_passages(**_to(self.tokenize_passages(batch, prompt=prompt), self.device))

        result = self._batched(passages, encode_batch, batch_size, show_progress_bar, "passages", precision, backend)
        result = result if result is not None else np.zeros((0, self.embedding_dim), dtype=np.float32)
        return result[0] if single else result

    @property
    def embedding_dim(self) -> int:
        """Size of the query and passage embeddings."""
        return self.config.encoder_config.hidden_size

    # --- sentence-transformers' names: the calls a SentenceTransformer user makes, with the same results as the
    # exported folder's (``encode`` is its default route, the passage tower at the passage length) ---------------

    def encode_query(self, sentences: str | Sequence[str], **kwargs) -> np.ndarray | torch.Tensor:
        """``SentenceTransformer.encode_query``: queries through the query tower (``encode``'s options)."""
        return self._st_encode(self.encode_queries, sentences, **kwargs)

    def encode_document(self, sentences: Passage | Sequence[Passage], **kwargs) -> np.ndarray | torch.Tensor:
        """``SentenceTransformer.encode_document``: passages through the passage tower (``encode``'s options)."""
        return self._st_encode(self.encode_passages, sentences, **kwargs)

    def encode(self, sentences: Passage | Sequence[Passage], **kwargs) -> np.ndarray | torch.Tensor:
        """``SentenceTransformer.encode``: as the exported folder's default route, passages (``encode_document``).

        Options, as sentence-transformers': ``batch_size``, ``show_progress_bar``, ``convert_to_numpy`` (else a list
        of tensors), ``convert_to_tensor``, ``normalize_embeddings``, ``device`` (moves the model), ``prompt`` (a
        string put before each text) / ``prompt_name`` (``query`` or ``document``: empty prompts)."""
        return self._st_encode(self.encode_passages, sentences, **kwargs)

    def _st_encode(
        self,
        encode,
        sentences,
        *,
        prompt_name: str | None = None,
        prompt: str | None = None,
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
        convert_to_numpy: bool = True,
        convert_to_tensor: bool = False,
        normalize_embeddings: bool = False,
        device: str | torch.device | None = None,
    ):
        prompts = {"query": self.config.query_prompt, "document": self.config.passage_prompt}
        if prompt_name not in (None, *prompts):
            raise ValueError(f"prompt_name must be one of this model's prompts {sorted(prompts)}, got {prompt_name!r}")
        if device is not None:
            self.to(device)
        items, single = as_batch(sentences, "passage" if encode == self.encode_passages else "query")
        prompt = prompt if prompt is not None else prompts.get(prompt_name)  # None: the tower's own prompt
        embeddings = torch.from_numpy(encode(items, batch_size, show_progress_bar, prompt=prompt))
        if normalize_embeddings:
            embeddings = nn.functional.normalize(embeddings, dim=-1)
        return _st_output(embeddings, single, convert_to_numpy=convert_to_numpy, convert_to_tensor=convert_to_tensor)

    def similarity(self, a, b) -> torch.Tensor:
        """``SentenceTransformer.similarity``: (n, m) scores of embeddings ``a`` against ``b`` with this model's
        similarity (dot product or cosine); 1-D inputs count as one embedding."""
        a, b = (
            torch.as_tensor(np.asarray(x, dtype=np.float32)) if not torch.is_tensor(x) else x.float() for x in (a, b)
        )
        a, b = (x.unsqueeze(0) if x.dim() == 1 else x for x in (a, b))
        if self.config.similarity == "cosine":
            a, b = nn.functional.normalize(a, dim=-1), nn.functional.normalize(b, dim=-1)
        return a @ b.T


def _st_output(values: torch.Tensor, single: bool, *, convert_to_numpy: bool, convert_to_tensor: bool):
    """sentence-transformers' return types: a tensor (``convert_to_tensor``), an array (``convert_to_numpy``) or a
    list of tensors, then the first item where one input came alone."""
    if convert_to_tensor:
        out = values
    else:
        out = values.numpy() if convert_to_numpy else list(values)
    return out[0] if single else out


class RQ2Reranker(RQ2PreTrainedModel):
    """RocketQAv2 cross-encoder: reads query and passage together and returns one relevance logit.

    Example:
        >>> reranker = RQ2Reranker.from_backbone("sentence-transformers/all-MiniLM-L6-v2")
        >>> reranker.score("what causes scurvy?", ["Scurvy is caused by a lack of vitamin C.", "Paris"])
        array([..., ...], dtype=float32)
    """

    config_class = RQ2RerankerConfig
    _extra_auto_classes = ("AutoModel",)
    _encoder_names = ("encoder",)

    def __init__(self, config: RQ2RerankerConfig, tokenizer: PreTrainedTokenizerBase | None = None):
        super().__init__(config, tokenizer)
        self.encoder = _build_encoder(config.encoder_config)
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.classifier = nn.Linear(config.encoder_config.hidden_size, 1)
        self.post_init()

    def _towers(self) -> list[nn.Module]:
        return [self.encoder]

    def forward(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        labels: torch.Tensor | None = None,
        return_dict: bool | None = None,
    ) -> RQ2RerankerOutput | tuple:
        """Logits (batch,) for (batch, seq) pairs, or (batch, list) for (batch, list, seq) lists.

        ``labels`` (the logits' shape, or (batch, 1)) add a ``loss``, so ``transformers.Trainer`` fine-tunes the
        re-ranker as a one-label sequence classifier: binary cross-entropy on the logit (relevance in [0, 1], as
        sentence-transformers' ``CrossEncoder`` trains one-logit models), or mean squared error when
        ``config.problem_type`` is ``"regression"``."""
        shape = input_ids.shape
        input_ids, attention_mask, token_type_ids = _flatten_list_dim(input_ids, attention_mask, token_type_ids)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **extra).last_hidden_state
        pooled = self.dropout(pool(hidden.float(), attention_mask, self.config.pooling))
        with torch.autocast(device_type=pooled.device.type, enabled=False):  # scores enter the loss in float32
            logits = self.classifier(pooled.to(self.classifier.weight.dtype)).float()
        logits = logits.squeeze(-1).reshape(shape[:-1])
        loss = None
        if labels is not None:
            target = labels.to(logits.dtype).reshape(logits.shape)
            if getattr(self.config, "problem_type", None) == "regression":
                loss = nn.functional.mse_loss(logits, target)
            else:
                loss = nn.functional.binary_cross_entropy_with_logits(logits, target)
        output = RQ2RerankerOutput(loss=loss, logits=logits)
        return output if (return_dict if return_dict is not None else self.config.return_dict) else output.to_tuple()

    def tokenize_pairs(
        self, pairs: Sequence[tuple[str, Passage]], max_length: int | None = None
    ) -> dict[str, torch.Tensor]:
        """Token tensors of (query, passage) pairs: ``[CLS] query [SEP] title [SEP] text [SEP]`` (``input_format``
        joined; official: ``title text``, no ``[SEP]`` between), truncated to fit ``max_length`` (on the CPU)."""
        tokenizer = self._require_tokenizer()
        separator = "" if self.config.input_format == "official" else tokenizer.sep_token or "|"
        return tokenizer(
            [str(q) for q, _ in pairs],
            [format_passage(p, separator) for _, p in pairs],
            padding=True,
            truncation="longest_first",
            max_length=self._length(max_length or self.config.max_length),
            return_tensors="pt",
        )

    def score_pairs(
        self,
        pairs: Sequence[tuple[str, Passage]],
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
        *,
        precision: str | None = None,
        backend: str | None = None,
    ) -> np.ndarray:
        """Relevance logits for (query, passage) pairs: float32 array (n,), in input order; one pair given alone
        (``("query", "passage")``) gives one score. ``precision`` and ``backend`` as
        ``RQ2Retriever.encode_queries``."""
        single = isinstance(pairs, tuple) and len(pairs) == 2 and isinstance(pairs[0], str)
        pairs = [pairs] if single else list(pairs)
        for i, pair in enumerate(pairs):
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise TypeError(f"pair {i} must be a (query, passage) tuple, got {pair!r:.80}")
            check_item(pair[0], "query", f"pair {i}: the query")
            check_item(pair[1], "passage", f"pair {i}: the passage")

        def score_batch(batch):
            return self(**_to(self.tokenize_pairs(batch), self.device)).logits

        result = self._batched(pairs, score_batch, batch_size, show_progress_bar, "pairs", precision, backend)
        result = result if result is not None else np.zeros((0,), dtype=np.float32)
        return result[0] if single else result

    def score(self, query: str, passages: Passage | Sequence[Passage], batch_size: int = 32) -> np.ndarray | np.float32:
        """Relevance logits of one query against each passage: float32 array (len(passages),); one passage given
        alone gives one score."""
        check_item(query, "query", "the query")
        passages, single = as_batch(passages, "passage")
        result = self.score_pairs([(query, p) for p in passages], batch_size=batch_size, show_progress_bar=False)
        return result[0] if single else result

    # --- sentence-transformers' names: the calls a CrossEncoder user makes (raw logits, as the exported folder's) ---

    def predict(
        self,
        inputs: tuple[str, Passage] | Sequence[tuple[str, Passage]],
        *,
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
        activation_fn=None,
        convert_to_numpy: bool = True,
        convert_to_tensor: bool = False,
        device: str | torch.device | None = None,
    ) -> np.ndarray | torch.Tensor | np.float32:
        """``CrossEncoder.predict``: one score per (query, passage) pair (one pair alone: one score), raw logits
        unless ``activation_fn`` (e.g. ``torch.sigmoid``) is given."""
        if device is not None:
            self.to(device)
        if isinstance(inputs, list) and len(inputs) == 2 and all(isinstance(x, str) for x in inputs):
            inputs = tuple(inputs)  # one pair written as a list, as CrossEncoder takes it
        single = isinstance(inputs, tuple) and len(inputs) == 2 and isinstance(inputs[0], str)
        scores = torch.as_tensor(self.score_pairs([inputs] if single else inputs, batch_size, show_progress_bar))
        scores = activation_fn(scores) if activation_fn is not None else scores
        return _st_output(scores, single, convert_to_numpy=convert_to_numpy, convert_to_tensor=convert_to_tensor)

    def rank(
        self,
        query: str,
        documents: Sequence[Passage],
        *,
        top_k: int | None = None,
        return_documents: bool = False,
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
    ) -> list[dict]:
        """``CrossEncoder.rank``: ``[{"corpus_id": i, "score": s(, "text": document)}, ...]`` best first, the
        first ``top_k``."""
        check_item(query, "query", "the query")
        documents, _ = as_batch(documents, "passage")
        scores = self.score_pairs([(query, d) for d in documents], batch_size, show_progress_bar).tolist()
        results = [
            {"corpus_id": i, "score": score, **({"text": documents[i]} if return_documents else {})}
            for i, score in enumerate(scores)
        ]
        return sorted(results, key=lambda result: result["score"], reverse=True)[:top_k]


_ST_POOLING_FLAGS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}
"""sentence-transformers < 6 wrote one flag per pooling mode; >= 6 writes ``pooling_mode``."""


def _st_json(name_or_path: str, filename: str) -> dict | list | None:
    path = cached_file(name_or_path, filename, _raise_exceptions_for_missing_entries=False)
    if path is None:
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _st_similarity(name: str | None, normalized: bool, name_or_path: str, cls_name: str) -> str:
    """The similarity a sentence-transformers folder scores with: its ``similarity_fn_name`` (cosine when unnamed,
    sentence-transformers' default; dot on normalised embeddings is cosine); euclidean / manhattan are refused."""
    if name in (None, "cosine") or (normalized and name == "dot"):
        return "cosine"
    if name == "dot":
        return "dot"
    raise ValueError(
        f"{name_or_path}: scores by {name} similarity, which {cls_name} does not (dot, cosine): pass similarity="
        "'dot' or 'cosine' to start from its encoder anyway"
    )


def _sentence_transformers_defaults(
    name_or_path: str, cls_name: str = "RQ2Retriever", *, strict: bool = True, read_similarity: bool = True
) -> dict:
    """What a sentence-transformers folder declares (empty if it is not one): its pooling (``cls`` / ``mean``;
    another mode is refused, naming it: it became ``cls`` before), its similarity (``_st_similarity``), its
    ``max_seq_length`` as the passage length, its query and document prompts; a ``Dense`` projection, which these
    towers do not carry, is refused. ``strict=False`` (the caller chose the pooling): the pooling is not read and a
    Dense projection is left out, logged; ``read_similarity=False`` (the caller chose it): the similarity is not
    read."""
    modules = _st_json(name_or_path, "modules.json")
    if modules is None:
        return {}
    defaults = {}
    for module in modules:
        kind = module.get("type", "")
        if kind.endswith("Pooling"):
            pooling = _st_json(name_or_path, f"{module['path']}/config.json") or {}
            modes = (
                [pooling["pooling_mode"]]
                if pooling.get("pooling_mode")
                else [mode for flag, mode in _ST_POOLING_FLAGS.items() if pooling.get(flag)]
            )
            if not strict:
                continue
            if modes and modes != ["cls"] and modes != ["mean"]:
                raise ValueError(
                    f"{name_or_path}: pools by {' + '.join(modes)}, which {cls_name} does not (cls, mean): pass "
                    "pooling='mean' or 'cls' to start from its encoder anyway"
                )
            if modes:
                defaults["pooling"] = modes[0]
        elif kind.endswith("Dense") and strict:
            raise ValueError(
                f"{name_or_path}: its embeddings go through a Dense projection ({module.get('path')}), which "
                f"{cls_name} does not carry; start from the encoder alone with pooling and similarity given, or use "
                "a model without one"
            )
        elif kind.endswith("Dense"):
            logger.warning(
                "%s: its Dense projection (%s) is left out (pooling given)", name_or_path, module.get("path")
            )
    normalized = any(module.get("type", "").endswith("Normalize") for module in modules)
    settings = _st_json(name_or_path, "config_sentence_transformers.json") or {}
    if read_similarity:
        defaults["similarity"] = _st_similarity(settings.get("similarity_fn_name"), normalized, name_or_path, cls_name)
    length = (_st_json(name_or_path, "sentence_bert_config.json") or {}).get("max_seq_length")
    if isinstance(length, int) and length > 0:
        defaults["passage_max_length"] = length
    prompts = settings.get("prompts") or {}
    for field, names in (("query_prompt", ("query",)), ("passage_prompt", ("document", "passage", "corpus"))):
        found = next((prompts[name] for name in names if isinstance(prompts.get(name), str) and prompts[name]), None)
        if found:  # e5's "query: " / "passage: ": a model trained with them reads worse without
            defaults[field] = found
    return defaults


RQ2RetrieverConfig.register_for_auto_class()
RQ2RerankerConfig.register_for_auto_class()
RQ2Retriever.register_for_auto_class("AutoModel")
RQ2Reranker.register_for_auto_class("AutoModelForSequenceClassification")

__all__ = [
    "RQ2PreTrainedModel",
    "RQ2Retriever",
    "RQ2RetrieverOutput",
    "RQ2Reranker",
    "RQ2RerankerOutput",
    "format_passage",
    "pool",
]
