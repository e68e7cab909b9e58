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


@pytest.mark.parametrize("mixed_precision, attention", [("bf16", "eager"), ("no", "sdpa")])
def test_half_precision_training_on_the_cpu_runs_eager_attention(train_setup, tmp_path, monkeypatch, mixed_precision,
                                                                 attention):
    """PyTorch's attention kernels are slow in bf16 on the CPU (the fused one's backward 5.5x its fp32 time, the math
    one's safe softmax): a bf16 step computes transformers' eager attention in both towers, an fp32 one keeps sdpa,
    and the models go back to sdpa after the step (what evaluation computes with)."""
    from modeling_rq2.training.chain import run_training
    from modeling_rq2.training.config_files import parse_arguments
    from modeling_rq2.training.joint import JointModel

    seen, forward, models = [], JointModel.forward, []

    def recorded(self, *args, **kwargs):
        models.append(self)
        seen.append({e.config._attn_implementation for e in (self.retriever.query_encoder, self.reranker.encoder)})
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(JointModel, "forward", recorded)
    argv = train_argv(train_setup, tmp_path, "--max_steps", "2", "--eval_split", "none", "--save_steps", "0",
                      "--mixed_precision", mixed_precision)  # fmt: skip
    run_training(*parse_arguments(argv))
    assert seen == [{attention}] * 2
    joint = models[0]
    assert {m.config._attn_implementation for m in joint.modules() if hasattr(m, "config")} == {"sdpa"}


def test_eager_training_attention_computes_what_sdpa_does(retriever, reranker):
    """The switch changes the kernel, not the result: padded inputs give the same embeddings and scores (fp32)."""
    import torch

    from modeling_rq2.training.trainer import training_attention

    queries, passages = ["a short query", "a longer query with more words in it"], [{"title": "t", "text": "one"}, "two three"]
    expected = retriever.encode_queries(queries), reranker.score(queries[1], passages)
    towers = torch.nn.ModuleList([retriever, reranker])
    with training_attention(towers, torch.device("cpu"), "bf16"):
        assert {retriever.query_encoder.config._attn_implementation, reranker.encoder.config._attn_implementation} == {
            "eager"
        }
        got = retriever.encode_queries(queries), reranker.score(queries[1], passages)
    for want, have in zip(expected, got):
        assert have == pytest.approx(want, abs=1e-5)
    assert retriever.query_encoder.config._attn_implementation == "sdpa"


def test_training_attention_gives_each_tower_back_its_own_even_after_an_error(retriever):
    """A tower set apart from its model's config (``set_attn_implementation`` on the tower alone) keeps its value,
    and a step that raises still restores."""
    import torch

    from modeling_rq2.training.trainer import training_attention

    retriever.query_encoder.config._attn_implementation = "eager"  # the tower's own, the composite's stays sdpa
    retriever.config._attn_implementation_internal = "sdpa"
    with pytest.raises(RuntimeError, match="a failing step"), training_attention(retriever, torch.device("cpu"), "bf16"):
        raise RuntimeError("a failing step")
    assert (retriever.config._attn_implementation, retriever.query_encoder.config._attn_implementation) == (
        "sdpa",
        "eager",
    )


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
