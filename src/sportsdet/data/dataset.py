"""Torch datasets and loaders over split-manifest items.

Images are decoded with `sportsdet.imageio.load_image` and turned into arrays with
`sportsdet.preprocess` -- the same code evaluate and predict use -- so training never sees a
photo prepared differently from the one it will be asked about. Training augmentation is a
torchvision transforms v2 pipeline on the Pillow image that produces an input_size x input_size
picture and then goes through the same `preprocess.normalize`.

A small dataset (the notebook's six classes hold ~900 photos) can be decoded once and kept in
memory as resized uint8 pictures (`cache=True`): after the first epoch, loading is free and
`num_workers=0` is the fastest choice on 2 cores.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler

from sportsdet.data.check import quarantine_command
from sportsdet.errors import ImageLoadError, SportsdetError
from sportsdet.imageio import load_image
from sportsdet.preprocess import Preprocessing, normalize, resize_image

# Decoded, resized uint8 pictures above this many bytes are not kept in memory.
MAX_CACHE_BYTES = 2 * 1024**3

Item = tuple[Path, int]
Augmentation = Callable[[Image.Image], Image.Image]


class DataFileError(SportsdetError):
    """A training/evaluation image could not be loaded.

    DataLoader workers send exceptions back to the main process by re-creating them from a
    message that starts "Caught DataFileError in DataLoader worker ..." and holds the worker's
    traceback; the constructor keeps only the user-facing last line, so the CLI prints one
    clear sentence either way.
    """

    def __init__(self, message: str) -> None:
        marker = f"{type(self).__name__}: "
        if message.startswith("Caught ") and marker in message:
            message = message.rsplit(marker, 1)[1].strip()
        super().__init__(message)


def load_error_message(
    path: Path | str, detail: str, root: Path | str | Sequence[Path | str] | None = None
) -> str:
    """`root`: the data folder (or every source's folder); the message names the one that holds `path`."""
    roots = [root] if isinstance(root, (str, Path)) else list(root or [])
    holders = [Path(r) for r in roots if Path(path).is_relative_to(r)]
    where = holders[0] if holders else (roots[0] if roots else Path(path).parent)
    return (
        f"{path}: {detail}. Run {quarantine_command(where)} to find and move bad files, "
        "then start training again"
    )


class ImageDataset(Dataset):
    """(image array, label index) pairs for a list of (path, label index) manifest items.

    - eval (augment=None): `preprocess` exactly as in evaluate/predict;
    - train (augment=a PIL->PIL transform giving input_size x input_size): augment, then normalize.
    `cache=True` keeps resized uint8 pictures in memory (eval-style only, ignored with augment).
    `root` is named in error messages (the folder to run `sportsdet data check` on).
    `augment_seed`: each photo's augmentation draws from its own stream, seeded by (augment_seed,
    epoch, index) (`set_epoch` before each epoch), so the crops do not depend on which DataLoader
    worker, or how many, decode it; and they leave the training's own random stream alone.
    """

    def __init__(
        self,
        items: Sequence[Item],
        preprocessing: Preprocessing,
        *,
        augment: Augmentation | None = None,
        cache: bool = False,
        root: Path | str | Sequence[Path | str] | None = None,
        augment_seed: int = 0,
    ) -> None:
        self.items = [(Path(path), int(label)) for path, label in items]
        self.augment_seed, self.epoch = augment_seed, 0
        self.preprocessing = preprocessing
        self.augment = augment
        self.root = root
        size = preprocessing.input_size
        self.cache_enabled = (
            cache and augment is None and len(self.items) * size * size * 3 <= MAX_CACHE_BYTES
        )
        self._cache: list[np.ndarray | None] = [None] * len(self.items) if self.cache_enabled else []

    def __len__(self) -> int:
        return len(self.items)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @property
    def labels(self) -> list[int]:
        return [label for _, label in self.items]

    def load(self, index: int) -> Image.Image:
        """Decode one item (at reduced size when the format allows), with a clear error."""
        path = self.items[index][0]
        try:
            return load_image(path, min_size=self.preprocessing.decode_size)
        except ImageLoadError as exc:
            raise DataFileError(load_error_message(path, exc.detail, self.root)) from None

    def _resized(self, index: int) -> np.ndarray:
        if self.cache_enabled and self._cache[index] is not None:
            return self._cache[index]
        pixels = np.asarray(resize_image(self.load(index), self.preprocessing), dtype=np.uint8)
        if self.cache_enabled:
            self._cache[index] = pixels
        return pixels

    def preload(self, threads: int = 2) -> None:
        """Fill the cache now (Pillow releases the GIL while decoding, so threads help)."""
        if not self.cache_enabled:
            return
        missing = [i for i, cached in enumerate(self._cache) if cached is None]
        pool = ThreadPoolExecutor(max_workers=max(1, threads))
        try:
            for _ in pool.map(self._resized, missing):
                pass
        finally:
            # On Ctrl-C or a bad file, drop the queued decodes instead of finishing them all.
            pool.shutdown(wait=True, cancel_futures=True)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if self.augment is not None:
            photo = self.load(index)
            with torch.random.fork_rng(devices=[]):
                # Modulo 2**64, as torch takes a seed: --seed 20000000 overflowed it.
                torch.manual_seed(((self.augment_seed * 1_000_003 + self.epoch) * 1_000_003 + index) % 2**64)
                picture = self.augment(photo)
            if picture.size != (self.preprocessing.input_size,) * 2:
                raise SportsdetError(
                    f"training augmentation produced a {picture.size} picture, expected "
                    f"{self.preprocessing.input_size}x{self.preprocessing.input_size}"
                )
            array = normalize(picture, self.preprocessing)
        else:
            array = normalize(self._resized(index), self.preprocessing)
        return torch.from_numpy(array), self.items[index][1]


class EpochShuffleSampler(Sampler[int]):
    """Shuffles with a permutation that depends only on (seed, epoch).

    So epoch 7 sees the same order whether the run was resumed or not; the trainer calls
    `set_epoch` before every epoch (the same API as DistributedSampler).
    """

    def __init__(self, size: int, seed: int) -> None:
        self.size = size
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.randperm(self.size, generator=generator).tolist())


def seed_worker(worker_id: int) -> None:
    """Give each DataLoader worker its own, reproducible NumPy and `random` streams."""
    worker_seed = torch.initial_seed() % 2**32
    np.random.seed(worker_seed)
    random.seed(worker_seed)


def make_loader(
    dataset: ImageDataset,
    *,
    batch_size: int,
    train: bool,
    seed: int = 0,
    workers: int = 0,
) -> DataLoader:
    """A DataLoader: shuffled by (seed, epoch) for training, in order for evaluation.

    workers: 0 decodes in the main process (best with a warm cache); on 2 cores, 2 workers only
    pay off when every epoch decodes or augments images.
    """
    sampler = EpochShuffleSampler(len(dataset), seed) if train else None
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        shuffle=False,
        num_workers=workers,
        worker_init_fn=seed_worker if workers > 0 else None,
        # Not persistent: workers take a copy of the dataset when they start, so only fresh ones
        # each epoch see set_epoch's epoch, which seeds every photo's augmentation.
        persistent_workers=False,
        drop_last=False,
    )
