"""Evaluation protocols on the files users hold and on the synthetic ones alike.

- verification (LFW, CFP-FP, AgeDB, CALFW, CPLFW style): :func:`verify_pairs` (insightface's 10-fold
  protocol), :func:`embed` (flip-sum), :func:`evaluate_bin`, pair-list readers;
- :mod:`pyfacex.eval.ijb`: IJB-A/B/C readers, template pooling (media pooling or a set function per
  template), 1:1 TAR@FAR and 1:N per gallery, IJB-A's 1:1 over its splits (mean ± std);
- :func:`identification`: rank-N / CMC, mAP and open-set TPIR@FPIR; :func:`evaluate_tinyface`;
- :func:`evaluate_ytf` (the video protocol) and set-level hooks (:func:`embed_sets`, :func:`mean_pooling`,
  a model's own set function: :func:`model_set_fn`, :func:`select_set_fn`);
- :mod:`.degrade`: evaluation-time degradations (down-up sampling, motion blur on all frames but one);
- :mod:`.metrics`: ROC, AUC, EER, :func:`tar_at_far` (three conventions, tables say which);
- :mod:`.report`: results tables as text, Markdown and JSON; ROC and CMC curves as PNG;
- :func:`evaluate_protocol`: any of the above on files on disk, named by a spec
  ``[name=][kind:]path[@option...]``.
"""
from . import ijb
from .degrade import BlurAllButOne, DegradedSets, down_up_transform
from .metrics import CONVENTIONS, ROC, auc, eer, roc, roc_tar_at_far, tar_at_far
from .protocols import (
    KINDS,
    SET_KINDS,
    ProtocolResult,
    SpecOptions,
    detect_kind,
    evaluate_protocol,
    parse_spec,
    resolve_spec,
)
from .ranking import IdentificationResult, identification, identification_from_scores
from .report import ResultsTable, save_cmc_png, save_roc_png, score_metrics, tar_column
from .sets import (
    SET_FUNCTIONS,
    aggregate_then_embed,
    apply_set_fn,
    embed_sets,
    has_set_function,
    mean_pooling,
    model_set_fn,
    select_set_fn,
)
from .summary import protocol_cells, save_summary, summarize
from .tinyface import DISTRACTOR_LABEL, TINYFACE_RANKS, TinyFaceProtocol, evaluate_tinyface, read_tinyface
from .verification import (
    TAR_FARS,
    PairList,
    VerificationResult,
    embed,
    evaluate_bin,
    evaluate_pair_list,
    read_cfp_pairs,
    read_lfw_pairs,
    verify_pairs,
)
from .video import YTFProtocol, evaluate_ytf, read_ytf

__all__ = [
    "ijb",
    "IdentificationResult", "identification", "identification_from_scores",
    "CONVENTIONS", "ROC", "auc", "eer", "roc", "roc_tar_at_far", "tar_at_far",
    "ResultsTable", "save_cmc_png", "save_roc_png", "score_metrics", "tar_column",
    "SET_FUNCTIONS", "aggregate_then_embed", "apply_set_fn", "embed_sets", "has_set_function", "mean_pooling",
    "model_set_fn", "select_set_fn",
    "BlurAllButOne", "DegradedSets", "down_up_transform",
    "DISTRACTOR_LABEL", "TINYFACE_RANKS", "TinyFaceProtocol", "evaluate_tinyface", "read_tinyface",
    "TAR_FARS", "PairList", "VerificationResult", "embed", "evaluate_bin", "evaluate_pair_list",
    "read_cfp_pairs", "read_lfw_pairs", "verify_pairs",
    "YTFProtocol", "evaluate_ytf", "read_ytf",
    "KINDS", "SET_KINDS", "ProtocolResult", "SpecOptions", "detect_kind", "evaluate_protocol", "parse_spec",
    "resolve_spec",
    "protocol_cells", "save_summary", "summarize",
]
