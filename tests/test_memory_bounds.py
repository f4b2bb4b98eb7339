"""Memory is bounded by what a task expects, not by what a file declares: each hostile file below is refused
with one line, in a subprocess whose address space is capped (2 GiB) and whose peak resident memory must stay
under 1 GiB (before these checks each drove a run to several GiB or a MemoryError traceback)."""

import resource
import shutil
import subprocess
import sys
import zipfile

import h5py
import numpy as np
import pytest

ADDRESS_SPACE = 2 << 30       # a legitimate run peaks near 1.1 GB of address space (torch and its threads)
PEAK_RSS = 1 << 30
CHILD = """
import resource, sys
from cmg_eval.cli import main
try:
    main(sys.argv[1:])
finally:
    print("peak-rss-kib", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
"""


def limited_cli(*args):
    """`cmg-eval ARGS` in a capped subprocess: (exit code, output lines without the peak line, peak bytes)."""
    def cap():
        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))

    done = subprocess.run([sys.executable, "-c", CHILD, *map(str, args)], preexec_fn=cap, capture_output=True,
                          text=True, timeout=300)
    lines = (done.stdout + done.stderr).strip().splitlines()
    peak = [int(line.split()[1]) * 1024 for line in lines if line.startswith("peak-rss-kib")]
    return done.returncode, [line for line in lines if not line.startswith("peak-rss-kib")], peak[0] if peak else None


def assert_bounded_refusal(result, expected):
    code, lines, peak = result
    assert code == 1 and len(lines) == 1 and expected in lines[0], "\n".join(lines[-20:])
    assert peak is not None and peak < PEAK_RSS, f"peak RSS {peak / 2 ** 20:.0f} MiB"


def test_feature_zip_inflating_past_its_array(tmp_path, micro_clip_data):
    """A 1 MB zip whose member inflates to 768 MiB (an audio clip needs at most a few MiB)."""
    root = tmp_path / "data"
    shutil.copytree(micro_clip_data / "AVVP", root / "AVVP")
    bomb = sorted((root / "AVVP/feature/audio/zip").iterdir())[0]
    zeros = bytes(1 << 20)
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        with archive.open(f"{bomb.stem}.pkl", "w") as member:
            for _ in range(768):
                member.write(zeros)
    assert bomb.stat().st_size < 8 << 20
    result = limited_cli("run", "avvp", "--ckpt", f"oracle={micro_clip_data / 'oracle.pt'}", "--data-root", root,
                         "--out", tmp_path / "out", "--cache-dir", tmp_path / "cache", "--directions", "A->A",
                         "--set", "epochs=1", "--seeds", "1", "--bootstrap", "0")
    assert_bounded_refusal(result, f"{bomb.name}:{bomb.stem}.pkl: declares {768 << 20} bytes unpacked, expected at most")


def test_labels_declaring_millions_of_rows(tmp_path, micro_data, micro_clip_data):
    """A 1.4 KB labels.h5 declaring 5 million clips (5.4 GiB of labels, no data written)."""
    root = tmp_path / "data"
    shutil.copytree(micro_data, root)
    path = root / "AVE-ECCV18-master/data/labels.h5"
    path.unlink()
    with h5py.File(path, "w") as handle:
        handle.create_dataset("avadataset", shape=(5_000_000, 10, 29), dtype="f4", chunks=(1, 10, 29))
    assert path.stat().st_size < 4096
    result = limited_cli("run", "ave", "--ckpt", f"oracle={micro_clip_data / 'oracle.pt'}", "--data-root", root,
                         "--out", tmp_path / "out", "--cache-dir", tmp_path / "cache")
    assert_bounded_refusal(result, "labels.h5: dataset 'avadataset' declares shape (5000000, 10, 29) (5531 MiB) but stores 0 "
                           "bytes")


def test_embed_input_declaring_95_gib(tmp_path, micro_clip_data):
    """An npz whose header declares a (20 million, 10, 128) float32 array (95 GiB) and holds a few bytes."""
    path = tmp_path / "in.npz"
    with zipfile.ZipFile(path, "w") as archive:
        with archive.open("audio.npy", "w") as member:
            np.lib.format.write_array_header_1_0(member, {"descr": "<f4", "fortran_order": False,
                                                          "shape": (20_000_000, 10, 128)})
            member.write(bytes(64))
    result = limited_cli("embed", "--ckpt", micro_clip_data / "oracle.pt", "--modality", "audio", "--in", path,
                         "--out", tmp_path / "out.npz")
    assert_bounded_refusal(result, "in.npz: array 'audio' declares shape (20000000, 10, 128) float32 "
                                   "(102400000000 bytes), but its member holds 64 bytes")
    assert not (tmp_path / "out.npz").exists()


def test_order_longer_than_the_clips_is_refused_before_reading(tmp_path):
    """An order's declared length is checked against the clip count before it is read (a sparse order file can
    declare billions of indices; this one only one too many)."""
    from cmg_eval.errors import CmgError
    from cmg_eval.data.ave import read_order

    path = tmp_path / "order.h5"
    with h5py.File(path, "w") as handle:
        handle.create_dataset("order", shape=(81,), dtype="i8", chunks=(16,), fillvalue=0)
    with pytest.raises(CmgError, match="order.h5: dataset 'order' declares 81 indices, expected at most 80"):
        read_order(path, 80)
