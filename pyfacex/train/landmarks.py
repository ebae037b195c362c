"""FAN landmark training on synthetic faces: heatmap targets, NME, the FAN files FAN-Face loads.

The data are faces of the synthetic world in its "landmark" framing (the whole head, as FAN's
256×256 crops) with their 68 iBUG landmarks (``ground_truth.npz`` of
:func:`pyfacex.data.synthetic.export.write_training_set`): rendered once from ``landmarks`` (seed,
difficulty, identities × per_identity) into ``output/landmark_data/``, or read from ``data.train``
when it names such a set. A held-out split of test identities (disjoint from the training ones)
gives the NME.

Coordinates: the world's landmarks are pixel x, y with the top-left pixel's centre at (0, 0);
:func:`pyfacex.backbones.fan.decode_landmarks` returns heatmap coordinates with the top-left heatmap
pixel's centre at (0.5, 0.5). With stride s = image size / heatmap size, a landmark x sits at
u = (x + 0.5)/s in heatmap coordinates, i.e. at pixel index u − 0.5 (:func:`heatmap_targets`), and a
decoded u goes back to x = u·s − 0.5 (:func:`decode_to_image`).

Choices (face-alignment trains its 2D-FAN this way; the paper's FAN is pre-trained, FAN-Face Sec. 3.1):

* loss: the mean over stacks of the MSE between each stack's heatmaps and the same Gaussian targets
  (intermediate supervision);
* every landmark is supervised, visible or not: a 2D-FAN predicts self-occluded and occluded points
  too (their 2D projection), as face-alignment's 2DFAN4 does; points off the image get the part of
  their Gaussian that falls on the heatmap (nothing when far off). NME is reported over all 68
  points (``nme``) and over the visible ones (``nme_visible``);
* flips (``data.augment: [flip]``) mirror the image and the landmarks and relabel the points with
  :data:`IBUG_MIRROR` (left eye ↔ right eye, ...); the other augmentations are photometric or keep
  pixels in place (``low_quality``'s crop blacks out the rest), so landmarks are unchanged by them.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from ..backbones.fan import FAN, decode_landmarks
from ..data import RecordDataset
from . import checkpoint as ckpt
from .data import GlobalBatchSampler, build_augment, resize_faces
from .distributed import barrier
from .trainer import Trainer

__all__ = ["LandmarkTrainer", "LandmarkDataset", "LandmarkCollate", "IBUG_MIRROR", "OUTER_EYE_CORNERS",
           "heatmap_targets", "decode_to_image", "flip_landmarks", "normalised_mean_error", "load_fan",
           "fan_kwargs_of"]

IBUG_MIRROR: tuple[int, ...] = (
    *range(16, -1, -1),                      # jaw line 0-16 reversed
    26, 25, 24, 23, 22, 21, 20, 19, 18, 17,  # eyebrows 17-21 <-> 26-22
    27, 28, 29, 30,                          # nose bridge: on the axis
    35, 34, 33, 32, 31,                      # nostrils 31-35 reversed
    45, 44, 43, 42, 47, 46,                  # right eye 36-41 <-> left eye 45, 44, 43, 42, 47, 46
    39, 38, 37, 36, 41, 40,                  # left eye 42-47 <-> right eye
    54, 53, 52, 51, 50, 49, 48,              # outer lips, upper 48-54 reversed
    59, 58, 57, 56, 55,                      # outer lips, lower 55-59 reversed
    64, 63, 62, 61, 60,                      # inner lips, upper 60-64 reversed
    67, 66, 65,                              # inner lips, lower 65-67 reversed
)
"""iBUG-68 index of each point's mirror image: after a horizontal flip point i is labelled IBUG_MIRROR[i]."""

OUTER_EYE_CORNERS = (36, 45)
"""The points whose distance normalises the NME (inter-ocular, 300W's convention)."""


