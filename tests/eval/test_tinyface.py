"""TinyFace: the MAT-file reader, the protocol reader (real layout, synthetic writer) and the evaluation."""
import json
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from pyfacex.data.codec import encode_png
from pyfacex.data.matfile import read_mat, write_mat
from pyfacex.data.synthetic import Nuisance, SyntheticFaceWorld
from pyfacex.data.synthetic.protocols import GROUND_TRUTH, write_tinyface_like
from pyfacex.eval.ranking import identification
from pyfacex.eval.tinyface import DISTRACTOR_LABEL, evaluate_tinyface, read_tinyface

# ----------------------------------------------------------------------------------------------------
# MAT-files written by hand as MATLAB itself writes them (v7: each variable a zlib-compressed element;
# names of <= 4 bytes and short data in the "small data element" form; doubles with integer values
# stored as miUINT8; chars as miUINT16)


def element(kind, payload, order="<"):
    if len(payload) <= 4:   # small data element: byte count in the upper half of the type word
        return struct.pack(order + "HH", *((kind, len(payload)) if order == "<" else (len(payload), kind))) \
            + payload.ljust(4, b"\0")
    return struct.pack(order + "II", kind, len(payload)) + payload + b"\0" * (-len(payload) % 8)


def matrix(mx_class, dims, name, data, order="<"):
    body = (element(6, struct.pack(order + "II", mx_class, 0), order)
            + element(5, struct.pack(f"{order}{len(dims)}i", *dims), order)
            + element(1, name.encode(), order) + data)
    return struct.pack(order + "II", 14, len(body)) + body


def char_row(text, kind=4, order="<"):
    units = text.encode("utf-16-le" if order == "<" else "utf-16-be") if kind == 4 else text.encode("utf-8")
    return matrix(4, (1, len(text)), "", element(kind, units, order), order)


def compressed(matrix_bytes, order="<"):
    packed = zlib.compress(matrix_bytes)
    return struct.pack(order + "II", 15, len(packed)) + packed   # not padded


def mat_file(path, *variables, order="<"):
    header = b"MATLAB 5.0 MAT-file, Platform: GLNXA64, Created on: test".ljust(116, b" ") + b"\0" * 8
    header += struct.pack(order + "H", 0x0100) + (b"IM" if order == "<" else b"MI")
    path.write_bytes(header + b"".join(variables))
    return path


def matlab_listing(names_var, names, ids_var, ids, order="<"):
    cells = b"".join(char_row(n, order=order) for n in names)
    return (compressed(matrix(1, (len(names), 1), names_var, cells, order), order),
            compressed(matrix(6, (len(ids), 1), ids_var, element(2, bytes(ids), order), order), order))


@pytest.mark.parametrize("order", ["<", ">"])
def test_read_mat_reads_matlab_v7_files(tmp_path, order):
    path = mat_file(tmp_path / "a.mat", *matlab_listing("probe_set", ["1_1.jpg", "12_3.jpg"], "ids", [1, 12], order),
                    matrix(4, (2, 3), "grid", element(16, "adbecf".encode(), order), order),   # 2 rows, column-major
                    matrix(1, (1, 2), "mixed", char_row("x", kind=16, order=order)
                           + struct.pack(order + "II", 14, 0), order), order=order)           # an empty cell
    got = read_mat(path, ["probe_set", "ids", "grid", "mixed"])
    assert got["probe_set"] == ["1_1.jpg", "12_3.jpg"]
    assert got["ids"].dtype == np.float64 and got["ids"].tolist() == [[1.0], [12.0]]
    assert got["grid"] == ["abc", "def"]
    assert got["mixed"][0] == "x" and got["mixed"][1].shape == (0, 0)


def test_read_mat_reads_the_synthetic_writer(tmp_path):
    write_mat(tmp_path / "w.mat", {"gallery_set": ["3_1.jpg", "4_2.jpg", "4_3.jpg"], "gallery_ids": [3, 4, 4],
                                   "empty": []})
    got = read_mat(tmp_path / "w.mat", ["gallery_ids", "gallery_set", "empty"])
    assert got["gallery_set"] == ["3_1.jpg", "4_2.jpg", "4_3.jpg"]
    assert got["gallery_ids"].reshape(-1).tolist() == [3, 4, 4] and got["empty"].shape == (0, 1)


