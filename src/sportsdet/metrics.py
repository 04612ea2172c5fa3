"""Every metric number sportsdet reports, computed in one place from (true labels, probabilities).

Torch-free (NumPy + scikit-learn), so evaluation reports, benchmarks and the training loop all
agree on what "accuracy" means. Inputs are class indices `y_true` [n] and probabilities
`probs` [n, C] whose columns follow `labels`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from sportsdet.errors import SportsdetError

ECE_BINS = 15
TOP_K = 5
MOST_CONFUSED = 10


def wilson_interval(successes: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson score interval for a proportion (95% by default).

    Unlike the normal approximation it stays inside [0, 1] and behaves for small test sets,
    which is what most of our per-class and few-hundred-image test splits are.
    """
    if n <= 0:
        return (0.0, 0.0)
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def top_classes(probs: np.ndarray, k: int) -> np.ndarray:
    """The k class indices of the highest probabilities, highest first, along the last axis. Equal
    probabilities keep label order, so predict's and serve's top_k lists and evaluate's top-k
    accuracy agree on a class tied at the cut (INT8 scores tie often)."""
    return np.argsort(-probs, axis=-1, kind="stable")[..., :k]


def top_k_accuracy(y_true: np.ndarray, probs: np.ndarray, k: int) -> float:
    """Share of samples whose true class is among the k highest probabilities (`top_classes`)."""
    top = top_classes(probs, max(1, min(k, probs.shape[1])))
    return float(np.mean(np.any(top == y_true[:, None], axis=1)))


def calibration(
    confidence: np.ndarray, correct: np.ndarray, n_bins: int = ECE_BINS
) -> tuple[float, list[dict[str, Any]]]:
    """Expected calibration error over equal-width confidence bins, and the bins themselves.

    Bin i holds confidences in (i/n_bins, (i+1)/n_bins]; a confidence of exactly 0 falls in bin 0.
    ECE = sum over bins of (count / n) * |accuracy - mean confidence|.
    """
    n = len(confidence)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # right=True puts a value equal to an upper edge in that bin, matching (lo, hi].
    index = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, n_bins - 1)
    ece = 0.0
    bins: list[dict[str, Any]] = []
    for i in range(n_bins):
        mask = index == i
        count = int(mask.sum())
        mean_conf = float(confidence[mask].mean()) if count else None
        acc = float(correct[mask].mean()) if count else None
        if count:
            ece += count / n * abs(acc - mean_conf)
        bins.append(
            {
                "lower": float(edges[i]),
                "upper": float(edges[i + 1]),
                "count": count,
                "mean_confidence": mean_conf,
                "accuracy": acc,
            }
        )
    return float(ece), bins


