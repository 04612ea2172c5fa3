"""Reading what train and evaluate wrote, for the report.

The report shows numbers; it never makes them. Everything here only reads the run folder
(config.json, data_summary.json, split.json, metrics.csv, model/bundle.json) and the
evaluation folder (metrics.json, predictions.csv) described in docs/ARCHITECTURE.md.
A part that is missing is simply absent (the page says what to run); a part that is present
but damaged raises a `SportsdetError` naming the file, because a report built on a half-read
file would show wrong numbers.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sportsdet.bundle import load_bundle
from sportsdet.errors import BundleError, SportsdetError
from sportsdet.files import name_as_written
from sportsdet.run_folder import METRICS_COLUMNS, RunFolder, is_run_dir

PREDICTION_COLUMNS = ("path", "true_label", "pred_label", "confidence", "true_prob")
# Where a `sportsdet data check --report FILE` result is looked for when none is named.
CHECK_REPORT_NAMES = ("data_check.json", "check.json", "data-check.json")


@dataclass
class Prediction:
    """One row of predictions.csv; `image` is the resolved file (None when it cannot be found)."""

    path: str
    true_label: str
    pred_label: str
    confidence: float
    true_prob: float
    image: Path | None = None

    @property
    def correct(self) -> bool:
        return self.true_label == self.pred_label


@dataclass
class ReportInputs:
    """Everything the report can show; any part may be None when its file is absent."""

    source: Path
    run_dir: Path | None = None
    eval_dir: Path | None = None
    config: dict[str, Any] | None = None
    data_summary: dict[str, Any] | None = None
    split: dict[str, Any] | None = None
    history: list[dict[str, Any]] | None = None
    curves_png: Path | None = None
    bundle: dict[str, Any] | None = None
    bundle_path: Path | None = None
    check: dict[str, Any] | None = None
    check_path: Path | None = None
    check_of_other_data: list[str] = field(default_factory=list)  # the check's folders, when not this page's
    metrics: dict[str, Any] | None = None
    predictions: list[Prediction] | None = None
    # The run's other evaluations (RUN/eval, RUN/eval-<what>) besides the one shown: (folder, metrics).
    other_evals: list[tuple[Path, dict[str, Any]]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return (self.run_dir or self.eval_dir or self.source).name

    @property
    def labels(self) -> list[str]:
        """Label order: the evaluation's, else the model's, else the split's."""
        for holder, key in ((self.metrics, "labels"), (self.bundle, "labels"), (self.split, "classes")):
            if holder and isinstance(holder.get(key), list):
                return [str(label) for label in holder[key]]
        return []

    @property
    def data_sources(self) -> dict[str, str]:
        """Source name -> folder, for a run trained on several sources (else empty)."""
        sources = (self.split or {}).get("sources")
        if not isinstance(sources, dict):
            return {}
        return {
            str(name): str(info["root"])
            for name, info in sources.items()
            if isinstance(info, dict) and info.get("root")
        }

    @property
    def evaluates_other_photos(self) -> bool:
        """An evaluation of photos other than the run's test split (RUN/eval-<data>)."""
        if self.run_dir is None or self.eval_dir is None:
            return False
        return self.eval_dir != RunFolder(self.run_dir).eval

    @property
    def page_data_roots(self) -> list[str]:
        """The folders this page's photos come from, as a data check of them names them: the
        evaluated folder of another evaluation, else the run's sources or data."""
        evaluated = (self.metrics or {}).get("data")
        if evaluated and self.evaluates_other_photos:
            return [str(evaluated)]
        if self.data_sources:
            return list(self.data_sources.values())
        root = str(evaluated) if evaluated else self.data_root
        return [root] if root else []

    @property
    def page_data_args(self) -> list[str]:
        """What `sportsdet data check` is given to check this page's photos: the dataset file the
        run's sources came from, else `page_data_roots`; and the label maps the run used (as --map),
        so that the check names classes as the run does."""
        sources = (self.split or {}).get("sources")
        if self.evaluates_other_photos or not isinstance(sources, dict) or not sources:
            return self.page_data_roots
        tables = {str(name): info for name, info in sources.items() if isinstance(info, dict)}
        files = {info.get("file") for info in tables.values()}
        given = self.page_data_roots
        if len(files) == 1 and isinstance(file := files.pop(), str) and Path(file).is_file():
            given = [file]
        maps = [
            f"{name}:{old}={new}"
            for name, info in tables.items()
            for old, new in (info.get("map") or {}).items()
            if isinstance(old, str) and isinstance(new, str) and old != new and "=" not in old + new
        ]
        return given + [arg for text in maps for arg in ("--map", text)]

    @property
    def check_home(self) -> Path | None:
        """Where this page looks for a data-check report first (and tells the user to write one)."""
        return self.eval_dir if self.evaluates_other_photos else (self.run_dir or self.eval_dir)

    @property
    def data_root(self) -> str | None:
        for holder, key in (
            (self.split, "root"),
            (self.data_summary, "root"),
            (self.config, "data"),
            (self.metrics, "data"),
        ):
            if holder and holder.get(key):
                return str(holder[key])
        return None