def test_read_mat_skips_unrequested_unsupported_variables(tmp_path):
    struct_var = matrix(2, (1, 1), "meta", b"")      # a struct: not readable here, but not asked for
    path = mat_file(tmp_path / "s.mat", struct_var, *matlab_listing("names", ["1_1.jpg"], "ids", [1]))
    assert read_mat(path, ["names"]) == {"names": ["1_1.jpg"]}
    with pytest.raises(ValueError, match=r"s\.mat: offset 128: variable 'meta': only real numeric, char and cell"):
        read_mat(path, ["meta"])


def test_read_mat_errors_name_file_and_offset(tmp_path):
    good = mat_file(tmp_path / "g.mat", *matlab_listing("names", ["1_1.jpg"], "ids", [1]))
    data = good.read_bytes()
    (tmp_path / "cut.mat").write_bytes(data[:-5])
    with pytest.raises(ValueError, match=r"cut\.mat: offset \d+: element of \d+ bytes runs past the end"):
        read_mat(tmp_path / "cut.mat", ["ids"])
    (tmp_path / "junk.mat").write_bytes(data[:136] + b"\0" * 4 + data[140:])   # garbage in the compressed stream
    with pytest.raises(ValueError, match=r"junk\.mat: offset 128: compressed element does not inflate"):
        read_mat(tmp_path / "junk.mat", ["names"])
    with pytest.raises(ValueError, match=r"g\.mat: expected variables \['other'\]"):
        read_mat(good, ["names", "other"])
    short_cell = compressed(matrix(1, (3, 1), "names", char_row("1_1.jpg") + char_row("2_1.jpg")))
    with pytest.raises(ValueError, match=r"offset 0 of the compressed element at 128: cell array 'names' of shape "
                                         r"\(3, 1\) holds 2 cells"):
        read_mat(mat_file(tmp_path / "short.mat", short_cell), ["names"])
    (tmp_path / "text.mat").write_bytes(b"not a mat file" * 20)
    with pytest.raises(ValueError, match="not a MATLAB Level 5 MAT-file"):
        read_mat(tmp_path / "text.mat", ["x"])
    with pytest.raises(FileNotFoundError, match="missing.mat"):
        read_mat(tmp_path / "missing.mat", ["x"])


def test_read_mat_corrupt_files_raise_value_errors_only(tmp_path):
    # lengths in the file are never trusted: random corruption gives a ValueError, never IndexError etc.
    data = mat_file(tmp_path / "g.mat", *matlab_listing("names", ["1_1.jpg", "2_2.jpg"], "ids", [1, 2])).read_bytes()
    plain = tmp_path / "p.mat"
    write_mat(plain, {"names": ["1_1.jpg", "2_2.jpg"], "ids": [1, 2]})
    rng = np.random.default_rng(0)
    for source in (data, plain.read_bytes()):
        for _ in range(150):
            corrupt = bytearray(source)
            for position in rng.integers(120, len(corrupt), 2).tolist():
                corrupt[position] = int(rng.integers(0, 256))
            (tmp_path / "f.mat").write_bytes(bytes(corrupt[:rng.integers(100, len(corrupt) + 1)]))
            try:
                read_mat(tmp_path / "f.mat", ["names", "ids"])
            except ValueError:
                pass


# ----------------------------------------------------------------------------------------------------
# a hand-made TinyFace: flat-colour images whose mean colour is the feature


COLOURS = {1: (255, 0, 0), 2: (0, 255, 0), 3: (0, 0, 255)}


def mean_colour(images):
    assert images.dtype == torch.uint8 and images.shape[1:] == (3, 20, 20)
    return images.float().mean((2, 3))


def write_image(path, colour, size=(9, 7)):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode_png(torch.tensor(colour, dtype=torch.uint8).view(3, 1, 1).expand(3, *size).clone()))


