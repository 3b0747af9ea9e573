// The cost model behind `ember_scaling --project`: all-reduce time from link figures (ring, tree,
// hierarchical), and a training step's time at p devices from a measured one-device step and the
// reducer's buckets. Header-only and free of ember types, so it can be read (and checked) on its own.
// bench/README.md gives the formulas with their sources.
#pragma once

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

namespace ember::bench::model {

// One kind of link: alpha = latency of one step of a collective (seconds), busbw = bus bandwidth in
// bytes/s in nccl-tests' sense (a ring all-reduce of n bytes over p ranks takes 2(p-1)/p * n / busbw).
struct Link {
  double alpha = 0;
  double busbw = 1;
};

// GPUs in nodes of `per_node`: `intra` within a node (NVLink), `inter` per GPU across nodes (one NIC per
// GPU, so a node has per_node * inter.busbw of network bandwidth).
struct Cluster {
  int per_node = 8;
  Link intra{1e-6, 370e9};
  Link inter{5e-6, 45e9};
};

struct AllReduceCost {
  double seconds = 0;
  std::string algorithm;  // "none", "ring", "tree", "hier"
};

inline int ceil_log2(int x) {
  int l = 0;
  while ((1 << l) < x) ++l;
  return l;
}

// Note [All-reduce cost model]
// p ranks, m = ceil(p / per_node) nodes, g = min(p, per_node) ranks per node, n bytes:
//   ring: 2(p-1) steps, each moving n/p; 2(m-1) of them cross nodes (NCCL's tuning model counts
//         latency the same way). Bandwidth: the slowest link of the ring, the node's NICs shared by
//         its g rings' crossings, i.e. min(intra, g * inter) as a bus bandwidth.
//           T = 2(p-m) a_intra + 2(m-1) a_inter + 2(p-1)/p * n / B,   B = min(b_intra, g b_inter) (m > 1)
//   tree: NCCL's double binary tree across nodes, a chain within each node: latency
//         2((g-1) a_intra + ceil(log2 m) a_inter); bandwidth as the ring's at large p (each of the two
//         trees carries half the data up and down): 2 n / B.
//   hier: 2D: reduce-scatter within the node, g independent all-reduces of n/g across the m nodes
//         (each GPU on its own NIC, ring or tree, whichever is faster), all-gather within the node:
//           T = 2[(g-1) a_intra + (g-1)/g * n / b_intra] + min(ring_m(n/g, b_inter), tree_m(n/g, b_inter))
// Within one node (m = 1) the three reduce to ring and tree over the intra link. The cost is the fastest
// of them, as NCCL's tuner picks per message size.
inline AllReduceCost allreduce_cost(double n, int p, const Cluster& c) {
  if (p <= 1 || n <= 0) return {0.0, "none"};
  const int m = (p + c.per_node - 1) / c.per_node;
  const int g = std::min(p, c.per_node);
  const double pd = p;
  const double b = m > 1 ? std::min(c.intra.busbw, g * c.inter.busbw) : c.intra.busbw;
  AllReduceCost best{2.0 * (p - m) * c.intra.alpha + 2.0 * (m - 1) * c.inter.alpha + 2.0 * (pd - 1) / pd * n / b, "ring"};
  const double tree = 2.0 * ((g - 1) * c.intra.alpha + ceil_log2(m) * c.inter.alpha) + 2.0 * n / b;
  if (tree < best.seconds) best = {tree, "tree"};
  if (m > 1) {
    const double gd = g, md = m, shard = n / gd;
    const double in_node = 2.0 * ((g - 1) * c.intra.alpha + (gd - 1) / gd * n / c.intra.busbw);
    const double ring_m = 2.0 * (m - 1) * c.inter.alpha + 2.0 * (md - 1) / md * shard / c.inter.busbw;
    const double tree_m = 2.0 * ceil_log2(m) * c.inter.alpha + 2.0 * shard / c.inter.busbw;
    const double hier = in_node + std::min(ring_m, tree_m);
    if (hier < best.seconds) best = {hier, "hier"};
  }
  return best;
}

// A ring over one flat link (processes on one host: every step is alike).
inline double ring_cost(double n, int p, const Link& l) {
  if (p <= 1) return 0;
  return 2.0 * (p - 1) * l.alpha + 2.0 * (p - 1) / static_cast<double>(p) * n / l.busbw;
}

// A measured one-device training step: forward, backward and optimizer time, and for each bucket (in
// launch order) its bytes and when in backward its last gradient was ready.
struct Bucket {
  double bytes = 0;
  double ready = 0;  // seconds after backward started
};
struct StepProfile {
  double forward = 0, backward = 0, optimizer = 0;
  double step = 0;  // the measured step (with the wrapper's own costs); >= forward + backward + optimizer
  std::vector<Bucket> buckets;
  double grad_bytes() const {
    double s = 0;
    for (const Bucket& b : buckets) s += b.bytes;
    return s;
  }
};

struct StepEstimate {
  double step = 0;     // seconds
  double comm = 0;     // all-reduce time of every bucket, back to back
  double exposed = 0;  // the part of it backward did not hide
  double hidden = 1;   // 1 - exposed / comm
  std::string algorithm;
};

// Note [Overlap model]
// The reducer launches bucket i's all-reduce once its gradients are ready (ready_i) and the previous
// bucket's has been issued; one communication channel serves them in order:
//   start_i = max(ready_i * slow, end_{i-1}),  end_i = start_i + comm(bytes_i)
// and backward's final callback waits until the last one ends: exposed = max(0, end_last - backward * slow).
// The step is the measured one-device step (compute slowed by `slow`, the factor by which p ranks
// sharing too few cores slow each other's compute; 1 on GPUs) plus what is exposed. The first bucket
// is the last layers' gradients, ready early, so the window it has is the backward time after it:
// for a model whose gradients fit in one bucket that window is zero and nothing is hidden.
template <class CommFn>
StepEstimate estimate_step(const StepProfile& prof, int p, double slow, CommFn&& comm_of) {
  StepEstimate e;
  double end = 0, largest = -1;
  for (const Bucket& b : prof.buckets) {
    const AllReduceCost c = comm_of(b.bytes, p);
    e.comm += c.seconds;
    if (b.bytes > largest) {  // the algorithm of the largest bucket is the one reported
      largest = b.bytes;
      e.algorithm = c.algorithm;
    }
    end = std::max(b.ready * slow, end) + c.seconds;
  }
  e.exposed = std::max(0.0, end - prof.backward * slow);
  if (p <= 1) e.exposed = 0;
  e.hidden = e.comm > 0 ? std::clamp(1.0 - e.exposed / e.comm, 0.0, 1.0) : 1.0;
  e.step = prof.step * slow + e.exposed;
  return e;
}

// Least-squares fit of time = alpha_steps * a + bytes_factor * n / B over measured all-reduces, where
// for a ring over p ranks alpha_steps = 2(p-1) and bytes_factor = 2(p-1)/p: returns {a, B} (B in bytes/s).
struct Sample {
  int p = 2;
  double bytes = 0, seconds = 0;
};
inline Link fit_ring_link(const std::vector<Sample>& samples) {
  // Minimise sum ((x1 a + x2 w - t) / t)^2 with w = 1/B: relative errors, so that small messages count.
  double s11 = 0, s12 = 0, s22 = 0, r1 = 0, r2 = 0;
  for (const Sample& s : samples) {
    if (s.p <= 1 || s.seconds <= 0) continue;
    const double wt = 1.0 / (s.seconds * s.seconds);
    const double x1 = 2.0 * (s.p - 1), x2 = 2.0 * (s.p - 1) / s.p * s.bytes;
    s11 += wt * x1 * x1;
    s12 += wt * x1 * x2;
    s22 += wt * x2 * x2;
    r1 += wt * x1 * s.seconds;
    r2 += wt * x2 * s.seconds;
  }
  const double det = s11 * s22 - s12 * s12;
  if (det <= 0) return {};
  double a = (r1 * s22 - r2 * s12) / det, w = (s11 * r2 - s12 * r1) / det;
  if (a < 0) {  // latency below resolution: bandwidth alone
    a = 0;
    w = s22 > 0 ? r2 / s22 : 0;
  }
  return {a, w > 0 ? 1.0 / w : 1e30};
}

}  // namespace ember::bench::model
