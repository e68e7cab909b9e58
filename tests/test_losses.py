import math

import numpy as np
import pytest
import torch

from modeling_rq2.training.losses import listwise_cross_entropy, listwise_distillation_loss

DE = [[2.0, 1.0, 0.5], [0.1, 0.3, -1.0]]
CE = [[0.5, 1.5, -0.5], [2.0, 0.0, 1.0]]


def _softmax(x):
    e = np.exp(np.asarray(x) - np.max(x, axis=-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _kl(p, q):  # KL(p || q) per query
    return (p * (np.log(p) - np.log(q))).sum(-1)


def _leaves():
    return torch.tensor(DE, requires_grad=True), torch.tensor(CE, requires_grad=True)


@pytest.mark.parametrize("t_de, t_ce", [(1.0, 1.0), (0.5, 2.0)])
def test_paper_direction_matches_hand_computation(t_de, t_ce):
    p_de, p_ce = _softmax(np.array(DE) / t_de), _softmax(np.array(CE) / t_ce)
    out = listwise_distillation_loss(torch.tensor(DE), torch.tensor(CE), retriever_temperature=t_de, reranker_temperature=t_ce)
    expected_kl = _kl(p_de, p_ce).mean()
    expected_sup = -np.log(p_ce[:, 0]).mean()
    assert out.kl.item() == pytest.approx(expected_kl, rel=1e-5)
    assert out.supervised.item() == pytest.approx(expected_sup, rel=1e-5)
    assert out.total.item() == pytest.approx(expected_kl + expected_sup, rel=1e-5)


def test_official_direction_and_element_reduction():
    p_de, p_ce = _softmax(DE), _softmax(CE)
    official = listwise_distillation_loss(torch.tensor(DE), torch.tensor(CE), direction="reranker_to_retriever")
    assert official.kl.item() == pytest.approx(_kl(p_ce, p_de).mean(), rel=1e-5)
    element = listwise_distillation_loss(torch.tensor(DE), torch.tensor(CE), direction="reranker_to_retriever", reduction="element")
    assert element.kl.item() == pytest.approx(official.kl.item() / 3, rel=1e-5)


def test_weights_scale_the_parts():
    out = listwise_distillation_loss(torch.tensor(DE), torch.tensor(CE), kl_weight=0.3, supervised_weight=2.0)
    assert out.total.item() == pytest.approx(0.3 * out.kl.item() + 2.0 * out.supervised.item(), rel=1e-6)


def test_dynamic_distillation_trains_both_models_through_the_kl():
    de, ce = _leaves()
    listwise_distillation_loss(de, ce, supervised_weight=0.0).total.backward()
    assert de.grad.abs().sum() > 0 and ce.grad.abs().sum() > 0


def test_without_reranker_kl_gradient_the_reranker_learns_only_from_its_labels():
    de, ce = _leaves()
    listwise_distillation_loss(de, ce, reranker_kl_gradient=False).total.backward()
    ce_only = torch.tensor(CE, requires_grad=True)
    listwise_cross_entropy(ce_only).backward()
    torch.testing.assert_close(ce.grad, ce_only.grad)
    assert de.grad.abs().sum() > 0


def test_static_mode_sends_no_gradient_to_the_reranker():
    de, ce = _leaves()
    out = listwise_distillation_loss(de, ce, static=True)
    out.total.backward()
    assert ce.grad is None and de.grad.abs().sum() > 0
    assert out.total.item() == pytest.approx(out.kl.item(), rel=1e-6)  # supervised reported, not optimised


def test_masked_entries_are_ignored_and_stay_finite():
    de = torch.tensor([[2.0, 1.0, 0.0], [0.1, 0.3, -1.0]], requires_grad=True)
    ce = torch.tensor([[0.5, 1.5, 9.0], [2.0, 0.0, 1.0]], requires_grad=True)
    mask = torch.tensor([[True, True, False], [True, True, True]])
    out = listwise_distillation_loss(de, ce, mask=mask)
    out.total.backward()
    assert torch.isfinite(out.total) and de.grad[0, 2] == 0 and ce.grad[0, 2] == 0
    # query 0 scored as a 2-passage list gives the same per-query terms
    p_de, p_ce = _softmax([2.0, 1.0]), _softmax([0.5, 1.5])
    q1 = _kl(_softmax([0.1, 0.3, -1.0]), _softmax([2.0, 0.0, 1.0]))
    assert out.kl.item() == pytest.approx((_kl(p_de, p_ce) + q1) / 2, rel=1e-5)
    element = listwise_distillation_loss(de, ce, mask=mask, reduction="element")
    assert element.kl.item() == pytest.approx((_kl(p_de, p_ce) + q1) / 5, rel=1e-5)


def test_huge_scores_stay_finite():
    out = listwise_distillation_loss(torch.tensor([[1e4, -1e4]]), torch.tensor([[-1e4, 1e4]]))
    assert math.isfinite(out.total.item())


def test_listwise_cross_entropy_value_and_labels():
    assert listwise_cross_entropy(torch.tensor(CE)).item() == pytest.approx(-np.log(_softmax(CE)[:, 0]).mean(), rel=1e-5)
    labels = torch.tensor([1, 0])
    expected = -(np.log(_softmax(CE)[0, 1]) + np.log(_softmax(CE)[1, 0])) / 2
    assert listwise_cross_entropy(torch.tensor(CE), labels=labels).item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"direction": "both"}, "direction"),
        ({"reduction": "sum"}, "reduction"),
        ({"retriever_temperature": 0.0}, "temperature"),
        ({"mask": torch.tensor([[False, True, True], [True, True, True]])}, "positive passage of a list is masked"),
    ],
)
def test_bad_options_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        listwise_distillation_loss(torch.tensor(DE), torch.tensor(CE), **kwargs)
