// Tests of optimizer and LR-scheduler state dicts: PyTorch's layout, round trips, training continued from a
// loaded state equal to uninterrupted training bit for bit (float32 and float64, through a checkpoint file
// too), and load errors that name what does not match and change nothing.
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "nn/optim/adam.h"
#include "nn/optim/lr_scheduler.h"
#include "nn/optim/optimizer.h"
#include "nn/optim/sgd.h"
#include "nn/serialize.h"
#include "tests/testing.h"

namespace ember {
namespace {

namespace fs = std::filesystem;

// ---- a small regression model, trained on inputs that depend on the step only -------------------------

nn::Sequential make_model(DType dtype, Device device, uint64_t seed) {
  manual_seed(seed);
  nn::Sequential m(nn::Linear(5, 7), nn::Tanh(), nn::Linear(7, 3));
  m->to(dtype);
  m->to(device);
  return m;
}

enum class Kind { SgdNesterovStepLR, SgdPlainStepLR, AdamAmsgradCosine, AdamWCosineTwoGroups };

const char* kind_name(Kind k) {
  switch (k) {
    case Kind::SgdNesterovStepLR: return "SgdNesterovStepLR";
    case Kind::SgdPlainStepLR: return "SgdPlainStepLR";
    case Kind::AdamAmsgradCosine: return "AdamAmsgradCosine";
    case Kind::AdamWCosineTwoGroups: return "AdamWCosineTwoGroups";
  }
  return "?";
}

struct Training {
  nn::Sequential model{nullptr};
  std::unique_ptr<optim::Optimizer> opt;
  std::unique_ptr<optim::LRScheduler> sched;
};

Training make_run(Kind kind, DType dtype, Device device, uint64_t seed) {
  Training r;
  r.model = make_model(dtype, device, seed);
  std::vector<Tensor> params = r.model->parameters();
  switch (kind) {
    case Kind::SgdNesterovStepLR:
      r.opt =
          std::make_unique<optim::SGD>(params, optim::SGDOptions(0.1).momentum(0.9).nesterov(true).weight_decay(1e-3));
      r.sched = std::make_unique<optim::StepLR>(*r.opt, 2, 0.5);
      break;
    case Kind::SgdPlainStepLR:
      r.opt = std::make_unique<optim::SGD>(params, optim::SGDOptions(0.05).dampening(0.1));
      r.sched = std::make_unique<optim::StepLR>(*r.opt, 3, 0.7);
      break;
    case Kind::AdamAmsgradCosine:
      r.opt = std::make_unique<optim::Adam>(params, optim::AdamOptions(0.02).amsgrad(true).weight_decay(0.01));
      r.sched = std::make_unique<optim::CosineAnnealingLR>(*r.opt, 5, 1e-4);
      break;
    case Kind::AdamWCosineTwoGroups: {
      // Two groups with their own options; T_max 3 so that the schedule runs past it.
      std::vector<optim::OptimizerParamGroup> groups;
      groups.emplace_back(std::vector<Tensor>{params[0], params[1]});
      groups.emplace_back(std::vector<Tensor>{params[2], params[3]},
                          std::make_unique<optim::AdamWOptions>(optim::AdamWOptions(0.005).betas({0.8, 0.99})));
      r.opt = std::make_unique<optim::AdamW>(std::move(groups), optim::AdamWOptions(0.01).weight_decay(0.05));
      r.sched = std::make_unique<optim::CosineAnnealingLR>(*r.opt, 3);
      break;
    }
  }
  return r;
}

// Steps [from, to): the inputs and targets are functions of the step, so every run sees the same data.
void train(Training& r, int from, int to) {
  const Device device = r.model->parameters()[0].device();
  const DType dtype = r.model->parameters()[0].dtype();
  for (int step = from; step < to; ++step) {
    Tensor base = arange(0, 20, 1, TensorOptions(kFloat64)).view({4, 5}) * 0.37 + step;
    Tensor x = base.sin().to(dtype).to(device);
    Tensor y = (base.narrow(1, 0, 3) * 1.3).cos().to(dtype).to(device);
    r.opt->zero_grad();
    Tensor loss = (r.model->forward(x) - y).pow(2).mean();
    loss.backward();
    r.opt->step();
    r.sched->step();
  }
}

// Parameters, optimizer state tensors and lrs equal bit for bit.
void expect_same_training_state(Training& a, Training& b) {
  const std::vector<Tensor> pa = a.model->parameters(), pb = b.model->parameters();
  ASSERT_EQ(pa.size(), pb.size());
  for (size_t i = 0; i < pa.size(); ++i) EXPECT_TRUE(equal(pa[i].cpu(), pb[i].cpu())) << "parameter " << i;
  const optim::OptimizerStateDict sa = a.opt->state_dict(), sb = b.opt->state_dict();
  ASSERT_EQ(sa.state.size(), sb.state.size());
  for (const auto& [index, entries] : sa.state) {
    ASSERT_TRUE(sb.state.count(index)) << index;
    ASSERT_EQ(entries.size(), sb.state.at(index).size()) << index;
    for (const auto& [name, t] : entries)
      EXPECT_TRUE(equal(t.cpu(), sb.state.at(index).at(name).cpu())) << "state " << index << " " << name;
  }
  ASSERT_EQ(sa.param_groups.size(), sb.param_groups.size());
  for (size_t g = 0; g < sa.param_groups.size(); ++g) EXPECT_EQ(sa.param_groups[g].options, sb.param_groups[g].options);
  EXPECT_EQ(a.sched->get_last_lr(), b.sched->get_last_lr());
  EXPECT_EQ(a.sched->state_dict(), b.sched->state_dict());
}

struct ResumeCase {
  Kind kind;
  DType dtype;
  Device device;
};

std::string resume_case_name(const ::testing::TestParamInfo<ResumeCase>& info) {
  return std::string(kind_name(info.param.kind)) + "_" + dtype_name(info.param.dtype) +
         (info.param.device.is_cuda() ? "_CUDA" : "_CPU");
}

class OptimResumeTest : public ::testing::TestWithParam<ResumeCase> {
 protected:
  void SetUp() override {
    if (GetParam().device.is_cuda() && !cuda::is_available()) GTEST_SKIP() << testing::cuda_skip_reason();
    std::string tmpl = (fs::temp_directory_path() / "ember_optim_state_XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    if (!dir_.empty()) fs::remove_all(dir_);
  }
  fs::path dir_;
};

// Ten uninterrupted steps against four steps, a state dict (in memory, and through a checkpoint file), a
// fresh run started from another initialisation that loads it, and six more steps.
TEST_P(OptimResumeTest, ContinuedTrainingEqualsUninterruptedBitForBit) {
  const auto [kind, dtype, device] = GetParam();
  Training full = make_run(kind, dtype, device, 1);
  train(full, 0, 10);

  Training first = make_run(kind, dtype, device, 1);
  train(first, 0, 4);
  nn::Checkpoint ck;
  ck.model = first.model->state_dict();
  ck.optimizer = first.opt->state_dict();
  ck.scheduler = first.sched->state_dict();
  const std::string file = (dir_ / "ck.safetensors").string();
  nn::save_checkpoint(file, ck);

  // In memory: the state dict's tensors are the optimizer's own; loading copies them.
  Training in_memory = make_run(kind, dtype, device, 2);
  in_memory.model->load_state_dict(ck.model);
  in_memory.opt->load_state_dict(*ck.optimizer);
  in_memory.sched->load_state_dict(*ck.scheduler);
  train(in_memory, 4, 10);
  {
    SCOPED_TRACE("loaded in memory");
    expect_same_training_state(full, in_memory);
  }
  // The source of the state goes on unaffected by the copy's steps.
  train(first, 4, 10);
  {
    SCOPED_TRACE("the run the state came from");
    expect_same_training_state(full, first);
  }

  const nn::Checkpoint loaded = nn::load_checkpoint(file);
  Training from_file = make_run(kind, dtype, device, 3);
  from_file.model->load_state_dict(loaded.model);
  from_file.opt->load_state_dict(*loaded.optimizer);
  from_file.sched->load_state_dict(*loaded.scheduler);
  train(from_file, 4, 10);
  SCOPED_TRACE("loaded from a checkpoint file");
  expect_same_training_state(full, from_file);
}

std::vector<ResumeCase> resume_cases() {
  std::vector<ResumeCase> out;
  for (Device device : testing::test_devices())
    for (DType dtype : {kFloat32, kFloat64})
      for (Kind kind :
           {Kind::SgdNesterovStepLR, Kind::SgdPlainStepLR, Kind::AdamAmsgradCosine, Kind::AdamWCosineTwoGroups})
        out.push_back({kind, dtype, device});
  return out;
}

INSTANTIATE_TEST_SUITE_P(Optimizers, OptimResumeTest, ::testing::ValuesIn(resume_cases()), resume_case_name);

// ---- PyTorch's layout ----------------------------------------------------------------------------------

TEST(OptimStateDict, AdamLayoutIsPyTorchs) {
  Training r = make_run(Kind::AdamWCosineTwoGroups, kFloat32, Device::cpu(), 1);
  // Before any step: groups, no state.
  optim::OptimizerStateDict sd = r.opt->state_dict();
  EXPECT_TRUE(sd.state.empty());
  ASSERT_EQ(sd.param_groups.size(), 2u);
  EXPECT_EQ(sd.param_groups[0].params, (std::vector<int64_t>{0, 1}));
  EXPECT_EQ(sd.param_groups[1].params, (std::vector<int64_t>{2, 3}));
  const StateValueMap& g1 = sd.param_groups[1].options;
  std::vector<std::string> keys;
  for (const auto& [k, v] : g1) keys.push_back(k);
  EXPECT_EQ(keys,
            (std::vector<std::string>{"amsgrad", "betas", "eps", "initial_lr", "lr", "maximize", "weight_decay"}));
  EXPECT_EQ(std::get<std::vector<double>>(g1.at("betas")), (std::vector<double>{0.8, 0.99}));
  EXPECT_EQ(std::get<double>(g1.at("initial_lr")), 0.005);
  EXPECT_EQ(std::get<double>(g1.at("weight_decay")), 1e-2);  // AdamWOptions(0.005)'s own default
  EXPECT_EQ(std::get<double>(sd.param_groups[0].options.at("weight_decay")), 0.05);
  EXPECT_EQ(std::get<bool>(g1.at("amsgrad")), false);

  train(r, 0, 3);
  sd = r.opt->state_dict();
  ASSERT_EQ(sd.state.size(), 4u);
  for (int64_t i = 0; i < 4; ++i) {
    const auto& st = sd.state.at(i);
    std::vector<std::string> names;
    for (const auto& [k, v] : st) names.push_back(k);
    EXPECT_EQ(names, (std::vector<std::string>{"exp_avg", "exp_avg_sq", "step"}));
    EXPECT_EQ(st.at("step").dim(), 0);
    EXPECT_EQ(st.at("step").item<double>(), 3.0);
    EXPECT_EQ(st.at("exp_avg").sizes(), r.model->parameters()[static_cast<size_t>(i)].sizes());
    // The optimizer's own tensors, as PyTorch's state_dict() returns them.
    EXPECT_TRUE(st.at("exp_avg").is_alias_of(
        static_cast<optim::AdamParamState*>(r.opt->state(r.model->parameters()[static_cast<size_t>(i)]))->exp_avg));
  }

  const StateValueMap s = r.sched->state_dict();
  std::vector<std::string> skeys;
  for (const auto& [k, v] : s) skeys.push_back(k);
  EXPECT_EQ(skeys, (std::vector<std::string>{"T_max", "_last_lr", "_step_count", "base_lrs", "eta_min", "last_epoch"}));
  EXPECT_EQ(std::get<int64_t>(s.at("last_epoch")), 3);
  EXPECT_EQ(std::get<int64_t>(s.at("_step_count")), 4);  // the constructor's step and three more
  EXPECT_EQ(std::get<std::vector<double>>(s.at("base_lrs")), (std::vector<double>{0.01, 0.005}));
}

TEST(OptimStateDict, SgdLayoutIsPyTorchs) {
  Training r = make_run(Kind::SgdNesterovStepLR, kFloat64, Device::cpu(), 1);
  train(r, 0, 2);
  optim::OptimizerStateDict sd = r.opt->state_dict();
  ASSERT_EQ(sd.state.size(), 4u);
  for (const auto& [i, st] : sd.state) {
    ASSERT_EQ(st.size(), 1u);
    EXPECT_EQ(st.at("momentum_buffer").dtype(), kFloat64);
  }
  std::vector<std::string> keys;
  for (const auto& [k, v] : sd.param_groups[0].options) keys.push_back(k);
  EXPECT_EQ(keys, (std::vector<std::string>{"dampening", "initial_lr", "lr", "maximize", "momentum", "nesterov",
                                            "weight_decay"}));
  EXPECT_EQ(std::get<bool>(sd.param_groups[0].options.at("nesterov")), true);
  EXPECT_EQ(std::get<double>(sd.param_groups[0].options.at("lr")), 0.05);  // StepLR halved it after 2 steps

  // Without momentum SGD keeps no state.
  Training plain = make_run(Kind::SgdPlainStepLR, kFloat32, Device::cpu(), 1);
  train(plain, 0, 2);
  EXPECT_TRUE(plain.opt->state_dict().state.empty());
  const StateValueMap s = plain.sched->state_dict();
  EXPECT_EQ(std::get<int64_t>(s.at("step_size")), 3);
  EXPECT_EQ(std::get<double>(s.at("gamma")), 0.7);
}

TEST(OptimStateDict, StateIsCopiedOntoTheParametersDtype) {
  Training r32 = make_run(Kind::AdamAmsgradCosine, kFloat32, Device::cpu(), 1);
  train(r32, 0, 2);
  Training r64 = make_run(Kind::AdamAmsgradCosine, kFloat64, Device::cpu(), 1);
  r64.opt->load_state_dict(r32.opt->state_dict());
  const optim::OptimizerStateDict sd = r64.opt->state_dict();
  for (const auto& [i, st] : sd.state) {
    EXPECT_EQ(st.at("exp_avg").dtype(), kFloat64);
    EXPECT_EQ(st.at("max_exp_avg_sq").dtype(), kFloat64);
    EXPECT_EQ(st.at("step").item<double>(), 2.0);
  }
  train(r64, 2, 3);  // and steps on
}

TEST(OptimStateDict, LoadsOntoALogicalCpuDevice) {
  Training a = make_run(Kind::SgdNesterovStepLR, kFloat32, Device::cpu(), 1);
  train(a, 0, 2);
  Training b = make_run(Kind::SgdNesterovStepLR, kFloat32, Device::cpu(1), 1);
  b.opt->load_state_dict(a.opt->state_dict());
  for (const auto& [i, st] : b.opt->state_dict().state) EXPECT_EQ(st.at("momentum_buffer").device(), Device::cpu(1));
  train(b, 2, 3);
}

// ---- errors ---------------------------------------------------------------------------------------------

TEST(OptimStateDict, LoadErrorsNameTheMismatchAndChangeNothing) {
  Training src = make_run(Kind::AdamAmsgradCosine, kFloat32, Device::cpu(), 1);
  train(src, 0, 2);
  const optim::OptimizerStateDict good = src.opt->state_dict();

  Training dst = make_run(Kind::AdamAmsgradCosine, kFloat32, Device::cpu(), 2);
  train(dst, 0, 1);
  const optim::OptimizerStateDict before = dst.opt->state_dict();
  std::vector<Tensor> before_tensors;
  for (const auto& [i, st] : before.state)
    for (const auto& [k, t] : st) before_tensors.push_back(t.clone());
  auto unchanged = [&] {
    const optim::OptimizerStateDict now = dst.opt->state_dict();
    ASSERT_EQ(now.param_groups[0].options, before.param_groups[0].options);
    size_t n = 0;
    for (const auto& [i, st] : now.state)
      for (const auto& [k, t] : st) EXPECT_TRUE(equal(t, before_tensors[n++])) << i << " " << k;
    EXPECT_EQ(n, before_tensors.size());
  };

  optim::OptimizerStateDict sd = good;
  sd.param_groups.push_back(sd.param_groups[0]);
  EXPECT_EMBER_ERROR(dst.opt->load_state_dict(sd), "Adam: load_state_dict", "2 param group(s)", "optimizer has 1");
  unchanged();

  sd = good;
  sd.param_groups[0].params.pop_back();
  EXPECT_EMBER_ERROR(dst.opt->load_state_dict(sd), "param group 0 has 3 parameter(s) in the state dict but 4");
  unchanged();

  sd = good;
  sd.state.at(1).at("exp_avg") = zeros({7, 4});
  EXPECT_EMBER_ERROR(dst.opt->load_state_dict(sd), "state of parameter 1", "shape [7]", "'exp_avg' has shape [7, 4]");
  unchanged();

  sd = good;
  sd.state.at(0).erase("exp_avg_sq");
  EXPECT_EMBER_ERROR(dst.opt->load_state_dict(sd), "state of parameter 0", "'exp_avg_sq' is missing");
  unchanged();

  sd = good;
  sd.state.at(0)["momentum_buffer"] = zeros({7, 5});
  EXPECT_EMBER_ERROR(dst.opt->load_state_dict(sd), "unexpected entries 'momentum_buffer'");
  unchanged();

  sd = good;
  sd.state.at(2).at("step") = full({}, 1.5, kFloat64);
  EXPECT_EMBER_ERROR(dst.opt->load_state_dict(sd), "'step' should hold a whole number", "1.5");
  unchanged();

  sd = good;
  sd.state[9]["step"] = full({}, 1.0, kFloat64);
  EXPECT_EMBER_ERROR(dst.opt->load_state_dict(sd), "state for parameter index 9, which no param group lists");
  unchanged();

  sd = good;
  sd.param_groups[0].options["momentum"] = 0.9;
  EXPECT_EMBER_ERROR(dst.opt->load_state_dict(sd), "param group 0", "unexpected entries 'momentum'");
  unchanged();

  sd = good;
  sd.param_groups[0].options.erase("eps");
  EXPECT_EMBER_ERROR(dst.opt->load_state_dict(sd), "param group 0", "'eps' is missing");
  unchanged();

  sd = good;
  sd.param_groups[0].options["betas"] = std::vector<double>{0.9};
  EXPECT_EMBER_ERROR(dst.opt->load_state_dict(sd), "'betas' should hold 2 numbers, got 1");
  unchanged();

  sd = good;
  sd.param_groups[0].options["amsgrad"] = int64_t{1};
  EXPECT_EMBER_ERROR(dst.opt->load_state_dict(sd), "'amsgrad' should be a bool, got 1");
  unchanged();

  sd = good;
  sd.param_groups[0].options["lr"] = -1.0;
  EXPECT_EMBER_ERROR(dst.opt->load_state_dict(sd), "invalid learning rate", "-1");
  unchanged();

  sd = good;
  sd.param_groups[0].params = {0, 1, 1, 3};
  EXPECT_EMBER_ERROR(dst.opt->load_state_dict(sd), "index 1 appears more than once");
  unchanged();

  // Another optimizer's state.
  Training sgd = make_run(Kind::SgdNesterovStepLR, kFloat32, Device::cpu(), 1);
  train(sgd, 0, 1);
  EXPECT_EMBER_ERROR(dst.opt->load_state_dict(sgd.opt->state_dict()), "Adam: load_state_dict", "param group 0");
  unchanged();

  // The good one loads.
  dst.opt->load_state_dict(good);
}

TEST(OptimStateDict, SchedulerLoadErrors) {
  Training a = make_run(Kind::AdamWCosineTwoGroups, kFloat32, Device::cpu(), 1);
  train(a, 0, 2);
  const StateValueMap good = a.sched->state_dict();
  Training b = make_run(Kind::AdamWCosineTwoGroups, kFloat32, Device::cpu(), 1);
  const StateValueMap before = b.sched->state_dict();

  StateValueMap s = good;
  s["base_lrs"] = std::vector<double>{0.1};
  EXPECT_EMBER_ERROR(b.sched->load_state_dict(s), "base_lrs holds 1 learning rate(s)", "2 param group(s)");
  s = good;
  s["gamma"] = 0.5;
  EXPECT_EMBER_ERROR(b.sched->load_state_dict(s), "unexpected entries 'gamma'");
  s = good;
  s.erase("T_max");
  EXPECT_EMBER_ERROR(b.sched->load_state_dict(s), "'T_max' is missing");
  s = good;
  s["T_max"] = int64_t{0};
  EXPECT_EMBER_ERROR(b.sched->load_state_dict(s), "T_max must be positive");
  s = good;
  s["last_epoch"] = 2.5;
  EXPECT_EMBER_ERROR(b.sched->load_state_dict(s), "'last_epoch' should be an integer, got 2.5");
  EXPECT_EQ(b.sched->state_dict(), before);

  // PyTorch's extra keys are accepted.
  s = good;
  s["verbose"] = false;
  s["_get_lr_called_within_step"] = false;
  b.sched->load_state_dict(s);
  EXPECT_EQ(b.sched->state_dict(), good);
}

TEST(OptimStateDict, StateValueReader) {
  StateValueMap m{{"b", true}, {"i", int64_t{3}}, {"d", 0.5}, {"l", std::vector<double>{1, 2}}};
  StateReader r(m, "here");
  EXPECT_EQ(r.number("i"), 3.0);  // an integer reads as a number
  EXPECT_EMBER_ERROR(r.integer("d"), "here: the entry 'd' should be an integer, got 0.5");
  EXPECT_EMBER_ERROR(r.boolean("missing"), "here: the entry 'missing' is missing");
  EXPECT_EMBER_ERROR(r.finish("i and d"), "unexpected entries 'b', 'l'");
  EXPECT_EQ(state_value_str(m.at("l")), "[1, 2]");
}

}  // namespace
}  // namespace ember
