"""The ``ddp`` section: bucket size and static graph leave a 2-process run unchanged; fp16/bf16 gradient
compression reduces each rank's share in that dtype (averaged, or summed for PartialFC)."""

import torch

from pyfacex.train import create_trainer
from pyfacex.train.config import DDPConfig
from pyfacex.train.distributed import DistContext, wrap_ddp
from ranks import spawn_ranks

from .test_trainer import make_config


def _rank_work(rank, root, output, values):
    trainer = create_trainer(make_config(root, output, max_steps=3, **{"data.batch_size": 4, **values}))
    trainer.fit()
    if rank == 0:
        torch.save({k: v.detach() for k, v in trainer.modules["model"].state_dict().items()}, f"{output}/final.pt")


def _two_ranks(root, output, values) -> dict:
    spawn_ranks(_rank_work, str(root), str(output), values)
    return torch.load(output / "final.pt", weights_only=True)


def _hook_rank_work(rank, compression, sum_gradients, output):
    context = DistContext(rank, 2, rank, torch.device("cpu"), DDPConfig(compression=compression))
    model = torch.nn.Linear(4, 3, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.arange(12.0).reshape(3, 4) / 7)
    wrapped = wrap_ddp(model, context, sum_gradients=sum_gradients)
    x = torch.linspace(-1, 1, 8).reshape(2, 4) * (rank + 1.3)  # each rank its own gradient
    wrapped(x).square().sum().backward()
    torch.save(model.weight.grad, f"{output}/grad{rank}.pt")


def _local_gradient(rank):
    weight = (torch.arange(12.0).reshape(3, 4) / 7).requires_grad_()
    x = torch.linspace(-1, 1, 8).reshape(2, 4) * (rank + 1.3)
    (x @ weight.T).square().sum().backward()
    return weight.grad


def test_the_compression_hook_averages_or_sums_in_the_wire_dtype(tmp_path):
    grads = [_local_gradient(rank) for rank in (0, 1)]
    for compression, sum_gradients in (("none", True), ("bf16", False), ("fp16", False), ("bf16", True)):
        spawn_ranks(_hook_rank_work, compression, sum_gradients, str(tmp_path), init_group=True)
        got = [torch.load(tmp_path / f"grad{rank}.pt", weights_only=True) for rank in (0, 1)]
        assert torch.equal(got[0], got[1])  # every rank holds the same reduced gradient
        wire = {"none": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[compression]
        # the hook's arithmetic: each share rounded to the wire dtype (divided first when averaging), summed there
        shares = [(g if sum_gradients else g / 2).to(wire) for g in grads]
        torch.testing.assert_close(got[0], (shares[0] + shares[1]).float(), rtol=0, atol=0)
        exact = grads[0] + grads[1] if sum_gradients else (grads[0] + grads[1]) / 2
        torch.testing.assert_close(got[0], exact, rtol=1e-2 if compression != "none" else 0, atol=0)


def test_bucket_size_and_static_graph_leave_the_run_unchanged(tiny_faces, tmp_path):
    default = _two_ranks(tiny_faces, tmp_path / "default", {})
    tuned = _two_ranks(tiny_faces, tmp_path / "tuned", {"ddp.bucket_cap_mb": 0.01, "ddp.static_graph": True})
    for key, value in default.items():   # the same sums, only grouped into other buckets
        torch.testing.assert_close(tuned[key], value, rtol=1e-6, atol=1e-7, msg=lambda m, key=key: f"{key}: {m}")
