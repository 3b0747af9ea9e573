// TensorDataset batching (row copies) and the MNIST/Fashion-MNIST loader.
#include "data/dataset.h"

#include <filesystem>
#include <cstring>

#include "data/idx.h"
#include "kernels/ops.h"

namespace ember::data {

Batch Dataset::get(int64_t index) const {
  EMBER_CHECK(index >= 0 && index < size(), "Dataset::get: index ", index, " is out of range for a dataset of ",
              size(), " examples");
  Batch b;
  std::vector<int64_t> dshape = data_shape(), tshape = target_shape();
  dshape.insert(dshape.begin(), 1);
  tshape.insert(tshape.begin(), 1);
  b.data = empty(dshape, data_dtype());
  b.target = empty(tshape, target_dtype());
  fill_batch({index}, b);
  b.data = b.data.select(0, 0);
  b.target = b.target.select(0, 0);
  return b;
}

TensorDataset::TensorDataset(Tensor data, Tensor target) : data_(std::move(data)), target_(std::move(target)) {
  EMBER_CHECK(data_.defined() && target_.defined(), "TensorDataset: data and target must be defined");
  EMBER_CHECK(data_.dim() >= 1 && target_.dim() >= 1, "TensorDataset: data and target need a leading example dim");
  EMBER_CHECK(data_.size(0) == target_.size(0), "TensorDataset: data has ", data_.size(0), " examples (shape ",
              data_.sizes(), ") but target has ", target_.size(0), " (shape ", target_.sizes(), ")");
  EMBER_CHECK(data_.is_cpu() && target_.is_cpu(), "TensorDataset: the tensors must live on the host (got ",
              data_.device(), " and ", target_.device(), "); the DataLoader moves batches to the device");
  data_ = data_.detach().contiguous();
  target_ = target_.detach().contiguous();
}

std::vector<int64_t> TensorDataset::data_shape() const { return data_.sizes().slice(1).vec(); }
std::vector<int64_t> TensorDataset::target_shape() const { return target_.sizes().slice(1).vec(); }

namespace {
// Copies rows `indices` of a contiguous host tensor into the contiguous host tensor `out`.
void gather_rows(const Tensor& src, const std::vector<int64_t>& indices, const Tensor& out) {
  EMBER_CHECK(out.is_cpu() && out.is_contiguous() && out.dtype() == src.dtype() &&
                  out.size(0) == static_cast<int64_t>(indices.size()),
              "fill_batch: the output batch must be a contiguous host tensor of ", indices.size(), " rows of dtype ",
              src.dtype(), "; got shape ", out.sizes(), " dtype ", out.dtype(), " on ", out.device());
  const size_t row = src.numel() == 0 ? 0 : src.nbytes() / static_cast<size_t>(src.size(0));
  EMBER_CHECK(out.nbytes() == row * indices.size(), "fill_batch: the output rows have shape ", out.sizes(),
              " but the dataset's rows are ", src.sizes().slice(1));
  const char* s = static_cast<const char*>(src.raw_data());
  char* d = static_cast<char*>(out.raw_data());
  const int64_t n = src.size(0);
  for (size_t i = 0; i < indices.size(); ++i) {
    EMBER_CHECK(indices[i] >= 0 && indices[i] < n, "fill_batch: index ", indices[i],
                " is out of range for a dataset of ", n, " examples");
    std::memcpy(d + i * row, s + static_cast<size_t>(indices[i]) * row, row);
  }
}
}  // namespace

void TensorDataset::fill_batch(const std::vector<int64_t>& indices, Batch& out) const {
  gather_rows(data_, indices, out.data);
  gather_rows(target_, indices, out.target);
}

namespace {
std::string find_file(const std::string& root, const std::string& stem) {
  for (const std::string& candidate : {root + "/" + stem + ".gz", root + "/" + stem}) {
    if (std::filesystem::exists(candidate)) return candidate;
  }
  EMBER_THROW("MnistDataset: ", root, "/", stem, "[.gz] not found; on Debian install the dataset-fashion-mnist "
              "package (scripts/deps.sh does), or pass the folder holding the IDX files");
}

Tensor load_images(const std::string& path, double mean, double std) {
  const IdxArray a = read_idx(path);
  EMBER_CHECK(a.type_code == kIdxUInt8 && a.dims.size() == 3, "MnistDataset: ", path,
              " is not an image file (expected unsigned-byte IDX data of 3 dims [N, H, W], got type code ",
              static_cast<int>(a.type_code), " with ", a.dims.size(), " dims)");
  Tensor images = empty({a.dims[0], 1, a.dims[1], a.dims[2]}, kFloat32);
  float* dst = images.data_ptr<float>();
  const float scale = static_cast<float>(1.0 / (255.0 * std));
  const float shift = static_cast<float>(mean / std);
  for (size_t i = 0; i < a.bytes.size(); ++i) dst[i] = static_cast<float>(a.bytes[i]) * scale - shift;
  return images;
}

Tensor load_labels(const std::string& path) {
  const IdxArray a = read_idx(path);
  EMBER_CHECK(a.type_code == kIdxUInt8 && a.dims.size() == 1, "MnistDataset: ", path,
              " is not a label file (expected unsigned-byte IDX data of 1 dim, got type code ",
              static_cast<int>(a.type_code), " with ", a.dims.size(), " dims)");
  Tensor labels = empty({a.dims[0]}, kInt64);
  int64_t* dst = labels.data_ptr<int64_t>();
  for (size_t i = 0; i < a.bytes.size(); ++i) dst[i] = a.bytes[i];
  return labels;
}

TensorDataset load_split(const std::string& root, MnistDataset::Split split, double mean, double std) {
  const std::string prefix = split == MnistDataset::Split::Train ? "train" : "t10k";
  const std::string images_path = find_file(root, prefix + "-images-idx3-ubyte");
  const std::string labels_path = find_file(root, prefix + "-labels-idx1-ubyte");
  Tensor images = load_images(images_path, mean, std);
  Tensor labels = load_labels(labels_path);
  EMBER_CHECK(images.size(0) == labels.size(0), "MnistDataset: ", images_path, " holds ", images.size(0),
              " images but ", labels_path, " holds ", labels.size(0), " labels");
  return TensorDataset(images, labels);
}
}  // namespace

MnistDataset::MnistDataset(const std::string& root, Split split, double mean, double std)
    : TensorDataset(load_split(root, split, mean, std)) {}

}  // namespace ember::data
