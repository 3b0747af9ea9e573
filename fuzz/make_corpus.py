#!/usr/bin/env python3
"""Writes the seed corpus of the fuzz targets: fuzz/corpus/<target>/seed_*.

Python standard library only. Deterministic: rerunning it rewrites the same files (seed_* only; files that
fuzzing added, named by their SHA-1 by libFuzzer's -merge, are kept). Usage: fuzz/make_corpus.py [OUT_DIR]
"""
import gzip
import json
import os
import random
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "corpus")


def write(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogateescape")
    with open(os.path.join(d, "seed_" + name), "wb") as f:
        f.write(data)


def clear_seeds(target):
    d = os.path.join(OUT, target)
    if os.path.isdir(d):
        for f in os.listdir(d):
            if f.startswith("seed_"):
                os.remove(os.path.join(d, f))


# ---- safetensors ---------------------------------------------------------------------------------------
ST_SIZES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1, "I16": 2, "U16": 2,
            "F16": 2, "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "C64": 8, "F64": 8, "I64": 8, "U64": 8}


def st_file(tensors, metadata=None, pad=True, header_override=None, extra=b"", length_override=None):
    """tensors: list of (name, dtype, shape); data bytes are 0, 1, 2, ... Returns the file's bytes."""
    header = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    offset = 0
    for name, dtype, shape in tensors:
        n = ST_SIZES.get(dtype, 1)
        for d in shape:
            n *= d
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    text = header_override if header_override is not None else json.dumps(header, separators=(",", ":"))
    text = text.encode() if isinstance(text, str) else text
    if pad:
        text += b" " * ((8 - len(text) % 8) % 8)
    length = len(text) if length_override is None else length_override
    return struct.pack("<Q", length) + text + bytes(i % 251 for i in range(offset)) + extra


def safetensors():
    t = "safetensors"
    clear_seeds(t)
    write(t, "empty_header", st_file([]))
    write(t, "one_f32", st_file([("w", "F32", [2, 3])]))
    write(t, "scalar", st_file([("s", "F64", [])]))
    write(t, "zero_size", st_file([("z", "F32", [0, 4]), ("a", "I8", [3])]))
    write(t, "all_dtypes", st_file([(f"t_{d}", d, [2]) for d in ST_SIZES]))
    write(t, "metadata", st_file([("weight", "BF16", [4, 2]), ("bias", "BF16", [2])],
                                 metadata={"format": "pt", "note": "ünïcode"}))
    write(t, "metadata_only", st_file([], metadata={"k": "v"}))
    write(t, "nopad", st_file([("x", "U8", [5])], pad=False))
    write(t, "nested_names", st_file([("layer.0.weight", "F16", [1, 2, 3]), ("layer.0.bias", "F16", [3])]))
    write(t, "many", st_file([(f"t{i}", "I32", [i % 3]) for i in range(12)]))
    # Near-valid: each breaks one rule.
    write(t, "trailing_bytes", st_file([("x", "U8", [2])], extra=b"\x00"))
    write(t, "hole", st_file([], header_override='{"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}',
                             pad=False, extra=b"xy"))
    write(t, "overlap", st_file([], pad=False, extra=b"ab",
                                header_override='{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},'
                                                '"b":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}'))
    write(t, "duplicate", st_file([], pad=False, extra=b"ab",
                                  header_override='{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},'
                                                  '"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}'))
    write(t, "bad_dtype", st_file([("x", "F33", [1])]))
    write(t, "f4", st_file([("x", "F4", [2])]))
    write(t, "neg_shape", st_file([], pad=False, header_override='{"x":{"dtype":"U8","shape":[-1],"data_offsets":[0,0]}}'))
    write(t, "float_offset", st_file([], pad=False, header_override='{"x":{"dtype":"U8","shape":[0],"data_offsets":[0.0,0]}}'))
    write(t, "overflow_shape", st_file([], pad=False, header_override=
                                       '{"x":{"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,0]}}'))
    write(t, "big_offsets", st_file([], pad=False, header_override=
                                    '{"x":{"dtype":"U8","shape":[0],"data_offsets":[18446744073709551615,0]}}'))
    write(t, "size_mismatch", st_file([], pad=False, extra=b"abc",
                                      header_override='{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,3]}}'))
    write(t, "not_object", st_file([], header_override="[1,2,3]"))
    write(t, "bad_json", st_file([], header_override='{"x":'))
    write(t, "meta_not_string", st_file([], header_override='{"__metadata__":{"k":1}}'))
    write(t, "meta_array", st_file([], header_override='{"__metadata__":[]}'))
    write(t, "nested_dup_key", st_file([], header_override='{"x":{"dtype":"U8","dtype":"U8","shape":[0],"data_offsets":[0,0]}}'))
    write(t, "missing_fields", st_file([], header_override='{"x":{}}'))
    write(t, "length_too_big", st_file([("x", "U8", [1])], length_override=1 << 40))
    write(t, "length_past_end", st_file([("x", "U8", [1])], length_override=1000))
    write(t, "short", b"\x02\x00\x00")
    write(t, "bom", st_file([], header_override=b"\xef\xbb\xbf{}"))
    write(t, "bad_utf8_name", st_file([], header_override=b'{"\xff":{"dtype":"U8","shape":[0],"data_offsets":[0,0]}}'))


# ---- idx --------------------------------------------------------------------------------------------------
IDX_CODES = {0x08: ("B", 1), 0x09: ("b", 1), 0x0B: (">h", 2), 0x0C: (">i", 4), 0x0D: (">f", 4), 0x0E: (">d", 8)}


def idx_file(code, dims, data=None, ndims=None):
    fmt, size = IDX_CODES.get(code, ("B", 1))
    n = 1
    for d in dims:
        n *= d
    if data is None:
        if code in (0x0D, 0x0E):
            data = b"".join(struct.pack(fmt, i * 0.5) for i in range(n))
        elif code in IDX_CODES:
            data = b"".join(struct.pack(fmt if fmt not in "Bb" else "B", i % 128) for i in range(n))
        else:
            data = bytes(n)
    head = bytes([0, 0, code, len(dims) if ndims is None else ndims]) + b"".join(struct.pack(">I", d) for d in dims)
    return head + data


def idx():
    t = "idx"
    clear_seeds(t)
    for code in IDX_CODES:
        write(t, f"code{code:02x}_1d", idx_file(code, [5]))
        write(t, f"code{code:02x}_3d", idx_file(code, [2, 3, 2]))
        write(t, f"code{code:02x}_gz", gzip.compress(idx_file(code, [3, 2]), mtime=0))
    write(t, "zero_dim", idx_file(0x08, [0, 28, 28]))
    write(t, "eight_dims", idx_file(0x08, [1, 2, 1, 2, 1, 1, 2, 1]))
    write(t, "mnist_like", idx_file(0x08, [2, 4, 4]))
    write(t, "labels_like", idx_file(0x08, [10], bytes(range(10))))
    write(t, "bad_magic", b"\x01" + idx_file(0x08, [2])[1:])
    write(t, "bad_code", idx_file(0x0A, [2]))
    write(t, "ndims0", bytes([0, 0, 8, 0]))
    write(t, "ndims9", idx_file(0x08, [1] * 9))
    write(t, "truncated_dims", idx_file(0x08, [2, 2])[:9])
    write(t, "truncated_data", idx_file(0x0C, [4])[:-3])
    write(t, "trailing", idx_file(0x08, [2]) + b"\x00")
    write(t, "huge_claim", idx_file(0x0E, [0xFFFFFFFF, 0xFFFFFFFF], b""))
    write(t, "big_claim", idx_file(0x08, [1 << 20], b"abc"))
    write(t, "zero_after_huge", idx_file(0x08, [0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0], b""))
    write(t, "short", b"\x00\x00")
    write(t, "gz_truncated", gzip.compress(idx_file(0x08, [16]), mtime=0)[:-6])
    write(t, "gz_trailing_garbage", gzip.compress(idx_file(0x08, [2]), mtime=0) + b"junk")
    write(t, "gz_two_members", gzip.compress(idx_file(0x08, [2])[:6], mtime=0) +
          gzip.compress(idx_file(0x08, [2])[6:], mtime=0))
    write(t, "gz_header_only", b"\x1f\x8b")


# ---- device -----------------------------------------------------------------------------------------------
def device():
    t = "device"
    clear_seeds(t)
    good = ["cpu", "cuda", "cpu:0", "cpu:1", "cpu:63", "cuda:0", "cuda:7", "cuda:63", "cpu:007"]
    bad = ["", "cpu:", "cpu:64", "cuda:64", "cuda:-1", "cpu:-0", "cpu:+1", "CPU", "gpu:0", "cuda:1:2",
           "cpu: 1", " cpu", "cpu:1 ", "cuda:99999999999999999999", "cpu:0x1", ":", "cuda\x00:1", "cpu:1\x00x",
           "mps", "cuda:1e2"]
    for i, s in enumerate(good):
        write(t, f"good_{i:02d}", s)
    for i, s in enumerate(bad):
        write(t, f"bad_{i:02d}", s)


# ---- shapes -----------------------------------------------------------------------------------------------
# Opcodes of fuzz_shapes.cpp (byte % 14): 0 view, 1 reshape, 2 flatten, 3 permute, 4 transpose, 5 slice,
# 6 narrow, 7 select, 8 unsqueeze, 9 squeeze, 10 expand, 11 split, 12 add, 13 matmul (next byte odd) / cat.
def shapes():
    t = "shapes"
    clear_seeds(t)
    # A size argument byte: value v in -2..5 is byte v + 2; extremes are bytes 240.. (see Bytes::arg).
    def a(v):
        return v + 2

    def start(*dims):
        return bytes([len(dims)] + list(dims))

    progs = {
        "view_infer": start(2, 3) + bytes([0, 2, a(-1), a(2)]),
        "view_bad": start(2, 3) + bytes([0, 2, a(4), a(2)]),
        "reshape_two_infer": start(2, 3) + bytes([1, 2, a(-1), a(-1)]),
        "reshape_after_transpose": start(2, 3) + bytes([4, 0, 1, 1, 1, a(-1)]),
        "view_after_transpose": start(2, 3) + bytes([4, 0, 1, 0, 1, a(-1)]),
        "flatten": start(2, 3, 2) + bytes([2, 1, 4]),
        "permute": start(1, 2, 3) + bytes([3, 3, 6, 4, 5]),
        "permute_dup": start(2, 2) + bytes([3, 2, 3, 3]),
        "slice_step": start(3, 3) + bytes([5, 4, a(0), a(3), a(2)]),
        "slice_neg": start(3, 3) + bytes([5, 1, a(-2), a(5), a(1)]),
        "slice_zero_step": start(3) + bytes([5, 2, a(0), a(3), a(0)]),
        "narrow": start(3, 2) + bytes([6, 2, a(1), a(2)]),
        "narrow_bad": start(3, 2) + bytes([6, 2, a(2), a(2)]),
        "select": start(2, 3) + bytes([7, 3, a(-1)]),
        "select_scalar": start() + bytes([7, 0, a(0)]),
        "unsqueeze_squeeze": start(2, 3) + bytes([8, 2, 9, 0, 9, 1, 3]),
        "expand": start(1, 3) + bytes([10, 1, a(2), a(2), a(-1)]),
        "expand_bad": start(2, 3) + bytes([10, 0, a(3), a(3)]),
        "split": start(5, 2) + bytes([11, a(2), 2, 2]),
        "add_broadcast": start(2, 1, 3) + bytes([12, 1, 0, 1, 0, 0]),
        "add_mismatch": start(2, 3) + bytes([12, 0, 2 + 8, 2 + 8, 1]),
        "matmul_2d": start(2, 3) + bytes([13, 1, 3, 0, 0, 2]),
        "matmul_1d": start(3) + bytes([13, 1, 1]),
        "matmul_batch": start(2, 2, 3) + bytes([13, 1, 3, 0, 1, 2]),
        "matmul_bad_k": start(2, 3) + bytes([13, 1, 0x83, 2, 0, 2]),
        "matmul_swap": start(3, 2) + bytes([13, 1, 0x43, 0, 3]),
        "cat": start(2, 3) + bytes([13, 0, a(1), 2, 1, 1, 2, 0, 0]),
        "cat_legacy_empty": start(2, 3) + bytes([13, 0, a(0), 1, 0, 1]),
        "cat_scalar": start() + bytes([13, 0, a(0), 0]),
        "zero_sized": start(0, 3) + bytes([0, 2, a(-1), a(0)]),
        "scalar_view": start() + bytes([0, 1, a(1)]),
        "extreme_view": start(2) + bytes([0, 3, 248, 248, a(-1)]),
        "extreme_slice": start(3) + bytes([5, 2, 240, 251, 251]),
        "extreme_narrow": start(3) + bytes([6, 2, a(1), 251]),
        "extreme_expand": start(1) + bytes([10, 2, 247, 247, 247]),
    }
    for name, data in progs.items():
        write(t, name, data)
    rng = random.Random(20240601)
    for i in range(20):
        write(t, f"random_{i:02d}", bytes(rng.randrange(256) if rng.random() < 0.2 else rng.randrange(16)
                                          for _ in range(rng.randrange(8, 48))))


def main():
    safetensors()
    idx()
    device()
    shapes()


if __name__ == "__main__":
    main()
