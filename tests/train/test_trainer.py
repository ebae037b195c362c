"""The shared training loop on tiny synthetic faces: exact resume, schedules, accumulation, mixed
precision, clipping, evaluation with best-model tracking, the set trainer, and 2-process PartialFC."""
import copy
import json
import math

import pytest
import torch
from torch import nn

from pyfacex.data.synthetic import Nuisance, SyntheticFaceWorld
from pyfacex.data.synthetic.protocols import write_lfw_like
from pyfacex.nn import SoftmaxHead
from pyfacex.train import ConfigError, config_from_dict, create_trainer, load_embedder
from pyfacex.train import checkpoint as ckpt
from pyfacex.train.classification import ClassificationTrainer, init_class_weights
from pyfacex.train.config import ScheduleConfig
from pyfacex.train.data import GlobalBatchSampler
from pyfacex.train.optim import lr_factor
from ranks import spawn_ranks

from .conftest import TINY_IRESNET


def make_config(root, output, **values):
    """A tiny classification run; ``values`` override with dotted keys ("optim.lr": 0.1)."""
    tree = {"model": {"name": "iresnet18", "kwargs": dict(TINY_IRESNET)},
            "data": {"train": str(root), "batch_size": 8, "num_workers": 0, "image_size": 32, "augment": []},
            "optim": {"lr": 0.05}, "epochs": 1, "device": "cpu", "progress": False, "output": str(output),
            "log_every": 1}
    for key, value in values.items():
        *path, last = key.split(".")
        node = tree
        for part in path:
            node = node.setdefault(part, {})
        node[last] = value
    return config_from_dict(tree)


def states(trainer):
    """Every module's state, copied (tensors and extra state such as PartialFC's shard layout)."""
    return {f"{name}.{key}": copy.deepcopy(value) for name, module in trainer.modules.items()
            for key, value in module.state_dict().items()}


def assert_same_states(a: dict, b: dict):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]) if isinstance(a[key], torch.Tensor) else a[key] == b[key], key


def test_resume_reproduces_the_uninterrupted_run(tiny_faces, tmp_path):
    # LGAF (NormStats buffers), dropout (global RNG), flip + low-quality augmentation (per-batch
    # seeds), SGD momentum and a warm-up + cosine schedule: everything a resume must restore.
    values = {"model.name": "lgaf_r50", "model.kwargs": {"backbone_kwargs": {**TINY_IRESNET, "dropout": 0.3}},
              "data.augment": ["flip", "low_quality"], "schedule.kind": "cosine", "schedule.warmup_epochs": 0.5,
              "epochs": 2, "checkpoint_every": 2, "keep_checkpoints": 20}
    full = create_trainer(make_config(tiny_faces, tmp_path / "full", **values))
    full.fit()
    assert full.step == 12 and full.epoch == 2
    resumed = create_trainer(make_config(tiny_faces, tmp_path / "resumed", **{**values, "data.num_workers": 2}))
    resumed.fit(resume=tmp_path / "full" / "checkpoints" / "step_00000004")
    assert_same_states(states(full), states(resumed))
    assert (resumed.optimizers["shared"].state_dict()["state"].keys()
            == full.optimizers["shared"].state_dict()["state"].keys())
    for key, value in full.optimizers["shared"].state_dict()["state"].items():
        assert torch.equal(value["momentum_buffer"],
                           resumed.optimizers["shared"].state_dict()["state"][key]["momentum_buffer"])


def test_resume_auto_continues_from_the_latest_checkpoint(tiny_faces, tmp_path):
    stopped = create_trainer(make_config(tiny_faces, tmp_path, epochs=2, max_steps=3, checkpoint_every=3))
    stopped.fit()
    # the same run with more steps picks up at step 3 (a schedule over max_steps = 6 both times would
    # differ: compare against a fresh 6-step run cut into 3 + 3 through a checkpoint instead)
    again = create_trainer(make_config(tiny_faces, tmp_path, epochs=2, max_steps=3, checkpoint_every=3))
    again.fit(resume="auto")
    assert again.step == 3  # nothing left to do
    lines = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines if line["event"] == "train"] == [1, 2, 3]
    assert (tmp_path / "checkpoints" / "latest").read_text().strip() == "step_00000003"


