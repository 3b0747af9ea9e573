// Tests of DistributedSampler (PyTorch's shard semantics) and of sharded DataLoaders.
#include <algorithm>
#include <numeric>
#include <set>

#include "data/dataloader.h"
#include "tests/testing.h"

namespace ember::data {
namespace {

std::vector<std::vector<int64_t>> shards(int64_t n, int64_t replicas, bool shuffle, uint64_t seed, bool drop_last,
                                         int64_t epoch = 0) {
  std::vector<std::vector<int64_t>> out;
  for (int64_t r = 0; r < replicas; ++r) {
    DistributedSampler s(n, replicas, r, shuffle, seed, drop_last);
    s.set_epoch(epoch);
    out.push_back(s.indices());
    EXPECT_EQ(static_cast<int64_t>(out.back().size()), s.size());
  }
  return out;
}

// The order every rank starts from, rebuilt from the shards: position p = rank + k * replicas.
std::vector<int64_t> interleave(const std::vector<std::vector<int64_t>>& s) {
  std::vector<int64_t> order;
  for (size_t k = 0; k < s[0].size(); ++k)
    for (const auto& shard : s) order.push_back(shard[k]);
  return order;
}

TEST(DistributedSampler, ShardsAreDisjointAndCoverTheDatasetPlusPadding) {
  for (int64_t n : {1, 7, 10, 12, 13, 100}) {
    for (int64_t replicas : {1, 2, 3, 4}) {
      for (bool shuffle : {false, true}) {
        const auto s = shards(n, replicas, shuffle, 5, false);
        const int64_t per_rank = (n + replicas - 1) / replicas;
        for (const auto& shard : s) EXPECT_EQ(static_cast<int64_t>(shard.size()), per_rank);
        const std::vector<int64_t> order = interleave(s);
        ASSERT_EQ(static_cast<int64_t>(order.size()), per_rank * replicas);
        // The first n positions are a permutation of the dataset; the padding repeats the order's start.
        std::vector<int64_t> head(order.begin(), order.begin() + n);
        std::sort(head.begin(), head.end());
        std::vector<int64_t> all(static_cast<size_t>(n));
        std::iota(all.begin(), all.end(), int64_t{0});
        EXPECT_EQ(head, all) << "n " << n << " replicas " << replicas;
        for (size_t p = static_cast<size_t>(n); p < order.size(); ++p) EXPECT_EQ(order[p], order[p - static_cast<size_t>(n)]);
        if (!shuffle) {
          EXPECT_EQ(std::vector<int64_t>(order.begin(), order.begin() + n), all);
        }
        // Padding is at the end of a shard and num_padding() counts it.
        int64_t padding = 0;
        for (int64_t r = 0; r < replicas; ++r) {
          DistributedSampler sampler(n, replicas, r, shuffle, 5);
          padding += sampler.num_padding();
          EXPECT_EQ(sampler.total_size(), per_rank * replicas);
        }
        EXPECT_EQ(padding, per_rank * replicas - n);
      }
    }
  }
}

TEST(DistributedSampler, MatchesPyTorchWithoutShuffle) {
  // torch.utils.data.DistributedSampler(range(10), num_replicas=4, rank=r, shuffle=False): padded with 0, 1.
  const auto s = shards(10, 4, /*shuffle=*/false, 0, /*drop_last=*/false);
  EXPECT_EQ(s[0], std::vector<int64_t>({0, 4, 8}));
  EXPECT_EQ(s[1], std::vector<int64_t>({1, 5, 9}));
  EXPECT_EQ(s[2], std::vector<int64_t>({2, 6, 0}));
  EXPECT_EQ(s[3], std::vector<int64_t>({3, 7, 1}));
  EXPECT_EQ(DistributedSampler(10, 4, 0, false).num_padding(), 0);
  EXPECT_EQ(DistributedSampler(10, 4, 2, false).num_padding(), 1);
  // drop_last=True: the tail (8, 9) is left out.
  const auto d = shards(10, 4, false, 0, /*drop_last=*/true);
  EXPECT_EQ(d[0], std::vector<int64_t>({0, 4}));
  EXPECT_EQ(d[3], std::vector<int64_t>({3, 7}));
}

TEST(DistributedSampler, DropLastTruncatesToEqualShards) {
  for (int64_t n : {9, 10, 11, 12}) {
    const auto s = shards(n, 3, true, 1, /*drop_last=*/true);
    std::set<int64_t> seen;
    for (const auto& shard : s) {
      EXPECT_EQ(static_cast<int64_t>(shard.size()), n / 3);
      for (int64_t i : shard) EXPECT_TRUE(seen.insert(i).second) << "index " << i << " twice";
    }
    EXPECT_EQ(static_cast<int64_t>(seen.size()), n / 3 * 3);
    EXPECT_EQ(DistributedSampler(n, 3, 2, true, 1, true).num_padding(), 0);
    // The kept examples are the start of the same shuffled order as without drop_last.
    const auto padded = interleave(shards(n, 3, true, 1, false));
    const auto kept = interleave(s);
    EXPECT_TRUE(std::equal(kept.begin(), kept.end(), padded.begin()));
  }
}

TEST(DistributedSampler, SameOrderOnEveryRankAndANewOneEachEpoch) {
  // Each "rank" builds its own sampler; the interleaved order is one permutation only if they agree.
  const auto e0 = shards(50, 3, true, 7, false, 0);
  const auto again = shards(50, 3, true, 7, false, 0);
  EXPECT_EQ(e0, again);
  const auto e1 = shards(50, 3, true, 7, false, 1);
  EXPECT_NE(interleave(e0), interleave(e1));
  const auto other_seed = shards(50, 3, true, 8, false, 0);
  EXPECT_NE(interleave(e0), interleave(other_seed));
  std::vector<int64_t> o1 = interleave(e1);
  o1.resize(50);
  std::sort(o1.begin(), o1.end());
  for (int64_t i = 0; i < 50; ++i) EXPECT_EQ(o1[static_cast<size_t>(i)], i);
  // set_epoch back to 0 gives epoch 0's order again; the order is epoch_permutation's.
  DistributedSampler s(50, 1, 0, true, 7);
  s.set_epoch(3);
  EXPECT_EQ(s.epoch(), 3);
  EXPECT_EQ(s.indices(), epoch_permutation(50, 7, 3));
  s.set_epoch(0);
  EXPECT_EQ(s.indices(), epoch_permutation(50, 7, 0));
  std::vector<int64_t> o0 = interleave(e0);  // 3 ranks' shards interleave back into that order, padded
  EXPECT_EQ(std::vector<int64_t>(o0.begin(), o0.begin() + 50), epoch_permutation(50, 7, 0));
}

TEST(DistributedSampler, MoreReplicasThanExamples) {
  // PyTorch repeats the (shuffled) order cyclically: 5 ranks over 2 examples get o0, o1, o0, o1, o0.
  const auto s = shards(2, 5, true, 3, false);
  const std::vector<int64_t> order = epoch_permutation(2, 3, 0);
  for (int64_t r = 0; r < 5; ++r) {
    ASSERT_EQ(s[static_cast<size_t>(r)].size(), 1u);
    EXPECT_EQ(s[static_cast<size_t>(r)][0], order[static_cast<size_t>(r % 2)]);
    EXPECT_EQ(DistributedSampler(2, 5, r, true, 3).num_padding(), r < 2 ? 0 : 1);
  }
  for (const auto& shard : shards(2, 5, true, 3, /*drop_last=*/true)) EXPECT_TRUE(shard.empty());
  for (const auto& shard : shards(0, 2, true, 3, false)) EXPECT_TRUE(shard.empty());
}

TEST(DistributedSampler, BadArgumentsAreClearErrors) {
  EXPECT_EMBER_ERROR(DistributedSampler(10, 2, 2), "DistributedSampler", "rank 2 is out of range for num_replicas 2");
  EXPECT_EMBER_ERROR(DistributedSampler(10, 2, -1), "rank -1 is out of range");
  EXPECT_EMBER_ERROR(DistributedSampler(10, 0, 0), "DistributedSampler", "num_replicas must be at least 1, got 0");
  EXPECT_EMBER_ERROR(DistributedSampler(-1, 1, 0), "num_examples must be >= 0, got -1");
  DistributedSampler s(10, 1, 0);
  EXPECT_EMBER_ERROR(s.set_epoch(-1), "non-negative epoch");
}

std::shared_ptr<TensorDataset> numbered(int64_t n) {
  return std::make_shared<TensorDataset>(arange(0, n, 1, kFloat32).unsqueeze(1), arange(0, n, 1));
}

std::vector<std::vector<int64_t>> loader_epochs(DataLoader& loader, int epochs) {
  std::vector<std::vector<int64_t>> out;
  for (int e = 0; e < epochs; ++e) {
    out.emplace_back();
    for (const Batch& b : loader)
      for (int64_t i : b.target.to_vector<int64_t>()) out.back().push_back(i);
  }
  return out;
}

TEST(ShardedDataLoader, EveryRankHasItsShardAndTheSameBatchCount) {
  const int64_t n = 23, replicas = 3;
  std::vector<std::vector<std::vector<int64_t>>> per_rank;  // [rank][epoch] -> indices
  for (int64_t r = 0; r < replicas; ++r) {
    for (int prefetch : {0, 2}) {
      DataLoader loader(numbered(n), DataLoaderOptions(4).seed(11).num_replicas(replicas).rank(r).prefetch(prefetch));
      EXPECT_EQ(loader.num_examples(), 8);
      EXPECT_EQ(loader.num_batches(), 2);
      ASSERT_NE(loader.sampler(), nullptr);
      auto epochs = loader_epochs(loader, 2);
      EXPECT_EQ(loader.sampler()->epoch(), 1);
      if (prefetch == 0) per_rank.push_back(epochs);
      else EXPECT_EQ(epochs, per_rank.back());
    }
  }
  for (int e = 0; e < 2; ++e) {
    std::vector<std::vector<int64_t>> s;
    for (int64_t r = 0; r < replicas; ++r) s.push_back(per_rank[static_cast<size_t>(r)][static_cast<size_t>(e)]);
    // Rank r's shard of the loader's own (unsharded) order of that epoch, padded: one shuffle for all ranks.
    DataLoader whole(numbered(n), DataLoaderOptions(n).seed(11));
    const auto orders = loader_epochs(whole, 2);
    std::vector<int64_t> expected = orders[static_cast<size_t>(e)];
    expected.push_back(expected[0]);  // 23 -> 24: one padding example, the order's first
    EXPECT_EQ(interleave(s), expected) << "epoch " << e;
  }
  EXPECT_NE(per_rank[0][0], per_rank[0][1]);  // reshuffled each epoch
}

TEST(ShardedDataLoader, UnevenShardsCountEveryExampleOnce) {
  const int64_t n = 10, replicas = 4;
  std::multiset<int64_t> seen;
  std::vector<int64_t> sizes;
  for (int64_t r = 0; r < replicas; ++r) {
    DataLoader loader(numbered(n), DataLoaderOptions(2).shuffle(false).num_replicas(replicas).rank(r).even_shards(false));
    sizes.push_back(loader.num_examples());
    const auto e = loader_epochs(loader, 1)[0];
    EXPECT_EQ(static_cast<int64_t>(e.size()), loader.num_examples());
    EXPECT_EQ(loader.num_batches(), (loader.num_examples() + 1) / 2);
    seen.insert(e.begin(), e.end());
  }
  EXPECT_EQ(sizes, std::vector<int64_t>({3, 3, 2, 2}));
  EXPECT_EQ(seen.size(), 10u);
  EXPECT_EQ(std::set<int64_t>(seen.begin(), seen.end()).size(), 10u);
}

TEST(ShardedDataLoader, SamplerOptionSetEpochAndDropLast) {
  // A sampler of one's own: PyTorch's drop_last; the loader sets its epoch each epoch.
  DataLoader loader(numbered(11), DataLoaderOptions(2).drop_last(true).sampler(DistributedSampler(11, 2, 1, true, 4, true)));
  EXPECT_EQ(loader.num_examples(), 5);
  EXPECT_EQ(loader.num_batches(), 2);  // 5 examples, batches of 2, the short one dropped
  DistributedSampler reference(11, 2, 1, true, 4, true);
  for (int64_t e = 0; e < 2; ++e) {
    reference.set_epoch(e);
    std::vector<int64_t> expected = reference.indices();
    expected.resize(4);
    EXPECT_EQ(loader_epochs(loader, 1)[0], expected);
  }
  loader.set_epoch(0);  // resume at epoch 0 again
  reference.set_epoch(0);
  const auto again = loader_epochs(loader, 1)[0];
  EXPECT_EQ(loader.epoch(), 1);
  std::vector<int64_t> expected = reference.indices();
  expected.resize(4);
  EXPECT_EQ(again, expected);
}

TEST(ShardedDataLoader, UnshardedOrderIsUnchangedAndSetEpochWorks) {
  // Without sharding the loader keeps its order; one replica of a sampler has the same one.
  DataLoader plain(numbered(30), DataLoaderOptions(30).seed(9));
  DataLoader one(numbered(30), DataLoaderOptions(30).sampler(DistributedSampler(30, 1, 0, true, 9)));
  EXPECT_EQ(plain.sampler(), nullptr);
  const auto a = loader_epochs(plain, 3), b = loader_epochs(one, 3);
  EXPECT_EQ(a, b);
  EXPECT_EQ(a[0], epoch_permutation(30, 9, 0));
  plain.set_epoch(2);
  EXPECT_EQ(loader_epochs(plain, 1)[0], a[2]);
  EXPECT_EQ(plain.epoch(), 3);
}

TEST(ShardedDataLoader, BadArgumentsAreClearErrors) {
  EXPECT_EMBER_ERROR(DataLoader(numbered(5), DataLoaderOptions(2).num_replicas(2).rank(2)),
                     "DataLoader: rank 2 is out of range for num_replicas 2");
  EXPECT_EMBER_ERROR(DataLoader(numbered(5), DataLoaderOptions(2).num_replicas(0)),
                     "num_replicas must be at least 1, got 0");
  EXPECT_EMBER_ERROR(DataLoader(numbered(5), DataLoaderOptions(2).sampler(DistributedSampler(6, 2, 0))),
                     "sampler is for 6 examples but the dataset has 5");
  EXPECT_EMBER_ERROR(
      DataLoader(numbered(5), DataLoaderOptions(2).num_replicas(2).sampler(DistributedSampler(5, 2, 0))),
      "either a sampler or num_replicas/rank");
  DataLoader loader(numbered(5), DataLoaderOptions(2));
  EXPECT_EMBER_ERROR(loader.set_epoch(-2), "non-negative epoch");
}

}  // namespace
}  // namespace ember::data
