#!/usr/bin/env python3
"""compare.py: ember's ratio to its peer (PyTorch on a GPU, LibTorch on the CPU) for every figure, and the targets.

    python3 bench/compare.py --ember ember_bench.json --peer torch_bench.json        # GPU: bench_torch.py's JSON
    python3 bench/compare.py --libtorch torch_compare.json                           # CPU: bench_torch_compare's JSON
    python3 bench/compare.py --scaling dp.json --scaling-peer dp_torch.json          # ember_scaling vs scaling.py
    ... [--train-ember fashion_mnist_ember.json --train-torch fashion_mnist_torch.json] [--json ratios.json]

--ember is ember_bench's --benchmark_out JSON (or gpu_check.sh's {"program": <JSON>, ...}); --peer is
bench/pytorch/bench_torch.py's, whose workloads carry ember_bench's names (Note [Benchmark names] in
bench/bench.h); --libtorch is bench_torch_compare's, which times "<case>/ember" and "<case>/libtorch" in
one run. ratio = peer time / ember time (for scaling: ember images/s / peer images/s): above 1, ember
is faster. The targets are those of bench/README.md. Nothing here needs torch.
"""
import argparse
import json
import os
import re
import sys

UNIT_MS = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}
# Variants the peer reports beside a workload (shown under its row).
VARIANTS = ["/cudnn_benchmark", "/fused"]


def load(path):
    if not path or not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except ValueError as e:
        print("compare.py: %s: %s" % (path, e), file=sys.stderr)
        return None


def base_name(name):
    """A Google Benchmark run name without the suffixes it appends (/real_time, /iterations:N, ...)."""
    name = re.sub(r"/(manual_time|real_time|process_time)$", "", name)
    return re.sub(r"/iterations:\d+", "", name)


def gbench_index(doc):
    """{name: entry} of a Google Benchmark JSON, or of gpu_check.sh's {program: JSON} merge."""
    index = {}
    if not doc:
        return index
    docs = [doc] if "benchmarks" in doc else [d for d in doc.values() if isinstance(d, dict)]
    medians = {}
    for d in docs:
        for b in d.get("benchmarks", []):
            if b.get("error_occurred"):
                continue
            if b.get("run_type") == "aggregate":  # --benchmark_repetitions: the median stands for the case
                if b.get("aggregate_name") == "median":
                    medians[base_name(b.get("run_name", b.get("name", "")))] = b
                continue
            index[base_name(b.get("name", ""))] = b
    index.update(medians)
    return index


def ms(entry):
    if not entry or "real_time" not in entry:
        return None
    return entry["real_time"] * UNIT_MS.get(entry.get("time_unit", "ns"), 1e-6)


def fmt(v):
    if v is None:
        return "-"
    return "%.4f" % v if v < 1 else "%.3f" % v if v < 100 else "%.1f" % v


class Report:
    def __init__(self):
        self.rows, self.targets, self.lines = [], [], []

    def row(self, name, ember_ms, peer_ms, peer, note=""):
        ratio = peer_ms / ember_ms if ember_ms and peer_ms else None
        self.rows.append({"name": name, "ember_ms": ember_ms, "peer_ms": peer_ms, "ratio": ratio, "peer": peer})
        self.lines.append("%-46s %11s %11s %7s%s" % (name, fmt(ember_ms), fmt(peer_ms),
                                                    "%.2f" % ratio if ratio else "-", note))

    def target(self, name, value, goal, met, text):
        self.targets.append({"name": name, "value": value, "target": goal, "met": met})
        self.lines.append("%-60s %s" % (text, "MET" if met else "MISSED"))


def ops_vs_pytorch(rep, ember, peer_doc):
    meta = peer_doc.get("meta", {})
    results = peer_doc.get("results", {})
    rep.lines.append("== ember vs PyTorch %s on %s (ms per iteration; ratio = PyTorch time / ember time, > 1: ember "
                     "faster)%s" % (meta.get("torch", "?"), meta.get("gpu", meta.get("device", "?")),
                                    "  REDUCED SIZES: not comparable" if meta.get("reduced_sizes") else ""))
    rep.lines.append("%-46s %11s %11s %7s" % ("figure", "ember", "pytorch", "ratio"))
    for name in sorted(set(ember) | {k for k in results if not any(k.endswith(v) for v in VARIANTS)}):
        e, p = ms(ember.get(name)), results.get(name, {}).get("ms")
        if e is None and p is None:
            continue
        rep.row(name, e, p, "pytorch")
        for v in VARIANTS:
            pv = results.get(name + v, {}).get("ms")
            if pv is not None:
                rep.row("  pytorch " + v.strip("/"), e, pv, "pytorch" + v)


def gpu_targets(rep, ember, peer_doc):
    results = (peer_doc or {}).get("results", {})
    for key in sorted(ember):
        m = re.match(r"matmul/mm_(\w+_\d+)/cuda$", key)
        c = ember.get("matmul/cublas_%s/cuda" % m.group(1)) if m else None
        if m and c:
            r = ms(ember[key]) / ms(c)
            rep.target("gemm_vs_cublas/" + m.group(1), r, 1.05, r <= 1.05,
                       "GEMM %s: ember / cuBLAS time %.3f (target <= 1.05)" % (m.group(1), r))
    copy = ember.get("ops/copy_64M/cuda", {}).get("GB/s")
    if copy:
        for name in ("ops/add_64M/cuda", "ops/mul_64M/cuda", "ops/sum_64M/cuda", "ops/sum_rows_8192x8192/cuda"):
            g = ember.get(name, {}).get("GB/s")
            if g:
                rep.target("bandwidth/" + name, g / copy, 0.85, g >= 0.85 * copy,
                           "%s: %.0f GB/s = %.0f%% of copy (target >= 85%%)" % (name, g, 100 * g / copy))
    for name, b in sorted(ember.items()):
        if name.startswith("train_step/") and name.endswith("/cuda"):
            mallocs = b.get("cudaMalloc/step")
            if mallocs is not None:
                rep.target("no_cudamalloc/" + name, mallocs, 0, mallocs == 0,
                           "%s: %.2f cudaMalloc per step (target 0)" % (name, mallocs))
            p = results.get(name, {}).get("ms")
            if "_b256/" in name and p:
                r = p / ms(b)
                rep.target("train_vs_pytorch/" + name, r, 1.0, r >= 1.0,
                           "%s: PyTorch / ember time %.2f (target >= 1.0)" % (name, r))


