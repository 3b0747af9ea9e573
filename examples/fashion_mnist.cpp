// fashion_mnist: trains an MLP or a small CNN on Fashion-MNIST with ember, from the command line: on one
// device, with DataParallel over several, or with DistributedDataParallel over processes (--ddp, mpirun).
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <system_error>

#include <ember.h>
#include <nn/safetensors.h>  // safetensors::hooks, for the EMBER_TEST_KILL_DURING_SAVE test hook

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

// The shortest text that reads back as exactly `v` (so that metrics of two runs compare exactly).
std::string json_num(double v) {
  if (!std::isfinite(v)) return "null";
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  return ec == std::errc() ? std::string(buf, end) : std::string("null");
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
  std::string metrics_json, save_path, resume_path, checkpoint_dir;
  double weight_decay = -1;
  bool ddp = false;
  int64_t limit = 0;  // 0: every image
};

// Note [fashion_mnist checkpoints]
// With --checkpoint-dir DIR, rank 0 writes DIR/checkpoint-<epoch>.safetensors after each epoch's evaluation
// (nn::save_checkpoint, atomic: Note [Training checkpoints]): model, optimizer and schedule state, epoch and
// step, the generators' states, the data loader's position, and in `extra` the settings that shape the run
// and the per-epoch history. --resume DIR continues from the newest checkpoint there (--resume FILE from that
// checkpoint; a model file written by --save still only loads the weights). The settings must match
// (--model, --optimizer, --lr, --weight-decay, --batch-size, --epochs, --seed, --limit, the number of
// ranks): then on the CPU a resumed run ends with exactly the weights, losses and accuracy of an
// uninterrupted one. Under --ddp every rank's generators are seeded with seed + rank and advance alike
// (same ops on equal shards), so rank r resumes from rank 0's saved offsets with its own seed.
// Test hooks (fault injection; tests/examples use them): EMBER_TEST_KILL_AFTER_EPOCH=k sends the process
// SIGKILL right after epoch k's checkpoint is written; EMBER_TEST_KILL_DURING_SAVE=k sends it while epoch
// k's checkpoint is half-written, which must leave epoch k - 1's intact.

// The settings a checkpoint must share with the run that resumes it, as text (doubles exactly).
std::map<std::string, std::string> run_settings(const Config& cfg, double lr, double wd, int world) {
  auto exact = [](double v) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.17g", v);
    return std::string(buf);
  };
  return {{"model", cfg.model},
          {"optimizer", cfg.optimizer},
          {"lr", exact(lr)},
          {"weight_decay", exact(wd)},
          {"batch_size", std::to_string(cfg.batch_size)},
          {"epochs", std::to_string(cfg.epochs)},
          {"seed", std::to_string(cfg.seed)},
          {"limit", std::to_string(cfg.limit)},
          {"ranks", std::to_string(world)}};
}

const char* option_of(const std::string& setting) {
  static const std::map<std::string, const char*> flags = {{"model", "--model"},
                                                           {"optimizer", "--optimizer"},
                                                           {"lr", "--lr"},
                                                           {"weight_decay", "--weight-decay"},
                                                           {"batch_size", "--batch-size"},
                                                           {"epochs", "--epochs"},
                                                           {"seed", "--seed"},
                                                           {"limit", "--limit"},
                                                           {"ranks", "ranks (mpirun -np)"}};
  auto it = flags.find(setting);
  return it == flags.end() ? "?" : it->second;
}

struct EpochRecord {
  double test_accuracy = 0, train_loss = 0, test_loss = 0;
};

// The per-epoch history as text, exactly ("acc train test,acc train test,..."), and back.
std::string history_text(const std::vector<EpochRecord>& history) {
  std::string out;
  char buf[96];
  for (const EpochRecord& e : history) {
    std::snprintf(buf, sizeof buf, "%s%.17g %.17g %.17g", out.empty() ? "" : ",", e.test_accuracy, e.train_loss,
                  e.test_loss);
    out += buf;
  }
  return out;
}

std::vector<EpochRecord> parse_history(const std::string& text) {
  std::vector<EpochRecord> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    EpochRecord e;
    EMBER_CHECK(std::sscanf(item.c_str(), "%lf %lf %lf", &e.test_accuracy, &e.train_loss, &e.test_loss) == 3,
                "--resume: the checkpoint's history entry \"", item, "\" is not three numbers");
    out.push_back(e);
  }
  return out;
}

