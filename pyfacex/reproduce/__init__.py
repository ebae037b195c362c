"""Reproductions: each paper's headline table rerun on the synthetic face world, with seeds,
confidence intervals and a verdict per claim (``pyfacex reproduce PAPER``).

- :mod:`.spec`: the declarative experiment spec (world, evaluations, metrics, variants, claims);
- :mod:`.specs`: the registry of specs, one module per paper (:func:`list_specs`, :func:`get_spec`);
- :mod:`.runner`: renders the world once, evaluates its shortcut floors, trains and evaluates every
  (variant, seed) cell, resumable, then publishes the results;
- :mod:`.pilot`: the baseline alone on candidate worlds, to choose the world before the methods run;
- :mod:`.results` (``results.json``, ``results.md``), :mod:`.plots` (PNG), :mod:`.record` (command,
  commit, machine);
- :mod:`.stats`: mean, std, Student-t CI, paired differences and the verdict rule.
"""
from .pilot import run_pilot
from .runner import run_spec
from .spec import Claim, Evaluation, ExperimentSpec, Metric, Protocol, SpecError, Stage, Variant, World
from .specs import get_spec, list_specs
from .stats import VERDICTS

__all__ = ["run_spec", "run_pilot", "Claim", "Evaluation", "ExperimentSpec", "Metric", "Protocol", "SpecError", "Stage",
           "Variant", "World", "get_spec", "list_specs", "VERDICTS"]
