// Tests of the DataLoader's state_dict (the data order a training checkpoint keeps) and of data files that
// turn unreadable during a run: errors name the file, whether they surface when a dataset is (re)loaded or
// on the loader's prefetch thread.
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "data/dataloader.h"
#include "data/idx.h"
#include "tests/testing.h"

namespace ember::data {
namespace {

namespace fs = std::filesystem;

std::shared_ptr<TensorDataset> numbered(int64_t n) {
  return std::make_shared<TensorDataset>(arange(0, n, 1, kFloat32).unsqueeze(1), arange(0, n, 1));
}

// The targets of every batch the loader hands out in its next `epochs` epochs (or from where it stands).
std::vector<std::vector<int64_t>> take(DataLoader& loader, int epochs) {
  std::vector<std::vector<int64_t>> out;
  for (int e = 0; e < epochs; ++e)
    for (const Batch& b : loader) out.push_back(b.target.to_vector<int64_t>());
  return out;
}

// The first `batches` batches of the loader's next epoch, and its state_dict taken inside the loop body
// after the last of them, where a training loop saves a checkpoint (then stops: the run is killed).
std::vector<std::vector<int64_t>> take_then_stop(DataLoader& loader, int batches, StateValueMap& state) {
  std::vector<std::vector<int64_t>> out;
  for (const Batch& b : loader) {
    out.push_back(b.target.to_vector<int64_t>());
    if (static_cast<int>(out.size()) == batches) {
      state = loader.state_dict();
      break;
    }
  }
  return out;
}

TEST(DataLoaderState, ResumesInTheMiddleOfAnEpochAndAfterOne) {
  for (int prefetch : {0, 2}) {
    SCOPED_TRACE(prefetch);
    auto options = DataLoaderOptions(3).shuffle(true).seed(7).prefetch(prefetch);
    DataLoader full(numbered(20), options);
    const auto expected = take(full, 4);  // 4 epochs of 7 batches

    // Stopped after epoch 1 and 2 batches of epoch 2.
    DataLoader first(numbered(20), options);
    auto got = take(first, 1);
    StateValueMap state;
    const auto part = take_then_stop(first, 2, state);
    got.insert(got.end(), part.begin(), part.end());
    EXPECT_EQ(std::get<int64_t>(state.at("epoch")), 2);
    EXPECT_EQ(std::get<int64_t>(state.at("batches")), 2);
    EXPECT_EQ(std::get<int64_t>(state.at("num_examples")), 20);

    DataLoader resumed(numbered(20), options);
    resumed.load_state_dict(state);
    const auto rest = take(resumed, 3);  // the rest of epoch 2, then epochs 3 and 4
    got.insert(got.end(), rest.begin(), rest.end());
    EXPECT_EQ(got, expected);

    // At an epoch's end: the next begin() starts the following epoch.
    DataLoader one(numbered(20), options);
    (void)take(one, 2);
    DataLoader after(numbered(20), options);
    after.load_state_dict(one.state_dict());
    EXPECT_EQ(after.epoch(), 2);
    const auto epochs_3_4 = take(after, 2);
    EXPECT_EQ(epochs_3_4, std::vector<std::vector<int64_t>>(expected.begin() + 14, expected.end()));

    // A fresh loader's state starts at the beginning.
    DataLoader fresh(numbered(20), options), again(numbered(20), options);
    again.load_state_dict(fresh.state_dict());
    EXPECT_EQ(take(again, 1), std::vector<std::vector<int64_t>>(expected.begin(), expected.begin() + 7));
  }
}

TEST(DataLoaderState, ShardedLoaders) {
  auto options = DataLoaderOptions(2).seed(3).num_replicas(3).rank(1);
  DataLoader full(numbered(17), options);
  const auto expected = take(full, 3);
  DataLoader first(numbered(17), options);
  StateValueMap state;
  auto got = take_then_stop(first, 1, state);
  DataLoader resumed(numbered(17), options);
  resumed.load_state_dict(state);
  const auto rest = take(resumed, 3);
  got.insert(got.end(), rest.begin(), rest.end());
  EXPECT_EQ(got, expected);
}

TEST(DataLoaderState, AnotherOrderIsRefusedNamingEachDifference) {
  DataLoader a(numbered(20), DataLoaderOptions(3).seed(7));
  (void)take(a, 1);
  const StateValueMap state = a.state_dict();
  DataLoader other(numbered(21), DataLoaderOptions(4).seed(8));
  EXPECT_EMBER_ERROR(other.load_state_dict(state), "another data order", "seed is 7 in the state but 8 here",
                     "num_examples is 20 in the state but 21 here", "batch_size is 3 in the state but 4 here");
  DataLoader sharded(numbered(20), DataLoaderOptions(3).seed(7).num_replicas(2).rank(1));
  EXPECT_EMBER_ERROR(sharded.load_state_dict(state), "num_examples is 20 in the state but 10 here",
                     "num_replicas is 1 in the state but 2 here", "rank is 0 in the state but 1 here");
  StateValueMap bad = state;
  bad["batches"] = int64_t{99};
  DataLoader b(numbered(20), DataLoaderOptions(3).seed(7));
  EXPECT_EMBER_ERROR(b.load_state_dict(bad), "batches 99", "an epoch has 7 batches");
  bad = state;
  bad.erase("shuffle");
  EXPECT_EMBER_ERROR(b.load_state_dict(bad), "'shuffle' is missing");
  bad = state;
  bad["workers"] = int64_t{4};
  EXPECT_EMBER_ERROR(b.load_state_dict(bad), "unexpected entries 'workers'");
  EXPECT_EQ(b.epoch(), 0);  // unchanged by the failed loads
}

// ---- data files that turn unreadable -------------------------------------------------------------------

class DataFileFaultTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "ember_data_fault_XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    for (const char* split : {"train", "t10k"}) {
      write_idx(std::string(split) + "-images-idx3-ubyte", 3, {kImages, 28, 28});
      write_idx(std::string(split) + "-labels-idx1-ubyte", 1, {kImages});
    }
  }
  void TearDown() override { fs::remove_all(dir_); }

  // An unsigned-byte IDX file of the given dims, element i holding i % 10.
  void write_idx(const std::string& name, int ndims, const std::vector<uint32_t>& dims) {
    std::ofstream out(path(name), std::ios::binary);
    const char magic[4] = {0, 0, 0x08, static_cast<char>(ndims)};
    out.write(magic, 4);
    size_t n = 1;
    for (uint32_t d : dims) {
      const char be[4] = {static_cast<char>(d >> 24), static_cast<char>(d >> 16), static_cast<char>(d >> 8),
                          static_cast<char>(d)};
      out.write(be, 4);
      n *= d;
    }
    for (size_t i = 0; i < n; ++i) out.put(static_cast<char>(i % 10));
  }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  static constexpr uint32_t kImages = 12;
  fs::path dir_;
};