def test_checkpoints_keep_the_newest_and_another_world_size_needs_every_rank_file(tiny_faces, tmp_path):
    trainer = create_trainer(make_config(tiny_faces, tmp_path, checkpoint_every=1, keep_checkpoints=2))
    trainer.fit()
    kept = sorted(p.name for p in (tmp_path / "checkpoints").glob("step_*"))
    assert kept == ["step_00000005", "step_00000006"]
    shared = torch.load(tmp_path / "checkpoints" / "step_00000006" / "shared.pt", weights_only=True)
    shared["world_size"] = 2
    torch.save(shared, tmp_path / "checkpoints" / "step_00000006" / "shared.pt")
    with pytest.raises(ckpt.CheckpointError, match="has no rank1.pt"):  # re-cutting for 1 process reads both
        trainer.restore(tmp_path / "checkpoints" / "step_00000006")


def test_schedules():
    steps, per_epoch = 100, 10
    warm = ScheduleConfig(kind="poly", warmup_epochs=2, power=2.0)
    assert [lr_factor(s, steps, per_epoch, warm) for s in (0, 9, 19)] == [1 / 20, 10 / 20, 1.0]
    assert lr_factor(60, steps, per_epoch, warm) == pytest.approx((1 - 40 / 80) ** 2)
    step = ScheduleConfig(kind="step", milestones=[3, 6], gamma=0.1)
    assert [lr_factor(s, steps, per_epoch, step) for s in (29, 30, 59, 60)] == pytest.approx([1, 0.1, 0.1, 0.01])
    cosine = ScheduleConfig(kind="cosine", min_lr=0.1)
    assert lr_factor(0, steps, per_epoch, cosine) == pytest.approx(1.0)
    assert lr_factor(50, steps, per_epoch, cosine) == pytest.approx(0.1 + 0.9 * 0.5)
    assert lr_factor(100, steps, per_epoch, cosine) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="schedule.kind"):
        lr_factor(0, steps, per_epoch, ScheduleConfig(kind="linear"))


def test_the_schedule_reaches_the_optimizer_each_step(tiny_faces, tmp_path):
    trainer = create_trainer(make_config(tiny_faces, tmp_path, **{"schedule.kind": "step", "schedule.milestones": [0.5],
                                                                   "schedule.gamma": 0.5}))
    trainer.fit()
    lines = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [line["lr"] for line in lines if line["event"] == "train"] == [0.05] * 3 + [0.025] * 3


def test_gradient_accumulation_takes_grad_accum_batches_per_step(tiny_faces, tmp_path):
    trainer = create_trainer(make_config(tiny_faces, tmp_path, grad_accum=2))
    assert trainer.steps_per_epoch == 3  # 48 images / 8 per batch / 2 per step
    seen = []
    trainer.modules["model"].register_forward_hook(lambda m, args, out: seen.append(args[0].shape[0]))
    trainer.fit()
    assert trainer.step == 3 and seen == [8] * 6


def test_bf16_autocast_on_cpu(tiny_faces, tmp_path):
    trainer = create_trainer(make_config(tiny_faces, tmp_path, amp="auto", max_steps=2))
    dtypes = []
    trainer.modules["model"].fc.register_forward_hook(lambda m, args, out: dtypes.append(out.dtype))
    result = trainer.fit()
    assert trainer.amp_dtype == torch.bfloat16 and trainer.scaler is None
    assert dtypes == [torch.bfloat16] * 2 and math.isfinite(result["loss"])
    with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
        create_trainer(make_config(tiny_faces, tmp_path, amp="fp16"))


