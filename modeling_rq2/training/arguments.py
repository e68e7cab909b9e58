"""The settings of a training run: five sections, parsed from flags and config files, saved as ``RunConfig``.

``RunConfig`` is what ``OUTPUT/training_config.json`` holds (named sections and a format version) and what the
model cards read back. Every setting is checked when its section is built, before any data or model loads.
"""

import importlib.util
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import NamedTuple

from ..models.configuration_rq2 import INPUT_FORMATS, POOLING_MODES, SIMILARITIES
from ..models.loading import DEFAULT_BACKBONE
from ..models.modeling_rq2 import (
    INFERENCE_BACKENDS,
    INFERENCE_PRECISIONS,
    check_inference,
    default_device,
    native_bf16,
    resolve_precision,
)
from .losses import DIRECTIONS, REDUCTIONS, DistillationOptions, check_numbers, check_setting, loss_option

MIXES = ("both", "denoised", "undenoised")
WARMUPS = ("joint", "separate")
PROBABILITIES = ("platt", "sigmoid")
SHORT_LISTS = ("pad", "error")
LR_SCHEDULERS = ("constant_with_warmup", "linear", "constant")
PRECISIONS = ("no", "bf16", "fp16")
TRAINING_PRECISIONS = (*PRECISIONS, "auto")
"""``--mixed_precision``: Accelerate's values, or ``auto`` (bf16 where the GPU or the CPU runs it natively, else no)."""
SETTING_CHOICES = {
    "pooling": POOLING_MODES,
    "similarity": SIMILARITIES,
    "reranker_pooling": POOLING_MODES,
    "input_format": INPUT_FORMATS,
    "short_lists": SHORT_LISTS,
    "lr_scheduler": LR_SCHEDULERS,
    "mixed_precision": TRAINING_PRECISIONS,
    "precision": INFERENCE_PRECISIONS,
    "backend": INFERENCE_BACKENDS,
    "augment_warmup": WARMUPS,
    "instance_mix": MIXES,
    "probability": PROBABILITIES,
    "direction": DIRECTIONS,
    "reduction": REDUCTIONS,
}
"""The settings that take one of a few values, and those values: checked in each section, listed by ``--help``."""


def check_choices(section) -> None:
    """Every few-valued setting of a settings dataclass is one of its values (or unset, where its default is)."""
    for item in fields(section):
        choices = SETTING_CHOICES.get(item.name)
        if choices is not None:
            value = getattr(section, item.name)
            allowed = (*choices, None) if item.default is None else choices
            check_setting(value in allowed, item.name, f"must be one of {choices}, got {value!r}")


HELDOUT = "heldout"
"""The ``--eval_split`` that names the training queries ``--heldout_queries`` carves out."""


@dataclass
class ModelArguments:
    """Which models to start from, and their input settings."""

    retriever: str = field(
        default=DEFAULT_BACKBONE,
        metadata={"help": "backbone or saved RQ2Retriever ('default' = offline all-MiniLM-L6-v2)"},
    )
    reranker: str = field(default=DEFAULT_BACKBONE, metadata={"help": "backbone or saved RQ2Reranker"})
    shared_towers: bool = field(
        default=True, metadata={"help": "one encoder for queries and passages (the paper: separate)"}
    )
    pooling: str | None = field(default=None, metadata={"help": "retriever pooling cls|mean (default: the backbone's)"})
    similarity: str | None = field(
        default=None, metadata={"help": "retriever similarity dot|cosine (default: the backbone's)"}
    )
    reranker_pooling: str = field(default="mean", metadata={"help": "re-ranker pooling cls|mean"})
    query_max_length: int = 64
    passage_max_length: int = field(default=256, metadata={"help": "retriever passage length at inference"})
    train_passage_max_length: int = field(default=128, metadata={"help": "retriever passage length in training lists"})
    reranker_max_length: int = 128
    input_format: str | None = field(
        default=None,
        metadata={
            "help": "titled passages as one segment 'title [SEP] text' (joined) or as RocketQA's code has them "
            "(official: title and text as segments A and B; the re-ranker without a [SEP] between); "
            "default: a saved model's own, joined for a backbone"
        },
    )
    attention_dropout: float | None = field(
        default=0.0,
        metadata={"help": "attention dropout of both backbones (None: keep theirs); 0 halves the fp32 CPU step time"},
    )

    def __post_init__(self):
        check_numbers(self)
        for name in ("query_max_length", "passage_max_length", "train_passage_max_length", "reranker_max_length"):
            check_setting(getattr(self, name) > 0, name, f"must be > 0, got {getattr(self, name)}")
        check_setting(
            self.attention_dropout is None or 0 <= self.attention_dropout < 1,
            "attention_dropout",
            f"must be in [0, 1), got {self.attention_dropout}",
        )
        check_choices(self)  # a bad pooling failed with a traceback once the data had loaded