def softmax_nll(logits: np.ndarray, y_true: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of softmax(logits / temperature) at the true classes."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(z).sum(axis=1))
    return float(np.mean(log_norm - z[np.arange(len(z)), np.asarray(y_true, dtype=np.int64)]))


def fit_temperature(logits: np.ndarray, y_true: np.ndarray) -> float:
    """The softmax temperature that minimises the validation NLL (temperature scaling, Guo et al.
    2017). It rescales every logit alike, so predictions never change, only how sure they look."""
    from scipy.optimize import minimize_scalar

    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim != 2 or len(logits) != len(y_true) or len(logits) == 0:
        raise SportsdetError(f"fit_temperature: need [n, classes] logits and n labels, got {logits.shape}")
    best = minimize_scalar(
        lambda log_t: softmax_nll(logits, y_true, float(np.exp(log_t))),
        bounds=(np.log(0.05), np.log(20.0)),
        method="bounded",
        options={"xatol": 1e-4},
    )
    return float(np.exp(best.x))


def _check_inputs(y_true: Any, probs: Any, labels: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true)
    p = np.asarray(probs, dtype=np.float64)
    n_classes = len(labels)
    if p.ndim != 2:
        raise SportsdetError(f"metrics: probabilities must be a 2-D array [n, classes], got shape {p.shape}")
    if p.shape[1] != n_classes:
        raise SportsdetError(f"metrics: {p.shape[1]} probability columns but {n_classes} labels")
    if y.ndim != 1 or len(y) != p.shape[0]:
        raise SportsdetError(f"metrics: {len(y)} true labels but {p.shape[0]} probability rows")
    if len(y) == 0:
        raise SportsdetError("metrics: no samples to score (the evaluated split is empty)")
    if not np.issubdtype(y.dtype, np.integer):
        raise SportsdetError("metrics: y_true must hold class indices (integers)")
    if y.min() < 0 or y.max() >= n_classes:
        raise SportsdetError(f"metrics: class index out of range 0..{n_classes - 1}")
    return y.astype(np.int64), p


def per_group_accuracy(y_true: Any, probs: Any, groups: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Accuracy (with its Wilson 95% interval) and top-5 per group, e.g. per data source.

    A model trained on several sources can be right on one and wrong on another: one total hides
    that, so evaluate reports both.
    """
    y = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(probs, dtype=np.float64)
    names = np.asarray(list(groups), dtype=object)
    if len(names) != len(y):
        raise SportsdetError(f"{len(names)} group names for {len(y)} predictions")
    table = {}
    for name in sorted(set(names.tolist())):
        mask = names == name
        hits = int((p[mask].argmax(axis=1) == y[mask]).sum())
        n = int(mask.sum())
        lo, hi = wilson_interval(hits, n)
        table[str(name)] = {
            "n": n,
            "accuracy": hits / n,
            "accuracy_ci95": [lo, hi],
            "top5_accuracy": top_k_accuracy(y[mask], p[mask], min(TOP_K, p.shape[1])),
        }
    return table


def compute_metrics(y_true: Any, probs: Any, labels: Sequence[str]) -> dict[str, Any]:
    """All evaluation numbers as a JSON-ready dict.

    Keys: n, accuracy, accuracy_ci95 [lo, hi], balanced_accuracy, macro_f1, top5_accuracy, top_k,
    per_class {label: {precision, recall, f1, support}}, confusion_matrix (rows true, columns
    predicted, every label even when absent), labels, ece, reliability (15 bins),
    most_confused [{true, predicted, count, share}].

    Balanced accuracy and macro-F1 average over the classes present in y_true, so that a test
    subset holding a few of the bundle's classes is not penalised for the classes it lacks.
    """
    from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support

    labels = [str(label) for label in labels]
    y, p = _check_inputs(y_true, probs, labels)
    n, n_classes = p.shape
    pred = p.argmax(axis=1)
    correct = pred == y
    all_idx = list(range(n_classes))
    present = sorted(set(y.tolist()))

    # labels= keeps every class's column in place even when it never occurs.
    cm = confusion_matrix(y, pred, labels=all_idx)
    precision, recall, f1, support = precision_recall_fscore_support(y, pred, labels=all_idx, zero_division=0)
    # Balanced accuracy = mean recall over the true classes present.
    recall_present = np.diag(cm)[present] / cm[present].sum(axis=1)
    macro_f1 = f1_score(y, pred, labels=present, average="macro", zero_division=0)

    hits = int(correct.sum())
    lo, hi = wilson_interval(hits, n)
    ece, bins = calibration(p.max(axis=1), correct.astype(np.float64))

    confused = []
    off = cm.copy()
    np.fill_diagonal(off, 0)
    for flat in np.argsort(-off, axis=None, kind="stable")[:MOST_CONFUSED]:
        t, q = divmod(int(flat), n_classes)
        if off[t, q] == 0:
            break
        confused.append(
            {
                "true": labels[t],
                "predicted": labels[q],
                "count": int(off[t, q]),
                "share": float(off[t, q] / cm[t].sum()),
            }
        )

    k = min(TOP_K, n_classes)
    return {
        "n": int(n),
        "accuracy": hits / n,
        "accuracy_ci95": [lo, hi],
        "balanced_accuracy": float(recall_present.mean()),
        "macro_f1": float(macro_f1),
        "top5_accuracy": top_k_accuracy(y, p, k),
        "top_k": k,
        "per_class": {
            labels[i]: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i in all_idx
        },
        "labels": labels,
        "confusion_matrix": cm.astype(int).tolist(),
        "ece": ece,
        "reliability": bins,
        "most_confused": confused,
    }


RISK_COVERAGE_POINTS = 50


def mostly_given_another(
    matrix: Any, labels: Sequence[str], *, min_photos: int = 5, share: float = 0.5
) -> list[dict[str, Any]]:
    """Classes (with at least `min_photos` photos) of which one other class took `share` or more:
    on a user's own folders, usually a name that means something else to the model (their
    'football' is its 'soccer'), else a confusion worth a look. [{class, photos, given, count}]."""
    counts = np.asarray(matrix)
    found = []
    for i, row in enumerate(counts):
        photos = int(row.sum())
        if photos < min_photos:
            continue
        others = row.copy()
        others[i] = -1
        j = int(others.argmax())
        if others[j] >= share * photos:
            found.append({"class": labels[i], "photos": photos, "given": labels[j], "count": int(others[j])})
    return found


def photos_scored(metrics: dict[str, Any]) -> str:
    """Which of an evaluated folder's photos a score is on, as headings say it: the split scored, or
    all its images, or all but those left out (seen photos, --known-only folders): "all images"
    above a row of 8 photos left out read as if every photo had been scored."""
    if metrics.get("split"):
        return str(metrics["split"])
    seen = metrics.get("seen_left_out")
    left = (isinstance(seen, dict) and any(seen.values())) or bool(metrics.get("classes_left_out"))
    return "all images but those left out" if left else "all images"


def rename_hint(entry: dict[str, Any]) -> str:
    """One `mostly_given_another` entry in words, as evaluate warns it and the report shows it."""
    yours, theirs = entry.get("folder") or entry["class"], entry["given"]
    answered = entry["photos"]
    # Counted on the photos the model answered: say so when it was unsure of some (the per-class
    # table counts them all).
    photos = (
        f"{answered} photos in '{yours}' it answered ({entry['in_folder']} in all)"
        if entry.get("in_folder", answered) != answered
        else f"{answered} photos in '{yours}'"
    )
    return (
        f"{entry['count']} of the {photos} were labelled '{theirs}': if your "
        f"'{yours}' is what this model calls '{theirs}', rename that folder and evaluate again"
    )


def confusion_layout(matrix: Any) -> tuple[list[int], list[int]] | None:
    """Which rows and columns of a confusion matrix to show, in what order; None: all, as they are.

    When some class has no images (a 105-class model scored on a user's 5 sports), rows are the
    classes with images, in their order; columns are those same classes first, so each recall sits
    on the diagonal, then the classes that were only predicted, the most predicted first. Classes
    with neither images nor predictions are left out.
    """
    counts = np.asarray(matrix)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1] or not counts.size:
        return None
    images, given = counts.sum(axis=1), counts.sum(axis=0)
    if (images > 0).all():
        return None
    rows = [int(i) for i in np.flatnonzero(images > 0)]
    only_predicted = [int(j) for j in np.flatnonzero((images == 0) & (given > 0))]
    return rows, rows + sorted(only_predicted, key=lambda j: (-given[j], j))


def risk_coverage(
    scores: np.ndarray, correct: np.ndarray, points: int = RISK_COVERAGE_POINTS
) -> list[dict[str, float]]:
    """Accuracy of the answered photos against the share answered, as the threshold falls.

    Photos are answered from the highest score down; each point is (coverage, accuracy of the
    answered, the score threshold that answers them) at about `points` evenly spaced coverages,
    the full set last. Ties in score are answered together, as a threshold would.
    """
    scores = np.asarray(scores, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    n = len(scores)
    if n == 0:
        return []
    order = np.argsort(-scores, kind="stable")
    ordered, hits = scores[order], np.cumsum(correct[order])
    curve, seen = [], set()
    for target in np.linspace(1, n, num=min(points, n)):
        k = int(round(target))
        # A threshold answers every photo with that score: move to the end of the tie.
        k = int(np.searchsorted(-ordered, -ordered[k - 1], side="right"))
        if k in seen:
            continue
        seen.add(k)
        accuracy = float(hits[k - 1] / k)
        curve.append({"coverage": k / n, "accuracy": accuracy, "threshold": float(ordered[k - 1])})
    return curve


def abstain_metrics(y_true: Any, probs: Any, policy: Any) -> dict[str, Any]:
    """What the abstain rule does on a labelled set: the risk-coverage curve of its score, and
    the coverage and accuracy of the answered photos at its threshold (`policy` an
    `abstain.Abstain`, or None for a bundle without one: curve of the default score only)."""
    from sportsdet.abstain import DEFAULT_SCORE, abstain_scores

    y = np.asarray(y_true)
    p = np.asarray(probs, dtype=np.float64)
    correct = p.argmax(axis=1) == y
    method = policy.method if policy is not None else DEFAULT_SCORE
    scores = abstain_scores(p, method)
    out: dict[str, Any] = {
        "method": method,
        "threshold": None,
        "fitted_coverage": None,
        "risk_coverage": risk_coverage(scores, correct),
    }
    if policy is not None and policy.threshold is not None:
        answered = ~np.asarray(policy.uncertain(p), dtype=bool)
        out.update(
            threshold=policy.threshold,
            fitted_coverage=policy.coverage,
            n=int(len(y)),
            answered=int(answered.sum()),
            coverage=float(answered.mean()),
            accuracy_answered=float(correct[answered].mean()) if answered.any() else None,
            accuracy_all=float(correct.mean()),
        )
    elif policy is not None:
        out["why"] = policy.why
    return out


def times_predicted(metrics: dict[str, Any]) -> dict[str, int]:
    """How many photos each class was given (metrics.json's confusion matrix, column sums)."""
    matrix, order = metrics.get("confusion_matrix"), metrics.get("labels")
    if not matrix or not order:
        return {}
    return {label: int(sum(row[j] for row in matrix)) for j, label in enumerate(order)}
