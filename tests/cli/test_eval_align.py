"""pyfacex eval --no-align: IJB-C-like loose crops aligned by their five points by default, taken as they
are with --no-align."""
import pytest

from pyfacex.cli import main
from pyfacex.data.synthetic import SyntheticFaceWorld
from pyfacex.data.synthetic.protocols import write_ijb_like
from pyfacex.eval import ResultsTable, evaluate_protocol
from pyfacex.train.checkpoint import load_embedder

KWARGS = {"layers": [1, 1, 1, 1], "widths": [4, 4, 8, 8], "num_features": 8, "input_size": 32}


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny_model_file):
    base = tmp_path_factory.mktemp("eval_align")
    tiny_model_file(base / "model.pt", KWARGS)
    ijb = write_ijb_like(SyntheticFaceWorld(seed=0, size=32), base / "ijb", subjects=4, probe_templates_per_subject=1,
                         gallery_stills=(1, 2), probe_stills=(1, 1), probe_videos=(0, 1), frames_per_video=(2, 2),
                         impostors_per_probe=3, progress=False)
    return base / "model.pt", ijb


def test_eval_aligns_ijb_by_default_and_not_with_no_align(files, tmp_path, capsys):
    model_file, ijb = files
    embedder, info = load_embedder(model_file)
    scores = {}
    for align in (True, False):
        out = tmp_path / str(align)
        assert main(["eval", str(model_file), f"ijb={ijb}", "--no-flip", "--out", str(out)]
                    + ([] if align else ["--no-align"])) == 0
        assert "ijb TAR@FAR=1e-3 (nearest)" in capsys.readouterr().out
        values = ResultsTable.from_json((out / "results.json").read_text()).to_dict()["rows"][0]["values"]
        expected = evaluate_protocol(f"ijb={ijb}", embedder, image_size=info["image_size"], flip=False, align=align)
        assert expected.details["aligned"] is align
        assert values["ijb rank-1"] == expected.metrics["rank-1"]
        assert values["ijb TAR@FAR=1e-3 (nearest)"] == expected.metrics["TAR@FAR=1e-3 (nearest)"]
        scores[align] = expected.scores
    # the flag changes the faces the model sees (an untrained network: every cosine is near 1)
    assert abs(scores[True] - scores[False]).max() > 2e-5
