"""The GAN trainer of the Face Aggregation Network: set batches (sets of one video, P from another),
frozen extractor, alternating G/D steps, schedules of both optimisers, exact resume, export, recipes."""
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from pyfacex.backbones.iresnet import iresnet18
from pyfacex.data.synthetic import Nuisance, SyntheticFaceWorld
from pyfacex.data.synthetic.export import write_training_set
from pyfacex.train import config_from_dict, load_config, load_model, save_model
from pyfacex.train.checkpoint import safe_load
from pyfacex.train.data import open_dataset
from pyfacex.train.gan import MISSING_EXTRACTOR, GANTrainer
from pyfacex.train.registry import TRAINERS
from pyfacex.train.set_batches import SetTripletCollate, SetTripletSampler
from ranks import spawn_ranks

from .conftest import TINY_IRESNET

TINY_AGG = {"widths": [4, 4, 8, 8, 8], "discriminator_widths": [4, 4, 8, 8]}
SET_SIZE, SETS = 3, 2


@pytest.fixture(scope="module")
def tiny_videos(tmp_path_factory):
    """A RecordIO set of 8 identities × 2 videos of 4 frames at 32×32, video ids stored."""
    world = SyntheticFaceWorld(seed=0, size=32, nuisance=Nuisance(difficulty=0.2))
    return write_training_set(world, tmp_path_factory.mktemp("videos"), 8, 8, frames_per_video=4,
                              formats=("record",), progress=False)


@pytest.fixture(scope="module")
def extractor_file(tmp_path_factory):
    """A tiny iResNet model file standing in for the pretrained ArcFace extractor."""
    torch.manual_seed(0)
    model = iresnet18(**TINY_IRESNET)
    path = tmp_path_factory.mktemp("extractor") / "model.pt"
    save_model(path, model, name="iresnet18", kwargs=TINY_IRESNET, image_size=32)
    return path


def make_config(data, output, extractor, **overrides):
    kwargs = {**TINY_AGG, **({"extractor": str(extractor)} if extractor else {})}
    values = {
        "trainer": "gan", "device": "cpu", "progress": False, "output": str(output), "seed": 3,
        "model": {"name": "faceagg_unet", "kwargs": kwargs},
        "data": {"train": str(data), "num_workers": 0, "image_size": 32, "sets_per_batch": SETS,
                 "set_size": SET_SIZE, "augment": ["flip", "motion_blur"]},
        "optim": {"name": "adam", "lr": 1e-3, "weight_decay": 0.0},
        "gan": {"d_lr": 2e-3, "d_steps": 1},
        "schedule": {"kind": "step", "milestones": [0.25], "gamma": 0.25},
        "epochs": 1, "max_steps": 3, "log_every": 1, "checkpoint_every": 0, "keep_checkpoints": 2,
    }
    for key, value in overrides.items():
        node = values
        *parents, last = key.split(".")
        for part in parents:
            node = node[part]
        node[last] = value
    return config_from_dict(values)


def params(module):
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def changed(before, module):
    return {k for k, v in module.named_parameters() if not torch.equal(before[k], v.detach())}


# ------------------------------------------------------------------ batches

def test_sampler_sets_positives_negatives():
    labels = np.repeat(np.arange(5), [6, 5, 4, 3, 7])  # identity 3 has set_size images: no positive outside a set
    sampler = SetTripletSampler(labels, sets_per_batch=2, set_size=3, seed=1)
    seen = 0
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler) > 0
        for batch in batches:
            assert len(batch) == 2 * (3 + 2)
            sets, positives, negatives = np.reshape(batch[:6], (2, 3)), batch[6:8], batch[8:]
            for members, p, n in zip(sets, positives, negatives):
                identity = labels[members[0]]
                assert (labels[members] == identity).all() and identity != 3
                assert len(set(members)) == 3
                assert labels[p] == identity and p not in members
                assert labels[n] != identity
                seen += 1
        sampler.set_epoch(epoch)
        assert list(sampler) == batches  # a function of (seed, epoch)
    assert seen > 0
    sampler.set_epoch(0)
    other = SetTripletSampler(labels, sets_per_batch=2, set_size=3, seed=2)
    assert list(other) != list(sampler)
    with pytest.raises(ValueError, match="more than set_size"):
        SetTripletSampler([0, 0, 1, 1], sets_per_batch=1, set_size=2)
    with pytest.raises(ValueError, match="at least 2 identities"):
        SetTripletSampler([0, 0, 0, 0], sets_per_batch=1, set_size=2)


