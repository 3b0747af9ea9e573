// Tests of training checkpoints (nn::save_checkpoint / load_checkpoint): every part round trips, the file
// layout, errors naming the file, numbered checkpoint folders, generator states, and atomic writes: a child
// process killed with SIGKILL in the middle of writing a large checkpoint leaves the previous one loadable
// under the final name.
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "nn/optim/adam.h"
#include "nn/optim/lr_scheduler.h"
#include "nn/safetensors.h"
#include "nn/serialize.h"
#include "tests/testing.h"

namespace ember {
namespace {

namespace fs = std::filesystem;

class CheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "ember_checkpoint_XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  std::vector<std::string> listing() const {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(dir_)) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  }
  fs::path dir_;
};

nn::Sequential small_model() {
  return nn::Sequential(nn::Linear(4, 6), nn::BatchNorm1d(6), nn::ReLU(), nn::Linear(6, 2));
}

// A checkpoint with every part filled in, after two Adam steps.
nn::Checkpoint full_checkpoint(nn::Sequential& model) {
  optim::Adam opt(model->parameters(), optim::AdamOptions(0.01).betas({0.8, 0.95}));
  optim::StepLR sched(opt, 1, 0.5);
  for (int i = 0; i < 2; ++i) {
    opt.zero_grad();
    model->forward(randn({5, 4})).pow(2).sum().backward();
    opt.step();
    sched.step();
  }
  nn::Checkpoint ck;
  ck.model = model->state_dict();
  ck.optimizer = opt.state_dict();
  // Copies: the optimizer (and its tensors) go away with this function.
  for (auto& [i, st] : ck.optimizer->state)
    for (auto& [name, t] : st) t = t.clone();
  ck.scheduler = sched.state_dict();
  ck.data = {{"epoch", int64_t{3}}, {"batches", int64_t{7}}, {"shuffle", true}, {"seed", int64_t{-5}}};
  ck.epoch = 3;
  ck.step = 1234567890123;
  ck.rng = get_all_rng_states();
  ck.extra = {{"note", "ünïcode and \"quotes\""}, {"empty", ""}};
  return ck;
}

void expect_same_tensors(const nn::StateDict& a, const nn::StateDict& b) {
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [name, t] : a) {
    ASSERT_TRUE(b.contains(name)) << name;
    EXPECT_EQ(t.dtype(), b.at(name).dtype()) << name;
    EXPECT_TRUE(equal(t.cpu(), b.at(name).cpu())) << name;
  }
}

void expect_same_checkpoint(const nn::Checkpoint& a, const nn::Checkpoint& b) {
  expect_same_tensors(a.model, b.model);
  ASSERT_EQ(a.optimizer.has_value(), b.optimizer.has_value());
  if (a.optimizer) {
    ASSERT_EQ(a.optimizer->param_groups.size(), b.optimizer->param_groups.size());
    for (size_t g = 0; g < a.optimizer->param_groups.size(); ++g) {
      EXPECT_EQ(a.optimizer->param_groups[g].options, b.optimizer->param_groups[g].options);
      EXPECT_EQ(a.optimizer->param_groups[g].params, b.optimizer->param_groups[g].params);
    }
    ASSERT_EQ(a.optimizer->state.size(), b.optimizer->state.size());
    for (const auto& [i, st] : a.optimizer->state) {
      ASSERT_EQ(st.size(), b.optimizer->state.at(i).size());
      for (const auto& [name, t] : st) {
        const Tensor& u = b.optimizer->state.at(i).at(name);
        EXPECT_EQ(t.dtype(), u.dtype());
        EXPECT_TRUE(equal(t.cpu(), u.cpu())) << i << " " << name;
      }
    }
  }
  EXPECT_EQ(a.scheduler, b.scheduler);
  EXPECT_EQ(a.data, b.data);
  EXPECT_EQ(a.epoch, b.epoch);
  EXPECT_EQ(a.step, b.step);
  EXPECT_EQ(a.extra, b.extra);
  ASSERT_EQ(a.rng.cpu.defined(), b.rng.cpu.defined());
  if (a.rng.cpu.defined()) {
    EXPECT_TRUE(equal(a.rng.cpu, b.rng.cpu));
  }
  ASSERT_EQ(a.rng.cuda.size(), b.rng.cuda.size());
  for (size_t i = 0; i < a.rng.cuda.size(); ++i) EXPECT_TRUE(equal(a.rng.cuda[i], b.rng.cuda[i]));
}

