"""Reading and writing IDX files (the MNIST container format), raw or gzip-compressed.

Layout: two zero bytes, a dtype code, the number of dimensions ``d``; then ``d`` big-endian
uint32 sizes; then the data, big-endian, row-major.  A gzip stream is recognised by its magic
bytes rather than its file name, so a mis-named file still reads (or fails) honestly.
"""
from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np

__all__ = ["DatasetFormatError", "read_idx", "write_idx"]

_GZIP_MAGIC = b"\x1f\x8b"

# IDX dtype code -> big-endian numpy dtype
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_DTYPE_CODES = {dt.newbyteorder("="): code for code, dt in _IDX_DTYPES.items()}
_DTYPE_NAMES = {0x08: "uint8", 0x09: "int8", 0x0B: "int16", 0x0C: "int32", 0x0D: "float32", 0x0E: "float64"}


class DatasetFormatError(ValueError):
    """A dataset file exists but its content is not what was expected (corrupt, truncated, wrong file)."""


def _read_bytes(path: Path) -> bytes:
    with open(path, "rb") as fh:
        raw = fh.read()
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as err:
        raise DatasetFormatError(f"{path}: truncated or corrupt gzip stream ({err})") from None


def read_idx(path, *, dtype=None, ndim: int | None = None) -> np.ndarray:
    """Read one IDX file (raw or gzip) into a native-endian array.

    ``dtype``/``ndim``, when given, are the expected element type and number of dimensions;
    any disagreement with the header, or a byte count that does not match the header, raises
    :class:`DatasetFormatError` naming the file.
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise DatasetFormatError(f"{path}: expected an IDX header of at least 4 bytes, got {len(data)} bytes")
    zero, code, nd = struct.unpack(">HBB", data[:4])
    if zero != 0 or code not in _IDX_DTYPES:
        raise DatasetFormatError(
            f"{path}: bad IDX magic number 0x{data[:4].hex()} "
            f"(expected 0x0000 then a dtype code in {{{', '.join(f'0x{c:02x}' for c in _IDX_DTYPES)}}})"
        )
    if dtype is not None and _IDX_DTYPES[code] != np.dtype(dtype).newbyteorder(">"):
        raise DatasetFormatError(
            f"{path}: expected IDX dtype {np.dtype(dtype).name} "
            f"(code 0x{_DTYPE_CODES[np.dtype(dtype).newbyteorder('=')]:02x}), "
            f"got {_DTYPE_NAMES[code]} (code 0x{code:02x})"
        )
    if ndim is not None and nd != ndim:
        raise DatasetFormatError(f"{path}: expected a {ndim}-d IDX array, header says {nd}-d")
    header = 4 + 4 * nd
    if len(data) < header:
        raise DatasetFormatError(f"{path}: truncated IDX header (expected {header} bytes, got {len(data)})")
    shape = struct.unpack(f">{nd}I", data[4:header])
    expected = int(np.prod(shape, dtype=np.int64)) * _IDX_DTYPES[code].itemsize
    got = len(data) - header
    if got != expected:
        what = "truncated" if got < expected else "trailing bytes after the data"
        raise DatasetFormatError(
            f"{path}: IDX header says shape {shape} = {expected} data bytes, file has {got} ({what})"
        )
    arr = np.frombuffer(data, _IDX_DTYPES[code], offset=header).reshape(shape)
    return arr.astype(_IDX_DTYPES[code].newbyteorder("="))


def write_idx(path, array) -> Path:
    """Write ``array`` as an IDX file; gzip-compressed when ``path`` ends in ``.gz``."""
    path = Path(path)
    array = np.asarray(array)
    code = _DTYPE_CODES.get(array.dtype.newbyteorder("="))
    if code is None:
        raise ValueError(f"write_idx: unsupported dtype {array.dtype} (IDX holds {sorted(_DTYPE_NAMES.values())})")
    payload = (
        struct.pack(">HBB", 0, code, array.ndim)
        + struct.pack(f">{array.ndim}I", *array.shape)
        + np.ascontiguousarray(array, _IDX_DTYPES[code]).tobytes()
    )
    if path.suffix == ".gz":
        payload = gzip.compress(payload, mtime=0)  # mtime=0: identical arrays give identical files
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(payload)
    os.replace(tmp, path)
    return path
