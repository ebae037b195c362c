"""A synthetic face world: procedural faces, deterministic by seed, so every capability of the
library runs and is testable with no download.

>>> import torch
>>> from pyfacex.data.synthetic import SyntheticFaceWorld
>>> world = SyntheticFaceWorld(seed=0, size=112)
>>> batch = world.render(world.identities("train", 4), torch.zeros(4, dtype=torch.int64))
>>> batch.images.shape, batch.landmarks.shape
(torch.Size([4, 3, 112, 112]), torch.Size([4, 68, 2]))
"""
from .nuisance import FACTORS, OCCLUDERS, Nuisance
from .render import FRAMINGS, Framing
from .world import TEST_IDENTITY_OFFSET, FaceBatch, SyntheticFaceWorld

__all__ = ["SyntheticFaceWorld", "FaceBatch", "Nuisance", "FACTORS", "OCCLUDERS", "Framing", "FRAMINGS",
           "TEST_IDENTITY_OFFSET"]