def heatmap_targets(landmarks: torch.Tensor, image_size: int, heatmap_size: int, sigma: float) -> torch.Tensor:
    """Gaussian heatmaps exp(−d²/2σ²) (peak 1) centred on each landmark at heatmap resolution.

    Args:
        landmarks: (B, N, 2) image pixel x, y (top-left pixel centre (0, 0)).
        image_size: side of the square image; heatmap_size: side of the heatmaps (image_size / 4 for FAN).
        sigma: the Gaussian's standard deviation in heatmap pixels (``landmarks.sigma``).

    Returns:
        (B, N, heatmap_size, heatmap_size) float32 in [0, 1]; the round trip through
        :func:`decode_to_image` returns each on-map landmark within a quarter heatmap pixel.
    """
    if landmarks.dim() != 3 or landmarks.shape[-1] != 2:
        raise ValueError(f"landmarks must be (B, N, 2) pixel x, y, got {tuple(landmarks.shape)}")
    if sigma <= 0:
        raise ValueError(f"landmarks.sigma must be > 0 (heatmap pixels), got {sigma}")
    stride = image_size / heatmap_size
    centres = (landmarks.float() + 0.5) / stride - 0.5  # heatmap pixel index (pixel centres at integers)
    grid = torch.arange(heatmap_size, dtype=torch.float32, device=landmarks.device)
    gx = torch.exp(-(grid - centres[..., 0:1]) ** 2 / (2 * sigma ** 2))  # (B, N, W)
    gy = torch.exp(-(grid - centres[..., 1:2]) ** 2 / (2 * sigma ** 2))  # (B, N, H)
    return gy.unsqueeze(-1) * gx.unsqueeze(-2)


def decode_to_image(heatmaps: torch.Tensor, image_size: int) -> torch.Tensor:
    """Landmarks (B, N, 2) in image pixels (top-left pixel centre (0, 0)) from heatmaps (B, N, h, w),
    through :func:`pyfacex.backbones.fan.decode_landmarks` (argmax + quarter-pixel shift)."""
    points = decode_landmarks(heatmaps.float())
    return points * (image_size / heatmaps.shape[-1]) - 0.5


def flip_landmarks(landmarks: torch.Tensor, width: int) -> torch.Tensor:
    """The landmarks of the horizontally flipped image: x → width − 1 − x, points relabelled by
    :data:`IBUG_MIRROR`. Shapes: (..., 68, 2) → (..., 68, 2)."""
    flipped = landmarks[..., list(IBUG_MIRROR), :].clone()
    flipped[..., 0] = width - 1 - flipped[..., 0]
    return flipped


def normalised_mean_error(predicted: torch.Tensor, target: torch.Tensor, visible: torch.Tensor | None = None
                          ) -> torch.Tensor:
    """Per image, the mean point-to-point distance over the inter-ocular distance (outer eye corners 36
    and 45 of the target): (B,). With ``visible`` (B, N) bool, the mean over the visible points only
    (images with none give NaN). Shapes: predicted, target (B, 68, 2) in the same pixel units."""
    distances = (predicted.float() - target.float()).norm(dim=-1)
    a, b = OUTER_EYE_CORNERS
    interocular = (target[:, a] - target[:, b]).float().norm(dim=-1).clamp_min(1e-6)
    if visible is None:
        return distances.mean(dim=1) / interocular
    weights = visible.float()
    return (distances * weights).sum(dim=1) / weights.sum(dim=1) / interocular


# ------------------------------------------------------------------ data

class LandmarkDataset(Dataset):
    """A written synthetic set (``train.rec`` + ``ground_truth.npz``) as landmark training items.

    ``dataset[i]`` is ``(image, (landmarks, visible))``: uint8 (3, S, S), float32 (68, 2) pixel x, y,
    bool (68,) — the (image, label) items the pyfacex loaders tag with augmentation seeds.
    """

    def __init__(self, root: str | Path):
        root = Path(root)
        truth = root / "ground_truth.npz"
        if not (root / "train.rec").is_file() or not truth.is_file():
            raise FileNotFoundError(f"data.train: {root} must hold train.rec/train.idx and ground_truth.npz "
                                    "(pyfacex.data.synthetic.export.write_training_set with formats=('record',))")
        self.images = RecordDataset(root)
        with np.load(truth) as arrays:
            self.landmarks = torch.from_numpy(arrays["landmarks"].astype(np.float32))
            self.visible = torch.from_numpy(arrays["visible"].astype(bool))
        if len(self.landmarks) != len(self.images) or self.landmarks.shape[1:] != (68, 2):
            raise ValueError(f"{truth}: expected landmarks ({len(self.images)}, 68, 2) for the {len(self.images)} "
                             f"images of train.rec, got {tuple(self.landmarks.shape)}")
        self.num_classes = self.images.num_classes

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        image, _ = self.images[index]
        return image, (self.landmarks[index], self.visible[index])


