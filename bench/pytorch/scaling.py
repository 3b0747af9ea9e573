#!/usr/bin/env python3
"""scaling.py: ember_scaling's runs in PyTorch (same models, SGD momentum, synthetic data, same JSON shape).

    python3 bench/pytorch/scaling.py --model cnn --devices cuda:0,cuda:1 --json dp_torch.json     # DataParallel, k = 1..n
    mpirun -np K python3 bench/pytorch/scaling.py --ddp --model cnn --max-devices K --json ddp_K.json
    python3 bench/pytorch/scaling.py --merge ddp_1.json ddp_2.json --json ddp_torch.json

--ddp takes rank and world size from Open MPI's or torchrun's environment and rendezvouses over TCP on
127.0.0.1 (one host): gloo for CPU tensors, nccl for CUDA. Step times are medians after warm-up (CUDA
synchronised each step), the maximum over ranks; "comm_hidden" is null (PyTorch does not expose how
much of the all-reduce backward hid). Works with torch 1.13 and 2.x.
"""
import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_torch import Cnn, Mlp, no_tf32  # noqa: E402


def make_model(name):
    return {"mlp": Mlp, "cnn": Cnn}[name]()


def chunk_sizes(total, n):
    base, extra = divmod(total, n)
    return [base + (1 if i < extra else 0) for i in range(n) if base + (1 if i < extra else 0) > 0]


def timed_steps(step, device, steps, warmup):
    times = []
    for s in range(warmup + steps):
        t0 = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if s >= warmup:
            times.append(time.perf_counter() - t0)
    return statistics.median(times), statistics.mean(times)


def row(devices, scaling, per_device, global_batch, med, avg):
    return {"devices": devices, "scaling": scaling, "batch_per_device": per_device, "global_batch": global_batch,
            "step_ms": med * 1e3, "step_ms_mean": avg * 1e3, "images_per_sec": global_batch / med,
            "efficiency": None, "comm_ms": None, "exposed_ms": None, "comm_hidden": None}


def fill_efficiency(rows):
    for r in rows:
        base = [b for b in rows if b["devices"] == 1 and b["scaling"] == r["scaling"]]
        if base:
            b = base[0]["step_ms"]
            r["efficiency"] = b / r["step_ms"] if r["scaling"] == "weak" else b / (r["devices"] * r["step_ms"])


def print_rows(rows):
    print("%-7s %7s %9s %7s %9s %10s %10s" % ("scaling", "devices", "batch/dev", "global", "step ms", "images/s",
                                              "efficiency"))
    for kind in ("weak", "strong"):
        for r in rows:
            if r["scaling"] == kind:
                eff = "%.1f%%" % (100 * r["efficiency"]) if r["efficiency"] is not None else "-"
                print("%-7s %7d %9d %7d %9.2f %10.0f %10s" % (kind, r["devices"], r["batch_per_device"],
                                                               r["global_batch"], r["step_ms"], r["images_per_sec"], eff))


def header(args, mode, kind):
    return {"model": args.model, "device_kind": kind, "mode": mode, "batch_size": args.batch_size,
            "global_batch": args.global_batch, "steps": args.steps, "warmup": args.warmup, "peer": "pytorch",
            "torch": torch.__version__, "threads_per_rank": torch.get_num_threads(),
            "machine": {"date": datetime.datetime.utcnow().strftime("%Y-%m-%dT%H:%M:%SZ"), "host": platform.node(),
                        "cores": os.cpu_count()}}


def kind_of(device):
    return "cuda (%s)" % torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def sgd(model):
    return torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)


