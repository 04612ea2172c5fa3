"""Saying "I don't know": the abstain rule, in one torch-free place.

A photo that shows no sport, or one the model cannot tell, must not get a confident sports
label. The rule is a score computed from the class probabilities and a threshold: a photo whose
score is under the threshold is *uncertain* (no label; the best guess stays in top-k).

The threshold is fitted on validation photos at a stated coverage: the share of validation
photos that must still be answered (default 95%). It lives in bundle.json (top-level
"abstain") and in an exported ONNX file's metadata (`sportsdet.abstain`, same JSON), so a bare
.onnx file decides exactly like its bundle on every backend.

    policy = Abstain.from_dict(bundle.manifest["abstain"])
    policy.uncertain(probs)          # probs [C] -> bool, or [N, C] -> bool [N]

Scores (higher = more sure):
- "max_prob": the top (calibrated) probability;
- "margin": top-1 minus top-2 probability;
- "entropy": 1 - H(p) / ln(C) (1: all mass on one class, 0: uniform).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from numbers import Real
from typing import Any

import numpy as np

from sportsdet.errors import SportsdetError

SCORES = ("max_prob", "margin", "entropy")
# Measured on the built-in model (bench/abstain_scores.py, bench/RESULTS.md): at 95% validation
# coverage, entropy leaves 2 of 28 non-sport photos labelled, max_prob 4, margin 6.
DEFAULT_SCORE = "entropy"
DEFAULT_COVERAGE = 0.95
MIN_ABSTAIN_IMAGES = 50  # as for calibration: fewer validation photos give a threshold by chance


def score_name(method: str) -> str:
    """How a score is said to people: "entropy < 0.85 is uncertain" read as if confident photos
    (low entropy) were the uncertain ones; the score is a certainty (higher = more sure)."""
    return {
        "max_prob": "top probability",
        "margin": "margin (top-1 minus top-2 probability)",
        "entropy": "certainty (1 - entropy / ln classes)",
    }.get(str(method), f"{method} score")


def abstain_scores(probs: np.ndarray, method: str = DEFAULT_SCORE) -> np.ndarray:
    """The confidence score of each row of `probs` [N, C] (or one [C] row -> a 0-d array)."""
    probs = np.asarray(probs, dtype=np.float64)
    rows = np.atleast_2d(probs)
    if method == "max_prob":
        scores = rows.max(axis=1)
    elif method == "margin":
        if rows.shape[1] < 2:
            scores = rows[:, 0]
        else:
            top2 = -np.partition(-rows, 1, axis=1)[:, :2]
            scores = top2[:, 0] - top2[:, 1]
    elif method == "entropy":
        clipped = np.clip(rows, 1e-12, 1.0)
        entropy = -(rows * np.log(clipped)).sum(axis=1)
        scores = 1.0 - entropy / math.log(max(rows.shape[1], 2))
    else:
        raise SportsdetError(f"unknown abstain score {method!r}; known: {', '.join(SCORES)}")
    return scores[0] if probs.ndim == 1 else scores


@dataclass(frozen=True)
class Abstain:
    """The abstain rule: `method` score under `threshold` -> uncertain. `threshold` None: never.

    `coverage` is the share of validation photos the threshold was fitted to answer, `fitted_on`
    says where (a split, a folder, or "--min-score"); `valid_*` are what the fit measured there.
    """

    method: str = DEFAULT_SCORE
    threshold: float | None = None
    coverage: float | None = None
    fitted_on: str = ""
    valid_images: int = 0
    valid_coverage: float | None = None
    valid_accuracy_answered: float | None = None
    valid_accuracy_all: float | None = None
    why: str | None = None  # why there is no threshold

    @property
    def active(self) -> bool:
        return self.threshold is not None

    def scores(self, probs: np.ndarray) -> np.ndarray:
        return abstain_scores(probs, self.method)

    def uncertain(self, probs: np.ndarray) -> Any:
        """probs [C] -> bool; [N, C] -> bool array [N]. Score under the threshold = uncertain."""
        scores = self.scores(probs)
        if self.threshold is None:
            return np.zeros(np.shape(scores), dtype=bool) if np.ndim(scores) else False
        decided = scores < self.threshold
        return bool(decided) if np.ndim(decided) == 0 else decided

    def to_dict(self) -> dict[str, Any]:
        return {key: value for key, value in asdict(self).items() if value is not None}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_dict(cls, data: Any, where: str = "abstain") -> Abstain:
        """Validate a stored rule; SportsdetError naming `where` when it is wrong."""
        if not isinstance(data, dict):
            raise SportsdetError(f"{where}: the abstain entry must be a JSON object")
        known = set(cls.__dataclass_fields__)
        values = {key: value for key, value in data.items() if key in known}  # newer keys: ignored
        method = values.get("method", DEFAULT_SCORE)
        if method not in SCORES:
            raise SportsdetError(f"{where}: unknown abstain score {method!r}; known: {', '.join(SCORES)}")
        threshold = values.get("threshold")
        if threshold is not None and (
            isinstance(threshold, bool)
            or not isinstance(threshold, (int, float))
            or not math.isfinite(threshold)
        ):
            raise SportsdetError(f"{where}: abstain threshold must be a number or null, got {threshold!r}")
        if threshold is not None:
            values["threshold"] = float(threshold)
        return cls(**values)

    @classmethod
    def from_json(cls, text: str, where: str = "abstain") -> Abstain:
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, TypeError) as exc:
            raise SportsdetError(f"{where}: abstain entry is not valid JSON ({exc})") from None
        return cls.from_dict(data, where)

    @classmethod
    def min_score(cls, value: float) -> Abstain:
        """`--min-score X`: answer only when the top probability is at least X."""
        number = isinstance(value, Real) and not isinstance(value, bool)  # not '0.5', not True
        if not number or not 0.0 <= value <= 1.0:
            raise SportsdetError(f"min_score (--min-score) must be a number between 0 and 1, got {value!r}")
        return cls(method="max_prob", threshold=float(value), fitted_on="--min-score")



def check_coverage(coverage: float) -> None:
    """The share of validation photos to answer: in (0, 1] (NaN is not)."""
    if not 0.0 < coverage <= 1.0:
        raise SportsdetError(f"abstain coverage must be in (0, 1], got {coverage}")


def fit_abstain(
    probs: np.ndarray,
    y_true: np.ndarray | None = None,
    *,
    coverage: float = DEFAULT_COVERAGE,
    method: str = DEFAULT_SCORE,
    fitted_on: str = "validation split",
    min_images: int | None = None,
) -> Abstain:
    """The threshold under which (1 - coverage) of these validation photos fall.

    The threshold sits halfway between the last answered photo's score and the next one down,
    so a photo near it keeps its decision under float rounding differences between backends.
    Too few photos (< `min_images`): no threshold, with the reason recorded.
    """
    check_coverage(coverage)
    probs = np.asarray(probs, dtype=np.float64)
    n = len(probs)
    min_images = MIN_ABSTAIN_IMAGES if min_images is None else min_images
    if n < min_images:
        return Abstain(
            method=method,
            coverage=coverage,
            fitted_on=fitted_on,
            valid_images=n,
            why=f"the validation photos ({n}) are too few to fit an abstain threshold on "
            f"(needs >= {min_images})",
        )
    scores = abstain_scores(probs, method)
    ordered = np.sort(scores)[::-1]
    keep = min(n, max(1, math.ceil(coverage * n - 1e-9)))
    if keep >= n:
        # Everything answered: a margin under the lowest score too (at exactly it, the same photo
        # scored 4e-8 lower by ONNX than by torch was "uncertain"), as far as the gap between the
        # two lowest, at most 1e-3, at least 1e-6.
        gap = float(ordered[-2] - ordered[-1]) / 2 if n > 1 else 1e-6
        threshold = float(ordered[-1]) - min(1e-3, max(1e-6, gap))
    else:
        threshold = float((ordered[keep - 1] + ordered[keep]) / 2)
    answered = scores >= threshold
    result: dict[str, Any] = {
        "valid_coverage": round(float(answered.mean()), 4),
    }
    if y_true is not None:
        correct = np.asarray(probs.argmax(axis=1) == np.asarray(y_true))
        result["valid_accuracy_all"] = round(float(correct.mean()), 4)
        if answered.any():
            result["valid_accuracy_answered"] = round(float(correct[answered].mean()), 4)
    return Abstain(
        method=method,
        threshold=threshold,
        coverage=coverage,
        fitted_on=fitted_on,
        valid_images=n,
        **result,
    )
