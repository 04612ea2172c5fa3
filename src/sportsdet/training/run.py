"""Fit a model into a run folder: a new run or a resumed one, the recipe, calibration, the bundle.

    fit(data, out="runs/x", model="lite0")       # sportsdet.train.train() calls this, then
                                                 # evaluates the test split and writes the report
    -> plan_new_run() + start_new_run(): scan + split, resolve the options, write
       config/data_summary/split; or resume_run(): reload them and the last checkpoint
    -> the recipe (sportsdet.training.recipes) through the shared epoch loop
    -> temperature calibration on the validation split, folded into the classifier
    -> the bundle, from the best checkpoint, in RUN/model

Files and their names: sportsdet.run_folder. No pickle anywhere.
"""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.markup import escape

from sportsdet.abstain import score_name
from sportsdet.bundle import library_versions, load_bundle, save_bundle
from sportsdet.data.dataset import DataFileError
from sportsdet.data.discover import without_imbalance
from sportsdet.data.splits import SplitManifest
from sportsdet.errors import InterruptSaid, SportsdetError, WriteError
from sportsdet.files import sha256_file, write_json
from sportsdet.models import DEFAULT_MODEL, ModelSpec, get_model_spec
from sportsdet.near_copies import near_hashes
from sportsdet.preprocess import Preprocessing
from sportsdet.run_folder import (
    LAST_CHECKPOINT,
    LOCK,
    PREVIOUS_RUN,
    RunFolder,
    clear_run,
    drop_previous_run,
    lock_run,
    restore_previous_run,
)
from sportsdet.seen_photos import SEEN_NAME, SEEN_SPLITS, seen_photos_json
from sportsdet.training import distributed
from sportsdet.training.calibration import calibrate_temperature, fit_validation_abstain
from sportsdet.training.callbacks import Checkpointer, CurvesPlot, MetricsCSV, ProgressBar
from sportsdet.training.checkpoint import checkpoint_epoch, read_checkpoint, seed_everything, write_checkpoint
from sportsdet.training.loop import Callback, TrainContext, TrainResult, validation_logits
from sportsdet.training.options import (
    RESUME_OVERRIDABLE,
    TrainOptions,
    build_options,
    is_null,
    option_names,
    options_class,
    resolve_options,
)
from sportsdet.training.recipes import get_recipe


@dataclass
class RunSetup:
    """What a new run or a resume settles before any training: the inputs of the recipe."""

    run: RunFolder
    spec: ModelSpec
    options: TrainOptions
    manifest: SplitManifest
    data_summary: dict[str, Any]
    config: dict[str, Any]
    seed: int
    resume_state: tuple[dict[str, Any], dict[str, Any]] | None = None
    # Near-copy hash of every photo by path, made once when a new run starts (its warning, then
    # the bundle's seen_photos.json); None on a resume or another rank: made when needed.
    near_hashes: dict[str, str | None] | None = None


def fit(
    data: Any,
    *,
    out: str | Path,
    model: str | None = None,
    split: str | None = None,
    classes: str | Iterable[str] | None = None,
    seed: int | None = None,
    resume: bool = False,
    force: bool = False,
    options: dict[str, Any] | None = None,
    callbacks: list[Callback] | None = None,
    console: Console | None = None,
    after: Callable[[TrainResult], None] | None = None,
    maps: Iterable[str] = (),
    merge: Iterable[str] = (),
) -> TrainResult:
    """Train and write the run folder up to the bundle (see sportsdet.train.train for the arguments).

    The run folder is locked while this runs (a second process writing it is refused); `after`
    runs on the result before the lock is let go. Raises SportsdetError for bad input;
    KeyboardInterrupt leaves the last checkpoint in place.

    In a process group (sportsdet.training.distributed) every rank calls this with the same
    arguments (checked); rank 0 alone writes the run folder and runs `after` and `callbacks`,
    the others train with it quietly and get their setup from it.
    """
    console = console or Console(stderr=True, soft_wrap=True)  # log lines stay whole in files
    if not distributed.is_main():
        console = Console(quiet=True)  # rank 0 speaks for the job
    run = RunFolder(Path(out).expanduser())
    given = {key.replace("-", "_"): value for key, value in (options or {}).items()}
    distributed.check_same(
        _call_record(data, out, model, split, classes, seed, resume, force, given, maps, merge), "arguments"
    )
    if resume and force:
        raise SportsdetError(
            "--resume and --force contradict each other: resume keeps the run, force restarts it"
        )
    if seed is not None and not (isinstance(seed, int) and 0 <= seed < 2**64):  # torch's seed range
        raise SportsdetError(f"--seed {seed!r}: give a whole number from 0 to 2**64 - 1")
    with ExitStack() as held:
        if distributed.is_main():
            try:
                setup = _settle(
                    held, run, data, given, model=model, split=split, classes=classes, seed=seed,
                    resume=resume, force=force, console=console, maps=maps, merge=merge,
                )  # fmt: skip
            except BaseException as exc:  # the other ranks wait for the setup: tell them instead
                distributed.broadcast_json(
                    {"error": str(exc) if isinstance(exc, SportsdetError) else repr(exc)}
                )
                raise
            _share_setup(setup)
        else:
            setup = _setup_from_rank0()
        with _old_run_put_back_on_a_stop(run, console):
            _check_data_everywhere(setup.manifest)
            result = _fit(setup, console, callbacks or [])
        if after is not None and distributed.is_main():
            try:
                after(result)  # still holding the run folder
            except KeyboardInterrupt:
                console.print(
                    f"[yellow]interrupted[/]: the model bundle is saved in {escape(str(run.model))}; its "
                    "evaluation or report is not: "
                    f"`sportsdet evaluate {escape(shlex.quote(str(run.path)))}` writes both",
                    highlight=False,
                    soft_wrap=True,
                )
                raise InterruptSaid from None
    return result