def test_sampler_with_videos_sets_of_one_video_positive_from_another():
    # identity 0: videos 0, 1, 2 (4, 3, 5 frames); 1: videos 7, 8 (3, 4); 2: one video (never a set, no P
    # from another video); 3: videos 0, 1 (2, 4). Frames interleaved in the dataset.
    spec = [(0, 0, 4), (0, 1, 3), (0, 2, 5), (1, 7, 3), (1, 8, 4), (2, 0, 6), (3, 0, 2), (3, 1, 4)]
    labels = np.concatenate([[i] * n for i, _, n in spec])
    videos = np.concatenate([[v] * n for _, v, n in spec])
    order = np.random.default_rng(1).permutation(labels.size)
    labels, videos = labels[order], videos[order]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "no video ids" warning
        sampler = SetTripletSampler(labels, sets_per_batch=2, set_size=3, seed=4, videos=videos)
    positive_videos = set()
    for epoch in range(6):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler) > 0
        for batch in batches:
            sets, positives, negatives = np.reshape(batch[:6], (2, 3)), batch[6:8], batch[8:]
            for members, p, n in zip(sets, positives, negatives):
                identity, video = labels[members[0]], videos[members[0]]
                assert (labels[members] == identity).all() and (videos[members] == video).all()
                assert identity != 2
                assert labels[p] == identity and videos[p] != video  # same identity, another video
                assert labels[n] != identity
                if identity == 0:
                    positive_videos.add((int(video), int(videos[p])))
        sampler.set_epoch(epoch)
        assert list(sampler) == batches  # a function of (seed, epoch)
    assert {v for _, v in positive_videos} == {0, 1, 2}  # P drawn from every other video
    with pytest.raises(ValueError, match="videos: no identity has images from two videos"):
        SetTripletSampler([0, 0, 1, 1], sets_per_batch=1, set_size=2, videos=[3, 3, 3, 3])
    with pytest.raises(ValueError, match="videos: expected one video id per label"):
        SetTripletSampler([0, 0, 1, 1], sets_per_batch=1, set_size=2, videos=[3, 3, 3])


def test_sampler_without_videos_warns_once():
    labels = np.repeat(np.arange(4), 5)
    with pytest.warns(UserWarning, match="no video ids, so P is an image of the set's identity outside the set") \
            as warned:
        sampler = SetTripletSampler(labels, sets_per_batch=2, set_size=3, seed=0)
        for epoch in range(2):
            sampler.set_epoch(epoch)
            list(sampler)
    assert len(warned) == 1


def test_sampler_ranks_split_batches():
    labels = np.repeat(np.arange(8), 6)
    ranks = [SetTripletSampler(labels, 2, 3, seed=0, rank=r, world_size=2) for r in range(2)]
    one = SetTripletSampler(labels, 2, 3, seed=0)
    a, b = list(ranks[0]), list(ranks[1])
    assert len(a) == len(b) == len(one) // 2
    assert [x for pair in zip(a, b) for x in pair] == list(one)[:2 * len(a)]  # rank r takes global batches r, r+2, ...


