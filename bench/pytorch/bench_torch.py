#!/usr/bin/env python3
"""bench_torch.py: PyTorch timings of the workloads ember_bench measures, under ember_bench's names.

Each workload matches one ember_bench case (same name, shapes, dtype, TF32 off unless the name says
tf32, same work per iteration, outputs allocated per call as ember's ops do, small inputs rotated past
L2 on the GPU as ember's are); bench/compare.py pairs them by name. On CUDA every iteration is timed
with CUDA events after a warm-up and the median is reported; on the CPU (a dry run where no GPU is
seen) wall time, at reduced sizes unless --full, so the script can be checked anywhere.

    python3 bench/pytorch/bench_torch.py --json torch_bench.json          # cuda when available, else cpu
    python3 bench/pytorch/bench_torch.py --device cpu --full --only ops/add_16M/cpu

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
M16 = 16 * 1024 * 1024
ROTATE_BYTES = 256 << 20  # ember's kRotateBytes


class Mlp(nn.Module):
    """The MLP of examples/fashion_mnist.cpp and bench/models.h."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(784, 256), nn.Linear(256, 128), nn.Linear(128, 10)

    def forward(self, x):
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x.flatten(1))))))


class Cnn(nn.Module):
    """The CNN of examples/fashion_mnist.cpp and bench/models.h."""

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


def set_tf32(allow):
    """TF32 in matmul on or off (ember's cuda::set_allow_tf32), with the API this torch has."""
    try:
        new_api = torch.backends.cuda.matmul.fp32_precision is not None
    except (AttributeError, AssertionError):
        new_api = False
    if new_api:
        torch.backends.cuda.matmul.fp32_precision = "tf32" if allow else "ieee"
    else:
        torch.backends.cuda.matmul.allow_tf32 = allow


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

    def run(self, fn, warmup=3, host_timed=False):
        """fn: one function, or a list of them used in turn (inputs rotated past L2).

        host_timed: wall time per call over a batch of calls (tiny ops: the launch, not the kernel).
        """
        fns = fn if isinstance(fn, list) else [fn]
        for i in range(max(warmup, len(fns))):
            fns[i % len(fns)]()
        self.sync()
        times = []
        deadline = time.perf_counter() + self.min_time
        i = 0
        while len(times) < self.min_iters or (time.perf_counter() < deadline and len(times) < self.max_iters):
            f = fns[i % len(fns)]
            i += 1
            if host_timed:
                reps = 1000
                t0 = time.perf_counter()
                for _ in range(reps):
                    f()
                self.sync()
                times.append((time.perf_counter() - t0) * 1e3 / reps)
            elif self.cuda:
                self.start.record()
                f()
                self.stop.record()
                self.stop.synchronize()
                times.append(self.start.elapsed_time(self.stop))
            else:
                t0 = time.perf_counter()
                f()
                times.append((time.perf_counter() - t0) * 1e3)
        return {"ms": statistics.median(times), "ms_min": min(times), "iters": len(times), "rotated_copies": len(fns)}


