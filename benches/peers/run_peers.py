#!/usr/bin/env python3
"""Time hybridq beside its peers on the same shapes and thread counts, in one run.

Peers (all on f32 input -> f32 output, weights already quantized where the engine quantizes):
  - TFLite 2.21 built-in hybrid kernel (EvalHybrid; BUILTIN_WITHOUT_DEFAULT_DELEGATES),
  - TFLite 2.21 with its default XNNPACK delegate (qd8-f32-qc8w dynamic quantization),
  - ONNX Runtime dynamic int8 quantization (quantize_dynamic of a MatMul, per-channel int8),
  - the best f32 peer: min(TFLite float + XNNPACK, ONNX Runtime float MatMul).
hybridq's numbers come from `hybridq bench --json` run right after, on the same shapes.

Optional and outside CI. It installs what it needs with pip:
    pip install tensorflow-cpu==2.21.0 onnxruntime onnx numpy
Usage:
    python3 benches/peers/run_peers.py [--shapes 1x4096x4096,8x4096x4096] [--threads 1,2]
                                       [--seconds 1.0] [--json out.json]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

DEFAULT_SHAPES = "1x1024x1024,1x4096x4096,1x4096x14336,8x4096x4096,32x1024x4096,128x4096x4096,512x768x3072"


def ensure_packages():
    missing = []
    for module, spec in [("numpy", "numpy"), ("tensorflow", "tensorflow-cpu==2.21.0"),
                         ("onnxruntime", "onnxruntime"), ("onnx", "onnx")]:
        try:
            __import__(module)
        except ImportError:
            missing.append(spec)
    if missing:
        print(f"installing {' '.join(missing)} with pip", file=sys.stderr)
        subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", *missing])


def median_us(fn, seconds):
    fn()
    fn()
    start = time.perf_counter()
    fn()
    once = max(time.perf_counter() - start, 1e-7)
    runs = int(min(max(seconds / once, 5), 2000))
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e6)
    return statistics.median(times)


def tflite_models(tf, w, b):
    """Hybrid (dynamic-range) and float .tflite models of Dense(N) on Input((K,)), batch b."""
    n, k = w.shape
    inp = tf.keras.Input((k,), batch_size=b)
    dense = tf.keras.layers.Dense(n, use_bias=False)
    model = tf.keras.Model(inp, dense(inp))
    dense.set_weights([w.T])
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    float_model = conv.convert()
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    hybrid_model = conv.convert()
    return hybrid_model, float_model


def time_tflite(tf, model, x, threads, resolver, seconds):
    interp = tf.lite.Interpreter(model_content=model, num_threads=threads,
                                 experimental_op_resolver_type=resolver)
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]["index"]
    out = interp.get_output_details()[0]["index"]

    def call():
        interp.set_tensor(inp, x)
        interp.invoke()
        return interp.get_tensor(out)

    return median_us(call, seconds)


def onnx_matmul(onnx, w, path):
    from onnx import TensorProto, helper, numpy_helper
    n, k = w.shape
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "dense",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", n])],
        [numpy_helper.from_array(w.T.copy(), "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, path)


def time_ort(ort, path, x, threads, seconds):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    return median_us(lambda: sess.run(None, {"x": x}), seconds)


def hybridq_times(shapes, threads, seconds):
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    cmd = ["cargo", "run", "--release", "--quiet", "--", "bench", "--json",
           "--shapes", shapes, "--threads", ",".join(map(str, threads)), "--seconds", str(seconds)]
    out = subprocess.run(cmd, cwd=root, check=True, capture_output=True, text=True).stdout
    rows = json.loads(out)
    return {(r["shape"], r["threads"], r["impl"]): r for r in rows}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", default=DEFAULT_SHAPES)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--seconds", type=float, default=1.0, help="timed seconds per measurement")
    ap.add_argument("--json", help="also write all measurements to this file")
    args = ap.parse_args()
    ensure_packages()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import warnings
    warnings.filterwarnings("ignore")
    import numpy as np
    import onnx
    import onnxruntime as ort
    import tensorflow as tf
    from onnxruntime.quantization import QuantType, quantize_dynamic

    threads = [int(t) for t in args.threads.split(",")]
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    print(f"CPU: {cpu}; TFLite {tf.__version__}; ONNX Runtime {ort.__version__}", flush=True)
    Resolver = tf.lite.experimental.OpResolverType
    rng = np.random.default_rng(11)
    peers = {}
    tmp = tempfile.mkdtemp(prefix="hybridq-peers-")
    for shape in args.shapes.split(","):
        b, k, n = (int(v) for v in shape.split("x"))
        w = rng.uniform(-1, 1, (n, k)).astype(np.float32)
        x = rng.uniform(-4, 4, (b, k)).astype(np.float32)
        hybrid_model, float_model = tflite_models(tf, w, b)
        f32_path = os.path.join(tmp, f"{shape}.onnx")
        q_path = os.path.join(tmp, f"{shape}.int8.onnx")
        onnx_matmul(onnx, w, f32_path)
        quantize_dynamic(f32_path, q_path, weight_type=QuantType.QInt8, per_channel=True)
        for t in threads:
            r = {
                "tflite_builtin": time_tflite(tf, hybrid_model, x, t, Resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES, args.seconds),
                "tflite_xnnpack": time_tflite(tf, hybrid_model, x, t, Resolver.AUTO, args.seconds),
                "ort_dynamic_int8": time_ort(ort, q_path, x, t, args.seconds),
                "tflite_float_xnnpack": time_tflite(tf, float_model, x, t, Resolver.AUTO, args.seconds),
                "ort_float": time_ort(ort, f32_path, x, t, args.seconds),
            }
            peers[(shape, t)] = r
            print(f"  measured peers {shape} threads {t}", file=sys.stderr, flush=True)
        for p in (f32_path, q_path):
            os.remove(p)

    ours = hybridq_times(args.shapes, threads, args.seconds)
    header = (f"{'shape BxKxN':<15}{'thr':>4}{'hybridq':>10}{'TFLite':>10}{'XNNPACK':>10}{'ORT int8':>10}"
              f"{'XNN/hq':>8}{'TFL/hq':>8}{'ORT/hq':>8}{'hq f32':>10}{'best f32':>10}{'f32/best':>9}")
    print("\nmedian microseconds per call (f32 in, f32 out); ratios = peer time / hybridq time")
    print(header)
    table = []
    for (shape, t), r in peers.items():
        hq = ours[(shape, t, "hybrid")]["median_us"]
        hf = ours[(shape, t, "float")]["median_us"]
        best_f32 = min(r["tflite_float_xnnpack"], r["ort_float"])
        row = dict(shape=shape, threads=t, hybridq_hybrid=hq, hybridq_float=hf, best_f32=best_f32,
                   hybridq_kernel=ours[(shape, t, "hybrid")]["kernel"], **r)
        table.append(row)
        print(f"{shape:<15}{t:>4}{hq:>10.1f}{r['tflite_builtin']:>10.1f}{r['tflite_xnnpack']:>10.1f}"
              f"{r['ort_dynamic_int8']:>10.1f}{r['tflite_xnnpack'] / hq:>8.2f}{r['tflite_builtin'] / hq:>8.2f}"
              f"{r['ort_dynamic_int8'] / hq:>8.2f}{hf:>10.1f}{best_f32:>10.1f}{hf / best_f32:>9.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cpu": cpu, "rows": table}, f, indent=1)


if __name__ == "__main__":
    main()
