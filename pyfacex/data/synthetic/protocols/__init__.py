"""Synthetic benchmark protocols written in the real benchmarks' own file formats.

One writer per benchmark, each drawing people from ``world.identities("test", n)`` of a
:class:`~pyfacex.data.synthetic.SyntheticFaceWorld`, rendering in batches to JPEG files and writing
the benchmark's protocol files exactly as the real release lays them out, so that one set of readers
serves the real files users hold and these:

=====================  ===============================================================================
writer                 layout (see each module's docstring for the format and its sources)
=====================  ===============================================================================
write_lfw_like         ``lfw/<name>/<name>_<nnnn>.jpg``, ``pairs.txt``, ``lfw.bin``
write_cfp_fp_like      ``Data/Images/<id>/{frontal,profile}/<nn>.jpg``, ``Protocol/Pair_list_{F,P}.txt``,
                       ``Protocol/Split/{FP,FF}/<nn>/{same,diff}.txt``, ``cfp_fp.bin``, ``cfp_ff.bin``
write_tinyface_like    ``Testing_Set/{Probe,Gallery_Match,Gallery_Distractor}/``, ``*_img_ID_pairs.mat``
write_ijb_like         ``IJBC/loose_crop/``, ``IJBC/meta/ijbc_*`` (insightface's IJB files and 1:N CSVs)
write_ijba_like        ``images/{img,frame}/``, ``IJB-A_11_sets/split<n>/{train,verify_metadata}_<n>.csv``,
                       ``verify_comparisons_<n>.csv`` (IJB-A's 1:1 splits)
write_ytf_like         ``frame_images_DB/<name>/<v>/<v>.<f>.jpg``, ``<name>.labeled_faces.txt``, ``splits.txt``
=====================  ===============================================================================

Every writer takes ``(world, out_dir, ..., seed=0, progress=True, quality=95)``: ``seed`` (>= 0)
with the world's seed fixes every byte written, ``progress`` shows a tqdm bar, ``quality`` is the
JPEG quality of the stored images; each returns ``Path(out_dir)``. Every writer also leaves
``pyfacex_ground_truth.json`` at the protocol's root: for every stored image
its world identity, sample (or video and frame), pose and nuisance values, and how the protocol's
names or labels map to world identities. Sizes are parameters whose defaults are the real protocol's
structure (LFW's 10 × 300 pairs, CFP's 10 × 350 pairs over 50 people per fold, ...) or a scaled-down
version of it where rendering the real size would take long (TinyFace, IJB, IJB-A, YTF); everything written
is fixed by (world seed, ``seed``).
"""
from ._common import GROUND_TRUTH
from .cfp import write_cfp_fp_like
from .ijb import write_ijb_like
from .ijba import write_ijba_like
from .lfw import write_lfw_like
from .tinyface import write_tinyface_like
from .ytf import write_ytf_like

__all__ = ["GROUND_TRUTH", "write_cfp_fp_like", "write_ijb_like", "write_ijba_like", "write_lfw_like",
           "write_tinyface_like", "write_ytf_like"]