// A generator state (Note [Generator state]) with another seed: the first 8 bytes, little-endian.
Tensor with_seed(const Tensor& state, uint64_t seed) {
  Tensor t = state.cpu().clone();
  auto* bytes = static_cast<uint8_t*>(t.raw_data());
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<uint8_t>(seed >> (8 * i));
  return t;
}

int env_int(const char* name) {
  const char* v = std::getenv(name);
  return v && *v ? std::atoi(v) : -1;
}

// EMBER_TEST_KILL_DURING_SAVE: SIGKILL once at least half of the checkpoint is in its temporary file (at
// the latest when all of it is, before fsync and rename).
void kill_during_save(const std::string&, uint64_t written, uint64_t total) {
  if (written * 2 >= total) ::raise(SIGKILL);
}

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
  // The optimizer's settings (defaults per optimizer).
  const double lr = cfg.lr > 0 ? cfg.lr : cfg.optimizer == "sgd" ? 0.05 : 2e-3;
  const double wd = cfg.weight_decay >= 0 ? cfg.weight_decay : cfg.optimizer == "sgd" ? 5e-4 : 1e-2;
  const std::map<std::string, std::string> settings = run_settings(cfg, lr, wd, world);
  std::optional<nn::Checkpoint> resume;
  std::string resume_file = cfg.resume_path;
  if (!resume_file.empty()) {
    if (std::filesystem::is_directory(resume_file)) resume_file = nn::latest_checkpoint(resume_file);
    if (nn::is_checkpoint(resume_file)) {
      resume = nn::load_checkpoint(resume_file);
      std::string mismatches;
      for (const auto& [key, value] : settings) {
        auto it = resume->extra.find(key);
        const std::string saved = it == resume->extra.end() ? "(none)" : it->second;
        if (saved != value)
          mismatches += "\n  " + std::string(option_of(key)) + ": " + saved + " in the checkpoint, " + value + " now";
      }
      EMBER_CHECK(mismatches.empty(), "--resume: ", resume_file,
                  " was written by a run with other settings; "
                  "resume with the same ones:",
                  mismatches);
      model->load_state_dict(resume->model);
    } else {
      nn::load(model, resume_file);  // a model file (--save): the weights only
      if (main_rank)
        std::printf("loaded the weights of %s (a model file: training starts at epoch 1)\n", resume_file.c_str());
    }
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
  if (cfg.optimizer == "sgd") {
    opt = std::make_unique<optim::SGD>(model->parameters(),
                                       optim::SGDOptions(lr).momentum(0.9).nesterov(true).weight_decay(wd));
  } else {
    opt = std::make_unique<optim::AdamW>(model->parameters(), optim::AdamWOptions(lr).weight_decay(wd));
  }
  const int64_t steps_per_epoch = train_loader.num_batches();
  // Cosine decay over the whole run, stepped per batch.
  optim::CosineAnnealingLR schedule(*opt, steps_per_epoch * cfg.epochs);

  int first_epoch = 1;
  int64_t step = 0;
  std::vector<EpochRecord> history;
  if (resume) {
    EMBER_CHECK(resume->optimizer && resume->scheduler, "--resume: ", resume_file,
                " holds no optimizer or schedule state");
    opt->load_state_dict(*resume->optimizer);
    schedule.load_state_dict(*resume->scheduler);
    // Rank 0's loader state; every rank stands at the same batch of its own shard.
    StateValueMap data_state = resume->data;
    if (pg) data_state["rank"] = static_cast<int64_t>(rank);
    train_loader.load_state_dict(data_state);
    // This rank's generators: the saved ones, with this rank's seed (Note [fashion_mnist checkpoints]).
    const uint64_t my_seed = cfg.seed + static_cast<uint64_t>(rank);
    set_rng_state(with_seed(resume->rng.cpu, my_seed));
    if (device.is_cuda()) {
      if (pg) {
        const int saved_device = std::stoi(resume->extra.at("rng_device"));
        EMBER_CHECK(saved_device >= 0 && static_cast<size_t>(saved_device) < resume->rng.cuda.size(),
                    "--resume: ", resume_file, " holds no generator state of the GPU rank 0 trained on");
        cuda::set_rng_state(with_seed(resume->rng.cuda[static_cast<size_t>(saved_device)], my_seed), device.index());
      } else {
        RngStates states = resume->rng;
        states.cpu = Tensor();
        set_all_rng_states(states);
      }
    }
    first_epoch = static_cast<int>(resume->epoch) + 1;
    step = resume->step;
    if (auto it = resume->extra.find("history"); it != resume->extra.end()) history = parse_history(it->second);
    if (main_rank)
      std::printf("resumed from %s: epoch %lld of %d done, %lld steps\n", resume_file.c_str(),
                  static_cast<long long>(resume->epoch), cfg.epochs, static_cast<long long>(step));
  }
  const int kill_after_epoch = env_int("EMBER_TEST_KILL_AFTER_EPOCH");
  const int kill_during_save_epoch = env_int("EMBER_TEST_KILL_DURING_SAVE");

  int64_t n_params = 0;
  for (const Tensor& p : model->parameters()) n_params += p.numel();
  if (main_rank) {
    std::printf("model %s (%lld parameters) on %s, optimizer %s lr %g, batch %lld%s, %d epoch(s), seed %llu\n",
                cfg.model.c_str(), static_cast<long long>(n_params), device.str().c_str(), cfg.optimizer.c_str(), lr,
                static_cast<long long>(cfg.batch_size), pg ? " per rank" : "", cfg.epochs,
                static_cast<unsigned long long>(cfg.seed));
    std::cout << *model.ptr() << "\n";
  }

  double final_train_loss = history.empty() ? 0 : history.back().train_loss, train_seconds = 0;
  double last_accuracy = history.empty() ? 0 : history.back().test_accuracy;
  double last_test_loss = history.empty() ? 0 : history.back().test_loss;
  int64_t images_trained = 0;
  const auto t_start = Clock::now();
  for (int epoch = first_epoch; epoch <= cfg.epochs; ++epoch) {
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
      ++step;
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
    history.push_back({r.accuracy, final_train_loss, r.loss});
    if (main_rank) {
      std::printf("epoch %d/%d: train loss %.4f, test loss %.4f, test accuracy %.2f%% (%.1f s, %.0f img/s)\n",
                  epoch, cfg.epochs, final_train_loss, r.loss, 100 * r.accuracy, epoch_seconds,
                  static_cast<double>(done) / epoch_seconds);
      std::fflush(stdout);
    }
    if (main_rank && !cfg.checkpoint_dir.empty()) {
      nn::Checkpoint ck;
      ck.model = model->state_dict();
      ck.optimizer = opt->state_dict();
      ck.scheduler = schedule.state_dict();
      ck.data = train_loader.state_dict();
      ck.epoch = epoch;
      ck.step = step;
      ck.rng = get_all_rng_states();
      ck.extra = settings;
      ck.extra["history"] = history_text(history);
      ck.extra["rng_device"] = std::to_string(device.is_cuda() ? device.index() : -1);
      const std::string path = nn::checkpoint_path(cfg.checkpoint_dir, epoch);
      if (epoch == kill_during_save_epoch) safetensors::hooks::set_save_progress_hook(&kill_during_save);
      nn::save_checkpoint(path, ck);
      std::printf("checkpoint: %s\n", path.c_str());
      std::fflush(stdout);
      if (epoch == kill_after_epoch) ::raise(SIGKILL);
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
    out << "{\n"
        << "  \"test_accuracy\": " << json_num(last_accuracy) << ",\n"
        << "  \"test_loss\": " << json_num(last_test_loss) << ",\n"
        << "  \"final_train_loss\": " << json_num(final_train_loss) << ",\n"
        << "  \"epochs\": " << cfg.epochs << ",\n"
        << "  \"train_images_per_sec\": " << json_num(images_per_sec) << ",\n"
        << "  \"train_seconds\": " << json_num(train_seconds) << ",\n"
        << "  \"total_seconds\": " << json_num(total_seconds) << ",\n"
        << "  \"device\": \"" << json_escape(cfg.device) << "\",\n"
        << "  \"devices\": " << devices.size() << ",\n"
        << "  \"ranks\": " << world << ",\n"
        << "  \"ddp\": " << (pg ? "true" : "false") << ",\n"
        << "  \"model\": \"" << json_escape(cfg.model) << "\",\n"
        << "  \"optimizer\": \"" << json_escape(cfg.optimizer) << "\",\n"
        << "  \"lr\": " << json_num(lr) << ",\n"
        << "  \"batch_size\": " << cfg.batch_size << ",\n"
        << "  \"global_batch_size\": " << cfg.batch_size * world << ",\n"
        << "  \"train_images\": " << train_set->size() << ",\n"
        << "  \"test_images\": " << test_set->size() << ",\n"
        << "  \"seed\": " << cfg.seed << ",\n"
        << "  \"history\": [";
    for (size_t i = 0; i < history.size(); ++i)
      out << (i ? ", " : "") << "{\"epoch\": " << i + 1 << ", \"test_accuracy\": " << json_num(history[i].test_accuracy)
          << ", \"train_loss\": " << json_num(history[i].train_loss)
          << ", \"test_loss\": " << json_num(history[i].test_loss) << "}";
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

// Command-line checks that say what is wanted (CLI11's PositiveNumber printed the type's whole range, ending
// in a 300-digit number, and said 0 was not in a range starting at 0). CLI11 prefixes the option's name.
// Each parses the text itself, so that a word where a number belongs gets the same plain message.
CLI::Validator integer_at_least(long long min, const std::string& what) {
  const std::string tag = min > 0 ? "POSITIVE" : "NONNEGATIVE";
  return CLI::Validator(
      [min, what](std::string& text) -> std::string {
        errno = 0;
        char* end = nullptr;
        const long long v = std::strtoll(text.c_str(), &end, 10);
        if (text.empty() || *end != '\0' || v < min)
          return "must be " + what + ", got " + (text.empty() ? "nothing" : text);
        if (errno == ERANGE || v > INT32_MAX) return "must be at most 2147483647, got " + text;
        return "";
      },
      tag);
}

CLI::Validator number_check(bool allow_zero, const std::string& what) {
  return CLI::Validator(
      [allow_zero, what](std::string& text) -> std::string {
        char* end = nullptr;
        const double v = std::strtod(text.c_str(), &end);
        if (text.empty() || *end != '\0' || !std::isfinite(v) || v < 0 || (v == 0 && !allow_zero))
          return "must be " + what + ", got " + (text.empty() ? "nothing" : text);
        return "";
      },
      allow_zero ? "NONNEGATIVE" : "POSITIVE");
}

CLI::Validator seed_check() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        errno = 0;
        char* end = nullptr;
        (void)std::strtoull(text.c_str(), &end, 10);
        if (text.empty() || text[0] == '-' || *end != '\0' || errno == ERANGE)
          return "must be an integer from 0 to 18446744073709551615, got " + (text.empty() ? "nothing" : text);
        return "";
      },
      "");
}

