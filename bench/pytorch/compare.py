#!/usr/bin/env python3
"""compare.py: ember's GPU benchmark results next to PyTorch's on the same workloads, with ratios and targets.

    python3 bench/pytorch/compare.py --ember ember_bench.json --torch torch_bench.json \\
        [--train-ember fashion_mnist_ember.json --train-torch fashion_mnist_torch.json]

--ember is what bench/gpu_check.sh writes: {"bench_ops": <Google Benchmark JSON>, "bench_matmul": ...}
(a single program's --benchmark_out file works too). Times are per iteration (medians for PyTorch,
Google Benchmark's mean of manual CUDA-event times for ember); ratio = ember time / PyTorch time, so
below 1 means ember is faster. Missing inputs leave their rows out; nothing here needs torch.
"""
import argparse
import json
import os
import re
import sys

# (label, ember program, ember benchmark name, torch workload)
ROWS = [
    ("mm 4096^3 fp32", "bench_matmul", "BM_GpuMm/4096", "mm_4096"),
    ("mm 1024^3 fp32", "bench_matmul", "BM_GpuMm/1024", "mm_1024"),
    ("linear fwd b64 784->256", "bench_matmul", "BM_GpuLinear/64/784/256", "linear_b64_784x256"),
    ("linear fwd b512 4096->4096", "bench_matmul", "BM_GpuLinear/512/4096/4096", "linear_b512_4096x4096"),
    ("copy 64M f32", "bench_ops", "BM_GpuCopy64M", "copy_64M"),
    ("add 64M f32", "bench_ops", "BM_GpuAdd64M", "add_64M"),
    ("sum 64M f32", "bench_ops", "BM_GpuSum64M", "sum_64M"),
    ("sum(1) 8192x8192", "bench_ops", "BM_GpuSumRows64M", "sum_rows_8192x8192"),
    ("log_softmax 4096x1000", "bench_ops", "BM_GpuLogSoftmax", "log_softmax_4096x1000"),
    ("conv fwd+bwd b64 1->32 28^2", "bench_conv", "conv2d_fwd_bwd/b64_1to32_28x28/cuda", "conv2d_fwd_bwd/b64_1to32_28x28"),
    ("conv fwd+bwd b64 32->64 14^2", "bench_conv", "conv2d_fwd_bwd/b64_32to64_14x14/cuda",
     "conv2d_fwd_bwd/b64_32to64_14x14"),
    ("conv fwd b64 1->32 28^2", "bench_conv", "conv2d_fwd/b64_1to32_28x28/cuda", "conv2d_fwd/b64_1to32_28x28"),
    ("conv fwd b64 32->64 14^2", "bench_conv", "conv2d_fwd/b64_32to64_14x14/cuda", "conv2d_fwd/b64_32to64_14x14"),
    ("maxpool fwd+bwd b64 32x28^2", "bench_conv", "max_pool2d_fwd_bwd/b64_32x28x28/cuda", "max_pool2d_fwd_bwd/b64_32x28x28"),
    ("maxpool fwd+bwd b64 64x14^2", "bench_conv", "max_pool2d_fwd_bwd/b64_64x14x14/cuda", "max_pool2d_fwd_bwd/b64_64x14x14"),
    ("Adam step 0.5M params", "bench_optim", "BM_AdamStep_CUDA", "adam_step"),
    ("AdamW step 0.5M params", "bench_optim", "BM_AdamWStep_CUDA", "adamw_step"),
    ("SGD-momentum step", "bench_optim", "BM_SGDMomentumStep_CUDA", "sgd_momentum_step"),
    ("CNN train step b64", "bench_train_step", "train_step/cnn_b64/cuda", "train_step/cnn_b64"),
    ("CNN train step b512", "bench_train_step", "train_step/cnn_b512/cuda", "train_step/cnn_b512"),
]
# PyTorch variants shown under a row when present: (suffix of the torch key, label).
VARIANTS = [("/cudnn_benchmark", "  torch cudnn.benchmark"), ("_fused", "  torch fused=True")]

UNIT_MS = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}


def load_json(path):
    if not path or not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except ValueError as e:
        print("compare.py: %s: %s" % (path, e), file=sys.stderr)
        return None


def ember_index(data):
    """{(program, name without the /manual_time or /real_time suffix): benchmark entry}."""
    index = {}
    if not data:
        return index
    programs = {"bench": data} if "benchmarks" in data else data
    for program, doc in programs.items():
        for b in (doc or {}).get("benchmarks", []):
            if b.get("run_type", "iteration") != "iteration":
                continue
            name = re.sub(r"/(manual_time|real_time|process_time)$", "", b.get("name", ""))
            index[(program, name)] = b
            index[("*", name)] = b
    return index


def ember_ms(index, program, name):
    b = index.get((program, name)) or index.get(("*", name))
    if not b or b.get("error_occurred") or "real_time" not in b:
        return None, (b or {}).get("error_message")
    return b["real_time"] * UNIT_MS.get(b.get("time_unit", "ns"), 1e-6), None


