"""LFW / CFP / TinyFace images that are not aligned crops, with a landmark sidecar (landmarks.csv:
path, 10 numbers): aligned by it as insightface aligns test faces, unless --no-align / @noalign."""
import math

import pytest
import torch

import pyfacex.eval as E
from pyfacex.align import ARCFACE_TEMPLATE, transform_points, warp_affine
from pyfacex.data.codec import decode_image, encode_png, resize_image
from pyfacex.data.landmarks import align_face, read_landmarks_csv
from pyfacex.data.synthetic import SyntheticFaceWorld
from pyfacex.data.synthetic.protocols import write_cfp_fp_like, write_lfw_like, write_tinyface_like
from pyfacex.data.transforms import normalize
from pyfacex.eval.verification.embedding import embed, embed_pair_list


def loosen(root, folder, seed=0):
    """Turn every aligned crop under ``root/folder`` into a loose photo: warped by a random similarity
    (zoom, turn, offset) into a canvas 1.6 times its side, and write ``root/landmarks.csv`` with the
    template's five points carried along. Returns {relative path: the original crop}."""
    generator = torch.Generator().manual_seed(seed)
    originals, rows = {}, []
    for path in sorted((root / folder).rglob("*.jpg")):
        relative = path.relative_to(root).as_posix()
        image = decode_image(path.read_bytes())
        side, canvas = image.shape[-1], round(1.6 * image.shape[-1])
        scale, angle, dx, dy = (torch.rand(4, generator=generator, dtype=torch.float64) - 0.5).tolist()
        scale, angle = 1.0 + 0.3 * scale, 0.5 * angle
        c, s = scale * math.cos(angle), scale * math.sin(angle)
        centre = (side - 1) / 2   # the crop's centre lands near the canvas's, offset by up to 10 % of it
        tx = (canvas - 1) / 2 + 0.2 * dx * canvas - (c * centre - s * centre)
        ty = (canvas - 1) / 2 + 0.2 * dy * canvas - (s * centre + c * centre)
        matrix = torch.tensor([[c, -s, tx], [s, c, ty]], dtype=torch.float64)
        path.write_bytes(encode_png(warp_affine(image, matrix, canvas)))   # lossless, whatever the suffix
        points = transform_points(ARCFACE_TEMPLATE.double() * (side / 112), matrix)
        rows.append(relative + "," + ",".join(f"{v:.5f}" for v in points.flatten().tolist()))
        originals[relative] = image
    (root / "landmarks.csv").write_text("path,x1,y1,x2,y2,x3,y3,x4,y4,x5,y5\n" + "\n".join(rows) + "\n")
    return originals


@pytest.fixture(scope="module")
def loose(tmp_path_factory):
    """LFW-, CFP- and TinyFace-like protocols whose images are loose photos with a landmarks.csv."""
    world = SyntheticFaceWorld(seed=0, size=32)
    base = tmp_path_factory.mktemp("sidecars")
    roots = {
        "lfw": write_lfw_like(world, base / "lfw", folds=2, pairs_per_fold=3, identities_per_fold=3,
                              images_per_identity=2, progress=False),
        "cfp": write_cfp_fp_like(world, base / "cfp", folds=2, pairs_per_fold=2, identities_per_fold=2,
                                 frontal_per_identity=2, profile_per_identity=1, progress=False),
        "tinyface": write_tinyface_like(world, base / "tinyface", identities=3, probes_per_identity=1,
                                        gallery_per_identity=1, distractor_identities=1, distractors_per_identity=1,
                                        probe_resolution=(12, 16), gallery_resolution=(16, 20), progress=False),
    }
    folders = {"lfw": "lfw", "cfp": "Data", "tinyface": "Testing_Set"}
    return {name: (root, loosen(root, folders[name])) for name, root in roots.items()}