@dataclass
class DataArguments:
    """Training lists and the evaluation split."""

    data: str = field(default="scifact", metadata={"help": "BEIR / MS MARCO / DPR folder, bundled name or Hub dataset"})
    train_split: str = "train"
    eval_split: str | None = field(
        default="test",
        metadata={"help": f"split evaluated after training (none: skip; {HELDOUT}: the --heldout_queries)"},
    )
    heldout_queries: int = field(
        default=0,
        metadata={
            "help": "carve N training queries out (drawn with --heldout_seed): they never train, and --eval_split "
            f"{HELDOUT} evaluates on them: a dev split for choosing settings without reading the test split"
        },
    )
    heldout_seed: int = 0
    train_instances: str | None = field(
        default=None, metadata={"help": "saved listwise instances (datasets folder) instead of BM25 lists"}
    )
    negatives: str = field(
        default="auto",
        metadata={
            "help": "bm25 | data (the data's own hard negatives: DPR's hard_negative_ctxs) | a triples file "
            "(MS MARCO triples.train.small.tsv or qidpidtriples); auto: the data's own when it has them, else bm25"
        },
    )
    max_triples: int | None = field(default=None, metadata={"help": "read only the first N lines of a triples file"})
    list_size: int = field(default=4, metadata={"help": "m: passages per query list (1 positive + m-1 negatives)"})
    negatives_top_n: int = field(default=50, metadata={"help": "BM25 depth the negatives are drawn from"})
    max_train_queries: int | None = field(default=None, metadata={"help": "use only the first N training queries"})
    short_lists: str = field(
        default="pad",
        metadata={
            "help": "a query with fewer than list_size - 1 negatives: pad (its list is shorter, masked; counted "
            "and logged, and metrics.json / the cards say how long the lists were) | error (refuse the run)"
        },
    )

    def __post_init__(self):
        check_numbers(self)
        check_setting(
            self.list_size >= 2, "list_size", f"must be >= 2 (a positive and a negative), got {self.list_size}"
        )
        check_setting(self.negatives_top_n >= 1, "negatives_top_n", f"must be >= 1, got {self.negatives_top_n}")
        for name in ("max_train_queries", "max_triples"):  # 0 read as "all" before
            value = getattr(self, name)
            check_setting(value is None or value >= 1, name, f"must be >= 1 (or unset: all), got {value}")
        check_choices(self)
        if self.eval_split in ("", "none", "None"):
            self.eval_split = None
        check_setting(self.heldout_queries >= 0, "heldout_queries", f"must be >= 0, got {self.heldout_queries}")
        check_setting(
            self.eval_split != HELDOUT or self.heldout_queries > 0,
            "eval_split",
            f"{HELDOUT} evaluates the queries --heldout_queries carves out of the training split: set it",
        )


