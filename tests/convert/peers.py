"""The peers' model code, restated for tests: files laid out exactly as insightface and AdaFace write them.

We cannot ship insightface's or AdaFace's code, so this module restates, in our own code, the
module structure and naming of their published networks, with every width a parameter so that the
tests run tiny networks:

- :class:`ArcfaceIResNet`: insightface ``recognition/arcface_torch/backbones/iresnet.py``: stem
  ``conv1``/``bn1``/``prelu``, ``layer1..4`` of ``IBasicBlock`` (``bn1``, ``conv1``, ``bn2``,
  ``prelu``, ``conv2`` with the stride, ``bn3``, ``downsample`` = Sequential(1×1 conv, BN) where the
  stride or width changes), ``bn2``, ``dropout``, ``fc``, ``features`` (BatchNorm1d, weight fixed at 1).
  ``bn_eps`` 2e-5 stands in for the mxnet-era networks (fresnet's BatchNorm eps).
- :class:`AdaFaceIR`: AdaFace ``net.py`` ``Backbone`` in ``ir`` / ``ir_se`` mode: ``input_layer``
  (conv, BN, PReLU), ``body`` of ``BasicBlockIR`` (``shortcut_layer`` = MaxPool2d(1, stride) when the
  width is kept, else Sequential(1×1 conv, BN); ``res_layer`` = BN, conv, BN, PReLU, conv with the
  stride, BN [, ``se_block``]), ``output_layer`` = BN2d, Dropout, Flatten, Linear, BatchNorm1d(affine=False);
  ``forward`` returns (embedding / norm, norm) and reads BGR.

and the writers: arcface_torch's ``torch.save(backbone.state_dict())`` (and its training checkpoint
``checkpoint_gpu_0.pt``), ``torch2onnx.py``'s export (TorchScript exporter, opset 11, input ``data``,
batch dimension ``None``), an mxnet-style graph that normalises raw pixels itself, and a PyTorch
Lightning 1.8 checkpoint as AdaFace's training writes it.
"""
from __future__ import annotations

import argparse
import collections
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

STAGE_LAYERS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 14, 3), 100: (3, 13, 30, 3)}
TINY = {"widths": (4, 8, 12, 16), "num_features": 8, "input_size": 32}


# ------------------------------------------------------------------ insightface arcface_torch

class ArcfaceBlock(nn.Module):
    """arcface_torch's IBasicBlock."""

    def __init__(self, inplanes: int, planes: int, stride: int, downsample: nn.Module | None, eps: float):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes, eps=eps)
        self.conv1 = nn.Conv2d(inplanes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, eps=eps)
        self.prelu = nn.PReLU(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes, eps=eps)
        self.downsample = downsample

    def forward(self, x):
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return out + (x if self.downsample is None else self.downsample(x))


class ArcfaceIResNet(nn.Module):
    """arcface_torch's IResNet (see the module docstring); RGB input (x/255 − 0.5)/0.5."""

    def __init__(self, layers, widths=(64, 128, 256, 512), num_features=512, input_size=112, bn_eps=1e-5):
        super().__init__()
        side = -(-input_size // 16)
        self.conv1 = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0], eps=bn_eps)
        self.prelu = nn.PReLU(widths[0])
        inplanes = widths[0]
        for index, (blocks, planes) in enumerate(zip(layers, widths), start=1):
            downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, 2, bias=False),
                                       nn.BatchNorm2d(planes, eps=bn_eps))
            stage = [ArcfaceBlock(inplanes, planes, 2, downsample, bn_eps)]
            stage += [ArcfaceBlock(planes, planes, 1, None, bn_eps) for _ in range(blocks - 1)]
            setattr(self, f"layer{index}", nn.Sequential(*stage))
            inplanes = planes
        self.bn2 = nn.BatchNorm2d(inplanes, eps=bn_eps)
        self.dropout = nn.Dropout(p=0.0)
        self.fc = nn.Linear(inplanes * side * side, num_features)
        self.features = nn.BatchNorm1d(num_features, eps=bn_eps)
        nn.init.constant_(self.features.weight, 1.0)
        self.features.weight.requires_grad = False

    def forward(self, x):
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.features(self.fc(self.dropout(torch.flatten(self.bn2(x), 1))))


# ------------------------------------------------------------------ AdaFace