@contextmanager
def _old_run_put_back_on_a_stop(run: RunFolder, console: Console) -> Iterator[None]:
    """The run --force set aside is put back if this one stops before its first checkpoint: also
    in the second between laying the new run out and the recipe (torch's lazy imports), where a
    Ctrl-C left the old run hidden in .previous-run and the advice ("start again with --force")
    deleted it. The recipe's own handler has put it back already when it got the stop."""
    try:
        yield
    except BaseException as exc:
        if not distributed.is_main() or run.last_checkpoint.is_file() or not restore_previous_run(run):
            raise
        if isinstance(exc, KeyboardInterrupt) and not isinstance(exc, InterruptSaid):
            console.print(
                "[yellow]interrupted[/] before the first checkpoint was written; the run that was in "
                f"{escape(str(run.path))} is back as it was (--force replaces it once a new run has a "
                "checkpoint)",
                highlight=False,
                soft_wrap=True,
            )
            raise InterruptSaid from None
        if not isinstance(exc, KeyboardInterrupt):
            console.print(f"[yellow]note:[/] the run that was in {escape(str(run.path))} is back as it was",
                          highlight=False, soft_wrap=True)  # fmt: skip
        raise


def _settle(held: ExitStack, run: RunFolder, data: Any, given: dict[str, Any], *, resume: bool, force: bool,
            console: Console, **args: Any) -> RunSetup:  # fmt: skip
    """A new run planned and laid out, or a resumed one reloaded; the run folder locked for `held`."""
    if run.path.exists() and not run.path.is_dir():
        raise SportsdetError(f"{run.path}: is a file; --out needs a folder for the run")
    if resume:
        given_data = [
            name
            for name, value in (("DATA", data), ("--classes", args["classes"]), ("--map", args["maps"]),
                                ("--merge", args["merge"]))
            if value
        ]  # fmt: skip
        if given_data:  # they were silently ignored
            console.print(
                f"[yellow]warning:[/] --resume continues on the run's saved split and classes; ignoring "
                f"{', '.join(given_data)}",
                highlight=False,
                soft_wrap=True,
            )
        if not run.path.is_dir():  # said without making a mistyped --out's folder (the lock would)
            _check_resumable(run)
        held.enter_context(lock_run(run))  # then a run another process is writing is said as such
        setup = resume_run(
            run, given, model=args["model"], split=args["split"], seed=args["seed"], console=console
        )
    else:
        if (run.path / LOCK).is_file() or run.written_by_sportsdet():
            # A run another process is writing is said as such, not "use --force"; a folder of the
            # user's gets no lock file from a refusal.
            held.enter_context(lock_run(run))
        setup = plan_new_run(run, data, given, force=force, console=console, **args)
        held.enter_context(lock_run(run))  # only now for a new folder: a refused run leaves none behind
        start_new_run(setup, force=force, console=console)
    write_json(run.config, setup.config)
    return setup


# ----------------------------------------------------------------------------- several processes


def _call_record(
    data: Any,
    out: Any,
    model: Any,
    split: Any,
    classes: Any,
    seed: Any,
    resume: bool,
    force: bool,
    given: dict[str, Any],
    maps: Iterable[str],
    merge: Iterable[str],
) -> dict[str, Any]:
    """How this process was started, as JSON: ranks compare it (sportsdet.training.distributed)."""
    paths = data if isinstance(data, (list, tuple)) else [data]
    record = {
        "data": [
            str(Path(p).expanduser().absolute()) if isinstance(p, (str, Path)) else str(p) for p in paths
        ],
        "out": str(out),
        "model": model,
        "split": split,
        "classes": classes if classes is None or isinstance(classes, str) else list(classes),
        "seed": seed,
        "resume": resume,
        "force": force,
        "maps": list(maps),
        "merge": list(merge),
        # One entry per option, so a difference is named by the option itself.
        **{f"option {k}": v for k, v in sorted(given.items()) if v is not None},
    }
    return json.loads(json.dumps(record, default=str))


def _share_setup(setup: RunSetup) -> None:
    """Rank 0 sends what the others train with: the split, options, seed and any checkpoint."""
    if not distributed.active():
        return
    distributed.broadcast_json({
        "run": str(setup.run.path), "model": setup.spec.name, "recipe": setup.options.recipe,
        "options": setup.options.to_dict(), "manifest": setup.manifest.to_dict(), "seed": setup.seed,
        "resume": setup.resume_state is not None,
    })  # fmt: skip
    if setup.resume_state is not None:
        distributed.broadcast_tensors(setup.resume_state[0])
        distributed.broadcast_json(setup.resume_state[1])


def _setup_from_rank0() -> RunSetup:
    """The setup rank 0 settled (so the ranks cannot disagree on the split or the options)."""
    shared = distributed.broadcast_json(None)
    if "error" in shared:
        raise SportsdetError(shared["error"])
    spec = get_model_spec(shared["model"])
    options = build_options(options_class(shared["recipe"]), shared["options"], spec.name)
    manifest = SplitManifest.from_dict(shared["manifest"], source="rank 0's split")
    resume_state = None
    if shared["resume"]:
        tensors = distributed.broadcast_tensors(None)
        resume_state = (tensors, distributed.broadcast_json(None))
    run = RunFolder(Path(shared["run"]))
    return RunSetup(run, spec, options, manifest, {}, {}, int(shared["seed"]), resume_state)