// ---- round trip and layout ------------------------------------------------------------------------------

TEST_F(CheckpointTest, EveryPartRoundTrips) {
  manual_seed(3);
  nn::Sequential model = small_model();
  const nn::Checkpoint ck = full_checkpoint(model);
  nn::save_checkpoint(path("ck.safetensors"), ck);
  EXPECT_TRUE(nn::is_checkpoint(path("ck.safetensors")));
  const nn::Checkpoint back = nn::load_checkpoint(path("ck.safetensors"));
  expect_same_checkpoint(ck, back);

  // The model part loads into a fresh model.
  nn::Sequential other = small_model();
  other->load_state_dict(back.model);
  expect_same_tensors(model->state_dict(), other->state_dict());

  // Onto a logical CPU device.
  const nn::Checkpoint on_cpu1 = nn::load_checkpoint(path("ck.safetensors"), Device::cpu(1));
  EXPECT_EQ(on_cpu1.model.at("0.weight").device(), Device::cpu(1));
  EXPECT_EQ(on_cpu1.optimizer->state.at(0).at("exp_avg").device(), Device::cpu(1));
}

TEST_F(CheckpointTest, FileLayout) {
  manual_seed(3);
  nn::Sequential model = small_model();
  nn::save_checkpoint(path("ck.safetensors"), full_checkpoint(model));
  const safetensors::File f = safetensors::File::open(path("ck.safetensors"));
  std::vector<std::string> names;
  for (const auto& e : f.entries()) names.push_back(e.name);
  std::sort(names.begin(), names.end());
  std::vector<std::string> expected = {"model.0.bias",         "model.0.weight",
                                       "model.1.bias",         "model.1.num_batches_tracked",
                                       "model.1.running_mean", "model.1.running_var",
                                       "model.1.weight",       "model.3.bias",
                                       "model.3.weight",       "rng.cpu"};
  for (int i = 0; i < 6; ++i)
    for (const char* s : {"exp_avg", "exp_avg_sq", "step"})
      expected.push_back("optimizer.state." + std::to_string(i) + "." + s);
  for (int i = 0; i < (cuda::is_available() ? cuda::device_count() : 0); ++i)
    expected.push_back("rng.cuda." + std::to_string(i));
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(names, expected);
  EXPECT_EQ(f.find("optimizer.state.2.step")->dtype, "F64");
  EXPECT_EQ(f.find("optimizer.state.2.step")->shape, std::vector<int64_t>{});
  EXPECT_EQ(f.find("rng.cpu")->dtype, "U8");
  EXPECT_EQ(f.find("rng.cpu")->shape, std::vector<int64_t>{16});

  const auto& m = f.metadata();
  EXPECT_EQ(m.at("format"), "pt");
  EXPECT_EQ(m.at("ember.checkpoint"), "1");
  EXPECT_EQ(m.at("epoch"), "3");
  EXPECT_EQ(m.at("step"), "1234567890123");
  EXPECT_EQ(m.at("optimizer.param_groups"),
            R"([{"amsgrad":false,"betas":[0.8,0.95],"eps":1e-08,"initial_lr":0.01,"lr":0.0025,"maximize":false,)"
            R"("weight_decay":0.0,"params":[0,1,2,3,4,5]}])");
  EXPECT_EQ(m.at("scheduler"),
            R"({"_last_lr":[0.0025],"_step_count":3,"base_lrs":[0.01],"gamma":0.5,"last_epoch":2,"step_size":1})");
  EXPECT_EQ(m.at("data"), R"({"batches":7,"epoch":3,"seed":-5,"shuffle":true})");
  EXPECT_EQ(m.at("extra"), R"({"empty":"","note":"ünïcode and \"quotes\""})");
}

TEST_F(CheckpointTest, AbsentPartsStayAbsent) {
  nn::Checkpoint ck;
  ck.epoch = 1;
  nn::save_checkpoint(path("bare.safetensors"), ck);
  const nn::Checkpoint back = nn::load_checkpoint(path("bare.safetensors"));
  EXPECT_FALSE(back.optimizer.has_value());
  EXPECT_FALSE(back.scheduler.has_value());
  EXPECT_TRUE(back.model.empty());
  EXPECT_TRUE(back.data.empty());
  EXPECT_FALSE(back.rng.cpu.defined());
  EXPECT_EQ(back.epoch, 1);
}

// ---- errors ---------------------------------------------------------------------------------------------