class LandmarkCollate:
    """Collates (image, (landmarks, visible), seed) items into uint8 images (B, 3, S, S), landmarks
    (B, 68, 2) and visible (B, 68): resized to ``image_size`` with the landmarks scaled, flipped
    with probability 1/2 each (``flip``, the landmarks mirrored by :func:`flip_landmarks`), then
    ``augment(images, generator)``; the draws come from a generator seeded with the batch's seed."""

    def __init__(self, image_size: int, flip: bool = False, augment=None):
        self.image_size, self.flip, self.augment = image_size, flip, augment

    def __call__(self, items):
        images = torch.stack([image for image, _, _ in items])
        landmarks = torch.stack([target[0] for _, target, _ in items]).float()
        visible = torch.stack([target[1] for _, target, _ in items])
        size = images.shape[-1]
        images = resize_faces(images, self.image_size)
        if size != self.image_size:
            landmarks = (landmarks + 0.5) * (self.image_size / size) - 0.5  # pixel centres stay centres
        generator = torch.Generator().manual_seed(items[0][2])
        if self.flip:
            chosen = torch.rand(len(items), generator=generator) < 0.5
            images = torch.where(chosen[:, None, None, None], images.flip(-1), images)
            landmarks = torch.where(chosen[:, None, None], flip_landmarks(landmarks, self.image_size), landmarks)
            visible = torch.where(chosen[:, None], visible[:, list(IBUG_MIRROR)], visible)
        if self.augment is not None:
            images = self.augment(images, generator)
        return images, landmarks, visible


# ------------------------------------------------------------------ FAN files

def fan_kwargs_of(fan: FAN) -> dict:
    """The plain-data keywords that rebuild ``fan``'s architecture: ``FAN(**fan_kwargs_of(fan))``."""
    return {"num_stacks": fan.num_stacks, "num_landmarks": fan.num_landmarks, "width": fan.width,
            "depth": fan.depth, "pool": fan.pool}


