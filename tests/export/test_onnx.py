"""ONNX export: the graph contract insightface relies on, and parity with the model through onnxruntime."""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pyfacex.export import export_model, input_convention, load_onnx_embedder
from pyfacex.train.checkpoint import load_embedder, save_model

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def exported(kit, tmp_path_factory):
    """exported(family) -> (model file, onnx file), exported once per family."""
    folder = tmp_path_factory.mktemp("onnx")
    done = {}

    def get(family):
        if family not in done:
            source = kit.model_file(family)
            result = export_model(source, folder / f"{family}.onnx", "onnx")
            assert result.min_cosine >= 0.9999 and result.path == folder / f"{family}.onnx"
            assert (result.format, result.image_size, result.embedding_size, result.opset) == \
                ("onnx", kit.image_size, 16, 18)
            done[family] = source, result.path
        return done[family]

    return get


def session(path):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def min_cosine(a, b) -> float:
    return float(F.cosine_similarity(torch.as_tensor(a).double(), torch.as_tensor(b).double(), dim=1).min())


def test_onnxruntime_matches_the_model_at_any_batch(family, exported, kit):
    source, path = exported(family)
    model, _ = load_embedder(source)   # the eager model as pyfacex runs it (native ops where built)
    run = session(path)
    for batch in (1, 4):
        x = kit.faces(batch, seed=batch)
        with torch.no_grad():
            expected = model(x)
        got = run.run(None, {"data": x.numpy()})[0]
        assert got.shape == tuple(expected.shape)
        assert min_cosine(got, expected) >= 0.9999
        # not normalised: the raw norms (the quality AdaFace/MagFace/QAFace read) survive export
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), expected.norm(dim=1).numpy(), rtol=1e-3)


@pytest.mark.parametrize("family", ["iresnet", "lfenet"])
def test_graph_contract(family, exported, kit):
    _, path = exported(family)
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    assert {node.domain for node in model.graph.node} <= {"", "ai.onnx"}   # standard operators only
    initializers = {t.name for t in model.graph.initializer}
    (graph_input,) = [i for i in model.graph.input if i.name not in initializers]
    assert graph_input.name == "data" and graph_input.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    dims = graph_input.type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and [d.dim_value for d in dims[1:]] == [3, kit.image_size, kit.image_size]
    (output,) = model.graph.output
    out_dims = output.type.tensor_type.shape.dim
    assert output.name == "embedding" and out_dims[0].dim_param == "batch" and out_dims[1].dim_value == 16
    assert input_convention(model) == (127.5, 127.5)
    assert initializers and not path.with_name(path.name + ".data").exists()   # weights inside: one file
    properties = {p.key: p.value for p in model.metadata_props}
    assert properties["pyfacex.channel_order"] == "RGB" and properties["pyfacex.image_size"] == str(kit.image_size)


def test_opset_17(kit, tmp_path):
    result = export_model(kit.model_file("iresnet"), tmp_path / "m17.onnx", "onnx", opset=17)
    assert result.opset == 17 and result.min_cosine >= 0.9999   # verified through onnxruntime
    assert [o.version for o in onnx.load(str(result.path)).opset_import if o.domain in ("", "ai.onnx")] == [17]


def arcface_onnx_features(path, bgr_images: list[np.ndarray]) -> np.ndarray:
    """insightface's ArcFaceONNX calling convention, written out: read the input name and size, the
    single output and the input normalisation (mxnet's Sub + Mul node names among the first 8 nodes
    mean the model normalises itself) from the file, then feed BGR uint8 (H, W, 3) images as
    cv2.dnn.blobFromImages(imgs, 1/std, size, (mean,)*3, swapRB=True) does: RGB, (x - mean)/std, NCHW."""
    first_nodes = onnx.load(str(path)).graph.node[:8]
    has_sub = any(n.name.startswith(("Sub", "_minus")) for n in first_nodes)
    has_mul = any(n.name.startswith(("Mul", "_mul")) for n in first_nodes)
    mean, std = (0.0, 1.0) if has_sub and has_mul else (127.5, 127.5)
    run = session(path)
    described = run.get_inputs()[0]
    width, height = described.shape[2:4][::-1]
    outputs = [o.name for o in run.get_outputs()]
    assert len(outputs) == 1
    assert all(image.shape == (height, width, 3) for image in bgr_images)   # aligned crops: no resize
    blob = np.stack([(image[:, :, ::-1].astype(np.float32) - mean) / std for image in bgr_images])
    return run.run(outputs, {described.name: np.ascontiguousarray(blob.transpose(0, 3, 1, 2))})[0]


def random_photos(batch: int, size: int, seed: int) -> torch.Tensor:
    return torch.randint(0, 256, (batch, 3, size, size), generator=torch.Generator().manual_seed(seed),
                         dtype=torch.uint8)


