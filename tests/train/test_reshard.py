"""Resuming at another world size: PartialFC's class shards, their optimiser state, the data position and
the RNG states re-cut from the parts the old processes wrote."""
import random

import pytest
import torch

from pyfacex.nn.partial_fc import class_shard
from pyfacex.train import checkpoint as ckpt
from ranks import spawn_ranks

from .test_trainer import LinearTrainer, assert_same_states, make_config, states

NUM_CLASSES, DIM = 7, 3


def write_sharded_checkpoint(root, world_size, batch_in_epoch=12, step=10):
    """A checkpoint of ``world_size`` ranks holding PartialFC shards of a known global weight and momentum."""
    weight = torch.arange(NUM_CLASSES * DIM, dtype=torch.float32).reshape(NUM_CLASSES, DIM)
    momentum = -weight
    shared = {"step": step, "epoch": 1, "batch_in_epoch": batch_in_epoch, "world_size": world_size,
              "config": {"seed": 5}, "modules": {"model": {"w": torch.ones(2)}}, "optimizers": {},
              "schedulers": {}}
    for rank in range(world_size):
        start, count = class_shard(NUM_CLASSES, rank, world_size)
        extra = {"num_classes": NUM_CLASSES, "rank": rank, "world_size": world_size, "class_start": start}
        local = {"modules": {"head": {"weight": weight[start:start + count].clone(), "_extra_state": extra}},
                 "optimizers": {"local": {"state": {0: {"momentum_buffer": momentum[start:start + count].clone(),
                                                        "step": torch.tensor(3.0)}},
                                          "param_groups": [{"lr": 0.1, "params": [0]}]}},
                 "rng": {"torch": torch.Generator().manual_seed(rank).get_state(),
                         "python": random.Random(rank).getstate()}}
        ckpt.save_checkpoint(root, step, rank=rank, shared=shared if rank == 0 else None, local=local)
    return root / f"step_{step:08d}", weight, momentum


@pytest.mark.parametrize("old, new", [(3, 2), (2, 3), (1, 4), (4, 1), (2, 2)])
def test_the_shards_are_recut_from_the_global_weight_and_momentum(tmp_path, old, new):
    folder, weight, momentum = write_sharded_checkpoint(tmp_path, old)
    parts = [ckpt.load_checkpoint(folder, rank, new) for rank in range(new)]
    heads = [local["modules"]["head"] for _, local in parts]
    torch.testing.assert_close(torch.cat([head["weight"] for head in heads]), weight, rtol=0, atol=0)
    buffers = [local["optimizers"]["local"]["state"][0] for _, local in parts]
    torch.testing.assert_close(torch.cat([b["momentum_buffer"] for b in buffers]), momentum, rtol=0, atol=0)
    assert all(float(b["step"]) == 3.0 for b in buffers)
    for rank, head in enumerate(heads):
        start = class_shard(NUM_CLASSES, rank, new)[0]
        assert head["_extra_state"] == {"num_classes": NUM_CLASSES, "rank": rank, "world_size": new,
                                        "class_start": start}
    for shared, _ in parts:
        assert shared["world_size"] == new and shared["batch_in_epoch"] == 12 * old // new
        assert shared["step"] == 10 and torch.equal(shared["modules"]["model"]["w"], torch.ones(2))


def test_ranks_keep_their_rng_and_new_ranks_get_a_seeded_one(tmp_path):
    folder, _, _ = write_sharded_checkpoint(tmp_path, 2)
    rngs = [ckpt.load_checkpoint(folder, rank, 3)[1]["rng"] for rank in range(3)]
    for rank in (0, 1):
        assert torch.equal(rngs[rank]["torch"], torch.Generator().manual_seed(rank).get_state())
    again = ckpt.load_checkpoint(folder, 2, 3)[1]["rng"]
    assert torch.equal(rngs[2]["torch"], again["torch"])  # a function of (seed, step, rank)
    assert not torch.equal(rngs[2]["torch"], rngs[0]["torch"]) and not torch.equal(rngs[2]["torch"], rngs[1]["torch"])
    ckpt.set_rng_state(rngs[2])  # a state the trainer can restore


def test_a_position_the_new_ranks_cannot_share_is_refused(tmp_path):
    folder, _, _ = write_sharded_checkpoint(tmp_path, 2, batch_in_epoch=3)
    with pytest.raises(ValueError, match="after 3 micro-batches of each .* cannot share evenly.* divides 6"):
        ckpt.load_checkpoint(folder, 0, 4)
    assert ckpt.load_checkpoint(folder, 0, 3)[0]["batch_in_epoch"] == 2


