"""Training recipes: `fit(ctx: TrainContext) -> TrainResult`, one module each.

    scratch    the notebook's CNN from random weights (seed-cnn)
    transfer   a pretrained network: cached frozen features, a head, then the top stages

A recipe builds its model, trains it through `sportsdet.training.loop.run_epochs` (so every
recipe writes the same run folder) and returns the model with its best weights loaded. Its
options are a dataclass in `sportsdet.training.options`.
"""

from __future__ import annotations

from collections.abc import Callable

from sportsdet.training.loop import TrainContext, TrainResult


def get_recipe(name: str) -> Callable[[TrainContext], TrainResult]:
    """The fit function of a recipe (imported on use: the transfer recipe pulls in onnxruntime export)."""
    if name == "scratch":
        from sportsdet.training.recipes.scratch import fit_scratch

        return fit_scratch
    if name == "transfer":
        from sportsdet.training.recipes.transfer import fit_transfer

        return fit_transfer
    from sportsdet.training.options import options_class

    options_class(name)  # raises the "unknown recipe" error with the known names
    raise AssertionError(f"recipe {name!r} has options but no fit function")
