"""Feature pickles as releases really come: every pickle protocol, memory order, numeric dtype and numpy
module path reads back exactly; pickles that would allocate more than they carry, or call anything but
the array stand-ins, are refused with one line naming the file, before any allocation."""

import itertools
import pickle
import pickletools
import struct
import tracemalloc
import warnings
import zipfile

import numpy as np
import pytest

from cmg_eval.data.zipfeat import read_feature_zip
from cmg_eval.errors import CmgError

DTYPES = ("float16", "float32", "float64", "int8", "int32", "int64", "uint8", "bool", ">f4")
HUGE = 4_000_000_000  # rows: 4e9 x 8 bytes would be 32 GB


def numpy1_paths(data: bytes) -> bytes:
    """The same pickle as numpy 1.x writes it: `numpy.core...` instead of `numpy._core...` (frames dropped,
    as their lengths change; unframed protocol 4-5 streams are legal)."""
    out = bytearray()
    ops = list(pickletools.genops(data))
    ends = [pos for _, _, pos in ops[1:]] + [len(data)]
    for (op, arg, pos), end in zip(ops, ends):
        raw = data[pos:end]
        if op.name == "FRAME":
            continue
        if isinstance(arg, str) and arg.startswith("numpy._core"):
            new = arg.replace("numpy._core", "numpy.core", 1)
            if op.name == "GLOBAL":
                raw = b"c" + new.replace(" ", "\n", 1).encode() + b"\n"
            else:
                assert op.name == "SHORT_BINUNICODE", op.name
                raw = b"\x8c" + bytes([len(new)]) + new.encode()
        out += raw
    return bytes(out)


def python2_pickle(array: np.ndarray) -> bytes:
    """Protocol 2 as Python 2 with numpy 1.x wrote it: byte strings (BINSTRING), no `_codecs.encode`."""
    def text(value: str) -> bytes:
        return b"U" + bytes([len(value)]) + value.encode("latin1")

    def ints(values) -> bytes:
        return b"(" + b"".join(b"J" + struct.pack("<i", v) for v in values) + b"t"

    data = array.tobytes(order="A")
    order = array.dtype.byteorder if array.dtype.byteorder != "=" else "<"
    return b"".join([
        b"\x80\x02", b"cnumpy.core.multiarray\n_reconstruct\n", b"cnumpy\nndarray\n", ints([0]), text("b"), b"\x87R",
        b"(", b"K\x01", ints(array.shape), b"cnumpy\ndtype\n", text(array.dtype.str[1:]), b"K\x00K\x01\x87R",
        b"(", b"K\x03", text(order if array.dtype.itemsize > 1 else "|"), b"NNN", b"J\xff\xff\xff\xffJ\xff\xff\xff\xff",
        b"K\x00t", b"b", b"\x88" if array.flags.f_contiguous and not array.flags.c_contiguous else b"\x89",
        b"T" + struct.pack("<I", len(data)) + data, b"tb."])


def zipped(tmp_path, name: str, payload: bytes):
    path = tmp_path / f"{name}.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"{name}.pkl", payload)
    return path


def sample(dtype: str, order: str) -> np.ndarray:
    values = np.random.default_rng(0).normal(0, 50, (7, 3, 5))
    return np.asarray(values > 0 if dtype == "bool" else values, dtype=dtype, order=order)


@pytest.mark.parametrize("protocol", range(6))
def test_every_protocol_order_dtype_and_numpy_path_reads_back(tmp_path, protocol):
    for dtype, order, numpy1 in itertools.product(DTYPES, "CF", (False, True)):
        array = sample(dtype, order)
        payload = pickle.dumps(array, protocol=protocol)
        if numpy1:
            payload = numpy1_paths(payload)
            assert b"numpy._core" not in payload and b"numpy.core" in payload
            with warnings.catch_warnings():  # the rewritten stream is a valid pickle for the real unpickler too
                warnings.simplefilter("ignore", DeprecationWarning)
                np.testing.assert_array_equal(pickle.loads(payload), array)
        read = read_feature_zip(zipped(tmp_path, f"p{protocol}-{dtype.strip('>')}-{order}-{numpy1}", payload))
        assert read.dtype == array.dtype and read.shape == array.shape, (dtype, order, numpy1)
        assert read.flags.f_contiguous == (order == "F") and read.flags.writeable
        np.testing.assert_array_equal(read, array)


