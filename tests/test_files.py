"""sportsdet.files: the one atomic writer and the one folder walker (scan, check, predict, export)."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from sportsdet import files
from sportsdet.errors import SportsdetError
from sportsdet.files import atomic_write, iter_image_files, sha256_file, write_json


def test_walker_is_lazy_sorted_and_skips_what_is_not_a_photo(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ("a/one.jpg", "a/b/two.PNG", "a/notes.txt", "a/.hidden.jpg", "a/zz.jpg", "a/Thumbs.db"):
        (tmp_path / name).write_bytes(b"x")
    skipped: list[tuple[str, str]] = []
    walker = iter_image_files(
        tmp_path / "a", on_skip=lambda reason, path: skipped.append((reason, Path(path).name))
    )
    assert iter(walker) is walker  # a generator, not a list
    # Name order, a sub-folder's photos at its place in that order.
    assert [p.relative_to(tmp_path).as_posix() for p in walker] == ["a/b/two.PNG", "a/one.jpg", "a/zz.jpg"]
    assert sorted(skipped) == [
        (files.SKIP_HIDDEN, ".hidden.jpg"),
        (files.SKIP_HIDDEN, "Thumbs.db"),
        (files.SKIP_NOT_IMAGE, "notes.txt"),
    ]


def test_walker_ends_symlink_loops_and_never_yields_a_photo_twice(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    (folder / "x.jpg").write_bytes(b"x")
    (folder / "sub" / "y.jpg").write_bytes(b"y")
    (folder / "self").symlink_to(".")  # `self -> .` gave 41 copies of every photo before
    (folder / "sub" / "up").symlink_to("..")
    (folder / "loop_a").symlink_to("loop_b")  # a -> b -> a: ELOOP when followed
    (folder / "loop_b").symlink_to("loop_a")
    (folder / "dangling.jpg").symlink_to("nowhere.jpg")
    found = [p.name for p in iter_image_files(folder)]
    assert found == ["y.jpg", "x.jpg"]


def test_walker_passes_over_fifos_and_devices_named_like_photos(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "real.jpg").write_bytes(b"x")
    os.mkfifo(folder / "pipe.jpg")  # opening it to read would wait forever for a writer
    (folder / "zero.jpg").symlink_to("/dev/zero")  # reading it would never end
    skipped: list[str] = []
    found = list(iter_image_files(folder, on_skip=lambda reason, path: skipped.append(reason)))
    assert [p.name for p in found] == ["real.jpg"]
    assert skipped == [files.SKIP_NOT_REGULAR, files.SKIP_NOT_REGULAR]


def test_walker_reads_big_folders_in_bounded_sorted_chunks(tmp_path: Path, monkeypatch) -> None:
    for i in range(7):
        (tmp_path / f"{i}.jpg").write_bytes(b"x")
    monkeypatch.setattr(files, "WALK_CHUNK", 3)
    names = [p.name for p in iter_image_files(tmp_path)]
    assert sorted(names) == [f"{i}.jpg" for i in range(7)]
    for start in range(0, 7, 3):  # each run of 3 comes sorted; never more than 3 entries are held
        assert names[start : start + 3] == sorted(names[start : start + 3])


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path: Path) -> None:
    target = write_json(tmp_path / "deep" / "data.json", {"a": 1})
    assert target.read_text() == '{\n "a": 1\n}\n'
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~_umask()  # not mkstemp's private 0600

    def made_anew_private(temp: Path) -> None:  # as safetensors' save_file does: checkpoints were 0600
        temp.unlink()
        descriptor = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(descriptor, b"tensors")
        os.close(descriptor)

    shared = atomic_write(tmp_path / "last.safetensors", made_anew_private)
    assert stat.S_IMODE(shared.stat().st_mode) == 0o666 & ~_umask()

    def disk_full(temp: Path) -> None:
        temp.write_text("half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(SportsdetError, match=r"data.json: cannot write \(No space left on device\)"):
        atomic_write(target, disk_full)
    assert target.read_text() == '{\n "a": 1\n}\n'
    assert sorted(p.name for p in target.parent.iterdir()) == ["data.json"]  # no temp file left

    with pytest.raises(KeyboardInterrupt):  # Ctrl-C mid-write: the old file, no leftovers
        atomic_write(target, lambda temp: (_ for _ in ()).throw(KeyboardInterrupt()))
    assert sorted(p.name for p in target.parent.iterdir()) == ["data.json"]
    with pytest.raises(SportsdetError, match="is a folder"):
        atomic_write(tmp_path / "deep", b"x")


def test_a_symbolic_link_is_written_through_and_a_device_or_pipe_refused(tmp_path: Path) -> None:
    # The write's rename replaced the link itself with a plain file (as root, --report /dev/stdout
    # turned the system's /dev/stdout into a file and printed nothing).
    (tmp_path / "elsewhere").mkdir()
    target = tmp_path / "elsewhere" / "report.json"
    target.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    write_json(link, {"a": 1})
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_text() == '{\n "a": 1\n}\n'
    assert sorted(p.name for p in (tmp_path / "elsewhere").iterdir()) == ["report.json"]
    dangling = tmp_path / "dangling.json"
    dangling.symlink_to(tmp_path / "elsewhere" / "new.json")
    atomic_write(dangling, "made")  # as a shell's > makes the file a dangling link names
    assert dangling.is_symlink() and (tmp_path / "elsewhere" / "new.json").read_text() == "made"

    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    for path in (fifo, Path("/dev/null")):
        with pytest.raises(SportsdetError, match=r"is a device, pipe, socket or stream, not a file"):
            atomic_write(path, "x")
        said = r"^--report .*: is a device, pipe, socket or stream, not a file; give a file name, or - for "
        with pytest.raises(SportsdetError, match=said + r"standard output$"):
            files.check_writable_file(path, "--report", also="- for standard output")
    assert stat.S_ISFIFO(fifo.stat().st_mode) and stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_a_path_to_this_process_s_stdout_is_refused_not_renamed_over(tmp_path: Path) -> None:
    # --report /dev/stdout >> log.txt: /dev/stdout leads (through /proc/self/fd/1) to log.txt,
    # which the rename replaced with the report; through a pipe it failed after all the work.
    import subprocess
    import sys

    log = tmp_path / "log.txt"
    log.write_text("line 1 of an existing log\n")
    code = ("import sys; from sportsdet.files import write_json; "
            "write_json(sys.argv[1], {'a': 1})")  # fmt: skip
    for target in ("/dev/stdout", "/proc/self/fd/1", "/dev/fd/1"):
        with open(log, "a") as appended:
            command = [sys.executable, "-c", code, target]
            done = subprocess.run(command, stdout=appended, stderr=subprocess.PIPE, text=True, timeout=60)
        assert done.returncode != 0 and "is a device, pipe, socket or stream" in done.stderr, done.stderr
    assert log.read_text() == "line 1 of an existing log\n"
    linked = tmp_path / "out.json"
    linked.symlink_to("/dev/stdout")  # a link of the user's to it: the same
    with pytest.raises(SportsdetError, match="out.json: is a device, pipe, socket or stream"):
        files.check_writable_file(linked, "--report")
    (tmp_path / "fds").symlink_to("/proc/self/fd")  # a folder link into /proc
    with pytest.raises(SportsdetError, match="fds/2: is a device, pipe, socket or stream"):
        write_json(tmp_path / "fds" / "2", {})
    if Path("/dev/shm").is_dir():  # shared memory under /dev holds plain files
        shared = write_json(Path("/dev/shm") / f"sportsdet-{os.getpid()}.json", {})
        shared.unlink()


def test_a_link_loop_is_an_error_not_a_file_made_over_it(tmp_path: Path) -> None:
    (tmp_path / "l1.json").symlink_to("l2.json")
    (tmp_path / "l2.json").symlink_to("l1.json")
    with pytest.raises(SportsdetError, match="l1.json: too many levels of symbolic links"):
        write_json(tmp_path / "l1.json", {})
    assert (tmp_path / "l1.json").is_symlink()


def test_one_hasher_for_files(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"abc")
    assert sha256_file(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    with pytest.raises(SportsdetError, match="cannot read file"):
        sha256_file(tmp_path / "missing.bin")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_predict_inputs_through_a_symlink_loop_come_once(tmp_path: Path) -> None:
    from sportsdet.predict import expand_inputs

    (tmp_path / "a.jpg").write_bytes(b"x")
    (tmp_path / "self").symlink_to(".")  # a folder and a glob over it gave 41 rows for one photo
    from_folder = [item.name for item in expand_inputs([str(tmp_path)])]
    from_glob = [item.name for item in expand_inputs([str(tmp_path / "**" / "*.jpg")])]
    assert from_folder == [str(tmp_path / "a.jpg")]
    assert from_glob == [str(tmp_path / "a.jpg")]


def test_what_a_killed_write_left_is_removed_and_a_temporary_name_reads_as_its_target(tmp_path: Path) -> None:
    # kill -9 in the middle of an export left a model-sized hidden file per kill, never removed;
    # and a full disk was reported under the hidden name (.model.onnx.k2j4x9qa.tmp.onnx).
    import os

    from sportsdet.files import published_path, remove_abandoned_temps, temp_beside

    target = tmp_path / "model.onnx"
    old, recent = temp_beside(target), temp_beside(target)
    os.utime(old, (0, 0))
    other = tmp_path / ".model.onnx.notours"
    other.write_bytes(b"x")
    os.utime(other, (0, 0))
    assert published_path(old) == target and published_path(target) == target
    assert published_path(temp_beside(tmp_path / "split")) == tmp_path / "split"  # no suffix
    nested = temp_beside(old)  # export stamps metadata through a temporary file of its temporary file
    os.utime(nested, (0, 0))
    look_alike = temp_beside(tmp_path / "bigmodel.onnx")
    os.utime(look_alike, (0, 0))
    remove_abandoned_temps(target)
    assert not old.exists() and not nested.exists() and recent.exists() and other.exists()
    assert look_alike.exists()  # another file's
    folder = tmp_path / ".model.onnx.snapshot.tmp"  # a user's folder, named alike: never removed
    (folder / "notes").mkdir(parents=True)
    os.utime(folder, (0, 0))
    remove_abandoned_temps(target)
    assert (folder / "notes").is_dir()
    # Every write clears what a killed one left beside its file (only export and fetch did).
    report = tmp_path / "report.json"
    abandoned = temp_beside(report)
    os.utime(abandoned, (0, 0))
    write_json(report, {})
    assert not abandoned.exists()


def test_a_file_name_the_file_system_takes_is_written_whatever_its_length(tmp_path: Path) -> None:
    # A 250-byte report name was refused ("File name too long"): its temporary name was longer.
    for name in ("r" * 245 + ".json", "é" * 122 + ".json", "x" * 255, "r." + "x" * 248):
        target = tmp_path / name
        write_json(target, {"a": 1})
        assert target.read_text() == '{\n "a": 1\n}\n'
        assert [p.name for p in tmp_path.iterdir()] == [name]
        target.unlink()
    with pytest.raises(SportsdetError, match="File name too long"):
        write_json(tmp_path / ("r" * 256), {})


def test_a_probe_of_a_folder_lock_does_not_make_its_taker_fail(tmp_path: Path) -> None:
    # folder_holder takes the lock for a moment to see whether it is free: a hold_folder at that
    # instant was refused ("another sportsdet process (pid N)", N its own pid), 326 times in 3,000.
    import threading

    stop = threading.Event()

    def probe() -> None:
        while not stop.is_set():
            files.folder_holder(tmp_path)

    with files.hold_folder(tmp_path, cannot="x", busy="y", fix="z"):
        pass  # the lock file exists from here on
    prober = threading.Thread(target=probe)
    prober.start()
    try:
        for _ in range(300):
            with files.hold_folder(tmp_path, cannot="x", busy="y", fix="z"):
                pass
    finally:
        stop.set()
        prober.join()


def test_a_read_only_mount_is_called_that_not_no_permission(tmp_path: Path, monkeypatch) -> None:
    # As root on a read-only mount the refusal said "no permission": chmod cannot fix that.
    from types import SimpleNamespace

    from sportsdet.files import check_writable_folder

    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(SportsdetError, match=r"cannot write in .* \(no permission\); choose another --out$"):
        check_writable_folder(tmp_path / "out", "--out", tmp_path / "out")
    monkeypatch.setattr(os, "statvfs", lambda path: SimpleNamespace(f_flag=os.ST_RDONLY))
    with pytest.raises(SportsdetError, match=rf"--out {tmp_path / 'out'}: cannot write in {tmp_path} "
                       r"\(read-only file system\); choose another"):  # fmt: skip
        check_writable_folder(tmp_path / "out", "--out", tmp_path / "out")


def test_sizes_read_as_people_read_them() -> None:
    # One function for predict's `info` table and the dataset fetch's disk-space messages.
    assert [files.human_size(n) for n in (512, 3500, 5 * 1024**2, 3 * 1024**4)] == [
        "512 B", "3.4 KB", "5.0 MB", "3072.0 GB",
    ]  # fmt: skip


def test_a_run_folder_that_cannot_be_held_says_what_to_do(tmp_path: Path, monkeypatch) -> None:
    # As another user on someone's run, export and evaluate said "cannot use this run folder
    # (Permission denied)" and stopped there, though --out could write elsewhere.
    from sportsdet.run_folder import RunFolder, lock_run

    run = tmp_path / "run"
    run.mkdir()
    real_open = open

    def refused(path, *args, **kwargs):
        if Path(path).parent == run:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", refused)
    with pytest.raises(SportsdetError, match=r"run folder \(Permission denied\); get write access"):
        with lock_run(RunFolder(run)):
            pass


def test_an_atomic_write_reaches_the_disk_before_it_takes_the_name(tmp_path: Path, monkeypatch) -> None:
    # A power cut after the rename must not leave an empty file under the name: fsync comes first.
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append("fsync")
        real_fsync(fd)

    def replace(src: Path, dst: Path) -> None:
        events.append(f"replace {Path(dst).name}")
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    files.atomic_write(tmp_path / "metrics.json", "{}")
    assert "fsync" in events and events.index("fsync") < events.index("replace metrics.json")


def test_staged_files_publish_the_last_named_one_after_the_rest(tmp_path: Path, monkeypatch) -> None:
    # evaluate's metrics.json means "the set is complete": it must take its name last.
    renamed: list[str] = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: (renamed.append(Path(b).name), real_replace(a, b))[1])
    with files.StagedFiles(tmp_path / "eval") as staged:
        for name in ("a.csv", "metrics.json", "z.png"):
            staged.write(name, name)
        staged.publish(last="metrics.json")
    assert renamed[-1] == "metrics.json" and sorted(renamed) == ["a.csv", "metrics.json", "z.png"]
    assert (tmp_path / "eval" / "z.png").read_text() == "z.png"