def test_gradient_clipping_bounds_the_update(tiny_faces, tmp_path):
    # plain SGD at lr 1: the update is the clipped gradient, whose norm is at most the limit
    values = {"optim.momentum": 0.0, "optim.weight_decay": 0.0, "optim.lr": 1.0, "optim.clip_grad_norm": 1e-3,
              "schedule.kind": "constant", "max_steps": 1}
    trainer = create_trainer(make_config(tiny_faces, tmp_path, **values))
    before = [p.detach().clone() for p in trainer.modules["model"].parameters()]
    trainer.fit()
    moved = torch.stack([(p.detach() - b).norm() for p, b in zip(trainer.modules["model"].parameters(), before)])
    assert 0 < moved.norm() <= 1e-3 * (1 + 1e-5)


def test_evaluation_keeps_the_best_model(tiny_faces, tmp_path):
    world = SyntheticFaceWorld(seed=1, size=32, nuisance=Nuisance(difficulty=0.2))
    lfw = write_lfw_like(world, tmp_path / "lfw", folds=2, pairs_per_fold=6, identities_per_fold=4,
                         images_per_identity=3, progress=False)
    trainer = create_trainer(make_config(tiny_faces, tmp_path / "run", epochs=2,
                                         **{"eval.protocols": [f"lfw={lfw / 'lfw.bin'}"], "eval.every": 4}))
    result = trainer.fit()
    lines = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    evals = [line for line in lines if line["event"] == "eval"]
    assert [line["step"] for line in evals] == [4, 8, 12]
    accuracies = [line["lfw/accuracy"] for line in evals]
    assert result["best"] == max(accuracies) == evals[-1]["best"]
    assert all(line["best_key"] == "lfw/accuracy" for line in evals)
    embedder, info = load_embedder(tmp_path / "run" / "best_model.pt")
    assert info["name"] == "iresnet18" and info["image_size"] == 32
    with pytest.raises(ValueError, match="eval.best"):
        create_trainer(make_config(tiny_faces, tmp_path / "bad", max_steps=1,
                                   **{"eval.protocols": [f"lfw={lfw / 'lfw.bin'}"], "eval.best": "lfw/nope"})).fit()


def test_set_trainer_feeds_lfenet_sets_of_one_identity(tiny_faces, tmp_path):
    config = make_config(tiny_faces, tmp_path, trainer="sets", max_steps=2,
                         **{"model.name": "lfenet_irse50", "model.kwargs": {"backbone_kwargs": dict(TINY_IRESNET)},
                            "data.sets_per_batch": 4, "data.set_size": 3})
    trainer = create_trainer(config)
    batches = []
    trainer.modules["head"].register_forward_hook(lambda m, args, out: batches.append(args[1].clone()))
    result = trainer.fit()
    assert len(batches) == 2 and math.isfinite(result["loss"])
    for labels in batches:
        sets = labels.view(4, 3)
        assert (sets == sets[:, :1]).all() and len(set(sets[:, 0].tolist())) == 4
    embedder, _ = load_embedder(tmp_path / "model.pt")
    assert embedder(torch.zeros(2, 3, 32, 32)).shape == (2, 16)


def test_bad_inputs(tiny_faces, tmp_path):
    with pytest.raises(FileNotFoundError, match="data.train"):
        create_trainer(make_config(tmp_path / "missing", tmp_path))
    with pytest.raises(ValueError, match="head.kind: expected one of .*softmax"):
        create_trainer(make_config(tiny_faces, tmp_path, **{"head.kind": "sigmoid"}))
    with pytest.raises(ValueError, match="remove num_classes"):
        create_trainer(make_config(tiny_faces, tmp_path, **{"model.name": "lgaf_r50",
                                                            "model.kwargs": {"num_classes": 8}}))
    with pytest.raises(ValueError, match="fewer than one global batch"):
        create_trainer(make_config(tiny_faces, tmp_path, **{"data.batch_size": 64}))
    with pytest.raises(ValueError, match="trainer: expected one of"):
        create_trainer(make_config(tiny_faces, tmp_path, trainer="nope"))
    with pytest.raises(ValueError, match=r"data.augment\[0\]: expected one of .*, got 'blur'"):
        create_trainer(make_config(tiny_faces, tmp_path, **{"data.augment": ["blur"]}))
    edited = make_config(tiny_faces, tmp_path)
    edited.data.batch_size = -4  # a Config edited in Python is checked by the trainer
    with pytest.raises(ConfigError, match="data.batch_size: expected an int > 0, got -4"):
        create_trainer(edited)


