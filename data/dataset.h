// Datasets: the random-access Dataset interface, TensorDataset, and the MNIST-style image datasets.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "runtime/tensor.h"

namespace ember::data {

// A batch (or one example) of inputs and targets, as host tensors until the loader moves them.
struct Batch {
  Tensor data;
  Tensor target;
};

class Dataset {
 public:
  virtual ~Dataset() = default;
  virtual int64_t size() const = 0;
  // Examples `indices` stacked along a new dim 0, written into `out` (host tensors of
  // [indices.size(), ...]), so that a loader can reuse and pin its buffers.
  virtual void fill_batch(const std::vector<int64_t>& indices, Batch& out) const = 0;
  // Shapes (without the batch dim) and dtypes of one example's data and target.
  virtual std::vector<int64_t> data_shape() const = 0;
  virtual std::vector<int64_t> target_shape() const = 0;
  virtual DType data_dtype() const = 0;
  virtual DType target_dtype() const = 0;

  // One example (data without the batch dim).
  Batch get(int64_t index) const;
};

// Rows of two host tensors: data[i] and target[i].
class TensorDataset : public Dataset {
 public:
  TensorDataset(Tensor data, Tensor target);
  int64_t size() const override { return data_.size(0); }
  void fill_batch(const std::vector<int64_t>& indices, Batch& out) const override;
  std::vector<int64_t> data_shape() const override;
  std::vector<int64_t> target_shape() const override;
  DType data_dtype() const override { return data_.dtype(); }
  DType target_dtype() const override { return target_.dtype(); }
  const Tensor& data() const { return data_; }
  const Tensor& targets() const { return target_; }

 private:
  Tensor data_, target_;
};

// MNIST and Fashion-MNIST from the standard (optionally gzipped) IDX files in `root`:
// train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], t10k-... . Images become float32
// [N, 1, 28, 28] scaled to [0, 1] then normalised with (x - mean) / std; labels int64 [N].
class MnistDataset : public TensorDataset {
 public:
  enum class Split { Train, Test };
  // Fashion-MNIST's training-set statistics (PyTorch tutorials use 0.2860 / 0.3530).
  static constexpr double kFashionMean = 0.2860, kFashionStd = 0.3530;

  MnistDataset(const std::string& root, Split split, double mean = kFashionMean, double std = kFashionStd);
  // Where Debian's dataset-fashion-mnist package puts the files.
  static constexpr const char* kDebianFashionRoot = "/usr/share/datasets/fashion-mnist";
};

}  // namespace ember::data
