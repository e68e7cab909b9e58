"""The benchmark's systems, one registry: what each is, which job function runs it, its flags, what it ablates."""

from dataclasses import dataclass
from typing import Any

from modeling_rq2.evaluation.systems import BM25
from modeling_rq2.training.losses import DistillationOptions

PEER, OURS_GROUP, ABLATION, LEVER = "peer", "ours", "ablation", "lever"
ONE_EPOCH = ("--epochs", "1")
AUGMENTED = (*ONE_EPOCH, "--augment", "true", "--augment_top_n", "30")  # 1 warm-up epoch, 1 joint epoch of 2x the lists
BASELINE = "ours_1_epoch"  # of every ablation but those that change the chain (3x cheaper than ours)
CHAIN = "ours_augmented"
KL_WHOLE_RUN = "kl_whole_run"
"""The baseline of the ablations that cannot have a KL warm-up (static, no KL gradient into the re-ranker, the
official code's KL, the paper's loss): ours_1_epoch with the KL training both models from step 1, so that each
of them changes one thing of it."""


@dataclass(frozen=True)
class BenchSystem:
    """One row group of the report.

    ``title``: the display name (model cards, README); ``job``: the job function family that runs it (a key of
    ``jobs.JOBS``); ``group``: peer, ours or ablation; ``flags``: ``run_training`` flags (ours and the ablations);
    ``baseline``: the system an ablation changes one thing of; ``teacher``: the system whose trained re-ranker (same
    seed) is this one's frozen teacher.
    """

    name: str
    description: str
    title: str
    job: str
    group: str
    flags: tuple[str, ...] = ()
    baseline: str | None = None
    teacher: str | None = None

    @property
    def is_peer(self) -> bool:
        return self.group == PEER


def _peer(name: str, title: str, description: str) -> BenchSystem:
    return BenchSystem(name, description, title, job=name, group=PEER)


def _ours(name: str, title: str, description: str, flags: tuple[str, ...]) -> BenchSystem:
    return BenchSystem(name, description, title, job="rq2", group=OURS_GROUP, flags=flags)


def _ablation(
    name: str, title: str, description: str, flags: tuple[str, ...], baseline: str = BASELINE, **extra
) -> BenchSystem:
    return BenchSystem(name, description, title, job="rq2", group=ABLATION, flags=flags, baseline=baseline, **extra)


def _lever(name: str, title: str, description: str, flags: tuple[str, ...], baseline: str = BASELINE) -> BenchSystem:
    """A candidate change to the recipe (for the quality goals), measured paired against ``baseline`` on a dev
    split before test reads it."""
    return BenchSystem(name, description, title, job="rq2", group=LEVER, flags=flags, baseline=baseline)


def _flag_value(value: Any) -> str:
    """A value as ``run_training``'s command line spells it (booleans lower case)."""
    return str(value).lower() if isinstance(value, bool) else str(value)


NO_KL_WARMUP = ("--kl_warmup_ratio", "0")
"""Where the KL cannot train the re-ranker (static, no re-ranker KL gradient) there is no teacher phase: the KL
trains the retriever for the whole run (in a teacher phase the KL would train nothing, and it is refused). Those
ablations are measured against ``KL_WHOLE_RUN``, which has no warm-up either, so each changes one thing."""


SYSTEMS_FLAGS = {BASELINE: ONE_EPOCH, KL_WHOLE_RUN: (*ONE_EPOCH, *NO_KL_WARMUP)}
"""The flags of the systems loss ablations change one thing of."""


def loss_ablation(name: str, title: str, option: str, value: Any, baseline: str = BASELINE) -> BenchSystem:
    """``baseline`` (ours_1_epoch or KL_WHOLE_RUN) with one ``DistillationOptions`` field changed: flags and
    description from (option, value)."""
    description = f"{baseline} {DistillationOptions.ablation(option, value)}"
    flags = (*SYSTEMS_FLAGS[baseline], f"--{option}", _flag_value(value))
    return _ablation(name, title, description, flags, baseline=baseline)


