"""Wrappers around an evaluated model that every protocol goes through unchanged: mixed precision and
a feature memo.

Every protocol reaches the network by two calls only: ``model(x)`` on a float (B, 3, H, W) batch
(image embedders, the ``mean`` set function) and ``set_model.set_representation(x, offsets)`` (a
model's own set function). Wrapping those two calls gives every protocol, present and future, the
same behaviour without touching its loops.

- :class:`AutocastEmbedder` runs both under ``torch.autocast`` (bfloat16 on the CPU, float16 on
  CUDA) and hands back float32, so scoring (normalisation, cosines, ROC) stays in full precision.
- :class:`MemoizedEmbedder` remembers each call's output under a hash of its input's bytes (dtype,
  shape and values; the offsets too for sets). Replayed on the same model file and settings, a
  protocol runs no forward pass: scoring again (other folds, another FAR to calibrate at) costs
  reading and aligning the images only. Keying by content rather than by position makes a replay
  correct by construction: an image that changed on disk, another batch size or alignment gives
  other inputs, which miss and are computed.
"""
from __future__ import annotations

import hashlib

import torch
from torch import nn

from .sets import has_set_function

__all__ = ["AMP_DTYPES", "AutocastEmbedder", "MemoizedEmbedder", "input_key"]

AMP_DTYPES = {"cpu": torch.bfloat16, "cuda": torch.float16}
"""The autocast dtype per device type: float16 needs loss-free range on GPUs only, bfloat16 is what
CPUs accelerate (AVX512-BF16, AMX)."""


class AutocastEmbedder(nn.Module):
    """``model`` run under ``torch.autocast`` (:data:`AMP_DTYPES` for its device), returning float32.

    Shapes: ``forward`` (B, 3, H, W) -> (B, d); when ``model`` has ``set_representation(x, offsets)``
    (N, 3, H, W), (b + 1,) -> (b, E), so does the wrapper (else it has none, and protocols take the
    mean set function as for the bare model).
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        if has_set_function(model):
            self.set_representation = self._set_representation

    @staticmethod
    def _autocast(x: torch.Tensor):
        if x.device.type not in AMP_DTYPES:
            raise ValueError(f"amp: autocast runs on {', '.join(AMP_DTYPES)}, the input is on {x.device}")
        return torch.autocast(x.device.type, dtype=AMP_DTYPES[x.device.type])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with self._autocast(x):
            out = self.model(x)
        return out.float()

    def _set_representation(self, x: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        with self._autocast(x):
            out = self.model.set_representation(x, offsets)
        return out.float()


def input_key(*tensors: torch.Tensor) -> str:
    """A hex digest of the tensors' dtypes, shapes and bytes (BLAKE2b-128): equal only for equal inputs."""
    digest = hashlib.blake2b(digest_size=16)
    for tensor in tensors:
        tensor = tensor.detach().to("cpu").contiguous()
        digest.update(f"{tensor.dtype}{tuple(tensor.shape)};".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


class MemoizedEmbedder(nn.Module):
    """``model`` whose outputs are remembered by input content (module docstring).

    Args:
        model: the embedder (``forward`` (B, 3, H, W) -> (B, d)) and possibly a set model
            (``set_representation`` (N, 3, H, W), (b + 1,) -> (b, E)).
        entries: earlier outputs, ``{"forward:<key>" or "set:<key>": tensor}`` (e.g. loaded from a
            cache file); the wrapper adds to this dict, so the caller can save it afterwards.
    Attributes:
        entries: the memo; hits, misses: calls answered from it and calls computed.
    Outputs come back on the input's device, as the model would return them.
    """

    def __init__(self, model: nn.Module, entries: dict[str, torch.Tensor] | None = None):
        super().__init__()
        self.model = model
        self.entries = {} if entries is None else entries
        self.hits = self.misses = 0
        if has_set_function(model):
            self.set_representation = self._set_representation

    def _recall(self, key: str, compute, device: torch.device) -> torch.Tensor:
        found = self.entries.get(key)
        if found is not None:
            self.hits += 1
            return found.to(device)
        self.misses += 1
        out = compute()
        self.entries[key] = out.detach().to("cpu").clone()
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._recall("forward:" + input_key(x), lambda: self.model(x), x.device)

    def _set_representation(self, x: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        return self._recall("set:" + input_key(x, offsets), lambda: self.model.set_representation(x, offsets),
                            x.device)