TEST_F(CheckpointTest, ErrorsNameTheFile) {
  nn::Sequential model = small_model();
  nn::save(model, path("model.safetensors"));
  EXPECT_FALSE(nn::is_checkpoint(path("model.safetensors")));
  EXPECT_FALSE(nn::is_checkpoint(path("missing.safetensors")));
  EXPECT_EMBER_ERROR(nn::load_checkpoint(path("model.safetensors")), path("model.safetensors"),
                     "not a training checkpoint", "nn::load");
  EXPECT_EMBER_ERROR(nn::load_checkpoint(path("missing.safetensors")), path("missing.safetensors"));

  auto write = [&](const std::string& name, std::map<std::string, std::string> metadata,
                   const std::vector<std::string>& tensors = {}) {
    static const float zero = 0;
    std::vector<safetensors::TensorView> views;
    for (const std::string& t : tensors) views.push_back({t, "F32", {1}, &zero, 4});
    safetensors::save(path(name), views, metadata);
    return path(name);
  };
  const std::map<std::string, std::string> base = {{"ember.checkpoint", "1"}, {"epoch", "1"}, {"step", "2"}};
  auto with = [&](const std::string& k, const std::string& v) {
    auto m = base;
    m[k] = v;
    return m;
  };
  EXPECT_EMBER_ERROR(nn::load_checkpoint(write("v2", with("ember.checkpoint", "2"))), "version \"2\"");
  EXPECT_EMBER_ERROR(nn::load_checkpoint(write("epoch", with("epoch", "x1"))), "'epoch' should be an integer");
  EXPECT_EMBER_ERROR(nn::load_checkpoint(write("json", with("scheduler", "{not json"))),
                     "'scheduler' is not valid JSON");
  EXPECT_EMBER_ERROR(nn::load_checkpoint(write("obj", with("data", "[1, 2]"))), "data is not a JSON object");
  EXPECT_EMBER_ERROR(nn::load_checkpoint(write("val", with("data", R"({"a": "text"})"))), "data entry 'a'",
                     "expected a bool, a number or a list of numbers");
  EXPECT_EMBER_ERROR(nn::load_checkpoint(write("grp", with("optimizer.param_groups", R"([{"lr": 1}])"))),
                     "optimizer param group 0 is not an object with a \"params\" list");
  EXPECT_EMBER_ERROR(nn::load_checkpoint(write("extra", with("extra", R"({"a": 1})"))),
                     "extra entry 'a' is not a string");
  EXPECT_EMBER_ERROR(nn::load_checkpoint(write("stray", base, {"weights"})), "unexpected tensor 'weights'");
  EXPECT_EMBER_ERROR(nn::load_checkpoint(write("nogroups", base, {"optimizer.state.0.exp_avg"})),
                     "no optimizer.param_groups");
  EXPECT_EMBER_ERROR(
      nn::load_checkpoint(write("badindex", with("optimizer.param_groups", "[]"), {"optimizer.state.x.exp_avg"})),
      "'optimizer.state.x.exp_avg' is not optimizer.state.<index>.<name>");
  EXPECT_EMBER_ERROR(nn::load_checkpoint(write("gap", base, {"rng.cuda.1"})), "rng.cuda.0 is missing");

  // Values JSON cannot hold are refused when saving, naming the entry; nothing is written.
  nn::Checkpoint ck;
  ck.scheduler = StateValueMap{{"eta_min", std::nan("")}};
  EXPECT_EMBER_ERROR(nn::save_checkpoint(path("nan.safetensors"), ck), "'eta_min'", "JSON cannot hold");
  EXPECT_FALSE(fs::exists(path("nan.safetensors")));
  ck = nn::Checkpoint();
  ck.model.insert("w", Tensor());
  EXPECT_EMBER_ERROR(nn::save_checkpoint(path("undef.safetensors"), ck), "model.w", "undefined");
}

// ---- numbered checkpoints in a folder --------------------------------------------------------------------