def libtorch(rep, doc):
    idx = gbench_index(doc)
    ctx = doc.get("context", {})
    rep.lines.append("== ember vs LibTorch on the CPU (%s, %s CPUs; ratio = LibTorch time / ember time, > 1: "
                     "ember faster)" % (ctx.get("host_name", "?"), ctx.get("num_cpus", "?")))
    rep.lines.append("%-46s %11s %11s %7s" % ("figure", "ember", "libtorch", "ratio"))
    cases = sorted({n.rsplit("/", 1)[0] for n in idx if n.endswith("/ember")})
    found = {}
    for case in cases:
        e, p = ms(idx.get(case + "/ember")), ms(idx.get(case + "/libtorch"))
        rep.row(case, e, p, "libtorch")
        found[case] = (e, p)
    for case in ("tiny_add", "tiny_add_autograd"):
        if case in found and all(found[case]):
            r = found[case][0] / found[case][1]
            rep.target("tiny_op_overhead/" + case, r, 0.5, r <= 0.5,
                       "%s: ember / LibTorch time %.2f (target <= 0.5)" % (case, r))
    for case in sorted(c for c in found if c.startswith("matmul_")):
        if all(found[case]):
            r = found[case][0] / found[case][1]
            rep.target("gemm_vs_libtorch/" + case, r, 1.02, r <= 1.02,
                       "%s: ember / LibTorch time %.3f (target <= 1.02)" % (case, r))
    for case in sorted(c for c in found if "train_step" in c):
        if all(found[case]):
            r = found[case][1] / found[case][0]
            rep.target("train_vs_libtorch/" + case, r, 1.2, r >= 1.2,
                       "%s: LibTorch / ember time %.2f (target >= 1.2)" % (case, r))


def scaling(rep, ours, theirs):
    rep.lines.append("== scaling: ember %s vs %s %s on %s (ratio = ember images/s / peer images/s)" % (
        ours.get("mode"), theirs.get("peer", "peer"), theirs.get("mode"), ours.get("device_kind")))
    rep.lines.append("%-46s %11s %11s %7s" % ("model / scaling / devices (step ms)", "ember", "peer", "ratio"))
    peer_rows = {(r["scaling"], r["devices"]): r for r in theirs.get("results", [])}
    for r in ours.get("results", []):
        p = peer_rows.get((r["scaling"], r["devices"]))
        if p:
            rep.row("%s/%s/%ddev" % (ours.get("model"), r["scaling"], r["devices"]), r["step_ms"], p["step_ms"],
                    theirs.get("peer", "peer"))


def training(rep, ember_train, torch_train):
    rep.lines.append("== Fashion-MNIST training (same CNN, AdamW, cosine, batch 64, loss.item() each step)")
    for label, m in (("ember", ember_train), ("torch", torch_train)):
        if m:
            rep.lines.append("%-8s %s epochs, accuracy %.2f%%, %.0f train img/s, %.1f s" % (
                label, m.get("epochs"), 100 * m.get("test_accuracy", 0), m.get("train_images_per_sec", 0),
                m.get("train_seconds", 0)))
    if ember_train and torch_train and torch_train.get("train_images_per_sec"):
        rep.lines.append("ember / torch throughput: %.2f" % (ember_train.get("train_images_per_sec", 0)
                                                            / torch_train["train_images_per_sec"]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ember", help="ember_bench JSON (or gpu_check.sh's merge)")
    ap.add_argument("--peer", help="bench/pytorch/bench_torch.py JSON")
    ap.add_argument("--libtorch", help="bench_torch_compare JSON (ember and LibTorch in one run)")
    ap.add_argument("--scaling", nargs="*", default=[], help="ember_scaling JSON files")
    ap.add_argument("--scaling-peer", nargs="*", default=[], help="bench/pytorch/scaling.py JSON files, same order")
    ap.add_argument("--train-ember")
    ap.add_argument("--train-torch")
    ap.add_argument("--json", help="write the ratios and targets here (bench/plot.py draws them)")
    args = ap.parse_args()
    rep = Report()
    ember = gbench_index(load(args.ember))
    peer = load(args.peer)
    if ember or peer:
        ops_vs_pytorch(rep, ember, peer or {})
        rep.lines.append("== targets (GPU)")
        n = len(rep.lines)
        gpu_targets(rep, ember, peer)
        if len(rep.lines) == n:
            rep.lines.pop()
    lt = load(args.libtorch)
    if lt:
        rep.lines.append("")
        libtorch(rep, lt)
    for ours_path, theirs_path in zip(args.scaling, args.scaling_peer):
        ours, theirs = load(ours_path), load(theirs_path)
        if ours and theirs:
            rep.lines.append("")
            scaling(rep, ours, theirs)
    et, tt = load(args.train_ember), load(args.train_torch)
    if et or tt:
        rep.lines.append("")
        training(rep, et, tt)
    print("\n".join(rep.lines) if rep.lines else "compare.py: nothing to compare")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rep.rows, "targets": rep.targets}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