def read_json(path: Path, *, what: str, fix: str) -> dict[str, Any]:
    """A JSON object from `path`, or a SportsdetError saying which file is broken and what to do."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SportsdetError(f"{path}: cannot read {what} ({exc.strerror or exc}); {fix}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SportsdetError(f"{path}: {what} is not valid JSON ({exc}); {fix}") from None
    if not isinstance(data, dict):
        raise SportsdetError(f"{path}: {what} should hold a JSON object; {fix}")
    return data


def _number(text: str | None, path: Path, line: int, column: str) -> float | None:
    if text is None or text.strip() == "" or text.strip().lower() in ("nan", "none", "null"):
        return None
    try:
        value = float(text)
    except ValueError:
        raise SportsdetError(
            f"{path}, line {line}: column {column!r} holds {text!r}, not a number; "
            "the file is damaged (re-run the command that wrote it)"
        ) from None
    return None if math.isnan(value) else value


def read_history(path: Path) -> list[dict[str, Any]]:
    """metrics.csv -> one dict per epoch (missing values are None)."""
    fix = "the run's metrics.csv is damaged; re-run `sportsdet train ... --resume` or train again"
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            fields = reader.fieldnames or []
            missing = [c for c in ("epoch", "train_loss") if c not in fields]
            if missing:
                raise SportsdetError(
                    f"{path}: missing column(s) {missing} (expected {', '.join(METRICS_COLUMNS)}); {fix}"
                )
            rows = []
            for line, row in enumerate(reader, start=2):
                entry: dict[str, Any] = {"stage": (row.get("stage") or "").strip()}
                for column in METRICS_COLUMNS:
                    if column != "stage":
                        entry[column] = _number(row.get(column), path, line, column)
                if entry["epoch"] is None:
                    raise SportsdetError(f"{path}, line {line}: no epoch number; {fix}")
                rows.append(entry)
    except OSError as exc:
        raise SportsdetError(f"{path}: cannot read ({exc.strerror or exc}); {fix}") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise SportsdetError(f"{path}: not a readable CSV file ({exc}); {fix}") from None
    return rows


def read_predictions(path: Path, search_roots: list[Path]) -> list[Prediction]:
    """predictions.csv -> Prediction rows, with each image path resolved against `search_roots`."""
    fix = "re-run `sportsdet evaluate` to write it again"
    predictions = []
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in PREDICTION_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise SportsdetError(
                    f"{path}: missing column(s) {missing} (expected {', '.join(PREDICTION_COLUMNS)}); {fix}"
                )
            for line, row in enumerate(reader, start=2):
                confidence = _number(row["confidence"], path, line, "confidence")
                true_prob = _number(row["true_prob"], path, line, "true_prob")
                if confidence is None or true_prob is None:
                    raise SportsdetError(f"{path}, line {line}: confidence/true_prob missing; {fix}")
                predictions.append(
                    Prediction(row["path"], row["true_label"], row["pred_label"], confidence, true_prob)
                )
    except OSError as exc:
        raise SportsdetError(f"{path}: cannot read ({exc.strerror or exc}); {fix}") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise SportsdetError(f"{path}: not a readable CSV file ({exc}); {fix}") from None
    for prediction in predictions:
        prediction.image = _resolve_image(prediction.path, search_roots)
    return predictions


def _resolve_image(text: str, roots: list[Path]) -> Path | None:
    # evaluate may write absolute paths or paths relative to the data root; accept both; and a
    # name that is not UTF-8 is written with \udcff escapes.
    for written in dict.fromkeys((text, name_as_written(text))):
        candidate = Path(written)
        if candidate.is_absolute():
            if candidate.is_file():
                return candidate
            continue
        for root in roots:
            if (root / candidate).is_file():
                return root / candidate
    return None


def _is_eval_dir(path: Path) -> bool:
    return (path / "metrics.json").is_file() or (path / "predictions.csv").is_file()


def load_inputs(
    source: str | Path,
    *,
    eval_dir: str | Path | None = None,
    check_report: str | Path | None = None,
) -> ReportInputs:
    """Find and read a run folder and/or an evaluation folder.

    `source` may be a run folder (its `eval/` is used unless `eval_dir` is given) or an
    evaluation folder (its parent is used as the run when it looks like one).
    """
    source = Path(source).expanduser()  # '~/runs/a' quoted, or given from Python
    if not source.exists():
        raise SportsdetError(
            f"{source}: no such folder; pass a run folder (from `sportsdet train`) "
            "or an evaluation folder (from `sportsdet evaluate`)"
        )
    if not source.is_dir():
        raise SportsdetError(f"{source}: is a file; pass the run or evaluation folder that holds it")
    source = source.resolve()  # a mailed report should say where the run lives, not "."
    inputs = ReportInputs(source=source)
    if eval_dir is not None:
        eval_path = Path(eval_dir).expanduser().resolve()
        if not eval_path.is_dir():
            raise SportsdetError(
                f"{eval_path}: no such folder; --eval takes the folder `sportsdet evaluate --out` wrote"
            )
        if not _is_eval_dir(eval_path):
            raise SportsdetError(
                f"{eval_path}: no metrics.json or predictions.csv here; "
                "pass the folder `sportsdet evaluate --out` wrote"
            )
        inputs.eval_dir = eval_path
        inputs.run_dir = source
    elif _is_eval_dir(source) and not is_run_dir(source):
        inputs.eval_dir = source
        # The run around it, unless the evaluation scored another bundle (e.g. the built-in model
        # evaluated with --out RUN/eval-web): then it is shown alone, with the bundle it scored.
        parent = source.parent
        # A run with a model the evaluation scored: a folder that merely holds a split.json (saved
        # by `data split --out`) was taken for the run, its data shown as the model's.
        has_model = RunFolder(parent).model_manifest.is_file()
        ours = has_model and is_run_dir(parent) and not scored_another_bundle(source, parent)
        inputs.run_dir = parent if ours else None
    else:
        inputs.run_dir = source
        own = RunFolder(source).eval
        inputs.eval_dir = own if _is_eval_dir(own) else None
    if inputs.run_dir is not None and not is_run_dir(inputs.run_dir) and inputs.eval_dir is None:
        if (source / "bundle.json").is_file():
            where = f"its run folder, {source.parent}" if is_run_dir(source.parent) else "the run folder"
            raise SportsdetError(
                f"{source}: is a model bundle, not a run; pass {where} (or an evaluation folder, "
                f"`sportsdet evaluate {shlex.quote(str(source))} DATA --out EVAL`)"
            )
        raise SportsdetError(
            f"{source}: neither a run folder (config.json, metrics.csv, model/) nor an evaluation "
            "folder (metrics.json, predictions.csv); pass what `sportsdet train --out` or "
            "`sportsdet evaluate --out` wrote"
        )
    _read_run(inputs)
    if eval_dir is None and inputs.run_dir == source:
        _drop_stale_run_eval(inputs)
    _read_eval(inputs)
    _check_eval_of_this_model(inputs, named=eval_dir is not None)
    _read_other_evals(inputs)
    _read_check(inputs, check_report)
    return inputs


def _read_run(inputs: ReportInputs) -> None:
    run = inputs.run_dir
    if run is None:
        return
    fix = "it is damaged; train again (or fix the file by hand)"
    folder = RunFolder(run)
    parts = (("config", folder.config), ("data_summary", folder.data_summary), ("split", folder.split))
    for attr, path in parts:
        if path.is_file():
            setattr(inputs, attr, read_json(path, what=path.name, fix=fix))
    if folder.metrics.is_file():
        inputs.history = read_history(folder.metrics)
    if folder.curves.is_file():
        inputs.curves_png = folder.curves
    if folder.model_manifest.is_file():
        _read_bundle(inputs, folder.model)


def _read_bundle(inputs: ReportInputs, path: Path) -> None:
    # The weights are not needed for a report: skip the checksum so it stays fast.
    try:
        bundle = load_bundle(path, verify_weights=False)
    except BundleError as exc:  # the rest of the run is still worth showing
        inputs.notes.append(f"model bundle not shown: {exc}")
        return
    inputs.bundle = bundle.manifest
    inputs.bundle_path = bundle.path


def _drop_stale_run_eval(inputs: ReportInputs) -> None:
    """RUN/eval of a model the run has replaced since (e.g. `--resume --no-eval`) is not this
    model's evaluation: it was shown beside the new model's training as if it were."""
    ev = inputs.eval_dir
    if ev is None or not (ev / "metrics.json").is_file():
        return
    try:
        metrics = json.loads((ev / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return  # _read_eval says what is wrong with it
    if isinstance(metrics, dict) and _of_an_earlier_model(inputs, metrics):
        inputs.eval_dir = None  # _read_other_evals says so, as for the run's other evaluations


def _another_model(metrics: Any, bundle: Path | None, weights: Any) -> bool:
    """An evaluation that scored another bundle than `bundle` (whose weights hash is `weights`):
    another path and other weights (a run moved since keeps its weights; one trained again keeps
    its path)."""
    if not isinstance(metrics, dict) or bundle is None:
        return False
    scored, scored_weights = metrics.get("bundle"), metrics.get("weights_sha256")
    if not (isinstance(scored, str) and scored and weights and scored_weights and scored_weights != weights):
        return False
    return Path(scored).resolve() != Path(bundle).resolve()


def scored_another_bundle(ev: Path, run: Path) -> bool:
    """`_another_model` for an evaluation folder inside `run`, read before the run is."""
    try:
        metrics = json.loads((ev / "metrics.json").read_text(encoding="utf-8"))
        folder = RunFolder(run)
        weights = json.loads(folder.model_manifest.read_text(encoding="utf-8"))["weights"]["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return _another_model(metrics, folder.model, weights)


def _of_another_bundle(inputs: ReportInputs, metrics: dict[str, Any]) -> bool:
    """`_another_model` against the run's bundle."""
    weights = ((inputs.bundle or {}).get("weights") or {}).get("sha256")
    return _another_model(metrics, inputs.bundle_path, weights)