def test_collate_splits_and_augments_frames_only(tiny_faces):
    dataset = open_dataset(tiny_faces)
    sampler = SetTripletSampler(dataset.labels, SETS, SET_SIZE, seed=0)
    indices = next(iter(sampler))
    items = [(*dataset[i], 1234) for i in indices]
    clean = SetTripletCollate(32, SET_SIZE)(items)
    images, labels, offsets, positives, negatives = clean
    assert images.shape == (SETS * SET_SIZE, 3, 32, 32) and images.dtype == torch.uint8
    assert positives.shape == negatives.shape == (SETS, 3, 32, 32)
    assert offsets.tolist() == [0, SET_SIZE, 2 * SET_SIZE]
    assert labels.tolist() == [int(dataset.labels[indices[s * SET_SIZE]]) for s in range(SETS)]
    assert torch.equal(positives[1], dataset[indices[SETS * SET_SIZE + 1]][0])
    flipped = SetTripletCollate(32, SET_SIZE, lambda x, g: x.flip(-1))(items)
    assert torch.equal(flipped[0], images.flip(-1))
    assert torch.equal(flipped[3], positives) and torch.equal(flipped[4], negatives)


# ------------------------------------------------------------------ training

def test_steps_train_aggregator_and_discriminator_only(tiny_faces, extractor_file, tmp_path):
    assert TRAINERS["gan"] == ("gan", "GANTrainer")
    trainer = GANTrainer(make_config(tiny_faces, tmp_path / "run", extractor_file))
    model = trainer.modules["model"]
    assert model.centers.shape == (8, 16)  # num_classes from the data, embedding_size from the extractor
    assert set(trainer.optimizers) == {"generator", "discriminator"}
    owned = {n: {id(p) for g in o.param_groups for p in g["params"]} for n, o in trainer.optimizers.items()}
    assert owned["generator"] == {id(p) for p in model.aggregator.parameters()}
    assert owned["discriminator"] == {id(p) for p in model.discriminator.parameters()}
    assert trainer.optimizers["discriminator"].param_groups[0]["lr"] == pytest.approx(2e-3)
    before = {name: params(getattr(model, name)) for name in ("aggregator", "discriminator", "extractor")}
    extractor_buffers = {k: v.clone() for k, v in model.extractor.state_dict().items()}
    logs = trainer.fit()
    for key in ("loss", "dis", "rec", "adv", "tv", "d_loss", "d_fake", "d_real"):
        assert np.isfinite(logs[key]), key
    assert changed(before["aggregator"], model.aggregator) == set(before["aggregator"])
    assert changed(before["discriminator"], model.discriminator) == set(before["discriminator"])
    assert not changed(before["extractor"], model.extractor)
    assert all(torch.equal(v, model.extractor.state_dict()[k]) for k, v in extractor_buffers.items())
    assert not model.extractor.training and not any(p.requires_grad for p in model.extractor.parameters())
    assert bool(model.center_seen.any())
    # step schedule: milestone 0.25 epoch = 2 of 8 steps per epoch; both optimisers decayed from their own base
    assert trainer.optimizers["generator"].param_groups[0]["lr"] == pytest.approx(1e-3 * 0.25)
    assert trainer.optimizers["discriminator"].param_groups[0]["lr"] == pytest.approx(2e-3 * 0.25)


def test_discriminator_changes_only_by_its_own_step(tiny_faces, extractor_file, tmp_path):
    config = make_config(tiny_faces, tmp_path / "run", extractor_file, **{"gan.d_steps": 0, "max_steps": 2})
    trainer = GANTrainer(config)
    model = trainer.modules["model"]
    before = params(model.discriminator), params(model.aggregator)
    logs = trainer.fit()
    assert not changed(before[0], model.discriminator)  # L_adv^G's gradients did not move it
    assert changed(before[1], model.aggregator)
    assert "d_loss" not in logs and np.isfinite(logs["adv"])