def fmt_ms(v):
    if v is None:
        return "-"
    return "%.4f" % v if v < 1 else "%.3f" % v if v < 100 else "%.1f" % v


def fmt_ratio(a, b):
    return "%.2f" % (a / b) if a is not None and b else "-"


def table(ember, torch_doc):
    idx = ember_index(ember)
    tres = (torch_doc or {}).get("results", {})
    meta = (torch_doc or {}).get("meta", {})
    lines = ["== ember vs PyTorch (ms per iteration; ratio = ember / torch, < 1: ember faster)"]
    if meta:
        lines.append("torch %s on %s%s" % (meta.get("torch"), meta.get("gpu", meta.get("device")),
                                           " (REDUCED SIZES: not comparable)" if meta.get("reduced_sizes") else ""))
    lines.append("%-30s %10s %10s %7s" % ("workload", "ember", "torch", "ratio"))
    for label, program, name, tkey in ROWS:
        e, err = ember_ms(idx, program, name)
        t = tres.get(tkey, {}).get("ms")
        if e is None and t is None:
            continue
        note = "  (ember: %s)" % err[:40] if err and e is None else ""
        lines.append("%-30s %10s %10s %7s%s" % (label, fmt_ms(e), fmt_ms(t), fmt_ratio(e, t), note))
        for suffix, vlabel in VARIANTS:
            tv = tres.get(tkey + suffix, {}).get("ms")
            if tv is not None:
                lines.append("%-30s %10s %10s %7s" % (vlabel, "", fmt_ms(tv), fmt_ratio(e, tv)))
    return lines, idx


def targets(idx):
    """The performance targets: GEMM within 5% of cuBLAS, element-wise/reduction at >= 85% of copy bandwidth."""
    lines = ["== targets"]
    for n in (4096, 1024):
        e, _ = ember_ms(idx, "bench_matmul", "BM_GpuMm/%d" % n)
        c, _ = ember_ms(idx, "bench_matmul", "BM_GpuCublasGemmEx/%d" % n)
        if e and c:
            verdict = "MET" if e <= 1.05 * c else "MISSED"
            lines.append("GEMM %d^3 fp32: ember %s ms, cuBLAS %s ms, ember/cuBLAS %.3f (target <= 1.05): %s"
                         % (n, fmt_ms(e), fmt_ms(c), e / c, verdict))

    def gbps(name):
        b = idx.get(("bench_ops", name)) or idx.get(("*", name))
        if not b or b.get("error_occurred") or "bytes_per_second" not in b:
            return None
        return b["bytes_per_second"] / 1e9
    copy = gbps("BM_GpuCopy64M")
    if copy:
        lines.append("copy 64M: %.0f GB/s (read + write)" % copy)
        for name in ("BM_GpuAdd64M", "BM_GpuSum64M", "BM_GpuSumRows64M"):
            g = gbps(name)
            if g:
                verdict = "MET" if g >= 0.85 * copy else "MISSED"
                lines.append("%-18s %6.0f GB/s = %3.0f%% of copy (target >= 85%%): %s" % (name, g, 100 * g / copy, verdict))
    return lines if len(lines) > 1 else []


def training(ember_train, torch_train):
    if not ember_train and not torch_train:
        return []
    lines = ["== Fashion-MNIST training (same CNN, AdamW, cosine, batch 64, loss.item() each step)",
             "%-8s %6s %9s %12s %9s %8s" % ("", "epochs", "accuracy", "train img/s", "train s", "total s")]
    for label, m in (("ember", ember_train), ("torch", torch_train)):
        if m:
            lines.append("%-8s %6s %8.2f%% %12.0f %9.1f %8.1f" % (
                label, m.get("epochs"), 100 * m.get("test_accuracy", 0), m.get("train_images_per_sec", 0),
                m.get("train_seconds", 0), m.get("total_seconds", 0)))
    if ember_train and torch_train and torch_train.get("train_images_per_sec"):
        lines.append("ember / torch throughput: %.2f" % (ember_train.get("train_images_per_sec", 0)
                                                        / torch_train["train_images_per_sec"]))
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ember", help="ember's benchmark JSON (merged by gpu_check.sh, or one program's)")
    ap.add_argument("--torch", help="bench_torch.py's JSON")
    ap.add_argument("--train-ember", help="fashion_mnist --metrics-json output")
    ap.add_argument("--train-torch", help="bench/pytorch/fashion_mnist.py --metrics-json output")
    args = ap.parse_args()
    ember, torch_doc = load_json(args.ember), load_json(args.torch)
    out = []
    if ember or torch_doc:
        lines, idx = table(ember, torch_doc)
        out += lines
        t = targets(idx)
        if t:
            out += [""] + t
    tr = training(load_json(args.train_ember), load_json(args.train_torch))
    if tr:
        out += ([""] if out else []) + tr
    print("\n".join(out) if out else "compare.py: no results to compare")
    return 0


if __name__ == "__main__":
    sys.exit(main())
