"""Picking and shrinking the gallery pictures: correct, wrong, and the most confident mistakes."""

from __future__ import annotations

import base64
import io
import math
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import ImageOps

from sportsdet.errors import SportsdetError
from sportsdet.imageio import load_image
from sportsdet.report.inputs import Prediction

THUMB_SIZE = 128  # px, longest side: small enough that 100 classes of tiles stay a few hundred KB
THUMB_QUALITY = 80


@dataclass
class Tile:
    prediction: Prediction
    data_uri: str | None  # None when the picture could not be read

    @property
    def loss(self) -> float:
        """This image's cross-entropy, -log p(true class): what "highest-loss" ranks by."""
        return -math.log(max(self.prediction.true_prob, 1e-12))


def thumbnail_uri(prediction: Prediction, size: int = THUMB_SIZE) -> str | None:
    """A small JPEG data URI of the prediction's image, or None when it cannot be read."""
    if prediction.image is None:
        return None
    try:
        # The same loader as training and prediction; min_size lets big JPEGs decode small.
        image = load_image(prediction.image, min_size=size)
    except SportsdetError:
        return None
    image = ImageOps.contain(image, (size, size))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=THUMB_QUALITY, optimize=True)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def spread_sample(predictions: Sequence[Prediction], limit: int, seed: int = 0) -> list[Prediction]:
    """Up to `limit` predictions, seeded, one per true class before any class gets a second.

    A plain random sample at 100 classes would show a few classes many times; this shows as
    many different classes as the cap allows, and the same ones on every run.
    """
    shuffled = list(predictions)
    random.Random(seed).shuffle(shuffled)
    seen: dict[str, int] = defaultdict(int)
    ranked = []
    for position, prediction in enumerate(shuffled):
        ranked.append((seen[prediction.true_label], position, prediction))
        seen[prediction.true_label] += 1
    ranked.sort(key=lambda item: (item[0], item[1]))
    return [prediction for _, _, prediction in ranked[:limit]]


def highest_loss(predictions: Sequence[Prediction], limit: int) -> list[Prediction]:
    """The wrong predictions with the lowest probability on the true class (= highest loss)."""
    wrong = [p for p in predictions if not p.correct]
    wrong.sort(key=lambda p: (p.true_prob, -p.confidence, p.path))
    return wrong[:limit]
