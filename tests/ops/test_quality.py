"""The quality ops against the papers' formulas, computed by hand."""
from __future__ import annotations

import math

import torch

import pyfacex.ops as ops


def test_lgaf_fusion_by_hand(backend):
    # Stats μˡ=4, σˡ=1, μᵍ=3, σᵍ=0.5; h = 0.5. Eq. 6: Ẑ = clip(0.5·(‖x‖ − μ)/σ, −1, 1) + 1.
    # Row 0: ‖local‖ = 5, ‖global‖ = 2.5: Ẑˡ = 1.5, Ẑᵍ = 0.5  -> γ = (0.75, 0.25)     (eq. 9)
    # Row 1: ‖local‖ = 5, ‖global‖ = 2:   Ẑˡ = 1.5, Ẑᵍ = 0    -> γ = (1, 0)
    # Row 2: ‖local‖ = 4, ‖global‖ = 3:   Ẑˡ = Ẑᵍ = 1          -> γ = (½, ½)
    # Row 3: both norms far below:        Ẑˡ = Ẑᵍ = 0          -> γ = (½, ½) by the 0/0 guard
    local = torch.tensor([[3.0, 4.0], [3.0, 4.0], [0.0, 4.0], [0.0, 0.1]])
    global_ = torch.tensor([[2.5, 0.0], [2.0, 0.0], [3.0, 0.0], [0.1, 0.0]])
    stats = torch.tensor([4.0, 1.0, 3.0, 0.5])
    kappa, gamma = ops.lgaf_fusion(local, global_, stats, h=0.5)
    torch.testing.assert_close(gamma, torch.tensor([[0.75, 0.25], [1.0, 0.0], [0.5, 0.5], [0.5, 0.5]]))
    # eq. 10: κ = γˡ·local + γᵍ·global
    torch.testing.assert_close(kappa, torch.tensor([[2.875, 3.0], [3.0, 4.0], [1.5, 2.0], [0.05, 0.05]]))


def test_lgaf_fusion_weights_are_constants_of_the_graph(backend):
    local = torch.tensor([[3.0, 4.0]], requires_grad=True)
    global_ = torch.tensor([[1.0, 2.0]], requires_grad=True)
    kappa, gamma = ops.lgaf_fusion(local, global_, torch.tensor([4.0, 2.0, 2.0, 1.0]), h=0.333)
    kappa.sum().backward()
    w_local = gamma[0, 0].item()
    torch.testing.assert_close(local.grad, torch.full((1, 2), w_local))
    torch.testing.assert_close(global_.grad, torch.full((1, 2), 1 - w_local))
    assert not gamma.requires_grad


def test_elementwise_helpers_by_hand():
    z = ops.standardized_norm(torch.tensor([5.0, 1.0, 3.0]), 3.0, 2.0)  # qaface eq. 10
    torch.testing.assert_close(z, torch.tensor([1.0, -1.0, 0.0]))
    z = torch.tensor([-3.0, -2.0, 0.0, 1.0])  # −2 is exactly −τ: kept
    torch.testing.assert_close(ops.qaface_weight(z, tau=2.0),
                               torch.tensor([0.0, math.exp(2.0), 1.0, math.exp(-1.0)]))  # eq. 11
    torch.testing.assert_close(ops.lgaf_quality(torch.tensor([-9.0, 0.0, 1.5, 9.0]), h=0.5),
                               torch.tensor([0.0, 1.0, 1.75, 2.0]))


def _memory_case():
    weight = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 4.0], [1.0, 1.0]])
    memory = torch.tensor([[0.5, 0.5], [1.0, 0.0], [0.0, 1.0], [7.0, 7.0]])
    stamps = torch.tensor([-1, 20, 15, 14])  # never written, fresh, edge of the window, stale
    return weight, memory, stamps


def test_qaface_injection_window(backend):
    weight, memory, stamps = _memory_case()
    injected, active = ops.memory_inject(weight, memory, stamps, iteration=20, delta_t=5)
    assert active.tolist() == [False, True, True, False]  # 20 − 15 == Δt is in, 20 − 14 is out
    torch.testing.assert_close(injected, torch.tensor([[1.0, 0.0], [1.0, 2.0], [3.0, 5.0], [1.0, 1.0]]))  # eq. 12


