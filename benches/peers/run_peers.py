#!/usr/bin/env python3
"""Time hybridq beside its peers on the same shapes and thread counts, in one run.

Peers (all on f32 input -> f32 output, weights already quantized where the engine quantizes):
  - TFLite 2.21 built-in hybrid kernel (EvalHybrid; BUILTIN_WITHOUT_DEFAULT_DELEGATES),
  - TFLite 2.21 with its default XNNPACK delegate (qd8-f32-qc8w dynamic quantization),
  - ONNX Runtime dynamic int8 quantization (quantize_dynamic of a MatMul, per-channel int8),
  - the best f32 peer: min(TFLite float + XNNPACK, ONNX Runtime float MatMul).
hybridq's numbers come from `hybridq bench --serve` (the release binary, built first), which
keeps its layers built and answers timing requests. The host may be noisy (a shared VM that
runs slow for stretches of a second or more), so on each shape and thread count the engines
take `--slices` turns each, in an order that rotates from turn to turn: every engine meets
the same slow and fast stretches, and its figure for the round is the median of all its calls
in the round. Before each turn the script pauses `--settle` seconds: an engine's idle threads
go on spinning for a while after its last call (ONNX Runtime's for milliseconds, and
PyTorch's two-thread Linear ran at half speed right after them). On one thread, every
engine's turn of a slice runs on the same vCPU (the script pins its own threads and
hybridq's to it, a different vCPU from slice to slice): a shared host slows one vCPU at a
time, and an engine in another process would otherwise run on a vCPU of its own. The whole
sweep is repeated `--rounds` times, and two tables are printed: each engine's median over the
rounds, and its best (minimum) round, the figure least disturbed by other load.

Optional and outside CI. It installs what it needs with pip:
    pip install tensorflow-cpu==2.21.0 onnxruntime onnx numpy
and, when `torch` is importable (install it yourself: `pip install torch`, a large download),
also times PyTorch's quantize_dynamic Linear (the x86 engine) as `torch dq`.
Usage:
    python3 benches/peers/run_peers.py [--shapes 1x4096x4096,8x4096x4096] [--threads 1,2]
                                       [--seconds 1.0] [--rounds 3] [--slices 5]
                                       [--settle 0.05] [--json out.json]
"""

import argparse
import contextlib
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


def sample_us(fn, seconds):
    """Wall times of `fn` in microseconds: one first call, whose time only sizes the run, then
    enough calls to fill about `seconds` (at least 1, at most 2000)."""
    start = time.perf_counter()
    fn()
    once = max(time.perf_counter() - start, 1e-7)
    runs = int(min(max(seconds / once, 1), 2000))
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e6)
    return times


def tflite_models(tf, w, b):
    """Hybrid (dynamic-range) and float .tflite models of Dense(N) on Input((K,)), batch b."""
    n, k = w.shape
    inp = tf.keras.Input((k,), batch_size=b)
    dense = tf.keras.layers.Dense(n, use_bias=False)
    model = tf.keras.Model(inp, dense(inp))
    dense.set_weights([w.T])
    with contextlib.redirect_stdout(sys.stderr):  # the converter prints what it saved
        conv = tf.lite.TFLiteConverter.from_keras_model(model)
        float_model = conv.convert()
        conv = tf.lite.TFLiteConverter.from_keras_model(model)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        hybrid_model = conv.convert()
    return hybrid_model, float_model


def tflite_sampler(tf, model, x, threads, resolver):
    interp = tf.lite.Interpreter(model_content=model, num_threads=threads,
                                 experimental_op_resolver_type=resolver)
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]["index"]
    out = interp.get_output_details()[0]["index"]

    def call():
        interp.set_tensor(inp, x)
        interp.invoke()
        return interp.get_tensor(out)

    return lambda seconds: sample_us(call, seconds)


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


def ort_sampler(ort, path, x, threads):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    return lambda seconds: sample_us(lambda: sess.run(None, {"x": x}), seconds)


