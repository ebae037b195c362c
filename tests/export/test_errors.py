"""Clear errors: unknown formats, files that are not models, embedders that cannot be exported."""
import pytest
import torch
from torch import nn

from pyfacex.export import ExportError, export_embedder, export_model, load_exported, load_onnx_embedder
from pyfacex.train.checkpoint import save_model

ALL_FORMATS = ("onnx", "torchscript", "exported-program")


@torch.library.custom_op("pyfacex_export_test::opaque", mutates_args=())
def opaque(x: torch.Tensor) -> torch.Tensor:
    """A custom op with a CPU kernel and a fake kernel but no ONNX translation."""
    return x * 2


@opaque.register_fake
def _(x):
    return torch.empty_like(x)


class CustomOp(nn.Module):
    def forward(self, faces):
        return opaque(faces).mean((2, 3))


class BranchOnValues(nn.Module):
    def forward(self, faces):
        if faces.sum() > 0:   # Python control flow on a tensor's value: no graph can hold it
            return faces.mean((2, 3))
        return faces.amax((2, 3))


class Pool(nn.Module):
    def forward(self, faces):
        return faces.mean((2, 3)) + 1.0


def test_unknown_format(kit, tmp_path):
    for call in (lambda: export_model(kit.model_file("iresnet"), tmp_path / "m.x", "tflite"),
                 lambda: export_embedder(Pool(), tmp_path / "m.x", "tflite", 8),
                 lambda: load_exported(tmp_path / "m.x", "tflite")):
        with pytest.raises(ValueError, match="format: expected one of onnx, torchscript, exported-program, "
                                             "got 'tflite'"):
            call()
    assert not (tmp_path / "m.x").exists()


@pytest.mark.parametrize("content", [b"not a model at all", None])
def test_a_file_that_is_not_a_model(content, tmp_path):
    path = tmp_path / "junk.pt"
    if content is None:
        torch.save({"weights": torch.zeros(2)}, path)   # a torch file, but no pyfacex model file
    else:
        path.write_bytes(content)
    with pytest.raises(ValueError, match="is not a pyfacex model file"):
        export_model(path, tmp_path / "out.ts", "torchscript")
    with pytest.raises(FileNotFoundError, match="MODEL: .*missing.pt does not exist"):
        export_model(tmp_path / "missing.pt", tmp_path / "out.ts", "torchscript")
    assert not (tmp_path / "out.ts").exists()


def test_a_landmark_model_has_no_embedder(tmp_path):
    from pyfacex.backbones.fan import FAN

    save_model(tmp_path / "fan.pt", FAN(num_stacks=1, width=8, depth=1), name="fan",
               kwargs=dict(num_stacks=1, width=8, depth=1), image_size=32)
    with pytest.raises(ValueError, match="landmarks"):
        export_model(tmp_path / "fan.pt", tmp_path / "fan.pt2", "exported-program")


def test_out_must_not_be_the_model_and_opset_is_checked(kit, tmp_path):
    source = kit.model_file("iresnet")
    with pytest.raises(ValueError, match="out: .* is the model file itself"):
        export_model(source, source, "torchscript")
    pytest.importorskip("onnxscript")
    with pytest.raises(ValueError, match="opset must be an int >= 17, got 16"):
        export_model(source, tmp_path / "m.onnx", "onnx", opset=16)


@pytest.mark.parametrize("format", ALL_FORMATS)
def test_an_op_outside_aten_is_named(format, tmp_path):
    if format == "onnx":
        pytest.importorskip("onnxscript")
    with pytest.raises(ExportError, match=r"pyfacex_export_test::opaque \(called at .*test_errors.py"):
        export_embedder(CustomOp(), tmp_path / "m", format, 8)
    assert not (tmp_path / "m").exists()


def test_pyfacex_native_ops_called_directly_are_named(tmp_path):
    from pyfacex._ext import native

    if not native.loaded:
        pytest.skip("the native extension is not built")

    class DirectNative(nn.Module):
        def forward(self, faces):
            f = faces.mean((2, 3))
            return torch.ops.pyfacex.lgaf_fusion(f, 2 * f, torch.tensor([1.0, 1.0, 1.0, 1.0]), 0.333)[0]

    with pytest.raises(ExportError, match="pyfacex::lgaf_fusion .*call them through pyfacex.ops"):
        export_embedder(DirectNative(), tmp_path / "m.pt2", "exported-program", 8)


@pytest.mark.parametrize("format", ["torchscript", "exported-program"])
def test_control_flow_on_values_is_refused_with_its_source_line(format, tmp_path):
    # a TorchScript trace would silently keep one branch: the export check refuses it first
    with pytest.raises(ExportError, match=r"BranchOnValues cannot be traced .*test_errors.py:\d+ in forward, "
                                          r"code: if faces.sum\(\) > 0"):
        export_embedder(BranchOnValues(), tmp_path / "m", format, 8)


@pytest.mark.parametrize("format", ALL_FORMATS)
def test_a_file_that_disagrees_with_the_model_is_not_written(format, tmp_path):
    if format == "onnx":
        pytest.importorskip("onnxruntime")
    faces = torch.rand(3, 3, 8, 8) * 2 - 1
    wrong = Pool()(faces).flip(0)   # the right embeddings of other faces
    with pytest.raises(ExportError, match=f"the {format} file disagrees with the model: cosine"):
        export_embedder(Pool(), tmp_path / "m", format, 8, reference=(faces, wrong))
    assert not (tmp_path / "m").exists()
    result = export_embedder(Pool(), tmp_path / "m", format, 8, reference=(faces, Pool()(faces)))
    assert result.path.is_file() and result.min_cosine >= 0.9999 and result.embedding_size == 3


def test_load_onnx_embedder_rejects_other_files(tmp_path):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper

    (tmp_path / "junk.onnx").write_bytes(b"\x00\x01 not protobuf")
    with pytest.raises(ValueError, match="junk is not an ONNX model"):
        load_onnx_embedder(tmp_path / "junk.onnx")
    with pytest.raises(FileNotFoundError):
        load_onnx_embedder(tmp_path / "missing.onnx")
    # a valid ONNX model whose input is not (N, 3, S, S) faces
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 10])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "relu.onnx")
    with pytest.raises(ValueError, match=r"relu is not a face-recognition model: expected one input \(N, 3, S, S\)"):
        load_onnx_embedder(tmp_path / "relu.onnx")
