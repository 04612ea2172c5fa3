"""compute_metrics against numbers worked out by hand on a 6-image, 3-class case."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, f1_score

from sportsdet.errors import SportsdetError
from sportsdet.metrics import calibration, compute_metrics, top_classes, top_k_accuracy, wilson_interval

LABELS = ["a", "b", "c"]
Y_TRUE = np.array([0, 0, 1, 1, 2, 2])
# predicted: a, b, b, a, c, c  -> right, wrong, right, wrong, right, right (4/6)
PROBS = np.array(
    [
        [0.70, 0.20, 0.10],  # true a, conf .70, right
        [0.28, 0.62, 0.10],  # true a, conf .62, wrong (b)
        [0.09, 0.82, 0.09],  # true b, conf .82, right
        [0.50, 0.10, 0.40],  # true b, conf .50, wrong (a); b is only third -> top-2 miss
        [0.19, 0.19, 0.62],  # true c, conf .62, right
        [0.05, 0.05, 0.90],  # true c, conf .90, right
    ]
)


def test_hand_computed_case() -> None:
    m = compute_metrics(Y_TRUE, PROBS, LABELS)
    assert m["n"] == 6
    assert m["accuracy"] == pytest.approx(4 / 6)
    # confusion rows true, columns predicted: a->a 1, a->b 1; b->a 1, b->b 1; c->c 2
    assert m["confusion_matrix"] == [[1, 1, 0], [1, 1, 0], [0, 0, 2]]
    assert m["per_class"]["a"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    assert m["per_class"]["b"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    assert m["per_class"]["c"] == pytest.approx({"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 2})
    assert m["balanced_accuracy"] == pytest.approx((0.5 + 0.5 + 1.0) / 3)
    assert m["macro_f1"] == pytest.approx((0.5 + 0.5 + 1.0) / 3)
    assert m["top_k"] == 3 and m["top5_accuracy"] == 1.0  # k = min(5, 3): every class is in the top 3
    # Bins of width 1/15: .50 -> bin 7 (wrong), .62 x2 -> bin 9 (one right), .70 -> 10, .82 -> 12, .90 -> 13
    # ECE = (|0-.5| + 2*|.5-.62| + |1-.7| + |1-.82| + |1-.9|) / 6 = 1.32 / 6
    assert m["ece"] == pytest.approx(1.32 / 6)
    bins = m["reliability"]
    assert len(bins) == 15 and sum(b["count"] for b in bins) == 6
    assert [i for i, b in enumerate(bins) if b["count"]] == [7, 9, 10, 12, 13]
    assert bins[9]["count"] == 2
    assert bins[9]["accuracy"] == pytest.approx(0.5)
    assert bins[9]["mean_confidence"] == pytest.approx(0.62)
    assert bins[0]["accuracy"] is None
    assert m["most_confused"] == [
        {"true": "a", "predicted": "b", "count": 1, "share": 0.5},
        {"true": "b", "predicted": "a", "count": 1, "share": 0.5},
    ]
    # the same numbers as scikit-learn's own functions where they apply
    pred = PROBS.argmax(axis=1)
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(Y_TRUE, pred))
    assert m["macro_f1"] == pytest.approx(f1_score(Y_TRUE, pred, average="macro"))


def test_top_k() -> None:
    # Only sample 3 (true b, b ranked third) falls outside the top 2.
    assert top_k_accuracy(Y_TRUE, PROBS, 2) == pytest.approx(5 / 6)
    assert top_k_accuracy(Y_TRUE, PROBS, 1) == pytest.approx(4 / 6)


def test_a_class_tied_at_the_cut_counts_as_predict_lists_it() -> None:
    # INT8 scores tie often; evaluate's argpartition counted a class tied at 5th place in or out as
    # it happened to fall, while predict's top_k lists the tied class that comes first among the labels.
    probs = np.array([[2, 2, 3, 2, 2, 2, 2, 3, 1, 3, 2, 0]], dtype=np.float32) / 24
    assert top_classes(probs, 5)[0].tolist() == [2, 7, 9, 0, 1]
    assert top_k_accuracy(np.array([1]), probs, 5) == 1.0
    assert top_k_accuracy(np.array([3]), probs, 5) == 0.0  # tied with 0 and 1, after them


def test_absent_class_keeps_its_column() -> None:
    # Add a class "d" that never occurs and is never predicted: nothing may shift.
    probs = np.hstack([PROBS, np.zeros((6, 1))])
    m = compute_metrics(Y_TRUE, probs, LABELS + ["d"])
    assert m["confusion_matrix"] == [[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 2, 0], [0, 0, 0, 0]]
    assert m["per_class"]["d"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    # averages are over the classes present in the evaluated data
    assert m["balanced_accuracy"] == pytest.approx(2 / 3)
    assert m["macro_f1"] == pytest.approx(2 / 3)
    assert m["top_k"] == 4


def test_notebook_wilson_interval() -> None:
    # The notebook's 163 right out of 315: 51.7%, 95% CI [46.2, 57.2]%.
    lo, hi = wilson_interval(163, 315)
    assert round(lo * 100, 1) == 46.2
    assert round(hi * 100, 1) == 57.2
    y = np.array([0] * 315)
    probs = np.zeros((315, 2))
    probs[:163, 0] = 1.0
    probs[163:, 1] = 1.0
    m = compute_metrics(y, probs, ["x", "y"])
    assert m["accuracy"] == pytest.approx(163 / 315)
    assert [round(v * 100, 1) for v in m["accuracy_ci95"]] == [46.2, 57.2]


def test_wilson_edges() -> None:
    assert wilson_interval(0, 10)[0] == 0.0
    assert wilson_interval(10, 10)[1] == pytest.approx(1.0)
    assert 0.0 < wilson_interval(10, 10)[0] < 1.0


@pytest.mark.parametrize(
    ("y", "probs", "message"),
    [
        (np.array([0, 1]), np.zeros((3, 3)), "2 true labels but 3"),
        (np.array([0, 1]), np.zeros((2, 2)), "2 probability columns but 3 labels"),
        (np.array([0, 5]), np.zeros((2, 3)), "out of range"),
        (np.array([], dtype=int), np.zeros((0, 3)), "no samples"),
    ],
)
def test_bad_inputs(y: np.ndarray, probs: np.ndarray, message: str) -> None:
    with pytest.raises(SportsdetError, match=message):
        compute_metrics(y, probs, LABELS)


def test_fit_temperature_recovers_the_temperature_that_made_the_labels() -> None:
    from sportsdet.metrics import fit_temperature, softmax_nll

    rng = np.random.default_rng(0)
    logits = rng.normal(0.0, 2.0, size=(4000, 5))
    true_temperature = 0.5  # the "model" is underconfident: real odds are sharper than its logits
    probs = np.exp(logits / true_temperature)
    probs /= probs.sum(axis=1, keepdims=True)
    labels = np.array([rng.choice(5, p=p) for p in probs])
    fitted = fit_temperature(logits, labels)
    assert fitted == pytest.approx(true_temperature, rel=0.1)
    assert softmax_nll(logits, labels, fitted) < softmax_nll(logits, labels, 1.0)
    with pytest.raises(SportsdetError, match="fit_temperature"):
        fit_temperature(logits[:3], labels[:2])


def test_confusion_layout_shows_the_classes_scored_then_the_wrong_answers() -> None:
    from sportsdet.metrics import confusion_layout

    # 5 classes; photos of classes 3 and 1 only; class 4 given twice, class 0 once, class 2 never.
    matrix = np.zeros((5, 5), dtype=int)
    matrix[1, 1], matrix[1, 0], matrix[3, 3], matrix[3, 4] = 2, 1, 1, 2
    assert confusion_layout(matrix) == ([1, 3], [1, 3, 4, 0])
    # Every class with photos: the matrix as it is.
    assert confusion_layout(np.eye(3, dtype=int)) is None


def test_mostly_given_another_needs_enough_photos_and_a_majority() -> None:
    from sportsdet.metrics import mostly_given_another

    labels = ["football", "soccer", "rugby"]
    matrix = [[1, 4, 0], [0, 9, 1], [0, 2, 2]]  # football: 4 of 5 read soccer; rugby: only 4 photos
    assert mostly_given_another(matrix, labels) == [
        {"class": "football", "photos": 5, "given": "soccer", "count": 4}
    ]
    assert mostly_given_another(matrix, labels, min_photos=4) == [
        {"class": "football", "photos": 5, "given": "soccer", "count": 4},
        {"class": "rugby", "photos": 4, "given": "soccer", "count": 2},
    ]


def test_the_rename_hint_says_when_it_counts_only_the_photos_answered() -> None:
    # "16 of the 19 photos in 'football'" beside a table of 25 football photos: 6 were uncertain.
    from sportsdet.metrics import rename_hint

    entry = {"class": "football", "photos": 19, "given": "soccer", "count": 16}
    assert rename_hint(entry).startswith("16 of the 19 photos in 'football' were labelled 'soccer'")
    entry["in_folder"] = 25
    assert rename_hint(entry).startswith("16 of the 19 photos in 'football' it answered (25 in all) were")


def test_a_confidence_on_a_bin_edge_is_counted_in_the_bin_it_closes() -> None:
    # Bins are (lo, hi]: 0.5 closes (0.4, 0.5], 1.0 closes the last, 0 opens the first.
    confidence = np.array([0.0, 0.5, 0.5000001, 1.0])
    _, bins = calibration(confidence, np.ones(4, dtype=bool), n_bins=10)
    counts = [b["count"] for b in bins]
    assert counts == [1, 0, 0, 0, 1, 1, 0, 0, 0, 1]
    assert (bins[4]["lower"], bins[4]["upper"], bins[4]["mean_confidence"]) == (0.4, 0.5, 0.5)
