#!/usr/bin/env python3
"""plot.py: charts of ember's scaling (measured and projected) and of its ratios to the peer, as PNG files.

    python3 bench/plot.py RESULTS_DIR [--ratios ratios.json] [--out DIR] [--title TEXT]

RESULTS_DIR holds what bench/scaling.sh writes (ddp_<model>.json, dp_<model>.json, projection_<model>.json);
--ratios is bench/compare.py's --json output. Writes scaling.png (per-device efficiency against device
count: DDP weak and strong scaling and DataParallel as measured, the projection to 1024 GPUs, and the
projection's validation points) and, with --ratios, ratios.png (ember's speed relative to PyTorch or
LibTorch, one bar per figure, targets marked).

Needs matplotlib (Debian: apt-get install python3-matplotlib; or pip install matplotlib); nothing else in
ember's build or tests does.
"""
import argparse
import glob
import json
import os
import sys


def load(path):
    with open(path) as f:
        return json.load(f)


def series(rows, scaling):
    pts = sorted((r["devices"], r["efficiency"]) for r in rows
                 if r.get("scaling") == scaling and r.get("efficiency") is not None)
    return [p[0] for p in pts], [100 * p[1] for p in pts]


def plot_scaling(plt, results_dir, out, title):
    models = sorted({os.path.basename(p).split("_", 1)[1].rsplit(".", 1)[0]
                     for p in glob.glob(os.path.join(results_dir, "*_*.json"))
                     if os.path.basename(p).split("_", 1)[0] in ("ddp", "dp", "projection")
                     and not os.path.basename(p).rsplit(".", 1)[0][-1].isdigit()})
    if not models:
        print("plot.py: no ddp_/dp_/projection_<model>.json in %s" % results_dir, file=sys.stderr)
        return None
    fig, axes = plt.subplots(1, len(models), figsize=(6.2 * len(models), 4.4), squeeze=False)
    machine = ""
    for ax, model in zip(axes[0], models):
        colors = {"weak": "tab:blue", "strong": "tab:orange"}
        ddp = os.path.join(results_dir, "ddp_%s.json" % model)
        if os.path.exists(ddp):
            doc = load(ddp)
            m = doc.get("machine", {})
            machine = "%s, %s cores, %s" % (m.get("cpu", "?"), m.get("cores", "?"), m.get("date", "?")[:10])
            for kind in ("weak", "strong"):
                x, y = series(doc["results"], kind)
                if x:
                    ax.plot(x, y, "o-", color=colors[kind], label="DDP %s, measured (%s)" % (kind, doc["device_kind"]))
        dp = os.path.join(results_dir, "dp_%s.json" % model)
        if os.path.exists(dp):
            doc = load(dp)
            for kind in ("weak", "strong"):
                x, y = series(doc["results"], kind)
                if x:
                    ax.plot(x, y, "s:", color=colors[kind], alpha=0.6, label="DataParallel %s, measured" % kind)
        proj = os.path.join(results_dir, "projection_%s.json" % model)
        if os.path.exists(proj):
            doc = load(proj)
            x, y = series(doc["results"], "weak")
            c = doc.get("cluster", {})
            ax.plot(x, y, "^--", color="tab:green",
                    label="projected, weak (%s/node, %g GB/s in, %g GB/s/GPU across)" % (
                        c.get("gpus_per_node"), c.get("intra_busbw_GBps"), c.get("inter_busbw_GBps_per_gpu")))
            val = doc.get("validation") or {}
            vr = [r for r in val.get("rows", []) if r["scaling"] == "weak"]
            if vr:
                base = [r for r in vr if r["devices"] == 1]
                if base:
                    b = base[0]["projected_step_ms"]
                    ax.plot([r["devices"] for r in vr], [100 * b / r["projected_step_ms"] for r in vr], "x",
                            color="black", markersize=9,
                            label="model with this machine's link (validation%s)" % (
                                ": passed" if val.get("passed") else ": see output"))
        ax.set_xscale("log", base=2)
        ax.set_xlabel("devices (GPUs, or ranks / logical devices here)")
        ax.set_ylabel("per-device efficiency vs perfect linear scaling (%)")
        ax.set_title("%s" % model.upper())
        ax.axhline(100, color="gray", lw=0.8)
        ax.set_ylim(0, max(130, ax.get_ylim()[1]))
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="lower left")
    fig.suptitle(title or ("ember scaling: measured on %s\nprojected (modelled) from the measured one-device step"
                           % machine), fontsize=9)
    fig.tight_layout()
    path = os.path.join(out, "scaling.png")
    fig.savefig(path, dpi=90)
    print("plot.py: wrote %s" % path)
    return path


def plot_ratios(plt, ratios_path, out):
    doc = load(ratios_path)
    rows = [r for r in doc.get("rows", []) if r.get("ratio")]
    if not rows:
        print("plot.py: no ratios in %s" % ratios_path, file=sys.stderr)
        return None
    fig, ax = plt.subplots(figsize=(7.5, 0.26 * len(rows) + 1.2))
    names = [r["name"] for r in rows]
    vals = [r["ratio"] for r in rows]
    ax.barh(range(len(rows)), vals, color=["tab:green" if v >= 1 else "tab:red" for v in vals])
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(names, fontsize=7)
    ax.invert_yaxis()
    ax.axvline(1.0, color="black", lw=0.8)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("ember speed / %s speed (> 1: ember faster)" % rows[0].get("peer", "peer"))
    for i, v in enumerate(vals):
        ax.text(v, i, " %.2f" % v, va="center", fontsize=6)
    fig.tight_layout()
    path = os.path.join(out, "ratios.png")
    fig.savefig(path, dpi=90)
    print("plot.py: wrote %s" % path)
    return path


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("results", help="directory of bench/scaling.sh's JSON files")
    ap.add_argument("--ratios", help="bench/compare.py --json output")
    ap.add_argument("--out", help="where the PNGs go (default: the results directory)")
    ap.add_argument("--title")
    args = ap.parse_args()
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("plot.py: needs matplotlib (Debian: apt-get install python3-matplotlib, then run it with "
              "/usr/bin/python3; or pip install matplotlib)", file=sys.stderr)
        return 2
    out = args.out or args.results
    os.makedirs(out, exist_ok=True)
    plot_scaling(plt, args.results, out, args.title)
    if args.ratios:
        plot_ratios(plt, args.ratios, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
