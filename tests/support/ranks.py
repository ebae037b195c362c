"""Run a test's work in several local processes joined by a gloo process group.

``spawn_ranks(work, *args)`` starts ``world`` processes (torch.multiprocessing, spawn), each with the
environment torchrun would give it (MASTER_ADDR/PORT, WORLD_SIZE, RANK, LOCAL_RANK) and one intra-op
thread, and calls ``work(rank, *args)`` there; ``work`` must be a module-level function.

The process group is destroyed only after ``work`` has returned, so every object it made (a
DistributedDataParallel's reducer above all) is gone first. The other order can hang the process at
exit: the reducer then drops the group's last reference while holding the GIL, the gloo destructor
joins its worker threads, and a worker still releasing a comm hook's Python callback waits for that
GIL for ever (seen with torch 2.13 on 1 run in 4 of the compression-hook test).
"""
import os
import socket
import traceback

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (for MASTER_PORT or a rendezvous)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def spawn_ranks(work, *args, world: int = 2, init_group: bool = False) -> None:
    """Run ``work(rank, *args)`` in ``world`` processes and wait for all; a rank's exception is
    re-raised here. ``init_group``: initialise the gloo group before ``work`` (else ``work`` or the
    trainer it builds does, from the environment)."""
    mp.spawn(_rank_entry, args=(world, free_port(), init_group, work, args), nprocs=world, join=True)


def _rank_entry(rank, world, port, init_group, work, args):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    if init_group:
        dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        work(rank, *args)
    except BaseException as error:
        traceback.clear_frames(error.__traceback__)  # the work's objects go before the group, as on success
        raise
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