TEST_F(CheckpointTest, LatestCheckpointInAFolder) {
  EXPECT_EQ(nn::checkpoint_path(dir_.string(), 7), path("checkpoint-00000007.safetensors"));
  EXPECT_EQ(nn::checkpoint_path(dir_.string() + "/", 123456789), path("checkpoint-123456789.safetensors"));
  EXPECT_EQ(nn::latest_checkpoint(dir_.string()), "");
  for (const char* name :
       {"checkpoint-00000002.safetensors", "checkpoint-00000010.safetensors", "checkpoint-3.safetensors",
        "checkpoint-00000011.safetensors.tmp.123.abcdef", "checkpoint-x.safetensors", "checkpoint-.safetensors",
        "other-00000099.safetensors", "model.safetensors"})
    std::ofstream(path(name)) << "x";
  EXPECT_EQ(nn::latest_checkpoint(dir_.string()), path("checkpoint-00000010.safetensors"));
  EXPECT_EMBER_ERROR(nn::latest_checkpoint(path("nope")), "cannot list the folder", path("nope"));
  EXPECT_EMBER_ERROR(nn::checkpoint_path("d", -1), "must be >= 0");
}

// ---- generator states ------------------------------------------------------------------------------------

TEST(GeneratorState, RestoringAStateRepeatsTheDraws) {
  manual_seed(11);
  (void)randn({10});
  const Tensor state = get_rng_state();
  EXPECT_EQ(state.dtype(), kUInt8);
  EXPECT_EQ(state.sizes(), std::vector<int64_t>{16});
  const auto* bytes = static_cast<const uint8_t*>(state.raw_data());
  EXPECT_EQ(bytes[0], 11);  // the seed, little-endian
  for (int i = 1; i < 8; ++i) EXPECT_EQ(bytes[i], 0);
  const Tensor a = randn({1000});
  const Tensor b = rand({7, 3});
  const Tensor drop = nn::functional::dropout(ones({64}), 0.5, true);
  set_rng_state(state);
  EXPECT_TRUE(equal(randn({1000}), a));
  EXPECT_TRUE(equal(rand({7, 3}), b));
  EXPECT_TRUE(equal(nn::functional::dropout(ones({64}), 0.5, true), drop));

  // Every generator at once (the host's; the GPUs' where there are some).
  const RngStates all = get_all_rng_states();
  EXPECT_EQ(static_cast<int>(all.cuda.size()), cuda::is_available() ? cuda::device_count() : 0);
  const Tensor c = randn({5});
  set_all_rng_states(all);
  EXPECT_TRUE(equal(randn({5}), c));

  EXPECT_EMBER_ERROR(set_rng_state(zeros({16})), "Generator::set_state", "uint8 tensor of 16 bytes", "float32");
  EXPECT_EMBER_ERROR(set_rng_state(zeros({8}, kUInt8)), "shape [8]");
  EXPECT_EMBER_ERROR(set_rng_state(Tensor()), "undefined");
  set_rng_state(state);
  EXPECT_TRUE(equal(get_rng_state(), state));
}

TEST(GeneratorState, CudaGenerators_CUDA) {
  EMBER_REQUIRE_CUDA();
  manual_seed(5);
  const Tensor state = cuda::get_rng_state(0);
  const Tensor a = randn({100}, TensorOptions().device(Device::cuda(0)));
  cuda::set_rng_state(state, 0);
  EXPECT_TRUE(equal(randn({100}, TensorOptions().device(Device::cuda(0))).cpu(), a.cpu()));
  EXPECT_EMBER_ERROR(cuda::set_rng_state(state, 99), "cuda:99");
}

TEST(GeneratorState, CudaCallsWithoutAGpuThrow) {
  if (cuda::is_available()) GTEST_SKIP() << "there is a GPU";
  EXPECT_TRUE(cuda::get_rng_state_all().empty());
  EXPECT_ANY_THROW(cuda::get_rng_state(0));
  EXPECT_EMBER_ERROR(cuda::set_rng_state_all({get_rng_state()}), "1 state(s) for 0 visible GPU(s)");
}

// ---- atomic writes under SIGKILL ----------------------------------------------------------------------------

// The child's side of the kill tests: the hook tells the parent (through a pipe) how far the save got, then
// waits to be killed.
int g_report_fd = -1;
bool g_stop_at_end = false;

void report_and_wait(const std::string&, uint64_t written, uint64_t total) {
  const bool stop = g_stop_at_end ? written == total : written * 2 >= total && written < total;
  if (!stop) return;
  const uint64_t msg[2] = {written, total};
  (void)!::write(g_report_fd, msg, sizeof msg);
  for (;;) ::pause();
}

// A checkpoint of about 48 MB in six tensors, its values offset by `value`.
nn::Checkpoint large_checkpoint(float value) {
  nn::Checkpoint ck;
  for (int i = 0; i < 6; ++i)
    ck.model.insert("layer" + std::to_string(i), full({2 << 20}, value + static_cast<float>(i)));
  ck.epoch = static_cast<int64_t>(value);
  return ck;
}

