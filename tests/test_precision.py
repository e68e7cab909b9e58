"""Inference precision reaches every command that encodes or scores: train.py's evaluation, rq2-augment's mining."""

import pytest

import modeling_rq2.models.modeling_rq2 as modeling

from conftest import train_argv


@pytest.fixture
def quantised(monkeypatch) -> list[str]:
    """The class names of the encoders int8 quantised in the test (``quantize_int8`` counted)."""
    calls, original = [], modeling.quantize_int8

    def counted(module):
        calls.append(type(module).__name__)
        return original(module)

    monkeypatch.setattr(modeling, "quantize_int8", counted)
    return calls


def test_train_evaluates_at_the_precision_asked(train_setup, tmp_path, quantised):
    from modeling_rq2.training.chain import run_training
    from modeling_rq2.training.config_files import parse_arguments

    metrics = run_training(*parse_arguments(train_argv(train_setup, tmp_path, "--max_steps", "1", "--precision", "int8")))
    assert quantised and metrics["eval"]["results"]  # the final evaluation encoded and scored in int8
    with pytest.raises(ValueError, match="--precision: invalid choice: 'int4'"):
        parse_arguments(train_argv(train_setup, tmp_path, "--precision", "int4"))


def test_augment_mines_at_the_precision_asked(train_setup, tmp_path, quantised, capsys):
    from modeling_rq2.training.augmentation import main

    root, data = train_setup
    argv = ["--retriever", str(root / "retriever"), "--reranker", str(root / "reranker"), "--data", str(data),
            "--output", str(tmp_path / "mined.jsonl"), "--augment_top_n", "5", "--precision", "int8"]  # fmt: skip
    report = main(argv)
    assert len(quantised) == 2 and report["queries"] > 0 and (tmp_path / "mined.jsonl").is_file()


@pytest.mark.parametrize("native, expected", [(True, "bf16"), (False, "no")])
def test_mixed_precision_auto_trains_in_bf16_only_where_the_hardware_runs_it(train_setup, tmp_path, monkeypatch,
                                                                             native, expected):
    """An AVX2-only CPU emulates bf16 (7.9x slower than fp32 there: bench/results/speed-bf16-emulated.md): auto is no
    there; the resolved value is what the plan, config and cards state."""
    import modeling_rq2.training.arguments as arguments
    from modeling_rq2.training.config_files import parse_arguments

    monkeypatch.setattr(arguments, "native_bf16", lambda device: native)
    args = parse_arguments(train_argv(train_setup, tmp_path, "--mixed_precision", "auto")).training
    assert args.mixed_precision == expected


@pytest.mark.parametrize("native, launched, expected", [(True, None, "bf16"), (False, None, "no"), (True, "no", "no")])
def test_training_defaults_to_auto_unless_accelerate_launch_names_a_precision(train_setup, tmp_path, monkeypatch,
                                                                             native, launched, expected):
    """``python train.py`` (``make demo``) trains in bf16 where the processor has it: the default recipe's numbers in
    bf16 are within its fp32 seed spread (ours_bf16 in bench/results/quality-jobs); ``accelerate launch`` always
    names one (its own default: no), and that one applies. The evaluation's precision resolves on the machine too,
    so a run moved to another processor is refused on resume like its training precision."""
    import modeling_rq2.training.arguments as arguments
    from modeling_rq2.training.config_files import parse_arguments

    for module in (arguments, modeling):
        monkeypatch.setattr(module, "native_bf16", lambda device: native)
    if launched:
        monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", launched)
    else:
        monkeypatch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)
    training = parse_arguments(train_argv(train_setup, tmp_path)).training
    evaluation = "bf16" if native else "fp32"  # --precision auto, resolved as --mixed_precision is
    assert (training.mixed_precision, training.precision) == (expected, evaluation)