def hand_made(root, folders=None):
    """Probes 1_1 (red), 2_1 (yellow-green, nearer the yellow distractor than green), 3_1 (blue);
    gallery 1_2, 1_3 (red), 2_2 (green), 3_2 (blue); distractors yellow and grey."""
    testing = root / "Testing_Set"
    folders = folders or testing
    for name, colour in (("1_1", COLOURS[1]), ("2_1", (200, 255, 0)), ("3_1", COLOURS[3])):
        write_image(folders / "Probe" / f"{name}.jpg", colour)
    for name, colour in (("1_2", COLOURS[1]), ("1_3", COLOURS[1]), ("2_2", COLOURS[2]), ("3_2", COLOURS[3])):
        write_image(folders / "Gallery_Match" / f"{name}.jpg", colour)
    write_image(folders / "Gallery_Distractor" / "900_1.jpg", (255, 255, 0))
    write_image(folders / "Gallery_Distractor" / "901_1.jpg", (90, 100, 110))
    (folders / "Gallery_Distractor" / "notes.txt").write_text("not an image")
    testing.mkdir(parents=True, exist_ok=True)
    mat_file(testing / "probe_img_ID_pairs.mat", *matlab_listing("probe_set", ["1_1.jpg", "2_1.jpg", "3_1.jpg"],
                                                                 "probe_ids", [1, 2, 3]))
    mat_file(testing / "gallery_match_img_ID_pairs.mat",
             *matlab_listing("gallery_set", ["1_2.jpg", "1_3.jpg", "2_2.jpg", "3_2.jpg"], "gallery_ids", [1, 1, 2, 3]))
    return root


def test_read_tinyface_hand_made(tmp_path):
    protocol = read_tinyface(hand_made(tmp_path))
    assert [p.name for p in protocol.probe_paths] == ["1_1.jpg", "2_1.jpg", "3_1.jpg"]
    assert protocol.probe_labels.tolist() == [1, 2, 3]
    assert [p.name for p in protocol.gallery_paths] == ["1_2.jpg", "1_3.jpg", "2_2.jpg", "3_2.jpg", "900_1.jpg",
                                                        "901_1.jpg"]
    assert protocol.gallery_labels.tolist() == [1, 1, 2, 3, DISTRACTOR_LABEL, DISTRACTOR_LABEL]
    assert protocol.num_distractors == 2 and all(p.is_file() for p in protocol.gallery_paths)


def test_evaluate_tinyface_known_answer(tmp_path):
    result = evaluate_tinyface(hand_made(tmp_path), mean_colour, batch_size=2, image_size=20, ranks=(1, 2, 5))
    # probe 2 ranks the yellow distractor first, then its green mate: rank 2, AP 1/2
    assert result.first_mate_rank.tolist() == [1, 2, 1]
    assert result.rank == pytest.approx({1: 2 / 3, 2: 1.0, 5: 1.0})
    assert result.mean_average_precision == pytest.approx((1 + 0.5 + 1) / 3)
    assert (result.num_mated, result.num_non_mated, result.tpir) == (3, 0, {})


def test_evaluate_tinyface_on_aligned_copies(tmp_path):
    # AdaFace's layout: the lists in tinyface/Testing_Set, the (aligned) images in another folder
    root = hand_made(tmp_path / "tinyface", folders=tmp_path / "aligned")
    assert not (root / "Testing_Set" / "Probe").exists()
    result = evaluate_tinyface(root, mean_colour, image_size=20, images=tmp_path / "aligned")
    assert result.first_mate_rank.tolist() == [1, 2, 1]
    with pytest.raises(FileNotFoundError, match="Probe: TinyFace folder not found"):
        read_tinyface(root)


def test_protocol_errors_name_file_and_entry(tmp_path):
    root = hand_made(tmp_path)
    testing = root / "Testing_Set"
    mat_file(testing / "probe_img_ID_pairs.mat", *matlab_listing("probe_set", ["1_1.jpg", "2_1.jpg"],
                                                                 "probe_ids", [1, 3]))
    with pytest.raises(ValueError, match=r"probe_img_ID_pairs\.mat: entry 1: file name '2_1.jpg' does not start "
                                         r"with its id 3_"):
        read_tinyface(root)
    mat_file(testing / "probe_img_ID_pairs.mat", *matlab_listing("probe_set", ["1_1.jpg", "7_1.jpg"],
                                                                 "probe_ids", [1, 7]))
    with pytest.raises(FileNotFoundError, match=r"probe_img_ID_pairs\.mat: entry 1: image .*Probe/7_1\.jpg"):
        read_tinyface(root)
    mat_file(testing / "probe_img_ID_pairs.mat", *matlab_listing("probe_set", ["1_1.jpg"], "probe_ids", [1, 2]))
    with pytest.raises(ValueError, match="probe_ids holds 2 ids but probe_set 1 names"):
        read_tinyface(root)
    with pytest.raises(FileNotFoundError, match="Testing_Set: TinyFace folder not found"):
        read_tinyface(tmp_path / "nowhere")


