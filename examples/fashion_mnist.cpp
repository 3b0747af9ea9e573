// fashion_mnist: trains an MLP or a small CNN on Fashion-MNIST with ember, from the command line: on one
// device, with DataParallel over several, or with DistributedDataParallel over processes (--ddp, mpirun).
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <optional>
#include <sstream>

#include <ember.h>

using namespace ember;
using Clock = std::chrono::steady_clock;

namespace {

// 784-256-128-10 with ReLU.
struct MlpImpl : nn::Cloneable<MlpImpl> {
  MlpImpl() { reset(); }
  void reset() override {
    fc1 = register_module("fc1", nn::Linear(784, 256));
    fc2 = register_module("fc2", nn::Linear(256, 128));
    fc3 = register_module("fc3", nn::Linear(128, 10));
  }
  Tensor forward(const Tensor& x) {
    Tensor h = x.flatten(1);
    h = fc1->forward(h).relu();
    h = fc2->forward(h).relu();
    return fc3->forward(h);
  }
  nn::Linear fc1{nullptr}, fc2{nullptr}, fc3{nullptr};
};
EMBER_MODULE(Mlp);

// Two conv-BN-ReLU-pool blocks and a classifier.
struct CnnImpl : nn::Cloneable<CnnImpl> {
  CnnImpl() { reset(); }
  void reset() override {
    features = register_module(
        "features",
        nn::Sequential(nn::Conv2d(nn::Conv2dOptions(1, 32, 3).padding(1).bias(false)), nn::BatchNorm2d(32), nn::ReLU(),
                       nn::MaxPool2d(nn::MaxPool2dOptions(2)),
                       nn::Conv2d(nn::Conv2dOptions(32, 64, 3).padding(1).bias(false)), nn::BatchNorm2d(64), nn::ReLU(),
                       nn::MaxPool2d(nn::MaxPool2dOptions(2))));
    classifier = register_module("classifier", nn::Sequential(nn::Flatten(), nn::Linear(64 * 7 * 7, 128), nn::ReLU(),
                                                              nn::Dropout(0.25), nn::Linear(128, 10)));
  }
  Tensor forward(const Tensor& x) { return classifier->forward(features->forward(x)); }
  nn::Sequential features{nullptr}, classifier{nullptr};
};
EMBER_MODULE(Cnn);

std::string format_duration(double seconds) {
  const long s = std::lround(std::max(0.0, seconds));
  std::ostringstream os;
  if (s >= 3600) os << s / 3600 << ":" << std::setw(2) << std::setfill('0') << (s / 60) % 60;
  else os << s / 60;
  os << ":" << std::setw(2) << std::setfill('0') << s % 60;
  return os.str();
}

// A progress bar on a terminal; periodic plain lines otherwise (logs, CI, and under mpirun, which gives every
// rank a pseudo-terminal even when its own output goes to a file).
class Progress {
 public:
  Progress(int epoch, int epochs, int64_t total, bool launched)
      : epoch_(epoch), epochs_(epochs), total_(total), tty_(isatty(1) && !launched) {}

  void update(int64_t done, double loss, double images_per_sec, double elapsed) {
    const double eta = images_per_sec > 0 ? static_cast<double>(total_ - done) / images_per_sec : 0;
    if (tty_) {
      constexpr int kWidth = 30;
      const int filled = static_cast<int>(kWidth * done / std::max<int64_t>(total_, 1));
      std::printf("\repoch %d/%d [%s%s] %6lld/%lld  %7.0f img/s  loss %.4f  ETA %s   ", epoch_, epochs_,
                  std::string(static_cast<size_t>(filled), '#').c_str(),
                  std::string(static_cast<size_t>(kWidth - filled), '.').c_str(), static_cast<long long>(done),
                  static_cast<long long>(total_), images_per_sec, loss, format_duration(eta).c_str());
      std::fflush(stdout);
    } else if (elapsed - last_print_ >= 10.0 || done == total_) {
      last_print_ = elapsed;
      std::printf("epoch %d/%d  %lld/%lld images  %.0f img/s  loss %.4f  ETA %s\n", epoch_, epochs_,
                  static_cast<long long>(done), static_cast<long long>(total_), images_per_sec, loss,
                  format_duration(eta).c_str());
      std::fflush(stdout);
    }
  }
  void finish() {
    if (tty_) std::printf("\n");
  }

