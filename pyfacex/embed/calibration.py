"""A decision threshold on the cosine, calibrated at a target FAR on a verification run, kept in the
model file.

``pyfacex eval MODEL PROTOCOL --calibrate FAR`` runs the protocol, takes its pair scores (the cosines
of the flip-summed, L2-normalised embeddings) and stores under the model file's ``"calibration"``
key the lowest threshold whose false accept rate on the protocol's impostor pairs does not exceed
FAR (a pair is accepted when its cosine >= the threshold, :mod:`pyfacex.eval.metrics`' convention),
with what it came from::

    {"threshold": 0.312, "far": 1e-4, "measured_far": 9.6e-5, "tar": 0.953,
     "genuine": 15658, "impostors": 8000000, "protocol": "ijbc=ijbc:/data/IJB_release",
     "kind": "ijbc", "flip": True, "set_function": "mean", "pyfacex": "0.1.0"}

A FAR is only measurable with at least 1/FAR impostor pairs; asking for less is an error. Template
protocols (IJB-A/B/C, YTF) score templates, not single photos: their threshold is recorded with its
kind so a reader knows what it holds.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import torch

from ..eval.metrics import roc
from ..eval.protocols import resolve_spec
from ..train.checkpoint import MODEL_FORMAT, atomic_save, safe_load

__all__ = ["CALIBRATION_KEY", "PAIR_SCORE_KINDS", "calibrate_threshold", "choose_protocol", "store_calibration",
           "calibrate_model", "check_far", "describe", "how_to_calibrate"]

CALIBRATION_KEY = "calibration"
"""The model file's key holding the calibration record."""

PAIR_SCORE_KINDS = ("bin", "lfw", "cfp-fp", "cfp-ff", "ijba", "ijbb", "ijbc", "ytf")
"""Protocol kinds whose results carry pair scores (every kind but TinyFace)."""


def check_far(far, name: str = "far") -> float:
    """``far`` as a float in (0, 1), or a ValueError naming ``name``."""
    if isinstance(far, bool) or not isinstance(far, (int, float)) or not 0 < far < 1 or not math.isfinite(far):
        raise ValueError(f"{name}: expected a false accept rate in (0, 1), e.g. 1e-4, got {far!r}")
    return float(far)


def how_to_calibrate(model: str | os.PathLike) -> str:
    """The sentence telling how to store a threshold in ``model``."""
    return (f"run `pyfacex eval {model} PROTOCOL --calibrate 1e-4` on a verification protocol (LFW, CFP, a .bin, "
            f"IJB-C for FARs down to 1e-5) to store the threshold at that FAR in the model file")


def describe(record: dict) -> str:
    """One line saying where a calibration record's threshold comes from."""
    return (f"FAR {record['far']:g} on {record['protocol']}: measured FAR {record['measured_far']:.3g}, "
            f"TAR {record['tar']:.4f} ({record['impostors']} impostor, {record['genuine']} genuine pairs)")


def calibrate_threshold(scores, is_genuine, far: float) -> dict:
    """The lowest threshold with FAR(threshold) <= ``far`` on these pairs.

    Args:
        scores: (M,) similarities (higher: more alike); is_genuine: (M,) bool.
        far: target false accept rate in (0, 1).
    Returns:
        ``{"threshold", "far", "measured_far", "tar", "genuine", "impostors"}``: plain floats and ints.
    Raises:
        ValueError naming ``far`` when there are fewer than 1/far impostor pairs (the FAR cannot be
        measured), and :func:`pyfacex.eval.roc`'s errors for bad scores or one-sided labels.
    """
    far = check_far(far)
    curve = roc(scores, is_genuine)
    if curve.impostors * far < 1:
        raise ValueError(f"far: {far:g} cannot be measured on {curve.impostors} impostor pairs (it needs at least "
                         f"{math.ceil(1 / far)}); calibrate at a FAR >= {1 / curve.impostors:.2g} or on a larger "
                         f"protocol (IJB-C has millions of impostor pairs)")
    # Points come in order of decreasing threshold and non-decreasing FAR: the last one within the
    # target accepts the most genuine pairs. The first point (threshold +inf, FAR 0) always qualifies,
    # but a target >= 1/impostors admits at least the finite threshold just above the top impostor.
    index = int((curve.far <= far).nonzero().max())
    return {"threshold": float(curve.thresholds[index]), "far": far, "measured_far": float(curve.far[index]),
            "tar": float(curve.tar[index]), "genuine": int(curve.genuine), "impostors": int(curve.impostors)}


