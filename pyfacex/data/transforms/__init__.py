"""Face-recognition transforms.

:mod:`.functional` holds deterministic, batched ops with explicit parameters (also used by the
synthetic face renderer); :mod:`.augment` holds the random transforms built on them, including
AdaFace's low-quality augmenter (LGAF Sec. 4.1.3, QAFace Sec. 4.4) and the Face Aggregation
Network's motion blur (Sec. 4.1).
"""
from . import functional
from .augment import (
    Compose,
    LowQualityAugment,
    LowQualityParams,
    RandomDownUp,
    RandomHorizontalFlip,
    RandomMotionBlur,
    RandomOcclusion,
    sample_resized_crop_boxes,
)
from .functional import (
    add_gaussian_noise,
    adjust_photometric,
    crop_in_place,
    denormalize,
    down_up,
    gaussian_blur,
    hflip,
    jpeg_compress,
    motion_blur,
    motion_blur_kernels,
    normalize,
    occlude,
)

__all__ = [
    "functional", "Compose", "LowQualityAugment", "LowQualityParams", "RandomDownUp",
    "RandomHorizontalFlip", "RandomMotionBlur", "RandomOcclusion", "sample_resized_crop_boxes",
    "add_gaussian_noise", "adjust_photometric", "crop_in_place", "denormalize", "down_up",
    "gaussian_blur", "hflip", "jpeg_compress", "motion_blur", "motion_blur_kernels", "normalize", "occlude",
]