class AdaFaceSE(nn.Module):
    """AdaFace's SEModule."""

    def __init__(self, channels: int, reduction: int):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, channels // reduction, 1, padding=0, bias=False)
        self.relu = nn.ReLU()
        self.fc2 = nn.Conv2d(channels // reduction, channels, 1, padding=0, bias=False)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x):
        return x * self.sigmoid(self.fc2(self.relu(self.fc1(self.avg_pool(x)))))


class AdaFaceBlock(nn.Module):
    """AdaFace's BasicBlockIR (BasicBlockIRSE with ``se``)."""

    def __init__(self, in_channel: int, depth: int, stride: int, se: bool = False):
        super().__init__()
        if in_channel == depth:
            self.shortcut_layer = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(nn.Conv2d(in_channel, depth, (1, 1), stride, bias=False),
                                                nn.BatchNorm2d(depth))
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(in_channel), nn.Conv2d(in_channel, depth, (3, 3), (1, 1), 1, bias=False),
            nn.BatchNorm2d(depth), nn.PReLU(depth), nn.Conv2d(depth, depth, (3, 3), stride, 1, bias=False),
            nn.BatchNorm2d(depth))
        if se:
            self.res_layer.add_module("se_block", AdaFaceSE(depth, 16))

    def forward(self, x):
        return self.res_layer(x) + self.shortcut_layer(x)


class AdaFaceFlatten(nn.Module):
    def forward(self, x):
        return x.view(x.size(0), -1)


class AdaFaceIR(nn.Module):
    """AdaFace's Backbone (see the module docstring); BGR input (x/255 − 0.5)/0.5."""

    def __init__(self, layers, widths=(64, 128, 256, 512), num_features=512, input_size=112, se=False):
        super().__init__()
        side = -(-input_size // 16)
        self.input_layer = nn.Sequential(nn.Conv2d(3, widths[0], (3, 3), 1, 1, bias=False),
                                         nn.BatchNorm2d(widths[0]), nn.PReLU(widths[0]))
        units, in_channel = [], widths[0]
        for blocks, depth in zip(layers, widths):
            units += [(in_channel, depth, 2)] + [(depth, depth, 1)] * (blocks - 1)
            in_channel = depth
        self.body = nn.Sequential(*[AdaFaceBlock(i, d, s, se) for i, d, s in units])
        self.output_layer = nn.Sequential(nn.BatchNorm2d(widths[3]), nn.Dropout(0.4), AdaFaceFlatten(),
                                          nn.Linear(widths[3] * side * side, num_features),
                                          nn.BatchNorm1d(num_features, affine=False))

    def forward(self, x):
        x = self.input_layer(x)
        for module in self.body:
            x = module(x)
        x = self.output_layer(x)
        norm = torch.norm(x, 2, 1, True)
        return torch.div(x, norm), norm


# ------------------------------------------------------------------ trained-looking weights

def randomise(module: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights and BatchNorm statistics (as after training), in eval mode; returns ``module``.

    Convolutions get std 1/√fan_in so that activations keep their scale through tens of blocks.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) / m.weight[0].numel() ** 0.5)
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
            elif isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
                m.num_batches_tracked.fill_(1234)
                if m.affine:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
                    if m.weight.requires_grad:   # arcface_torch's features keeps its weight at 1
                        m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
            elif isinstance(m, nn.PReLU):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) * 0.4)
    return module.eval()


def faces(batch: int = 3, size: int = 32, seed: int = 1) -> torch.Tensor:
    """RGB faces normalised as insightface and pyfacex feed them, (B, 3, size, size) in [-1, 1]."""
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


# ------------------------------------------------------------------ the peers' files

def save_arcface_backbone(model: ArcfaceIResNet, path: Path, form: str = "backbone") -> Path:
    """arcface_torch's files: ``backbone`` = ``torch.save(backbone.module.state_dict(), "model.pt")``;
    ``ddp`` = the state_dict of the DistributedDataParallel wrapper (``module.`` prefix);
    ``checkpoint`` = ``checkpoint_gpu_<rank>.pt`` of resumable training."""
    state = model.state_dict()
    if form == "ddp":
        state = {f"module.{k}": v for k, v in state.items()}
    elif form == "checkpoint":
        state = {"epoch": 3, "global_step": 4000, "state_dict_backbone": state,
                 "state_dict_softmax_fc": {"weight_activated": torch.randn(10, 8)},
                 "state_optimizer": {"state": {}, "param_groups": [{"lr": 0.1, "params": [0, 1]}]},
                 "state_lr_scheduler": {"last_epoch": 3, "base_lrs": [0.1]}}
    torch.save(state, path)
    return path


def export_arcface_onnx(model: ArcfaceIResNet, path: Path, input_size: int = 32, dynamic_batch: bool = True,
                        fold: bool = True) -> Path:
    """``torch2onnx.py``: TorchScript exporter in eval mode, opset 11, input ``data``, then the batch
    dimension renamed ``None`` (dynamic; kept at 1 without ``dynamic_batch``). Conv + BatchNorm
    pairs come out folded, as in the published files (kept apart with ``fold=False``: no constant
    folding)."""
    import onnx

    legacy_onnx_export(model, path, faces(1, input_size), fold)
    if dynamic_batch:
        graph_model = onnx.load(str(path))
        graph_model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "None"
        onnx.save(graph_model, str(path))
    return path