def torch_dynamic(torch, w):
    """PyTorch's dynamic int8 Linear (quantize_dynamic, the x86 engine) with weights `w`."""
    torch.backends.quantized.engine = "x86"
    n, k = w.shape
    lin = torch.nn.Linear(k, n, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(w))
    return torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(lin), {torch.nn.Linear},
                                                  dtype=torch.qint8)


def torch_sampler(torch, model, x, threads):
    xt = torch.from_numpy(x)

    def sample(seconds):
        torch.set_num_threads(threads)
        with torch.inference_mode():
            return sample_us(lambda: model(xt), seconds)

    return sample


def build_hybridq():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=root, check=True)
    return os.path.join(root, "target", "release", "hybridq")


def pin_process(pid, cpus):
    """Sets the CPU affinity of every thread of process `pid` (a thread started later inherits
    its parent thread's)."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            os.sched_setaffinity(int(tid), cpus)
        except OSError:  # the thread has ended
            pass


class HybridqServer:
    """`hybridq bench --serve`: hybridq's layers stay built, and each slice is one request."""

    def __init__(self, binary):
        self.proc = subprocess.Popen([binary, "bench", "--serve"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, bufsize=1)
        self.pid = self.proc.pid
        self.kernels = {}

    def sampler(self, imp, shape, threads):
        def sample(seconds):
            self.proc.stdin.write(f"{imp} {shape} {threads} {seconds}\n")
            self.proc.stdin.flush()
            answer = json.loads(self.proc.stdout.readline())
            if "error" in answer:
                raise RuntimeError(f"hybridq bench --serve: {answer['error']}")
            self.kernels[imp] = answer["kernel"]
            return answer["times_us"]

        return sample

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", default=DEFAULT_SHAPES)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--seconds", type=float, default=1.0, help="timed seconds per measurement")
    ap.add_argument("--rounds", type=int, default=3, help="repeat the sweep, report medians over rounds")
    ap.add_argument("--slices", type=int, default=5,
                    help="turns each engine takes per shape, thread count and round "
                         "(--seconds in all)")
    ap.add_argument("--settle", type=float, default=0.05,
                    help="seconds of pause before each turn, for the last engine's idle "
                         "threads to stop spinning")
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
    try:  # optional: PyTorch's quantize_dynamic where torch is installed
        import torch
    except ImportError:
        torch = None

    threads = [int(t) for t in args.threads.split(",")]
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    torch_version = torch.__version__ if torch else "not installed"
    print(f"CPU: {cpu}; TFLite {tf.__version__}; ONNX Runtime {ort.__version__}; "
          f"PyTorch {torch_version}", flush=True)
    Resolver = tf.lite.experimental.OpResolverType
    binary = build_hybridq()
    rng = np.random.default_rng(11)
    cases = []
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
        torch_model = torch_dynamic(torch, w) if torch else None
        cases.append((shape, x, hybrid_model, float_model, f32_path, q_path, torch_model))
    server = HybridqServer(binary)
    slices = max(args.slices, 1)
    all_cpus = sorted(os.sched_getaffinity(0))
    samples = {}  # (shape, threads) -> engine -> [median per round]
    for round_ in range(args.rounds):
        for shape, x, hybrid_model, float_model, f32_path, q_path, torch_model in cases:
            for t in threads:
                engines = {
                    "hybridq_hybrid": server.sampler("hybrid", shape, t),
                    "hybridq_float": server.sampler("float", shape, t),
                    "tflite_builtin": tflite_sampler(
                        tf, hybrid_model, x, t, Resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES),
                    "tflite_xnnpack": tflite_sampler(tf, hybrid_model, x, t, Resolver.AUTO),
                    "ort_dynamic_int8": ort_sampler(ort, q_path, x, t),
                    "tflite_float_xnnpack": tflite_sampler(tf, float_model, x, t, Resolver.AUTO),
                    "ort_float": ort_sampler(ort, f32_path, x, t),
                }
                if torch_model is not None:
                    engines["torch_dynamic_int8"] = torch_sampler(torch, torch_model, x, t)
                names = list(engines)
                calls = {name: [] for name in names}
                for s in range(slices):
                    # One thread: every engine's turn s runs on the same vCPU (see the
                    # docstring); more threads: all of them.
                    cpus = {all_cpus[(s + round_) % len(all_cpus)]} if t == 1 else set(all_cpus)
                    pin_process(os.getpid(), cpus)
                    pin_process(server.pid, cpus)
                    for name in names[s % len(names):] + names[:s % len(names)]:
                        time.sleep(args.settle)
                        calls[name] += engines[name](args.seconds / slices)
                pin_process(os.getpid(), set(all_cpus))
                pin_process(server.pid, set(all_cpus))
                del engines
                for name, times in calls.items():
                    samples.setdefault((shape, t), {}).setdefault(name, []).append(statistics.median(times))
                print(f"  round {round_ + 1}/{args.rounds}: {shape} threads {t}", file=sys.stderr, flush=True)
    server.close()
    kernel = server.kernels["hybrid"]
    float_kernel = server.kernels["float"]
    for _, _, _, _, f32_path, q_path, _ in cases:
        os.remove(f32_path)
        os.remove(q_path)
    print(f"\nCPU: {cpu}; hybridq kernels: hybrid {kernel}, float {float_kernel} "
          "(HYBRIDQ_KERNEL / HYBRIDQ_F32_KERNEL force others)")
    table = []
    for label, reduce in [(f"median of {args.rounds} rounds", statistics.median),
                          (f"best (minimum) of {args.rounds} rounds", min)]:
        print(f"\nmicroseconds per call (f32 in, f32 out), each engine's {label}; "
              "ratios = peer time / hybridq time")
        rows = print_table({key: {e: reduce(v) for e, v in engines.items()}
                            for key, engines in samples.items()})
        if not table:
            table = [dict(row, hybridq_kernel=kernel, hybridq_float_kernel=float_kernel, rounds=samples[(row["shape"], row["threads"])])
                     for row in rows]
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cpu": cpu, "rows": table}, f, indent=1)