@dataclass
class LossArguments(DistillationOptions):
    """Dynamic listwise distillation (``DistillationOptions``) and what this recipe adds for small data."""

    retriever_supervised_weight: float = loss_option(1.0, help="extra listwise CE on the retriever (paper: 0)")
    in_batch_negatives: bool = loss_option(True, help="the retriever CE also ranks the other lists' passages")
    kl_warmup_ratio: float = loss_option(
        0.5, help="share of joint steps in which the KL trains only the re-ranker (paper: 0)"
    )
    retriever_temperature: float | None = loss_option(None, help="t_de (default: 1 for dot, 0.05 for cosine)")
    reranker_temperature: float = loss_option(1.0, help="t_ce")

    def __post_init__(self):
        super().__post_init__()
        check_setting(
            self.retriever_supervised_weight >= 0,
            "retriever_supervised_weight",
            f"must be >= 0, got {self.retriever_supervised_weight}",
        )
        check_setting(
            0 <= self.kl_warmup_ratio <= 1, "kl_warmup_ratio", f"must be in [0, 1], got {self.kl_warmup_ratio}"
        )
        for name in ("retriever_temperature", "reranker_temperature"):
            value = getattr(self, name)
            check_setting(value is None or value > 0, name, f"must be > 0, got {value}")
        self._check_every_phase_trains()

    def _check_every_phase_trains(self) -> None:
        """What the combinations mean, and the ones refused because a phase or a model would train nothing.

        The KL trains the re-ranker only when it is not ``static`` and ``reranker_kl_gradient`` holds; the teacher
        phase (the first ``kl_warmup_ratio`` of joint steps, in which the KL trains only the re-ranker) needs it. After
        it the retriever learns from the KL and from its own CE (``retriever_supervised_weight``); a non-static
        re-ranker from its CE (``supervised_weight``) and the KL.
        """
        kl_trains_reranker = self.kl_weight > 0 and self.reranker_kl_gradient and not self.static
        check_setting(
            self.kl_warmup_ratio == 0 or kl_trains_reranker,
            "kl_warmup_ratio",
            f"{self.kl_warmup_ratio}: in that share of the joint steps the KL trains only the re-ranker, which here it "
            "cannot (--static true, --reranker_kl_gradient false or --kl_weight 0), so the KL trains nothing "
            "then; set --kl_warmup_ratio 0",
        )
        check_setting(
            (self.kl_weight > 0 and self.kl_warmup_ratio < 1) or self.retriever_supervised_weight > 0,
            "retriever_supervised_weight",
            f"{self.retriever_supervised_weight} with --kl_weight {self.kl_weight} and --kl_warmup_ratio "
            f"{self.kl_warmup_ratio}: the retriever never learns (the KL reaches it only after the teacher phase)",
        )
        check_setting(
            self.static or self.supervised_weight > 0 or kl_trains_reranker,
            "supervised_weight",
            "0 and no KL gradient into the re-ranker: the re-ranker never learns (--static true freezes it on purpose)",
        )

    def describe(self) -> str:
        """The loss in words, for model cards: the distillation options, then what this recipe adds."""
        return (
            f"{super().describe()}; retriever CE weight {self.retriever_supervised_weight} (in-batch negatives: "
            f"{self.in_batch_negatives}); share of joint steps where only the re-ranker learns from the KL: "
            f"{self.kl_warmup_ratio}"
        )

    def loss_options(self, retriever_temperature: float) -> dict:
        """Keyword arguments of ``listwise_distillation_loss``."""
        return {
            **self.loss_kwargs(),
            "retriever_temperature": retriever_temperature,
            "reranker_temperature": self.reranker_temperature,
        }


TRACKER_PACKAGES = {
    "tensorboard": "tensorboard",
    "wandb": "wandb",
    "comet_ml": "comet_ml",
    "aim": "aim",
    "mlflow": "mlflow",
    "clearml": "clearml",
    "dvclive": "dvclive",
    "swanlab": "swanlab",
    "trackio": "trackio",
}
"""Accelerate's trackers and the package each needs."""


