"""The README's and configs/README.md's tables list what the code registers: the ops, models, heads,
trainers, commands and recipes. A table that drifts from the code fails here."""
from __future__ import annotations

import re
from pathlib import Path

import pyfacex.nn as pnn
import pyfacex.ops as ops
from pyfacex.cli import build_parser
from pyfacex.models import list_models
from pyfacex.nn import list_heads
from pyfacex.train.registry import TRAINERS

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
IDENTIFIER = re.compile(r"`([A-Za-z_][A-Za-z0-9_]*)`")


def table(text: str, header: str) -> list[list[str]]:
    """The body rows (cells stripped) of the markdown table whose header row starts with ``header``."""
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith(header)]
    assert len(starts) == 1, f"expected one table headed {header!r}, found {len(starts)}"
    rows = []
    for line in lines[starts[0] + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip())[1:-1]])
    return rows


def test_the_op_table_lists_every_public_op():
    cells = " ".join(row[1] for row in table(README, "| family | ops"))
    named = set(IDENTIFIER.findall(cells))
    assert set(ops.__all__) - named == set(), "ops missing from the README's op table"
    # besides pyfacex.ops and pyfacex.nn names, the table names an argument and a method
    assert named - set(ops.__all__) - set(pnn.__all__) == {"offsets", "attention_map"}


def test_the_model_table_lists_every_registered_model():
    cells = " ".join(row[1] for row in table(README, "| family | variants |"))
    assert {n for n in IDENTIFIER.findall(cells) if n.islower()} == set(list_models())


def test_the_trainer_table_lists_every_trainer_and_head():
    rows = table(README, "| trainer (`trainer:`) |")
    assert sorted(row[0].strip("`") for row in rows) == sorted(TRAINERS)
    classification = next(row[1] for row in rows if row[0] == "`classification`")
    listed = set(re.findall(r"`([a-z_]+)`", classification))
    assert listed == set(list_heads()), "the classification row must name every registered head kind"


def test_the_command_table_lists_every_command():
    rows = table(README, "| command | what it does |")
    documented = [re.match(r"`pyfacex ([a-z]+)", row[0]).group(1) for row in rows]
    commands = next(a for a in build_parser()._actions if a.dest == "command").choices
    assert sorted(documented) == sorted(commands)


def test_the_recipe_table_lists_every_recipe_on_disk():
    text = (ROOT / "configs" / "README.md").read_text(encoding="utf-8")
    listed = [row[0].strip("`") for row in table(text, "| recipe | paper |")]
    on_disk = sorted(p.name for p in (ROOT / "configs").iterdir() if p.suffix in (".yaml", ".yml", ".py"))
    assert sorted(listed) == on_disk and len(set(listed)) == len(listed)


def test_table_parsing_keeps_escaped_bars_in_a_cell():
    rows = table("| a | b |\n|---|---|\n| `x\\|y` | z |\n\nafter", "| a | b |")
    assert rows == [["`x\\|y`", "z"]]