def _check_eval_of_this_model(inputs: ReportInputs, *, named: bool) -> None:
    """An evaluation named on the command line that scored other weights than the run's model was
    shown as this model's results. Another bundle's (`--eval` of another run): refused; an earlier
    model of this run (trained again since): shown, with a note at the top saying so."""
    if inputs.metrics is None or not _of_an_earlier_model(inputs, inputs.metrics):
        return
    scored, ev = inputs.metrics.get("bundle"), inputs.eval_dir
    if named and _of_another_bundle(inputs, inputs.metrics):
        raise SportsdetError(
            f"{ev}: this evaluation scored {scored}, not the model of {inputs.run_dir}; report it on its "
            f"own (`sportsdet report {shlex.quote(str(ev))}`), or evaluate this run's model"
        )
    inputs.notes.insert(0, (
        f"{ev} scored other weights than {inputs.bundle_path} holds now (the model was trained again "
        "since): its results are an earlier model's, not those of the model described here. Run "
        f"`sportsdet evaluate {shlex.quote(str(inputs.bundle_path))} DATA` to score the model as it is now"
    ))


def _of_an_earlier_model(inputs: ReportInputs, metrics: dict[str, Any]) -> bool:
    """An evaluation that scored other weights than the bundle's (the run trained again since)."""
    weights = ((inputs.bundle or {}).get("weights") or {}).get("sha256")
    scored = metrics.get("weights_sha256")
    return bool(weights and scored and scored != weights)