// Note [Early checks of output paths]
// A run that trains for an hour and then cannot write its model has wasted the hour. So before the data is
// loaded every output is tried: a folder that does not exist (checkpoint folders are created), a path that is
// a folder, or a folder where no file can be created (tried by creating and removing a file there: permission
// bits alone say nothing to root, nor about read-only file systems) is reported with the option's name.
std::string parent_folder(const std::string& path) {
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  return parent.empty() ? "." : parent.string();
}

void check_can_create_in(const std::string& option, const std::string& shown, const std::string& folder) {
  std::error_code ec;
  EMBER_CHECK(std::filesystem::exists(folder, ec), option, " ", shown, ": the folder '", folder, "' does not exist");
  EMBER_CHECK(std::filesystem::is_directory(folder, ec), option, " ", shown, ": '", folder, "' is not a folder");
  const std::string probe = folder + "/.fashion_mnist-write-test." + std::to_string(::getpid());
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  EMBER_CHECK(fd >= 0, option, " ", shown, ": cannot create files in '", folder, "': ", std::strerror(errno));
  ::close(fd);
  ::unlink(probe.c_str());
}

void check_output_file(const std::string& option, const std::string& path) {
  if (path.empty()) return;
  std::error_code ec;
  EMBER_CHECK(!std::filesystem::is_directory(path, ec), option, " ", path, ": is a folder; give a file name");
  check_can_create_in(option, path, parent_folder(path));
  if (std::filesystem::exists(path, ec))
    EMBER_CHECK(::access(path.c_str(), W_OK) == 0, option, " ", path,
                ": the file is not writable: ", std::strerror(errno));
}