def _check_data_everywhere(manifest: SplitManifest) -> None:
    """Every rank must see the split's files, the same ones (names and sizes), at the same path."""
    if not distributed.active():
        return
    missing = manifest.missing_files()
    listing = [] if missing else [
        [rel, (manifest.root / rel).stat().st_size] for part in manifest.splits.values() for rel, _ in part
    ]  # fmt: skip
    views = distributed.all_gather_json({"missing": missing[:1], "count": len(missing),
                                         "files": distributed.fingerprint(listing)})  # fmt: skip
    bad = [r for r, view in enumerate(views) if view["count"] or view["files"] != views[0]["files"]]
    if bad:
        examples = "; ".join(
            f"rank {r}: {views[r]['count']} missing, e.g. {views[r]['missing'][0]}" if views[r]["count"]
            else f"rank {r}: different file sizes" for r in bad
        )  # fmt: skip
        raise SportsdetError(
            f"{manifest.root}: the training processes do not see the same data ({examples}); every "
            "machine needs the same files at the same path"
        )


def _fit(setup: RunSetup, console: Console, callbacks: list[Callback]) -> TrainResult:
    run = setup.run
    seed_everything(setup.seed)
    ctx = _context(setup, console, callbacks)
    started = time.time()
    # The run's clock goes on from the last checkpoint (a Ctrl-C'd process never reached config.json)
    # or from the end of the last finished process, whichever is later.
    before = float(setup.config.get("seconds_before_resume", 0.0))
    if setup.resume_state is not None:
        before = max(before, float(setup.resume_state[1].get("seconds") or 0.0))
    ctx.started = started - before
    result = _run_recipe(ctx)
    result.run_dir = run.path
    distributed.end_collectives()  # rank 0 goes on alone, for as long as it takes
    if not distributed.is_main():  # calibration, the bundle and config.json are rank 0's
        return result
    if _bundle_still_current(setup, result):
        console.print(
            f"the model bundle is kept as it is ({run.model}): no epoch was trained since it was written",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
        return result
    try:
        calibration = _calibrate(ctx, result)
        seconds = time.time() - started
        total_seconds = round(time.time() - ctx.started, 1)
        _save_bundle(setup, ctx, result, calibration, total_seconds)
        setup.config["seconds_before_resume"] = total_seconds
        write_json(run.config, setup.config)
    except KeyboardInterrupt:  # the epochs are kept; only the bundle is still to write
        console.print(
            f"[yellow]interrupted[/] after the last epoch, before the model bundle was written: finish "
            f"with `sportsdet train --out {escape(shlex.quote(str(run.path)))} --resume`",
            highlight=False,
            soft_wrap=True,
        )
        raise InterruptSaid from None
    best = result.best
    summary = f"best epoch {best['epoch']}"
    if best.get("val_acc") is not None:
        summary += f": val_acc {best['val_acc']:.3f}, val_loss {best['val_loss']:.4f}"
    console.print(
        f"done in {seconds:.0f}s; {summary}; model bundle: {run.model}",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )
    result.run_dir = run.path
    return result


def _bundle_still_current(setup: RunSetup, result: TrainResult) -> bool:
    """A resumed run that trained nothing more keeps its bundle, when it is whole and of these
    epochs: written again, it dropped the files exported beside it (model.onnx, model.int8.onnx)
    and, calibrated anew, changed its weights' hash, so the run's other evaluations read as ones
    of an earlier model."""
    if setup.resume_state is None or result.best is None:
        return False
    try:
        bundle = load_bundle(setup.run.model)  # its weights checked against their hash
    except SportsdetError:
        return False  # missing or damaged: written again
    if not (bundle.path / SEEN_NAME).is_file():  # part of a whole bundle: written again
        return False
    training = bundle.manifest.get("training") or {}
    same_epochs = training.get("epochs_run") == len(result.history)

    def shaping(options: Any) -> Any:
        # What a resume may change (--workers, --patience, ...) shapes no epoch already trained: a
        # resume of a finished run with another --workers rewrote the bundle and lost its ONNX files.
        if not isinstance(options, dict):
            return options
        return {key: value for key, value in options.items() if key not in RESUME_OVERRIDABLE}

    now = json.loads(json.dumps(setup.options.to_dict()))
    same_options = shaping(training.get("options")) == shaping(now)
    return same_epochs and same_options and training.get("best_epoch") == result.best.get("epoch")


# ----------------------------------------------------------------------------- a new run


def plan_new_run(
    run: RunFolder,
    data: Any,
    given: dict[str, Any],
    *,
    model: str | None,
    split: str | None,
    classes: str | Iterable[str] | None,
    seed: int | None,
    force: bool,
    console: Console,
    maps: Iterable[str] = (),
    merge: Iterable[str] = (),
) -> RunSetup:
    """Scan and split DATA (one folder, several, or a dataset file) and resolve the options.

    Nothing is written yet.
    """
    if data is None or (isinstance(data, (list, tuple)) and not data):
        raise SportsdetError("give the DATA folder to train on")
    _refuse_existing(run, force)
    spec = get_model_spec(model or DEFAULT_MODEL)
    run_seed = 0 if seed is None else int(seed)
    options = resolve_options(spec, given)
    _check_model_config(spec, options)
    manifest, summary, data_text, near = _split_data(
        data, split, run_seed, classes, list(maps), list(merge), console, out=run.path
    )
    summary["warnings"] = list(summary["warnings"]) + _duplicate_warnings(manifest, near)
    if options.class_weight == "balanced":  # the imbalance warning's advice, already taken
        summary["warnings"] = without_imbalance(summary["warnings"])
    for warning in summary["warnings"]:
        console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False, soft_wrap=True)
    for note in manifest.notes:
        console.print(f"[yellow]note:[/] {escape(note)}", highlight=False, soft_wrap=True)
    if len(manifest.classes) < 2:
        raise SportsdetError(f"{data_text}: training needs at least 2 classes, found {len(manifest.classes)}")
    config = {
        "model": spec.name,
        "recipe": options.recipe,
        "data": data_text,
        "split": manifest.strategy,
        "classes": list(manifest.classes),
        "seed": run_seed,
        "options": options.to_dict(),
        "versions": library_versions(),
    }
    if manifest.sources:
        config["sources"] = {name: info["root"] for name, info in manifest.sources.items()}
    return RunSetup(run, spec, options, manifest, summary, config, run_seed, near_hashes=near)


