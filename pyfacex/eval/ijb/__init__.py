"""IJB-A/B/C template protocols: readers of the real meta files, template features, 1:1 and 1:N.

- :mod:`.readers`: ``*_face_tid_mid.txt``, ``*_name_5pts_score.txt``, ``*_template_pair_label.txt``,
  the 1:N gallery/probe CSVs, IJB-A's split CSVs (formats in the module docstring);
- :mod:`.templates`: :func:`template_features`, insightface's media pooling;
- :mod:`.protocols`: :func:`score_pairs` and :func:`verify_templates` (1:1, chunked),
  :func:`identify_templates` (1:N, each gallery separately, averaged);
- :mod:`.evaluate`: :func:`evaluate_ijb`, the whole pipeline from a release directory (each loose
  crop aligned by its five points as insightface does, then media pooling, or a set function per
  template: :func:`template_set_features`);
- :mod:`.ijba`: :func:`evaluate_ijba`, IJB-A's 1:1 protocol over its splits (images aligned by their
  annotated eyes and nose; TAR@FAR mean ± std).

Example on precomputed image features (N, d) of the images of ``ijbc_face_tid_mid.txt`` (computed
on the crops aligned by ``ijbc_name_5pts_score.txt``, e.g. with :func:`pyfacex.data.align_face`)::

    from pyfacex.eval import ijb
    listing = ijb.read_face_tid_mid("IJBC/meta/ijbc_face_tid_mid.txt")
    points = ijb.read_name_5pts_score("IJBC/meta/ijbc_name_5pts_score.txt")
    ids, feats = ijb.template_features(features, listing.template_ids, listing.media_ids, scores=points.scores)
    result = ijb.verify_templates(ids, feats, ijb.read_template_pairs("IJBC/meta/ijbc_template_pair_label.txt"))
    print(result.table())
"""
from .evaluate import IJBResult, evaluate_ijb, template_set_features
from .ijba import IJBA_FARS, IJBAResult, evaluate_ijba, ijba_layout
from .protocols import (
    FARS,
    TAR_CONVENTIONS,
    OpenSetResult,
    TemplateVerificationResult,
    identify_templates,
    score_pairs,
    verify_templates,
)
from .readers import (
    FaceTidMid,
    FivePoints,
    IJBAMetadata,
    IJBASplit,
    TemplatePairs,
    TemplateSubjects,
    read_face_tid_mid,
    read_ijba_comparisons,
    read_ijba_metadata,
    read_ijba_split,
    read_name_5pts_score,
    read_template_pairs,
    read_template_subjects,
)
from .templates import template_features

__all__ = ["FARS", "IJBA_FARS", "TAR_CONVENTIONS", "FaceTidMid", "FivePoints", "IJBAMetadata", "IJBAResult",
           "IJBASplit", "IJBResult", "evaluate_ijba", "ijba_layout", "template_set_features",
           "OpenSetResult", "TemplatePairs", "TemplateSubjects", "TemplateVerificationResult", "evaluate_ijb",
           "identify_templates", "read_face_tid_mid", "read_ijba_comparisons", "read_ijba_metadata",
           "read_ijba_split", "read_name_5pts_score", "read_template_pairs", "read_template_subjects",
           "score_pairs", "template_features", "verify_templates"]