_REGISTRY = (
    _peer("bm25", "BM25", BM25),
    _peer("zeroshot", "all-MiniLM-L6-v2, zero-shot", "the backbone untrained, as a dense retriever"),
    _peer(
        "st_biencoder",
        "sentence-transformers bi-encoder (MNRL)",
        "sentence-transformers bi-encoder, MultipleNegativesRankingLoss on the same lists",
    ),
    _peer(
        "st_crossencoder",
        "sentence-transformers CrossEncoder",
        "sentence-transformers CrossEncoder trained alone, re-ranking the bi-encoder's candidates",
    ),
    _peer(
        "st_biencoder_mined",
        "sentence-transformers bi-encoder, mine_hard_negatives (MNRL)",
        "sentence-transformers bi-encoder, MNRL on negatives from its own mine_hard_negatives (the zero-shot "
        "backbone's top 50, relative_margin 0.05, the top 3) in place of BM25's, at the selected bi-encoder's "
        "learning rate and epochs",
    ),
    _ours(
        "ours",
        "RocketQAv2 joint training, 3 epochs (ours, default)",
        "our default recipe: joint training, 3 epochs on BM25 lists (about the augmented chain's optimizer steps)",
        (),
    ),
    _ours(
        "ours_best",
        "RocketQAv2 chain, re-ranker at 256 tokens (ours, preset scifact-best)",
        "configs/scifact-best.yaml: the chain (1 joint epoch, hybrid augmentation, 1 joint epoch on the mined lists) "
        "with query and passage pairs of 256 tokens for the re-ranker (the best recipe measured on the dev split; "
        "several times the default recipe's training time)",
        (*AUGMENTED, "--reranker_max_length", "256"),
    ),
    _ours(
        BASELINE,
        "RocketQAv2 joint training, 1 epoch (ours)",
        "joint training, 1 epoch (the peers' budget; the baseline of the ablations)",
        ONE_EPOCH,
    ),
    _ours(
        CHAIN,
        "RocketQAv2 chain with hybrid augmentation (ours)",
        "the chain: 1 joint epoch, hybrid augmentation (top 30, denoised), 1 joint epoch on the 2x larger lists",
        AUGMENTED,
    ),
    _ablation(
        KL_WHOLE_RUN,
        "ablation: the KL on for the whole run",
        f"{BASELINE} without the KL warm-up (the KL trains both models from step 1; the baseline of the ablations "
        "that cannot have a warm-up)",
        (*ONE_EPOCH, *NO_KL_WARMUP),
    ),
    # static distillation as the paper runs it: the frozen teacher is a trained re-ranker (a cold one teaches
    # nothing), here the one ours_1_epoch trained at the same seed; a fresh retriever learns from it for one epoch
    _ablation(
        "static",
        "ablation: static distillation",
        f"{KL_WHOLE_RUN} with a frozen teacher: a fresh retriever distilled for 1 epoch from ours_1_epoch's trained "
        "re-ranker (static distillation; the teacher's training is not in its train s, the comparisons add it)",
        (*ONE_EPOCH, *NO_KL_WARMUP, "--static", "true"),
        baseline=KL_WHOLE_RUN,
        teacher=BASELINE,
    ),
    loss_ablation(
        "direction_reranker_to_retriever", "ablation: KL(re-ranker, retriever)", "direction", "reranker_to_retriever"
    ),
    loss_ablation(
        "no_reranker_kl_gradient",
        "ablation: no KL gradient into the re-ranker",
        "reranker_kl_gradient",
        False,
        baseline=KL_WHOLE_RUN,
    ),
    loss_ablation("reduction_element", "ablation: KL averaged over list entries", "reduction", "element"),
    _ablation(
        "official_loss",
        "ablation: the official code's KL",
        f"{KL_WHOLE_RUN} with the official code's KL: KL(re-ranker || retriever), no gradient into the "
        "re-ranker, averaged over list entries (our retriever supervision and in-batch negatives kept)",
        (
            *ONE_EPOCH,
            *NO_KL_WARMUP,
            "--direction",
            "reranker_to_retriever",
            "--reranker_kl_gradient",
            "false",
            "--reduction",
            "element",
        ),
        baseline=KL_WHOLE_RUN,
    ),
    _ablation(
        "paper_loss",
        "ablation: the paper's loss alone",
        f"{KL_WHOLE_RUN} with the paper's loss alone (no retriever supervision, no in-batch negatives)",
        (*ONE_EPOCH, *NO_KL_WARMUP, "--retriever_supervised_weight", "0", "--in_batch_negatives", "false"),
        baseline=KL_WHOLE_RUN,
    ),
    _ablation(
        "list_size_8",
        "ablation: lists of 8",
        "ours_1_epoch with lists of 8 passages (default 4)",
        (*ONE_EPOCH, "--list_size", "8"),
    ),
    _ablation(
        "list_size_16",
        "ablation: lists of 16",
        "ours_1_epoch with lists of 16 passages",
        (*ONE_EPOCH, "--list_size", "16"),
    ),
    _ablation(
        "undenoised",
        "ablation: undenoised instances only",
        "ours_augmented with undenoised instances only (no re-ranker pass; half its second stage's lists and steps)",
        (*AUGMENTED, "--instance_mix", "undenoised"),
        baseline=CHAIN,
    ),
    # denoising apart from the amount of data: ``denoised`` mines as many lists as ``undenoised`` (one a query,
    # from the same top 30), filtered by the re-ranker; ``undenoised`` vs ``denoised`` is the filter alone
    _ablation(
        "denoised",
        "ablation: denoised instances only",
        "ours_augmented with denoised instances only (one list a query, as undenoised, but filtered by the "
        "re-ranker: the filter apart from the amount of data)",
        (*AUGMENTED, "--instance_mix", "denoised"),
        baseline=CHAIN,
    ),
)
_LEVERS = (
    _lever(
        f"{CHAIN}_2_rounds",
        "lever: two augmentation rounds",
        f"{CHAIN} and a second round: lists mined and denoised by its jointly trained models, 1 more joint epoch "
        f"from them (RocketQA's pipeline iterates; round 1 is the {CHAIN} job's)",
        (*AUGMENTED, "--augment_rounds", "2"),
        baseline=CHAIN,
    ),
    # denoising's thresholds (RocketQA's: 0.1 / 0.9), looser and stricter; the warm-up is ours_1_epoch's, as the chain's
    *(
        _lever(
            f"denoise_{negative}_{positive}",
            f"lever: denoising thresholds {negative} / {positive}",
            f"{CHAIN} keeping a mined negative only below P(relevant) {negative} and adding an unlabelled passage as a "
            f"positive above {positive} (default 0.1 / 0.9)",
            (*AUGMENTED, "--negative_below", negative, "--positive_above", positive),
            baseline=CHAIN,
        )
        for negative, positive in (("0.3", "0.7"), ("0.05", "0.95"))
    ),
    # the re-ranker is the slow learner (its listwise loss ends the epoch at 0.63 where the retriever's is 0.15);
    # on the dev split 1e-4 fit the training lists better (0.40 vs 0.52) and re-ranked worse: 2e-5 is the other side
    *(
        _lever(
            f"reranker_lr_{lr}",
            f"lever: re-ranker learning rate {lr}",
            f"{BASELINE} with the re-ranker's encoder at learning rate {lr} (default 5e-5)",
            (*ONE_EPOCH, "--reranker_lr", lr),
        )
        for lr in ("2e-5", "1e-4")
    ),
    # SciFact's median abstract is 314 MiniLM tokens (98% pass 128, 72% pass 256): at 128 the re-ranker reads about a
    # third of one, the retriever 256 tokens at inference (128 in training)
    _lever(
        "reranker_length_256",
        "lever: the re-ranker reads 256 tokens",
        f"{BASELINE} with query and passage pairs of up to 256 tokens for the re-ranker, in training and inference "
        "(default 128)",
        (*ONE_EPOCH, "--reranker_max_length", "256"),
    ),
    _lever(
        "reranker_length_512",
        "lever: the re-ranker reads 512 tokens",
        f"{BASELINE} with query and passage pairs of up to 512 tokens for the re-ranker (MiniLM's limit; nearly every "
        "abstract whole), in training and inference (default 128)",
        (*ONE_EPOCH, "--reranker_max_length", "512"),
    ),
    _lever(
        "ours_reranker_length_256",
        "lever: the default recipe, the re-ranker at 256 tokens",
        "ours (3 joint epochs) with query and passage pairs of up to 256 tokens for the re-ranker (default 128)",
        ("--reranker_max_length", "256"),
        baseline="ours",
    ),
    _lever(
        "ours_2_epochs_reranker_length_256",
        "lever: 2 joint epochs, the re-ranker at 256 tokens",
        "ours with 2 joint epochs instead of 3 and query and passage pairs of up to 256 tokens for the re-ranker: "
        "about the default recipe's training time (the re-ranker at 256 costs 1.7x an epoch)",
        ("--epochs", "2", "--reranker_max_length", "256"),
        baseline="ours",
    ),
    # towards the goals from the preset (3 epochs, the re-ranker at 256): more epochs, longer lists (the chain at 256:
    # ours_augmented and its levers run with --reranker_max_length 256)
    _lever(
        "ours_5_epochs_reranker_length_256",
        "lever: 5 joint epochs, the re-ranker at 256 tokens",
        "ours_reranker_length_256 with 5 joint epochs instead of 3 (more passes over the same lists; the retriever "
        "still gained from the second epoch to the third on the dev split)",
        ("--reranker_max_length", "256", "--epochs", "5"),
        baseline="ours_reranker_length_256",
    ),
    # the sentence-transformers bi-encoder still gained from 5 epochs to 8 (test, seed 42, lr 5e-5: 0.757 -> 0.779),
    # and our retriever from 3 to 5 (dev, at 256: 0.755 -> 0.764): where our epochs stop paying
    _lever(
        "ours_8_epochs_reranker_length_256",
        "lever: 8 joint epochs, the re-ranker at 256 tokens",
        "ours_reranker_length_256 with 8 joint epochs instead of 3 (the bi-encoder peer's best epochs)",
        ("--reranker_max_length", "256", "--epochs", "8"),
        baseline="ours_reranker_length_256",
    ),
    _lever(
        "ours_list_size_8_reranker_length_256",
        "lever: lists of 8, the re-ranker at 256 tokens",
        "ours_reranker_length_256 with lists of 8 passages (1 positive + 7 BM25 negatives; default 4): at one epoch "
        "the re-ranker gained most from it; about twice the training time",
        ("--reranker_max_length", "256", "--list_size", "8"),
        baseline="ours_reranker_length_256",
    ),
    # out of the domain, the three-epoch retriever forgets (dev: CACM -2.1, MED -1.5 against zero-shot); a smaller
    # step keeps it nearer the backbone during training, where WiSE-FT interpolates after it
    _lever(
        "ours_retriever_lr_1e-5",
        "lever: the retriever's learning rate 1e-5",
        "ours with the retriever at learning rate 1e-5 (default 2e-5): a remedy for forgetting out of the domain, "
        "against WiSE-FT's trade",
        ("--retriever_lr", "1e-5"),
        baseline="ours",
    ),
    # the other side: the sentence-transformers bi-encoder retrieved 0.720 at lr 2e-5 and 0.757 at 5e-5 (5 epochs, test,
    # seed 42), so our retriever's 2e-5 might hold it back too; on dev it did not (0.742 against 0.757, lower on all
    # three)
    _lever(
        "ours_retriever_lr_5e-5",
        "lever: the retriever's learning rate 5e-5",
        "ours with the retriever at learning rate 5e-5 (default 2e-5), which lifted the sentence-transformers "
        "bi-encoder over 2e-5",
        ("--retriever_lr", "5e-5"),
        baseline="ours",
    ),
    # where the processor runs bf16 natively (AVX512-BF16 / AMX, a recent GPU), training and scoring in it are faster:
    # the default recipe in bf16 against its fp32 runs, paired by seed, before `auto` becomes the default
    _lever(
        "ours_bf16",
        "lever: the default recipe in bf16",
        "ours trained under bf16 autocast (the loss in float32) and evaluated in bf16 (the OpenVINO backend's bf16 "
        "where the benchmark runs it), on a processor with native bf16",
        ("--mixed_precision", "bf16", "--precision", "bf16"),
        baseline="ours",
    ),
    _lever(
        "train_length_256",
        "lever: training passages of 256 tokens",
        "reranker_length_256 with the retriever's training passages at 256 tokens too (default 128), its inference "
        "length",
        (*ONE_EPOCH, "--reranker_max_length", "256", "--train_passage_max_length", "256"),
        baseline="reranker_length_256",
    ),
    _lever(
        "separate_towers",
        "lever: separate query and passage towers",
        f"{BASELINE} with a query encoder and a passage encoder of their own (the paper's dual encoder; default: one "
        "shared encoder)",
        (*ONE_EPOCH, "--shared_towers", "false"),
    ),
    _lever(
        "official_input_format",
        "lever: the official code's input format",
        f"{BASELINE} with titled passages as RocketQA's code has them (title and text as segments A and B; the "
        "re-ranker's title and text without a [SEP] between)",
        (*ONE_EPOCH, "--input_format", "official"),
    ),
)
SYSTEMS: dict[str, BenchSystem] = {system.name: system for system in (*_REGISTRY, *_LEVERS)}
"""Every system, in report order: peers (the cross-encoder after the bi-encoder it needs), ours, the ablations, the
levers."""
PEERS = tuple(name for name, s in SYSTEMS.items() if s.group == PEER)
OURS = tuple(name for name, s in SYSTEMS.items() if s.group == OURS_GROUP)
ABLATIONS = tuple(name for name, s in SYSTEMS.items() if s.group == ABLATION)
LEVERS = tuple(name for name, s in SYSTEMS.items() if s.group == LEVER)
PAIRED = (*ABLATIONS, *LEVERS)
"""The systems reported as differences from their baseline, paired by seed."""
GROUPS = {"ablations": ABLATIONS, "levers": LEVERS, "all": tuple(SYSTEMS)}
"""``--systems`` names that stand for several systems."""


def expand(names: list[str]) -> list[str]:
    """System names (and groups) -> the systems to run, in registry order; an ablation brings its baseline."""
    expanded = {system for name in names for system in GROUPS.get(name, (name,))}
    while missing := {SYSTEMS[name].baseline for name in expanded if SYSTEMS[name].baseline} - expanded:
        expanded |= missing
    return [name for name in SYSTEMS if name in expanded]
