"""From one's own photos to embeddings, scores and searches.

- :class:`FaceEmbedder` (also ``pyfacex.FaceEmbedder``): a model file as an embedder:
  ``.embed(images, landmarks)`` (uint8 or [0, 1] float batches; aligned by five or 68 landmarks, or
  taken as aligned crops), ``.similarity(a, b)`` (cosines), ``.search(queries, gallery, k)`` (exact
  top-k in chunks), ``.decide(scores)`` at the threshold stored in the model file;
- :func:`list_images` (a folder, a list file or a CSV with landmarks), :func:`attach_landmarks` (a sidecar),
  :func:`embed_files` (DataLoader workers, EXIF orientation, bad files named or skipped) and the
  ``.npz`` output (:func:`save_embeddings`, :func:`load_embeddings`);
- :mod:`.calibration`: the cosine threshold at a target FAR (``pyfacex eval --calibrate FAR``).

Embeddings are flip-summed and L2-normalised exactly as ``pyfacex eval`` computes them, so a
threshold calibrated there holds here. The command line: ``pyfacex embed`` and ``pyfacex compare``.
"""
from .calibration import calibrate_threshold, store_calibration
from .embedder import FaceEmbedder
from .faces import prepare_faces
from .files import BadImageError, embed_files
from .inputs import ImageList, attach_landmarks, list_images
from .output import FileEmbeddings, load_embeddings, save_embeddings
from .search import top_k

__all__ = ["FaceEmbedder", "ImageList", "list_images", "attach_landmarks", "embed_files",
           "BadImageError", "FileEmbeddings", "save_embeddings", "load_embeddings", "top_k", "prepare_faces",
           "calibrate_threshold", "store_calibration"]
