"""``fanface``: FAN-Face's ablation (Yang, Bulat, Tzimiropoulos, "FAN-Face: a Simple Orthogonal
Improvement to Deep Face Recognition", AAAI 2020: Tab. 1's AS1-AS4 rows against ArcFace, Tab. 6's LFW)
on frontal-to-profile verification of look-alike faces.

The mechanism: a frozen landmark network (FAN) gives the recognition network (FRN) its landmark heatmaps,
stacked with the image (eq. 1, "H2"), and its hourglass features, added to the FRN's stage outputs
through integration layers (eq. 2, Fig. 3), so that the FRN knows pose and landmark correspondence when
it matches a profile to a frontal face (Sec. 1). The world therefore puts pose into training (yaw up to
90 degrees) and identity into local detail (look-alike cohorts), and the claim is measured on
frontal-to-profile pairs.

Stage ``fan`` (per seed): a FAN of 2 hourglass stacks (Sec. 3.1), width 32, trained by the landmarks
trainer on the rendered training faces and their ground-truth 68 landmarks, at the 64-pixel side it is
shown by FAN-Face (heatmaps 16 x 16, Gaussians of 1.5 heatmap pixels; Adam 3e-3, cosine, 6 epochs of
200 steps of 32 faces, flips). Its NME (inter-ocular, all 68 points and the visible ones) on 40 held-out
faces of other identities of the same world, rendered in the same framing, is reported in the Stages
table (0.11 in a trial at seed 0; profiles inflate it, their inter-ocular distance being small). The paper's
FAN is pre-trained elsewhere and frozen; here it is frozen too, and every row of a seed uses that seed's.

Rows (Tab. 1, in its order), every one on the same FRN, trained alike (ArcFace s = 64, m = 0.5 with the
straight-through gradient of docs/reproductions/margin-gradient.md, SGD):
ArcFace (the baseline: the FRN alone); H2 (AS1: the 51 internal heatmaps of hourglass 2 stacked with the
image); H2,1-1,BL,h2l-2 (AS2: H2 and, at each stage end, the high-to-low features of hourglass 2 through
the Basic Layer; the paper's best, Sec. 6); H2,1-1,AL,h2l-2 and H2,1-1,SL,h2l-2 (AS3: the Advanced and
Simple Layers instead of BL, the registered 1-1 BL model with its ``variant`` replaced, as the paper
replaces the layer); H2,1M,BL,h2l-2 (AS4: 1-many, every block of a stage). Integration layers at
``mix_width`` 4, the reading of Sec. 3.5's 40K-110K extra parameters; γ starts at 1 (1-1) and 1/2 (1-M).
Columns: CFP-FP-like accuracy (frontal vs profile, 60-90 degrees) and LFW-like accuracy (both images at
the world's poses). Paper numbers: only Tab. 6's LFW (ResNet-34 trained on CASIA: ArcFace 99.40,
H2,1-1,BL,h2l-2 99.52) sits in a column of ours; Tab. 1 reports IJB-B TAR at FAR 1e-4 (ArcFace 0.859, H2
0.864, BL 0.876, AL 0.873, SL 0.857, 1-M 0.874; 1e-5 in each row's note). Claims: the paper's best
variant beats ArcFace on CFP-FP-like (the issue's claim: FAN-Face helps on profile pairs) and on LFW-like
(Tab. 6). The other rows are the ablation (Tab. 1's orderings: BL > AL > SL, 1-1 >= 1-M, H2 > ArcFace),
reported without claims.

World: look-alike cohorts (20 identities sharing colour and head shape, cohort_jitter 0.3,
local_variety 1.5), nuisance difficulty 0.3 with yaw up to 90 degrees (|yaw| = 90·u², 18 % of the
training faces beyond 60), rendered at 112 px. Training: 200 identities × 32 images, chosen by the pilot
of the baseline alone from 400 × 16 (provisional: CFP-FP 73.4, LFW 66.7), 200 × 32 (79.8, 74.1) and
400 × 16 at difficulty 0.2 (80.6, 72.6), floors 61-63 (CFP-FP) and 53-60 (LFW): the one that moves the
baseline from the floors without changing the test world. Tests (disjoint identities): CFP-FP-like, 300
people × 3 frontal + 2 profile, 10 folds of 90 same and 90 different pairs; LFW-like, 200 people × 4,
10 folds of 60 + 60 pairs, its impostors look-alikes of one cohort.

Scaled down (a 2-core CPU): the FRN ResNet-34 at 112 px -> an iResNet with two blocks per stage (so that
1-M differs from 1-1), widths 16-128, 128-d, at 56 px (112 / 2); the FAN (256 channels at 256 px) ->
width 32 at 64 px (256 / 4, the heatmaps 16 x 16), trained on the 6,400 rendered faces instead of a
landmark benchmark; VGGFace2's 1 M images -> 6,400 rendered; training -> 2 epochs of 100 steps of 64
(quick: 1 epoch, the FAN 2 epochs); IJB-B -> the two pair protocols above. Measured on this CPU with one
thread (CPU time per step of 64, 20 steps): ArcFace 0.37 s, H2 0.67 s, BL 0.73 s, AL 1.03 s, SL 0.82 s,
1-M 0.91 s (the 54-channel stem and the integration layers make a FAN-Face row 2-3 x the baseline); the
FAN stage 36 s per epoch; evaluating a FAN-Face row 25-28 s, the baseline 7 s. Per seed ~21 min (FAN
stage 3.6, rows 15, evaluations and floors 2.5): full run (3 seeds) ~64 min, --quick ~12 min, with a core
to itself (two threads beside another busy process are several times slower than one).
"""
from ..spec import Claim, Evaluation, ExperimentSpec, Metric, Protocol, Stage, Variant, World
from .common import ARCFACE_HEAD

