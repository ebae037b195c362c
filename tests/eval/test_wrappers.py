"""The evaluated-model wrappers: the feature memo and autocast."""
import pytest
import torch
from torch import nn

from pyfacex.eval import has_set_function
from pyfacex.eval.wrappers import AutocastEmbedder, MemoizedEmbedder, input_key


class Counting(nn.Module):
    """Sums pixels per image; set_representation sums per set. Counts its calls and records autocast."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(()))
        self.calls, self.autocast = 0, []

    def forward(self, x):
        self.calls += 1
        self.autocast.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")))
        return (x.flatten(1) @ torch.ones(x[0].numel(), 2)) * self.weight

    def set_representation(self, x, offsets):
        self.calls += 1
        rows = self.forward(x)
        return torch.stack([rows[a:b].sum(0) for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist())])


def test_memo_answers_equal_inputs_and_computes_others():
    inner = Counting()
    memo = MemoizedEmbedder(inner)
    x = torch.rand(3, 3, 4, 4)
    first = memo(x)
    assert memo(x.clone()).equal(first) and (memo.hits, memo.misses, inner.calls) == (1, 1, 1)
    y = x.clone()
    y[2, 0, 0, 0] += 0.5
    assert not memo(y).equal(first) and (memo.hits, memo.misses) == (1, 2)
    replay = MemoizedEmbedder(Counting(), memo.entries)      # a later run with the saved entries
    assert replay(x).equal(first) and replay.model.calls == 0


def test_memo_keys_sets_by_images_and_offsets_and_keeps_set_functions_absent():
    memo = MemoizedEmbedder(Counting())
    x = torch.rand(4, 3, 2, 2)
    one, two = torch.tensor([0, 4]), torch.tensor([0, 2, 4])
    assert memo.set_representation(x, one).shape == (1, 2)
    assert memo.set_representation(x, two).shape == (2, 2)      # same images, other sets: computed
    assert memo.set_representation(x, two).shape == (2, 2) and (memo.hits, memo.misses) == (1, 2)
    plain = nn.Linear(2, 2)
    assert has_set_function(memo) and not has_set_function(MemoizedEmbedder(plain))
    assert not has_set_function(AutocastEmbedder(plain))


def test_input_key_tells_dtype_shape_and_values_apart():
    x = torch.zeros(2, 3, dtype=torch.uint8)
    assert input_key(x) == input_key(x.clone())
    assert input_key(x) != input_key(x.reshape(3, 2)) != input_key(x.to(torch.int8))
    assert input_key(torch.zeros(0, 3)) != input_key(torch.zeros(0, 4))
    assert input_key(x, torch.tensor([0, 2])) != input_key(x, torch.tensor([0, 1, 2]))


def test_autocast_runs_the_model_in_bfloat16_on_the_cpu_and_returns_float32():
    inner = Counting()
    wrapped = AutocastEmbedder(inner)
    x = torch.rand(2, 3, 4, 4)
    out = wrapped(x)
    assert out.dtype == torch.float32 and inner.autocast[-1] == (True, torch.bfloat16)
    torch.testing.assert_close(out, inner(x), rtol=1e-2, atol=0)    # bf16's 8-bit mantissa
    assert not torch.is_autocast_enabled("cpu")                      # the context ends with the call
    sets = wrapped.set_representation(x, torch.tensor([0, 2]))
    assert sets.dtype == torch.float32 and inner.autocast[-1] == (True, torch.bfloat16)


def test_autocast_refuses_a_device_without_autocast():
    with pytest.raises(ValueError, match="amp: autocast runs on cpu, cuda"):
        AutocastEmbedder(Counting())(torch.rand(1, 3, 2, 2, device="meta"))
