"""Shortcut floors: the mean-colour and untrained-network embedders and shortcut_floors on protocols."""
import pytest
import torch

from pyfacex.data import write_verification_bin
from pyfacex.data.synthetic import SyntheticFaceWorld
from pyfacex.data.synthetic.protocols import write_lfw_like
from pyfacex.eval import evaluate_protocol
from pyfacex.eval.shortcuts import MEAN_COLOUR, UNTRAINED, mean_colour_embedder, shortcut_floors, untrained_network


def test_mean_colour_is_the_average_of_each_cell():
    cells = torch.rand(2, 3, 4, 4) * 2 - 1
    images = cells.repeat_interleave(5, dim=2).repeat_interleave(5, dim=3)   # 20 × 20, flat 5 × 5 cells
    embedding = mean_colour_embedder(grid=4)(images)
    assert embedding.shape == (2, 48)
    torch.testing.assert_close(embedding, cells.flatten(1))
    assert mean_colour_embedder(grid=2)(images).shape == (2, 12)


def test_untrained_network_is_fixed_by_its_seed_and_leaves_the_global_rng_alone():
    images = torch.rand(3, 3, 32, 32) * 2 - 1
    torch.manual_seed(123)
    state = torch.get_rng_state()
    first = untrained_network(seed=5, image_size=32)
    assert torch.equal(torch.get_rng_state(), state) and not first.training
    second, other = untrained_network(seed=5, image_size=32), untrained_network(seed=6, image_size=32)
    with torch.no_grad():
        out = first(images)
        assert out.shape == (3, 128)
        assert torch.equal(out, second(images)) and not torch.equal(out, other(images))


def _flat_colour_bin(path, pairs: int = 20):
    """A verification .bin in which identity is a colour: genuine pairs share one flat colour."""
    generator = torch.Generator().manual_seed(0)
    colours = torch.randint(0, 256, (2 * pairs, 3), generator=generator, dtype=torch.uint8)
    images, issame = [], []
    for p in range(pairs):
        same = p % 2 == 0
        a, b = colours[2 * p], colours[2 * p if same else 2 * p + 1]
        images += [a.view(3, 1, 1).expand(3, 24, 24).contiguous(), b.view(3, 1, 1).expand(3, 24, 24).contiguous()]
        issame.append(same)
    write_verification_bin(path, images, torch.tensor(issame), quality=100)
    return path


def test_mean_colour_floor_decides_a_world_where_identity_is_colour(tmp_path):
    spec = f"colour={_flat_colour_bin(tmp_path / 'colour.bin')}"
    floors = shortcut_floors([spec], image_size=24)
    assert floors[MEAN_COLOUR][0].value > 0.95


def test_shortcut_floors_run_both_embedders_on_every_protocol(tmp_path):
    root = write_lfw_like(SyntheticFaceWorld(seed=0, size=32), tmp_path / "lfw", folds=2, pairs_per_fold=4,
                          identities_per_fold=4, images_per_identity=2, progress=False)
    specs = [f"lfw={root}", f"lfw={root}@8px"]
    network = {"widths": (8, 8, 16, 16), "embedding_size": 16}
    floors = shortcut_floors(specs, image_size=32, seed=3, network=network)
    assert list(floors) == [MEAN_COLOUR, UNTRAINED]
    for results in floors.values():
        assert [r.name for r in results] == ["lfw", "lfw@8px"]
        assert all(0.0 <= r.value <= 1.0 for r in results)
    for name, model in ((MEAN_COLOUR, mean_colour_embedder()),
                        (UNTRAINED, untrained_network(seed=3, image_size=32, **network))):
        for spec, result in zip(specs, floors[name]):
            assert result.value == pytest.approx(evaluate_protocol(spec, model, image_size=32).value)


@pytest.mark.parametrize("call, error, message", [
    (lambda: mean_colour_embedder(grid=0), ValueError, "grid"),
    (lambda: untrained_network(seed=-1), ValueError, "seed"),
    (lambda: shortcut_floors("lfw=/nowhere"), TypeError, "protocol_specs"),
    (lambda: shortcut_floors([], network={"seed": 1}), ValueError, "network"),
    (lambda: mean_colour_embedder()(torch.zeros(2, 1, 8, 8)), ValueError, "images"),
])
def test_bad_arguments_name_what_is_wrong(call, error, message):
    with pytest.raises(error, match=message):
        call()
