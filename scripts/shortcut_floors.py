"""Shortcut floors of the synthetic face world under several population settings.

For each setting: render the demo's LFW-like and CFP-FP-like protocols (``pyfacex demo``'s fold
structure: 10 folds of test_identities / 10 people, faces rendered at 112 pixels with nuisance
``difficulty``), then measure both floors of :func:`pyfacex.eval.shortcuts.shortcut_floors` on them
at ``--image-size`` and print a Markdown table (also written to ``OUT/floors.md`` and
``OUT/floors.json``). Rendered protocols are kept under ``OUT/<setting>/`` and reused; beside them
``cohorts.png`` shows two cohorts × four members × two images each, to check that faces of one
identity still look alike.

    python scripts/shortcut_floors.py --out runs/shortcut_floors            # every setting
    python scripts/shortcut_floors.py --settings default cohorts-20         # some of them
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from PIL import Image

from pyfacex.data.synthetic import Nuisance, SyntheticFaceWorld, protocols
from pyfacex.eval.shortcuts import shortcut_floors
from pyfacex.train.demo import DemoSettings, protocol_writers

# Population settings (SyntheticFaceWorld keyword arguments), fixed before any was measured.
SETTINGS = {
    "default": {},
    "cohorts-20": dict(cohort_size=20),
    "cohorts-20-jitter-0.2": dict(cohort_size=20, cohort_jitter=0.2),
    "cohorts-10": dict(cohort_size=10),
    "cohorts-20-variety-1.5": dict(cohort_size=20, local_variety=1.5),
    "cohorts-20-jitter-0.5": dict(cohort_size=20, cohort_jitter=0.5),
    "cohorts-20-jitter-0.3": dict(cohort_size=20, cohort_jitter=0.3),
    "cohorts-20-jitter-0.3-variety-1.5": dict(cohort_size=20, cohort_jitter=0.3, local_variety=1.5),
}
PROTOCOLS = {"lfw": "lfw/lfw.bin", "cfp-fp": "cfp-fp/cfp_fp.bin"}


def render(root: Path, world: SyntheticFaceWorld, demo: DemoSettings) -> list[str]:
    """The protocols' specs, rendering them into ``root`` unless a run of the same world left them."""
    stamp, wanted = root / "world.txt", repr(world) + f" test_identities={demo.test_identities}"
    if not (stamp.is_file() and stamp.read_text(encoding="utf-8") == wanted):
        writers = protocol_writers(demo)
        for name in PROTOCOLS:
            writer, kwargs = writers[name]
            getattr(protocols, writer)(world, root / name, progress=False, **kwargs)
        stamp.write_text(wanted, encoding="utf-8")
    return [f"{name}={root / path}" for name, path in PROTOCOLS.items()]


def save_cohort_grid(path: Path, world: SyntheticFaceWorld, cohorts: int = 2, members: int = 4, samples: int = 2):
    """A PNG of the first test cohorts: one row per cohort, ``members`` × ``samples`` faces side by side
    (with ``cohort_size`` 1 the "cohorts" are single identities, each row ``members`` strangers)."""
    step = max(world.cohort_size, members)
    identity = torch.tensor([int(world.identities("test", cohorts * step)[c * step + m])
                             for c in range(cohorts) for m in range(members) for _ in range(samples)])
    faces = world.render(identity, torch.arange(len(identity))).images        # (N, 3, S, S) uint8
    side = world.size
    grid = faces.view(cohorts, members * samples, 3, side, side).permute(0, 3, 1, 4, 2)
    Image.fromarray(grid.reshape(cohorts * side, members * samples * side, 3).numpy()).save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/shortcut_floors"))
    parser.add_argument("--settings", nargs="+", choices=sorted(SETTINGS), default=list(SETTINGS))
    parser.add_argument("--test-identities", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--difficulty", type=float, default=0.3)
    parser.add_argument("--image-size", type=int, default=64)
    args = parser.parse_args()
    demo = DemoSettings(seed=args.seed, difficulty=args.difficulty, test_identities=args.test_identities,
                        image_size=args.image_size)
    header = ("| setting | world keywords | mean colour LFW | mean colour CFP-FP | untrained LFW | untrained CFP-FP "
              "| minutes |")
    table, lines = {}, [header, "|---|---|---|---|---|---|---|"]
    for name in args.settings:
        started = time.perf_counter()
        world = SyntheticFaceWorld(seed=demo.seed, size=112, nuisance=Nuisance(difficulty=demo.difficulty),
                                   **SETTINGS[name])
        specs = render(args.out / name, world, demo)
        save_cohort_grid(args.out / name / "cohorts.png", world)
        floors = shortcut_floors(specs, demo.image_size, seed=demo.seed)
        table[name] = {"world": SETTINGS[name],
                       **{floor: {r.name: r.value for r in results} for floor, results in floors.items()}}
        values = [f"{100 * r.value:.1f}" for results in floors.values() for r in results]
        minutes = (time.perf_counter() - started) / 60
        lines.append(f"| {name} | {SETTINGS[name] or '-'} | " + " | ".join(values) + f" | {minutes:.1f} |")
        print(lines[-1], flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "floors.json").write_text(json.dumps(table, indent=2), encoding="utf-8")
    (args.out / "floors.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
