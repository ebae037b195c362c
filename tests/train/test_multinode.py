"""Two nodes: ``torchrun --nnodes 2`` with a c10d rendezvous, both launched on this host, train one run as
``torchrun --nproc_per_node 2`` would (README "Several machines")."""
import json
import os
import subprocess
import sys

import yaml

from ranks import free_port

TINY = {"layers": [1, 1, 1, 1], "widths": [8, 8, 16, 16], "num_features": 16, "input_size": 32}


def test_two_nodes_on_localhost_train_one_run(tiny_faces, tmp_path):
    recipe = {"model": {"name": "iresnet18", "kwargs": TINY}, "head": {"kind": "partial_fc"},
              "data": {"train": str(tiny_faces), "batch_size": 4, "num_workers": 0, "image_size": 32, "augment": []},
              "max_steps": 2, "log_every": 1, "device": "cpu", "progress": False, "output": str(tmp_path / "run")}
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    port = free_port()
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1",
               "--rdzv_backend", "c10d", "--rdzv_endpoint", f"127.0.0.1:{port}", "--rdzv_id", "pyfacex-test",
               "--max_restarts", "0", "-m", "pyfacex", "train", str(tmp_path / "recipe.yaml")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    nodes = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(2)]
    outputs = [node.communicate(timeout=600)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], "\n".join(outputs)
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert log[0]["event"] == "start" and log[0]["world_size"] == 2
    assert [record["step"] for record in log if record["event"] == "train"] == [1, 2]
    # the PartialFC classes were split over the two nodes' processes: a shard file each
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints" / "step_00000002").iterdir()) == \
        ["rank0.pt", "rank1.pt", "shared.pt"]
    assert (tmp_path / "run" / "model.pt").is_file()