// Forks a child that saves `ck` to `path` with the hook set, waits for its report, kills it with SIGKILL.
// Returns the bytes the child had written when killed.
uint64_t kill_child_mid_save(const std::string& path, const nn::Checkpoint& ck, bool stop_at_end) {
  int fds[2];
  EXPECT_EQ(::pipe(fds), 0);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(fds[0]);
    g_report_fd = fds[1];
    g_stop_at_end = stop_at_end;
    safetensors::hooks::set_save_progress_hook(&report_and_wait);
    try {
      nn::save_checkpoint(path, ck);
    } catch (...) {
      ::_exit(2);
    }
    ::_exit(3);  // the hook should have stopped it
  }
  ::close(fds[1]);
  uint64_t msg[2] = {0, 0};
  pollfd p{fds[0], POLLIN, 0};
  EXPECT_EQ(::poll(&p, 1, 60000), 1) << "the child did not report";
  EXPECT_EQ(::read(fds[0], msg, sizeof msg), static_cast<ssize_t>(sizeof msg));
  ::close(fds[0]);
  EXPECT_EQ(::kill(pid, SIGKILL), 0);
  int status = 0;
  EXPECT_EQ(::waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "status " << status;
  EXPECT_GT(msg[1], 40u << 20);
  return msg[0];
}

TEST_F(CheckpointTest, ProcessKilledMidSaveLeavesThePreviousCheckpoint) {
  const std::string final_path = path("checkpoint-00000001.safetensors");
  const nn::Checkpoint previous = large_checkpoint(1);
  nn::save_checkpoint(final_path, previous);
  const auto previous_size = fs::file_size(final_path);

  for (bool stop_at_end : {false, true}) {
    SCOPED_TRACE(stop_at_end ? "killed after every byte was written, before the rename" : "killed half-way");
    const uint64_t written = kill_child_mid_save(final_path, large_checkpoint(100), stop_at_end);

    // The final name still holds the previous checkpoint, whole.
    EXPECT_EQ(fs::file_size(final_path), previous_size);
    expect_same_checkpoint(previous, nn::load_checkpoint(final_path));
    // The partial file lies under a temporary name only, which the folder's reader ignores.
    const std::vector<std::string> names = listing();
    ASSERT_EQ(names.size(), 2u);
    EXPECT_EQ(names[0], "checkpoint-00000001.safetensors");
    EXPECT_EQ(names[1].rfind("checkpoint-00000001.safetensors.tmp.", 0), 0u) << names[1];
    EXPECT_EQ(fs::file_size(dir_ / names[1]), written);
    EXPECT_EQ(nn::latest_checkpoint(dir_.string()), final_path);
    if (!stop_at_end) {
      EXPECT_FALSE(nn::is_checkpoint((dir_ / names[1]).string()));  // cut short: not a valid file
    }
    fs::remove(dir_ / names[1]);
  }
}

// No hook: children saving one checkpoint after another are killed at arbitrary moments; whatever the moment,
// the final name holds one of the complete checkpoints.
TEST_F(CheckpointTest, KilledAtArbitraryMomentsTheFileIsAlwaysWhole) {
  const std::string final_path = path("ck.safetensors");
  std::vector<nn::Checkpoint> versions;
  for (float v : {1.f, 2.f, 3.f}) versions.push_back(large_checkpoint(v));
  nn::save_checkpoint(final_path, versions[0]);
  std::mt19937 rng(1234);
  for (int round = 0; round < 6; ++round) {
    const pid_t pid = ::fork();
    if (pid == 0) {
      for (int i = 1;; ++i) {
        try {
          nn::save_checkpoint(final_path, versions[static_cast<size_t>(i % 3)]);
        } catch (...) {
          ::_exit(2);
        }
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(std::uniform_int_distribution<int>(5, 150)(rng)));
    ASSERT_EQ(::kill(pid, SIGKILL), 0);
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFSIGNALED(status)) << "the saving child exited with " << status;
    const nn::Checkpoint now = nn::load_checkpoint(final_path);
    const int64_t v = now.epoch;
    ASSERT_TRUE(v >= 1 && v <= 3) << v;
    expect_same_checkpoint(versions[static_cast<size_t>(v - 1)], now);
    for (const std::string& name : listing())
      if (name != "ck.safetensors") fs::remove(dir_ / name);  // a killed save's temporary file
  }
}

}  // namespace
}  // namespace ember
