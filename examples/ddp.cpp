// ddp: the smallest complete DistributedDataParallel program. `mpirun -np 2 ./ddp` trains one model over two
// processes; `./ddp` alone is a world of one. It fails unless the model learned and every rank holds the same
// parameters.
#include <cstdio>

#include <ember.h>

using namespace ember;

struct NetImpl : nn::Cloneable<NetImpl> {
  NetImpl() { reset(); }
  void reset() override {
    fc1 = register_module("fc1", nn::Linear(2, 32));
    fc2 = register_module("fc2", nn::Linear(32, 2));
  }
  Tensor forward(const Tensor& x) { return fc2->forward(relu(fc1->forward(x))); }
  nn::Linear fc1{nullptr}, fc2{nullptr};
};
EMBER_MODULE(Net);

int main() {
  auto pg = distributed::init_process_group();  // rank and size from mpirun; a world of one without it
  const int rank = pg->rank();

  // Every rank makes the same 1024 points, labelled by the side of the line y = x they fall on, and takes
  // its shard of each epoch's shuffle (the same shuffle on every rank, padded to equal length).
  manual_seed(0);
  Tensor x = randn({1024, 2});
  Tensor y = x.select(1, 1).gt(x.select(1, 0)).to(kInt64);
  auto points = std::make_shared<data::TensorDataset>(x, y);
  data::DataLoader loader(points, data::DataLoaderOptions(32).seed(0).num_replicas(pg->size()).rank(rank));

  manual_seed(100 + static_cast<uint64_t>(rank));  // different on purpose: DDP starts every rank from rank 0's
  Net net;
  parallel::DistributedDataParallel<NetImpl> ddp(net, pg);  // gradients are averaged over the ranks
  optim::SGD opt(net->parameters(), optim::SGDOptions(0.1).momentum(0.9));

  double loss = 0;
  for (int epoch = 0; epoch < 5; ++epoch) {
    double sum = 0;
    for (const data::Batch& batch : loader) {
      opt.zero_grad();
      Tensor l = nn::functional::cross_entropy(ddp->forward(batch.data), batch.target);
      l.backward();
      opt.step();
      sum += l.item<double>();
    }
    Tensor mean = tensor({sum / static_cast<double>(loader.num_batches())});
    pg->all_reduce(mean, distributed::ReduceOp::Avg);  // over every rank's batches
    loss = mean.item<double>();
    if (rank == 0) std::printf("epoch %d  loss %.4f  (%d rank(s), %lld points each)\n", epoch, loss, pg->size(),
                               static_cast<long long>(loader.num_examples()));
  }

  // Every rank must hold the same parameters: the spread max - min over ranks of each value is zero.
  std::vector<Tensor> flat;
  for (const Tensor& p : net->parameters()) flat.push_back(p.detach().flatten());
  Tensor hi = cat(flat, 0), lo = hi.clone();
  pg->all_reduce(hi, distributed::ReduceOp::Max);
  pg->all_reduce(lo, distributed::ReduceOp::Min);
  const double spread = (hi - lo).max().item<double>();
  const bool ok = loss < 0.15 && spread <= 1e-6;
  if (rank == 0)
    std::printf("final loss %.4f (bound 0.15), parameter spread over ranks %.3g: %s\n", loss, spread,
                ok ? "ok" : "FAILED");
  return ok ? 0 : 1;
}
