"""insightface ONNX recognition models → a pyfacex iResNet state_dict.

insightface publishes its recognition models as ONNX graphs: arcface_torch's ``torch2onnx.py``
exports an iResNet in eval mode (``input_names=["data"]``, opset 11), and the older models were
converted from mxnet. Names of initialisers are not stable (``onnx::Conv_683``, ``683``, ...), so
the graph is read by its structure, from the input along the data flow:

- optional preprocessing: Sub / Mul / Div / Add by scalars (mxnet models take raw pixels and compute
  (x − 127.5)·0.0078125 themselves);
- stem: Conv 3×3 [→ BatchNormalization] → PRelu;
- blocks: the block input x feeds BatchNormalization (``bn1``) → Conv 3×3 [→ BN] → PRelu → Conv 3×3
  (the stride) [→ BN] → Add, and the Add's other input is x (identity) or Conv 1×1 (the stride)
  [→ BN] of x (``downsample``, which opens a stage);
- head: BatchNormalization (``bn2``) → Flatten / Reshape → Gemm, or MatMul [→ Add] → optional
  BatchNormalization (``features``) → the graph output; Identity and Dropout nodes pass through.

Exporters fold a BatchNorm that follows a conv (or ``fc``) into its weights and bias. Such a pair
becomes the conv with the folded weight and a BatchNorm that only adds the bias (weight 1, mean 0,
variance 1 − eps); a BatchNorm left unfolded keeps its own parameters, its variance shifted to
pyfacex's eps (1e-5) as mxnet's 2e-5 requires: v' = v + eps_source − 1e-5. Both compute what the
graph computes. Preprocessing equal to (x − 127.5)·s is folded into the stem convolution's
weights (its padding stays exact: the shift is pyfacex's own), so the converted network takes
pyfacex's (x/255 − 0.5)/0.5 input whatever the graph took.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

__all__ = ["OnnxBackbone", "read_onnx_backbone", "import_onnx"]

_EPS = 1e-5            # pyfacex's BatchNorm eps
_PASS_THROUGH = ("Identity", "Dropout")
_SCALAR_OPS = ("Sub", "Mul", "Div", "Add")
_PIXEL = 127.5         # pyfacex input u = (x - 127.5) / 127.5, x the pixel value


def import_onnx():
    """The ``onnx`` module, or ModuleNotFoundError saying how to install it."""
    try:
        import onnx
    except ModuleNotFoundError:
        raise ModuleNotFoundError("reading ONNX models needs the onnx package: pip install pyfacex[onnx]") from None
    return onnx


@dataclass(frozen=True)
class OnnxBackbone:
    """What :func:`read_onnx_backbone` found.

    Attributes:
        state: pyfacex iResNet state_dict (float32 tensors).
        input_name: the graph's image input; input_pixels: True when the graph normalises raw pixels
            itself (feed it x, not (x − 127.5)/127.5); input_scale: the factor folded into the stem.
        input_size: the static side of the input (None when dynamic); batch: the static batch size
            (None when dynamic).
    """

    state: dict
    input_name: str
    input_pixels: bool
    input_scale: float
    input_size: int | None
    batch: int | None


def _batchnorm_state(scale, bias, mean, var, eps: float, shift=None) -> dict[str, torch.Tensor]:
    """pyfacex BatchNorm entries computing scale·(y + shift − mean)/√(var + eps) + bias of y.

    The variance moves to pyfacex's eps; where that would make it negative (a source eps below
    1e-5 and a variance below the difference) the scale absorbs the rest, so the result is exact.
    """
    scale, bias, mean, var = (np.asarray(a, dtype=np.float64).reshape(-1) for a in (scale, bias, mean, var))
    if shift is not None:
        mean = mean - np.asarray(shift, dtype=np.float64).reshape(-1)
    new_var = np.maximum(var + eps - _EPS, 0.0)
    new_scale = scale * np.sqrt((new_var + _EPS) / (var + eps))
    as_tensor = lambda a: torch.from_numpy(a.astype(np.float32))  # noqa: E731
    return {"weight": as_tensor(new_scale), "bias": as_tensor(bias), "running_mean": as_tensor(mean),
            "running_var": as_tensor(new_var), "num_batches_tracked": torch.tensor(0)}


def _bias_only(bias) -> dict[str, torch.Tensor]:
    """BatchNorm entries that add ``bias`` and change nothing else (for a folded BatchNorm)."""
    bias = np.asarray(bias, dtype=np.float64).reshape(-1)
    ones = np.ones_like(bias)
    return _batchnorm_state(ones, bias, np.zeros_like(bias), ones, 0.0)


class _Walker:
    """The graph of an ONNX model, walked from its input (see the module docstring)."""

    def __init__(self, model, path: Path, what: str):
        onnx = import_onnx()
        self.path, self.what, self.onnx = path, what, onnx
        graph = model.graph
        self.opsets = list(model.opset_import)
        self.constants = {init.name: onnx.numpy_helper.to_array(init) for init in graph.initializer}
        self.consumers: dict[str, list] = {}
        for node in graph.node:  # topological order: a node's constant inputs are known before it
            inputs = [name for name in node.input if name]
            if node.op_type == "Constant":
                self.constants[node.output[0]] = self._constant_value(node)
            elif node.op_type == "Identity" and node.input[0] in self.constants:   # aliases of weights, common
                self.constants[node.output[0]] = self.constants[node.input[0]]
            elif inputs and all(name in self.constants for name in inputs):
                self.constants.update(zip(node.output, self._evaluate(node, inputs)))
            else:
                for name in node.input:
                    if name and name not in self.constants:
                        self.consumers.setdefault(name, []).append(node)
        self.outputs = [output.name for output in graph.output]
        images = [i for i in graph.input if i.name not in self.constants]
        if len(images) != 1:
            self.fail(f"it has {len(images)} non-constant inputs ({', '.join(i.name for i in images)}), "
                      "a recognition model has one image input")
        self.input = images[0]

    def _constant_value(self, node) -> np.ndarray:
        attribute = next((a for a in node.attribute if a.name in ("value", "value_float", "value_floats")), None)
        if attribute is None:
            self.fail(f"Constant node {node.name!r} has no tensor or float value")
        value = self.onnx.helper.get_attribute_value(attribute)
        return self.onnx.numpy_helper.to_array(value) if attribute.name == "value" else np.asarray(value)

    def _evaluate(self, node, inputs: list[str]) -> list[np.ndarray]:
        """Outputs of a node computed from constants alone (an exporter that did not fold constants
        leaves e.g. an Unsqueeze of the PReLU slopes), by onnx's reference runtime at the graph's opset."""
        from onnx.reference import ReferenceEvaluator

        helper = self.onnx.helper
        feeds = {name: self.constants[name] for name in inputs}
        graph = helper.make_graph(
            [node], "constant", [helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(value.dtype),
                                                               value.shape) for name, value in feeds.items()],
            [helper.make_value_info(name, self.onnx.TypeProto()) for name in node.output if name])
        try:
            return ReferenceEvaluator(helper.make_model(graph, opset_imports=self.opsets)).run(None, feeds)
        except Exception as error:  # noqa: BLE001 - the reference runtime raises many types
            self.fail(f"{node.op_type} {node.name!r} on constants cannot be evaluated ({error})")

    def fail(self, message: str):
        raise ValueError(f"{self.what}: {self.path} is not an insightface iResNet graph: {message}")

    def attribute(self, node, name: str, default=None):
        for attribute in node.attribute:
            if attribute.name == name:
                return self.onnx.helper.get_attribute_value(attribute)
        return default

    def const(self, node, index: int, role: str) -> np.ndarray:
        if len(node.input) <= index or node.input[index] not in self.constants:
            self.fail(f"{node.op_type} {node.name!r}: its {role} is not a constant of the graph")
        return self.constants[node.input[index]]

    def follow(self, tensor: str) -> str:
        """``tensor`` past any Identity / Dropout it feeds alone."""
        while True:
            consumers = self.consumers.get(tensor, [])
            if len(consumers) != 1 or consumers[0].op_type not in _PASS_THROUGH:
                return tensor
            tensor = consumers[0].output[0]

    def next_node(self, tensor: str, ops: tuple[str, ...], after: str, optional: bool = False):
        """The one node of type ``ops`` that ``tensor`` (past pass-throughs) feeds; None when
        ``optional`` and it feeds something else or nothing."""
        consumers = self.consumers.get(self.follow(tensor), [])
        if len(consumers) == 1 and consumers[0].op_type in ops:
            return consumers[0]
        if optional and len(consumers) <= 1:
            return None
        found = ", ".join(f"{n.op_type} {n.name!r}" for n in consumers) or "nothing"
        self.fail(f"after {after} expected one {' or '.join(ops)}, found {found}")

    # ------------------------------------------------------------ layers

    def conv(self, node, kernel: int, label: str) -> tuple[np.ndarray, np.ndarray | None, int]:
        """(weight, bias or None, stride) of a bias-optional, ungrouped, 'same'-padded Conv."""
        weight = self.const(node, 1, "weight")
        bias = self.const(node, 2, "bias") if len(node.input) > 2 and node.input[2] else None
        strides = list(self.attribute(node, "strides", [1, 1]))
        pads = list(self.attribute(node, "pads", [0, 0, 0, 0]))
        problems = []
        if weight.ndim != 4 or tuple(weight.shape[2:]) != (kernel, kernel):
            problems.append(f"kernel {tuple(weight.shape[2:])}, expected {kernel}×{kernel}")
        if self.attribute(node, "group", 1) != 1 or any(d != 1 for d in self.attribute(node, "dilations", [1, 1])):
            problems.append("grouped or dilated")
        if pads != [kernel // 2] * 4 or self.attribute(node, "auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
            problems.append(f"pads {pads}, expected {[kernel // 2] * 4}")
        if len(set(strides)) != 1 or strides[0] not in (1, 2):
            problems.append(f"strides {strides}")
        if problems:
            self.fail(f"{label} Conv {node.name!r}: " + "; ".join(problems))
        return weight, bias, strides[0]

    def batchnorm(self, node) -> dict[str, torch.Tensor]:
        if self.attribute(node, "training_mode", 0):
            self.fail(f"BatchNormalization {node.name!r} is in training mode")
        scale, bias, mean, var = (self.const(node, i, role) for i, role in
                                  enumerate(("scale", "bias", "mean", "variance"), start=1))
        return _batchnorm_state(scale, bias, mean, var, float(self.attribute(node, "epsilon", 1e-5)))

    def conv_bn(self, node, kernel: int, label: str) -> tuple[np.ndarray, dict, str, int]:
        """Conv [→ BatchNormalization]: (conv weight, BN entries, output tensor, stride)."""
        weight, bias, stride = self.conv(node, kernel, label)
        bias = np.zeros(weight.shape[0]) if bias is None else bias
        bn = self.next_node(node.output[0], ("BatchNormalization",), label, optional=True)
        if bn is None:
            return weight, _bias_only(bias), node.output[0], stride
        entries = self.batchnorm(bn)
        # BN(conv(x) + b) = BN'(conv(x)) with the running mean moved by -b
        entries["running_mean"] = entries["running_mean"] - torch.from_numpy(bias.astype(np.float32).reshape(-1))
        return weight, entries, bn.output[0], stride

    def prelu(self, node, channels: int) -> torch.Tensor:
        slope = self.const(node, 1, "slope").astype(np.float32).reshape(-1)
        if slope.size == 1:
            slope = np.full(channels, slope[0], dtype=np.float32)
        if slope.size != channels:
            self.fail(f"PRelu {node.name!r} has {slope.size} slopes for {channels} channels")
        return torch.from_numpy(slope)

    # ------------------------------------------------------------ the graph

    def preprocessing(self, tensor: str) -> tuple[str, float, float, bool]:
        """Scalar Sub/Mul/Div/Add on the input: (tensor after them, a, b, any) with the graph's
        own input v = a·x + b of what is fed, x."""
        a, b, found = 1.0, 0.0, False
        while True:
            consumers = self.consumers.get(self.follow(tensor), [])
            if len(consumers) != 1 or consumers[0].op_type not in _SCALAR_OPS:
                return self.follow(tensor), a, b, found
            node = consumers[0]
            if node.input[0] in self.constants or node.input[1] not in self.constants:
                self.fail(f"input preprocessing {node.op_type} {node.name!r} must act on the image by a constant")
            value = np.asarray(self.constants[node.input[1]], dtype=np.float64).reshape(-1)
            if value.size == 0 or not np.all(value == value[0]):
                self.fail(f"input preprocessing {node.op_type} {node.name!r} is per channel ({value.tolist()}); "
                          "only the same value for every channel can be folded")
            c = float(value[0])
            a, b = {"Sub": (a, b - c), "Add": (a, b + c), "Mul": (a * c, b * c), "Div": (a / c, b / c)}[node.op_type]
            tensor, found = node.output[0], True

    def read(self) -> tuple[dict, bool, float]:
        """(pyfacex state_dict, whether the graph takes raw pixels, the scale folded into the stem)."""
        state: dict[str, torch.Tensor] = {}
        start, a, b, pixels = self.preprocessing(self.input.name)
        scale = 1.0
        if pixels:
            # v = a·x + b with x = 127.5·u + 127.5: v = (127.5·a)·u + (127.5·a + b); the shift must vanish
            scale, shift = _PIXEL * a, _PIXEL * a + b
            if abs(shift) > 1e-6 * max(1.0, abs(scale)):
                self.fail(f"its input preprocessing computes {a:g}·x + {b:g} of the pixels x, which is not "
                          f"(x − 127.5)·s: pyfacex's (x − 127.5)/127.5 input cannot be folded into it")
        conv = self.next_node(start, ("Conv",), "the input")
        weight, entries, out, stride = self.conv_bn(conv, 3, "stem")
        if stride != 1:
            self.fail(f"stem Conv {conv.name!r} has stride {stride}, expected 1")
        state["conv1.weight"] = torch.from_numpy((weight * scale).astype(np.float32))
        state.update({f"bn1.{k}": v for k, v in entries.items()})
        prelu = self.next_node(out, ("PRelu",), "the stem")
        state["prelu.weight"] = self.prelu(prelu, weight.shape[0])
        x = prelu.output[0]

        stages: list[list[dict]] = []
        while True:
            x = self.follow(x)
            consumers = self.consumers.get(x, [])
            if len(consumers) == 1:
                break
            block = self.block(x, consumers, f"block {sum(map(len, stages))} (counting from 0 after the stem)")
            if "downsample.0.weight" in block:
                stages.append([])
            elif not stages:
                self.fail("the first block after the stem has no downsampling shortcut")
            stages[-1].append(block)
            x = block.pop("_output")
        if len(stages) != 4:
            self.fail(f"it has {len(stages)} stages (blocks with a downsampling shortcut), an iResNet has 4")
        for s, stage in enumerate(stages, start=1):
            for i, block in enumerate(stage):
                state.update({f"layer{s}.{i}.{k}": v for k, v in block.items()})
        state.update(self.head(consumers[0]))
        return state, pixels, scale

    def block(self, x: str, consumers: list, label: str) -> dict:
        """One residual block whose input ``x`` feeds ``consumers``: its entries (pyfacex names
        within the block) and, under ``_output``, the tensor it outputs."""
        norms = [n for n in consumers if n.op_type == "BatchNormalization"]
        if len(consumers) != 2 or len(norms) != 1:
            found = ", ".join(f"{n.op_type} {n.name!r}" for n in consumers) or "nothing"
            self.fail(f"a block input must feed one BatchNormalization and the shortcut, {x!r} feeds {found}")
        bn1, shortcut = norms[0], next(n for n in consumers if n is not norms[0])
        block = {f"bn1.{k}": v for k, v in self.batchnorm(bn1).items()}
        conv1 = self.next_node(bn1.output[0], ("Conv",), f"{label} bn1")
        weight, entries, out, stride = self.conv_bn(conv1, 3, f"{label} conv1")
        if stride != 1:
            self.fail(f"{label} conv1 {conv1.name!r} has stride {stride}, expected 1 (conv2 strides)")
        block["conv1.weight"] = torch.from_numpy(weight.astype(np.float32))
        block.update({f"bn2.{k}": v for k, v in entries.items()})
        prelu = self.next_node(out, ("PRelu",), f"{label} conv1")
        block["prelu.weight"] = self.prelu(prelu, weight.shape[0])
        conv2 = self.next_node(prelu.output[0], ("Conv",), f"{label} prelu")
        weight, entries, out, stride = self.conv_bn(conv2, 3, f"{label} conv2")
        block["conv2.weight"] = torch.from_numpy(weight.astype(np.float32))
        block.update({f"bn3.{k}": v for k, v in entries.items()})
        add = self.next_node(out, ("Add",), f"{label} conv2")
        if shortcut is add:
            if stride != 1:
                self.fail(f"{label} strides by {stride} but its shortcut is the identity")
            joined = self.follow(out)
        elif shortcut.op_type == "Conv":
            weight, entries, joined, ds_stride = self.conv_bn(shortcut, 1, f"{label} downsample")
            if ds_stride != stride or stride != 2:
                self.fail(f"{label}: conv2 strides by {stride}, its downsample by {ds_stride}; expected 2 and 2")
            if self.next_node(joined, ("Add",), f"{label} downsample") is not add:
                self.fail(f"{label}: its downsample does not join the residual branch")
            joined = self.follow(joined)
            block["downsample.0.weight"] = torch.from_numpy(weight.astype(np.float32))
            block.update({f"downsample.1.{k}": v for k, v in entries.items()})
        else:
            self.fail(f"{label}: its shortcut starts with {shortcut.op_type} {shortcut.name!r}, expected the "
                      "identity or a 1×1 Conv")
        if sorted(add.input) != sorted([self.follow(out), x if shortcut is add else joined]):
            self.fail(f"{label}: Add {add.name!r} does not sum the residual branch and the shortcut")
        block["_output"] = add.output[0]
        return block

    def head(self, bn2) -> dict:
        if bn2.op_type != "BatchNormalization":
            self.fail(f"after the last block expected BatchNormalization (bn2), found {bn2.op_type} {bn2.name!r}")
        state = {f"bn2.{k}": v for k, v in self.batchnorm(bn2).items()}
        flat = self.next_node(bn2.output[0], ("Flatten", "Reshape"), "bn2")
        if flat.op_type == "Flatten" and self.attribute(flat, "axis", 1) != 1:
            self.fail(f"Flatten {flat.name!r} has axis {self.attribute(flat, 'axis')}, expected 1")
        if flat.op_type == "Reshape" and self.const(flat, 1, "shape").size != 2:
            self.fail(f"Reshape {flat.name!r} does not flatten to (N, C·h·w)")
        linear = self.next_node(flat.output[0], ("Gemm", "MatMul"), "the flatten")
        if linear.input[0] != self.follow(flat.output[0]):
            self.fail(f"{linear.op_type} {linear.name!r} must take the flattened map as its first input")
        weight = np.asarray(self.const(linear, 1, "weight"), dtype=np.float64)
        if linear.op_type == "Gemm":
            if self.attribute(linear, "transA", 0):
                self.fail(f"Gemm {linear.name!r} transposes its input")
            weight = weight if self.attribute(linear, "transB", 0) else weight.T
            weight = weight * self.attribute(linear, "alpha", 1.0)
            bias = np.zeros(weight.shape[0])
            if len(linear.input) > 2 and linear.input[2]:
                bias = bias + self.attribute(linear, "beta", 1.0) * self.const(linear, 2, "bias").reshape(-1)
            out = linear.output[0]
        else:
            weight, bias, out = weight.T, np.zeros(weight.shape[1]), linear.output[0]
            add = self.next_node(out, ("Add",), "the MatMul", optional=True)
            if add is not None:
                other = next(name for name in add.input if name != self.follow(out))
                if other not in self.constants:
                    self.fail(f"Add {add.name!r} after the MatMul must add a constant bias")
                bias, out = bias + self.constants[other].reshape(-1), add.output[0]
        state["fc.weight"] = torch.from_numpy(weight.astype(np.float32))
        state["fc.bias"] = torch.from_numpy(np.asarray(bias, dtype=np.float32))
        features = self.next_node(out, ("BatchNormalization",), "fc", optional=True)
        if features is None:   # folded into fc by the exporter
            state.update({f"features.{k}": v for k, v in _bias_only(np.zeros(weight.shape[0])).items()})
        else:
            state.update({f"features.{k}": v for k, v in self.batchnorm(features).items()})
            out = features.output[0]
        out = self.follow(out)
        if self.consumers.get(out) or out not in self.outputs:
            found = ", ".join(f"{n.op_type} {n.name!r}" for n in self.consumers.get(out, []))
            self.fail(f"the embedding must be the graph's output, it feeds {found or 'nothing and is not an output'}")
        return state

    def static_dims(self) -> tuple[int | None, int | None]:
        """(batch size, side) of the image input where the graph fixes them, None where dynamic."""
        dims = self.input.type.tensor_type.shape.dim
        if not dims:   # a graph that states no input shape: everything dynamic
            return None, None
        values = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in dims]
        if len(values) != 4 or values[1] not in (None, 3):
            self.fail(f"its input {self.input.name!r} has shape {values}, expected (N, 3, H, W)")
        if values[2] != values[3]:
            self.fail(f"its input {self.input.name!r} is {values[2]}×{values[3]}, pyfacex's faces are square")
        return values[0], values[2]


def read_onnx_backbone(path: str | os.PathLike, what: str = "SRC") -> OnnxBackbone:
    """Read an insightface ONNX recognition model (an iResNet graph) as a pyfacex state_dict.

    Raises FileNotFoundError for a missing file, ModuleNotFoundError without the ``onnx`` package,
    and ValueError naming ``what``, the file and the node where the graph stops looking like an
    iResNet (see the module docstring for what is accepted).
    """
    onnx = import_onnx()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what}: {path} does not exist")
    try:
        model = onnx.load(str(path))
    except Exception as error:  # noqa: BLE001 - protobuf raises several types for a file that is not ONNX
        raise ValueError(f"{what}: {path} is not an ONNX model ({type(error).__name__}: {error})") from None
    walker = _Walker(model, path, what)
    batch, size = walker.static_dims()
    state, pixels, scale = walker.read()
    return OnnxBackbone(state, walker.input.name, pixels, scale, size, batch)
