#!/usr/bin/env python3
"""A small reader and writer of safetensors files in pure Python + numpy, for the parity
scripts; it follows the same rules as src/safetensors.c (which see) and writes the same
bytes: compact JSON header, "__metadata__" first, padded with spaces to a multiple of 8,
tensors stored largest element size first (the given order within one size), written to
PATH.tmp-PID, fsynced and renamed onto PATH.

    entries, meta = st.read(path)      # [(name, dtype, ndarray)] in file order; BF16 arrays
                                       # hold the raw uint16 bit patterns
    st.write(path, entries, meta)      # entries as read returns them
    tensors = st.load(path)            # {name: ndarray}, BF16 widened to float32
    st.save(path, tensors, meta)       # dtypes from the arrays (bool, u8 .. f64)

Command line (used by tests/test_safetensors.c):
    st.py dump FILE       JSON {"metadata", "tensors": [{name, dtype, shape, sum, wsum}]},
                          sum = sum of the values, wsum = sum of v_i * (i % 5 + 1) over the
                          flat C order, both as float64 (BF16 widened)
    st.py copy SRC DST    read SRC and write it to DST
    st.py pattern DST     one tensor per dtype, v_i = (i % 7) - 3 (unsigned: i % 7, BOOL:
                          i % 2), shapes including a scalar and 0 elements
"""
import json
import os
import sys

import numpy as np

MAX_HEADER = 100_000_000

DTYPES = {
    "BOOL": np.dtype(np.bool_), "U8": np.dtype("u1"), "I8": np.dtype("i1"),
    "I16": np.dtype("<i2"), "U16": np.dtype("<u2"), "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"), "I32": np.dtype("<i4"), "U32": np.dtype("<u4"),
    "F32": np.dtype("<f4"), "F64": np.dtype("<f8"), "I64": np.dtype("<i8"),
    "U64": np.dtype("<u8"),
}
_FROM_NUMPY = {(v.kind, v.itemsize): k for k, v in DTYPES.items() if k != "BF16"}


def bf16_to_f32(bits):
    return (np.asarray(bits, dtype="<u2").astype("<u4") << 16).view("<f4")


def f32_to_bf16(x):
    """Round to nearest even (NaN kept NaN)."""
    u = np.asarray(x, dtype="<f4").view("<u4").astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype("<u2")
    nan = np.isnan(np.asarray(x, dtype="<f4"))
    return np.where(nan, ((u >> 16) | 0x40).astype("<u2"), r)


def _fail(path, msg, name=None):
    raise ValueError(f"{path}: tensor '{name}': {msg}" if name is not None else f"{path}: {msg}")


def _pairs_no_dup(path, what):
    def hook(pairs):
        seen = set()
        for k, _ in pairs:
            if k in seen:
                _fail(path, f"{what}'{k}' appears twice in the header")
            seen.add(k)
        return dict(pairs)
    return hook


def _uint(v):
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 2**53


def read(path):
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 8:
        _fail(path, f"the file holds {len(blob)} bytes, fewer than the 8 of the header length")
    n = int.from_bytes(blob[:8], "little")
    if n > MAX_HEADER:
        _fail(path, f"header length {n} exceeds the format's limit of {MAX_HEADER} bytes")
    if n > len(blob) - 8:
        _fail(path, f"header length {n} runs past the end of the file")
    raw = blob[8:8 + n]
    if not raw.startswith(b"{"):
        _fail(path, "the header does not start with '{'")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        _fail(path, f"the header is not valid UTF-8 (byte {e.start})")
    try:
        header = json.loads(text, object_pairs_hook=_pairs_no_dup(path, ""))
    except json.JSONDecodeError as e:
        _fail(path, f"the header is not valid JSON ({e.msg} at byte {e.pos})")
    data = memoryview(blob)[8 + n:]
    meta = header.pop("__metadata__", {})
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        _fail(path, '"__metadata__" is not an object of strings')
    spans = []
    for name, e in header.items():
        if not isinstance(e, dict) or not {"dtype", "shape", "data_offsets"} <= e.keys():
            _fail(path, "the entry is not an object with dtype, shape and data_offsets", name)
        if e["dtype"] not in DTYPES:
            _fail(path, f"unknown dtype {e['dtype']!r}", name)
        shape = e["shape"]
        if not isinstance(shape, list) or not all(_uint(d) for d in shape):
            _fail(path, "shape is not a list of non-negative integers", name)
        offs = e["data_offsets"]
        if not isinstance(offs, list) or len(offs) != 2 or not all(_uint(o) for o in offs):
            _fail(path, "data_offsets is not [begin, end]", name)
        b, end = offs
        need = int(np.prod(shape, dtype=object)) * DTYPES[e["dtype"]].itemsize
        if end < b or end - b != need:
            _fail(path, f"data_offsets [{b}, {end}] hold {end - b} bytes, needs {need}", name)
        if end > len(data):
            _fail(path, f"data_offsets [{b}, {end}] run past the end of the data buffer "
                        f"({len(data)} bytes): truncated?", name)
        spans.append((b, end, name, e["dtype"], shape))
    spans.sort(key=lambda s: (s[0], s[1]))
    cursor = 0
    entries = []
    for b, end, name, dt, shape in spans:
        if b != cursor:
            _fail(path, f"data_offsets [{b}, {end}] " +
                  ("overlap another tensor" if b < cursor else "leave a gap before it"), name)
        cursor = end
        arr = np.frombuffer(data[b:end], dtype=DTYPES[dt]).reshape(shape).copy()
        entries.append((name, dt, arr))
    if cursor != len(data):
        _fail(path, f"the data buffer holds {len(data)} bytes, the tensors cover {cursor}")
    return entries, meta


