"""BatchNorm parameters of other eps and of folded convs, restated for pyfacex's BatchNorm (eps 1e-5)."""
import numpy as np
import torch

from pyfacex.convert.onnx_graph import _batchnorm_state, _bias_only


def as_module(entries: dict) -> torch.nn.BatchNorm2d:
    module = torch.nn.BatchNorm2d(len(entries["weight"]), eps=1e-5).eval()
    module.load_state_dict(entries)
    return module


def reference(y, scale, bias, mean, var, eps, shift=0.0):
    view = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float64).view(1, -1, 1, 1)  # noqa: E731
    return view(scale) * (y + view(shift) - view(mean)) / torch.sqrt(view(var) + eps) + view(bias)


def test_other_eps_moves_into_the_variance_or_the_scale():
    g = np.random.default_rng(0)
    scale, bias, mean = g.uniform(0.5, 1.5, 6), g.normal(size=6), g.normal(size=6)
    # variances around and below the eps difference, with a source eps below pyfacex's: the clamp path
    var = np.array([1.0, 0.3, 2e-6, 1e-7, 0.0, 5e-6])
    y = torch.randn(2, 6, 3, 3, dtype=torch.float64)
    for eps in (2e-5, 1e-6, 1e-5):
        entries = _batchnorm_state(scale, bias, mean, var, eps, shift=np.arange(6.0))
        assert (entries["running_var"] >= 0).all()
        with torch.no_grad():
            ours = as_module(entries)(y.float()).double()
        expected = reference(y, scale, bias, mean, var, eps, shift=np.arange(6.0))
        torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-4)


def test_bias_only_adds_the_bias():
    y = torch.randn(2, 3, 4, 4)
    with torch.no_grad():
        out = as_module(_bias_only(np.array([0.5, -1.0, 2.0])))(y)
    torch.testing.assert_close(out, y + torch.tensor([0.5, -1.0, 2.0]).view(1, 3, 1, 1))
