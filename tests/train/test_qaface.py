"""The QAFace / VPL trainer on tiny synthetic faces: when the memory is written and injected, the
momentum EMA, exact resume, the exported backbone, and the config rules."""

import pytest
import torch

from pyfacex.train import config_from_dict, create_trainer, load_model
from pyfacex.train.qaface import QAFaceTrainer
from ranks import spawn_ranks

# 8 identities × 6 faces, batch 8: 6 steps per epoch; start_epoch 0.5 → injection from iteration 3.
STEPS, START = 6, 3
TINY = {"layers": [1, 1, 1, 1], "widths": [8, 8, 16, 16], "embedding_size": 16, "input_size": 32}
MODES = {"qaface": ("qaface_r50", 0.9), "vpl": ("vpl_r100", None)}


def make_config(root, output, mode="qaface", delta_t=1000, **top):
    name, momentum = MODES[mode]
    values = {"trainer": "qaface", "model": {"name": name, "kwargs": dict(TINY)},
              "qaface": {"mode": mode, "start_epoch": 0.5, "delta_t": delta_t, "momentum": momentum},
              "data": {"train": str(root), "batch_size": 8, "num_workers": 0, "image_size": 32},
              "optim": {"lr": 0.05}, "epochs": 1, "device": "cpu", "progress": False, "output": str(output),
              "log_every": 1, "checkpoint_every": 100}
    for key, value in top.items():
        section, _, field = key.partition("__")
        if field:
            values.setdefault(section, {})[field] = value
        else:
            values[key] = value
    return config_from_dict(values)


def record_head(trainer):
    """Per forward of the head: (iteration, labels, quality or None, active or None)."""
    calls = []

    def hook(module, args, output):
        _, labels, iteration = args[:3]
        calls.append((iteration, labels.clone(), output.quality, output.active))

    trainer.modules["model"].head.register_forward_hook(hook)
    return calls


@pytest.mark.parametrize("mode", ["qaface", "vpl"])
def test_memory_written_and_injected_from_the_start(tiny_faces, tmp_path, mode):
    # Δt = 1: writes from iteration START − 1 = 2; at iteration k >= START exactly the classes seen
    # at k − 1 are injected (written at k − 1, not yet stale; this step's writes come after).
    trainer = create_trainer(make_config(tiny_faces, tmp_path, mode, delta_t=1))
    assert isinstance(trainer, QAFaceTrainer) and trainer.steps_per_epoch == STEPS
    head = trainer.modules["model"].head
    assert head.start_iteration == START and head.mode == mode
    calls = record_head(trainer)
    last = trainer.fit()
    assert [c[0] for c in calls] == list(range(STEPS))  # iteration = the 0-based step being taken

    stamps = torch.full((trainer.num_classes,), -1, dtype=torch.int64)
    norms = torch.zeros(trainer.num_classes)
    for iteration, labels, quality, active in calls:
        if iteration < START:
            assert active is None
        else:
            assert torch.equal(active, stamps == iteration - 1)  # the classes written at k − 1
        writes = iteration >= START - 1
        assert (quality is not None) == (writes and mode == "qaface")
        if writes:
            for i, label in enumerate(labels.tolist()):  # the last sample with f > 0 of a class is kept
                f = 1.0 if quality is None else float(quality[i])
                if f > 0:  # f = 0 writes nothing (QAFace, Sec. 3.4)
                    stamps[label] = iteration
                    norms[label] = f
    assert torch.equal(head.stamps, stamps)
    assert (stamps >= 0).sum() >= 4  # several classes written
    torch.testing.assert_close(head.memory.norm(dim=1), norms, atol=1e-5, rtol=1e-5)  # eq. 7: f(ẑ)·x/‖x‖
    assert torch.equal(head.memory[stamps < 0], torch.zeros_like(head.memory[stamps < 0]))
    # fit() returns the last step's logs (log_every 1)
    assert last["injected"] == pytest.approx(float(calls[-1][3].float().mean()))
    if mode == "qaface":
        assert last["quality"] == pytest.approx(float(calls[-1][2].mean()), rel=1e-5)
        assert 0.0 <= last["ignored"] <= 1.0
    else:
        assert "quality" not in last