// Creates the checkpoint folder if needed and removes the temporary files of saves that a killed run left
// (named <checkpoint>.tmp.<pid>.<random>, of a process that no longer exists).
void prepare_checkpoint_dir(const std::string& dir, bool announce) {
  if (dir.empty()) return;
  std::error_code ec;
  if (!std::filesystem::exists(dir, ec)) {
    std::filesystem::create_directories(dir, ec);
    EMBER_CHECK(!ec, "--checkpoint-dir ", dir, ": cannot create the folder: ", ec.message());
  }
  EMBER_CHECK(std::filesystem::is_directory(dir, ec), "--checkpoint-dir ", dir, ": is not a folder");
  check_can_create_in("--checkpoint-dir", dir, dir);
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    const size_t tmp = name.find(".safetensors.tmp.");
    if (name.rfind("checkpoint-", 0) != 0 || tmp == std::string::npos) continue;
    const long pid = std::strtol(name.c_str() + tmp + std::strlen(".safetensors.tmp."), nullptr, 10);
    if (pid <= 0 || pid == ::getpid() || ::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH) continue;
    std::filesystem::remove(entry.path(), ec);
    if (announce && !ec) std::printf("removed %s, left by an interrupted save\n", entry.path().c_str());
  }
}

// --resume: a checkpoint folder (its newest checkpoint) or a file (a checkpoint, or a model file).
void check_resume(const std::string& path) {
  if (path.empty()) return;
  std::error_code ec;
  EMBER_CHECK(std::filesystem::exists(path, ec), "--resume ", path, ": no such file or folder");
  if (std::filesystem::is_directory(path, ec)) {
    EMBER_CHECK(!nn::latest_checkpoint(path).empty(), "--resume ", path,
                ": the folder holds no checkpoint (checkpoint-<epoch>.safetensors, written by --checkpoint-dir)");
  } else {
    EMBER_CHECK(::access(path.c_str(), R_OK) == 0, "--resume ", path, ": cannot read it: ", std::strerror(errno));
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Train an MLP or a small CNN on Fashion-MNIST with ember."};
  Config cfg;
  app.add_option("--model", cfg.model, "mlp or cnn")->check(CLI::IsMember({"mlp", "cnn"}))->capture_default_str();
  app.add_option("--epochs", cfg.epochs, "passes over the training set")
      ->check(integer_at_least(1, "a positive integer"))
      ->capture_default_str();
  app.add_option("--batch-size", cfg.batch_size, "images per step")
      ->check(integer_at_least(1, "a positive integer"))
      ->capture_default_str();
  app.add_option("--lr", cfg.lr, "peak learning rate (default: 0.002 for adamw, 0.05 for sgd), cosine-decayed")
      ->check(number_check(false, "a positive number"));
  app.add_option("--weight-decay", cfg.weight_decay, "weight decay (default: 0.01 for adamw, 5e-4 for sgd)")
      ->check(number_check(true, "a number >= 0"));
  app.add_option("--optimizer", cfg.optimizer, "sgd or adamw")->check(CLI::IsMember({"sgd", "adamw"}))->capture_default_str();
  app.add_option("--device", cfg.device,
                 "cpu, cuda, cuda:1, or a comma-separated list (cuda:0,cuda:1 or cpu:0,cpu:1) for data parallelism")
      ->capture_default_str();
  app.add_option("--data", cfg.data_dir, "folder with the Fashion-MNIST IDX files")->capture_default_str();
  app.add_option("--seed", cfg.seed, "random seed (initialisation, shuffling, dropout)")
      ->check(seed_check())
      ->capture_default_str();
  app.add_option("--metrics-json", cfg.metrics_json, "write the final metrics to this JSON file");
  app.add_option("--save", cfg.save_path, "save the trained model (safetensors)");
  app.add_option("--checkpoint-dir", cfg.checkpoint_dir,
                 "write a training checkpoint (model, optimizer, schedule, data order, RNG) to this folder after "
                 "every epoch: checkpoint-<epoch>.safetensors");
  app.add_option("--resume", cfg.resume_path,
                 "continue from the newest checkpoint in this folder (or from this checkpoint file) with the same "
                 "settings; a model file written by --save loads its weights only");
  app.add_flag("--ddp", cfg.ddp,
               "DistributedDataParallel, one process per rank: run under mpirun -np N (a world of one without a "
               "launcher); each rank trains on its shard, so the global batch is N x --batch-size");
  app.add_option("--limit", cfg.limit, "use only the first N training and N test images (quick checks)")
      ->check(integer_at_least(0, "an integer >= 0 (0: every image)"));
  CLI11_PARSE(app, argc, argv);

  try {
    std::vector<Device> devices = parse_devices(cfg.device);
    // Before anything slow (Note [Early checks of output paths]).
    check_output_file("--save", cfg.save_path);
    check_output_file("--metrics-json", cfg.metrics_json);
    prepare_checkpoint_dir(cfg.checkpoint_dir, true);
    check_resume(cfg.resume_path);
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