def write(path, entries, metadata=None):
    metadata = dict(metadata or {})
    names = [e[0] for e in entries]
    if len(set(names)) != len(names) or "__metadata__" in names:
        _fail(path, "tensor names are not distinct, or one is __metadata__")
    norm = []
    for name, dt, arr in entries:
        if dt not in DTYPES:
            _fail(path, f"unknown dtype {dt!r}", name)
        if dt == "BF16" and np.asarray(arr).dtype.kind == "f":
            arr = f32_to_bf16(arr)
        arr = np.asarray(arr, dtype=DTYPES[dt], order="C")
        norm.append((name, dt, arr))
    order = sorted(range(len(norm)), key=lambda i: -DTYPES[norm[i][1]].itemsize)
    header = {}
    if metadata:
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            _fail(path, "metadata keys and values must be strings")
        header["__metadata__"] = metadata
    off = 0
    for i in order:
        name, dt, arr = norm[i]
        header[name] = {"dtype": dt, "shape": list(arr.shape),
                        "data_offsets": [off, off + arr.nbytes]}
        off += arr.nbytes
    js = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    js += b" " * (-len(js) % 8)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(len(js).to_bytes(8, "little"))
            f.write(js)
            for i in order:
                f.write(norm[i][2].tobytes())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load(path):
    entries, _ = read(path)
    return {n: (bf16_to_f32(a) if dt == "BF16" else a) for n, dt, a in entries}


def save(path, tensors, metadata=None):
    entries = []
    for name, arr in tensors.items():
        arr = np.asarray(arr)
        dt = _FROM_NUMPY.get((arr.dtype.kind, arr.dtype.itemsize))
        if dt is None:
            _fail(path, f"numpy dtype {arr.dtype} has no safetensors dtype", name)
        entries.append((name, dt, arr))
    write(path, entries, metadata)


def _values(dt, a):
    return bf16_to_f32(a).astype(np.float64) if dt == "BF16" else a.astype(np.float64)


def _pattern(dt, n):
    i = np.arange(n, dtype=np.int64)
    if dt == "BOOL":
        return i % 2 == 1
    v = i % 7 if dt[0] == "U" else i % 7 - 3
    if dt == "BF16":
        return f32_to_bf16(v.astype(np.float32))
    return v.astype(DTYPES[dt])


def main(argv):
    if len(argv) == 3 and argv[1] == "dump":
        entries, meta = read(argv[2])
        out = []
        for name, dt, a in entries:
            v = _values(dt, a).reshape(-1)
            w = np.arange(v.size) % 5 + 1
            out.append({"name": name, "dtype": dt, "shape": list(a.shape),
                        "sum": float(v.sum()), "wsum": float((v * w).sum())})
        json.dump({"metadata": meta, "tensors": out}, sys.stdout, ensure_ascii=False)
        print()
    elif len(argv) == 4 and argv[1] == "copy":
        entries, meta = read(argv[2])
        write(argv[3], entries, meta)
    elif len(argv) == 3 and argv[1] == "pattern":
        shapes = [[2, 3, 5], [], [0], [7], [3, 0, 2], [4, 1, 3, 2]]
        entries = []
        for k, dt in enumerate(DTYPES):
            shape = shapes[k % len(shapes)]
            values = _pattern(dt, int(np.prod(shape))).reshape(shape)
            entries.append((f"p.{dt.lower()}", dt, values))
        write(argv[2], entries, {"writer": "st.py", "note": "ünïcode ✓"})
    else:
        sys.stderr.write(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
