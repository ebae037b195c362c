"""insightface's input-normalisation rule, and ONNX files from elsewhere as pyfacex embedders."""
import numpy as np
import pytest
import torch

from pyfacex.export import input_convention, load_onnx_embedder
from pyfacex.export.onnx_file import keep_insightface_normalization

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

WEIGHT = np.arange(12, dtype=np.float32).reshape(3, 4) / 10 - 0.5


def mxnet_style_model(batch, sub_name="_minusscalar0", mul_name="_mulscalar0"):
    """A graph in the style of insightface's mxnet-converted models: it takes 0-255 RGB pixels and
    normalises them itself ((x - 127.5) * 0.0078125) before a toy embedding (mean colour @ WEIGHT)."""
    nodes = [helper.make_node("Sub", ["data", "mean"], ["centred"], name=sub_name),
             helper.make_node("Mul", ["centred", "scale"], ["normalised"], name=mul_name),
             helper.make_node("ReduceMean", ["normalised", "axes"], ["colour"], keepdims=0, name="pool"),
             helper.make_node("MatMul", ["colour", "weight"], ["fc1"], name="fc")]
    initializers = [numpy_helper.from_array(np.array(127.5, np.float32), "mean"),
                    numpy_helper.from_array(np.array(1 / 127.5, np.float32), "scale"),
                    numpy_helper.from_array(np.array([2, 3], np.int64), "axes"),
                    numpy_helper.from_array(WEIGHT, "weight")]
    graph = helper.make_graph(nodes, "mxnet_like", [helper.make_tensor_value_info("data", TensorProto.FLOAT,
                                                                                  [batch, 3, 8, 8])],
                              [helper.make_tensor_value_info("fc1", TensorProto.FLOAT, [batch, 4])], initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])  # ReduceMean takes axes from 18


def test_input_convention_is_insightfaces_rule():
    assert input_convention(mxnet_style_model(1)) == (0.0, 1.0)
    assert input_convention(mxnet_style_model(1, sub_name="Sub_0", mul_name="Mul_1")) == (0.0, 1.0)
    assert input_convention(mxnet_style_model(1, mul_name="scale")) == (127.5, 127.5)   # both names needed
    renamed = mxnet_style_model(1, sub_name="Sub_3", mul_name="Mul_4")
    keep_insightface_normalization(renamed)
    assert input_convention(renamed) == (127.5, 127.5)
    assert [n.name for n in renamed.graph.node[:2]] == ["pyfacex_Sub_3", "pyfacex_Mul_4"]
    onnx.checker.check_model(renamed)


def test_a_self_normalising_fixed_batch_model_gets_pixels(tmp_path):
    onnx.save(mxnet_style_model(1), tmp_path / "w600k_like.onnx")
    embedder, info = load_onnx_embedder(tmp_path / "w600k_like.onnx", threads=1)
    assert (info["name"], info["image_size"], info["embedding_size"]) == ("w600k_like", 8, 4)
    assert (info["input_mean"], info["input_std"], info["kwargs"]) == (0.0, 1.0, {})
    faces = torch.rand(3, 3, 8, 8) * 2 - 1   # pyfacex's input: (x - 127.5) / 127.5
    got = embedder(faces)   # 3 faces through a batch-1 graph: one call each
    expected = faces.mean((2, 3)).numpy() @ WEIGHT   # the graph's own normalisation undoes the pixels
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-6)
    assert embedder(faces[:0]).shape == (0, 4)
    with pytest.raises(ValueError, match="images must be 8x8"):
        embedder(torch.zeros(1, 3, 9, 9))
    with pytest.raises(ValueError, match=r"images must be float faces \(B, 3, H, W\)"):
        embedder(torch.zeros(1, 3, 8, 8, dtype=torch.uint8))
