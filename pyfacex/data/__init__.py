"""Data: the formats users hold (insightface RecordIO, verification .bin, image folders), set and
template sampling, face-recognition transforms, and a synthetic face world (:mod:`pyfacex.data.synthetic`).

Images are RGB uint8 tensors (3, H, W), batches (B, 3, H, W).
"""
from .codec import DecodeError, decode_image, encode_jpeg, encode_png
from .folder import IMAGE_EXTENSIONS, ImageFolderDataset
from .landmarks import LandmarkTable, align_face, read_landmarks_csv
from .pack import pack_folder, unpack_record_dataset
from .ragged import (
    RaggedBatchSampler,
    RaggedSetDataset,
    chunk_frames,
    collate_ragged,
    resample_frames,
    sets_from_labels,
)
from .record_dataset import RecordDataset
from .record_writer import RecordDatasetWriter, write_record_dataset
from .recordio import IRHeader, RecordIOError, RecordReader, RecordWriter, pack_record, read_index, unpack_record
from .samplers import SetSampler, collate_sets
from .verification_bin import UnsafePickleError, VerificationBinError, read_verification_bin, write_verification_bin

__all__ = [
    "DecodeError", "decode_image", "encode_jpeg", "encode_png",
    "IMAGE_EXTENSIONS", "ImageFolderDataset", "LandmarkTable", "align_face", "read_landmarks_csv",
    "RecordDataset", "RecordDatasetWriter", "write_record_dataset", "pack_folder", "unpack_record_dataset",
    "IRHeader", "RecordIOError", "RecordReader", "RecordWriter", "pack_record", "read_index", "unpack_record",
    "UnsafePickleError", "VerificationBinError", "read_verification_bin", "write_verification_bin",
    "SetSampler", "collate_sets",
    "RaggedBatchSampler", "RaggedSetDataset", "chunk_frames", "collate_ragged", "resample_frames", "sets_from_labels",
]
