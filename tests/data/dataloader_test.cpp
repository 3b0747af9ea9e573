// Tests of TensorDataset, MnistDataset and the DataLoader (batching, shuffling, prefetch, devices).
#include <filesystem>
#include <set>

#include "data/dataloader.h"
#include "tests/testing.h"

namespace ember::data {
namespace {

std::shared_ptr<TensorDataset> numbered(int64_t n) {
  // data[i] = [i, 10 i], target[i] = i
  Tensor d = arange(0, n, 1, kFloat32).unsqueeze(1) * tensor({1.f, 10.f});
  return std::make_shared<TensorDataset>(d, arange(0, n, 1));
}

TEST(TensorDataset, RowsAndErrors) {
  auto ds = numbered(5);
  EXPECT_EQ(ds->size(), 5);
  Batch b = ds->get(3);
  EXPECT_TRUE(testing::values_are(b.data, {2}, {3, 30}));
  EXPECT_EQ(b.target.item<int64_t>(), 3);
  EXPECT_EMBER_ERROR(ds->get(5), "out of range");
  EXPECT_EMBER_ERROR(TensorDataset(zeros({3, 2}), zeros({4})), "3 examples", "4");
}

class DataLoaderTest : public testing::DeviceTest {};

TEST_P(DataLoaderTest, BatchesCoverTheEpochOnce) {
  for (int prefetch : {0, 2}) {
    DataLoader loader(numbered(10), DataLoaderOptions(4).shuffle(true).seed(1).device(device()).prefetch(prefetch));
    EXPECT_EQ(loader.num_batches(), 3);
    std::multiset<int64_t> seen;
    std::vector<int64_t> sizes;
    for (const Batch& b : loader) {
      EXPECT_EQ(b.data.device(), device());
      EXPECT_EQ(b.target.device(), device());
      sizes.push_back(b.target.size(0));
      const auto t = b.target.to_vector<int64_t>();
      const auto d = b.data.to_vector<float>();
      for (size_t i = 0; i < t.size(); ++i) {
        seen.insert(t[i]);
        EXPECT_EQ(d[2 * i], static_cast<float>(t[i]));  // data and target stay paired
        EXPECT_EQ(d[2 * i + 1], 10.0f * static_cast<float>(t[i]));
      }
    }
    EXPECT_EQ(sizes, std::vector<int64_t>({4, 4, 2}));
    EXPECT_EQ(seen.size(), 10u);
    EXPECT_EQ(*seen.rbegin(), 9);
  }
}

TEST_P(DataLoaderTest, ShufflingIsSeededAndChangesPerEpoch) {
  auto order = [&](uint64_t seed, int epochs) {
    DataLoader loader(numbered(50), DataLoaderOptions(50).seed(seed).device(device()));
    std::vector<std::vector<int64_t>> out;
    for (int e = 0; e < epochs; ++e)
      for (const Batch& b : loader) out.push_back(b.target.to_vector<int64_t>());
    return out;
  };
  const auto a = order(7, 2), b = order(7, 2), c = order(8, 1);
  EXPECT_EQ(a, b);
  EXPECT_NE(a[0], a[1]);
  EXPECT_NE(a[0], c[0]);
  DataLoader plain(numbered(6), DataLoaderOptions(6).shuffle(false).device(device()));
  for (const Batch& batch : plain) EXPECT_EQ(batch.target.to_vector<int64_t>(), std::vector<int64_t>({0, 1, 2, 3, 4, 5}));
}

TEST_P(DataLoaderTest, DropLastAndEarlyStop) {
  DataLoader loader(numbered(10), DataLoaderOptions(4).drop_last(true).device(device()));
  EXPECT_EQ(loader.num_batches(), 2);
  int n = 0;
  for (const Batch& b : loader) {
    EXPECT_EQ(b.target.size(0), 4);
    ++n;
  }
  EXPECT_EQ(n, 2);
  // Leaving an epoch early and starting another is fine.
  for (const Batch& b : loader) {
    (void)b;
    break;
  }
  n = 0;
  for (const Batch& b : loader) n += static_cast<int>(b.target.size(0));
  EXPECT_EQ(n, 8);
  EXPECT_EQ(loader.epoch(), 3);
}

EMBER_INSTANTIATE_DEVICE_TESTS(DataLoaderTest);

TEST(DataLoader, LogicalDevicesAndErrors) {
  DataLoader loader(numbered(3), DataLoaderOptions(2).device(Device::cpu(2)));
  for (const Batch& b : loader) EXPECT_EQ(b.data.device(), Device::cpu(2));
  EXPECT_EMBER_ERROR(DataLoader(numbered(3), DataLoaderOptions(0)), "batch_size must be positive");
  EXPECT_EMBER_ERROR(DataLoader(nullptr, DataLoaderOptions(2)), "dataset is null");
}

TEST(MnistDataset, MissingFilesAreAClearError) {
  EXPECT_EMBER_ERROR(MnistDataset("/nonexistent/dir", MnistDataset::Split::Train), "/nonexistent/dir",
                     "train-images-idx3-ubyte", "not found");
}

TEST(MnistDataset, LoadsDebianFashionMnist) {
  const std::string root = MnistDataset::kDebianFashionRoot;
  ASSERT_TRUE(std::filesystem::exists(root + "/t10k-images-idx3-ubyte.gz"))
      << "Debian's dataset-fashion-mnist package is not installed (scripts/deps.sh installs it)";
  MnistDataset test(root, MnistDataset::Split::Test);
  EXPECT_EQ(test.size(), 10000);
  EXPECT_EQ(test.data().sizes(), IntArrayRef({10000, 1, 28, 28}));
  EXPECT_EQ(test.targets().dtype(), kInt64);
  // Normalised pixels: (0 - mean) / std .. (1 - mean) / std.
  const double lo = -MnistDataset::kFashionMean / MnistDataset::kFashionStd;
  const double hi = (1 - MnistDataset::kFashionMean) / MnistDataset::kFashionStd;
  EXPECT_NEAR(test.data().min().item<float>(), lo, 1e-5);
  EXPECT_NEAR(test.data().max().item<float>(), hi, 1e-5);
  EXPECT_NEAR(test.data().mean().item<float>(), 0.0, 0.05);  // test split: close to the training mean
  std::vector<int> counts(10, 0);
  for (int64_t y : test.targets().to_vector<int64_t>()) ++counts[static_cast<size_t>(y)];
  for (int c : counts) EXPECT_EQ(c, 1000);
}

}  // namespace
}  // namespace ember::data
