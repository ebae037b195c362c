"""The ArcFace template and insightface's rule for its 112·k and 128·k variants."""
import pytest
import torch

from pyfacex.align import ARCFACE_TEMPLATE, arcface_template

# insightface python-package/insightface/utils/face_align.py, arcface_dst, written out by hand.
INSIGHTFACE_112 = [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655],
                   [70.7299, 92.2041]]


def test_the_112_template_is_insightfaces_arcface_dst():
    assert ARCFACE_TEMPLATE.shape == (5, 2) and ARCFACE_TEMPLATE.dtype == torch.float32
    assert torch.equal(ARCFACE_TEMPLATE, torch.tensor(INSIGHTFACE_112, dtype=torch.float32))
    assert torch.equal(arcface_template(112, dtype=torch.float32), ARCFACE_TEMPLATE)
    # The eyes are level and the face is centred: the order is image-left before image-right.
    left_eye, right_eye = ARCFACE_TEMPLATE[0], ARCFACE_TEMPLATE[1]
    assert right_eye[0] - left_eye[0] > 30 and abs(right_eye[1] - left_eye[1]) < 0.5


@pytest.mark.parametrize("size, scale, shift", [(224, 2.0, 0.0), (336, 3.0, 0.0), (128, 1.0, 8.0),
                                                (256, 2.0, 16.0), (384, 3.0, 24.0),
                                                (896, 8.0, 0.0)])  # 896 = 7·128 too: the 112 rule wins
def test_multiples_follow_insightfaces_rule(size, scale, shift):
    expected = torch.tensor(INSIGHTFACE_112, dtype=torch.float64) * scale + torch.tensor([shift, 0.0],
                                                                                          dtype=torch.float64)
    got = arcface_template(size)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-4)


def test_template_is_computed_in_float32_as_insightface_does():
    np = pytest.importorskip("numpy")
    dst = np.array(INSIGHTFACE_112, dtype=np.float32) * (384 / 128.0)
    dst[:, 0] += 8.0 * (384 / 128.0)
    assert dst.dtype == np.float32
    assert (arcface_template(384).numpy() == dst.astype(np.float64)).all()


def test_the_template_is_a_fresh_copy():
    template = arcface_template(112)
    template += 1
    assert torch.equal(arcface_template(112, dtype=torch.float32), torch.tensor(INSIGHTFACE_112))


@pytest.mark.parametrize("size, error", [(100, ValueError), (0, ValueError), (-112, ValueError),
                                         (112.0, TypeError), (True, TypeError), ("112", TypeError)])
def test_other_sizes_are_refused(size, error):
    with pytest.raises(error, match="image_size: expected"):
        arcface_template(size)


def test_the_package_docstring_example_holds():
    import doctest

    import pyfacex.align

    result = doctest.testmod(pyfacex.align)
    assert result.attempted >= 5 and result.failed == 0
