#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (fuzz/seeds/<target>/) from shipped fixtures.

Standard library only. Deterministic: rerunning gives the same files.
    python3 fuzz/make_seeds.py
"""
import ast
import io
import os
import struct
import json
import zipfile
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "fixtures")
CASES = [
    "hybrid/case000_K8_N128_B1_sym_act0_pc_wnormal_xnormal.npz",
    "hybrid/case008_K33_N63_B6_asym_act0_pc_wnormal_xnormal.npz",
    "hybrid/case045_K100_N17_B3_asym_act0_pc_wnormal_xallzero.npz",
    "hybrid/case063_K33_N64_B8_sym_act0_pc_wnormal_xties.npz",
    "hybrid/case071_K32_N64_B2_asym_act0_pc_wnormal_xnormal_3d.npz",
    "hybrid/case078_K8_N128_B12_asym_act0_pc_wnormal_xtiny_rows_nobias.npz",
    "hybrid/case087_K16_N64_B6_asym_act0_pc_wnormal_xhuge_rows_nobias.npz",
    "int8/int8_case000_K32_N32_B4_act0_pc_wnormal_xnormal.npz",
    "int8/int8_case016_K64_N64_B6_act0_pc_wnormal_xsaturate.npz",
]
# Must match fuzz/src/lib.rs.
KNOWN_KEYS = ["input", "weights", "weights_q", "weight_scales", "bias", "asymmetric_inputs",
              "activation", "keep_num_dims", "expected", "expected_xnnpack", "expected_float",
              "input_q", "input_scale", "input_zero_point", "bias_q", "output_scale",
              "output_zero_point", "expected_q"]
DESCRS = ["<f4", "<i1", "|i1", "<i4", "<f8", "<i2", "<u1", "|u1", "<i8", ">f4", "|b1", "<c8",
          "<f2", "<U3"]


def entries(path):
    with zipfile.ZipFile(path) as z:
        return [(n, z.read(n)) for n in sorted(z.namelist())]


def stored(path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for n, b in entries(path):
            # A fixed entry time: `writestr` with a bare name stamps the current time, which
            # made the seeds differ from run to run.
            z.writestr(zipfile.ZipInfo(n, date_time=(1980, 1, 1, 0, 0, 0)), b)
    return buf.getvalue()


def entries_format(path, deflate):
    out = bytearray([1 if deflate else 0])
    for n, b in entries(path):
        key = n[:-4] if n.endswith(".npy") else n
        if key in KNOWN_KEYS:
            out.append(0x80 | KNOWN_KEYS.index(key))
        else:
            out.append(len(n))
            out += n.encode()
        out += len(b).to_bytes(3, "little") + b
    return bytes(out)


def structured(npy):
    assert npy[:6] == b"\x93NUMPY"
    hlen = struct.unpack("<H", npy[8:10])[0] if npy[6] == 1 else struct.unpack("<I", npy[8:12])[0]
    start = (10 if npy[6] == 1 else 12) + hlen
    h = ast.literal_eval(npy[(10 if npy[6] == 1 else 12):start].decode())
    out = bytearray([DESCRS.index(h["descr"]), int(h["fortran_order"]), npy[6] - 1,
                     len(h["shape"])])
    for d in h["shape"]:
        out += bytes([d]) if d < 0x80 else b"\xff" + d.to_bytes(8, "little")
    return bytes(out) + npy[start:]


def write(target, name, data):
    d = os.path.join(HERE, "seeds", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def safetensors_file(entries, metadata=None):
    """A safetensors file from (name, dtype, shape, raw bytes) entries, laid out back to back,
    with an optional string-to-string metadata map."""
    header, data = {}, b""
    for name, dtype, shape, raw in entries:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    meta = "" if metadata is None else '"__metadata__":%s,' % json.dumps(metadata, separators=(",", ":"))
    text = "{" + meta + ",".join('"%s":{"dtype":"%s","shape":[%s],"data_offsets":[%d,%d]}' % (
        n, h["dtype"], ",".join(str(v) for v in h["shape"]), *h["data_offsets"]) for n, h in header.items()) + "}"
    return struct.pack("<Q", len(text)) + text.encode() + data


def quantized_model(layers, kept, tensors):
    """A hybridq-quantized file (src/model/quantized.rs, format version 1), written from the
    format's description: the JSON document with a CRC-32 per tensor and one over itself
    (compact JSON with sorted keys, as serde_json writes it)."""
    doc = {"format": "hybridq-quantized", "format_version": 1, "flavour": "tflite-x86",
           "layers": layers, "kept": kept,
           "checksums": {n: "%08x" % zlib.crc32(raw) for n, _, _, raw in tensors}}
    compact = lambda d: json.dumps(d, sort_keys=True, separators=(",", ":"))
    doc["metadata_checksum"] = "%08x" % zlib.crc32(compact(doc).encode())
    return safetensors_file(tensors, {"hybridq": compact(doc)})


def quantized_seeds():
    w = struct.pack("<32b", *[(i * 37) % 255 - 127 for i in range(32)])
    hybrid = {"name": "fc", "mode": "hybrid", "granularity": "per-channel", "shape": [4, 8],
              "weight": "fc.weight", "scale": "fc.weight_scale", "bias": "fc.bias"}
    f16 = {"name": "up", "mode": "f16", "granularity": "per-channel", "shape": [2, 4],
           "weight": "up.weight", "scale": None, "bias": None}
    write("quantized_model", "hybrid_and_f16", quantized_model([hybrid, f16], ["norm.weight"], [
        ("fc.weight", "I8", [4, 8], w),
        ("fc.weight_scale", "F32", [4], struct.pack("<4f", 0.01, 0.02, 0.5, 1e-3)),
        ("fc.bias", "F32", [4], struct.pack("<4f", 0.5, -0.5, 0.0, 2.0)),
        ("up.weight", "F16", [2, 4], struct.pack("<8e", *[i / 8 for i in range(8)])),
        ("norm.weight", "F32", [8], struct.pack("<8f", *[1.0] * 8))]))
    per_tensor = {"name": "t", "mode": "int8-weights", "granularity": "per-tensor",
                  "shape": [2, 16], "weight": "t.weight", "scale": "t.weight_scale", "bias": None}
    write("quantized_model", "per_tensor", quantized_model([per_tensor], [], [
        ("t.weight", "I8", [2, 16], w),
        ("t.weight_scale", "F32", [1], struct.pack("<f", 0.125))]))


def main():
    for rel in CASES:
        path = os.path.join(FIXTURES, rel)
        stem = os.path.basename(rel)[:-4]
        raw = open(path, "rb").read()
        for target in ("case_file", "npz"):
            write(target, stem + ".npz", raw)
            write(target, stem + "_stored.npz", stored(path))
        write("case_entries", stem + "_stored", entries_format(path, False))
        write("case_entries", stem + "_deflated", entries_format(path, True))
        for n, b in entries(path):
            write("npy", stem + "_" + n[:-4], structured(b))
    write("safetensors", "f32_matrix", safetensors_file(
        [("dense.weight", "F32", [3, 4], struct.pack("<12f", *[i / 4 - 1 for i in range(12)]))]))
    write("safetensors", "mixed", safetensors_file([
        ("a", "F16", [2, 2], struct.pack("<4e", 0.5, -2.0, 65504.0, 6e-5)),
        ("b", "BF16", [4], struct.pack("<4H", 0x3f80, 0xbf80, 0x7f7f, 0x0001)),
        ("ids", "I32", [2], struct.pack("<2i", 7, -7)),
        ("bias", "F32", [2], struct.pack("<2f", 0.25, -0.25))]))
    quantized_seeds()
    print("seeds written under", os.path.join(HERE, "seeds"))


if __name__ == "__main__":
    main()
