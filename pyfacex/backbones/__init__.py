"""Backbones: insightface-compatible iResNets (and IR-SE), face-alignment-compatible FAN, and the
Face Aggregation Network's set U-Net and discriminator."""
from .aggregator import Discriminator, FaceAggregator
from .fan import FAN, FANOutput, decode_landmarks, truncate_stacks
from .iresnet import IResNet, iresnet18, iresnet34, iresnet50, iresnet100, iresnet200, irse50

__all__ = ["Discriminator", "FaceAggregator", "FAN", "FANOutput", "decode_landmarks", "truncate_stacks",
           "IResNet", "iresnet18", "iresnet34", "iresnet50", "iresnet100", "iresnet200", "irse50"]