def _refuse_out_inside_data(out: Path, manifest: SplitManifest) -> None:
    for root in manifest.data_roots:
        if out.resolve().is_relative_to(root.resolve()):
            raise SportsdetError(
                f"--out {out} is inside the data folder {root}: its curves and galleries would be "
                "read as photos of a class named after it next time; choose an --out outside the data"
            )


def _duplicate_warnings(manifest: SplitManifest, near: dict[str, str | None]) -> list[str]:
    """Byte copies and near copies across splits or classes (what `data check` reports), said
    before training; `near`: every photo's near-copy hash by path."""
    from sportsdet.data.check import duplicate_warnings, manifest_copies

    return duplicate_warnings(manifest_copies(manifest, near), manifest.data_roots)


def _split_data(
    data: Any,
    split: str | None,
    seed: int,
    classes: Any,
    maps: list[str],
    merge: list[str],
    console: Console,
    out: Path,
) -> tuple[SplitManifest, dict[str, Any], str, dict[str, str | None]]:
    """(manifest, data summary, how to name the data, each photo's near-copy hash) for one
    folder or several sources. Every photo is hashed once here: a drawn split keeps copies
    together with them, and the bundle's seen_photos.json reuses them."""
    from sportsdet.data.discover import scan_dataset
    from sportsdet.data.sources import (
        Sources,
        is_dataset_file,
        is_multi_source,
        make_multi_split,
        reuse_multi_split,
        scan_sources,
        sources_from_args,
        sources_summary,
    )
    from sportsdet.data.splits import is_saved_split, keep_copies_together, make_split, reuse_saved_split

    def hashed(manifest: SplitManifest) -> tuple[SplitManifest, dict[str, str | None]]:
        _refuse_out_inside_data(out, manifest)  # before minutes of hashing
        photos = [manifest.root / rel for rels in manifest.splits.values() for rel, _ in rels]
        with console.status(f"looking for near copies among {len(photos):,} photos"):  # ~0.5 ms a photo
            near = near_hashes(photos)
        return (manifest if saved else keep_copies_together(manifest, near)), near

    saved = is_saved_split(split)
    paths = list(data) if isinstance(data, (list, tuple)) else [data]
    if not is_multi_source(paths, maps):  # one folder: the plain split manifest, as before
        scan = scan_dataset(paths[0])
        if saved:
            photos = [(record.rel, record.label, "") for record in scan.records if record.label]
            manifest = reuse_saved_split(split, scan.root, photos, classes)
        else:
            manifest = make_split(
                scan, split or ("official" if scan.layout == "split" else "random:0.2"), seed, classes
            )
        if classes or saved:
            scan = scan.restricted_to(manifest.classes)
        manifest, near = hashed(manifest)
        return manifest, scan.to_dict(), str(scan.root), near
    sources = paths[0] if isinstance(paths[0], Sources) else sources_from_args(paths, maps, merge)
    scans = scan_sources(sources, classes)
    if saved:
        manifest = reuse_multi_split(scans, split, classes)
    else:
        manifest = make_multi_split(scans, split, seed, classes)
    if saved:  # the saved split's classes, not those added since: warned about as the run sees them
        scans = [replace(item, scan=item.scan.restricted_to(manifest.classes)) for item in scans]
    manifest, near = hashed(manifest)
    return (
        manifest,
        sources_summary(scans, manifest),
        sources.origin if isinstance(paths[0], Sources) or is_dataset_file(paths[0]) else str(manifest.root),
        near,
    )


def start_new_run(setup: RunSetup, *, force: bool, console: Console) -> None:
    """Lay out the run folder (split, data summary); with --force, first remove the old run's files."""
    run = setup.run
    _refuse_existing(run, force)  # again, now that we hold the folder
    if force:
        for kept in clear_run(run, set_aside=True):
            console.print(
                f"[dim]--force kept {escape(str(kept))} (not written by sportsdet)[/]", highlight=False,
                soft_wrap=True,
            )
    setup.manifest.save(run.split)
    write_json(run.data_summary, setup.data_summary)


def _refuse_existing(run: RunFolder, force: bool) -> None:
    if not run.has_content():
        return
    if not run.written_by_sportsdet():  # --force would delete files named like ours (config.json)
        raise SportsdetError(
            f"{run.path}: holds files but no sportsdet run; --force replaces only a run: choose another --out"
        )
    if not force:
        # A run stopped before its first epoch ended: --resume says "nothing to resume".
        resumable = run.last_checkpoint.is_file() or run.last_checkpoint.with_suffix(".json").is_file()
        if resumable or (run.path / PREVIOUS_RUN).is_dir():  # resume puts a set-aside run back
            hint = "use --resume to continue it, --force to replace it"
        elif run.model_manifest.is_file():  # finished, its checkpoints deleted (or not copied)
            hint = "--force replaces it"
        else:
            hint = "it never finished an epoch, so there is nothing to resume: --force starts it over"
        raise SportsdetError(f"{run.path}: already holds a run; {hint}, or choose another --out")


# ----------------------------------------------------------------------------- resuming


def _read_run_json(path: Path, what: str) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise SportsdetError(
            f"{path}: cannot read the run's {what} ({detail}); the run cannot be resumed: start again "
            "with --force"
        ) from None
    if not isinstance(value, dict):
        raise SportsdetError(
            f"{path}: the run's {what} is damaged (not a JSON object); start again with --force"
        )
    return value


