"""1 process against 2 (gloo, 127.0.0.1) on the same tiny job: wall time and validation numbers.

    PYTHONPATH=src python bench/distributed.py [--per-class 40] [--epochs 5]

Both recipes on generated pictures (3 classes of noise with a coloured square): seed-cnn at
32 px with dropout off (then 2 processes do the same arithmetic as 1), and lite0 transfer at
64 px as it is (dropout masks are drawn per half batch, batch norm sees half batches) and with
dropout off. Every run starts from a cold feature cache, after one unmeasured warm-up run.
The table goes to bench/RESULTS.md (section "distributed"), raw numbers to
bench/results/distributed.json. On a 2-core machine two processes only share the same cores:
the point here is that the numbers agree, not speed.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import results_file  # noqa: E402

START, END = "<!-- distributed:start -->", "<!-- distributed:end -->"
COLOURS = {"blue": (30, 40, 210), "green": (30, 190, 40), "red": (210, 30, 30)}


def make_data(root: Path, per_class: int) -> Path:
    rng = np.random.default_rng(0)
    for name, colour in COLOURS.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 60, (72, 72, 3), dtype=np.uint8)
            x, y = rng.integers(0, 36, 2)
            pixels[y : y + 36, x : x + 36] = colour
            Image.fromarray(pixels).save(root / name / f"{i:03d}.png")
    return root


def run(data: Path, work: Path, name: str, model: str, options: dict[str, Any], nproc: int) -> dict[str, Any]:
    from sportsdet.train import train

    os.environ["SPORTSDET_CACHE_DIR"] = str(work / f"cache-{name}-{nproc}")
    started = time.perf_counter()
    result = train(data, out=work / f"{name}-{nproc}", model=model, seed=1, split="random:0.2,0.3",
                   options=options, nproc=nproc, evaluate=False, report=False)  # fmt: skip
    seconds = time.perf_counter() - started
    return {
        "recipe": name,
        "nproc": nproc,
        "seconds": round(seconds, 1),
        "best_val_acc": result.best["val_acc"],
        "val_acc_by_epoch": [row["val_acc"] for row in result.history],
        "last_val_loss": round(result.history[-1]["val_loss"], 4),
    }


def markdown(payload: dict[str, Any]) -> str:
    lines = [
        START,
        "## Distributed training: 1 process vs 2 (bench/distributed.py)",
        "",
        f"{payload['images']} generated images, {payload['machine']}, "
        f"load average before: {payload['load']}.",
        "",
        "| recipe | processes | wall s | best val acc | val acc by epoch | last val loss |",
        "|---|---|---|---|---|---|",
    ]
    for r in payload["rows"]:
        by_epoch = " ".join(f"{v:.2f}" for v in r["val_acc_by_epoch"])
        lines.append(
            f"| {r['recipe']} | {r['nproc']} | {r['seconds']} | {r['best_val_acc']:.3f} | {by_epoch} | "
            f"{r['last_val_loss']} |"
        )
    return "\n".join([*lines, END])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    scratch = {"input_size": 32, "batch_size": 16, "epochs": args.epochs, "model_config": {"dropout": 0.0}}
    transfer = {"input_size": 64, "head_epochs": args.epochs, "epochs": 1, "batch_size": 16}
    jobs = {
        "seed-cnn, dropout 0": ("seed-cnn", scratch),
        "lite0 transfer": ("lite0", transfer),
        "lite0 transfer, dropout 0": ("lite0", {**transfer, "dropout": 0.0}),
    }
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        data = make_data(work / "data", args.per_class)
        run(
            data, work, "warm-up", "seed-cnn", {**scratch, "epochs": 1}, 1
        )  # imports and first calls, unmeasured
        rows = [run(data, work, name, model, opts, n) for name, (model, opts) in jobs.items() for n in (1, 2)]
    payload = {
        "images": 3 * args.per_class,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "load": load,
        "rows": rows,
    }
    print(markdown(payload))
    raw = Path(__file__).parent / "results" / "distributed.json"
    results_file.write_results(payload, raw, markdown(payload), START, END)


if __name__ == "__main__":
    main()