def test_protocol_5_and_2_use_the_globals_that_were_refused_before():
    """The stand-ins cover what these protocols name: `_frombuffer` (5) and `_codecs.encode` (0-2)."""
    array = sample("float32", "C")
    assert b"_frombuffer" in pickle.dumps(array, protocol=5)
    assert b"_codecs\nencode" in pickle.dumps(array, protocol=2)


@pytest.mark.parametrize("dtype, order", [("float32", "C"), ("float64", "F"), ("int16", "C"), ("bool", "C")])
def test_python2_pickles_read_back(tmp_path, dtype, order):
    array = sample(dtype, order)
    payload = python2_pickle(array)
    np.testing.assert_array_equal(pickle.loads(payload, encoding="latin1"), array)  # the hand-built stream is valid
    read = read_feature_zip(zipped(tmp_path, "py2", payload))
    assert read.dtype == array.dtype and read.flags.f_contiguous == (order == "F")
    np.testing.assert_array_equal(read, array)


def test_empty_sliced_transposed_and_broadcast_arrays_read_back(tmp_path):
    """Protocol 5 stores an array contiguous in a permutation of its axes with order 'K' and that permutation."""
    transposed = np.arange(60.0).reshape(3, 4, 5).transpose(2, 0, 1)
    grid = np.asarray(np.broadcast_to(np.arange(6.0).reshape(2, 1, 1, 3), (2, 7, 7, 3)), dtype=np.float32)
    assert transposed.__reduce_ex__(5)[1][3] == "K" and not grid.flags.c_contiguous
    for protocol in range(6):
        for array in (np.zeros((0, 128), np.float32), np.arange(40.0).reshape(8, 5)[::2, 1::2], np.array(2.5),
                      transposed, grid):
            read = read_feature_zip(zipped(tmp_path, f"e{protocol}", pickle.dumps(array, protocol=protocol)))
            np.testing.assert_array_equal(read, array)
            assert read.shape == array.shape


class Reduces:
    """A pickle payload naming `function(*args)` (and optionally a BUILD state) without running it here."""

    def __init__(self, function, args, state=None):
        self.value = (function, args) if state is None else (function, args, state)

    def __reduce__(self):
        return self.value


_reconstruct = np._core.multiarray._reconstruct
_frombuffer = np._core.numeric._frombuffer
ALLOCATING = {
    "ndarray called directly": (Reduces(np.ndarray, ((HUGE,), "f8")), "numpy.ndarray(...) call"),
    "_reconstruct with a huge shape": (Reduces(_reconstruct, (np.ndarray, (HUGE,), b"b")), "empty ndarray placeholder"),
    "state with a huge shape": (Reduces(_reconstruct, (np.ndarray, (0,), b"b"),
                                        (1, (HUGE,), np.dtype("f8"), False, bytes(8))),
                                "needs 32000000000 bytes, the pickle carries 8"),
    "_frombuffer with a huge shape": (Reduces(_frombuffer, (bytearray(8), np.dtype("f8"), (HUGE,), "C")),
                                      "needs 32000000000 bytes, the pickle carries 8"),
    "a huge subarray dtype": (Reduces(_reconstruct, (np.ndarray, (0,), b"b"),
                                      (1, (HUGE,), np.dtype(("f8", (16000, 16000))), False, bytes(8))),
                              "refused dtype"),
    "scalar of another size": (Reduces(np._core.multiarray.scalar, (np.dtype("f8"), bytes(3))), "needs 8 bytes"),
    "encode of another codec": (Reduces(_reconstruct, (np.ndarray, (0,), b"b"),
                                        (1, (1,), np.dtype("f8"), False, Reduces(__import__("codecs").encode,
                                                                                  ("x" * 8, "rot13")))),
                                "only latin1 bytes"),
    "object dtype": (Reduces(_reconstruct, (np.ndarray, (0,), b"b"), (1, (2,), np.dtype("O"), False, [1, 2])),
                     "refused dtype"),
}


@pytest.mark.parametrize("case", list(ALLOCATING))
def test_pickles_that_would_allocate_more_than_they_carry_are_refused_first(tmp_path, case):
    payload, expected = ALLOCATING[case]
    path = zipped(tmp_path, "clip", pickle.dumps(payload, protocol=5))
    tracemalloc.start()
    try:
        with pytest.raises(CmgError) as refused:
            read_feature_zip(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    message = str(refused.value)
    assert message.startswith(f"{path}:clip.pkl: not a pickled numpy array") and expected in message, message
    assert "\n" not in message
    assert peak < 50 * 2**20, f"{case}: {peak} bytes allocated"
