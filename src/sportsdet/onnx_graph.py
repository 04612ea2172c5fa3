"""PyTorch -> ONNX for fast CPU inference: the one export routine behind `sportsdet export` and
the frozen-feature sessions of training.

Why not a bare `torch.onnx.export`: the EfficientNet-Lite ports (timm `tf_efficientnet_lite*`)
use TensorFlow "SAME" padding, which timm computes from the input size at run time. Exported
as is, every strided convolution gets a chain of shape arithmetic and a `Pad` node; onnxruntime
cannot keep a `Pad` in its blocked (NCHWc) convolution layout, so it converts the activations out
and back in around each one. Here the padding is fixed for the model's one input size, the
graph's constants are folded (onnxruntime's basic, hardware-independent level, which writes
standard ONNX ops only), and each zero `Pad` is folded into the `Conv` after it. Same numbers
(tested); Lite2 runs ~19% faster on this CPU than from a bare export (bench/throughput.py).

Needs torch (the train install); the light install only ever loads the result.
"""

from __future__ import annotations

import copy
import io
import os
import tempfile
import warnings
from collections.abc import Sequence
from typing import Any

OPSET = 17


def static_same_padding(model: Any, input_size: int) -> Any:
    """A copy of `model` whose timm `Conv2dSame` layers pad by fixed amounts for `input_size`.

    Identical outputs at that input size; models without such layers come back as they are.
    """
    import torch
    import torch.nn.functional as F

    try:
        from timm.layers.conv2d_same import Conv2dSame
        from timm.layers.padding import pad_same_arg
    except ImportError:  # no timm: no TF-style padding to fix
        return model
    if not any(isinstance(m, Conv2dSame) for m in model.modules()):
        return model

    class FixedPadConv(torch.nn.Module):
        def __init__(self, conv: torch.nn.Conv2d, pads: tuple[int, int, int, int]) -> None:
            super().__init__()
            self.conv, self.pads = conv, pads

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            conv, padded = self.conv, F.pad(x, self.pads)
            return F.conv2d(padded, conv.weight, conv.bias, conv.stride, 0, conv.dilation, conv.groups)

    model = copy.deepcopy(model).eval()
    seen: dict[str, tuple[int, int]] = {}

    def recorder(name: str) -> Any:
        def record(_: Any, args: tuple[torch.Tensor, ...]) -> None:  # None: leave the input alone
            seen[name] = tuple(args[0].shape[-2:])

        return record

    hooks = [
        module.register_forward_pre_hook(recorder(name))
        for name, module in model.named_modules()
        if isinstance(module, Conv2dSame)
    ]
    try:
        with torch.inference_mode():
            model(torch.zeros(1, 3, input_size, input_size))
    finally:
        for hook in hooks:
            hook.remove()
    for name, size in seen.items():
        parent_name, _, attribute = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        conv = getattr(parent, attribute)
        pads = pad_same_arg(list(size), list(conv.weight.shape[-2:]), conv.stride, conv.dilation)
        setattr(parent, attribute, FixedPadConv(conv, tuple(int(p) for p in pads)))
    return model


def fold_constants(model_bytes: bytes) -> Any:
    """onnxruntime's basic (hardware-independent) optimisation of a model: constants folded,
    standard ONNX ops only. Returns an `onnx.ModelProto`."""
    import onnx
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.log_severity_level = 3
    handle, name = tempfile.mkstemp(suffix=".onnx")
    os.close(handle)
    try:
        options.optimized_model_filepath = name
        try:
            ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
        except Exception:
            _raise_os_reason(name, len(model_bytes))
            raise
        return onnx.load(name)
    finally:
        os.unlink(name)


def _raise_os_reason(path: str, size: int) -> None:
    """onnxruntime reports a failed write of its optimised model (disk full, file size limit) only
    as "Protobuf serialization failed". Writing the same amount ourselves turns that into the
    OSError it really is, naming the file; returns quietly when the write works (another cause)."""
    try:
        with open(path, "wb") as handle:
            handle.write(bytes(size))
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, path) from None


def fold_pads_into_convs(model: Any) -> int:
    """Fold every constant zero `Pad` of the spatial axes into the `Conv` that alone reads it.

    Changes `model` (an onnx.ModelProto) in place; returns how many were folded.
    """
    from onnx import helper, numpy_helper

    graph = model.graph
    constants = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    readers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    outputs = {o.name for o in graph.output}
    folded = []
    for pad in graph.node:
        if pad.op_type != "Pad" or pad.output[0] in outputs:
            continue
        pads = constants.get(pad.input[1]) if len(pad.input) > 1 else None
        value = constants.get(pad.input[2]) if len(pad.input) > 2 and pad.input[2] else None
        mode = next((a.s for a in pad.attribute if a.name == "mode"), b"constant")
        users = readers.get(pad.output[0], [])
        if pads is None or pads.shape != (8,) or mode != b"constant" or (value is not None and value.any()):
            continue
        if len(users) != 1 or users[0].op_type != "Conv" or users[0].input[0] != pad.output[0]:
            continue
        if pads[[0, 1, 4, 5]].any() or (pads < 0).any():  # batch/channel padding or cropping
            continue
        conv = users[0]
        attributes = {a.name: a for a in conv.attribute}
        if "auto_pad" in attributes and attributes["auto_pad"].s not in (b"", b"NOTSET"):
            continue
        old = list(attributes["pads"].ints) if "pads" in attributes else [0, 0, 0, 0]
        # ONNX Pad: [n, c, h, w begins, n, c, h, w ends]; Conv pads: [h begin, w begin, h end, w end]
        new = [old[0] + int(pads[2]), old[1] + int(pads[3]), old[2] + int(pads[6]), old[3] + int(pads[7])]
        if "pads" in attributes:
            conv.attribute.remove(attributes["pads"])
        conv.attribute.append(helper.make_attribute("pads", new))
        conv.input[0] = pad.input[0]
        folded.append(pad)
    for pad in folded:
        graph.node.remove(pad)
    used = {name for node in graph.node for name in node.input}
    unused = [init for init in graph.initializer if init.name not in used]
    for init in unused:  # the pad amounts, now read by nobody
        graph.initializer.remove(init)
    return len(folded)


def torch_to_onnx(
    module: Any,
    input_size: int,
    *,
    input_names: Sequence[str],
    output_names: Sequence[str],
    dynamic_axes: dict[str, dict[int, str]],
) -> bytes:
    """Export `module` (taking [N, 3, input_size, input_size]) to ONNX bytes made fast for CPU.

    The TorchScript exporter (`dynamo=False`): torch 2.14's default exporter needs `onnxscript`,
    which is not part of our install; this one handles these CNNs and a dynamic batch axis.
    """
    import onnx
    import torch

    module = static_same_padding(module.eval(), input_size)
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")  # the TorchScript exporter announces its own deprecation
        torch.onnx.export(
            module,
            (torch.zeros(2, 3, input_size, input_size),),
            buffer,
            dynamo=False,
            opset_version=OPSET,
            input_names=list(input_names),
            output_names=list(output_names),
            dynamic_axes=dynamic_axes,
            do_constant_folding=True,
        )
    model = fold_constants(buffer.getvalue())
    fold_pads_into_convs(model)
    onnx.checker.check_model(model)
    return model.SerializeToString()
