"""The notebook's CNN: architecture, Keras initialisation, registry defaults, optimizer mapping."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from sportsdet.errors import SportsdetError
from sportsdet.models import build_model, get_model_spec
from sportsdet.training.loop import current_lr
from sportsdet.training.options import resolve_options
from sportsdet.training.recipes.scratch import make_optimizer


def test_architecture_matches_the_notebook():
    model = build_model("seed-cnn", num_classes=6)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.padding) for c in convs] == [
        (3, 32, (3, 3), "same"),
        (32, 32, (3, 3), "same"),
        (32, 32, (3, 3), "same"),
    ]
    layers = list(model.features)
    kinds = [type(m).__name__ for m in layers]
    # The notebook's Conv -> LeakyReLU -> MaxPool, computed with the pool first (same result).
    assert kinds == [
        "Conv2d", "MaxPool2d", "LeakyReLU", "Dropout",
        "Conv2d", "MaxPool2d", "LeakyReLU",
        "Conv2d", "MaxPool2d", "LeakyReLU",
    ]  # fmt: skip
    assert all(m.negative_slope == 0.1 for m in model.modules() if isinstance(m, nn.LeakyReLU))
    assert layers[3].p == 0.5
    # 150 -> 75 -> 37 -> 18 after three 2x2 pools: the dense layer sees 32 * 18 * 18 features.
    assert model.hidden.in_features == 32 * 18 * 18 and model.hidden.out_features == 32
    assert model.classifier.out_features == 6
    assert "classifier.weight" in model.state_dict()
    assert get_model_spec("seed-cnn").output_key == "classifier.weight"
    out = model.eval()(torch.rand(2, 3, 150, 150))
    assert out.shape == (2, 6)


def test_pooling_before_the_activation_is_exactly_the_notebooks_order():
    torch.manual_seed(0)
    model = build_model("seed-cnn", num_classes=4, input_size=40).eval()
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]

    def notebook_order(x: torch.Tensor) -> torch.Tensor:
        for conv in convs:
            x = nn.functional.max_pool2d(nn.functional.leaky_relu(conv(x), 0.1), 2)
        return model.classifier(model.hidden_act(model.hidden(x.flatten(1))))

    x = torch.randn(3, 3, 40, 40)
    ours, theirs = model(x), notebook_order(x)
    assert torch.equal(ours, theirs)
    grad_ours = torch.autograd.grad(ours.square().sum(), convs[0].weight)[0]
    grad_theirs = torch.autograd.grad(theirs.square().sum(), convs[0].weight)[0]
    assert torch.equal(grad_ours, grad_theirs) and grad_ours.abs().sum() > 0


def test_keras_initialisation():
    torch.manual_seed(0)
    model = build_model("seed-cnn", num_classes=6)
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            assert torch.count_nonzero(module.bias) == 0  # Keras: zero biases
            weight = module.weight
            receptive = weight[0][0].numel()
            fan_in, fan_out = weight.shape[1] * receptive, weight.shape[0] * receptive
            limit = math.sqrt(6 / (fan_in + fan_out))  # glorot_uniform
            assert weight.abs().max() <= limit
            # Uniform(-limit, limit) has std limit/sqrt(3); PyTorch's default would be far smaller here.
            assert weight.std().item() == pytest.approx(limit / math.sqrt(3), rel=0.15)


def test_builder_refuses_pretrained_and_unknown_options():
    with pytest.raises(SportsdetError, match="no pretrained weights"):
        build_model("seed-cnn", num_classes=3, pretrained=True)
    with pytest.raises(SportsdetError, match="unknown config"):
        build_model("seed-cnn", num_classes=3, width=3)
    small = build_model("seed-cnn", num_classes=3, input_size=32)
    assert small.hidden.in_features == 32 * 4 * 4


def test_registry_defaults_give_keras_adagrad():
    defaults = resolve_options(get_model_spec("seed-cnn"))
    assert defaults.optimizer == "adagrad" and defaults.lr == 1e-3 and defaults.epochs == 100
    assert defaults.batch_size == 32
    weight = nn.Parameter(torch.zeros(1))
    optimizer = make_optimizer("adagrad", [weight], defaults)
    group = optimizer.param_groups[0]
    assert isinstance(optimizer, torch.optim.Adagrad)
    assert group["lr_decay"] == defaults.lr_decay
    # Keras (2.11+ / 3): acc += g^2; w -= lr * g / sqrt(acc + 1e-7), the accumulator starting at 0.
    # A small gradient shows the difference from eps outside the root (which would step ~lr).
    lr, decay, keras_eps = 1e-3, defaults.lr_decay, 1e-7
    acc, expected = 0.0, 0.0
    for step, g in enumerate([1e-4, 3e-4, 2.0]):
        weight.grad = torch.tensor([g])
        optimizer.step()
        acc += g * g
        expected -= lr / (1 + decay * step) * g / math.sqrt(acc + keras_eps)
        assert weight.item() == pytest.approx(expected, rel=1e-5)
    assert abs(weight.item()) > 0
    # Keras' legacy decay lr / (1 + decay * iterations), as logged for the next step.
    assert current_lr(optimizer) == pytest.approx(1e-3 / (1 + decay * 3))