def legacy_onnx_export(model: nn.Module, path: Path, x: torch.Tensor, fold: bool = True) -> Path:
    """torch2onnx.py's call: the TorchScript exporter (which torch now deprecates, hence the silenced
    warnings), eval mode, opset 11, input ``data``, initialisers not listed as inputs."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(model.eval(), (x,), str(path), input_names=["data"], keep_initializers_as_inputs=False,
                          opset_version=11, dynamo=False, do_constant_folding=fold)
    return path


def add_mxnet_preprocessing(path: Path, mean: float = 127.5, scale: float = 0.0078125) -> Path:
    """Make the graph at ``path`` take raw pixels as insightface's mxnet-era models do: ``data`` →
    Sub(mean) → Mul(scale) → the former input (``_minusscalar0``, ``_mulscalar0``)."""
    import onnx
    from onnx import helper, numpy_helper

    graph_model = onnx.load(str(path))
    graph = graph_model.graph
    image = graph.input[0].name
    for node in graph.node:
        node.input[:] = ["_mulscalar0" if name == image else name for name in node.input]
    graph.initializer.extend([numpy_helper.from_array(np.array(mean, dtype=np.float32), "_minus_mean"),
                              numpy_helper.from_array(np.array(scale, dtype=np.float32), "_mul_scale")])
    prefix = [helper.make_node("Sub", [image, "_minus_mean"], ["_minusscalar0"], name="_minusscalar0"),
              helper.make_node("Mul", ["_minusscalar0", "_mul_scale"], ["_mulscalar0"], name="_mulscalar0")]
    nodes = prefix + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(graph_model)
    onnx.save(graph_model, str(path))
    return path


class NotCalled:
    """An object whose unpickling would call :func:`record_call`: a loader that runs a file's code calls it."""

    calls: list = []

    def __reduce__(self):
        return (record_call, ("unpickled",))


def record_call(what: str):
    NotCalled.calls.append(what)
    return what


def save_adaface_ckpt(model: AdaFaceIR, path: Path, arch: str = "ir_50", classes: int = 10,
                      odd_metadata: bool = False) -> Path:
    """A PyTorch Lightning 1.8 checkpoint of AdaFace's ``Trainer`` (``train_val.py``): the network
    under ``model.``, the AdaFace head under ``head.``, and the loops', callbacks', optimiser's and
    scheduler's states. ``odd_metadata`` adds what the restricted unpickler refuses (an
    ``argparse.Namespace``, a numpy scalar and an object that would run code when unpickled)."""
    state = collections.OrderedDict((f"model.{k}", v) for k, v in model.state_dict().items())
    embedding = model.output_layer[3].out_features
    state.update({"head.kernel": torch.randn(embedding, classes), "head.t": torch.zeros(1),
                  "head.batch_mean": torch.ones(1) * 20, "head.batch_std": torch.ones(1) * 100})
    hyper = {"arch": arch, "head": "adaface", "m": 0.4, "h": 0.333, "s": 64.0, "t_alpha": 0.01,
             "lr": 0.1, "lr_milestones": "12,20,24", "start_from_model_statedict": ""}
    checkpoint = {
        "epoch": 25, "global_step": 123456, "pytorch-lightning_version": "1.8.6", "state_dict": state,
        "loops": {"fit_loop": {"state_dict": {}, "epoch_progress": {"total": {"ready": 26, "completed": 25}}}},
        "callbacks": {"ModelCheckpoint{'monitor': 'val_acc', 'mode': 'max'}": {
            "best_model_score": torch.tensor(0.97), "best_model_path": "experiments/epoch=24.ckpt",
            "best_k_models": {"experiments/epoch=24.ckpt": torch.tensor(0.97)}}},
        "optimizer_states": [{"state": {}, "param_groups": [{"lr": 0.001, "momentum": 0.9, "params": [0, 1]}]}],
        "lr_schedulers": [{"milestones": collections.Counter({12: 1, 20: 1, 24: 1}), "gamma": 0.1,
                           "base_lrs": [0.1], "last_epoch": 25, "_step_count": 26}],
        "hparams_name": "kwargs", "hyper_parameters": hyper,
    }
    if odd_metadata:
        hyper.update(args=argparse.Namespace(arch=arch, epochs=26), best=np.float64(0.97), hook=NotCalled())
    torch.save(checkpoint, path)
    return path