def workloads(device, full):
    """ember_bench name -> (setup() returning the function(s) to time, {"bytes"|"flops"|"images": per call}).

    Names are ember_bench's (Note [Benchmark names] in bench/bench.h), so bench/compare.py pairs them
    by name. On the GPU the sizes are ember's GPU cases; on the CPU ember's CPU cases (reduced unless
    --full, and then marked as not comparable). A setup may return a list of functions: inputs rotated
    past L2 as ember does (Note [Rotating inputs past L2]).
    """
    gpu = device.type == "cuda"
    small = not gpu and not full
    dev = "cuda" if gpu else "cpu"
    o = {"device": device, "dtype": torch.float32}
    w = {}

    def rotated(bytes_per_copy, make):
        copies = max(1, min(64, -(-ROTATE_BYTES // bytes_per_copy))) if gpu else 1
        return [make() for _ in range(copies)]

    n = (M64 if gpu else M16) // (64 if small else 1)
    tag = "64M" if gpu else "16M"

    def copy():
        def one():
            a, b = torch.rand(n, **o), torch.empty(n, **o)
            return lambda: b.copy_(a)
        return rotated(4 * n, one)
    w["ops/copy_%s/%s" % (tag, dev)] = (copy, {"bytes": 2 * n * 4})

    for op_name, op in (("add", torch.add), ("mul", torch.mul)):
        def binary(op=op):
            def one():
                a, b = torch.rand(n, **o), torch.rand(n, **o)
                return lambda: op(a, b)
            return rotated(8 * n, one)
        w["ops/%s_%s/%s" % (op_name, tag, dev)] = (binary, {"bytes": 3 * n * 4})

    def total():
        return rotated(4 * n, lambda: (lambda a: (lambda: a.sum()))(torch.rand(n, **o)))
    w["ops/sum_%s/%s" % (tag, dev)] = (total, {"bytes": n * 4})

    side = (8192 if gpu else 4096) // (8 if small else 1)
    rows_name = "ops/sum_rows_%dx%d/%s" % ((8192, 8192, dev) if gpu else (4096, 4096, dev))
    w[rows_name] = (lambda: rotated(4 * side * side, lambda: (lambda a: (lambda: a.sum(1)))(torch.rand(side, side, **o))),
                    {"bytes": side * side * 4})
    for sm_name, fn in (("softmax", F.softmax), ("log_softmax", F.log_softmax)):
        def softmax(fn=fn):
            return rotated(4096 * 1000 * 4, lambda: (lambda a: (lambda: fn(a, 1)))(torch.randn(4096, 1000, **o)))
        w["ops/%s_4096x1000/%s" % (sm_name, dev)] = (softmax, {"bytes": 4096 * 1000 * 2 * 4})

    # Tiny-op overhead (wall time per op, with and without autograd recording).
    for name, grad in (("tiny_add", False), ("tiny_add_autograd", True)):
        def tiny(grad=grad):
            a, b = torch.ones(1, **o).requires_grad_(grad), torch.ones(1, **o)
            return lambda: a + b
        w["ops/%s/%s" % (name, dev)] = (tiny, {"host_timed": True})

    # GEMM: ember's precisions on the GPU (fp32 = TF32 off, tf32, bf16), float32 on the CPU.
    if gpu:
        for prec, dtype in (("fp32", torch.float32), ("tf32", torch.float32), ("bf16", torch.bfloat16)):
            for size in (4096, 1024):
                def mm(size=size, dtype=dtype, prec=prec):
                    set_tf32(prec == "tf32")
                    el = torch.tensor([], dtype=dtype).element_size()
                    return rotated(3 * size * size * el, lambda: (lambda a, b: (lambda: torch.mm(a, b)))(
                        torch.randn(size, size, device=device).to(dtype), torch.randn(size, size, device=device).to(dtype)))
                w["matmul/mm_%s_%d/cuda" % (prec, size)] = (mm, {"flops": 2.0 * size ** 3})
        for name, (batch, fin, fout) in (("linear_b64_784x256", (64, 784, 256)),
                                         ("linear_b512_4096x4096", (512, 4096, 4096))):
            def linear(batch=batch, fin=fin, fout=fout):
                x, wt, b = torch.randn(batch, fin, **o), torch.randn(fout, fin, **o), torch.randn(fout, **o)
                return lambda: F.linear(x, wt, b)
            w["matmul/%s/cuda" % name] = (linear, {"flops": 2.0 * batch * fin * fout})
    else:
        for size in (1024, 256, 64):
            s = size // (4 if small and size > 64 else 1)

            def mm(s=s):
                a, b = torch.randn(s, s, **o), torch.randn(s, s, **o)
                return lambda: torch.mm(a, b)
            w["matmul/mm_%d/cpu" % size] = (mm, {"flops": 2.0 * s ** 3})

    # Convolution layers of the CNN, forward + backward, and forward alone; max pooling.
    convs = {"b64_1to32_28x28": (64, 1, 32, 28, False), "b64_32to64_14x14": (64, 32, 64, 14, True)}
    for tag_c, (batch, cin, cout, hw, input_grad) in convs.items():
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
        w["conv/conv2d_fwd_bwd/%s/%s" % (tag_c, dev)] = (conv_fwd_bwd, {"flops": flops * (3 if input_grad else 2),
                                                                         "images": batch})

        def conv_fwd(batch=batch, cin=cin, cout=cout, hw=hw):
            x = torch.randn(batch, cin, hw, hw, **o)
            wt = torch.randn(cout, cin, 3, 3, **o) * 0.1
            bias = torch.zeros(cout, **o)

            def step():
                with torch.no_grad():
                    return F.conv2d(x, wt, bias, padding=1)
            return step
        w["conv/conv2d_fwd/%s/%s" % (tag_c, dev)] = (conv_fwd, {"flops": flops, "images": batch})

        def pool(batch=batch, cout=cout, hw=hw):
            x = torch.randn(batch, cout, hw, hw, **o).requires_grad_()
            g = torch.randn(batch, cout, hw // 2, hw // 2, **o)

            def step():
                x.grad = None
                F.max_pool2d(x, 2).backward(g)
            return step
        w["conv/max_pool2d_fwd_bwd/b64_%dx%dx%d/%s" % (cout, hw, hw, dev)] = (pool, {"images": batch})

    # One optimizer step over ~0.5M parameters in 12 tensors (bench/optim.cpp).
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
    w["optim/adam_step/" + dev] = (optimizer(lambda p: torch.optim.Adam(p, lr=1e-3)), {})
    w["optim/adamw_step/" + dev] = (optimizer(lambda p: torch.optim.AdamW(p, lr=1e-3)), {})
    w["optim/sgd_momentum_step/" + dev] = (
        optimizer(lambda p: torch.optim.SGD(p, lr=0.01, momentum=0.9, weight_decay=5e-4)), {})
    if gpu:  # fused=True: torch >= 1.13 for Adam, >= 2.0 for AdamW (a variant shown under ember's row)
        w["optim/adam_step/cuda/fused"] = (optimizer(lambda p: torch.optim.Adam(p, lr=1e-3, fused=True)), {})
        w["optim/adamw_step/cuda/fused"] = (optimizer(lambda p: torch.optim.AdamW(p, lr=1e-3, fused=True)), {})

    # Training steps: forward, cross-entropy, backward, AdamW on data already on the device (bench/train_step.cpp).
    for model_name, make_model in (("mlp", Mlp), ("cnn", Cnn)):
        for batch in ((64,) if small else (64, 256)):
            def train(batch=batch, make_model=make_model):
                torch.manual_seed(0)
                model = make_model().to(device).train()
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
            w["train_step/%s_b%d/%s" % (model_name, batch, dev)] = (train, {"images": batch})
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
        runs += [(n, True) for n in names if n.startswith(("conv/", "train_step/"))]
    for name, cudnn_benchmark in runs:
        if name not in w:
            print("bench_torch: unknown workload %s (have: %s)" % (name, " ".join(w)), file=sys.stderr)
            return 2
        setup, work = w[name]
        key = name + ("/cudnn_benchmark" if cudnn_benchmark else "")
        torch.backends.cudnn.benchmark = cudnn_benchmark
        try:
            r = timer.run(setup(), host_timed=work.get("host_timed", False))
            set_tf32(False)
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
        r.update({k: v for k, v in work.items() if k != "host_timed"})
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