def as_bgr(rgb: torch.Tensor) -> list[np.ndarray]:
    """uint8 (B, 3, H, W) RGB -> OpenCV's BGR (H, W, 3) arrays."""
    return [image.permute(1, 2, 0).numpy()[:, :, ::-1].copy() for image in rgb]


def test_arcface_onnx_convention_gives_the_models_embeddings(exported, kit):
    source, path = exported("lgaf")
    rgb = random_photos(3, kit.image_size, seed=3)
    got = arcface_onnx_features(path, as_bgr(rgb))
    model, _ = load_embedder(source)
    with torch.no_grad():
        expected = model((rgb.float() / 255 - 0.5) / 0.5)   # pyfacex's evaluation input
    assert min_cosine(got, expected) >= 0.9999
    # the channel order matters: BGR fed as if it were RGB gives other embeddings
    swapped = arcface_onnx_features(path, [image[:, :, ::-1].copy() for image in as_bgr(rgb)])
    assert min_cosine(swapped, expected) < 0.9999


def test_insightface_arcface_onnx_runs_the_file_unchanged(kit, tmp_path):
    """The peer itself, when installed: model_zoo.get_model routes a 112x112 file to ArcFaceONNX."""
    pytest.importorskip("cv2")
    model_zoo = pytest.importorskip("insightface.model_zoo")
    from pyfacex.backbones.iresnet import iresnet18

    kwargs = dict(layers=(1, 1, 1, 1), widths=(4, 4, 8, 8), num_features=8, input_size=112)
    torch.manual_seed(0)
    model = iresnet18(**kwargs)
    kit.perturb(model)
    save_model(tmp_path / "m112.pt", model, name="iresnet18", kwargs=kwargs, image_size=112)
    path = export_model(tmp_path / "m112.pt", tmp_path / "m112.onnx").path
    recognizer = model_zoo.get_model(str(path), providers=["CPUExecutionProvider"])
    assert type(recognizer).__name__ == "ArcFaceONNX"
    assert (recognizer.input_mean, recognizer.input_std, recognizer.input_size) == (127.5, 127.5, (112, 112))
    rgb = random_photos(2, 112, seed=5)
    got = recognizer.get_feat(as_bgr(rgb))
    embedder, _ = load_embedder(tmp_path / "m112.pt")
    with torch.no_grad():
        expected = embedder((rgb.float() / 255 - 0.5) / 0.5)
    assert min_cosine(got, expected) >= 0.9999


@pytest.mark.parametrize("family", ["iresnet", "fanface"])
def test_load_onnx_embedder_is_a_drop_in_for_load_embedder(family, exported, kit):
    source, path = exported(family)
    model, info = load_embedder(source)
    onnx_model, onnx_info = load_onnx_embedder(path, threads=1)
    assert onnx_info["name"] == info["name"] == kit.families[family][0]
    assert onnx_info["image_size"] == info["image_size"] and onnx_info["embedding_size"] == 16
    assert onnx_info["kwargs"] == json.loads(json.dumps(info["kwargs"]))   # tuples come back as lists
    assert (onnx_info["format"], onnx_info["input_mean"], onnx_info["input_std"]) == ("onnx", 127.5, 127.5)
    x = kit.faces(3, seed=11)
    with torch.no_grad():
        assert min_cosine(onnx_model(x), model(x)) >= 0.9999
        assert onnx_model(x[:0]).shape == (0, 16)
    assert list(onnx_model.parameters()) == [] and not onnx_model.eval().training


def test_pyfacex_eval_protocol_runs_on_the_onnx_embedder(exported, kit, tmp_path):
    """What ``pyfacex eval model.onnx`` will do: the verification protocol with flip, through onnxruntime."""
    from pyfacex.data.synthetic import SyntheticFaceWorld
    from pyfacex.data.synthetic.protocols import write_lfw_like
    from pyfacex.eval import evaluate_protocol

    source, path = exported("iresnet")
    lfw = write_lfw_like(SyntheticFaceWorld(seed=0, size=kit.image_size), tmp_path / "lfw", folds=2,
                         pairs_per_fold=3, identities_per_fold=3, images_per_identity=2, progress=False)
    model, _ = load_embedder(source)
    onnx_model, info = load_onnx_embedder(path, threads=1)
    ours = evaluate_protocol(f"lfw={lfw}", onnx_model, image_size=info["image_size"], folds=2)
    theirs = evaluate_protocol(f"lfw={lfw}", model, image_size=kit.image_size, folds=2)
    assert ours.metrics["accuracy"] == theirs.metrics["accuracy"]
    assert ours.metrics["auc"] == pytest.approx(theirs.metrics["auc"], abs=1e-6)
