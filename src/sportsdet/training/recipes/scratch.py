"""The "scratch" recipe: a registry model from random weights (the notebook's recipe for seed-cnn)."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from sportsdet.errors import SportsdetError
from sportsdet.models import build_model
from sportsdet.training.loop import TrainContext, TrainResult, run_epochs
from sportsdet.training.options import OPTIMIZERS, ScratchOptions


def make_optimizer(name: str, params: Iterable, options: ScratchOptions) -> torch.optim.Optimizer:
    """The optimizers the scratch recipe can use (ScratchOptions.optimizer)."""
    lr = options.lr
    if name == "adagrad":
        return torch.optim.Adagrad(
            params,
            lr=lr,
            lr_decay=options.lr_decay,
            initial_accumulator_value=options.initial_accumulator_value,
            eps=options.eps,
            weight_decay=options.weight_decay,
        )
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=options.weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=options.momentum, weight_decay=options.weight_decay)
    raise SportsdetError(f"unknown optimizer {name!r} in the training options; use {', '.join(OPTIMIZERS)}")


def fit_scratch(ctx: TrainContext) -> TrainResult:
    """Train from random weights with the notebook's optimizer and schedule."""
    options = ctx.options
    assert isinstance(options, ScratchOptions)
    model = build_model(ctx.spec.name, num_classes=len(ctx.labels), pretrained=False, **ctx.model_config)
    optimizer = make_optimizer(options.optimizer, model.parameters(), options)
    train_loader, val_loader = ctx.loaders(augment=options.augment)
    loss_fn = ctx.loss_function()
    run_epochs(
        ctx,
        model,
        optimizer,
        None,
        train_loader,
        val_loader,
        options.epochs,
        stage="train",
        loss_fn=loss_fn,
        patience=options.patience,
    )
    ctx.load_best(model)
    return TrainResult(
        model=model.eval(), history=ctx.history, best=ctx.best, info={"optimizer": options.optimizer}
    )
