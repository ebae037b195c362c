"""TorchScript and torch.export (.pt2) files: they load without pyfacex's ops and match the model."""
import json
import zipfile

import pytest
import torch
import torch.nn.functional as F

from pyfacex.export import ExportedProgramEmbedder, export_model, load_exported
from pyfacex.train.checkpoint import load_embedder

FORMATS = {"torchscript": ".ts", "exported-program": ".pt2"}


def min_cosine(a, b) -> float:
    return float(F.cosine_similarity(a.double(), b.double(), dim=1).min())


@pytest.fixture(scope="module")
def exported(kit, tmp_path_factory):
    """exported(family, format) -> :class:`pyfacex.export.Exported`, written once per pair."""
    folder = tmp_path_factory.mktemp("torch_formats")
    done = {}

    def get(family, format):
        if (family, format) not in done:
            done[family, format] = export_model(kit.model_file(family), folder / f"{family}{FORMATS[format]}", format)
        return done[family, format]

    return get


@pytest.mark.parametrize("format", list(FORMATS))
def test_round_trip_matches_the_model(family, format, kit, exported):
    result = exported(family, format)
    assert result.min_cosine >= 0.9999 and result.embedding_size == 16
    model, info = load_embedder(kit.model_file(family))
    loaded, loaded_info = load_exported(result.path, format)
    assert loaded_info["name"] == info["name"] and loaded_info["image_size"] == kit.image_size
    assert loaded_info["kwargs"] == json.loads(json.dumps(info["kwargs"]))
    for batch in (1, 5):   # the trace saw 2 faces: other batch sizes prove the batch is not frozen in
        x = kit.faces(batch, seed=20 + batch)
        with torch.no_grad():
            got, expected = loaded(x), model(x)
        assert got.shape == expected.shape and min_cosine(got, expected) >= 0.9999
        torch.testing.assert_close(got.norm(dim=1), expected.norm(dim=1), rtol=1e-3, atol=1e-5)


def test_files_hold_aten_operators_only(exported):
    """The LGAF fusion runs pyfacex::lgaf_fusion natively in eager mode; the files hold its reference."""
    script = exported("lgaf", "torchscript").path
    kinds = {node.kind() for node in load_exported(script, "torchscript")[0].inlined_graph.nodes()}
    assert kinds and all(kind.startswith(("aten::", "prim::")) for kind in kinds)
    program = torch.export.load(str(exported("lgaf", "exported-program").path))
    namespaces = {node.target.namespace for node in program.graph.nodes
                  if node.op == "call_function" and isinstance(node.target, torch._ops.OpOverload)}
    assert namespaces == {"aten"}
    with zipfile.ZipFile(script) as archive:   # the trace's example faces are not stored
        assert not any("traced_inputs" in name for name in archive.namelist())


def test_exported_program_embedder_drives_like_a_module(kit, exported):
    source = kit.model_file("iresnet")
    path = exported("iresnet", "exported-program").path
    embedder, info = load_exported(path, "exported-program")
    assert isinstance(embedder, ExportedProgramEmbedder) and info["embedding_size"] == 16
    assert not embedder.eval().training and embedder.train().training   # the graph itself refuses both
    x = kit.faces(2)
    with torch.no_grad():
        assert embedder(x[:0]).shape == (0, 16)
        torch.testing.assert_close(embedder(x), load_embedder(source)[0](x), rtol=1e-4, atol=1e-5)


def test_torchscript_of_a_bgr_model_takes_rgb(kit, tmp_path):
    """A model file that records BGR input (AdaFace's) exports with the channel swap inside."""
    from pyfacex.train.checkpoint import atomic_save, safe_load

    document = safe_load(kit.model_file("iresnet"))
    document["channel_order"] = "BGR"
    atomic_save(document, tmp_path / "bgr.pt")
    path = export_model(tmp_path / "bgr.pt", tmp_path / "bgr.ts", "torchscript").path
    loaded, info = load_exported(path, "torchscript")
    assert info["channel_order"] == "BGR"   # the source model's order, kept in the description
    model, _ = load_embedder(tmp_path / "bgr.pt")
    x = kit.faces(3)
    with torch.no_grad():
        assert min_cosine(loaded(x), model(x.flip(1))) >= 0.9999
        assert min_cosine(loaded(x), model(x)) < 0.999
