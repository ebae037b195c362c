"""Semantics of the sets ops beyond parity: eq. 4 by hand, the argmax rule, symmetry, isolation."""
from __future__ import annotations

import pytest
import torch

import pyfacex.ops as ops


def test_global_concat_by_hand(backend):
    # Two sets: {a, b} and {c}. Eq. 4: Y_n = X_n ⊕ max_j X_j.
    x = torch.tensor([[1.0, 5.0], [3.0, 2.0], [-1.0, -2.0]])
    y = ops.global_concat(x, torch.tensor([0, 2, 3]))
    expected = torch.tensor([[1.0, 5.0, 3.0, 5.0], [3.0, 2.0, 3.0, 5.0], [-1.0, -2.0, -1.0, -2.0]])
    assert torch.equal(y, expected)


def test_ties_send_the_gradient_to_the_first_member(backend):
    x = torch.tensor([[2.0, 0.0], [2.0, 1.0], [2.0, 1.0]], requires_grad=True)
    ops.set_max(x, torch.tensor([0, 3])).sum().backward()
    assert torch.equal(x.grad, torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]))


def test_global_concat_gradient_of_the_max_half_sums_over_members(backend):
    x = torch.tensor([[1.0], [4.0], [4.0]], requires_grad=True)
    y = ops.global_concat(x, torch.tensor([0, 3]))
    # Own-channel gradients 1, 2, 3; max-channel gradients 10, 20, 30 all reach member 1 (first 4.0).
    y.backward(torch.tensor([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0]]))
    assert torch.equal(x.grad, torch.tensor([[1.0], [62.0], [3.0]]))


def test_nan_propagates_and_takes_the_gradient(backend):
    x = torch.tensor([[1.0], [float("nan")], [float("nan")], [9.0]], requires_grad=True)
    m = ops.set_max(x, torch.tensor([0, 4]))
    assert m.isnan().all()
    m.sum().backward()
    assert torch.equal(x.grad, torch.tensor([[0.0], [1.0], [0.0], [0.0]]))


def test_permuting_members_permutes_outputs(backend):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(7, 4, 3, generator=gen)
    offsets = torch.tensor([0, 4, 7])
    perm = torch.tensor([3, 1, 0, 2, 6, 4, 5])  # within each set
    assert torch.equal(ops.set_max(x[perm], offsets), ops.set_max(x, offsets))
    assert torch.equal(ops.global_concat(x[perm], offsets), ops.global_concat(x, offsets)[perm])


def test_sets_are_isolated(backend):
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(9, 5, generator=gen)
    offsets = torch.tensor([0, 3, 6, 9])
    before = ops.global_concat(x, offsets)
    x2 = x.clone()
    x2[3:6] = 100 * torch.randn(3, 5, generator=gen)
    after = ops.global_concat(x2, offsets)
    assert torch.equal(after[:3], before[:3]) and torch.equal(after[6:], before[6:])
    assert not torch.equal(after[3:6], before[3:6])


def test_dense_forms_match_packed(backend):
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(4, 3, 2, 5, generator=gen)  # (b, T, C, W)
    offsets = torch.tensor([0, 3, 6, 9, 12])
    packed = x.reshape(12, 2, 5)
    assert torch.equal(ops.set_max_dense(x), ops.set_max(packed, offsets))
    assert torch.equal(ops.global_concat_dense(x), ops.global_concat(packed, offsets).reshape(4, 3, 4, 5))


def test_dense_rejects_sets_without_members(backend):
    with pytest.raises(ValueError, match="T >= 1"):
        ops.set_max_dense(torch.zeros(2, 0, 3))


@pytest.mark.skipif("native" not in ops.available_backends("cpu"), reason="native backend unavailable")
def test_native_ops_compile_without_graph_breaks():
    def loss(x, offsets):
        return ops.global_concat(x, offsets).relu().sum() + ops.set_max(x, offsets).square().sum()

    x = torch.randn(5, 3, 4, requires_grad=True)
    offsets = torch.tensor([0, 2, 5])
    compiled = torch.compile(loss, fullgraph=True)
    expected = loss(x, offsets)
    (grad_expected,) = torch.autograd.grad(expected, x)
    actual = compiled(x, offsets)
    (grad_actual,) = torch.autograd.grad(actual, x)
    torch.testing.assert_close(actual, expected)
    torch.testing.assert_close(grad_actual, grad_expected)


@pytest.mark.cuda
@pytest.mark.parametrize("op", ["set_max_backward", "global_concat_backward"])
def test_native_backward_rejects_grad_on_another_device(op):
    if "native" not in ops.available_backends("cuda", op="set_max"):
        pytest.skip(f"no native CUDA kernels: {ops.native_unavailable_reason('cuda')}")
    x = torch.randn(5, 3, device="cuda")
    offsets = torch.tensor([0, 2, 5], device="cuda")
    grad = torch.randn(2 if op == "set_max_backward" else 5, 3 if op == "set_max_backward" else 6)  # on the CPU
    with pytest.raises(ValueError, match="grad must be on x's device cuda:0, got cpu"):
        getattr(torch.ops.pyfacex, op)(grad, x, offsets)
