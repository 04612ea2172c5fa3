"""The distance head: less sure of photos unlike every class, the same ranking, old files still load."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="the distance head is part of the [train] install")

from sportsdet.models.heads import DistanceScaledLinear, use_distance_head  # noqa: E402


def fitted_head(sharpness: float = 1.0) -> DistanceScaledLinear:
    torch.manual_seed(0)
    head = DistanceScaledLinear(4, 3)
    features = torch.cat([torch.eye(4)[:3] + 0.05 * torch.rand(3, 4) for _ in range(10)])
    labels = torch.arange(3).repeat(10)
    info = head.fit(features, labels, torch.eye(4)[:3] + 0.1, sharpness)
    assert info["reference"] > 0.9 and info["reference_images"] == 3 and info["sharpness"] == sharpness
    return head


def test_photos_near_a_class_keep_their_logits_far_ones_are_flattened() -> None:
    head = fitted_head()
    plain = torch.nn.Linear(4, 3)
    plain.load_state_dict({"weight": head.weight, "bias": head.bias})
    near = torch.eye(4)[:3] * 2.0  # the direction of each prototype, any length
    far = torch.tensor([[0.0, 0.0, 0.0, 1.0], [-1.0, -1.0, -1.0, 0.0]])  # unlike every class
    with torch.no_grad():
        assert torch.allclose(head(near), plain(near))
        scaled, unscaled = head(far), plain(far)
    # (almost) no similarity to any class: logits near zero, so (almost) uniform scores
    assert float(scaled.abs().max()) <= 0.1 * float(unscaled.abs().max())
    between = torch.tensor([[1.0, 0.0, 0.0, 1.0]])  # half-way: scaled, ranking unchanged
    with torch.no_grad():
        ratio = head(between) / plain(between)
    assert 0.5 < float(ratio[0, 0]) < 1.0 and torch.allclose(ratio, ratio[0, 0].expand_as(ratio))


def test_sharpness_is_the_power_of_the_scale_and_leaves_near_photos_alone() -> None:
    linear, squared = fitted_head(1.0), fitted_head(2.0)
    near = torch.eye(4)[:3] * 2.0
    between = torch.tensor([[1.0, 0.0, 0.0, 1.0], [0.0, 1.0, 0.5, 0.5]])
    with torch.no_grad():
        assert torch.allclose(squared(near), linear(near))
        plain = torch.nn.functional.linear(between, linear.weight, linear.bias)
        scale = linear(between) / plain
        assert torch.allclose(squared(between) / plain, scale**2, atol=1e-5)
    assert float(scale.max()) < 0.9  # so the square is a real change, not 1 ** 2
    with pytest.raises(ValueError, match="above 0"):
        fitted_head(0.0)


def test_a_head_saved_before_sharpness_loads_with_the_power_it_was_made_with() -> None:
    head = fitted_head(2.0)
    old_state = {k: v for k, v in head.state_dict().items() if k != "sharpness"}
    reloaded = DistanceScaledLinear(4, 3)
    reloaded.load_state_dict(old_state)  # strict: the missing buffer is filled in, with 1
    assert float(reloaded.sharpness) == 1.0
    x = torch.tensor([[1.0, 0.0, 0.0, 1.0]])
    with torch.no_grad():
        assert torch.allclose(reloaded(x), fitted_head(1.0)(x))


def test_a_state_without_prototypes_loads_as_a_plain_linear() -> None:
    plain = torch.nn.Linear(4, 3)
    head = DistanceScaledLinear(4, 3)
    head.load_state_dict(plain.state_dict())  # a checkpoint from before the head existed
    x = torch.randn(5, 4)
    with torch.no_grad():
        assert torch.equal(head(x), plain(x))
    assert float(head.reference) == 0.0


def test_use_distance_head_keeps_the_weights_and_the_state_dict_names() -> None:
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    head = use_distance_head(model)
    assert model[1] is head and isinstance(head, DistanceScaledLinear)
    state = model.state_dict()
    assert set(state) == {"1.weight", "1.bias", "1.prototypes", "1.reference", "1.sharpness"}
    assert all(torch.equal(state[k], v) for k, v in before.items())
    with pytest.raises(TypeError, match="not a Linear"):
        use_distance_head(torch.nn.Sequential(torch.nn.Flatten()))


def test_swapping_the_head_leaves_the_random_stream_alone() -> None:
    torch.manual_seed(3)
    use_distance_head(torch.nn.Sequential(torch.nn.Linear(4, 3)))
    after_swap = torch.rand(3)
    torch.manual_seed(3)
    torch.nn.Sequential(torch.nn.Linear(4, 3))
    assert torch.equal(torch.rand(3), after_swap)  # a seeded run trains the same with the head