@dataclass
class JointTrainingArguments:
    """Optimisation, schedule, checkpoints, logging."""

    output_dir: str = "outputs/scifact"
    epochs: int = field(
        default=3,
        metadata={
            "help": "joint epochs (3: bench/results/quality.md, SciFact: retriever 0.694 -> 0.733, "
            "re-ranked 0.657 -> 0.728 nDCG@10 from 1 to 3)"
        },
    )
    warmup_epochs: int = field(default=0, metadata={"help": "epochs training each model alone before joint training"})
    max_steps: int | None = field(default=None, metadata={"help": "stop after this many optimizer steps"})
    batch_size: int = field(default=8, metadata={"help": "queries per device per step"})
    gradient_accumulation_steps: int | None = field(
        default=None,
        metadata={"help": "batches per optimizer step (default: Accelerate's, e.g. accelerate launch's flag, else 1)"},
    )
    retriever_lr: float = 2e-5
    reranker_lr: float = 5e-5
    reranker_head_lr: float = 1e-3
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    lr_scheduler: str = field(
        default="constant_with_warmup", metadata={"help": "constant_with_warmup | linear | constant"}
    )
    warmup_ratio: float = 0.1
    mixed_precision: str | None = field(
        default=None,
        metadata={
            "help": "no | bf16 | fp16 | auto (bf16 where the GPU or CPU runs it natively: AVX512-BF16 / AMX, else no; "
            "an AVX2-only CPU emulates bf16, slower than fp32) (default: Accelerate's where accelerate launch "
            "runs it, from its --mixed_precision or accelerate config, whose own default is no; else auto)"
        },
    )
    gradient_checkpointing: bool = False
    seed: int = 42
    logging_steps: int = 10
    save_steps: int = field(default=50, metadata={"help": "checkpoint every N optimizer steps (0: never)"})
    save_total_limit: int = 2
    resume_from_checkpoint: str | None = field(default=None, metadata={"help": "'latest' or a checkpoint folder"})
    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "start afresh in an output folder holding a run with other settings (else refused)"},
    )
    resume_override: list[str] = field(
        default_factory=list,
        metadata={
            "help": "settings that may differ from the checkpoint's when resuming (e.g. batch_size retriever_lr); "
            "the others that decide a run are refused if changed (see RESUME_MAY_CHANGE for the free ones)"
        },
    )
    report_to: str = field(
        default="auto",
        metadata={"help": "Accelerate tracker: tensorboard | wandb | ... | none; auto: tensorboard when installed"},
    )
    eval_steps: int = field(
        default=0, metadata={"help": "evaluate on the eval split every N optimizer steps (0: only at the end)"}
    )
    top_k: int = field(
        default=100, metadata={"help": "passages retrieved per evaluation query (as python -m modeling_rq2.evaluate)"}
    )
    ddp_timeout: int = field(
        default=1800,
        metadata={
            "help": "seconds processes wait for each other "
            "(the main one alone evaluates and augments: raise it for big corpora)"
        },
    )
    rerank_top_k: int = 20
    fusion: float = field(
        default=0.5, metadata={"help": "also evaluate the head ordered by (1-a) z(reranker) + a z(retriever); 0: off"}
    )
    eval_batch_size: int = 64
    precision: str = field(
        default="auto",
        metadata={
            "help": "how evaluation and the chain's mining encode and score (training: --mixed_precision): fp32, "
            "bf16 / fp16 autocast, int8 (CPU), or auto (bf16 where the GPU or CPU runs it natively, else fp32)"
        },
    )
    backend: str = field(
        default="torch",
        metadata={
            "help": "what runs the encoders in evaluation and mining: torch, or openvino (CPU; pip install openvino)"
        },
    )
    plan: bool = field(
        default=False,
        metadata={
            "help": "write OUTPUT/plan.json (steps, learning rates, lists, tokens, memory, warnings) and stop "
            "before any model loads; every run writes it before step 1"
        },
    )

    def _take_accelerate_defaults(self) -> None:
        """Settings left unset take what ``accelerate launch`` (its flags, ``accelerate config``) put in the
        environment, as ``Accelerator`` would, so the run's plan, schedule, config and cards state what it trains."""
        if self.mixed_precision is None:  # accelerate launch always names one (its own default: no); python: auto
            launched = os.environ.get("ACCELERATE_MIXED_PRECISION")
            check_setting(
                launched is None or launched.lower() in PRECISIONS,
                "mixed_precision",
                f"must be one of {PRECISIONS}, got {launched!r} (from accelerate launch / its config)",
            )
            self.mixed_precision = "auto" if launched is None else launched.lower()
        if self.mixed_precision == "auto":  # resolved here, so plan, config and cards state what trains
            self.mixed_precision = "bf16" if native_bf16(default_device()) else "no"
        if self.gradient_accumulation_steps is None:
            steps = os.environ.get("ACCELERATE_GRADIENT_ACCUMULATION_STEPS", "1")
            check_setting(steps.isdigit(), "gradient_accumulation_steps", f"accelerate launch gave {steps!r}")
            self.gradient_accumulation_steps = int(steps)

    def _resolve_tracker(self) -> None:
        """``auto`` -> tensorboard when installed, else none; a named tracker whose package is missing is refused
        here rather than by Accelerate after the models load."""
        if self.report_to == "auto":
            self.report_to = "tensorboard" if importlib.util.find_spec("tensorboard") else "none"
        package = TRACKER_PACKAGES.get(self.report_to)
        check_setting(
            package is None or importlib.util.find_spec(package) is not None,
            "report_to",
            f"{self.report_to} is not installed: pip install {package} (tensorboard: modeling-rq2[tensorboard]), "
            "or --report_to none",
        )

    def __post_init__(self):
        self._take_accelerate_defaults()
        self._resolve_tracker()
        check_numbers(self)
        check_setting(self.epochs >= 0, "epochs", f"must be >= 0, got {self.epochs}")
        check_setting(self.epochs + self.warmup_epochs >= 1, "epochs", "epochs + warmup_epochs must be >= 1")
        for name in ("batch_size", "gradient_accumulation_steps", "logging_steps", "top_k", "eval_batch_size"):
            check_setting(getattr(self, name) >= 1, name, f"must be >= 1, got {getattr(self, name)}")
        for name in ("warmup_epochs", "save_steps", "save_total_limit", "rerank_top_k", "eval_steps"):
            check_setting(getattr(self, name) >= 0, name, f"must be >= 0, got {getattr(self, name)}")
        for name in ("retriever_lr", "reranker_lr", "reranker_head_lr"):  # AdamW at 1 or more only diverges
            check_setting(0 < getattr(self, name) < 1, name, f"must be in (0, 1), got {getattr(self, name)}")
        check_setting(self.ddp_timeout >= 1, "ddp_timeout", f"must be >= 1 second, got {self.ddp_timeout}")
        check_setting(0 <= self.fusion <= 1, "fusion", f"must be in [0, 1], got {self.fusion}")
        check_setting(
            self.rerank_top_k <= self.top_k,
            "rerank_top_k",
            f"must be <= --top_k {self.top_k}, got {self.rerank_top_k}",
        )
        check_setting(self.max_steps is None or self.max_steps >= 1, "max_steps", f"must be >= 1, got {self.max_steps}")
        check_setting(0 <= self.warmup_ratio < 1, "warmup_ratio", f"must be in [0, 1), got {self.warmup_ratio}")
        check_choices(self)
        try:  # before anything trains: int8 on a GPU failed at the first evaluation, after training
            check_inference(self.precision, self.backend, default_device())
        except ValueError as err:
            raise ValueError(f"--precision / --backend: {err}") from None
        # resolved here as --mixed_precision is, so the config and a resumed run's checks see what computes
        self.precision = resolve_precision(self.precision, default_device())


