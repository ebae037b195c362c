"""Verification protocols (LFW, CFP-FP, AgeDB-30, CALFW, CPLFW): insightface's k-fold accuracy with
the threshold chosen on the training folds, VAL@FAR, and ROC metrics, from embeddings, ``.bin``
files or the benchmarks' own pair lists.

- :mod:`.protocol`: :func:`verify_pairs` on the embeddings of P pairs;
- :mod:`.embedding`: :func:`embed` (flip-sum), :func:`evaluate_bin`, :func:`evaluate_pair_list` (and their
  embedding halves :func:`~.embedding.embed_bin`, :func:`~.embedding.embed_pair_list`);
- :mod:`.pair_lists`: :func:`read_lfw_pairs`, :func:`read_cfp_pairs`.
"""
from .embedding import embed, evaluate_bin, evaluate_pair_list
from .pair_lists import PairList, read_cfp_pairs, read_lfw_pairs
from .protocol import TAR_FARS, VerificationResult, kfold_test_sets, verify_pairs

__all__ = [
    "embed", "evaluate_bin", "evaluate_pair_list",
    "PairList", "read_cfp_pairs", "read_lfw_pairs",
    "TAR_FARS", "VerificationResult", "kfold_test_sets", "verify_pairs",
]