def _read_eval(inputs: ReportInputs) -> None:
    ev = inputs.eval_dir
    if ev is None:
        return
    fix = "re-run `sportsdet evaluate` to write it again"
    if (ev / "metrics.json").is_file():
        inputs.metrics = read_json(ev / "metrics.json", what="metrics.json", fix=fix)
        _check_metrics(inputs.metrics, ev / "metrics.json")
        bundle_ref = inputs.metrics.get("bundle")
        if inputs.bundle is None and bundle_ref and (Path(bundle_ref) / "bundle.json").is_file():
            _read_bundle(inputs, Path(bundle_ref))
    if (ev / "predictions.csv").is_file():
        roots = [Path(r) for r in (inputs.data_root, (inputs.metrics or {}).get("data")) if r]
        roots += [ev] + ([inputs.run_dir] if inputs.run_dir else [])
        inputs.predictions = read_predictions(ev / "predictions.csv", roots)
        missing = sum(p.image is None for p in inputs.predictions)
        if missing:
            inputs.notes.append(
                f"{missing} of {len(inputs.predictions)} images listed in {ev / 'predictions.csv'} "
                "were not found (data moved?); their gallery tiles show no picture"
            )


def _read_other_evals(inputs: ReportInputs) -> None:
    """Evaluations of this run's model on other photos, so the run's page lists them all. One of
    an earlier model (the run retrained in place: other weights) is left out with a note."""
    if inputs.run_dir is None:
        return
    run = RunFolder(inputs.run_dir)
    folders = [run.eval] if (run.eval / "metrics.json").is_file() else []
    for folder in folders + run.other_evals():
        if inputs.eval_dir is not None and folder.resolve() == inputs.eval_dir.resolve():
            continue
        try:
            metrics = read_json(folder / "metrics.json", what="metrics.json", fix="evaluate again")
        except SportsdetError as exc:
            inputs.notes.append(f"evaluation not listed: {exc}")
            continue
        if _of_another_bundle(inputs, metrics):
            inputs.notes.append(f"{folder}: an evaluation of another model ({metrics['bundle']}); not shown")
            continue
        if _of_an_earlier_model(inputs, metrics):
            inputs.notes.append(
                f"{folder}: an evaluation of an earlier model of this run (trained again since); not shown. "
                f"Score this one with: sportsdet evaluate {shlex.quote(str(run.path))}"
            )
            continue
        inputs.other_evals.append((folder, metrics))