def test_per_rank_state_that_is_not_a_class_shard_is_refused(tmp_path):
    folder, _, _ = write_sharded_checkpoint(tmp_path, 2)
    local = torch.load(folder / "rank1.pt", weights_only=True)
    del local["modules"]["head"]["_extra_state"]
    torch.save(local, folder / "rank1.pt")
    with pytest.raises(ValueError, match="module 'head' is not a class shard"):
        ckpt.load_checkpoint(folder, 0, 1)
    folder, _, _ = write_sharded_checkpoint(tmp_path / "lr", 2)
    local = torch.load(folder / "rank1.pt", weights_only=True)
    local["optimizers"]["local"]["param_groups"][0]["lr"] = 0.2
    torch.save(local, folder / "rank1.pt")
    with pytest.raises(ValueError, match="optimizer.local.param_groups differs between the ranks"):
        ckpt.load_checkpoint(folder, 0, 1)


def test_a_missing_rank_file_is_named(tmp_path):
    folder, _, _ = write_sharded_checkpoint(tmp_path, 3)
    (folder / "rank2.pt").unlink()
    with pytest.raises(ckpt.CheckpointError, match="has no rank2.pt"):
        ckpt.load_checkpoint(folder, 0, 2)


# ---------------------------------------------------------------- 2 processes -> 1

def partial_fc_run(root, output):
    """PartialFC with SGD momentum, 4 images per process and step, a checkpoint every 2 steps."""
    return make_config(root, output, max_steps=4, checkpoint_every=2, keep_checkpoints=5,
                       **{"head.kind": "partial_fc", "data.batch_size": 4})


def _rank_work(rank, root, output):
    LinearTrainer(partial_fc_run(root, output)).fit()


def global_state_by_hand(two_ranks, folder):
    """The 1-process checkpoint holding the global state of ``two_ranks`` (written by 2 processes):
    shards and momenta concatenated, the position in one process's micro-batches, rank 0's RNG."""
    shared = torch.load(two_ranks / "shared.pt", weights_only=True)
    ranks = [torch.load(two_ranks / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    shared.update(world_size=1, batch_in_epoch=2 * shared["batch_in_epoch"])
    head = {"weight": torch.cat([r["modules"]["head"]["weight"] for r in ranks]),
            "_extra_state": {"num_classes": 8, "rank": 0, "world_size": 1, "class_start": 0}}
    optimizer = ranks[0]["optimizers"]["local"]
    optimizer["state"][0]["momentum_buffer"] = torch.cat(
        [r["optimizers"]["local"]["state"][0]["momentum_buffer"] for r in ranks])
    local = {"modules": {"head": head}, "optimizers": {"local": optimizer}, "rng": ranks[0]["rng"]}
    ckpt.save_checkpoint(folder, shared["step"], rank=0, shared=shared, local=local)
    return folder / two_ranks.name


def test_two_processes_resumed_by_one_continue_as_one_process_from_the_same_global_state(tiny_faces, tmp_path):
    spawn_ranks(_rank_work, str(tiny_faces), str(tmp_path / "two"))
    saved = tmp_path / "two" / "checkpoints" / "step_00000002"
    assert torch.load(saved / "shared.pt", weights_only=True)["batch_in_epoch"] == 2

    resharded = LinearTrainer(partial_fc_run(tiny_faces, tmp_path / "resharded"))
    resharded.fit(resume=saved)
    by_hand = LinearTrainer(partial_fc_run(tiny_faces, tmp_path / "by_hand"))
    by_hand.fit(resume=global_state_by_hand(saved, tmp_path / "global"))

    assert resharded.step == by_hand.step == 4 and resharded.batch_in_epoch == 6
    assert_same_states(states(resharded), states(by_hand))
    for name in ("shared", "local"):
        mine, theirs = (t.optimizers[name].state_dict()["state"] for t in (resharded, by_hand))
        assert mine.keys() == theirs.keys()
        for key in mine:
            assert torch.equal(mine[key]["momentum_buffer"], theirs[key]["momentum_buffer"])
    # it trained on: the head moved from the checkpoint's
    start = torch.cat([torch.load(saved / f"rank{r}.pt", weights_only=True)["modules"]["head"]["weight"]
                       for r in (0, 1)])
    assert not torch.equal(resharded.modules["head"].weight.detach(), start)
