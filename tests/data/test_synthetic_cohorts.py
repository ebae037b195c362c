"""Look-alike cohorts of the synthetic world: shared global parameters, own local ones, today's world
unchanged by default, and protocols that keep a cohort's members in one pool."""
import json

import pytest
import torch

from pyfacex.data.synthetic import TEST_IDENTITY_OFFSET, Nuisance, SyntheticFaceWorld
from pyfacex.data.synthetic.identity import _SHAPE, GLOBAL_PARAMETERS, sample_identities
from pyfacex.data.synthetic.protocols import GROUND_TRUTH, write_lfw_like

LOCAL_SHAPE = [name for name in _SHAPE if name not in GLOBAL_PARAMETERS]
LOCAL_MARKS = ("moles", "scar", "freckles", "freckle_seed")


def params_of(world: SyntheticFaceWorld, identity: torch.Tensor) -> dict:
    """The parameters the world renders ``identity`` with (the call its renderer makes)."""
    cohorts = world.cohorts(identity) if world.cohort_size > 1 else None
    return sample_identities(world.seed, identity, cohorts, world.cohort_jitter, world.local_variety)


def test_cohorts_are_runs_of_consecutive_ids_within_a_split():
    world = SyntheticFaceWorld(cohort_size=3)
    train, test = world.identities("train", 7), world.identities("test", 7)
    assert world.cohorts(train).tolist() == [0, 0, 0, 1, 1, 1, 2]
    assert (world.cohorts(test) - TEST_IDENTITY_OFFSET).tolist() == [0, 0, 0, 1, 1, 1, 2]
    assert torch.equal(SyntheticFaceWorld().cohorts(test), test)


def test_default_and_cohorts_of_one_are_todays_identities():
    identity = torch.cat([torch.arange(6), TEST_IDENTITY_OFFSET + torch.arange(6)])
    today = sample_identities(0, identity)
    for world in (SyntheticFaceWorld(), SyntheticFaceWorld(cohort_size=1, cohort_jitter=0.5),
                  SyntheticFaceWorld(cohort_size=4, cohort_jitter=1.0)):
        params = params_of(world, identity)
        assert all(torch.equal(params[name], today[name]) for name in today), world
    default = SyntheticFaceWorld(size=32).render(identity, 3)
    ones = SyntheticFaceWorld(size=32, cohort_size=1, local_variety=1.0).render(identity, 3)
    assert torch.equal(default.images, ones.images)
    assert repr(SyntheticFaceWorld()) == repr(SyntheticFaceWorld(cohort_size=1))


def test_members_share_global_parameters_and_keep_their_local_ones():
    world = SyntheticFaceWorld(seed=2, cohort_size=4)
    identity = world.identities("test", 8)   # two cohorts of four
    params, alone = params_of(world, identity), sample_identities(2, identity)
    for name in GLOBAL_PARAMETERS:
        value = params[name]
        assert torch.equal(value[:4], value[:1].expand_as(value[:4])), name
        assert torch.equal(value[4:], value[4:5].expand_as(value[4:])), name
    # both cohorts and the members' own draws differ in the colours and head shape they share
    for name in ("skin", "cranium_rx", "jaw_rx"):
        assert not torch.equal(params[name][0], params[name][4]), name
        assert len({tuple(v.reshape(-1).tolist()) for v in alone[name][:4]}) == 4, name
    for name in LOCAL_SHAPE + list(LOCAL_MARKS):
        assert torch.equal(params[name], alone[name]), name
    for name in LOCAL_SHAPE + ["freckle_seed"]:   # marks may be absent (zero) in several members
        assert len({tuple(v.reshape(-1).tolist()) for v in params[name][:4]}) == 4, name


def test_jitter_moves_members_from_the_cohort_towards_their_own_draw():
    identity = torch.arange(10)
    shared = params_of(SyntheticFaceWorld(cohort_size=5), identity)
    own = sample_identities(0, identity)
    jittered = params_of(SyntheticFaceWorld(cohort_size=5, cohort_jitter=0.2), identity)
    for name in GLOBAL_PARAMETERS:
        expected = shared[name] + 0.2 * (own[name] - shared[name])
        torch.testing.assert_close(jittered[name], expected, rtol=0, atol=1e-6)
    assert not torch.equal(jittered["skin"][0], jittered["skin"][1])


def test_local_variety_widens_local_ranges_only():
    identity = torch.arange(300)
    base, wide = sample_identities(0, identity), sample_identities(0, identity, local_variety=1.5)
    for name, (low, high) in _SHAPE.items():
        if name in GLOBAL_PARAMETERS:
            assert torch.equal(wide[name], base[name]), name
        else:
            middle = (low + high) / 2
            torch.testing.assert_close(wide[name] - middle, 1.5 * (base[name] - middle), rtol=0, atol=1e-6)
    assert wide["eye_x"].amax() > _SHAPE["eye_x"][1] and wide["eye_x"].amin() < _SHAPE["eye_x"][0]


def test_cohort_faces_are_deterministic_whatever_the_batch():
    world = SyntheticFaceWorld(seed=1, size=32, nuisance=Nuisance(difficulty=0.5), cohort_size=3, cohort_jitter=0.1,
                               local_variety=1.2, chunk=2)
    together = world.render(torch.tensor([4, 0, 5, 3]), torch.tensor([1, 2, 3, 4]))
    alone = world.render(torch.tensor([5]), torch.tensor([3]))
    assert torch.equal(alone.images[0], together.images[2])
    again = SyntheticFaceWorld(seed=1, size=32, nuisance=Nuisance(difficulty=0.5), cohort_size=3, cohort_jitter=0.1,
                               local_variety=1.2).render(torch.tensor([4, 0, 5, 3]), torch.tensor([1, 2, 3, 4]))
    assert torch.equal(together.images, again.images)


def test_lfw_like_folds_hold_whole_cohorts(tmp_path):
    world = SyntheticFaceWorld(seed=0, size=32, cohort_size=3)
    root = write_lfw_like(world, tmp_path, folds=3, pairs_per_fold=2, identities_per_fold=3, images_per_identity=2,
                          progress=False)
    names = json.loads((root / GROUND_TRUTH).read_text())["names"]
    lines = (root / "pairs.txt").read_text().splitlines()[1:]
    for fold in range(3):
        block = lines[4 * fold: 4 * (fold + 1)]
        people = {line.split("\t")[0] for line in block} | {line.split("\t")[2] for line in block[2:]}
        assert len(set(world.cohorts([names[p] for p in people]).tolist())) == 1, block


@pytest.mark.parametrize("kwargs, message", [
    (dict(cohort_size=0), "cohort_size"), (dict(cohort_size=2.0), "cohort_size"),
    (dict(cohort_jitter=1.5), "cohort_jitter"), (dict(cohort_jitter=-0.1), "cohort_jitter"),
    (dict(local_variety=2.0), "local_variety"),
])
def test_bad_population_settings_name_the_argument(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SyntheticFaceWorld(**kwargs)