def _check_resumable(run: RunFolder) -> None:
    if run.last_checkpoint.is_file():
        return
    record = run.last_checkpoint.with_suffix(".json")  # written beside each checkpoint
    if record.is_file():  # epochs were finished: the file went since (deleted, a partial copy)
        raise SportsdetError(
            f"{run.last_checkpoint}: missing, though the run has finished epochs ({record.name} is "
            "here); restore the file to resume. Its model, evaluation and report, if written, are "
            "still usable; --force would start the run over"
        )
    if run.config.is_file():  # laid out, then stopped (or failed) before its first epoch ended
        raise SportsdetError(
            f"{run.path}: this run never finished an epoch, so there is nothing to resume; start it "
            "again with the same DATA and options and --force"
        )
    raise SportsdetError(
        f"{run.path}: nothing to resume (no sportsdet run here: no checkpoints/last.safetensors); check "
        "the --out folder, or start the run without --resume"
    )


def _stored_config(run: RunFolder, console: Console) -> tuple[dict[str, Any], ModelSpec, dict[str, Any]]:
    """A resumed run's config.json, its model and its options as stored (every option of the
    recipe; those of an older sportsdet dropped with a warning), checked as they are."""
    config = _read_run_json(run.config, "config")
    missing = [key for key in ("model", "recipe", "split", "seed", "options") if key not in config]
    if missing or not isinstance(config.get("options"), dict):
        raise SportsdetError(
            f"{run.config}: the run's config is damaged (missing {', '.join(missing) or 'options'}); "
            "start again with --force"
        )
    spec = get_model_spec(config["model"])
    stored = dict(config["options"])
    known = set(option_names(str(config["recipe"])))
    for key in sorted(set(stored) - known):  # options of an older sportsdet: say so, keep going
        console.print(f"[yellow]warning:[/] the run's option {key}={stored.pop(key)!r} is no longer used",
                      highlight=False, soft_wrap=True)  # fmt: skip
    # What config.json holds is checked as stored, so that a damaged value is blamed on the file
    # ("--epochs='ten'" named a flag the user never gave), and before any flag is merged in.
    try:
        int(config["seed"])
        float(config.get("seconds_before_resume", 0.0))
        build_options(options_class(str(config["recipe"])), stored, spec.name)
    except (SportsdetError, TypeError, ValueError) as exc:
        raise SportsdetError(
            f"{run.config}: the run's config is damaged ({exc}); restore it, or start again with --force"
        ) from None
    return config, spec, stored


def _resumed_split(run: RunFolder, config: dict[str, Any]) -> SplitManifest:
    """A resumed run's split.json: the classes its checkpoints were made for, every file still there."""
    manifest = SplitManifest.load(run.split)
    if isinstance(config.get("classes"), list) and list(manifest.classes) != list(config["classes"]):
        raise SportsdetError(
            f"{run.split}: its classes are not those of {run.config} (the checkpoints are of those); "
            "restore it as it was, or start again with --force"
        )
    # Training goes on with its train and valid photos; a test photo gone since is evaluation's to
    # skip and say (it refused the resume, calling it a training file).
    gone = manifest.missing_files(("train", "valid"))
    if gone:
        # A run copied to another machine, or its photos moved: the split follows them to a new run.
        command = f"`sportsdet train {'DATASET_FILE' if manifest.sources else 'NEW_PLACE'} --split " \
            f"{shlex.quote(str(run.split))} --out NEW_RUN`"  # fmt: skip
        # Several sources: a dataset file naming each where it is now, under the same source names.
        each = " (a dataset file of the same source names, each where it is now)" if manifest.sources else ""
        moved = (
            f"; moved? {command}{each} trains on the same split where they are now"
            if len(gone) == sum(len(manifest.items(name)) for name in ("train", "valid")) else ""
        )  # fmt: skip
        raise SportsdetError(
            f"{run.split}: {len(gone)} training or validation file(s) are gone from {manifest.root} "
            f"(e.g. {gone[0]}); restore them or start a new run{moved}"
        )
    return manifest