def test_vpl_injection_mix(backend):
    weight, memory, stamps = _memory_case()
    injected, _ = ops.memory_inject(weight, memory, stamps, iteration=20, delta_t=5, vpl=True, lam=0.25)
    # Active rows: 0.75·W/‖W‖ + 0.25·M; row 2: W/‖W‖ = (0.6, 0.8).
    torch.testing.assert_close(injected[1], torch.tensor([0.25, 0.75]))
    torch.testing.assert_close(injected[2], torch.tensor([0.45, 0.85]))
    torch.testing.assert_close(injected[[0, 3]], weight[[0, 3]])


def test_write_keeps_the_last_sample_of_a_class_and_skips_minus_one(backend):
    memory = torch.zeros(3, 2)
    stamps = torch.full((3,), -1)
    features = torch.tensor([[3.0, 4.0], [0.0, 5.0], [1.0, 0.0], [2.0, 0.0]])
    labels = torch.tensor([1, 1, -1, 0])
    scale = torch.tensor([1.0, 2.0, 1.0, 0.5])
    ops.memory_write_(memory, stamps, features, labels, scale, iteration=7)
    # Class 1: the second sample, 2·(0, 1); class 0: 0.5·(1, 0); class 2 untouched (label −1 skipped).
    torch.testing.assert_close(memory, torch.tensor([[0.5, 0.0], [0.0, 2.0], [0.0, 0.0]]))
    assert stamps.tolist() == [7, 7, -1]


def test_write_f0_samples_write_nothing(backend):
    # "samples with ‖x‖ lower than −τ would not affect the centers" (QAFace, Sec. 3.4): f = 0 writes
    # neither the memory row nor the stamp, alone or as a duplicate of a class in the batch.
    memory = torch.tensor([[0.0, 9.0], [9.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    stamps = torch.tensor([3, 3, -1, -1])
    features = torch.tensor([[5.0, 0.0], [1.0, 0.0], [0.0, 1.0], [3.0, 4.0], [0.0, 2.0], [2.0, 0.0]])
    labels = torch.tensor([0, 1, 1, 2, 2, 3])
    scale = torch.tensor([0.0, 2.0, 0.0, 0.0, 3.0, 0.0])
    ops.memory_write_(memory, stamps, features, labels, scale, iteration=7)
    # Class 0: f = 0 alone, the earlier memory and stamp stay. Class 1: f > 0 then f = 0, the first
    # stays (2·(1, 0)). Class 2: f = 0 then f > 0, the second (3·(0, 1)). Class 3: never written.
    torch.testing.assert_close(memory, torch.tensor([[0.0, 9.0], [2.0, 0.0], [0.0, 3.0], [0.0, 0.0]]))
    assert stamps.tolist() == [3, 7, 7, -1]


def test_memory_step_injects_before_writing(backend):
    weight = torch.eye(2)
    memory = torch.zeros(2, 2)
    stamps = torch.full((2,), -1)
    features = torch.tensor([[0.0, 3.0]])
    injected, active = ops.memory_step(weight, memory, stamps, features, torch.tensor([0]), None,
                                       iteration=1, delta_t=10)
    assert not active.any()  # this batch's write is not injected into its own step
    torch.testing.assert_close(injected, weight)
    injected, active = ops.memory_step(weight, memory, stamps, features, torch.tensor([0]), None,
                                       iteration=2, delta_t=10)
    torch.testing.assert_close(injected, torch.tensor([[1.0, 1.0], [0.0, 1.0]]))
    assert active.tolist() == [True, False]


def test_qaface_injection_gradient_passes_unchanged(backend):
    weight, memory, stamps = _memory_case()
    weight.requires_grad_(True)
    injected, _ = ops.memory_inject(weight, memory, stamps, iteration=20, delta_t=5)
    grad = torch.arange(8.0).view(4, 2)
    injected.backward(grad)
    torch.testing.assert_close(weight.grad, grad)  # eq. 12 adds a constant, active or not


def test_vpl_injection_gradient_is_that_of_the_normalised_weight(backend):
    weight = torch.tensor([[3.0, 4.0]], requires_grad=True)
    injected, _ = ops.memory_inject(weight, torch.zeros(1, 2), torch.tensor([0]), 0, 0, vpl=True, lam=0.5)
    injected[0, 0].backward()
    # d/dW (0.5·W₀/‖W‖) = 0.5·(e₀ − ŵ₀ŵ)/‖W‖ with ŵ = (0.6, 0.8), ‖W‖ = 5.
    torch.testing.assert_close(weight.grad, 0.5 * torch.tensor([[1 - 0.36, -0.48]]) / 5)