@dataclass
class MiningArguments:
    """Mining and denoising lists with a retriever and a re-ranker (``python -m modeling_rq2.training.augmentation``
    takes these alone; ``train.py`` takes them with the chain's own, ``AugmentationArguments``)."""

    augment_top_n: int = field(
        default=50, metadata={"help": "retrieved passages per query (RocketQA: 50 MS MARCO, 100 NQ)"}
    )
    negative_below: float = field(
        default=0.1, metadata={"help": "denoised: keep a negative only if P(relevant) < this"}
    )
    positive_above: float = field(
        default=0.9, metadata={"help": "denoised: add an unlabelled passage as positive if P > this"}
    )
    instance_mix: str = field(default="both", metadata={"help": f"which instances to keep per query: {MIXES}"})
    probability: str = field(default="platt", metadata={"help": f"re-ranker logit -> probability: {PROBABILITIES}"})
    augment_batch_size: int = 64

    def __post_init__(self):
        check_numbers(self)
        check_choices(self)
        for name in ("augment_top_n", "augment_batch_size"):
            check_setting(getattr(self, name) >= 1, name, f"must be >= 1, got {getattr(self, name)}")
        check_setting(
            0 < self.negative_below <= self.positive_above < 1,
            "negative_below / --positive_above",
            f"need 0 < negative_below <= positive_above < 1, got {self.negative_below} / {self.positive_above}",
        )