def test_discriminator_step_uses_only_its_own_gradients(tiny_faces, extractor_file, tmp_path):
    """The D step's gradients are those of L_adv^D (eq. 12) alone: L_adv^G's were dropped."""
    trainer = GANTrainer(make_config(tiny_faces, tmp_path / "run", extractor_file, max_steps=1))
    model, captured, checked = trainer.modules["model"], {}, []
    generator = trainer.wrapped["generator"]
    original_forward, original_step = generator.forward, trainer.optimizers["discriminator"].step

    def forward(images, offsets, positives, negatives, labels):
        captured["positives"] = positives
        captured["out"] = original_forward(images, offsets, positives, negatives, labels)
        return captured["out"]

    def step(*args, **kwargs):
        loss = model.discriminator_loss(captured["out"].aggregated.detach(), captured["positives"]).loss
        expected = torch.autograd.grad(loss, list(model.discriminator.parameters()))
        for p, g in zip(model.discriminator.parameters(), expected):
            torch.testing.assert_close(p.grad, g)
        checked.append(True)
        return original_step(*args, **kwargs)

    generator.forward = forward
    trainer.optimizers["discriminator"].step = step
    trainer.fit()
    assert checked == [True]


def test_d_steps_follow_their_own_schedule(tiny_faces, extractor_file, tmp_path):
    config = make_config(tiny_faces, tmp_path / "run", extractor_file, **{"gan.d_steps": 3, "max_steps": 2})
    trainer = GANTrainer(config)
    trainer.fit()
    assert trainer.schedulers["discriminator"].last_epoch == 6  # 3 D steps per G step
    # the milestone (step 2 of the G schedule = D step 6) is reached by both together
    assert trainer.optimizers["discriminator"].param_groups[0]["lr"] == pytest.approx(2e-3 * 0.25)
    assert trainer.optimizers["generator"].param_groups[0]["lr"] == pytest.approx(1e-3 * 0.25)


@pytest.mark.parametrize("videos", [False, True], ids=["stills", "videos"])
def test_exact_resume(tiny_faces, tiny_videos, extractor_file, tmp_path, videos):
    data = tiny_videos if videos else tiny_faces
    overrides = {"max_steps": 4, "checkpoint_every": 1, "keep_checkpoints": 10, "gan.d_steps": 2}
    a = GANTrainer(make_config(data, tmp_path / "a", extractor_file, **overrides))
    a.fit()
    b = GANTrainer(make_config(data, tmp_path / "b", extractor_file, **overrides))
    b.fit(resume=tmp_path / "a" / "checkpoints" / "step_00000002")
    state_a, state_b = a.modules["model"].state_dict(), b.modules["model"].state_dict()
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        assert torch.equal(state_a[key], state_b[key]), key
    for name in a.optimizers:
        assert a.optimizers[name].param_groups[0]["lr"] == b.optimizers[name].param_groups[0]["lr"]


def test_model_file_holds_the_whole_network(tiny_faces, extractor_file, tmp_path):
    trainer = GANTrainer(make_config(tiny_faces, tmp_path / "run", extractor_file, max_steps=1))
    trainer.fit()
    document = safe_load(tmp_path / "run" / "model.pt")
    assert document["name"] == "faceagg_unet"
    kwargs = document["kwargs"]
    assert kwargs["extractor"] == {"embedder_of": {"name": "iresnet18", "kwargs": TINY_IRESNET}}
    assert (kwargs["num_classes"], kwargs["embedding_size"], kwargs["input_size"]) == (8, 16, 32)
    # load_model rebuilds the extractor from its spec; the file's weights are the trained network's
    rebuilt, _ = load_model(tmp_path / "run" / "model.pt")
    for key, value in trainer.modules["model"].state_dict().items():
        assert torch.equal(rebuilt.state_dict()[key], value), key
    assert trainer.embedder() is trainer.modules["model"].extractor
    # model.weights: a later run starts from this file (extractor, aggregator, discriminator, centres)
    again = GANTrainer(make_config(tiny_faces, tmp_path / "again", extractor_file,
                                   **{"model.weights": str(tmp_path / "run" / "model.pt")}))
    for key, value in again.modules["model"].state_dict().items():
        assert torch.equal(document["state_dict"][key], value), key