def load_fan(path: str | Path, what: str = "FAN weights") -> FAN:
    """A trained FAN from a pyfacex model file (the ``model.pt`` of a ``landmarks`` run, name "fan")
    or a face-alignment state_dict (2DFAN4, possibly under "state_dict"), architecture read from the
    weights (stacks, width, depth, landmarks; pooling "avg", face-alignment's current one).
    ``what`` names the config key in errors."""
    path = Path(path)
    try:
        document = ckpt.safe_load(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{what}: {path} does not exist") from None
    except Exception as error:  # torch.load's unpickling errors have many types
        raise ValueError(f"{what}: cannot read {path} as a state_dict ({error}); face-alignment's TorchScript "
                         ".zip needs torch.jit.load(path).state_dict() saved with torch.save first") from None
    if isinstance(document, dict) and document.get("format") == ckpt.MODEL_FORMAT:
        if document["name"] != "fan":
            raise ValueError(f"{what}: {path} is a pyfacex model file of {document['name']!r}, not of a FAN "
                             "(the model.pt of a `landmarks` run)")
        fan = FAN(**document["kwargs"])
        state = document["state_dict"]
    else:
        state = document.get("state_dict", document) if isinstance(document, dict) else None
        if not isinstance(state, dict) or "conv1.weight" not in state or "l0.weight" not in state:
            raise ValueError(f"{what}: {path} is neither a pyfacex FAN model file nor a FAN state_dict "
                             "(no conv1.weight / l0.weight)")
        stacks = sum(1 for key in state if key.startswith("l") and key.endswith(".weight")
                     and key[1:-len(".weight")].isdigit())
        depth = max(int(key.split(".")[1][3:]) for key in state if key.startswith("m0.b1_"))
        fan = FAN(num_stacks=stacks, num_landmarks=state["l0.weight"].shape[0],
                  width=state["conv1.weight"].shape[0] * 4, depth=depth)
    ckpt.load_state_dict_checked(fan, state, f"{what} {path}")
    return fan


# ------------------------------------------------------------------ the trainer

class LandmarkTrainer(Trainer):
    """Trains a FAN (``model.name: fan``, ``model.kwargs``: num_stacks, width, depth, pool) to regress
    the Gaussian heatmaps of the synthetic landmarks (see the module docstring); evaluates the NME
    on held-out test identities (``eval.every`` steps, 0: every epoch end, and at the end) and keeps
    the lowest as ``best_model.pt``. The model file rebuilds with ``pyfacex.train.load_model``.

    Images are ``data.image_size`` (256 for FAN's crops; any multiple of 4·2^depth) and enter the FAN
    as RGB/255 in [0, 1]. The held-out split: max(1, identities // 10) test identities ×
    min(per_identity, 2) images of the same world.
    """

    def build_data(self) -> None:
        config, data = self.config, self.config.data
        if config.model.name != "fan":
            raise ValueError(f"model.name: the landmarks trainer trains a FAN, set model.name=fan "
                             f"(got {config.model.name!r})")
        if config.eval.protocols:
            raise ValueError("eval.protocols: a FAN has no embedding to verify; the landmarks trainer evaluates "
                             "the NME on held-out synthetic identities, leave eval.protocols empty")
        if data.on_error != "raise":   # its records pair each image with its landmarks: no skip path
            raise ValueError(f"data.on_error: the landmarks trainer reads the synthetic landmark sets it renders "
                             f"and does not skip images; leave data.on_error=raise (got {data.on_error!r})")
        depth = int(config.model.kwargs.get("depth", 4))
        multiple = 4 * 2 ** depth
        if data.image_size % multiple:
            raise ValueError(f"data.image_size: a FAN of depth {depth} needs a multiple of {multiple}, got "
                             f"{data.image_size} (FAN's crops are 256×256: data.image_size=256)")
        if data.train:
            train = Path(data.train)
            world = self._world_of(train)
        else:
            world = self._world(data.image_size)
            lm = config.landmarks
            train = self._render(world, "train", lm.identities, lm.per_identity)
        info = json.loads((train / "info.json").read_text()) if (train / "info.json").is_file() else None
        identities, per_identity = ((info["num_identities"], info["per_identity"]) if info else
                                    (config.landmarks.identities, config.landmarks.per_identity))
        self.dataset = LandmarkDataset(train)
        self.test_dataset = LandmarkDataset(self._render(world, "test", max(1, identities // 10),
                                                         min(per_identity, 2)))
        self.num_classes = self.dataset.num_classes
        augment = [name for name in data.augment if name != "flip"]
        sampler = GlobalBatchSampler(len(self.dataset), data.batch_size, config.seed, self.context.rank,
                                     self.context.world_size)
        self._make_loader(sampler, LandmarkCollate(data.image_size, "flip" in data.augment, build_augment(augment)))

    def _world(self, size: int, seed: int | None = None, nuisance=None):
        from ..data.synthetic import Nuisance, SyntheticFaceWorld

        lm = self.config.landmarks
        nuisance = nuisance or Nuisance(difficulty=lm.difficulty)
        return SyntheticFaceWorld(seed=lm.seed if seed is None else seed, size=size, nuisance=nuisance,
                                  framing="landmark")

    def _world_of(self, root: Path):
        """The world that wrote ``root`` (its info.json: seed, size, nuisance, framing and look-alike
        cohorts), for test identities of the same population seen the same way; the ``landmarks``
        world at the set's size when there is no info.json (the landmark framing when info.json
        predates its ``framing`` entry)."""
        from ..data.synthetic import Nuisance, SyntheticFaceWorld
        from ..data.synthetic.render import Framing

        info_path = root / "info.json"
        if not info_path.is_file():
            return self._world(RecordDataset(root).image_size[0])
        info = json.loads(info_path.read_text())
        population = {key: info[key] for key in ("cohort_size", "cohort_jitter", "local_variety") if key in info}
        framing = Framing(**info["framing"]) if "framing" in info else "landmark"
        return SyntheticFaceWorld(seed=info["seed"], size=info["size"], nuisance=Nuisance(**info["nuisance"]),
                                  framing=framing, **population)

    def _render(self, world, split: str, identities: int, per_identity: int) -> Path:
        """The cached set ``output/landmark_data/<split>-...`` (rendered by rank 0 if missing)."""
        from ..data.synthetic.export import write_training_set

        name = (f"{split}-seed{world.seed}-d{world.nuisance.difficulty:g}-{identities}x{per_identity}-"
                f"{world.size}px")
        root = self.output / "landmark_data" / name
        if self.context.is_main and not (root / "info.json").is_file():
            # A folder without info.json is a render that was interrupted: redo it.
            write_training_set(world, root, identities, per_identity, split=split, formats=("record",),
                               overwrite=True, progress=self.config.progress)
        barrier(self.context)
        return root

    def build_modules(self) -> dict[str, nn.Module]:
        model = ckpt.build_model("fan", self.config.model.kwargs)
        if model.num_landmarks != 68:
            raise ValueError(f"model.kwargs.num_landmarks: the synthetic faces have the 68 iBUG landmarks, "
                             f"got {model.num_landmarks}")
        if self.config.model.weights:
            loaded = load_fan(self.config.model.weights, "model.weights")
            ckpt.load_state_dict_checked(model, loaded.state_dict(), f"model.weights {self.config.model.weights}",
                                         strict=self.config.model.strict)
        return {"model": model}

    def prepare(self, batch):
        """The batch on the device: uint8 images → float RGB/255 in [0, 1] (FAN's input), targets moved."""
        images, *rest = batch
        images = images.to(self.device, non_blocking=True).float().div_(255.0)
        return (images, *(t.to(self.device, non_blocking=True) for t in rest))

    def forward_loss(self, batch) -> dict[str, torch.Tensor]:
        """Mean over stacks of MSE(stack heatmaps, Gaussian targets); logs the batch NME of the last stack."""
        images, landmarks, _ = batch
        heatmaps = self.wrapped["model"](images)
        target = heatmap_targets(landmarks, images.shape[-1], heatmaps[-1].shape[-1], self.config.landmarks.sigma)
        loss = sum(F.mse_loss(h.float(), target) for h in heatmaps) / len(heatmaps)
        nme = normalised_mean_error(decode_to_image(heatmaps[-1].detach(), images.shape[-1]), landmarks).mean()
        return {"loss": loss, "nme": nme}

    # ------------------------------------------------------------------ evaluation

    best_mode = "min"
    evaluates = True  # the NME on held-out synthetic identities, on the eval.every schedule

    @torch.no_grad()
    def landmark_errors(self) -> dict[str, float]:
        """NME of the model's last stack on the held-out split: ``nme`` (all 68 points) and
        ``nme_visible`` (visible points only), means over the images."""
        model = self.modules["model"]
        was_training = model.training
        model.eval()
        size, errors, visible_errors = self.config.data.image_size, [], []
        collate = LandmarkCollate(size)
        for start in range(0, len(self.test_dataset), self.config.eval.batch_size):
            items = [(*self.test_dataset[i], 0) for i in
                     range(start, min(start + self.config.eval.batch_size, len(self.test_dataset)))]
            images, landmarks, visible = self.prepare(collate(items))
            with self.autocast():
                heatmaps = model(images)[-1]
            predicted = decode_to_image(heatmaps, size)
            errors.append(normalised_mean_error(predicted, landmarks))
            visible_errors.append(normalised_mean_error(predicted, landmarks, visible))
        model.train(was_training)
        visible_nme = torch.cat(visible_errors)
        return {"nme": float(torch.cat(errors).mean()), "nme_visible": float(visible_nme.nanmean())}

    def metrics(self) -> tuple[dict[str, float], str]:
        """:meth:`landmark_errors`; the best checkpoint is the lowest ``nme``."""
        return self.landmark_errors(), "nme"

    def export(self) -> tuple[str, dict, nn.Module]:
        """("fan", model.kwargs, the FAN): ``pyfacex.train.load_model`` rebuilds it."""
        return "fan", dict(self.config.model.kwargs), self.modules["model"]

