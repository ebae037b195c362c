"""Opening a WebFace42M-sized RecordIO set: 20M records, index and labels, on every rank.

The set is built synthetically (numpy, a minute): 20M header-only image records of 36 bytes (an
IRHeader with the class label, 4 payload bytes; 20 images per identity, 1M identities) in the
header-less layout of sets past 2^24 keys, and its ``.idx`` with zero-padded numbers (20 bytes a
line, a little longer than real ``.idx`` lines: the parse is not flattered). Groups, side by side:

- ``open|20M-uncached``: ``RecordDataset(root, index_cache=False).labels``: the ``.idx`` parsed by
  numpy and the labels gathered from the 20M headers (the work of a first open, and of every open
  without the cache);
- ``open|20M-cached``: ``RecordDataset(root).labels`` with the index cache written by a first open
  (``train.index.npy``, memory-mapped): the open of every later run and every rank.

Each timed call runs in this process on warm files (the page cache holds them, as on a node that
has opened the set before). Memory is measured apart, in a fresh process per case
(``extra_info``): ``rss_peak_mib``, the process's peak resident set (the interpreter, torch and the
dataset), ``rss_added_mib``, the peak minus the resident set after importing pyfacex, and for the
cached open ``workers_uss_mib``: the private memory (USS, pages no other process shares) of 2
forked DataLoader workers after they read 50 batches of 256 random records' labels
(``label_vector``, one ``pread`` each). Under ``--benchmark-disable`` (CI) the set has 100k records.

Targets (issue "Scale"): ≤ 10 s and ≤ 1.5 GB for the open, ≤ 100 MB added by 2 workers.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from common import run
from pyfacex.data.record_dataset import RecordDataset

RECORDS, SMOKE_RECORDS = 20_000_000, 100_000
PER_IDENTITY = 20
_MAGIC = 0xCED7230A
_RECORD_WORDS = 9  # magic, lrec, IRHeader (6 words), 4 payload bytes
_CHUNK = 1 << 21


def _digits(values: np.ndarray, width: int) -> np.ndarray:
    """(n, width) ASCII digits of non-negative ints, zero-padded."""
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    return ((values[:, None] // powers) % 10 + 48).astype(np.uint8)


def write_synthetic_set(root: Path, records: int) -> Path:
    """``records`` header-only image records (class = key // 20) and their index, written chunk by chunk."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "train.rec", "wb") as rec, open(root / "train.idx", "wb") as idx:
        for start in range(0, records, _CHUNK):
            keys = np.arange(start, min(start + _CHUNK, records), dtype=np.int64)
            words = np.zeros((keys.size, _RECORD_WORDS), dtype="<u4")
            words[:, 0], words[:, 1] = _MAGIC, 4 * (_RECORD_WORDS - 2)  # payload: 24-byte header + 4 bytes
            words[:, 3] = (keys // PER_IDENTITY).astype("<f4").view("<u4")  # flag 0: the label field
            words[:, 4] = keys.astype("<u4")  # id (low word)
            words[:, 8] = 0x67616D69  # b"imag": an image record has bytes after its header
            rec.write(words.tobytes())
            lines = np.full((keys.size, 20), ord("\t"), dtype=np.uint8)
            lines[:, :8], lines[:, 9:19], lines[:, 19] = _digits(keys, 8), _digits(keys * 36, 10), ord("\n")
            idx.write(lines.tobytes())
    (root / "property").write_text(f"{-(-records // PER_IDENTITY)},112,112\n")
    return root


@pytest.fixture(scope="module")
def huge_set(tmp_path_factory, request):
    records = SMOKE_RECORDS if request.config.getoption("benchmark_disable") else RECORDS
    root = write_synthetic_set(tmp_path_factory.mktemp("records"), records)
    RecordDataset(root).labels  # the first open writes the index cache
    return root, records


_MEASURE = textwrap.dedent("""
    import json, sys, time
    import torch
    from pyfacex.data.record_dataset import RecordDataset

    def status_mib(field):  # VmHWM, not ru_maxrss: that one keeps the forking parent's peak across exec
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith(field + ":")) / 1024

    def uss_mib(pid):
        with open(f"/proc/{pid}/smaps_rollup") as rollup:
            fields = dict(line.split(":", 1) for line in rollup if ":" in line)
        return sum(int(fields[k].split()[0]) for k in ("Private_Clean", "Private_Dirty")) / 1024

    root, cached = sys.argv[1], sys.argv[2] == "cached"
    before = status_mib("VmRSS")
    start = time.perf_counter()
    dataset = RecordDataset(root, index_cache=cached)
    labels = dataset.labels
    seconds = time.perf_counter() - start
    peak = status_mib("VmHWM")
    result = {"seconds": seconds, "rss_peak_mib": peak, "rss_added_mib": peak - before}
    if cached:
        class Labels(torch.utils.data.Dataset):
            def __len__(self):
                return len(dataset)
            def __getitem__(self, i):
                return dataset.label_vector(i)
        sampler = torch.utils.data.BatchSampler(torch.utils.data.RandomSampler(range(len(dataset)), num_samples=
                                                256 * 50, generator=torch.Generator().manual_seed(0)), 256, False)
        loader = torch.utils.data.DataLoader(Labels(), batch_sampler=sampler, num_workers=2,
                                             persistent_workers=True, multiprocessing_context="fork")
        batches = iter(loader)
        for _ in range(50):
            next(batches)
        result["workers_uss_mib"] = sum(uss_mib(w.pid) for w in batches._workers)
    print(json.dumps(result))
""")


def _measure(root: Path, cached: bool) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", _MEASURE, str(root), "cached" if cached else "uncached"],
                         check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.parametrize("cached", [False, True], ids=["uncached", "cached"])
def test_open(benchmark, huge_set, cached):
    root, records = huge_set
    if not benchmark.disabled:
        benchmark.extra_info.update(_measure(root, cached))
    label = f"{records // 1_000_000}M" if records >= 1_000_000 else f"{records // 1000}k"
    result = run(benchmark, lambda: RecordDataset(root, index_cache=cached).labels, group=f"open|{label}",
                 impl="pyfacex-" + ("cached" if cached else "uncached"), rounds=None if cached else 1)
    assert result.shape == (records,) and int(result[-1]) == (records - 1) // PER_IDENTITY