IMAGE_SIZE = 56
"""The faces the FRN sees (rendered at 112, resized): the paper's 112 halved."""
FAN_SIZE = 64
"""The side the FAN is trained at and sees in FAN-Face (``fan_size``): the paper's 256 quartered, a
multiple of 4·2^depth (64 for depth 4)."""

FRN = {"layers": [2, 2, 2, 2], "widths": [16, 32, 64, 128], "input_size": IMAGE_SIZE, "num_features": 128}
"""The recognition network (the paper's ResNet-34), the baseline's and every FAN-Face row's: two blocks per
stage, so that 1-M (every block of a stage) differs from 1-1 (the stage's end)."""

FAN = {"num_stacks": 2, "width": 32}
"""The landmark network: 2 hourglass stacks (Sec. 3.1), depth 4 (features at 16, 8, 4, 2 px at 64)."""

DIFFICULTY = 0.3
MAX_YAW = 90.0
"""The training set's largest yaw: nuisance yaw = MAX_YAW / DIFFICULTY (|yaw| = 90·u²)."""

CFP_IDENTITIES, LFW_IDENTITIES = 300, 200

_FAN_STAGE = {
    "trainer": "landmarks",
    "model": {"name": "fan", "kwargs": FAN},
    "landmarks": {"sigma": 1.5},
    "data": {"train": "$train", "image_size": FAN_SIZE, "batch_size": 32, "num_workers": 0, "augment": ["flip"]},
    "optim": {"name": "adam", "lr": 3.0e-3, "weight_decay": 0.0},
    "schedule": {"kind": "cosine", "warmup_epochs": 0},
    "epochs": 6,
    "device": "cpu",
    "log_every": 50,
}

# Sec. 4: ArcFace, SGD with momentum 0.9 and weight decay 5e-4, flips; the rate and schedule are the
# synthetic recipes' (the paper's follow insightface's code)
_RECIPE = {
    "head": ARCFACE_HEAD,
    "data": {"batch_size": 64, "image_size": IMAGE_SIZE, "num_workers": 0, "augment": ["flip"]},
    "optim": {"name": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 5.0e-4},
    "schedule": {"kind": "cosine", "warmup_epochs": 0.5},
    "epochs": 2,
    "device": "cpu",
    "log_every": 25,
}


def _fanface(model: str, variant: str) -> dict:
    """The recipe of a FAN-Face row: the registered ``model`` built as Tab. 1's ``variant`` on the FRN,
    with the stage's FAN (model kwargs are replaced whole, so each row repeats them)."""
    return {"trainer": "fanface",
            "model": {"name": model, "kwargs": {"variant": variant, "fan_weights": "$stage:fan", "frn_kwargs": FRN,
                                                "fan_size": FAN_SIZE}}}


def _tab_1(tar_1e5: float, tar_1e4: float) -> str:
    return f"Tab. 1 (IJB-B, VGGFace2 1 M): TAR {tar_1e5:.3f} at FAR 1e-5, {tar_1e4:.3f} at 1e-4"


CFP_FP, LFW = "CFP-FP", "LFW"
BEST = "H2_1-1_BL_h2l-2"
"""The paper's best variant, its FAN-Face of Sec. 6 (Tab. 2-6)."""