def print_table(cells):
    """Prints one table of times and ratios; returns its rows."""
    print(f"{'shape BxKxN':<15}{'thr':>4}{'hybridq':>10}{'TFLite':>10}{'XNNPACK':>10}{'ORT int8':>10}"
          f"{'XNN/hq':>8}{'TFL/hq':>8}{'ORT/hq':>8}{'hq f32':>10}{'best f32':>10}{'f32/best':>9}"
          f"{'torch dq':>10}{'torch/hq':>9}")
    rows = []
    for (shape, t), r in cells.items():
        hq = r["hybridq_hybrid"]
        hf = r["hybridq_float"]
        best_f32 = min(r["tflite_float_xnnpack"], r["ort_float"])
        rows.append(dict(shape=shape, threads=t, best_f32=best_f32, **r))
        print(f"{shape:<15}{t:>4}{hq:>10.1f}{r['tflite_builtin']:>10.1f}{r['tflite_xnnpack']:>10.1f}"
              f"{r['ort_dynamic_int8']:>10.1f}{r['tflite_xnnpack'] / hq:>8.2f}{r['tflite_builtin'] / hq:>8.2f}"
              f"{r['ort_dynamic_int8'] / hq:>8.2f}{hf:>10.1f}{best_f32:>10.1f}{hf / best_f32:>9.2f}"
              + (f"{r['torch_dynamic_int8']:>10.1f}{r['torch_dynamic_int8'] / hq:>9.2f}"
                 if "torch_dynamic_int8" in r else f"{'-':>10}{'-':>9}"))
    return rows


if __name__ == "__main__":
    main()
