"""One rank of the PartialFC equivalence test, launched by torchrun (tests/nn/test_partial_fc.py).

Usage: torchrun --nproc_per_node 2 partial_fc_worker.py CASE.pt OUT_DIR
CASE.pt holds the global batch, the full class weights and the head's settings; each rank takes
its slice of the batch and its shard of the weights, and saves its loss and gradients.
"""
import sys

import torch
import torch.distributed as dist

from pyfacex.nn import PartialFC


def main(case_path: str, out_dir: str) -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    case = torch.load(case_path, weights_only=True)
    rows = case["embeddings"].shape[0] // world
    embeddings = case["embeddings"][rank * rows:(rank + 1) * rows].clone().requires_grad_()
    labels = case["labels"][rank * rows:(rank + 1) * rows]
    head = PartialFC(embeddings.shape[1], case["weight"].shape[0], **case["settings"]).to(case["weight"].dtype)
    with torch.no_grad():
        head.weight.copy_(case["weight"][head.class_start:head.class_start + head.num_local])
    if head.sample_rate < 1.0:
        torch.manual_seed(1000 + rank)
    details = head(embeddings, labels, return_details=True)
    details.loss.backward()
    torch.save({"loss": details.loss.detach(), "per_sample": details.per_sample.detach(),
                "target_cos": details.target_cos, "grad_embeddings": embeddings.grad,
                "grad_weight": head.weight.grad, "class_start": head.class_start,
                "state": head.state_dict()}, f"{out_dir}/rank{rank}.pt")
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