def run_dp(args):
    devices = [torch.device(d) for d in args.devices.split(",")]
    k_max = len(devices)
    args.global_batch = args.global_batch or args.batch_size * k_max
    rows = []
    for k in range(1, k_max + 1):
        if devices[0].type != "cuda" and k > 1:
            break  # PyTorch's DataParallel is GPU-only: on the CPU only the one-device step
        for scaling in args.scaling:
            total = args.batch_size * k if scaling == "weak" else args.global_batch
            torch.manual_seed(0)
            net = make_model(args.model).to(devices[0]).train()
            model = torch.nn.DataParallel(net, device_ids=[d.index for d in devices[:k]]) \
                if devices[0].type == "cuda" else net
            opt = sgd(net)
            x = torch.randn(total, 1, 28, 28, device=devices[0])
            y = torch.randint(0, 10, (total,), device=devices[0])

            def step():
                opt.zero_grad(set_to_none=False)
                F.cross_entropy(model(x), y).backward()
                opt.step()
            med, avg = timed_steps(step, devices[0], args.steps, args.warmup)
            rows.append(row(k, scaling, -(-total // k), total, med, avg))
    fill_efficiency(rows)
    print_rows(rows)
    doc = header(args, "dp", kind_of(devices[0]))
    doc["results"] = rows
    return doc


def run_ddp(args):
    import torch.distributed as dist
    env = os.environ
    rank = int(env.get("OMPI_COMM_WORLD_RANK", env.get("RANK", 0)))
    world = int(env.get("OMPI_COMM_WORLD_SIZE", env.get("WORLD_SIZE", 1)))
    local = int(env.get("OMPI_COMM_WORLD_LOCAL_RANK", env.get("LOCAL_RANK", 0)))
    use_cuda = args.devices.startswith("cuda") and torch.cuda.is_available()
    device = torch.device("cuda", local % torch.cuda.device_count()) if use_cuda else torch.device("cpu")
    dist.init_process_group("nccl" if use_cuda else "gloo", init_method="tcp://127.0.0.1:%d" % args.port,
                            rank=rank, world_size=world)
    k_max = max(args.max_devices, world)
    args.global_batch = args.global_batch or args.batch_size * k_max
    rows = []
    for scaling in args.scaling:
        mine = args.batch_size if scaling == "weak" else chunk_sizes(args.global_batch, world)[rank]
        torch.manual_seed(0)
        net = make_model(args.model).to(device).train()
        ddp = torch.nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if use_cuda else None)
        opt = sgd(net)
        torch.manual_seed(1 + rank)
        x = torch.randn(mine, 1, 28, 28, device=device)
        y = torch.randint(0, 10, (mine,), device=device)

        def step():
            opt.zero_grad(set_to_none=False)
            F.cross_entropy(ddp(x), y).backward()
            opt.step()
        dist.barrier()
        med, avg = timed_steps(step, device, args.steps, args.warmup)
        t = torch.tensor([med, avg], dtype=torch.float64, device=device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        med, avg = t.tolist()
        total = args.batch_size * world if scaling == "weak" else args.global_batch
        rows.append(row(world, scaling, -(-total // world), total, med, avg))
    dist.destroy_process_group()
    if world == 1:
        fill_efficiency(rows)
    if rank != 0:
        return None
    print_rows(rows)
    doc = header(args, "ddp", kind_of(device))
    doc["world_size"] = world
    doc["results"] = rows
    return doc


def merge(paths):
    doc, rows = None, []
    for p in paths:
        with open(p) as f:
            d = json.load(f)
        doc = doc or {k: v for k, v in d.items() if k not in ("results", "world_size")}
        rows += d["results"]
    rows.sort(key=lambda r: (r["scaling"] != "weak", r["devices"]))
    fill_efficiency(rows)
    print_rows(rows)
    doc["results"] = rows
    return doc


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="cnn", choices=["mlp", "cnn"])
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--global-batch", type=int, default=0)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--devices", default="cuda:0", help="DataParallel: device list; --ddp: cpu or cuda")
    ap.add_argument("--ddp", action="store_true")
    ap.add_argument("--max-devices", type=int, default=0)
    ap.add_argument("--scaling", default="both", choices=["weak", "strong", "both"])
    ap.add_argument("--port", type=int, default=29533)
    ap.add_argument("--merge", nargs="*")
    ap.add_argument("--json")
    args = ap.parse_args()
    args.scaling = ["weak", "strong"] if args.scaling == "both" else [args.scaling]
    no_tf32()
    doc = merge(args.merge) if args.merge else run_ddp(args) if args.ddp else run_dp(args)
    if doc is not None and args.json:
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1)
        print("wrote %s" % args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
