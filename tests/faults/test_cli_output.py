"""The CLI's outputs under faults: a second run on the same output, damaged or misplaced frame
files, a replaced input, a killed merge's temporaries, a full disk. Each case ends in a file
equal to a clean run's, or in exit code 2 with one clear line; never in a file marked complete
that is corrupt or mixed, a traceback or a crash."""

import errno
import os
import shutil
import subprocess
import sys
import textwrap
import time

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from mdhess import io
from mdhess.cli import app

from ._cli_util import (
    REPO,
    SUBPROCESS_TIMEOUT,
    assert_same_hessians,
    leftovers,
    make_traj,
    run_main,
    variant_potential,
)


def hessian_args(traj, potential="kob-andersen"):
    return ["hessian", traj, "-p", potential, "--format", "bsr", "-q"]


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """A 4-frame trajectory and the Hessian file of a clean, uninterrupted run on it."""
    d = tmp_path_factory.mktemp("clean")
    traj = make_traj(d / "traj.h5")
    ref = d / "ref.h5"
    res = CliRunner().invoke(app, [str(a) for a in [*hessian_args(traj), "-o", ref]])
    assert res.exit_code == 0, res.output
    return traj, ref


def fail_in_frame(monkeypatch, frame, exc):
    """Make the write of frame ``frame`` (0-based, in the order written) raise ``exc`` after it
    has written part of the frame."""
    from mdhess.cli import _jobs

    real, calls = _jobs.write_hessian_frame, [0]

    def write(group, fr, H, **kw):
        calls[0] += 1
        if calls[0] == frame + 1:
            group.create_dataset("half_written", data=np.zeros(1000))
            raise exc
        return real(group, fr, H, **kw)

    monkeypatch.setattr(_jobs, "write_hessian_frame", write)


def interrupted_run(traj, out, monkeypatch, capsys, n_done=2):
    """A run stopped (Ctrl-C) in the middle of writing frame ``n_done``: its first frames kept."""
    fail_in_frame(monkeypatch, n_done, KeyboardInterrupt())
    code, _, err = run_main([*hessian_args(traj), "-o", out], capsys)
    monkeypatch.undo()
    assert code == 130, err
    partial = out.with_name(out.name + ".partial")
    assert sorted(p.name for p in partial.iterdir()) == ["frames.h5", "run.json"]
    assert finished_frames(partial) == n_done
    return partial


def finished_frames(partial) -> int:
    """Frames marked complete in an interrupted run's work file."""
    from mdhess.io._readers import read_partial_run

    run = read_partial_run(partial)
    return 0 if run is None else run.finished


# -- 1. one run at a time per output ---------------------------------------------------------------
def test_a_second_run_on_the_same_output_is_refused(clean, tmp_path, capsys):
    traj, ref = clean
    out = tmp_path / "out.h5"
    code = f"from mdhess import io; r = io.ResultRun({str(out)!r}, 'hessian', {{'x': 1}}, [0]); import sys; sys.stdin.read()"
    holder = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdin=subprocess.PIPE)  # another run holds out.h5
    try:
        lock, deadline = tmp_path / "out.h5.lock", time.time() + 120
        while time.time() < deadline and holder.poll() is None:
            if lock.is_file() and lock.read_text().strip() == str(holder.pid):
                break
            time.sleep(0.02)
        assert lock.read_text().strip() == str(holder.pid)
        code, _, err = run_main([*hessian_args(traj), "-o", out], capsys)
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert str(out) in lines[0] and f"PID {holder.pid}" in lines[0] and "another mdhess run" in lines[0]
    assert not out.exists() and (tmp_path / "out.h5.partial" / "run.json").is_file()  # the holder's run untouched
    # the lock went with its holder: now the run goes through
    code, _, err = run_main([*hessian_args(traj), "-o", out], capsys)
    assert code == 0, err
    assert_same_hessians(out, ref)
    assert leftovers(tmp_path, "out.h5") == []
    # a lock file left by a process that is gone is taken over
    out2 = tmp_path / "out2.h5"
    (tmp_path / "out2.h5.lock").write_text("99999999\n")
    code, _, err = run_main([*hessian_args(traj), "-o", out2], capsys)
    assert code == 0, err
    assert_same_hessians(out2, ref)
    assert leftovers(tmp_path, "out2.h5") == []


