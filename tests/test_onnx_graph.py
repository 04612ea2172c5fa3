"""The CPU-friendly ONNX export: fixed "SAME" padding, Pads folded into Convs, same numbers."""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

torch = pytest.importorskip("torch")
from timm.layers.conv2d_same import Conv2dSame  # noqa: E402  (timm comes with torch: train extra)

from sportsdet.onnx_graph import fold_pads_into_convs, static_same_padding, torch_to_onnx  # noqa: E402


def tf_style_net() -> torch.nn.Module:
    """Strided TF-"SAME" convolutions on an even input: the asymmetric padding timm computes at
    run time (a 3x3 stride-2 conv on 16 px pads 0 before and 1 after)."""
    torch.manual_seed(0)
    return torch.nn.Sequential(
        Conv2dSame(3, 4, 3, stride=2),
        torch.nn.ReLU6(),
        Conv2dSame(4, 4, 5, stride=2, groups=4),
        torch.nn.Conv2d(4, 6, 1),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
    ).eval()


def ops(model: onnx.ModelProto) -> Counter:
    return Counter(node.op_type for node in model.graph.node)


def run(model: onnx.ModelProto | bytes, x: np.ndarray) -> np.ndarray:
    data = model if isinstance(model, bytes) else model.SerializeToString()
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def test_static_padding_gives_the_same_outputs_and_leaves_the_original_alone() -> None:
    net = tf_style_net()
    fixed = static_same_padding(net, 16)
    x = torch.randn(3, 3, 16, 16)
    with torch.inference_mode():
        torch.testing.assert_close(fixed(x), net(x), rtol=0, atol=0)
    assert [type(m).__name__ for m in fixed] == ["FixedPadConv", "ReLU6", "FixedPadConv", "Conv2d", *[
        type(m).__name__ for m in net
    ][4:]]
    assert sum(isinstance(m, Conv2dSame) for m in net) == 2  # a copy was changed, not the model
    plain = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3))
    assert static_same_padding(plain, 16) is plain


def test_export_has_no_pads_keeps_a_dynamic_batch_and_matches_torch() -> None:
    net = tf_style_net()
    axes = {"image": {0: "n"}, "out": {0: "n"}}
    data = torch_to_onnx(net, 16, input_names=["image"], output_names=["out"], dynamic_axes=axes)
    model = onnx.load_from_string(data)
    assert "Pad" not in ops(model) and ops(model)["Conv"] == 3
    assert ops(model)["Shape"] == 0  # no run-time padding arithmetic left
    for batch in (1, 4):
        x = np.random.default_rng(batch).standard_normal((batch, 3, 16, 16)).astype(np.float32)
        with torch.inference_mode():
            expected = net(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(run(data, x), expected, rtol=1e-5, atol=1e-5)


def _pad_then_conv(
    mode: str = "constant",
    value: float | None = 0.0,
    extra_reader: bool = False,
    pads: tuple[int, ...] = (0, 0, 0, 1, 0, 0, 1, 1),
    auto_pad: str | None = None,
) -> onnx.ModelProto:
    """image -> Pad(h: 0 before / 1 after, w: 1 / 1) -> Conv 3x3 stride 2 (-> also Relu of the pad)."""
    weight = np.random.default_rng(0).standard_normal((2, 3, 3, 3)).astype(np.float32)
    initializers = [
        numpy_helper.from_array(np.array(pads, np.int64), "pads"),
        numpy_helper.from_array(weight, "w"),
    ]
    pad_inputs = ["image", "pads"]
    if value is not None:
        initializers.append(numpy_helper.from_array(np.array(value, np.float32), "value"))
        pad_inputs.append("value")
    conv_attributes = {"auto_pad": auto_pad} if auto_pad else {}
    nodes = [
        helper.make_node("Pad", pad_inputs, ["padded"], mode=mode),
        helper.make_node("Conv", ["padded", "w"], ["out"], strides=[2, 2], **conv_attributes),
    ]
    outputs = [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 2, 4, 4])]
    if extra_reader:
        nodes.append(helper.make_node("Relu", ["padded"], ["also"]))
        outputs.append(helper.make_tensor_value_info("also", TensorProto.FLOAT, [1, 3, 9, 10]))
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 8, 8])
    graph = helper.make_graph(nodes, "g", [image], outputs, initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_a_zero_pad_is_folded_into_its_conv_with_the_same_result() -> None:
    x = np.random.default_rng(1).standard_normal((1, 3, 8, 8)).astype(np.float32)
    model = _pad_then_conv()
    before = run(model, x)
    assert fold_pads_into_convs(model) == 1
    assert ops(model) == Counter({"Conv": 1})
    conv = model.graph.node[0]
    assert next(a.ints for a in conv.attribute if a.name == "pads") == [0, 1, 1, 1]
    assert {i.name for i in model.graph.initializer} == {"w"}  # the pad amounts went with it
    onnx.checker.check_model(model)
    np.testing.assert_allclose(run(model, x), before, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"mode": "reflect"},
        {"value": 1.0},
        {"extra_reader": True},
        {"pads": (0, 0, 0, -1, 0, 0, 1, 1)},  # a negative pad crops: no Conv pads do that
        {"pads": (0, 1, 0, 1, 0, 0, 1, 1)},  # a channel more: a Conv pads only height and width
        {"auto_pad": "SAME_UPPER"},  # the Conv works out its own pads: explicit ones are ignored
    ],
    ids=["reflect-padding", "non-zero-fill", "pad-read-twice", "cropping", "channel-padding", "auto-pad"],
)
def test_pads_a_conv_cannot_absorb_are_left_alone(kwargs: dict) -> None:
    model = _pad_then_conv(**kwargs)
    assert fold_pads_into_convs(model) == 0
    assert ops(model)["Pad"] == 1