 private:
  int epoch_, epochs_;
  int64_t total_;
  bool tty_;
  double last_print_ = -1e9;
};

struct EvalResult {
  double accuracy = 0;
  double loss = 0;
};

// The test set, or under --ddp this rank's shard of it (every example on exactly one rank): the counts of
// every rank are summed, so that the result is the whole test set's.
template <class Model>
EvalResult evaluate(Model& model, data::DataLoader& loader, distributed::ProcessGroup* pg) {
  NoGradGuard no_grad;
  model->eval();
  int64_t correct = 0, seen = 0;
  double loss_sum = 0;
  for (const data::Batch& batch : loader) {
    Tensor logits = model->forward(batch.data);
    loss_sum += nn::functional::cross_entropy(logits, batch.target).item<double>() * batch.target.size(0);
    correct += logits.argmax(1).eq(batch.target).sum().template item<int64_t>();
    seen += batch.target.size(0);
  }
  model->train();
  if (pg) {
    Tensor counts = tensor({static_cast<double>(correct), static_cast<double>(seen), loss_sum});
    pg->all_reduce(counts);
    const std::vector<double> c = counts.to_vector<double>();
    correct = std::llround(c[0]);
    seen = std::llround(c[1]);
    loss_sum = c[2];
  }
  return {static_cast<double>(correct) / static_cast<double>(seen), loss_sum / static_cast<double>(seen)};
}

// The first `limit` examples of a dataset (all of them when limit <= 0 or beyond its size).
std::shared_ptr<data::TensorDataset> first_examples(std::shared_ptr<data::MnistDataset> ds, int64_t limit) {
  if (limit <= 0 || limit >= ds->size()) return ds;
  return std::make_shared<data::TensorDataset>(ds->data().narrow(0, 0, limit), ds->targets().narrow(0, 0, limit));
}

std::string json_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

struct Config {
  std::string model = "cnn";
  int epochs = 2;
  int64_t batch_size = 64;
  double lr = -1;  // per-optimizer default
  std::string optimizer = "adamw";
  std::string device = "cpu";
  std::string data_dir = data::MnistDataset::kDebianFashionRoot;
  uint64_t seed = 0;
  std::string metrics_json, save_path, resume_path;
  double weight_decay = -1;
  bool ddp = false;
  int64_t limit = 0;  // 0: every image
};

// Note [fashion_mnist --ddp]
// One process per rank (mpirun -np N; a world of one without a launcher), each on its own device: the CPU,
// or with --device cuda the GPU the process group drives (local_rank % device count). Every rank loads the
// data and trains on its shard of each epoch (the same seeded shuffle everywhere, padded to equal length), so
// a step's global batch is ranks x --batch-size; DDP averages the gradients, so the run follows the
// single-process one at that global batch (same learning rate, schedule and epochs). The test set is split
// without padding and the ranks' counts are summed. Only rank 0 prints and writes files.
template <class Model>
int train(Model model, const Config& cfg, const std::vector<Device>& devices,
          const std::shared_ptr<distributed::ProcessGroup>& pg) {
  const int rank = pg ? pg->rank() : 0, world = pg ? pg->size() : 1;
  const bool main_rank = rank == 0;
  // Dropout differs per rank (rank 0 draws what a single-process run draws); DDP gives every rank rank 0's
  // initial parameters.
  manual_seed(cfg.seed + static_cast<uint64_t>(rank));
  const Device device = devices[0];
  model->to(device);
  if (!cfg.resume_path.empty()) {
    nn::load(model, cfg.resume_path);
    if (main_rank) std::printf("resumed from %s\n", cfg.resume_path.c_str());
  }
  // Several devices: the module stays on the first; each step scatters the batch over all of them.
  using Impl = typename Model::ContainedType;
  std::optional<parallel::DataParallel<Impl>> dp;
  if (devices.size() > 1) dp.emplace(model, devices);
  std::optional<parallel::DistributedDataParallel<Impl>> ddp;
  if (pg) ddp.emplace(model, pg);
  auto forward = [&](const Tensor& x) {
    if (dp) return (*dp)->forward(x);
    if (ddp) return (*ddp)->forward(x);
    return model->forward(x);
  };
  const auto t_load = Clock::now();
  auto train_set = first_examples(
      std::make_shared<data::MnistDataset>(cfg.data_dir, data::MnistDataset::Split::Train), cfg.limit);
  auto test_set =
      first_examples(std::make_shared<data::MnistDataset>(cfg.data_dir, data::MnistDataset::Split::Test), cfg.limit);
  data::DataLoader train_loader(train_set, data::DataLoaderOptions(cfg.batch_size)
                                               .shuffle(true)
                                               .seed(cfg.seed)
                                               .device(device)
                                               .num_replicas(world)
                                               .rank(rank));
  data::DataLoader test_loader(
      test_set,
      data::DataLoaderOptions(1000).shuffle(false).device(device).num_replicas(world).rank(rank).even_shards(false));
  if (main_rank) {
    std::printf("Fashion-MNIST: %lld training and %lld test images from %s (loaded in %.1f s)\n",
                static_cast<long long>(train_set->size()), static_cast<long long>(test_set->size()),
                cfg.data_dir.c_str(), std::chrono::duration<double>(Clock::now() - t_load).count());
    if (pg)
      std::printf("DDP: %d rank(s) (backend %s), %lld training images per rank, global batch %lld\n", world,
                  pg->backend().c_str(), static_cast<long long>(train_loader.num_examples()),
                  static_cast<long long>(cfg.batch_size * world));
  }

  std::unique_ptr<optim::Optimizer> opt;
  double lr = cfg.lr;
  if (cfg.optimizer == "sgd") {
    if (lr < 0) lr = 0.05;
    const double wd = cfg.weight_decay < 0 ? 5e-4 : cfg.weight_decay;
    opt = std::make_unique<optim::SGD>(model->parameters(),
                                       optim::SGDOptions(lr).momentum(0.9).nesterov(true).weight_decay(wd));
  } else {
    if (lr < 0) lr = 2e-3;
    const double wd = cfg.weight_decay < 0 ? 1e-2 : cfg.weight_decay;
    opt = std::make_unique<optim::AdamW>(model->parameters(), optim::AdamWOptions(lr).weight_decay(wd));
  }
  const int64_t steps_per_epoch = train_loader.num_batches();
  // Cosine decay over the whole run, stepped per batch.
  optim::CosineAnnealingLR schedule(*opt, steps_per_epoch * cfg.epochs);

  int64_t n_params = 0;
  for (const Tensor& p : model->parameters()) n_params += p.numel();
  if (main_rank) {
    std::printf("model %s (%lld parameters) on %s, optimizer %s lr %g, batch %lld%s, %d epoch(s), seed %llu\n",
                cfg.model.c_str(), static_cast<long long>(n_params), device.str().c_str(), cfg.optimizer.c_str(), lr,
                static_cast<long long>(cfg.batch_size), pg ? " per rank" : "", cfg.epochs,
                static_cast<unsigned long long>(cfg.seed));
    std::cout << *model.ptr() << "\n";
  }

  double final_train_loss = 0, train_seconds = 0, last_accuracy = 0, last_test_loss = 0;
  int64_t images_trained = 0;
  std::vector<std::pair<double, double>> history;  // (accuracy, train loss) per epoch
  const auto t_start = Clock::now();
  for (int epoch = 1; epoch <= cfg.epochs; ++epoch) {
    // Every rank trains on as many images (the shards are padded to equal length): `done` counts them all.
    const int64_t epoch_images = train_loader.num_examples() * world;
    Progress progress(epoch, cfg.epochs, epoch_images, world > 1);
    const auto t_epoch = Clock::now();
    double loss_ema = 0;
    double epoch_loss_sum = 0;
    int64_t done = 0, batches = 0;
    for (const data::Batch& batch : train_loader) {
      opt->zero_grad();
      Tensor loss = nn::functional::cross_entropy(forward(batch.data), batch.target);
      loss.backward();
      opt->step();
      schedule.step();
      const double l = loss.item<double>();
      epoch_loss_sum += l;
      loss_ema = batches == 0 ? l : 0.98 * loss_ema + 0.02 * l;
      ++batches;
      done += batch.target.size(0) * world;
      const double elapsed = std::chrono::duration<double>(Clock::now() - t_epoch).count();
      if (main_rank) progress.update(done, loss_ema, static_cast<double>(done) / elapsed, elapsed);
    }
    if (main_rank) progress.finish();
    const double epoch_seconds = std::chrono::duration<double>(Clock::now() - t_epoch).count();
    train_seconds += epoch_seconds;
    images_trained += done;
    final_train_loss = epoch_loss_sum / static_cast<double>(std::max<int64_t>(batches, 1));
    if (pg) {
      // The mean over every rank's batches (each rank ran as many), and every rank evaluates rank 0's
      // buffers (batch-norm statistics), as DDP's next forward would broadcast them.
      Tensor mean_loss = tensor({final_train_loss});
      pg->all_reduce(mean_loss, distributed::ReduceOp::Avg);
      final_train_loss = mean_loss.item<double>();
      for (const Tensor& b : model->buffers()) pg->broadcast(b, 0);
    }
    const EvalResult r = evaluate(model, test_loader, pg.get());
    last_accuracy = r.accuracy;
    last_test_loss = r.loss;
    history.emplace_back(r.accuracy, final_train_loss);
    if (main_rank) {
      std::printf("epoch %d/%d: train loss %.4f, test loss %.4f, test accuracy %.2f%% (%.1f s, %.0f img/s)\n",
                  epoch, cfg.epochs, final_train_loss, r.loss, 100 * r.accuracy, epoch_seconds,
                  static_cast<double>(done) / epoch_seconds);
      std::fflush(stdout);
    }
  }
  const double total_seconds = std::chrono::duration<double>(Clock::now() - t_start).count();
  const double images_per_sec = train_seconds > 0 ? static_cast<double>(images_trained) / train_seconds : 0;
  if (!main_rank) return 0;
  const std::string where = pg ? cfg.device + " (DDP, " + std::to_string(world) + " ranks)" : cfg.device;
  std::printf("\nsummary: %s on %s, %d epoch(s) in %s (%.1f s): test accuracy %.2f%%, final train loss %.4f, %.0f "
              "images/s\n",
              cfg.model.c_str(), where.c_str(), cfg.epochs, format_duration(total_seconds).c_str(),
              total_seconds, 100 * last_accuracy, final_train_loss, images_per_sec);

  if (!cfg.save_path.empty()) {
    nn::save(model, cfg.save_path);
    std::printf("saved the model to %s\n", cfg.save_path.c_str());
  }
  if (!cfg.metrics_json.empty()) {
    std::ofstream out(cfg.metrics_json);
    EMBER_CHECK(out.good(), "fashion_mnist: cannot write --metrics-json file ", cfg.metrics_json);
    out << std::setprecision(6) << "{\n"
        << "  \"test_accuracy\": " << last_accuracy << ",\n"
        << "  \"test_loss\": " << last_test_loss << ",\n"
        << "  \"final_train_loss\": " << final_train_loss << ",\n"
        << "  \"epochs\": " << cfg.epochs << ",\n"
        << "  \"train_images_per_sec\": " << images_per_sec << ",\n"
        << "  \"train_seconds\": " << train_seconds << ",\n"
        << "  \"total_seconds\": " << total_seconds << ",\n"
        << "  \"device\": \"" << json_escape(cfg.device) << "\",\n"
        << "  \"devices\": " << devices.size() << ",\n"
        << "  \"ranks\": " << world << ",\n"
        << "  \"ddp\": " << (pg ? "true" : "false") << ",\n"
        << "  \"model\": \"" << json_escape(cfg.model) << "\",\n"
        << "  \"optimizer\": \"" << json_escape(cfg.optimizer) << "\",\n"
        << "  \"lr\": " << lr << ",\n"
        << "  \"batch_size\": " << cfg.batch_size << ",\n"
        << "  \"global_batch_size\": " << cfg.batch_size * world << ",\n"
        << "  \"train_images\": " << train_set->size() << ",\n"
        << "  \"test_images\": " << test_set->size() << ",\n"
        << "  \"seed\": " << cfg.seed << ",\n"
        << "  \"history\": [";
    for (size_t i = 0; i < history.size(); ++i)
      out << (i ? ", " : "") << "{\"epoch\": " << i + 1 << ", \"test_accuracy\": " << history[i].first
          << ", \"train_loss\": " << history[i].second << "}";
    out << "]\n}\n";
    EMBER_CHECK(out.good(), "fashion_mnist: failed writing ", cfg.metrics_json);
  }
  return 0;
}

std::vector<Device> parse_devices(const std::string& spec) {
  std::vector<Device> out;
  std::stringstream ss(spec);
  std::string item;
  while (std::getline(ss, item, ',')) {
    EMBER_CHECK(!item.empty(), "--device: empty entry in '", spec, "'");
    out.emplace_back(item);
  }
  EMBER_CHECK(!out.empty(), "--device: no device given");
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Train an MLP or a small CNN on Fashion-MNIST with ember."};
  Config cfg;
  app.add_option("--model", cfg.model, "mlp or cnn")->check(CLI::IsMember({"mlp", "cnn"}))->capture_default_str();
  app.add_option("--epochs", cfg.epochs, "passes over the training set")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--batch-size", cfg.batch_size, "images per step")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--lr", cfg.lr, "peak learning rate (default: 0.002 for adamw, 0.05 for sgd), cosine-decayed");
  app.add_option("--weight-decay", cfg.weight_decay, "weight decay (default: 0.01 for adamw, 5e-4 for sgd)");
  app.add_option("--optimizer", cfg.optimizer, "sgd or adamw")->check(CLI::IsMember({"sgd", "adamw"}))->capture_default_str();
  app.add_option("--device", cfg.device,
                 "cpu, cuda, cuda:1, or a comma-separated list (cuda:0,cuda:1 or cpu:0,cpu:1) for data parallelism")
      ->capture_default_str();
  app.add_option("--data", cfg.data_dir, "folder with the Fashion-MNIST IDX files")->capture_default_str();
  app.add_option("--seed", cfg.seed, "random seed (initialisation, shuffling, dropout)")->capture_default_str();
  app.add_option("--metrics-json", cfg.metrics_json, "write the final metrics to this JSON file");
  app.add_option("--save", cfg.save_path, "save the trained model (safetensors)");
  app.add_option("--resume", cfg.resume_path, "start from a saved model (safetensors)");
  app.add_flag("--ddp", cfg.ddp,
               "DistributedDataParallel, one process per rank: run under mpirun -np N (a world of one without a "
               "launcher); each rank trains on its shard, so the global batch is N x --batch-size");
  app.add_option("--limit", cfg.limit, "use only the first N training and N test images (quick checks)")
      ->check(CLI::NonNegativeNumber);
  CLI11_PARSE(app, argc, argv);

  try {
    std::vector<Device> devices = parse_devices(cfg.device);
    std::shared_ptr<distributed::ProcessGroup> pg;
    if (cfg.ddp) {
      EMBER_CHECK(devices.size() == 1, "--ddp runs one process per device and cannot be combined with a device list (",
                  cfg.device, " is DataParallel inside one process): use --device cpu, or --device cuda for one GPU "
                  "per rank");
      EMBER_CHECK(devices[0].is_cpu() ? devices[0].index() == 0 : cfg.device == "cuda",
                  "--ddp picks each rank's device itself: use --device cpu or --device cuda (rank r of a node takes "
                  "GPU r % device count), not ", cfg.device);
      pg = distributed::init_process_group();
      if (devices[0].is_cuda()) devices[0] = pg->cuda_device();
    }
    manual_seed(cfg.seed);  // the initial parameters (under --ddp, DDP broadcasts rank 0's)
    if (cfg.model == "mlp") return train(Mlp(), cfg, devices, pg);
    return train(Cnn(), cfg, devices, pg);
  } catch (const Error& e) {
    std::fprintf(stderr, "fashion_mnist: error: %s\n", e.what());
    return 1;
  }
}
