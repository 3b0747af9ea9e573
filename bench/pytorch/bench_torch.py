#!/usr/bin/env python3
"""bench_torch.py: PyTorch timings of the workloads ember's GPU benchmarks measure (bench/*.cpp), for gpu_check.sh.

Each workload matches one ember benchmark (same shapes, dtype float32, TF32 off, same work per
iteration, outputs allocated per call as ember's ops do); compare.py pairs them up. On CUDA every
iteration is timed with CUDA events after a warm-up and the median is reported; on the CPU (a dry run
where no GPU is seen) wall time, at reduced sizes unless --full, so the script can be checked anywhere.

    python3 bench/pytorch/bench_torch.py --json torch_bench.json          # cuda when available, else cpu
    python3 bench/pytorch/bench_torch.py --device cpu --only mm_4096 add_64M

Works with torch 1.13 and 2.x (no torch.compile, no newer-only arguments).
"""
import argparse
import json
import platform
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

M64 = 64 * 1024 * 1024


class Cnn(nn.Module):
    """The model of examples/fashion_mnist.cpp and bench/train_step.cpp."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2))
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Dropout(0.25), nn.Linear(128, 10))

    def forward(self, x):
        return self.classifier(self.features(x))


# bench/optim.cpp's parameter shapes: conv1, bn1, conv2, bn2, fc1, fc2 of a Fashion-MNIST CNN.
OPTIM_SHAPES = [(32, 1, 3, 3), (32,), (32,), (32,), (64, 32, 3, 3), (64,), (64,), (64,), (160, 3136), (160,),
                (10, 160), (10,)]


def no_tf32():
    """float32 means float32: no TF32 in matmul or cuDNN (ember's default too).

    torch >= 2.9 has per-backend fp32_precision settings and deprecates allow_tf32 (mixing the two
    APIs warns or fails), so use the new one where it exists.
    """
    try:  # torch 1.13's matmul settings object raises AssertionError for unknown names, not AttributeError
        new_api = torch.backends.cuda.matmul.fp32_precision is not None
    except (AttributeError, AssertionError):
        new_api = False
    if new_api:
        torch.backends.cuda.matmul.fp32_precision = "ieee"
        try:
            torch.backends.cudnn.conv.fp32_precision = "ieee"
        except AttributeError:
            torch.backends.cudnn.allow_tf32 = False
    else:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False


class Timer:
    """Times one call of fn per iteration: CUDA events on a GPU, perf_counter on the CPU."""

    def __init__(self, device, min_time, min_iters, max_iters):
        self.cuda = device.type == "cuda"
        self.min_time, self.min_iters, self.max_iters = min_time, min_iters, max_iters
        if self.cuda:
            self.start = torch.cuda.Event(enable_timing=True)
            self.stop = torch.cuda.Event(enable_timing=True)

    def sync(self):
        if self.cuda:
            torch.cuda.synchronize()

    def run(self, fn, warmup=3):
        for _ in range(warmup):
            fn()
        self.sync()
        times = []
        deadline = time.perf_counter() + self.min_time
        while len(times) < self.min_iters or (time.perf_counter() < deadline and len(times) < self.max_iters):
            if self.cuda:
                self.start.record()
                fn()
                self.stop.record()
                self.stop.synchronize()
                times.append(self.start.elapsed_time(self.stop))
            else:
                t0 = time.perf_counter()
                fn()
                times.append((time.perf_counter() - t0) * 1e3)
        return {"ms": statistics.median(times), "ms_min": min(times), "iters": len(times)}


def workloads(device, full):
    """name -> (setup() returning the function to time, {"bytes"|"flops"|"images": per iteration})."""
    small = device.type == "cpu" and not full
    n64 = M64 // 64 if small else M64           # 1M elements on a CPU dry run
    side = 1024 if small else 8192
    mm_big = 256 if small else 4096
    mm_small = 128 if small else 1024
    o = {"device": device, "dtype": torch.float32}
    w = {}

    def copy():
        a, b = torch.rand(n64, **o), torch.empty(n64, **o)
        return lambda: b.copy_(a)
    w["copy_64M"] = (copy, {"bytes": 2 * n64 * 4})

    def add():
        a, b = torch.rand(n64, **o), torch.rand(n64, **o)
        return lambda: a + b
    w["add_64M"] = (add, {"bytes": 3 * n64 * 4})

    def total():
        a = torch.rand(n64, **o)
        return lambda: a.sum()
    w["sum_64M"] = (total, {"bytes": n64 * 4})

    def sum_rows():
        a = torch.rand(side, side, **o)
        return lambda: a.sum(1)
    w["sum_rows_8192x8192"] = (sum_rows, {"bytes": side * side * 4})

    def log_softmax():
        a = torch.randn(4096, 1000, **o)
        return lambda: F.log_softmax(a, 1)
    w["log_softmax_4096x1000"] = (log_softmax, {"bytes": 4096 * 1000 * 2 * 4})

    for name, n in (("mm_4096", mm_big), ("mm_1024", mm_small)):
        def mm(n=n):
            a, b = torch.randn(n, n, **o), torch.randn(n, n, **o)
            return lambda: torch.mm(a, b)
        w[name] = (mm, {"flops": 2.0 * n ** 3})

    # bench/matmul.cpp BM_GpuLinear: Linear's forward with its bias.
    for name, (batch, fin, fout) in (("linear_b64_784x256", (64, 784, 256)),
                                     ("linear_b512_4096x4096", (512, 4096, 4096))):
        if small:
            batch, fin, fout = min(batch, 64), min(fin, 256), min(fout, 256)

        def linear(batch=batch, fin=fin, fout=fout):
            x, wt, b = torch.randn(batch, fin, **o), torch.randn(fout, fin, **o), torch.randn(fout, **o)
            return lambda: F.linear(x, wt, b)
        w[name] = (linear, {"flops": 2.0 * batch * fin * fout})

    # bench/conv.cpp: one layer of the CNN, forward + backward, and forward alone; max pooling.
    convs = {"b64_1to32_28x28": (64, 1, 32, 28, False), "b64_32to64_14x14": (64, 32, 64, 14, True)}
    for tag, (batch, cin, cout, hw, input_grad) in convs.items():
        flops = 2.0 * batch * cout * hw * hw * cin * 9

        def conv_fwd_bwd(batch=batch, cin=cin, cout=cout, hw=hw, input_grad=input_grad):
            x = torch.randn(batch, cin, hw, hw, **o).requires_grad_(input_grad)
            wt = (torch.randn(cout, cin, 3, 3, **o) * 0.1).requires_grad_()
            bias = torch.zeros(cout, **o).requires_grad_()
            g = torch.randn(batch, cout, hw, hw, **o)

            def step():
                x.grad = wt.grad = bias.grad = None
                F.conv2d(x, wt, bias, padding=1).backward(g)
            return step
        w["conv2d_fwd_bwd/" + tag] = (conv_fwd_bwd, {"flops": flops * (3 if input_grad else 2), "images": batch})

        def conv_fwd(batch=batch, cin=cin, cout=cout, hw=hw):
            x = torch.randn(batch, cin, hw, hw, **o)
            wt = torch.randn(cout, cin, 3, 3, **o) * 0.1
            bias = torch.zeros(cout, **o)

            def step():
                with torch.no_grad():
                    return F.conv2d(x, wt, bias, padding=1)
            return step
        w["conv2d_fwd/" + tag] = (conv_fwd, {"flops": flops, "images": batch})

        def pool(batch=batch, cout=cout, hw=hw):
            x = torch.randn(batch, cout, hw, hw, **o).requires_grad_()
            g = torch.randn(batch, cout, hw // 2, hw // 2, **o)

            def step():
                x.grad = None
                F.max_pool2d(x, 2).backward(g)
            return step
        w["max_pool2d_fwd_bwd/b64_%dx%dx%d" % (cout, hw, hw)] = (pool, {"images": batch})

    # bench/optim.cpp: one optimizer step over ~0.5M parameters in 12 tensors.
    def optimizer(make):
        def setup():
            torch.manual_seed(0)
            params = []
            for shape in OPTIM_SHAPES:
                p = (torch.randn(*shape, **o) * 0.1).requires_grad_()
                p.grad = torch.randn(*shape, **o) * 0.01
                params.append(p)
            opt = make(params)
            for _ in range(10):
                opt.step()
            return opt.step
        return setup
    w["adam_step"] = (optimizer(lambda p: torch.optim.Adam(p, lr=1e-3)), {})
    w["adamw_step"] = (optimizer(lambda p: torch.optim.AdamW(p, lr=1e-3)), {})
    w["sgd_momentum_step"] = (optimizer(lambda p: torch.optim.SGD(p, lr=0.01, momentum=0.9, weight_decay=5e-4)), {})
    if device.type == "cuda":  # fused=True: torch >= 1.13 for Adam, >= 2.0 for AdamW
        w["adam_step_fused"] = (optimizer(lambda p: torch.optim.Adam(p, lr=1e-3, fused=True)), {})
        w["adamw_step_fused"] = (optimizer(lambda p: torch.optim.AdamW(p, lr=1e-3, fused=True)), {})

    # bench/train_step.cpp: forward, cross-entropy, backward, AdamW on data already on the device.
    for batch in ((64,) if small else (64, 512)):
        def train(batch=batch):
            torch.manual_seed(0)
            model = Cnn().to(device).train()
            opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-2)
            x = torch.randn(batch, 1, 28, 28, **o)
            y = torch.randint(0, 10, (batch,), device=device)

            def step():
                opt.zero_grad(set_to_none=True)
                F.cross_entropy(model(x), y).backward()
                opt.step()
            for _ in range(2):
                step()
            return step
        w["train_step/cnn_b%d" % batch] = (train, {"images": batch})
    return w


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda", help="cuda (falls back to cpu when no GPU is seen) or cpu")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--only", nargs="*", help="workload names (default: all)")
    ap.add_argument("--min-time", type=float, default=0.3, help="seconds of timed iterations per workload")
    ap.add_argument("--full", action="store_true", help="full sizes on the CPU too")
    args = ap.parse_args()

    want_cuda = args.device.startswith("cuda")
    if want_cuda and not torch.cuda.is_available():
        print("bench_torch: no CUDA device seen; timing on the CPU at reduced sizes", file=sys.stderr)
    device = torch.device(args.device if want_cuda and torch.cuda.is_available() else "cpu")
    no_tf32()
    torch.manual_seed(0)

    meta = {"torch": torch.__version__, "device": str(device), "python": platform.python_version(),
            "reduced_sizes": device.type == "cpu" and not args.full, "tf32": False}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        meta.update(gpu=props.name, sm_count=props.multi_processor_count, cuda=torch.version.cuda,
                    cudnn=torch.backends.cudnn.version())
    timer = Timer(device, args.min_time, min_iters=5, max_iters=2000)
    results = {}
    w = workloads(device, args.full)
    names = args.only or list(w)
    # cuDNN's default (heuristic algorithm choice) first, then with cudnn.benchmark for the conv workloads.
    runs = [(n, False) for n in names]
    if device.type == "cuda":
        runs += [(n, True) for n in names if n.startswith(("conv2d", "train_step"))]
    for name, cudnn_benchmark in runs:
        if name not in w:
            print("bench_torch: unknown workload %s (have: %s)" % (name, " ".join(w)), file=sys.stderr)
            return 2
        setup, work = w[name]
        key = name + ("/cudnn_benchmark" if cudnn_benchmark else "")
        torch.backends.cudnn.benchmark = cudnn_benchmark
        try:
            r = timer.run(setup())
        except (RuntimeError, TypeError) as e:  # e.g. fused optimizers this torch lacks
            results[key] = {"error": str(e).splitlines()[0][:200]}
            print("%-40s skipped: %s" % (key, results[key]["error"]))
            continue
        sec = r["ms"] / 1e3
        if "bytes" in work:
            r["GB/s"] = work["bytes"] / sec / 1e9
        if "flops" in work:
            r["GFLOP/s"] = work["flops"] / sec / 1e9
        if "images" in work:
            r["images/s"] = work["images"] / sec
        r.update(work)
        results[key] = r
        rate = " ".join("%s %.1f" % (k, r[k]) for k in ("GB/s", "GFLOP/s", "images/s") if k in r)
        print("%-40s %9.4f ms  (min %.4f, %d iters)  %s" % (key, r["ms"], r["ms_min"], r["iters"], rate))
        sys.stdout.flush()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    torch.backends.cudnn.benchmark = False
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "results": results}, f, indent=1)
    print("bench_torch: %d workloads on %s (torch %s)" % (len(results), meta.get("gpu", device), torch.__version__))
    return 0


if __name__ == "__main__":
    sys.exit(main())
