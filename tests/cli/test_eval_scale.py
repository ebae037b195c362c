"""pyfacex eval at scale: the feature cache, decoding workers, mixed precision and comparing saved runs."""
import json

import numpy as np
import pytest

from pyfacex.cli import main


@pytest.fixture(scope="module")
def files(tiny_lfw_files):
    return tiny_lfw_files


def _eval(model, lfw, out, *more):
    return main(["eval", str(model), f"lfw={lfw}", "--batch-size", "4", "--out", str(out), *more])


def _values(out):
    return json.loads((out / "results.json").read_text())["rows"][0]["values"]


def test_a_second_run_reads_every_network_call_from_the_cache(files, tmp_path, capsys):
    model, lfw = files
    cache = tmp_path / "cache"
    assert _eval(model, lfw, tmp_path / "first", "--cache-dir", str(cache)) == 0
    first = capsys.readouterr().err
    (line,) = [x for x in first.splitlines() if "feature cache" in x]
    calls = int(line.split(" of ")[1].split()[0])
    assert line.startswith("lfw: 0 of ") and calls > 0
    (cache_file,) = cache.rglob("*.pt")
    assert cache_file.name == "lfw-fp32-cpu.pt"

    assert _eval(model, lfw, tmp_path / "second", "--cache-dir", str(cache), "--folds", "2") == 0
    assert f"lfw: {calls} of {calls} network calls" in capsys.readouterr().err
    assert _values(tmp_path / "second") == _values(tmp_path / "first")
    np.testing.assert_array_equal(np.load(tmp_path / "second" / "features" / "lfw_embeddings.npy"),
                                  np.load(tmp_path / "first" / "features" / "lfw_embeddings.npy"))

    # another batch size gives other input batches: they miss, are computed, and give the same features
    assert _eval(model, lfw, tmp_path / "third", "--cache-dir", str(cache), "--batch-size", "3") == 0
    assert "lfw: 0 of " in capsys.readouterr().err
    np.testing.assert_allclose(np.load(tmp_path / "third" / "features" / "lfw_embeddings.npy"),
                               np.load(tmp_path / "first" / "features" / "lfw_embeddings.npy"), atol=1e-6)


def test_another_model_file_does_not_read_the_cache_and_no_cache_writes_none(files, tmp_path, capsys,
                                                                            tiny_model_file):
    model, lfw = files
    cache = tmp_path / "cache"
    assert _eval(model, lfw, tmp_path / "a", "--cache-dir", str(cache)) == 0
    other = tmp_path / "other.pt"
    tiny_model_file(other, {"layers": [1, 1, 1, 1], "widths": [4, 4, 8, 8], "num_features": 6, "input_size": 32})
    capsys.readouterr()
    assert _eval(other, lfw, tmp_path / "b", "--cache-dir", str(cache)) == 0
    assert "lfw: 0 of " in capsys.readouterr().err
    assert len({p.parent for p in cache.rglob("*.pt")}) == 2       # one folder per model file hash

    empty = tmp_path / "unused"
    assert _eval(model, lfw, tmp_path / "c", "--cache-dir", str(empty), "--no-cache") == 0
    assert "feature cache" not in capsys.readouterr().err and not empty.exists()


def test_a_damaged_cache_file_is_recomputed_with_a_warning(files, tmp_path, capsys):
    model, lfw = files
    cache = tmp_path / "cache"
    assert _eval(model, lfw, tmp_path / "a", "--cache-dir", str(cache)) == 0
    (cache_file,) = cache.rglob("*.pt")
    cache_file.write_bytes(cache_file.read_bytes()[:100])
    capsys.readouterr()
    with pytest.warns(UserWarning, match="feature cache cannot be read"):
        assert _eval(model, lfw, tmp_path / "b", "--cache-dir", str(cache)) == 0
    assert "lfw: 0 of " in capsys.readouterr().err
    assert _values(tmp_path / "b") == _values(tmp_path / "a")


def test_workers_give_the_same_features(files, tmp_path):
    model, lfw = files
    assert _eval(model, lfw, tmp_path / "w0", "--no-cache") == 0
    assert _eval(model, lfw, tmp_path / "w2", "--no-cache", "--workers", "2") == 0
    np.testing.assert_array_equal(np.load(tmp_path / "w2" / "features" / "lfw_embeddings.npy"),
                                  np.load(tmp_path / "w0" / "features" / "lfw_embeddings.npy"))


def test_amp_runs_in_bfloat16_on_the_cpu_and_caches_apart(files, tmp_path, capsys):
    model, lfw = files
    cache = tmp_path / "cache"
    assert _eval(model, lfw, tmp_path / "fp32", "--cache-dir", str(cache)) == 0
    capsys.readouterr()
    assert _eval(model, lfw, tmp_path / "amp", "--cache-dir", str(cache), "--amp") == 0
    assert "lfw: 0 of " in capsys.readouterr().err     # fp32 entries are not bf16 ones
    assert {p.name for p in cache.rglob("*.pt")} == {"lfw-fp32-cpu.pt", "lfw-amp-cpu.pt"}
    fp32 = np.load(tmp_path / "fp32" / "features" / "lfw_embeddings.npy")
    amp = np.load(tmp_path / "amp" / "features" / "lfw_embeddings.npy")
    assert amp.dtype == np.float32 and not np.array_equal(amp, fp32)          # it did run in bfloat16
    assert (amp * fp32).sum(1).min() > 0.98                                    # and agrees to bf16 precision


def test_compare_lays_runs_side_by_side_with_roc_overlays(files, tmp_path, capsys):
    model, lfw = files
    assert _eval(model, lfw, tmp_path / "flip") == 0
    assert _eval(model, lfw, tmp_path / "noflip", "--no-flip") == 0
    capsys.readouterr()
    out = tmp_path / "both"
    assert main(["eval", "--compare", str(tmp_path / "flip"), str(tmp_path / "noflip"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "iresnet18 (flip)" in printed and "iresnet18 (noflip)" in printed
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert [row["name"] for row in rows] == ["iresnet18 (flip)", "iresnet18 (noflip)"]
    assert rows[0]["values"] == _values(tmp_path / "flip") and rows[1]["values"] == _values(tmp_path / "noflip")
    assert (out / "roc_lfw.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("argv, message", [
    (["--compare", "DIR"], "at least two run folders"),
    (["--compare", "DIR", "MISSING"], "has no results.json"),
    (["MODEL", "--compare", "DIR", "DIR"], "give no MODEL"),
    (["MODEL", "LFW", "--amp", "--onnx"], "--amp: an .onnx model"),
])
def test_errors_name_the_argument(files, tmp_path, capsys, argv, message):
    model, lfw = files
    run = tmp_path / "run"
    assert _eval(model, lfw, run, "--no-cache") == 0
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"not read before the check")
    names = {"DIR": str(run), "MISSING": str(tmp_path / "missing"), "MODEL": str(model), "LFW": str(lfw)}
    argv = [names.get(a, a) for a in argv]
    if "--onnx" in argv:
        argv = [str(onnx) if a == str(model) else a for a in argv if a != "--onnx"]
    capsys.readouterr()
    assert main(["eval", *argv]) == 2
    assert message in capsys.readouterr().err