def resume_run(
    run: RunFolder,
    given: dict[str, Any],
    *,
    model: str | None,
    split: str | None,
    seed: int | None,
    console: Console,
) -> RunSetup:
    """Reload a run's config, split, data summary and last checkpoint; only a few options may change."""
    # A `train --force` killed before its first checkpoint left the run it replaced set aside.
    if distributed.is_main() and not run.last_checkpoint.is_file() and restore_previous_run(run):
        console.print(
            f"[yellow]note:[/] a `train --force` into {escape(str(run.path))} stopped before its first "
            "checkpoint (killed?); the run it was to replace is back as it was",
            highlight=False,
            soft_wrap=True,
        )
    _check_resumable(run)
    # Temp files of checkpoint writes a killed process left (each checkpoint-sized).
    for leftover in run.last_checkpoint.parent.glob(".*.tmp*"):
        leftover.unlink(missing_ok=True)
    config, spec, stored = _stored_config(run, console)
    known = set(option_names(str(config["recipe"])))
    unknown = {key: value for key, value in given.items() if value is not None and key not in known}
    if unknown:  # a mistyped --set: refused as for a new run (build_options says which are known)
        build_options(options_class(str(config["recipe"])), unknown, spec.name)
    for key, value in given.items():
        if value is None:
            continue
        if key in RESUME_OVERRIDABLE:
            stored[key] = value
        elif stored.get(key) != (None if is_null(value) else value):
            shown = "null" if is_null(value) else repr(value)
            console.print(
                f"[yellow]warning:[/] --resume keeps the run's {key}={stored.get(key)!r}; ignoring {shown}",
                highlight=False,
                soft_wrap=True,
            )
    for value, key in ((model, "model"), (split, "split"), (seed, "seed")):
        if value is not None and value != config[key]:
            console.print(
                f"[yellow]warning:[/] --resume keeps the run's {key}={config[key]!r}; ignoring {value!r}",
                highlight=False,
                soft_wrap=True,
            )
    options = build_options(options_class(str(config["recipe"])), stored, spec.name)
    manifest = _resumed_split(run, config)
    data_summary = _read_run_json(run.data_summary, "data summary")
    state = read_checkpoint(run.last_checkpoint)
    done = _epochs_done(state[1])
    if state[1].get("stage") == "finetune" and state[1].get("stage_done") and options.epochs > done:
        # More fine-tuning epochs for a finished transfer run: the stage goes on, as the scratch
        # loop's does (it was skipped as finished, while config.json and the bundle said N epochs).
        state[1]["stage_done"] = False
    _reconcile_best(run, state, options.epochs > done, console)
    if given.get("epochs") is not None and options.epochs < done:
        # Ignored by the loop, but recorded: config.json and the bundle said 3 epochs of a 6-epoch run.
        console.print(
            f"[yellow]warning:[/] --epochs {options.epochs}: the run has trained {done} epoch(s) already; "
            f"it ends now, with {done}",
            highlight=False,
            soft_wrap=True,
        )
        options = replace(options, epochs=done)
    if state[1].get("stopped_early"):
        _train_on_after_early_stop(state[1], given.get("patience"), options, console)
    elif done and options.epochs <= done and given.get("epochs") is None:
        # It went through the data, the bundle and the evaluation again without a word.
        console.print(
            f"[yellow]note:[/] the run has trained its {done} epoch(s); nothing more to train: its model "
            f"bundle is kept (written again only if missing or damaged), then evaluated and reported "
            f"unless turned off. To train on: --resume --epochs N (above {done})",
            highlight=False,
            soft_wrap=True,
        )
    config["options"] = options.to_dict()
    return RunSetup(run, spec, options, manifest, data_summary, config, int(config["seed"]), state)


def _reconcile_best(
    run: RunFolder, last: tuple[dict[str, Any], dict[str, Any]], more_epochs: bool, console: Console
) -> None:
    """best.* must hold the epoch the last checkpoint names as best. A process killed between
    the two writes (nothing defers SIGKILL) left best.* of the next epoch: set right here, from
    the last checkpoint's weights when the best epoch is its own, else by choosing the best epoch
    again from the epochs still to train."""
    tensors, state = last
    wanted = (state.get("best") or {}).get("epoch")
    best_file = run.best_checkpoint
    if wanted is None:
        return
    try:
        saved = (read_checkpoint(best_file)[1].get("best") or {}).get("epoch")
        why = "the run was killed between its two checkpoint writes"
    except SportsdetError:
        saved = None  # missing or damaged: as good as another epoch's
        why = f"{best_file.name} is damaged" if best_file.is_file() else f"{best_file.name} is missing"
    if saved == wanted:
        return
    if wanted == state.get("epoch"):
        weights = {key: value for key, value in tensors.items() if key.startswith("model.")}
        write_checkpoint(best_file, weights, {"kind": "best", "best": state["best"]})
        console.print(
            f"[yellow]note:[/] {best_file} was of another epoch (the run was killed between its two "
            f"checkpoint writes); rewritten from epoch {wanted}, the best",
            highlight=False,
            soft_wrap=True,
        )
        return
    if not more_epochs:
        raise SportsdetError(
            f"{best_file}: the weights of the best epoch ({wanted}) were lost ({why}); resume with more "
            "--epochs to train on and choose a best epoch again"
        )
    state["best"], state["epochs_since_best"] = None, 0
    console.print(
        f"[yellow]warning:[/] the weights of the best epoch ({wanted}) were lost ({why}); the best epoch "
        "is chosen again from the epochs to come",
        highlight=False,
        soft_wrap=True,
    )


def _train_on_after_early_stop(
    state: dict[str, Any], patience: int | None, options: Any, console: Console
) -> None:
    """A run early stopping ended trains on when --resume gives a longer --patience (or 0: never);
    else it ends as it is, and says how to train on (it used to end in silence)."""
    since, done = int(state.get("epochs_since_best", 0)), _epochs_done(state)
    stopped = f"the run stopped early after epoch {done} ({since} epoch(s) without a better one)"
    if patience is not None and (patience == 0 or patience > since) and options.epochs > done:
        state["stopped_early"] = state["stage_done"] = False
        console.print(f"[yellow]note:[/] {stopped}; training on to epoch {options.epochs} "
                      f"with --patience {patience}", highlight=False, soft_wrap=True)  # fmt: skip
        return
    console.print(
        f"[yellow]note:[/] {stopped}; nothing more to train. To train on: --resume --patience N "
        f"(more than {since}, or 0 for never), with --epochs above {done} if need be",
        highlight=False,
        soft_wrap=True,
    )


def _epochs_done(state: dict[str, Any]) -> int:
    """Epochs of the stage --epochs counts (the scratch loop; the transfer recipe's fine-tuning) that
    the last checkpoint has behind it."""
    if state.get("stage") == "head":
        return 0
    return int(state.get("stage_epoch") or 0)


# ----------------------------------------------------------------------------- training


def model_preprocessing(spec: ModelSpec, options: TrainOptions) -> tuple[Preprocessing, dict[str, Any]]:
    """The model's preprocessing, with an optional smaller/larger input_size (tests, experiments)."""
    preprocessing = spec.preprocessing
    config = dict(options.model_config)
    size = options.input_size
    if size is not None and size != preprocessing.input_size:
        preprocessing = replace(preprocessing, input_size=size)
        if spec.takes_input_size:
            config["input_size"] = size  # the from-scratch CNN sizes its dense layer by it
    if getattr(options, "distance_head", False):
        config["distance_head"] = True  # a builder argument: the bundle rebuilds the same head
    return preprocessing, config