def test_empty_gallery_is_an_error(tmp_path):
    root = hand_made(tmp_path)
    testing = root / "Testing_Set"
    write_mat(testing / "gallery_match_img_ID_pairs.mat", {"gallery_set": [], "gallery_ids": []})
    for path in (testing / "Gallery_Distractor").iterdir():
        path.unlink()
    protocol = read_tinyface(root)
    assert protocol.gallery_paths == [] and protocol.gallery_labels.shape == (0,)
    with pytest.raises(ValueError, match="the TinyFace gallery is empty"):
        evaluate_tinyface(root, mean_colour, image_size=20)


def test_bad_features_name_the_image(tmp_path):
    root = hand_made(tmp_path)
    def blind_to_yellow_green(images):
        features = mean_colour(images)
        return torch.where(((features[:, :1] - 200).abs() < 30), 0.0, features)

    with pytest.raises(ValueError, match=r"features_fn: the feature of .*Probe/2_1\.jpg is NaN/inf or all zeros"):
        evaluate_tinyface(root, blind_to_yellow_green, image_size=20, batch_size=1)
    with pytest.raises(ValueError, match=r"features_fn: expected features \(3, d\) for the batch from .*1_1\.jpg"):
        evaluate_tinyface(root, lambda x: torch.ones(len(x) + 1, 4), image_size=20)


# ----------------------------------------------------------------------------------------------------
# the synthetic writer's TinyFace


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    world = SyntheticFaceWorld(seed=0, size=32, nuisance=Nuisance(difficulty=0.3))
    return write_tinyface_like(world, tmp_path_factory.mktemp("tinyface"), identities=4, probes_per_identity=2,
                               gallery_per_identity=2, distractor_identities=3, distractors_per_identity=2,
                               probe_resolution=(8, 12), gallery_resolution=(12, 16), progress=False)


def test_read_tinyface_on_the_synthetic_writer(synthetic):
    protocol = read_tinyface(synthetic)
    truth = json.loads((synthetic / GROUND_TRUTH).read_text())

    def identity(path):
        return truth["images"][path.relative_to(synthetic).as_posix()]["identity"]

    assert len(protocol.probe_paths) == 8 and protocol.num_distractors == 6 and len(protocol.gallery_paths) == 14
    for path, label in zip(protocol.probe_paths + protocol.gallery_paths,
                           protocol.probe_labels.tolist() + protocol.gallery_labels.tolist()):
        if label == DISTRACTOR_LABEL:
            assert path.parent.name == "Gallery_Distractor"
            assert identity(path) not in {identity(p) for p in protocol.probe_paths}
        else:
            assert identity(path) == truth["labels"][str(label)]


def test_evaluate_tinyface_equals_identification_on_its_features(synthetic):
    def thumbnail(images):   # an 8x8 grey thumbnail as a (poor) feature: enough to rank
        return torch.nn.functional.avg_pool2d(images.float().mean(1, keepdim=True), 14).flatten(1) - 100

    result = evaluate_tinyface(synthetic, thumbnail, batch_size=3, chunk=3)
    protocol = read_tinyface(synthetic)
    pixels = [torch.from_numpy(np.array(Image.open(p).convert("RGB"))).permute(2, 0, 1)[None]
              for p in protocol.probe_paths + protocol.gallery_paths]
    features = thumbnail(torch.cat([torch.nn.functional.interpolate(x, size=(112, 112), mode="bilinear",
                                                                    antialias=True) for x in pixels]))
    expected = identification(features[:8], protocol.probe_labels, features[8:], protocol.gallery_labels,
                              fpirs=())
    assert torch.equal(result.first_mate_rank, expected.first_mate_rank)
    assert result.mean_average_precision == pytest.approx(expected.mean_average_precision)
    assert (result.num_mated, result.num_non_mated) == (8, 0)
    assert 0 < result.mean_average_precision <= 1 and result.cmc[-1] == 1.0   # 8 mates within 14 items
