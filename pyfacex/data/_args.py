"""Argument checks shared by the data modules: errors name the argument and say what was expected."""
from __future__ import annotations

import numpy as np
import torch


def check_int(name: str, value, minimum: int) -> int:
    """``value`` (a Python or numpy int, not a bool) as an int >= ``minimum``.

    Raises TypeError for a non-integer and ValueError below the minimum, both naming ``name``.
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value}")
    return int(value)


def label_vector(labels: object, name: str = "labels") -> np.ndarray:
    """``labels`` (a sequence, numpy array or tensor of ints) as a 1-D int64 numpy array, or a clear error."""
    if isinstance(labels, torch.Tensor):
        array = labels.detach().cpu().numpy()
    else:
        try:
            array = np.asarray(labels)
        except (TypeError, ValueError) as error:
            raise TypeError(f"{name}: expected a 1-D sequence of ints, got {type(labels).__name__}") from error
    if array.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D sequence of N ints, got shape {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"{name}: expected integer labels, got dtype {array.dtype}")
    return array.astype(np.int64, copy=False)
