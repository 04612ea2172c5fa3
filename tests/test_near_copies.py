"""near_copies: the same photo resized or re-saved is found; different photos are not confused."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from sportsdet.near_copies import MAX_DISTANCE, NearCopies, near_copy_hash


def drawn_photo(seed: int, size: int = 160) -> Image.Image:
    """A picture with structure (a gradient sky, shapes in several colours), unlike every other seed."""
    rng = np.random.default_rng(seed)
    sky = np.linspace(rng.integers(40, 120), rng.integers(150, 250), size)[:, None, None]
    image = Image.fromarray(np.broadcast_to(sky, (size, size, 3)).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        x, y = rng.integers(0, size - 40, 2)
        w, h = rng.integers(20, 80, 2)
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x, y, x + w, y + h), fill=colour)
    return image


def save(image: Image.Image, path: Path, **options) -> Path:
    image.save(path, **options)
    return path


def distance(a: str, b: str) -> int:
    return bin(int(a, 16) ^ int(b, 16)).count("1")


def test_a_resized_or_re_saved_copy_keeps_its_hash_and_other_photos_do_not_share_it(tmp_path: Path) -> None:
    photo = drawn_photo(1)
    original = near_copy_hash(save(photo, tmp_path / "original.jpg", quality=95))
    assert original is not None and len(original) == 32
    copies = {
        "smaller": save(photo.resize((96, 96), Image.Resampling.LANCZOS), tmp_path / "small.jpg", quality=60),
        "larger": save(photo.resize((400, 400), Image.Resampling.BICUBIC), tmp_path / "large.jpg"),
        "png": save(photo, tmp_path / "copy.png"),
        "trimmed": save(photo.crop((3, 3, 157, 157)), tmp_path / "trimmed.jpg", quality=80),
    }
    for name, path in copies.items():
        assert distance(original, near_copy_hash(path)) <= MAX_DISTANCE, name
    for seed in range(2, 30):
        other = near_copy_hash(save(drawn_photo(seed), tmp_path / f"other{seed}.jpg"))
        assert distance(original, other) > MAX_DISTANCE, seed


def test_flat_and_unreadable_pictures_get_no_hash(tmp_path: Path) -> None:
    # A flat picture's bits would be noise: it may only match byte for byte.
    assert near_copy_hash(save(Image.new("RGB", (64, 64), (90, 90, 90)), tmp_path / "grey.png")) is None
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    assert near_copy_hash(tmp_path / "broken.jpg") is None
    assert near_copy_hash(tmp_path / "missing.jpg") is None


def test_the_index_names_the_group_of_the_nearest_known_photo(tmp_path: Path) -> None:
    hashes = [near_copy_hash(save(drawn_photo(seed), tmp_path / f"{seed}.jpg")) for seed in range(3)]
    index = NearCopies({"train": hashes[:2], "valid": hashes[2:]})
    assert len(index) == 3
    buffer = io.BytesIO()
    drawn_photo(2).resize((120, 120)).save(buffer, format="JPEG", quality=70)
    (tmp_path / "copy.jpg").write_bytes(buffer.getvalue())
    assert index.group_of(near_copy_hash(tmp_path / "copy.jpg")) == "valid"
    assert index.group_of(near_copy_hash(save(drawn_photo(7), tmp_path / "new.jpg"))) is None
    assert index.group_of(None) is None
    assert NearCopies({}).group_of(hashes[0]) is None


def test_groups_are_found_without_comparing_every_photo_with_every_other(tmp_path: Path) -> None:
    from sportsdet.near_copies import near_copy_groups

    rng = np.random.default_rng(0)
    hashes = [bytes(rng.integers(0, 256, 16, dtype=np.uint8)).hex() for _ in range(2000)]

    def flipped(value: str, bits: list[int]) -> str:
        number = int(value, 16)
        for bit in bits:
            number ^= 1 << bit
        return f"{number:032x}"

    hashes[1500] = flipped(hashes[7], list(range(0, 128, 13)))  # 10 bits apart, spread over the hash
    hashes[1501] = flipped(hashes[8], list(range(11)))  # 11 bits apart: not a near copy
    hashes[1502] = hashes[9]
    hashes[1503] = flipped(hashes[10], list(range(6)))  # a chain: 10 -> 1503 -> 1504 is one group,
    hashes[1504] = flipped(hashes[1503], list(range(6, 12)))  # though 10 and 1504 are 12 bits apart
    hashes[3] = None  # a flat photo: never grouped
    assert near_copy_groups(hashes) == [[7, 1500], [9, 1502], [10, 1503, 1504]]
    # Against every pair compared, on a part of them (with the planted copies), grouped by hand.
    some = [*range(300), *range(1500, 1505)]
    group = {i: {i} for i in some}
    for a in some:
        for b in some:
            close = None not in (hashes[a], hashes[b]) and distance(hashes[a], hashes[b]) <= MAX_DISTANCE
            if a < b and close:
                merged = group[a] | group[b]
                for i in merged:
                    group[i] = merged
    brute = sorted({tuple(sorted(g)) for g in group.values() if len(g) > 1})
    found = near_copy_groups([hashes[i] for i in some])
    assert [tuple(some[i] for i in g) for g in found] == brute == [(7, 1500), (9, 1502), (10, 1503, 1504)]
    assert near_copy_groups([hashes[0]]) == [] and near_copy_groups([None, None]) == []
    assert near_copy_groups(["0" * 32, "f" * 32]) == []  # no piece in common: nothing to compare


def test_thousands_of_saves_of_one_picture_are_one_group_found_fast() -> None:
    # 3,000 saves of one placeholder picture (a scraped "no image"): every pair was listed, 49 s
    # and 2.5 GB; 20,000 would not have finished.
    import time

    from sportsdet.near_copies import near_copy_groups

    rng = np.random.default_rng(1)
    base = int(bytes(rng.integers(0, 256, 16, dtype=np.uint8)).hex(), 16)
    # 30 re-saves with a few bits changed each (all within 10 bits of each other), 200 times over.
    flips = [sum(1 << int(bit) for bit in rng.choice(128, 4, replace=False)) for _ in range(30)]
    variants = [f"{base ^ flip:032x}" for flip in flips]
    distinct = [bytes(rng.integers(0, 256, 16, dtype=np.uint8)).hex() for _ in range(1000)]
    hashes = variants * 200 + distinct
    started = time.perf_counter()
    groups = near_copy_groups(hashes)
    assert time.perf_counter() - started < 5
    assert groups == [list(range(6000))]
def test_many_photos_are_hashed_in_worker_processes_with_the_same_result(tmp_path: Path) -> None:
    from sportsdet.near_copies import near_copy_hashes

    paths = [save(drawn_photo(seed, size=64), tmp_path / f"{seed}.png") for seed in range(40)]
    (tmp_path / "broken.jpg").write_bytes(b"not a photo")
    paths = [*paths * 13, tmp_path / "broken.jpg"]  # 521 paths: enough for two workers
    expected = [near_copy_hash(p) for p in paths]
    assert near_copy_hashes(paths, workers=2) == expected
    assert expected[-1] is None and len(set(expected[:40])) == 40


def test_hashing_goes_on_in_this_process_where_no_worker_can_start(tmp_path: Path, monkeypatch) -> None:
    from sportsdet import near_copies

    class NoProcesses:  # as ProcessPoolExecutor fails when it starts its workers
        def __init__(self, workers: int, initializer=None) -> None:
            self.shut = False

        def map(self, *args, **kwargs):
            raise OSError(11, "Resource temporarily unavailable")

        def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
            self.shut = True

    monkeypatch.setattr(near_copies, "worker_processes", NoProcesses)
    paths = [save(drawn_photo(1, size=64), tmp_path / "1.png")] * 600
    assert near_copies.near_copy_hashes(paths, workers=2) == [near_copy_hash(paths[0])] * 600


def test_the_index_finds_what_comparing_with_every_known_photo_finds() -> None:
    # The index compares a photo only with known photos sharing a piece of its hash: it must
    # name the same group as comparing with all of them, at every distance around the threshold.
    from sportsdet.near_copies import differing_bits

    rng = np.random.default_rng(3)
    known = [rng.bytes(16) for _ in range(400)]
    groups = ["train" if i % 3 else "valid" for i in range(len(known))]
    index = NearCopies({name: [k.hex() for k, g in zip(known, groups, strict=True) if g == name]
                        for name in ("train", "valid")})  # fmt: skip
    order = [g for name in ("train", "valid") for g in groups if g == name]  # the index's row order
    rows = np.frombuffer(b"".join(k for name in ("train", "valid")
                                  for k, g in zip(known, groups, strict=True) if g == name), np.uint8)
    rows = rows.reshape(-1, 16)
    found = 0
    for _ in range(600):
        query = bytearray(known[rng.integers(len(known))])
        for bit in rng.choice(128, rng.integers(0, 16), replace=False):
            query[bit // 8] ^= 1 << (bit % 8)
        distances = differing_bits(rows, np.frombuffer(bytes(query), np.uint8))
        nearest = int(distances.argmin())
        expected = order[nearest] if distances[nearest] <= MAX_DISTANCE else None
        assert index.group_of(bytes(query).hex()) == expected
        found += expected is not None
    assert 200 < found < 600  # both outcomes were tried


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork is the Linux choice")
def test_workers_are_forked_so_a_script_without_a_main_guard_is_not_run_again() -> None:
    # Python 3.14 starts workers with forkserver on Linux, which imports the caller's script anew.
    from sportsdet.files import worker_processes

    pool = worker_processes(2)
    try:
        assert pool._mp_context.get_start_method() == "fork"
    finally:
        pool.shutdown()


def test_ctrl_c_ends_the_hashing_workers_and_the_process(tmp_path):
    # The pool was shut down without waiting and the interrupt re-raised: Python's exit hook then
    # joined the pool's manager thread, which waited for the workers' chunks (here, for ever).
    import subprocess
    import textwrap
    import time

    script = textwrap.dedent("""
        import os, signal, threading, time
        import sportsdet.near_copies as near_copies

        def forever(path):
            time.sleep(600)

        signal.signal(signal.SIGINT, signal.default_int_handler)  # a background run inherits SIG_IGN
        near_copies.near_copy_hash = forever
        threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT)).start()
        try:
            near_copies.near_copy_hashes([f"p{i}.jpg" for i in range(600)], workers=2)
        except KeyboardInterrupt:
            print("interrupted", flush=True)
    """)
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "interrupted", done.stderr[-2000:]
    assert time.monotonic() - started < 30