def choose_protocol(specs: list[str], on: str | None = None) -> str:
    """The name of the protocol to calibrate on, chosen before anything runs.

    Args:
        specs: the protocol specs of the run (``[name=][kind:]path[@option...]``).
        on: a protocol name (``--calibrate-on``), or None: the only one with pair scores.
    Raises:
        ValueError naming ``--calibrate-on`` when ``on`` is no protocol of the run or one without pair
        scores (TinyFace), or when ``on`` is None and not exactly one protocol has pair scores.
    """
    kinds = {}
    for spec in specs:
        name, kind, _, _ = resolve_spec(spec)
        kinds[name] = kind
    scored = [name for name, kind in kinds.items() if kind in PAIR_SCORE_KINDS]
    if on is not None:
        if on not in kinds:
            raise ValueError(f"--calibrate-on: {on!r} is none of this run's protocols ({', '.join(kinds)})")
        if on not in scored:
            raise ValueError(f"--calibrate-on: {on!r} is a {kinds[on]} protocol, which has no verification pairs; "
                             f"choose one of {', '.join(scored) or 'bin, lfw, cfp, ijb*, ytf protocols'}")
        return on
    if len(scored) != 1:
        found = f"{len(scored)} have ({', '.join(scored)})" if scored else "none has (TinyFace ranks, it pairs nothing)"
        raise ValueError(f"--calibrate: needs one protocol with verification pairs, and {found}; name it with "
                         f"--calibrate-on NAME")
    return scored[0]


def store_calibration(model: str | os.PathLike, record: dict) -> Path:
    """Write ``record`` under the model file's :data:`CALIBRATION_KEY` (atomically; the weights and
    every other field unchanged), replacing an earlier calibration.

    Raises:
        FileNotFoundError / ValueError naming ``model`` when it is no pyfacex model file.
    """
    model = Path(model)
    document = safe_load(model)
    if not isinstance(document, dict) or document.get("format") != MODEL_FORMAT:
        raise ValueError(f"--calibrate: {model} is not a pyfacex model file (format {MODEL_FORMAT}); only those "
                         f"can store a threshold (convert other weights with pyfacex convert first)")
    document[CALIBRATION_KEY] = dict(record)
    return atomic_save(document, model)


def calibrate_model(model: str | os.PathLike, results, on: str, far: float, *, flip: bool,
                    specs: list[str] | None = None, set_function: str | None = None) -> dict:
    """Calibrate on one protocol's :class:`~pyfacex.eval.ProtocolResult` and store the record in ``model``.

    Args:
        model: the model file the protocols ran on.
        results: the run's results; ``on`` names the one to calibrate on (:func:`choose_protocol`),
            which must carry ``scores`` and ``is_genuine``.
        far: the target FAR.
        flip: whether the run added the mirrored faces' embeddings (the threshold holds for that setting).
        specs: the specs as run, in the order of ``results`` (recorded with their ``@options``);
            default: ``name=kind:path`` of the result.
        set_function: the set function template and set protocols pooled with, recorded for them.
    Returns:
        the stored record (module docstring).
    """
    from .. import __version__

    chosen = [i for i, r in enumerate(results) if r.name == on]
    if not chosen:
        raise ValueError(f"--calibrate-on: {on!r} is none of the protocols run ({', '.join(r.name for r in results)})")
    result = results[chosen[0]]
    spec = specs[chosen[0]] if specs is not None else None
    if result.scores is None or result.is_genuine is None:
        raise ValueError(f"--calibrate: protocol {result.name!r} ({result.kind}) has no verification pairs")
    record = calibrate_threshold(torch.as_tensor(result.scores), torch.as_tensor(result.is_genuine), far)
    record.update(protocol=spec or f"{result.name}={result.kind}:{result.path}", kind=result.kind, flip=bool(flip),
                  pyfacex=__version__)
    if result.kind in ("ijba", "ijbb", "ijbc", "ytf"):
        record["set_function"] = str(result.details.get("set_function", set_function))
    if "aligned" in result.details:   # whether the protocol's faces were aligned by its landmarks
        record["aligned"] = bool(result.details["aligned"])
    store_calibration(model, record)
    return record