def _check_metrics(metrics: dict[str, Any], path: Path) -> None:
    """The fields every section leans on must have the right shape, or the page would lie."""
    fix = "re-run `sportsdet evaluate` to write it again"
    labels = metrics.get("labels")
    if labels is not None and not (isinstance(labels, list) and all(isinstance(x, str) for x in labels)):
        raise SportsdetError(f"{path}: 'labels' should be a list of class names; {fix}")
    matrix = metrics.get("confusion_matrix")
    if matrix is not None:
        size = len(labels or [])
        if not (
            isinstance(matrix, list)
            and len(matrix) == size
            and all(isinstance(row, list) and len(row) == size for row in matrix)
        ):
            raise SportsdetError(
                f"{path}: 'confusion_matrix' should be {size}x{size} (one row and column per label); {fix}"
            )
    for key in ("accuracy", "balanced_accuracy", "macro_f1", "top5_accuracy", "ece"):
        value = metrics.get(key)
        if value is not None and not isinstance(value, (int, float)):
            raise SportsdetError(f"{path}: {key!r} should be a number, got {value!r}; {fix}")
    per_class = metrics.get("per_class")
    if per_class is not None and not isinstance(per_class, dict):
        raise SportsdetError(f"{path}: 'per_class' should map class names to their numbers; {fix}")


def _read_check(inputs: ReportInputs, check_report: str | Path | None) -> None:
    if check_report is not None:
        path = Path(check_report).expanduser()
        if not path.is_file():
            raise SportsdetError(
                f"{path}: no such data-check report; write one with `sportsdet data check DATA --report FILE`"
            )
    else:
        homes = (inputs.check_home, inputs.run_dir, inputs.eval_dir)  # the page's own data first
        folders = [d for d in dict.fromkeys(homes) if d is not None]
        path = next((d / n for d in folders for n in CHECK_REPORT_NAMES if (d / n).is_file()), None)
        if path is None:
            return
    check = read_json(path, what="data-check report", fix="write it again with `sportsdet data check`")
    if not is_check_report(check):
        # Any JSON was shown as "No broken files and no duplicates" (metrics.json, a scan's --json).
        problem = f"{path}: not a data-check report (what `sportsdet data check DATA --report FILE` writes)"
        if check_report is not None:
            raise SportsdetError(problem)
        inputs.notes.append(f"{problem}; left out")
        return
    inputs.check, inputs.check_path = check, path
    checked, expected = _folders(check_roots(check)), _folders(inputs.page_data_roots)
    if checked and expected and checked != expected:  # another folder's check, shown as this data's
        inputs.check_of_other_data = check_roots(check)


def is_check_report(data: dict[str, Any]) -> bool:
    """A `data check --report` file: one folder's, or one part per source."""
    parts = data.get("sources") if "format" not in data else None
    if isinstance(parts, dict) and parts:
        return all(isinstance(part, dict) and is_check_report(part) for part in parts.values())
    return str(data.get("format", "")).startswith("sportsdet-check/")


def check_roots(check: dict[str, Any]) -> list[str]:
    """The folders a data-check report checked."""
    parts = check.get("sources")
    if isinstance(parts, dict):
        return [str(part["root"]) for part in parts.values() if isinstance(part, dict) and part.get("root")]
    return [str(check["root"])] if check.get("root") else []


def _folders(roots: list[str]) -> set[str]:
    return {os.path.realpath(os.path.expanduser(root)) for root in roots}
