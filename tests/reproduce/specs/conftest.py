"""Shared by the spec tests: the trainers the runner creates, and the specs' protocols shrunk to a few
people so that a whole spec runs end to end in seconds."""
from __future__ import annotations

import pytest

from pyfacex.reproduce import Protocol
from pyfacex.reproduce import runner as runner_module

# The tiny sizes of each protocol writer, over the spec's own keyword arguments.
_TINY_PAIRS = {"folds": 2, "identities_per_fold": 3, "pairs_per_fold": 3}
_TINY = {
    "write_lfw_like": {**_TINY_PAIRS, "images_per_identity": 2},
    "write_cfp_fp_like": {**_TINY_PAIRS, "frontal_per_identity": 2, "profile_per_identity": 1},
    "write_tinyface_like": {"identities": 3, "probes_per_identity": 1, "gallery_per_identity": 1,
                            "distractor_identities": 2, "distractors_per_identity": 1},
}


@pytest.fixture
def trainings(monkeypatch):
    """The trainers the runner creates, in order (``trainer.config`` is the cell's config)."""
    trainers = []
    create = runner_module.create_trainer

    def recording(config):
        trainers.append(create(config))
        return trainers[-1]

    monkeypatch.setattr(runner_module, "create_trainer", recording)
    return trainers


@pytest.fixture
def tiny_protocols():
    """A function: ``protocols`` (name -> Protocol) with the pair and identification writers cut to a few
    people (other writers as they are)."""
    def shrink(protocols: dict[str, Protocol]) -> dict[str, Protocol]:
        return {name: Protocol(p.writer, {**p.kwargs, **_TINY.get(p.writer, {})}) for name, p in protocols.items()}

    return shrink