@dataclass
class AugmentationArguments(MiningArguments):
    """Hybrid data augmentation in train.py's chain: its stages, where lists come from and how the re-ranker cleans
    them."""

    augment: bool = field(
        default=False, metadata={"help": "train.py: warm-up -> hybrid augmentation -> joint training"}
    )
    augment_warmup: str = field(
        default="joint",
        metadata={
            "help": "first stage: 'joint' (this recipe; the re-ranker learns from the retriever) "
            "or 'separate' (each model alone, the paper)"
        },
    )
    augment_warmup_epochs: int = field(default=1, metadata={"help": "epochs of the first stage"})
    augment_rounds: int = field(
        default=1,
        metadata={
            "help": "rounds of augmentation and joint training: round k >= 2 mines its lists with round k-1's "
            "jointly trained models and trains on from them (RocketQA's pipeline iterates)"
        },
    )
    augment_warmup_list_size: int | None = field(
        default=None,
        metadata={
            "help": "passages a list in the first stage (default: --list_size). Its lists come from --negatives "
            "(BM25, a triples file: often shallower than the mined pools the joint lists of 128 / 32 need)"
        },
    )

    def __post_init__(self):
        super().__post_init__()
        check_setting(
            self.augment_warmup_epochs >= 1,
            "augment_warmup_epochs",
            f"must be >= 1, got {self.augment_warmup_epochs}",
        )
        check_setting(self.augment_rounds >= 1, "augment_rounds", f"must be >= 1, got {self.augment_rounds}")
        check_setting(
            self.augment_warmup_list_size is None or self.augment_warmup_list_size >= 2,
            "augment_warmup_list_size",
            f"must be >= 2 (a positive and a negative), got {self.augment_warmup_list_size}",
        )


RESUME_MAY_CHANGE = frozenset(
    {
        "output_dir",
        "resume_from_checkpoint",
        "resume_override",
        "overwrite_output_dir",
        "logging_steps",
        "save_steps",
        "save_total_limit",
        "report_to",
        "eval_steps",
        "top_k",
        "eval_batch_size",
        "rerank_top_k",
        "fusion",
        "ddp_timeout",
        "plan",
        "gradient_checkpointing",
    }
)
"""Settings a resumed run may change freely: where and how often it logs, checkpoints and evaluates, and activation
checkpointing (same gradients, less memory). Every other setting decides the run (data, lists, models, loss,
optimiser, schedule, precision, seed): changing one on resume is refused unless named in ``--resume_override``."""


def deciding_settings(config: "RunConfig") -> dict[str, object]:
    """``{"section.name": value}`` of every setting that decides the run (as JSON values), for checkpoints. Paths
    compare as the folders they name (relative or absolute spellings are one; a folder inside the output is named
    relative to it, so a moved run still resumes); a run without augmentation ignores the augmentation settings."""
    output = Path(config.training.output_dir).resolve()
    values = {
        f"{section}.{name}": _comparable(value, output)
        for section, fields_ in config.to_dict().items()
        if isinstance(fields_, dict)
        for name, value in fields_.items()
        if name not in RESUME_MAY_CHANGE
        and (section != "augmentation" or config.augmentation.augment or name == "augment")
    }
    return json.loads(json.dumps(values))


def _comparable(value: object, output: Path) -> object:
    if not isinstance(value, str) or not value or not Path(value).exists():
        return value
    path = Path(value).resolve()
    return f"<output_dir>/{path.relative_to(output).as_posix()}" if path.is_relative_to(output) else str(path)


def settings_changes(saved: dict, now: dict, allowed: Sequence[str] = ()) -> dict[str, tuple]:
    """``{name: (saved value, value now)}`` of the deciding settings that differ, ``allowed`` names aside."""
    return {
        key.split(".", 1)[1]: (saved[key], now[key])
        for key in sorted(saved.keys() & now.keys())
        if saved[key] != now[key] and key.split(".", 1)[1] not in allowed
    }


def describe_changes(changed: dict[str, tuple]) -> str:
    """``"batch_size 4 -> 3, seed 42 -> 7"``."""
    return ", ".join(f"{name} {old!r} -> {new!r}" for name, (old, new) in changed.items())