class Spy(torch.nn.Module):
    """Records the faces it sees (as uint8) and embeds them by their 8x8 pooled pixels."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, x):
        self.seen.append(((x + 1) * 127.5).round().to(torch.uint8))
        return torch.nn.functional.adaptive_avg_pool2d(x, 8).flatten(1)


def face_error(seen, originals):
    """Per face: the mean absolute grey-level difference to the closest original crop resized to its size."""
    side = seen.shape[-1]
    references = torch.stack([resize_image(o, (side, side)) for o in originals.values()]).float()
    diff = (seen.float()[:, None] - references[None])[..., 8:-8, 8:-8].abs().mean((2, 3, 4))
    return diff.min(1).values


@pytest.mark.parametrize("kind", ["lfw", "cfp", "tinyface"])
def test_a_sidecar_aligns_the_protocol_images(loose, kind):
    root, originals = loose[kind]
    spec = f"cfp-fp:{root}" if kind == "cfp" else str(root)
    aligned, plain, noalign = Spy(), Spy(), Spy()
    result = E.evaluate_protocol(spec, aligned, flip=False)
    assert result.details["aligned"] and not E.evaluate_protocol(spec, plain, flip=False,
                                                                 align=False).details["aligned"]
    assert not E.evaluate_protocol(spec + "@noalign", noalign, flip=False).details["aligned"]
    seen = torch.cat(aligned.seen)
    assert {tuple(x.shape[1:]) for x in aligned.seen} == {(3, 112, 112)}
    # aligned: the original crops again (up to resampling); without alignment: the loose photos, resized
    stored = torch.cat(plain.seen)
    if kind == "tinyface":   # TinyFace resizes every image to 112 when not aligning
        assert stored.shape[-1] == 112
    else:
        assert stored.shape[-1] == round(1.6 * 32)
    assert torch.equal(torch.cat(noalign.seen), stored)
    assert face_error(seen, originals).max() < 12
    assert face_error(resize_image(stored, (112, 112)), originals).mean() > 2 * face_error(seen, originals).mean()


def test_pair_list_embedding_with_landmarks_is_the_embedding_of_the_aligned_images(loose):
    root, _ = loose["lfw"]
    pairs = E.read_lfw_pairs(root / "pairs.txt")
    net = Spy()
    emb_a, emb_b = embed_pair_list(net, pairs, flip=False, landmarks=root / "landmarks.csv", image_size=(64, 64))
    table = read_landmarks_csv(root / "landmarks.csv")
    for paths, embedded in ((pairs.paths_a, emb_a), (pairs.paths_b, emb_b)):
        faces = torch.stack([align_face(decode_image(p.read_bytes()), table.points_of([p])[0], 64) for p in paths])
        torch.testing.assert_close(embedded, embed(net, faces, flip=False))
    with pytest.raises(ValueError, match=r"image_size: aligned crops are square"):
        embed_pair_list(net, pairs, landmarks=table, image_size=(64, 48))
    partial = root / "partial.csv"
    partial.write_text("\n".join((root / "landmarks.csv").read_text().splitlines()[:-1]) + "\n")
    with pytest.raises(KeyError, match=r"partial\.csv has no row for the image"):
        E.evaluate_pair_list(net, pairs, landmarks=partial)


def test_tinyface_with_landmarks_aligns_probes_and_gallery(loose):
    root, _ = loose["tinyface"]
    protocol = E.read_tinyface(root)
    table = read_landmarks_csv(root / "landmarks.csv")
    seen = []

    def features(batch):
        seen.append(batch)
        return torch.nn.functional.adaptive_avg_pool2d(normalize(batch), 8).flatten(1) + 2.0

    E.evaluate_tinyface(root, features, image_size=112, landmarks=table)
    faces = torch.cat(seen)
    paths = protocol.probe_paths + protocol.gallery_paths
    expected = torch.stack([align_face(decode_image(p.read_bytes()), table.points_of([p])[0]) for p in paths])
    assert torch.equal(faces, expected)


def test_noalign_option():
    assert E.parse_spec("lfw:/data/lfw@noalign")[3] == E.SpecOptions(align=False)
    name, kind, path, options = E.parse_spec("ijbc:/data/IJB@16px@noalign")
    assert (kind, str(path), options.resolution, options.align, options.suffix) == \
        ("ijbc", "/data/IJB", 16, False, "@16px@noalign")
    with pytest.raises(ValueError, match="@noalign is given twice"):
        E.parse_spec("/data/lfw@noalign@noalign")
    assert E.parse_spec("/data/lfw@noalignment")[2].name == "lfw@noalignment"   # not an option: part of the path