def _check_model_config(spec: ModelSpec, options: TrainOptions) -> None:
    """`--set model_config={...}` the model's builder does not take: one clear line now, not a
    TypeError traceback from inside the recipe once the run folder is laid out."""
    if not options.model_config:
        return
    from sportsdet.models import build_model

    _, config = model_preprocessing(spec, options)
    try:
        build_model(spec.name, num_classes=2, pretrained=False, **config)
    except (TypeError, ValueError, RuntimeError, SportsdetError) as exc:  # RuntimeError: torch's (size -1)
        given = json.dumps(options.model_config, default=str)
        raise SportsdetError(f"--set model_config={given}: {spec.name} does not take it ({exc})") from None


def _context(setup: RunSetup, console: Console, extra: list[Callback]) -> TrainContext:
    preprocessing, model_config = model_preprocessing(setup.spec, setup.options)
    ctx = TrainContext(
        run_dir=setup.run.path,
        spec=setup.spec,
        labels=list(setup.manifest.classes),
        manifest=setup.manifest,
        options=setup.options,
        seed=setup.seed,
        preprocessing=preprocessing,
        model_config=model_config,
        console=console,
        resume=setup.resume_state,
    )
    if setup.resume_state is not None:
        ctx.history = list(setup.resume_state[1]["history"])  # so callbacks see it from the start
    run = setup.run
    ctx.callbacks = [
        ProgressBar(console),
        MetricsCSV(run.metrics),
        CurvesPlot(run.curves, every=setup.options.curves_every),
        Checkpointer(run.checkpoints),
        *extra,
    ] if distributed.is_main() else []  # fmt: skip
    counts = {s: len(setup.manifest.items(s)) for s in ("train", "valid", "test")}
    # A saved split (--split FILE) was drawn with its own seed, which --seed does not change.
    split_seed = setup.manifest.seed
    seeds = f"seed {setup.seed}"
    if split_seed != setup.seed:
        seeds = f"split seed {split_seed}, run seed {setup.seed}"
    console.print(
        f"training {setup.spec.name} on {len(ctx.labels)} classes: {counts['train']} train, "
        f"{counts['valid']} valid, {counts['test']} test images "
        f"({setup.manifest.strategy}, {seeds}) -> {run.path}"
        + (f" in {distributed.world_size()} processes" if distributed.active() else ""),
        highlight=False,
        markup=False,
        soft_wrap=True,
    )
    if counts["valid"] == 0:
        console.print(
            "[yellow]note:[/] no validation images: the best checkpoint is the last epoch and "
            "early stopping is off",
            soft_wrap=True,
        )
    return ctx


def _run_recipe(ctx: TrainContext) -> TrainResult:
    """The recipe, with Ctrl-C and bad files turned into what the user should do next."""
    run_dir = ctx.run_dir
    try:
        try:
            result = get_recipe(ctx.options.recipe)(ctx)
        except Exception as exc:  # our own errors say what they are; a broken collective may not
            ours = isinstance(exc, SportsdetError)
            if not ours and distributed.is_main() and distributed.peer_interrupted():
                raise KeyboardInterrupt from None  # Ctrl-C ended another rank first
            raise
    except KeyboardInterrupt:
        last = ctx.checkpoint_dir / LAST_CHECKPOINT
        if _settle_replaced_run(ctx):
            ctx.console.print(
                "[yellow]interrupted[/] before the first checkpoint was written; the run that was in "
                f"{escape(str(run_dir))} is back as it was (--force replaces it once a new run has a "
                "checkpoint)",
                highlight=False,
                soft_wrap=True,
            )
        elif last.is_file():
            # What the checkpoint holds: the epoch stopped between its history row and its
            # checkpoint was counted as finished ("after 43" of a checkpoint at 42).
            kept = checkpoint_epoch(last) or len(ctx.history)
            ctx.console.print(
                f"[yellow]interrupted[/] after {kept} finished epoch(s); the last checkpoint is "
                f"kept. Continue with: sportsdet train --out {escape(shlex.quote(str(run_dir)))} --resume",
                highlight=False,
                soft_wrap=True,
            )
        else:
            ctx.console.print(
                # Not "before the first epoch finished": its line may be printed, its checkpoint not yet.
                "[yellow]interrupted[/] before the first checkpoint was written; nothing to resume. "
                "Start again with --force.",
                highlight=False,
                soft_wrap=True,
            )
        raise InterruptSaid from None
    except DataFileError as exc:
        # The split lists the bad file, so this run cannot be resumed once the file is moved.
        back = " (the run that was there before --force is back)" if _settle_replaced_run(ctx) else ""
        raise SportsdetError(f"{exc} with --force (the run in {run_dir} stopped there){back}") from None
    except Exception as exc:
        restored = _settle_replaced_run(ctx)
        if restored:
            back = f"[yellow]note:[/] the run that was in {escape(str(run_dir))} is back as it was"
            # Its checkpoint is the finished run's: --resume would only score that one again.
            back += "; once this is fixed, start again with --force" if _cannot_write(exc) else ""
            ctx.console.print(back, highlight=False, soft_wrap=True)
        last = ctx.checkpoint_dir / LAST_CHECKPOINT
        if _cannot_write(exc) and not restored and last.is_file():  # a full disk said only "No space left"
            ctx.console.print(
                f"[yellow]note:[/] the checkpoint of epoch {checkpoint_epoch(last) or len(ctx.history)} is "
                "kept; once this is fixed, continue with: sportsdet train --out "
                f"{escape(shlex.quote(str(run_dir)))} --resume",
                highlight=False,
                soft_wrap=True,
            )
        raise
    _settle_replaced_run(ctx)
    if result.best is None:
        raise SportsdetError(f"{run_dir}: training finished without any epoch; nothing to save")
    return result