@pytest.mark.parametrize("native, expected", [(True, "bf16"), (False, "fp32")])
def test_the_run_records_the_precision_its_evaluation_computed_in(train_setup, tmp_path, monkeypatch, native,
                                                                  expected):
    """``--precision auto`` (the default) resolves per machine: metrics.json and the cards say to what."""
    from huggingface_hub import ModelCard

    from modeling_rq2.training.chain import run_training
    from modeling_rq2.training.config_files import parse_arguments

    monkeypatch.setattr(modeling, "native_bf16", lambda device: native)
    argv = train_argv(train_setup, tmp_path, "--max_steps", "1", "--mixed_precision", "no")
    metrics = run_training(*parse_arguments(argv))
    assert metrics["hardware"]["evaluation_precision"] == expected
    assert f"`no` (evaluation: `{expected}`)" in ModelCard.load(tmp_path / "retriever" / "README.md").text


@pytest.mark.parametrize("mixed_precision, fused_attention", [("bf16", False), ("no", True)])
def test_bf16_training_on_the_cpu_runs_the_math_attention_kernel(train_setup, tmp_path, monkeypatch, mixed_precision,
                                                                 fused_attention):
    """PyTorch's fused CPU attention runs its backward 5.5x slower in bf16 than in fp32 (an AMX Xeon): a bf16 step
    on the CPU computes attention with the math kernel, an fp32 one keeps the fused kernel."""
    import torch

    from modeling_rq2.training.chain import run_training
    from modeling_rq2.training.config_files import parse_arguments
    from modeling_rq2.training.joint import JointModel

    seen, forward = [], JointModel.forward

    def recorded(self, *args, **kwargs):
        seen.append(torch.backends.cuda.flash_sdp_enabled())  # the fused kernel's switch, for the CPU as well
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(JointModel, "forward", recorded)
    argv = train_argv(train_setup, tmp_path, "--max_steps", "2", "--eval_split", "none", "--save_steps", "0",
                      "--mixed_precision", mixed_precision)  # fmt: skip
    run_training(*parse_arguments(argv))
    assert seen == [fused_attention] * 2 and torch.backends.cuda.flash_sdp_enabled()  # restored after the step


def test_int8_or_openvino_where_the_run_computes_on_a_gpu_is_refused_before_anything_loads(train_setup, tmp_path, monkeypatch):
    """It failed at the first evaluation, by default after the whole training."""
    import torch

    import modeling_rq2.evaluation.evaluate as evaluate
    import modeling_rq2.training.arguments as arguments
    from modeling_rq2.training.config_files import parse_arguments

    for module in (arguments, evaluate):
        monkeypatch.setattr(module, "default_device", lambda: torch.device("cuda"))
    for module in (arguments, modeling):  # a GPU of compute capability 8 or more (auto, the default, asks)
        monkeypatch.setattr(module, "native_bf16", lambda device: True)
    with pytest.raises(ValueError, match="--precision / --backend: precision int8 is dynamic quantisation for the CPU"):
        parse_arguments(train_argv(train_setup, tmp_path, "--precision", "int8"))
    with pytest.raises(ValueError, match="--precision / --backend: precision int8 is dynamic quantisation for the CPU"):
        evaluate.EvaluateArguments(retriever="default", precision="int8")
    with pytest.raises(ValueError, match="--precision / --backend: backend openvino runs on the CPU in fp32 or bf16"):
        parse_arguments(train_argv(train_setup, tmp_path, "--backend", "openvino"))


def test_the_openvino_backend_reaches_training_evaluation_and_mining(train_setup, tmp_path, monkeypatch):
    pytest.importorskip("openvino")
    from modeling_rq2.training.augmentation import main as augment
    from modeling_rq2.training.chain import run_training
    from modeling_rq2.training.config_files import parse_arguments

    compiled, original = [], modeling.compile_openvino
    monkeypatch.setattr(modeling, "compile_openvino", lambda module, **kw: compiled.append(1) or original(module, **kw))
    metrics = run_training(*parse_arguments(train_argv(train_setup, tmp_path / "t", "--max_steps", "1", "--backend", "openvino")))
    assert compiled and metrics["eval"]["results"]
    compiled.clear()
    root, data = train_setup
    augment(["--retriever", str(root / "retriever"), "--reranker", str(root / "reranker"), "--data", str(data),
             "--output", str(tmp_path / "mined.jsonl"), "--augment_top_n", "5", "--backend", "openvino"])  # fmt: skip
    assert len(compiled) == 2
