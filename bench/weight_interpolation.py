"""Does mixing fine-tuned weights with pretrained ones read real-world photos better? (WiSE-FT)

    python bench/weight_interpolation.py runs/user2 --alpha 0,0.25,0.5,0.75,1

Weight-space ensembling (Wortsman et al., "Robust fine-tuning of zero-shot models", 2022): the
network theta(a) = (1 - a) * theta0 + a * theta1, where theta1 is a transfer run's fine-tuned
network (its best checkpoint, before calibration) and theta0 the same architecture with the
pretrained trunk and a linear head fitted on frozen features (the run's stage 1, refitted here:
20 epochs of AdamW on the cached centre + mirror features, label smoothing 0.1). Every weight is
mixed, batch-norm statistics included; the distance head's scaling is left off (it changes no
ranking). It costs nothing at prediction time (one network), so it would fit the throughput goal.

Top-1 in float (torch) with Wilson 95% intervals on the sets every built-in-model bench scores:
the run's validation photos, sports100 test, websports held-out, realworld-dev (never trained on).
Writes bench/results/weight_interpolation.json and the weight-interpolation section of
bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from realworld import photo_sets  # noqa: E402
from results_file import write_results  # noqa: E402

START, END = "<!-- weight-interpolation:start -->", "<!-- weight-interpolation:end -->"
RESULTS_JSON = ROOT / "bench" / "results" / "weight_interpolation.json"


def linear_probe_state(name: str, run: Path, labels: list[str], preprocessing, seed: int) -> dict:
    """theta0: the pretrained network with a head fitted on its frozen features (like stage 1)."""
    import torch
    from torch import nn

    from sportsdet.data.splits import SplitManifest
    from sportsdet.models import build_model
    from sportsdet.training import feature_cache

    torch.manual_seed(seed)
    base = build_model(name, num_classes=len(labels), pretrained=True).eval()
    train = SplitManifest.load(run / "split.json").items("train")
    paths = [path for path, _ in train]
    extract = feature_cache.extract_features
    views = [
        extract(name, paths, preprocessing=preprocessing, view=view, model=base)["pooled"]
        for view in ("center", "flip")
    ]
    x = torch.from_numpy(np.concatenate(views))
    y = torch.tensor([label for _, label in train] * 2)
    head = nn.Linear(x.shape[1], len(labels))
    epochs, batch = 20, 256
    optimizer = torch.optim.AdamW(head.parameters(), lr=1e-3, weight_decay=1e-4)
    steps = epochs * ((len(x) + batch - 1) // batch)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, 1e-3, total_steps=steps, pct_start=0.05)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    for _ in range(epochs):
        order = torch.randperm(len(x))
        for start in range(0, len(x), batch):
            rows = order[start : start + batch]
            loss = loss_fn(head(x[rows]), y[rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    state = {key: value.clone() for key, value in base.state_dict().items()}
    state["classifier.weight"], state["classifier.bias"] = head.weight.detach(), head.bias.detach()
    return state


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run", type=Path, help="a transfer run folder (its checkpoints/best.safetensors)")
    parser.add_argument("--alpha", default="0,0.25,0.5,0.75,1", help="mixing weights of the fine-tuned net")
    parser.add_argument("--seed", type=int, default=0, help="seed of the refitted linear head")
    args = parser.parse_args(argv)

    import torch

    from sportsdet.bundle import load_bundle
    from sportsdet.metrics import wilson_interval
    from sportsdet.models import build_model
    from sportsdet.preprocess import load_and_preprocess
    from sportsdet.training.checkpoint import model_tensors, read_checkpoint

    started, load_before = time.time(), [round(x, 2) for x in os.getloadavg()]
    run = args.run.resolve()
    name = json.loads((run / "config.json").read_text())["model"]
    bundle = load_bundle(run / "model", verify_weights=False)
    labels, pre = bundle.labels, bundle.preprocessing
    theta0 = linear_probe_state(name, run, labels, pre, args.seed)
    best = model_tensors(read_checkpoint(run / "checkpoints" / "best.safetensors")[0])
    theta1 = {key.removeprefix("net."): value for key, value in best.items()}  # the training wrapper's names
    model = build_model(name, num_classes=len(labels), distance_head=True).eval()
    if set(theta1) != set(model.state_dict()):
        raise SystemExit(f"error: {run}: the best checkpoint does not hold a whole {name} network")

    index = {label: i for i, label in enumerate(labels)}
    sets = {
        set_name: (
            torch.from_numpy(np.stack([load_and_preprocess(path, pre) for path, _ in items])),
            np.array([index[label] for _, label in items]),
        )
        for set_name, items in photo_sets(run / "split.json").items()
    }
    rows = []
    for alpha in (float(a) for a in args.alpha.split(",")):
        state = {
            key: (1 - alpha) * theta0[key].float() + alpha * value.float()
            if key in theta0 and torch.is_floating_point(value)
            else value
            for key, value in theta1.items()
        }
        state["classifier.reference"] = torch.zeros(())  # a plain linear head (same ranking)
        model.load_state_dict(state)
        row: dict = {"alpha": alpha}
        with torch.inference_mode():
            for set_name, (x, y) in sets.items():
                top = torch.cat([model(x[s : s + 64]).argmax(1) for s in range(0, len(x), 64)]).numpy()
                hits = int((top == y).sum())
                row[set_name] = {"right": hits, "n": len(y), "ci95": list(wilson_interval(hits, len(y)))}
                if set_name == "realworld-dev":
                    row["per_class"] = {labels[c]: [int(((top == y) & (y == c)).sum()), int((y == c).sum())]
                                        for c in np.unique(y)}  # fmt: skip
        print(json.dumps(row), flush=True)
        rows.append(row)
    payload = {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "run": str(run),
        "model": name,
        "input_size": pre.input_size,
        "seed": args.seed,
        "load_before": load_before,
        "seconds": round(time.time() - started),
        "rows": rows,
    }
    write_results(payload, RESULTS_JSON, render(payload), START, END)
    return 0


def render(p: dict) -> str:
    sets = [key for key in p["rows"][0] if key not in ("alpha", "per_class")]

    def cell(r: dict) -> str:
        low, high = r["ci95"]
        return f"{100 * r['right'] / r['n']:.1f}% ({100 * low:.0f}%-{100 * high:.0f}%)"

    lines = [
        START,
        "## Mixing fine-tuned and pretrained weights (bench/weight_interpolation.py)",
        "",
        f"Run {p['when']}; load average before {p['load_before']}; {p['seconds']} s. Run `{p['run']}` "
        f"({p['model']} at {p['input_size']} px, the transfer recipe); a = 0 is the pretrained network with "
        "a linear head refitted on its frozen features, a = 1 the run's fine-tuned network; every weight "
        "mixed as (1 - a) * pretrained + a * fine-tuned (WiSE-FT). Float (torch), top-1, Wilson 95% "
        "intervals.",
        "",
        f"| a | {' | '.join(sets)} | realworld-dev per class |",
        "|---:|" + "---|" * (len(sets) + 1),
    ]
    for row in p["rows"]:
        per = ", ".join(f"{c} {a}/{b}" for c, (a, b) in row["per_class"].items())
        lines.append(f"| {row['alpha']:g} | {' | '.join(cell(row[s]) for s in sets)} | {per} |")
    rw = {row["alpha"]: row["realworld-dev"] for row in p["rows"]}
    share = {a: r["right"] / r["n"] for a, r in rw.items()}
    best = max(share, key=share.get)
    tuned = share.get(1.0)
    if tuned is not None:
        low, high = rw[1.0]["ci95"]
        gain = share[best] - tuned
        verdict = (
            "more than half the fine-tuned network's interval: worth a training option"
            if gain > (high - low) / 2
            else "within the fine-tuned network's interval: no real gain, so it is not a training option"
        )
        lines += [
            "",
            f"Reading: realworld-dev ranges from {100 * min(share.values()):.1f}% to "
            f"{100 * share[best]:.1f}% "
            f"(a = {best:g}) against {100 * tuned:.1f}% for the fine-tuned network alone; the best a is "
            f"{100 * gain:+.1f} points, {verdict}.",
        ]
    lines += ["", "Raw numbers: bench/results/weight_interpolation.json.", END]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