def _cannot_write(exc: BaseException) -> bool:
    return isinstance(exc, (OSError, WriteError)) or type(exc).__name__ == "SafetensorError"


def _settle_replaced_run(ctx: TrainContext) -> bool:
    """The run --force set aside: dropped once the new run has a checkpoint, else put back (True)."""
    if not distributed.is_main():
        return False
    run = RunFolder(ctx.run_dir)
    if (ctx.checkpoint_dir / LAST_CHECKPOINT).is_file():
        drop_previous_run(run)
        return False
    return restore_previous_run(run)


def _calibrate(ctx: TrainContext, result: TrainResult) -> dict[str, Any]:
    """Fit the softmax temperature on the validation split and fold it into the classifier;
    then the abstain threshold on the calibrated scores (returned under "abstain")."""
    calibrated: dict[str, Any] = {"temperature": 1.0, "method": "none"}
    if not ctx.options.calibrate:  # `info` said "not calibrated: no reason recorded"
        calibrated["why"] = "turned off (--set calibrate=false)"
    if not ctx.options.calibrate and not ctx.options.abstain_coverage:
        return calibrated
    if result.valid_logits is not None:
        valid = (result.valid_logits, np.asarray([label for _, label in ctx.manifest.items("valid")]))
    else:
        valid = validation_logits(ctx, result.model)
    if valid is None:
        calibrated["why"] = "no validation split to fit a temperature on"
        return calibrated
    if ctx.options.calibrate:
        calibrated = calibrate_temperature(result.model, ctx.spec.output_key, *valid)
        if calibrated["method"] == "none":
            ctx.console.print(
                f"[dim]scores not calibrated: {escape(calibrated['why'])}[/]", highlight=False, soft_wrap=True
            )
        else:
            ctx.console.print(
                f"calibrated scores: temperature {calibrated['temperature']:.3f} (validation ECE "
                f"{calibrated['valid_ece_before']:.1%} -> {calibrated['valid_ece_after']:.1%})",
                highlight=False,
                soft_wrap=True,
            )
    abstain = fit_validation_abstain(*valid, calibrated["temperature"], ctx.options.abstain_coverage)
    if abstain is not None:
        calibrated["abstain"] = abstain
        ctx.console.print(
            f"[dim]abstain: {escape(_abstain_summary(abstain))}[/]", highlight=False, soft_wrap=True
        )
    return calibrated


def _abstain_summary(abstain: dict[str, Any]) -> str:
    if abstain.get("threshold") is None:
        return f"no threshold ({abstain.get('why')})"
    return (
        f"{score_name(abstain['method'])} under {abstain['threshold']:.3f} is 'uncertain' "
        f"({abstain.get('valid_coverage', 0):.1%} of validation photos answered)"
    )


def _save_bundle(
    setup: RunSetup, ctx: TrainContext, result: TrainResult, calibration: dict[str, Any], seconds: float
) -> None:
    manifest, run, best = setup.manifest, setup.run, result.best
    abstain = calibration.pop("abstain", None)  # its own top-level bundle.json entry
    # So that scoring it on these photos again is never taken for a test (seen_photos.py).
    def gone(paths: list[str]) -> None:
        ctx.console.print(
            f"[yellow]warning:[/] {len(paths)} training or validation photo(s) are gone since training read "
            f"them (e.g. {escape(paths[0])}): left out of the model's seen_photos.json",
            highlight=False, soft_wrap=True,
        )  # fmt: skip

    seen = seen_photos_json(
        {split: [path for path, _ in manifest.items(split)] for split in SEEN_SPLITS}, setup.near_hashes, gone
    )
    save_bundle(
        run.model,
        state_dict=result.model.state_dict(),
        model_name=setup.spec.name,
        model_config=ctx.model_config,
        labels=ctx.labels,
        preprocessing=ctx.preprocessing,
        output_key=setup.spec.output_key,
        data={
            "root": str(manifest.root),
            "split": manifest.strategy,
            "manifest": str(run.split.resolve()),
            "manifest_sha256": sha256_file(run.split),
            "counts": {s: len(manifest.items(s)) for s in ("train", "valid", "test")},
            "scan": setup.data_summary,
        },
        training={
            "recipe": setup.options.recipe,
            "epochs_run": len(result.history),
            "best_epoch": best.get("epoch"),
            "seconds": seconds,
            "seed": setup.seed,
            "options": setup.options.to_dict(),
            "resumed": setup.resume_state is not None,
            **result.info,
            "calibration": calibration,
        },
        metrics={
            "best_val_accuracy": best.get("val_acc"),
            "best_val_loss": best.get("val_loss"),
            "best_epoch_train_accuracy": best.get("train_acc"),
            "selected_by": "val_acc" if best.get("val_acc") is not None else "last epoch (no validation set)",
        },
        abstain=abstain,
        extra_files={SEEN_NAME: seen},
        label_aliases=_aliases_of_maps(manifest.sources, ctx.labels),
    )


def _aliases_of_maps(sources: dict[str, dict[str, Any]], labels: list[str]) -> dict[str, str]:
    """The folder names the run's label maps renamed, as other names of their labels: a source's
    own 'football' folder (mapped to 'american football') was "not among the model's labels" to
    evaluate. A name two maps send to different labels, or that is a label itself, is none."""
    seen: dict[str, set[str]] = {}
    for info in sources.values():
        for old, new in (info.get("map") or {}).items():
            if old != new and new in labels and old not in labels:
                seen.setdefault(old, set()).add(new)
    return {old: next(iter(news)) for old, news in seen.items() if len(news) == 1}
