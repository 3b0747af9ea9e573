#!/usr/bin/env python3
"""fashion_mnist.py: examples/fashion_mnist.cpp in PyTorch (same CNN, AdamW, cosine schedule, data), to compare with.

Same loop as ember's example: shuffled batches copied from (pinned) host memory each step, AdamW
(lr 2e-3, weight decay 1e-2) with cosine decay stepped per batch, loss.item() every step, the test
set evaluated after each epoch in batches of 1000. Writes the same --metrics-json fields.

    python3 bench/pytorch/fashion_mnist.py --device cuda --epochs 2 --data .device/fashion-mnist
    python3 bench/pytorch/fashion_mnist.py --device cpu --epochs 1 --limit 2048     # a quick dry run

Works with torch 1.13 and 2.x.
"""
import argparse
import gzip
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_torch import Cnn, no_tf32  # noqa: E402  (the same model as the benchmarks)

MEAN, STD = 0.2860, 0.3530  # data::MnistDataset::kFashionMean / kFashionStd


def read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load(root, split):
    prefix = "train" if split == "train" else "t10k"

    def find(stem):
        for cand in (os.path.join(root, stem + ".gz"), os.path.join(root, stem)):
            if os.path.exists(cand):
                return cand
        raise SystemExit("fashion_mnist.py: %s/%s[.gz] not found" % (root, stem))
    images = read_idx(find(prefix + "-images-idx3-ubyte"))
    labels = read_idx(find(prefix + "-labels-idx1-ubyte"))
    x = torch.from_numpy(images.astype(np.float32) / 255.0).sub_(MEAN).div_(STD).unsqueeze(1)
    y = torch.from_numpy(labels.astype(np.int64))
    return x, y


def batches(x, y, batch_size, device, generator=None):
    order = torch.randperm(x.size(0), generator=generator) if generator is not None else torch.arange(x.size(0))
    pin = device.type == "cuda"
    for start in range(0, x.size(0), batch_size):
        idx = order[start:start + batch_size]
        xb, yb = x.index_select(0, idx), y.index_select(0, idx)
        if pin:
            xb, yb = xb.pin_memory(), yb.pin_memory()
        yield xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)


def evaluate(model, x, y, device):
    model.eval()
    correct, loss_sum = 0, 0.0
    with torch.no_grad():
        for xb, yb in batches(x, y, 1000, device):
            logits = model(xb)
            loss_sum += F.cross_entropy(logits, yb).item() * yb.size(0)
            correct += (logits.argmax(1) == yb).sum().item()
    model.train()
    return correct / x.size(0), loss_sum / x.size(0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--weight-decay", type=float, default=1e-2)
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit", type=int, default=0, help="use only the first N training and test images")
    ap.add_argument("--metrics-json")
    args = ap.parse_args()

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("fashion_mnist.py: no CUDA device seen; training on the CPU", file=sys.stderr)
        args.device = "cpu"
    device = torch.device(args.device)
    no_tf32()
    torch.manual_seed(args.seed)

    t_load = time.perf_counter()
    x_train, y_train = load(args.data, "train")
    x_test, y_test = load(args.data, "test")
    if args.limit:
        x_train, y_train, x_test, y_test = x_train[:args.limit], y_train[:args.limit], x_test[:args.limit], y_test[:args.limit]
    print("Fashion-MNIST: %d training and %d test images from %s (loaded in %.1f s)"
          % (x_train.size(0), x_test.size(0), args.data, time.perf_counter() - t_load))

    model = Cnn().to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    steps_per_epoch = (x_train.size(0) + args.batch_size - 1) // args.batch_size
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps_per_epoch * args.epochs)
    n_params = sum(p.numel() for p in model.parameters())
    print("model cnn (%d parameters) on %s, AdamW lr %g, batch %d, %d epoch(s), torch %s"
          % (n_params, device, args.lr, args.batch_size, args.epochs, torch.__version__))

    gen = torch.Generator().manual_seed(args.seed)
    history, train_seconds, images = [], 0.0, 0
    accuracy = test_loss = train_loss = 0.0
    t_start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        t_epoch = time.perf_counter()
        loss_sum, n_batches, done = 0.0, 0, 0
        for xb, yb in batches(x_train, y_train, args.batch_size, device, gen):
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            opt.step()
            schedule.step()
            loss_sum += loss.item()
            n_batches += 1
            done += yb.size(0)
        seconds = time.perf_counter() - t_epoch
        train_seconds += seconds
        images += done
        train_loss = loss_sum / max(n_batches, 1)
        accuracy, test_loss = evaluate(model, x_test, y_test, device)
        history.append({"epoch": epoch, "test_accuracy": accuracy, "train_loss": train_loss})
        print("epoch %d/%d: train loss %.4f, test loss %.4f, test accuracy %.2f%% (%.1f s, %.0f img/s)"
              % (epoch, args.epochs, train_loss, test_loss, 100 * accuracy, seconds, done / seconds))
        sys.stdout.flush()
    total = time.perf_counter() - t_start
    ips = images / train_seconds if train_seconds > 0 else 0.0
    print("\nsummary: cnn on %s, %d epoch(s) in %.1f s: test accuracy %.2f%%, final train loss %.4f, %.0f images/s"
          % (device, args.epochs, total, 100 * accuracy, train_loss, ips))
    if args.metrics_json:
        with open(args.metrics_json, "w") as f:
            json.dump({"test_accuracy": accuracy, "test_loss": test_loss, "final_train_loss": train_loss,
                       "epochs": args.epochs, "train_images_per_sec": ips, "train_seconds": train_seconds,
                       "total_seconds": total, "device": str(device), "model": "cnn", "optimizer": "adamw",
                       "lr": args.lr, "batch_size": args.batch_size, "seed": args.seed, "torch": torch.__version__,
                       "history": history}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