@pytest.fixture(scope="module")
def variant_ref(clean, tmp_path_factory):
    traj, _ = clean
    d = tmp_path_factory.mktemp("variant")
    pot = variant_potential(d / "ka-variant.toml")
    ref = d / "ref_variant.h5"
    res = CliRunner().invoke(app, [str(a) for a in [*hessian_args(traj, pot), "-o", ref]])
    assert res.exit_code == 0, res.output
    return pot, ref


@pytest.mark.slow
@pytest.mark.parametrize("trial", range(3))
@pytest.mark.parametrize("potentials", ["same", "different"])
def test_two_concurrent_runs_never_give_a_corrupt_or_mixed_file(clean, variant_ref, tmp_path, potentials, trial):
    """Two `mdhess hessian ... -o out.h5 --overwrite` started at once: each exits 0 or 2 (the lock
    error); the file left is complete, verified and all of one potential, equal to its clean run."""
    traj, ref = clean
    pot_b, ref_b = variant_ref
    out = tmp_path / "out.h5"
    names = ["kob-andersen", "kob-andersen" if potentials == "same" else str(pot_b)]
    cmds = [[sys.executable, "-m", "mdhess.cli", *map(str, hessian_args(traj, p)), "-o", str(out), "--overwrite"] for p in names]
    procs = [subprocess.Popen(c, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for c in cmds]
    results = [(p.wait(timeout=SUBPROCESS_TIMEOUT), p.stderr.read()) for p in procs]
    for p in procs:
        p.stdout.close(), p.stderr.close()
    codes = [c for c, _ in results]
    assert set(codes) <= {0, 2} and 0 in codes, results
    for code, err in results:
        if code == 2:
            lines = err.strip().splitlines()
            assert len(lines) == 1 and "being written by another mdhess run (PID " in lines[0] and str(out) in lines[0], err
    with io.ResultFile(out, "hessian") as r:
        name = r.json_attr("potential")["name"]
    assert name in ("kob-andersen", "ka-variant")
    assert_same_hessians(out, ref if name == "kob-andersen" else ref_b)
    assert leftovers(tmp_path, "out.h5") == []


# -- 2. resume trusts nothing it has not verified ------------------------------------------------------
def _flip_a_data_byte(path, slot=1):
    """Change one byte inside a frame's stored Hessian blocks (the file stays readable HDF5)."""
    with h5py.File(path, "r", locking=False) as f:
        ds = f[f"frames/{slot:06d}/hessian/data"]
        off = ds.id.get_offset() if ds.chunks is None else ds.id.get_chunk_info(0).byte_offset
    with open(path, "r+b") as fh:
        fh.seek(off + 1000)
        b = fh.read(1)
        fh.seek(off + 1000)
        fh.write(bytes([b[0] ^ 0x55]))


def _damage(case, partial, out):
    work = partial / "frames.h5"
    if case == "truncated":
        data = work.read_bytes()
        work.write_bytes(data[: len(data) // 2])
    elif case == "zeroed":
        work.write_bytes(bytes(work.stat().st_size))
    elif case == "empty":
        work.write_bytes(b"")
    elif case == "copied over":  # frame 0's group stored in slot 1 (a misplaced frame)
        with h5py.File(work, "a") as f:
            del f["frames/000001"]
            f.copy(f["frames/000000"], f["frames"], name="000001")
    elif case == "bit flip":
        _flip_a_data_byte(work, 1)
    elif case == "stale temporaries":
        (out.parent / f".{out.name}.tmp-99999999").write_bytes(b"merge killed")
        (partial / ".frames.h5.tmp-99999999").write_bytes(b"carry-over killed")
    else:
        raise ValueError(case)


@pytest.mark.parametrize("case", ["truncated", "zeroed", "empty", "copied over", "bit flip", "stale temporaries"])
def test_resume_verifies_what_it_finds(clean, tmp_path, monkeypatch, capsys, case):
    traj, ref = clean
    out = tmp_path / "out.h5"
    partial = interrupted_run(traj, out, monkeypatch, capsys)
    _damage(case, partial, out)
    code, _, err = run_main([*hessian_args(traj), "-o", out, "--resume"], capsys)
    assert code == 0, err
    assert "Traceback" not in err
    if case == "stale temporaries":
        assert f".{out.name}.tmp-99999999" in err and ".frames.h5.tmp-99999999" in err and "killed" in err
    elif case in ("truncated", "zeroed", "empty"):  # the work file cannot be opened: all its frames are redone
        lines = [ln for ln in err.splitlines() if "frames.h5" in ln]
        assert len(lines) == 1 and "cannot be read" in lines[0] and "recomputing all its frames" in lines[0], err
    else:  # frame 1 alone is named and redone; frame 0 is kept
        lines = [ln for ln in err.splitlines() if "frames.h5" in ln]
        why = "source frame 0, not 1" if case == "copied over" else "checksum mismatch"
        assert len(lines) == 1 and "frame 1 (slot 1)" in lines[0] and why in lines[0], err
        assert "recomputing frame 1" in lines[0]
    assert_same_hessians(out, ref)
    assert leftovers(tmp_path, "out.h5") == []


@pytest.mark.parametrize("damage", ["truncated", "zeroed", "bit flip"])
def test_resume_on_a_damaged_output_calls_it_damaged(clean, tmp_path, capsys, damage):
    traj, ref = clean
    out = tmp_path / "out.h5"
    assert run_main([*hessian_args(traj), "-o", out], capsys)[0] == 0
    code, _, err = run_main([*hessian_args(traj), "-o", out, "--resume"], capsys)
    assert code == 0 and "already complete" in err  # intact: nothing to do
    data = bytearray(out.read_bytes())
    if damage == "truncated":
        out.write_bytes(data[: len(data) // 2])
    elif damage == "zeroed":
        out.write_bytes(bytes(len(data)))
    else:
        with h5py.File(out, "r") as f:
            ds = f["frames/000001/hessian/data"]
            off = ds.id.get_offset() if ds.chunks is None else ds.id.get_chunk_info(0).byte_offset
        data[off + 1000] ^= 0x55
        out.write_bytes(bytes(data))
    code, _, err = run_main([*hessian_args(traj), "-o", out, "--resume"], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert "damaged or incomplete" in lines[0] and "--overwrite" in lines[0] and "other settings" not in lines[0]
    assert run_main([*hessian_args(traj), "-o", out, "--resume", "--overwrite"], capsys)[0] == 0
    assert_same_hessians(out, ref)


def test_each_frame_is_written_once(clean, tmp_path, monkeypatch, capsys):
    """No frame's data is copied: the file written while the frames are computed becomes the
    output (renamed), and the Hessian blocks are written to disk once (bytes counted through
    the HDF5 dataset writes)."""
    traj, ref = clean
    out = tmp_path / "out.h5"
    written, copies = [0], [0]
    create = h5py.Group.create_dataset
    copy = h5py.Group.copy

    def counting_create(self, name, *a, **kw):
        ds = create(self, name, *a, **kw)
        if name == "data":
            written[0] += ds.size * ds.dtype.itemsize
        return ds

    def counting_copy(self, *a, **kw):
        copies[0] += 1
        return copy(self, *a, **kw)

    monkeypatch.setattr(h5py.Group, "create_dataset", counting_create)
    monkeypatch.setattr(h5py.Group, "copy", counting_copy)
    code, _, err = run_main([*hessian_args(traj), "-o", out], capsys)
    monkeypatch.undo()
    assert code == 0, err
    with h5py.File(out) as f:
        stored = sum(f[f"frames/{s:06d}/hessian/data"].nbytes for s in range(len(f["frame_index"])))
    assert written[0] == stored and copies[0] == 0, (written, stored, copies)
    assert_same_hessians(out, ref)


def test_resume_detects_a_replaced_input_of_the_same_size_and_time(tmp_path, monkeypatch, capsys):
    traj = make_traj(tmp_path / "traj.h5")
    out = tmp_path / "out.h5"
    partial = interrupted_run(traj, out, monkeypatch, capsys)
    st = traj.stat()
    make_traj(traj, noise_seed=1)  # other positions, same layout and size
    os.utime(traj, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert traj.stat().st_size == st.st_size and traj.stat().st_mtime_ns == st.st_mtime_ns
    code, _, err = run_main([*hessian_args(traj), "-o", out, "--resume"], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert "other settings" in lines[0] and "input content" in lines[0] and "without --resume" in lines[0]
    assert not out.exists() and finished_frames(partial) == 2  # the interrupted run is kept


def test_resume_accepts_a_touched_input_with_the_same_content(clean, tmp_path, monkeypatch, capsys):
    _, ref = clean
    traj = make_traj(tmp_path / "traj.h5")
    out = tmp_path / "out.h5"
    interrupted_run(traj, out, monkeypatch, capsys)
    st = traj.stat()
    os.utime(traj, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # content unchanged
    code, _, err = run_main([*hessian_args(traj), "-o", out, "--resume"], capsys)
    assert code == 0, err
    assert_same_hessians(out, ref)


# -- 3. a full disk ---------------------------------------------------------------------------------------
H5_WRITE_FAILED = (
    "Can't write data (file write failed: time = Tue Dec  1 10:00:00 2026\n, filename = 'x.h5', "
    "file descriptor = 7, errno = 28, error message = 'No space left on device', buf = 0x55d0, "
    "total write size = 1048576, bytes this sub-write = 1048576, bytes actually written = "
    "18446744073709551615, offset = 0)"
)
WRITE_FAULTS = {
    "ENOSPC": (lambda: OSError(errno.ENOSPC, "No space left on device"), "no space left writing"),
    "h5py OSError": (lambda: OSError(H5_WRITE_FAILED), "no space left writing"),
    "h5py RuntimeError": (lambda: RuntimeError(H5_WRITE_FAILED), "no space left writing"),
    "other HDF5 error": (lambda: RuntimeError("Can't write data (some HDF5 failure)"), "cannot write"),
}


@pytest.mark.parametrize("fault", sorted(WRITE_FAULTS))
def test_a_failed_frame_write_exits_2_and_resume_completes(clean, tmp_path, monkeypatch, capsys, fault):
    traj, ref = clean
    out = tmp_path / "out.h5"
    make_exc, words = WRITE_FAULTS[fault]
    fail_in_frame(monkeypatch, 2, make_exc())
    code, _, err = run_main([*hessian_args(traj), "-o", out], capsys)
    monkeypatch.undo()
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert words in lines[0] and "frames.h5 (frame 2)" in lines[0] and "Traceback" not in err
    partial = tmp_path / "out.h5.partial"
    assert sorted(p.name for p in partial.iterdir()) == ["frames.h5", "run.json"] and finished_frames(partial) == 2
    with h5py.File(partial / "frames.h5", "r") as f:  # the failed frame's half-written group went
        assert sorted(f["frames"]) == ["000000", "000001"]
    assert leftovers(tmp_path, "out.h5") == ["out.h5.partial"]  # no lock, no temporary
    code, _, err = run_main([*hessian_args(traj), "-o", out, "--resume"], capsys)
    assert code == 0, err
    assert_same_hessians(out, ref)
    assert leftovers(tmp_path, "out.h5") == []


def test_a_full_disk_while_finishing_keeps_the_frames(clean, tmp_path, monkeypatch, capsys):
    traj, ref = clean
    out = tmp_path / "out.h5"
    setitem = h5py.AttributeManager.__setitem__

    def no_space_for_the_root(self, name, value):
        if name == "mdhess_kind":
            raise OSError(errno.ENOSPC, "No space left on device")
        return setitem(self, name, value)

    monkeypatch.setattr(h5py.AttributeManager, "__setitem__", no_space_for_the_root)
    code, _, err = run_main([*hessian_args(traj), "-o", out], capsys)
    monkeypatch.undo()
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "no space left writing" in lines[0] and str(out) in lines[0], err
    assert not out.exists() and finished_frames(tmp_path / "out.h5.partial") == 4
    assert leftovers(tmp_path, "out.h5") == ["out.h5.partial"]
    code, _, err = run_main([*hessian_args(traj), "-o", out, "--resume"], capsys)
    assert code == 0, err
    assert_same_hessians(out, ref)
    assert leftovers(tmp_path, "out.h5") == []


def test_overwrite_is_never_a_rename_over_the_old_output(clean, tmp_path, monkeypatch, capsys):
    """--overwrite removes the old output just before the rename (a rename over an existing file
    makes ext4 write the new one out first: 0.3 s a GB). A kill between the two leaves the
    complete work file, which --resume finishes without computing a frame."""
    from mdhess.cli._jobs import TrajectorySource

    traj, ref = clean
    out = tmp_path / "out.h5"
    out.write_bytes(b"an older output")
    replace, over = os.replace, []

    def recording(src, dst, *a, **kw):
        over.append((str(dst), os.path.lexists(dst)))
        return replace(src, dst, *a, **kw)

    monkeypatch.setattr(os, "replace", recording)
    code, _, err = run_main([*hessian_args(traj), "-o", out, "--overwrite"], capsys)
    assert code == 0, err
    assert (str(out), False) in over and not any(existed for _, existed in over), over
    assert_same_hessians(out, ref)

    def killed(src, dst, *a, **kw):  # the old output is gone, the new one not yet in its place
        if str(dst) == str(out):
            raise KeyboardInterrupt
        return replace(src, dst, *a, **kw)

    monkeypatch.setattr(os, "replace", killed)
    code, _, err = run_main([*hessian_args(traj), "-o", out, "--overwrite"], capsys)
    assert code == 130 and not out.exists(), err
    assert finished_frames(tmp_path / "out.h5.partial") == 4
    monkeypatch.setattr(os, "replace", replace)
    computed = [0]
    hessian = TrajectorySource.hessian

    def counting(self, *a, **kw):
        computed[0] += 1
        return hessian(self, *a, **kw)

    monkeypatch.setattr(TrajectorySource, "hessian", counting)
    code, _, err = run_main([*hessian_args(traj), "-o", out, "--resume"], capsys)
    assert code == 0 and computed[0] == 0, (err, computed)
    assert_same_hessians(out, ref)
    assert leftovers(tmp_path, "out.h5") == []


def _private_tmpfs_works(tmp_path) -> str | None:
    """None when `unshare -m` + `mount -t tmpfs` work here, else why not."""
    if shutil.which("unshare") is None:
        return "no unshare command"
    d = tmp_path / "probe"
    d.mkdir()
    for prefix in (["unshare", "-m"], ["unshare", "-rm"]):
        r = subprocess.run([*prefix, "sh", "-c", f"mount -t tmpfs -o size=1m tmpfs '{d}' && touch '{d}/x'"],
                           capture_output=True, text=True, timeout=60)  # fmt: skip
        if r.returncode == 0:
            return None
    return f"cannot mount a tmpfs in a private mount namespace ({r.stderr.strip()[:200]})"


@pytest.mark.slow
def test_a_real_full_disk_on_a_small_tmpfs(clean, tmp_path):
    """On a tmpfs: with room for about 2 frames the run exits 2 ("no space left writing
    .../frames.h5 (frame k)") and the frames that fit are kept; with room for the remaining
    frames but not for carrying the finished ones into a fresh work file, the resumed run exits
    2 at the carry-over with the work file untouched; with room for everything it completes,
    equal to a clean run."""
    why = _private_tmpfs_works(tmp_path)
    if why is not None:
        pytest.skip(why)
    traj, ref = clean
    shard = ref.stat().st_size / 4  # a frame's share of the clean file
    mib = 1 << 20
    disk = tmp_path / "disk"
    disk.mkdir()
    size = int(16 * shard + 2 * mib)
    filler2 = int(size - 6 * shard - 1 * mib)  # left after filler1 goes: 6 frames' room
    filler1 = int(4 * shard)  # at first: 2 frames' room (plus 1 MiB)
    py = sys.executable
    args = " ".join(f"'{a}'" for a in hessian_args(traj))
    work = f"{disk}/out.h5.partial/frames.h5"
    # leaves room for half the work file: its carry-over into a fresh work file cannot fit
    half_room = f"import os; v = os.statvfs('{disk}'); print(max(0, v.f_bavail * v.f_frsize - os.path.getsize('{work}') // 2))"
    script = textwrap.dedent(f"""\
        set -u
        mount -t tmpfs -o size={size} tmpfs '{disk}' || exit 99
        cd '{REPO}'
        head -c {filler2} /dev/zero > '{disk}/filler2'
        head -c {filler1} /dev/zero > '{disk}/filler1'
        '{py}' -m mdhess.cli {args} -o '{disk}/out.h5' > '{tmp_path}/out1' 2> '{tmp_path}/err1'; echo $? > '{tmp_path}/rc1'
        ls -a '{disk}' '{disk}/out.h5.partial' > '{tmp_path}/ls1' 2>&1
        cp '{work}' '{tmp_path}/work1.h5'
        rm '{disk}/filler1'
        head -c $('{py}' -c "{half_room}") /dev/zero > '{disk}/filler1'
        '{py}' -m mdhess.cli {args} -o '{disk}/out.h5' --resume > '{tmp_path}/out2' 2> '{tmp_path}/err2'; echo $? > '{tmp_path}/rc2'
        ls -a '{disk}' '{disk}/out.h5.partial' > '{tmp_path}/ls2' 2>&1
        cmp '{work}' '{tmp_path}/work1.h5' > '{tmp_path}/cmp2' 2>&1; echo $? >> '{tmp_path}/cmp2'
        rm '{disk}/filler1' '{disk}/filler2'
        '{py}' -m mdhess.cli {args} -o '{disk}/out.h5' --resume > '{tmp_path}/out3' 2> '{tmp_path}/err3'; echo $? > '{tmp_path}/rc3'
        ls -a '{disk}' > '{tmp_path}/ls3' 2>&1
        cp '{disk}/out.h5' '{tmp_path}/out.h5'
    """)
    r = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=3 * SUBPROCESS_TIMEOUT)
    if r.returncode == 99:
        pytest.skip(f"tmpfs mount failed: {r.stderr.strip()[:200]}")

    def read(name):
        return (tmp_path / name).read_text()

    rc = [int(read(f"rc{i}")) for i in (1, 2, 3)]
    err1, err2 = read("err1").strip().splitlines(), read("err2").strip().splitlines()
    # 1: a frame did not fit; the frames before it are kept
    assert rc[0] == 2 and len(err1) == 1 and "no space left writing" in err1[0] and "frames.h5 (frame " in err1[0], (rc, err1)
    assert "frames.h5" in read("ls1") and ".tmp" not in read("ls1")
    kept = finished_frames_of(tmp_path / "work1.h5")
    assert 1 <= kept < 4, kept
    # 2: the finished frames could not be carried over; the work file is left as it was
    assert rc[1] == 2 and len(err2) == 1 and "no space left writing" in err2[0] and ".frames.h5.tmp-" in err2[0], (rc, err2)
    assert ".tmp" not in read("ls2") and read("cmp2").strip().splitlines()[-1] == "0"
    # 3: room for everything
    assert rc[2] == 0, read("err3")
    assert "out.h5.partial" not in read("ls3") and ".tmp" not in read("ls3") and "lock" not in read("ls3")
    assert_same_hessians(tmp_path / "out.h5", ref)


def finished_frames_of(work_file) -> int:
    with h5py.File(work_file, "r") as f:
        return sum(1 for g in f["frames"].values() if g.attrs.get("complete", False))