// MnistDataset reads its files once: a file removed in the middle of a run does not stop it. A run that
// loads the files again (a resumed one) gets an error naming the file, whatever happened to it.
TEST_F(DataFileFaultTest, FilesChangedMidRunAreReportedWhenReadNamingThem) {
  auto train = std::make_shared<MnistDataset>(dir_.string(), MnistDataset::Split::Train);
  DataLoader loader(train, DataLoaderOptions(5).seed(1));
  EXPECT_EQ(take(loader, 1).size(), 3u);
  const std::string images = path("train-images-idx3-ubyte");

  fs::remove(images);
  EXPECT_EQ(take(loader, 1).size(), 3u);  // the next epoch runs on what was read
  EXPECT_EMBER_ERROR(MnistDataset(dir_.string(), MnistDataset::Split::Train), images, "not found");

  fs::create_directory(images);  // a folder where the file was
  EXPECT_EMBER_ERROR(MnistDataset(dir_.string(), MnistDataset::Split::Train), images, "is a directory");
  fs::remove(images);

  write_idx("train-images-idx3-ubyte", 3, {kImages, 28, 28});
  fs::resize_file(images, 1000);  // cut short
  EXPECT_EMBER_ERROR(MnistDataset(dir_.string(), MnistDataset::Split::Train), images, "truncated");

  write_idx("train-images-idx3-ubyte", 3, {kImages, 28, 28});
  fs::permissions(images, fs::perms::none);
  if (::geteuid() != 0) {  // root reads any file whatever its permissions
    EXPECT_EMBER_ERROR(MnistDataset(dir_.string(), MnistDataset::Split::Train), images, "cannot open",
                       "Permission denied");
  }
  fs::permissions(images, fs::perms::owner_all);
  EXPECT_NO_THROW(MnistDataset(dir_.string(), MnistDataset::Split::Train));
}

// A dataset that reads its file on every batch (as a dataset streamed from disk does): when the file goes
// away between epochs, the loader's background thread fails and the training loop gets the error, naming
// the file; once the file is back the same loader goes on.
class FileBackedDataset : public Dataset {
 public:
  explicit FileBackedDataset(std::string path) : path_(std::move(path)) {}
  int64_t size() const override { return kImages; }
  void fill_batch(const std::vector<int64_t>& indices, Batch& out) const override {
    const IdxArray a = read_idx(path_);
    for (size_t i = 0; i < indices.size(); ++i) {
      out.data.data_ptr<float>()[i] = static_cast<float>(a.bytes[static_cast<size_t>(indices[i]) * 784]);
      out.target.data_ptr<int64_t>()[i] = indices[i];
    }
  }
  std::vector<int64_t> data_shape() const override { return {1}; }
  std::vector<int64_t> target_shape() const override { return {}; }
  DType data_dtype() const override { return kFloat32; }
  DType target_dtype() const override { return kInt64; }

 private:
  static constexpr int64_t kImages = 12;
  std::string path_;
};

TEST_F(DataFileFaultTest, FileRemovedBetweenEpochsFailsTheLoaderNamingIt) {
  const std::string images = path("train-images-idx3-ubyte");
  for (int prefetch : {0, 2}) {
    SCOPED_TRACE(prefetch);
    DataLoader loader(std::make_shared<FileBackedDataset>(images), DataLoaderOptions(5).seed(1).prefetch(prefetch));
    EXPECT_EQ(take(loader, 1).size(), 3u);
    fs::rename(images, images + ".away");
    EXPECT_EMBER_ERROR(take(loader, 1), "read_idx", images, "not found");
    fs::rename(images + ".away", images);
    EXPECT_EQ(take(loader, 1).size(), 3u);
  }
}

}  // namespace
}  // namespace ember::data