SPEC = ExperimentSpec(
    name="fanface",
    paper="FAN-Face: a Simple Orthogonal Improvement to Deep Face Recognition (AAAI 2020), Tab. 1 and Tab. 6",
    description=__doc__.split("\n\n", 1)[1].strip(),
    world=World(
        identities=200, per_identity=32, seed=0, size=112, difficulty=DIFFICULTY,
        nuisance={"yaw": MAX_YAW / DIFFICULTY},
        options={"cohort_size": 20, "cohort_jitter": 0.3, "local_variety": 1.5},
        protocols={
            "cfp-fp": Protocol("write_cfp_fp_like", {"folds": 10, "identities_per_fold": CFP_IDENTITIES // 10,
                                                     "pairs_per_fold": 3 * CFP_IDENTITIES // 10,
                                                     "frontal_per_identity": 3, "profile_per_identity": 2}),
            "lfw": Protocol("write_lfw_like", {"folds": 10, "identities_per_fold": LFW_IDENTITIES // 10,
                                               "pairs_per_fold": 3 * LFW_IDENTITIES // 10, "images_per_identity": 4}),
        }),
    # the protocol folders (every image embedded once), not their .bin files (both images of every pair)
    evaluations=(Evaluation("cfp-fp", "cfp-fp"), Evaluation("lfw", "lfw")),
    metrics=(Metric(CFP_FP, "cfp-fp", "accuracy"), Metric(LFW, "lfw", "accuracy")),
    recipe=_RECIPE,
    stages=(Stage("fan", _FAN_STAGE, quick={"epochs": 2}),),
    variants=(
        Variant("ArcFace", {"trainer": "classification", "model": {"name": "iresnet34", "kwargs": FRN}},
                paper={LFW: 99.40},
                note=f"the FRN alone with ArcFace; {_tab_1(0.747, 0.859)}; Tab. 6 LFW (ResNet-34, CASIA)"),
        Variant("H2", _fanface("fanface_r34_h2", "H2"),
                note=f"AS1: the 51 internal heatmaps of hourglass 2 stacked with the image (eq. 1); "
                     f"{_tab_1(0.750, 0.864)}"),
        Variant(BEST, _fanface("fanface_r34_h2_11_bl_h2l2", "H2,1-1,BL,h2l-2"), paper={LFW: 99.52},
                note=f"AS2: H2 + hourglass 2's high-to-low features at each stage end through the Basic Layer; "
                     f"the paper's best; {_tab_1(0.772, 0.876)}; Tab. 6 LFW (ResNet-34, CASIA)"),
        Variant("H2_1-1_AL_h2l-2", _fanface("fanface_r34_h2_11_bl_h2l2", "H2,1-1,AL,h2l-2"),
                note=f"AS3: the Advanced Layer (bottleneck) instead of BL; {_tab_1(0.766, 0.873)}"),
        Variant("H2_1-1_SL_h2l-2", _fanface("fanface_r34_h2_11_bl_h2l2", "H2,1-1,SL,h2l-2"),
                note=f"AS3: the Simple Layer (addition after AdaIN) instead of BL; {_tab_1(0.739, 0.857)}"),
        Variant("H2_1-M_BL_h2l-2", _fanface("fanface_r34_h2_1m_bl_h2l2", "H2,1M,BL,h2l-2"),
                note=f"AS4: 1-many, the FAN level into every block of its stage, each with its own γ; "
                     f"{_tab_1(0.761, 0.874)}"),
    ),
    claims=(
        Claim(BEST, "ArcFace", CFP_FP,
              note="the issue's claim, FAN-Face beats the baseline on profile pairs: landmarks give the FRN pose and "
                   "correspondence (Sec. 1); the paper shows it on IJB-B (Tab. 1: +1.7 TAR at FAR 1e-4, +2.5 at "
                   "1e-5), no CFP-FP number"),
        Claim(BEST, "ArcFace", LFW, note="Tab. 6: 99.52 vs 99.40 on LFW (ResNet-34, CASIA)"),
    ),
    seeds=3,
    quick_seeds=1,
    quick={"epochs": 1},
    floor_network={"layers": FRN["layers"], "widths": FRN["widths"], "embedding_size": FRN["num_features"]},
    # the pilot's candidates as changes of the chosen world (ids-200x32); each candidate's world is the one
    # the pilot ran (`pyfacex reproduce fanface --pilot` reruns it from the cache)
    pilot_worlds={
        "provisional": {"identities": 400, "per_identity": 16},
        "ids-200x32": {},
        "difficulty-0.2": {"identities": 400, "per_identity": 16, "difficulty": 0.2,
                           "nuisance": {"yaw": MAX_YAW / 0.2}},
    },
)
