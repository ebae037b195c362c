"""insightface ONNX recognition models → pyfacex model files, compared through onnxruntime."""
import warnings

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")
onnxruntime = pytest.importorskip("onnxruntime")

from pyfacex.convert import CHECK_COSINE, convert, import_model  # noqa: E402
from pyfacex.train.checkpoint import load_model  # noqa: E402


def arcface(peers, depth=18, seed=0, **overrides):
    return peers.randomise(peers.ArcfaceIResNet(peers.STAGE_LAYERS[depth], **{**peers.TINY, **overrides}), seed)


def run_onnx(path, x: np.ndarray) -> np.ndarray:
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(None, {session.get_inputs()[0].name: x[i:i + 1]})[0] for i in range(len(x))])


def cosine(a, b) -> np.ndarray:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_torch2onnx_layout_converts_to_the_graphs_features(peers, tmp_path):
    original = arcface(peers, depth=34)
    src = peers.export_arcface_onnx(original, tmp_path / "model.onnx")
    ops = [node.op_type for node in onnx.load(str(src)).graph.node]
    assert ops.count("BatchNormalization") == 1 + 16 + 1  # bn1 of the 16 blocks, bn2, features: the rest folded
    report = convert(src, "iresnet34", tmp_path / "model.pt")
    assert report.check["min_cosine"] >= CHECK_COSINE and report.check["images"] == 4
    model, info = load_model(report.path)
    x = peers.faces(3)
    with torch.no_grad():
        ours = model(x).numpy()
        theirs_torch = original(x).numpy()
    theirs = run_onnx(src, x.numpy())
    assert cosine(ours, theirs).min() >= 0.9999
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(ours, theirs_torch, rtol=1e-4, atol=1e-4)
    assert info["kwargs"] == {"widths": [4, 8, 12, 16], "num_features": 8, "input_size": 32}
    assert info["converted_from"]["input"] == "normalised" and info["converted_from"]["input_name"] == "data"


def test_unfolded_batchnorms_after_a_biased_conv(peers, tmp_path):
    # every BatchNorm its own node, and a stem conv with a bias the BatchNorm after it must absorb
    original = arcface(peers)
    original.conv1.bias = torch.nn.Parameter(torch.randn(4, generator=torch.Generator().manual_seed(5)))
    src = peers.export_arcface_onnx(original, tmp_path / "unfolded.onnx", fold=False)
    graph = onnx.load(str(src)).graph
    assert [n.op_type for n in graph.node].count("BatchNormalization") == 1 + 8 * 3 + 4 + 2
    model, _ = import_model(src, "iresnet18")
    x = peers.faces(3)
    with torch.no_grad():
        ours, theirs_torch = model(x).numpy(), original(x).numpy()
    np.testing.assert_allclose(ours, theirs_torch, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(ours, run_onnx(src, x.numpy()), rtol=1e-4, atol=1e-4)


def test_static_batch_graph_is_checked_in_chunks(peers, tmp_path):
    src = peers.export_arcface_onnx(arcface(peers), tmp_path / "model.onnx", dynamic_batch=False)
    dims = onnx.load(str(src)).graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_value == 1
    report = convert(src, "iresnet18", tmp_path / "model.pt")
    assert report.check["min_cosine"] >= CHECK_COSINE


def test_dynamo_export_layout(peers, tmp_path):
    # torch's newer exporter folds features into the Gemm and flattens with a Reshape
    original = arcface(peers)
    path = tmp_path / "dynamo.onnx"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # a deprecation inside torch.export
            torch.onnx.export(original, (peers.faces(2),), str(path), input_names=["data"], dynamo=True,
                              dynamic_shapes={"x": {0: torch.export.Dim("batch")}}, verbose=False)
    except Exception as error:  # noqa: BLE001 - the dynamo exporter needs onnxscript, an optional package
        pytest.skip(f"the dynamo ONNX exporter does not run here: {error}")
    ops = [node.op_type for node in onnx.load(str(path)).graph.node]
    assert "Reshape" in ops and ops[-1] == "Gemm"
    model, _ = import_model(path, "iresnet18")
    x = peers.faces(3)
    with torch.no_grad():
        ours = model(x).numpy()
    np.testing.assert_allclose(ours, run_onnx(path, x.numpy()), rtol=1e-4, atol=1e-4)


def test_mxnet_style_graph_takes_pixels_and_eps_2e5(peers, tmp_path):
    # mxnet-era models: BatchNorm eps 2e-5, the graph computes (x - 127.5) * 0.0078125 of raw pixels
    original = arcface(peers, bn_eps=2e-5)
    src = peers.add_mxnet_preprocessing(peers.export_arcface_onnx(original, tmp_path / "mx.onnx"))
    report = convert(src, "iresnet18", tmp_path / "model.pt")
    origin = report.info["converted_from"]
    assert origin["input"] == "pixels" and origin["input_scale"] == pytest.approx(127.5 / 128)
    model, _ = load_model(report.path)
    u = peers.faces(3)
    pixels = (u * 127.5 + 127.5).numpy()
    with torch.no_grad():
        ours = model(u).numpy()
        theirs_torch = original(u * 127.5 / 128).numpy()   # what the mxnet graph feeds its network
    np.testing.assert_allclose(ours, run_onnx(src, pixels), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(ours, theirs_torch, rtol=1e-4, atol=1e-4)
    # eps 2e-5 moved into the variance: the BatchNorms compute what the graph's compute
    assert all(m.eps == 1e-5 for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_preprocessing_that_cannot_be_folded_is_refused(peers, tmp_path):
    src = peers.add_mxnet_preprocessing(peers.export_arcface_onnx(arcface(peers), tmp_path / "m.onnx"), mean=120.0)
    with pytest.raises(ValueError, match=r"not \(x − 127\.5\)·s"):
        import_model(src, "iresnet18")


def test_wrong_arch_and_other_graphs(peers, tmp_path):
    src = peers.export_arcface_onnx(arcface(peers), tmp_path / "model.onnx")
    with pytest.raises(ValueError, match=r"\(2, 2, 2, 2\) blocks per stage \(that is iresnet18\), --arch iresnet100"):
        import_model(src, "iresnet100")

    class NotIResNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)

        def forward(self, x):
            return torch.relu(self.conv(x)).mean((2, 3))

    other = peers.legacy_onnx_export(NotIResNet(), tmp_path / "other.onnx", peers.faces(1))
    with pytest.raises(ValueError, match="is not an insightface iResNet graph: after the stem expected one PRelu, "
                                         "found Relu"):
        import_model(other, "iresnet18")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00not a protobuf at all" * 10)
    with pytest.raises(ValueError, match="is not an ONNX model"):
        import_model(garbage, "iresnet18")


def test_disagreement_with_the_original_writes_nothing(peers, tmp_path, monkeypatch):
    import pyfacex.convert.api as api

    src = peers.export_arcface_onnx(arcface(peers), tmp_path / "model.onnx")
    monkeypatch.setattr(api, "onnxruntime_agreement", lambda *a, **k: {"min_cosine": 0.5, "max_abs_difference": 1.0,
                                                                        "images": 4})
    with pytest.raises(ValueError, match="disagrees with the ONNX original"):
        convert(src, "iresnet18", tmp_path / "model.pt")
    assert not (tmp_path / "model.pt").exists()
    assert convert(src, "iresnet18", tmp_path / "model.pt", check=False).check is None