def test_momentum_backbone_is_the_ema_of_the_online_one(tiny_faces, tmp_path):
    trainer = create_trainer(make_config(tiny_faces, tmp_path, max_steps=1))
    model = trainer.modules["model"]
    gamma = model.momentum
    slow = [p.detach().clone() for p in model.momentum_backbone.parameters()]
    fast = [p.detach().clone() for p in model.backbone.parameters()]
    assert all(torch.equal(s, f) for s, f in zip(slow, fast))  # θ_m starts at θ
    trainer.fit()
    assert not model.momentum_backbone.training and model.backbone.training
    moved = 0
    for before, new_slow, new_fast in zip(slow, model.momentum_backbone.parameters(), model.backbone.parameters()):
        torch.testing.assert_close(new_slow, gamma * before + (1 - gamma) * new_fast, atol=1e-8, rtol=1e-6)
        moved += not torch.equal(new_slow, before)
    assert moved > 10
    for slow_buffer, fast_buffer in zip(model.momentum_backbone.buffers(), model.backbone.buffers()):
        assert torch.equal(slow_buffer, fast_buffer)  # BN statistics copied


@pytest.mark.parametrize("mode", ["qaface", "vpl"])
def test_resume_reproduces_the_uninterrupted_run(tiny_faces, tmp_path, mode):
    # Resume at step 2, before injection starts at 3: the memory, stamps, norm statistics and momentum
    # backbone of the checkpoint carry the run across the start.
    first = create_trainer(make_config(tiny_faces, tmp_path / "a", mode, delta_t=2, checkpoint_every=2,
                                       keep_checkpoints=10))
    first.fit()
    second = create_trainer(make_config(tiny_faces, tmp_path / "b", mode, delta_t=2))
    second.fit(resume=tmp_path / "a" / "checkpoints" / "step_00000002")
    a, b = first.modules["model"].state_dict(), second.modules["model"].state_dict()
    assert a.keys() == b.keys()
    assert ("momentum_backbone.fc.weight" in a) == (mode == "qaface")
    assert any(k.startswith("head.norm_stats.") for k in a) == (mode == "qaface")
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert int((a["head.stamps"] >= 0).sum()) > 0


def test_exported_model_is_the_online_backbone(tiny_faces, tmp_path):
    trainer = create_trainer(make_config(tiny_faces, tmp_path, "vpl", max_steps=2,
                                         model__kwargs=dict(TINY, dropout=0.1)))
    trainer.fit()
    exported, info = load_model(tmp_path / "model.pt")
    assert info["name"] == "iresnet100" and info["kwargs"]["num_features"] == 16
    assert info["kwargs"]["layers"] == [1, 1, 1, 1] and info["kwargs"]["dropout"] == 0.1
    backbone = trainer.modules["model"].backbone.eval()
    assert exported.state_dict().keys() == backbone.state_dict().keys()
    images = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(exported(images), backbone(images))
    assert trainer.embedder() is backbone


def test_config_maps_to_the_model(tiny_faces, tmp_path):
    trainer = create_trainer(make_config(tiny_faces, tmp_path, "qaface", delta_t=7, qaface__tau=1.5,
                                         qaface__start_epoch=4.0, qaface__normalize_weight=True,
                                         head__kind="cosface", head__s=32.0,
                                         optim__lr_scales={"head": 2.0}))
    model = trainer.modules["model"]
    head = model.head
    assert (head.start_iteration, head.delta_t, head.tau, model.momentum) == (4 * STEPS, 7, 1.5, 0.9)
    assert head.normalize_weight
    assert (head.s, head.m1, head.m2, head.m3) == (32.0, 1.0, 0.0, 0.4)
    assert head.weight.shape == (trainer.num_classes, 16)
    groups = trainer.optimizers["shared"].param_groups
    assert [g["lr"] for g in groups] == [pytest.approx(0.05), pytest.approx(0.1)]
    assert groups[1]["params"][0] is head.weight