def test_trainer_draws_sets_of_one_video_from_a_video_set(tiny_videos, extractor_file, tmp_path):
    trainer = GANTrainer(make_config(tiny_videos, tmp_path / "run", extractor_file))
    videos, labels = trainer.dataset.videos.numpy(), trainer.dataset.labels.numpy()
    trainer.batches.set_position(0)
    for batch in trainer.batches:
        indices = np.array([i for i, _ in batch])
        sets = indices[:SETS * SET_SIZE].reshape(SETS, SET_SIZE)
        positives = indices[SETS * SET_SIZE:SETS * (SET_SIZE + 1)]
        assert (videos[sets] == videos[sets[:, :1]]).all()
        assert (labels[positives] == labels[sets[:, 0]]).all() and (videos[positives] != videos[sets[:, 0]]).all()


def test_recipes_augment_as_the_paper():
    """Sec. 4.1: flips, random contrast, brightness and saturation, motion blur."""
    configs = Path(__file__).resolve().parents[2] / "configs"
    for name in ("faceagg_voxceleb2.yaml", "synthetic_faceagg.yaml"):
        assert load_config(configs / name).data.augment == ["flip", "photometric", "motion_blur"], name


def test_config_errors(tiny_faces, extractor_file, tmp_path):
    with pytest.raises(ValueError, match="needs a pretrained feature extractor"):
        GANTrainer(make_config(tiny_faces, tmp_path / "x", None))
    assert "model.kwargs.extractor" in MISSING_EXTRACTOR
    with pytest.raises(FileNotFoundError, match="model.kwargs.extractor"):
        GANTrainer(make_config(tiny_faces, tmp_path / "x", tmp_path / "missing.pt"))
    with pytest.raises(ValueError, match="grad_accum"):
        GANTrainer(make_config(tiny_faces, tmp_path / "x", extractor_file, grad_accum=2))
    with pytest.raises(ValueError, match="gan.d_steps"):
        GANTrainer(make_config(tiny_faces, tmp_path / "x", extractor_file, **{"gan.d_steps": -1}))
    with pytest.raises(ValueError, match="embedding_size"):
        GANTrainer(make_config(tiny_faces, tmp_path / "x", extractor_file,
                               **{"model.kwargs": {**TINY_AGG, "extractor": str(extractor_file), "embedding_size": 8}}))
    with pytest.raises(ValueError, match="data.image_size"):
        GANTrainer(make_config(tiny_faces, tmp_path / "x", extractor_file, **{"data.image_size": 48}))


def _rank_work(rank, data, extractor, output):
    trainer = GANTrainer(make_config(data, output, extractor, max_steps=2, log_every=2))
    model = trainer.modules["model"]
    for name, trained in (("generator", "aggregator"), ("discriminator", "discriminator")):
        ddp = trainer.wrapped[name]
        assert isinstance(ddp, torch.nn.parallel.DistributedDataParallel)
        synced = {n for n, _ in ddp.module.named_parameters() if n not in ddp.parameters_to_ignore}
        assert synced == {f"model.{trained}.{n}" for n, _ in getattr(model, trained).named_parameters()}
        assert not any(b is model.centers for b in ddp.modules_buffers)  # the model syncs them (eq. 10)
    trainer.fit()
    torch.save(model.state_dict(), f"{output}/rank{rank}.pt")


def test_two_ranks_train_one_aggregator_and_discriminator(tiny_faces, extractor_file, tmp_path):
    # The ranks see different sets; DDP averages their gradients, so the trained weights stay equal,
    # and every rank applies every rank's sets to the centres, so they stay equal too.
    spawn_ranks(_rank_work, str(tiny_faces), str(extractor_file), str(tmp_path))
    states = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    trained = [k for k in states[0] if k.startswith(("aggregator.", "discriminator."))] + ["centers", "center_seen"]
    assert len(trained) > 2 and int(states[0]["center_seen"].sum()) >= 4  # both ranks' sets were applied
    for key in trained:
        assert torch.equal(states[0][key], states[1][key]), key