def test_plain_softmax_head_trains_in_the_classification_trainer(tiny_faces, tmp_path):
    trainer = create_trainer(make_config(tiny_faces, tmp_path, max_steps=2, **{"head.kind": "softmax"}))
    head = trainer.modules["head"]
    assert isinstance(head, SoftmaxHead) and head.weight.shape == (trainer.num_classes, 16)
    bias = head.bias.detach().clone()
    assert math.isfinite(trainer.fit()["loss"]) and not torch.equal(head.bias, bias)


def test_class_weights_do_not_depend_on_the_sharding():
    whole = torch.empty(2500, 4)
    init_class_weights(whole, 0, seed=3)
    parts = [torch.empty(n, 4) for n in (1250, 1250)]
    init_class_weights(parts[0], 0, seed=3)
    init_class_weights(parts[1], 1250, seed=3)
    assert torch.equal(torch.cat(parts), whole)
    assert whole.std().item() == pytest.approx(0.01, rel=0.05)


def test_global_batches_split_across_ranks():
    whole = list(GlobalBatchSampler(40, 8, seed=1))
    ranks = [list(GlobalBatchSampler(40, 4, seed=1, rank=r, world_size=2)) for r in (0, 1)]
    assert [a + b for a, b in zip(*ranks)] == whole
    assert sorted(i for batch in whole for i in batch) == list(range(40))


# ---------------------------------------------------------------- 2 processes, PartialFC

class LinearEmbedder(nn.Module):
    """No batch statistics (unlike BatchNorm), so a 2-rank step can equal the 1-rank step exactly."""

    embedding_size = 16

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3 * 32 * 32, 16)

    def forward(self, images):
        return self.fc(images.flatten(1))


class LinearTrainer(ClassificationTrainer):
    def build_model(self):
        return LinearEmbedder()


def partial_fc_config(root, output, batch_size):
    return make_config(root, output, max_steps=3, **{"head.kind": "partial_fc", "data.batch_size": batch_size})


def _rank_work(rank, root, output):
    trainer = LinearTrainer(partial_fc_config(root, output, batch_size=4))
    trainer.fit()
    head = trainer.modules["head"]
    torch.save({"model": trainer.modules["model"].state_dict(), "head": head.weight.detach(),
                "start": head.class_start}, f"{output}/rank{rank}.pt")


def test_two_processes_with_partial_fc_equal_one_process_on_the_global_batch(tiny_faces, tmp_path):
    spawn_ranks(_rank_work, str(tiny_faces), str(tmp_path / "ddp"))
    single = LinearTrainer(partial_fc_config(tiny_faces, tmp_path / "single", batch_size=8))
    single.fit()
    ranks = [torch.load(tmp_path / "ddp" / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    for key, value in single.modules["model"].state_dict().items():
        for rank in ranks:
            torch.testing.assert_close(rank["model"][key], value, rtol=1e-5, atol=1e-6)
    shards = [rank["head"] for rank in sorted(ranks, key=lambda r: r["start"])]
    assert [r["start"] for r in ranks] == [0, 4]
    torch.testing.assert_close(torch.cat(shards), single.modules["head"].weight.detach(), rtol=1e-5, atol=1e-6)
    # each rank checkpointed its own shard
    assert sorted(p.name for p in (tmp_path / "ddp" / "checkpoints" / "step_00000003").iterdir()) == \
        ["rank0.pt", "rank1.pt", "shared.pt"]
