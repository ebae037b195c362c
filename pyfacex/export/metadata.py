"""What an exported file records about its model, and how the loaders read it back.

Every format stores the same string properties (ONNX ``metadata_props``; TorchScript and exported
programs an extra file ``pyfacex.json``): ``pyfacex.format``, ``pyfacex.model`` (JSON of the model
file's fields: name, kwargs, image_size, and whatever else it holds), ``pyfacex.image_size``,
``pyfacex.embedding_size``, ``pyfacex.input`` (the normalisation, in words) and
``pyfacex.channel_order`` (always RGB: a BGR model gets its channel swap inside the graph).
"""
from __future__ import annotations

import json

__all__ = ["EMBEDDER_FORMAT", "EXTRA_FILE", "INPUT_DESCRIPTION", "describe", "read_description"]

EMBEDDER_FORMAT = "pyfacex.embedder/1"
EXTRA_FILE = "pyfacex.json"
INPUT_DESCRIPTION = "float32 (N, 3, S, S), RGB, (x - 127.5) / 127.5"


def describe(info: dict, embedding_size: int) -> dict[str, str]:
    """The properties of an exported embedder whose model file has the fields ``info`` (without
    its state_dict); values are strings (non-JSON field values are written with ``str``)."""
    fields = {k: v for k, v in info.items() if k != "format"}
    return {"pyfacex.format": EMBEDDER_FORMAT, "pyfacex.model": json.dumps(fields, default=str, sort_keys=True),
            "pyfacex.image_size": str(int(info["image_size"])), "pyfacex.embedding_size": str(int(embedding_size)),
            "pyfacex.input": INPUT_DESCRIPTION, "pyfacex.channel_order": "RGB"}


def read_description(properties: dict[str, str]) -> dict | None:
    """The model file's fields back from :func:`describe`'s properties, with ``image_size`` and
    ``embedding_size`` as ints; None when the properties are not pyfacex's (a file from elsewhere)."""
    if properties.get("pyfacex.format") != EMBEDDER_FORMAT:
        return None
    info = json.loads(properties.get("pyfacex.model") or "{}")
    info["image_size"] = int(properties["pyfacex.image_size"])
    info["embedding_size"] = int(properties["pyfacex.embedding_size"])
    return info
