"""Ray Data bulk prediction vs `sportsdet predict`, and the numbers a scaling model needs.

    python bench/scale.py                       # sports100/test (499 photos)
    python bench/scale.py --photos 2000         # more, by taking train photos as well

In one run, on the same photos, alternating so that load from other users hits both alike:
  1. `sportsdet predict` in-process (the Predictor the CLI uses: decode threads + onnxruntime);
  2. `sportsdet predict --engine ray` in-process (`run_ray_predict`) with 1 and 2 model actors,
     on one local Ray started once; its labels are compared with (1);
then the unit costs the scaling model in bench/RESULTS.md rests on: decode cost per photo, model
cost per photo, actor start-up, listing rate, Parquet write and resume-read rates.
Writes bench/results/scale-<photos>.json and that photo count's section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import results_file

REPO = Path(__file__).resolve().parents[1]
# ../shared next to the checkout (a git worktree sits one level deeper)
DEFAULT_DATA = next(
    (
        p / "shared" / "data" / "sports100"
        for p in (REPO.parent, REPO.parent.parent)
        if (p / "shared").is_dir()
    ),
    REPO.parent / "shared" / "data" / "sports100",
)
RESULTS_DIR = REPO / "bench" / "results"


def markers(photos: int) -> tuple[str, str]:
    """Each photo count owns its RESULTS.md section (a short job weighs Ray's start-up more)."""
    return f"<!-- scale-{photos}:start -->", f"<!-- scale-{photos}:end -->"


def log(message: str) -> None:
    print(
        f"[{time.strftime('%H:%M:%S')} load {os.getloadavg()[0]:.2f}] {message}", file=sys.stderr, flush=True
    )


def photo_list(data: Path, count: int | None) -> list[str]:
    from sportsdet.predict import expand_inputs

    test = [item.name for item in expand_inputs([str(data / "test")])]
    if count is None or count <= len(test):
        return test[:count] if count else test
    train = (item.name for item in expand_inputs([str(data / "train")]))
    return test + [next(train) for _ in range(count - len(test))]


def run_predict(model: Path, photos: list[str]) -> tuple[float, dict[str, Any]]:
    from sportsdet.predict import Predictor

    start = time.perf_counter()
    predictor = Predictor(model, top_k=5)
    results = {r.input: r for r in predictor.predict_sources(photos)}
    return time.perf_counter() - start, results


def run_ray(model: Path, listing: Path, out: Path, workers: int, threads: int) -> tuple[float, Any]:
    from sportsdet.cluster.ray_predict import run_ray_predict

    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    summary = run_ray_predict([str(listing)], out, model=model, top_k=5, workers=workers, threads=threads)
    return time.perf_counter() - start, summary


def compare(out: Path, expected: dict[str, Any]) -> dict[str, Any]:
    import pyarrow.parquet as pq

    rows = {r["input"]: r for r in pq.read_table(out).to_pylist()}
    same_label = sum(rows[k]["label"] == v.label for k, v in expected.items() if k in rows)
    # Scores of labelled photos (an uncertain or failed one has none, in both engines).
    diffs = [
        abs(rows[k]["score"] - v.score) for k, v in expected.items() if k in rows and v.score is not None
    ]
    same_abstain = sum(rows[k]["uncertain"] == v.uncertain for k, v in expected.items() if k in rows and v.ok)
    return {
        "rows": len(rows),
        "expected": len(expected),
        "same_label": same_label,
        "max_score_diff": max(diffs) if diffs else None,
        "same_abstain": same_abstain,
        "uncertain": sum(v.uncertain for v in expected.values()),
    }


# --- unit costs ------------------------------------------------------------------------------


def unit_costs(model: Path, photos: list[str], data: Path, work: Path) -> dict[str, Any]:
    import pyarrow.parquet as pq

    from sportsdet.cluster.ray_predict import (
        Classifier,
        PartWriter,
        input_keys,
        read_done_inputs,
        results_table,
    )
    from sportsdet.imageio import load_image
    from sportsdet.predict import PredictionResult, Predictor, expand_inputs
    from sportsdet.preprocess import normalize, resize_image

    costs: dict[str, Any] = {}
    predictor = Predictor(model, top_k=5, threads=1)
    spec = predictor.preprocessing
    sample = photos[:200]
    sizes = [os.path.getsize(p) for p in sample]
    costs["photo_kb_mean"] = statistics.mean(sizes) / 1024
    start = time.perf_counter()
    decoded = [np.asarray(resize_image(load_image(p, min_size=spec.decode_size), spec)) for p in sample]
    costs["decode_ms"] = (time.perf_counter() - start) / len(sample) * 1000
    batch = np.stack([normalize(d, spec) for d in decoded])
    predictor.predict_batch(batch[:2])  # warm-up
    start = time.perf_counter()
    for i in range(0, len(batch), 2):
        predictor.predict_batch(batch[i : i + 2])
    costs["model_ms_one_thread"] = (time.perf_counter() - start) / len(batch) * 1000
    costs["decoded_kb_per_photo"] = decoded[0].nbytes / 1024

    # Actor start-up: a fresh Ray actor loading the model, until it answers.
    import ray

    kwargs = {"model": str(model), "backend": "auto", "int8": False, "threads": 1, "top_k": 5}
    remote = ray.remote(num_cpus=1)(Classifier)
    starts = []
    for _ in range(3):
        start = time.perf_counter()
        actor = remote.remote(batch_size=2, **kwargs)
        ray.get(actor.__ray_ready__.remote())
        starts.append(time.perf_counter() - start)
        ray.kill(actor)
    costs["actor_start_s"] = starts

    # Ray Data's own cost per block: trivial tasks of 32 rows through the streaming executor (the
    # driver schedules every task and receives every result block).
    blocks = 400
    trivial = ray.data.range(blocks * 32, override_num_blocks=blocks).map_batches(
        lambda b: b, batch_size=None
    )
    start = time.perf_counter()
    seen = sum(1 for _ in trivial.iter_batches(batch_size=None))
    costs["ray_blocks_per_s"] = seen / (time.perf_counter() - start)

    # Listing: the same walk `sportsdet predict` does, plus the resume hash check per input.
    start = time.perf_counter()
    listed = [item.name for item in expand_inputs([str(data / "train")])]
    costs["list_files_per_s"] = len(listed) / (time.perf_counter() - start)
    costs["listed_files"] = len(listed)
    start = time.perf_counter()
    keys = input_keys(listed)
    costs["hash_inputs_per_s"] = len(listed) / (time.perf_counter() - start)
    del keys

    # Parquet: result rows as the driver writes them, then read back as a resume does.
    fake = [
        PredictionResult(
            input=f"s3://bucket/photos/{i:09d}.jpg",
            label=f"class {i % 100}",
            score=float(score),
            top_k=[(f"class {(i + j) % 100}", float(score) / (j + 1)) for j in range(5)],
        )
        for i, score in enumerate(np.random.default_rng(0).random(50_000))
    ]
    start = time.perf_counter()
    table = results_table(fake)
    costs["rows_to_arrow_per_s"] = len(fake) / (time.perf_counter() - start)
    out = work / "parquet-rate"
    out.mkdir()
    writer = PartWriter(out, part_rows=10**9)
    writer.add(table)
    start = time.perf_counter()
    writer.flush()
    costs["parquet_write_rows_per_s"] = len(fake) / (time.perf_counter() - start)
    costs["parquet_bytes_per_row"] = sum(p.stat().st_size for p in writer.parts) / len(fake)
    start = time.perf_counter()
    done = read_done_inputs(out)
    costs["resume_read_rows_per_s"] = len(done) / (time.perf_counter() - start)
    assert pq.read_table(writer.parts[0]).num_rows == len(fake)
    return costs


# --- report ----------------------------------------------------------------------------------


def _uncertain_note(same: dict[str, Any]) -> str:
    """How many photos predict called uncertain, and whether Ray's abstain flag agreed on each."""
    if "uncertain" not in same:
        return ""
    return f" ({same['uncertain']} uncertain; abstain flag same {same['same_abstain']})"


def _shape(run: dict[str, Any]) -> str:
    return f"{run['workers']} x {run['threads']}" if run["engine"] == "ray" else "-"


def render(payload: dict[str, Any]) -> str:
    runs = payload["runs"]
    ref = statistics.median(r["images_per_s"] for r in runs if r["engine"] == "predict")
    lines = [
        markers(payload["photos"])[0],
        f"## Ray Data bulk prediction, {payload['photos']} photos (bench/scale.py)",
        "",
        f"{payload['photos']} photos ({payload['data']}), "
        f"built-in model of the time ({payload.get('model', 'not recorded')}; INT8 ONNX), "
        f"{payload['cpus']} CPUs, load {payload['load_before']:.2f} before / {payload['load_after']:.2f} "
        f"after, {payload['date']}. Ray {payload['ray']}. "
        + ("One untimed predict pass first; which engine runs first alternates by round. "
           if payload.get("warm_up")
           else "No warm-up pass: round 1's first run, `sportsdet predict`, read the photos from disk "
           "and loaded the model cold. ")
        + "The ratio is against the "
        "median `sportsdet predict` rate of this run. Ray time counts the whole job (listing, actor "
        "start-up, decoding, writing Parquet) on a local Ray started once beforehand "
        f"(`ray.init` itself took {payload['ray_init_s']:.1f} s).",
        "",
        "| round | engine | actors x threads | seconds | images/s | vs predict | same labels "
        "| max score diff |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        same = r.get("compare", {})
        lines.append(
            f"| {r['round']} | {r['engine']} | {_shape(r)} | {r['seconds']:.1f} | "
            f"{r['images_per_s']:.1f} | {r['images_per_s'] / ref:.2f} | "
            + (
                f"{same['same_label']}/{same['expected']}{_uncertain_note(same)} | "
                f"{same['max_score_diff']:.1e} |"
                if same
                else "- | - |"
            )
        )
    shapes = sorted({_shape(r) for r in runs if r["engine"] == "ray"})
    med = {k: statistics.median(r["images_per_s"] for r in runs if _shape(r) == k) / ref for k in shapes}
    lines += [
        "",
        "Median ratio to `sportsdet predict` by actors x threads: "
        + ", ".join(f"{k}: {v:.2f}" for k, v in med.items())
        + ". Goal: >= 0.7 on one machine with the same cores: 2 x 1 (the default on 2 CPUs) or 1 x 2; "
        "1 x 1 runs the model on one core while predict uses both, so it cannot keep up by design.",
        "",
        "### Unit costs measured here (one core each unless said)",
        "",
        "| what | value |",
        "|---|---|",
    ]
    c = payload["costs"]
    lines += [
        f"| photo size (sports100, mean of 200) | {c['photo_kb_mean']:.0f} KB |",
        f"| decode + resize, per photo (`load_image` + `resize_image`) | {c['decode_ms']:.2f} ms |",
        f"| model, per photo, one thread (batches of 2) | {c['model_ms_one_thread']:.2f} ms |",
        f"| decoded photo sent to an actor (uint8) | {c['decoded_kb_per_photo']:.0f} KB |",
        f"| actor start-up (new Ray actor loads the model, 3 tries) | "
        f"{', '.join(f'{s:.2f}' for s in c['actor_start_s'])} s |",
        f"| Ray Data, trivial 32-row blocks through one driver (tasks + results) | "
        f"{c['ray_blocks_per_s']:,.0f} blocks/s |",
        f"| listing a local folder ({c['listed_files']} files, `expand_inputs`) | "
        f"{c['list_files_per_s']:,.0f} files/s |",
        f"| resume check: hashing input names | {c['hash_inputs_per_s']:,.0f} inputs/s |",
        f"| result rows -> Arrow | {c['rows_to_arrow_per_s']:,.0f} rows/s |",
        f"| Parquet part write (driver) | {c['parquet_write_rows_per_s']:,.0f} rows/s, "
        f"{c['parquet_bytes_per_row']:.0f} bytes/row |",
        f"| resume: reading `input` of earlier parts | {c['resume_read_rows_per_s']:,.0f} rows/s |",
        "",
        "The scaling model for 10 to 100 nodes that rests on these numbers is in "
        "[docs/SCALING.md](../docs/SCALING.md).",
        markers(payload["photos"])[1],
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--photos", type=int, default=None, help="default: all of test (499)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-write", action="store_true", help="print only, leave RESULTS.md alone")
    args = parser.parse_args()

    import ray

    from sportsdet.bundle import builtin_bundle_path
    from sportsdet.files import cpu_count

    model = builtin_bundle_path()
    if not (args.data / "test").is_dir():
        sys.exit(f"error: {args.data}/test not found; pass --data path/to/sports100")
    photos = photo_list(args.data, args.photos)
    load_before = os.getloadavg()[0]
    log(f"{len(photos)} photos, model {model}")
    work = Path(tempfile.mkdtemp(prefix="sportsdet-scale-"))
    listing = work / "photos.txt"
    listing.write_text("\n".join(photos) + "\n")
    start = time.perf_counter()
    # Logical CPUs: the machine's plus the most actors run below (they mostly wait for decoding).
    ray.init(address="local", num_cpus=cpu_count() + 2, include_dashboard=False, logging_level="ERROR")
    ray_init_s = time.perf_counter() - start
    runs = []
    try:
        # One untimed pass first: the photos come from the page cache and the model's first load is
        # paid for every engine alike; its labels are what each Ray run is compared with.
        _, expected = run_predict(model, photos)
        log("warm-up predict pass done (not timed)")
        for round_ in range(1, args.rounds + 1):
            # Which engine goes first alternates: a drift of the machine's speed falls on both alike.
            shapes: list[tuple[int, int] | None] = [None, (1, 1), (2, 1), (1, 2)]  # None: predict
            for shape in shapes if round_ % 2 else shapes[1:] + shapes[:1]:
                if shape is None:
                    seconds, _ = run_predict(model, photos)
                    runs.append({"round": round_, "engine": "predict", "seconds": seconds,
                                 "images_per_s": len(photos) / seconds})  # fmt: skip
                    log(f"predict: {len(photos) / seconds:.1f} img/s")
                    continue
                # 1 actor x 1 thread uses one core for the model, 2 x 1 and 1 x 2 use both like predict.
                workers, threads = shape
                out = work / f"out-{workers}x{threads}"
                seconds, summary = run_ray(model, listing, out, workers, threads)
                same = compare(out, expected)
                rate = summary.written / seconds
                runs.append(
                    {
                        "round": round_,
                        "engine": "ray",
                        "workers": workers,
                        "threads": threads,
                        "seconds": seconds,
                        "images_per_s": rate,
                        "written": summary.written,
                        "failed": summary.failed,
                        "compare": same,
                    }
                )
                log(f"ray {workers} worker(s) x {threads} thread(s): {rate:.1f} img/s, {same}")
        costs = unit_costs(model, photos, args.data, work)
        log(f"unit costs: {costs}")
    finally:
        ray.shutdown()
        shutil.rmtree(work, ignore_errors=True)
    from sportsdet.bundle import load_bundle

    bundle = load_bundle(model, verify_weights=False)
    payload = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "model": f"{bundle.model_name}, {bundle.preprocessing.input_size} px",
        "warm_up": True,
        "photos": len(photos),
        "data": str(args.data.name)
        + ("/test" if args.photos is None or args.photos <= 499 else " test+train"),
        "cpus": cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "ray": ray.__version__,
        "ray_init_s": ray_init_s,
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
        "runs": runs,
        "costs": costs,
    }
    section = render(payload)
    print(section)
    if not args.no_write:
        start, end = markers(len(photos))
        results_file.write_results(payload, RESULTS_DIR / f"scale-{len(photos)}.json", section, start, end)


if __name__ == "__main__":
    main()