def check_resumed_settings(checkpoint: Path, saved: dict | None, config: "RunConfig") -> None:
    """Refuse to resume ``checkpoint`` with settings other than those it was saved with, except the overridden."""
    known = {key.split(".", 1)[1] for key in deciding_settings(config)}
    unknown = sorted(set(config.training.resume_override) - known)
    check_setting(not unknown, "resume_override", f"not settings that decide a run: {unknown}")
    if saved is None:  # a checkpoint of 0.1.0 recorded none
        return
    changed = settings_changes(saved, deciding_settings(config), config.training.resume_override)
    check_setting(
        not changed,
        "resume_from_checkpoint",
        f"{checkpoint} was saved by a run with other settings: {describe_changes(changed)}; resume with the "
        f"checkpoint's settings, or pass --resume_override {' '.join(changed)} to continue anyway "
        "(the result is then a run no single config describes)",
    )


def check_previous_run(config: "RunConfig") -> None:
    """A fresh run into the folder of a run with other deciding settings is refused unless ``overwrite_output_dir``:
    its models would be replaced and its log mixed with this one's (a rerun of the same settings, e.g. a chain
    continuing its stages, goes on)."""
    args = config.training
    if args.overwrite_output_dir or not (Path(args.output_dir) / RunConfig.FILE).is_file():
        return
    try:
        previous = RunConfig.load(args.output_dir)
        changed = settings_changes(deciding_settings(previous), deciding_settings(config))
    except ValueError as err:  # a config this code cannot read: not this run's
        changed = {"training_config.json": (str(err)[:120], "this run")}
    check_setting(
        not changed,
        "output_dir",
        f"{args.output_dir} holds a run with other settings ({describe_changes(changed)}): its models would be "
        "replaced; use another folder, resume it (--resume_from_checkpoint latest), or pass "
        "--overwrite_output_dir true",
    )


class RunConfig(NamedTuple):
    """A run's settings by section; unpacks in this order (``run_training(*config)``)."""

    model: ModelArguments
    data: DataArguments
    loss: LossArguments
    training: JointTrainingArguments
    augmentation: AugmentationArguments

    FORMAT_VERSION = 1
    FILE = "training_config.json"
    RENAMED = {"training": {"eval_top_k": "top_k"}}
    """Settings saved under an earlier name, read under today's."""
    LEGACY_SECTIONS = {
        "ModelArguments": "model",
        "DataArguments": "data",
        "LossArguments": "loss",
        "JointTrainingArguments": "training",
        "AugmentationArguments": "augmentation",
    }
    """Format 0 (modeling_rq2 0.1.0, no version): sections keyed by their class names."""

    def to_dict(self) -> dict:
        """``{"format_version": 1, "model": {...}, "data": {...}, ...}``: the JSON of ``training_config.json``."""
        return {
            "format_version": self.FORMAT_VERSION,
            **{name: asdict(section) for name, section in self._asdict().items()},
        }

    @classmethod
    def from_dict(cls, values: dict, source: str = "config") -> "RunConfig":
        """Sections rebuilt (and checked) from ``to_dict``'s output; sections it lacks take their defaults."""
        version = values.get("format_version")
        if version is None and set(values) <= set(cls.LEGACY_SECTIONS):
            values, version = {cls.LEGACY_SECTIONS[k]: v for k, v in values.items()}, cls.FORMAT_VERSION
        if version != cls.FORMAT_VERSION:
            raise ValueError(
                f"{source}: training config format_version {version!r}, this code reads {cls.FORMAT_VERSION}"
            )
        kinds = cls.__annotations__
        for section, renamed in cls.RENAMED.items():
            fields_ = values.get(section)
            if isinstance(fields_, dict):
                values = {**values, section: {renamed.get(key, key): value for key, value in fields_.items()}}
        try:
            return cls(**{name: kinds[name](**values.get(name, {})) for name in cls._fields})
        except (TypeError, ValueError) as err:  # a key of another version, or a value no run could have had
            raise ValueError(f"{source}: not a training config this code reads ({err})") from None

    def save(self, folder: str | Path) -> Path:
        """Write ``folder/training_config.json``."""
        path = Path(folder) / self.FILE
        path.write_text(json.dumps(self.to_dict(), indent=2), encoding="utf-8")
        return path

    @classmethod
    def load(cls, folder: str | Path) -> "RunConfig | None":
        """The config a run saved in ``folder``, or None when it saved none."""
        path = Path(folder) / cls.FILE
        if not path.is_file():
            return None
        return cls.from_dict(json.loads(path.read_text(encoding="utf-8")), str(path))