def test_quality_weight_false_trains_without_quality(tiny_faces, tmp_path):
    """f ≡ 1: the head keeps no norm statistics and logs no quality, and the memory is still injected."""
    trainer = create_trainer(make_config(tiny_faces, tmp_path / "plain", delta_t=10, max_steps=2,
                                         qaface__start_epoch=0.0, qaface__quality_weight=False))
    head = trainer.modules["model"].head
    assert head.quality_weight is False and head.norm_stats is None
    logged = trainer.fit()
    assert "quality" not in logged and logged["injected"] > 0
    weighted = create_trainer(make_config(tiny_faces, tmp_path / "weighted", delta_t=10, max_steps=2,
                                          qaface__start_epoch=0.0))
    assert weighted.modules["model"].head.quality_weight is True and "quality" in weighted.fit()


@pytest.mark.parametrize("change, message", [
    ({"model__name": "vpl_r100"}, "qaface.mode=vpl"),
    ({"qaface__momentum": 0.99, "qaface__mode": "vpl"}, "qaface.momentum=null"),
    ({"model__kwargs": dict(TINY, tau=1.0)}, "qaface.*"),
    ({"model__kwargs": dict(TINY, s=30.0)}, "head.*"),
    ({"model__name": "iresnet50"}, "model.name"),
    ({"head__kind": "adaface"}, "head.kind"),
    ({"qaface__start_epoch": -1.0}, "qaface.start_epoch"),
    ({"model__name": "vpl_r100", "qaface__mode": "vpl", "qaface__momentum": None, "qaface__normalize_weight": True},
     "qaface.normalize_weight"),
    ({"model__kwargs": dict(TINY, normalize_weight=True)}, "qaface.*"),
    ({"model__name": "vpl_r100", "qaface__mode": "vpl", "qaface__momentum": None, "qaface__quality_weight": False},
     "qaface.quality_weight"),
])
def test_config_errors_name_the_key(tiny_faces, tmp_path, change, message):
    with pytest.raises(ValueError, match=message.replace(".", r"\.").replace("*", r"\*")):
        create_trainer(make_config(tiny_faces, tmp_path, "qaface", **change))


def _rank_work(rank, root, output):
    trainer = create_trainer(make_config(root, output, "qaface", delta_t=2, data__batch_size=4))
    ddp = trainer.wrapped["model"]
    assert isinstance(ddp, torch.nn.parallel.DistributedDataParallel)
    # the model synchronises its memory itself: DDP must not broadcast it every forward
    assert {"head.memory", "head.stamps"} <= set(ddp.parameters_to_ignore)
    assert not any(b is trainer.modules["model"].head.memory for b in ddp.modules_buffers)
    trainer.fit()
    torch.save(trainer.modules["model"].state_dict(), f"{output}/rank{rank}.pt")


def test_two_ranks_keep_one_memory(tiny_faces, tmp_path):
    # Rank r takes the r-th half of each global batch of 8: the memories (written from the gathered
    # global batch), norm statistics and replicated weights agree across ranks, and the write stamps
    # equal a 1-process run's on the same global batches. (The losses differ: BatchNorm sees halves.)
    spawn_ranks(_rank_work, str(tiny_faces), str(tmp_path))
    states = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    for key, value in states[0].items():
        if "running_" not in key and "num_batches_tracked" not in key:  # BN statistics are per rank
            assert torch.equal(value, states[1][key]), key
    single = create_trainer(make_config(tiny_faces, tmp_path / "single", "qaface", delta_t=2))
    single.fit()
    assert torch.equal(states[0]["head.stamps"], single.modules["model"].head.stamps)
    assert (states[0]["head.memory"].abs().sum(dim=1) > 0).sum() >= 4
