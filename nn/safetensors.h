// The safetensors file format: a validating reader and an atomic writer of raw tensor bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace ember::safetensors {

// Note [safetensors layout]
// A file is: 8 bytes little-endian u64 N, N bytes of UTF-8 JSON header, then the data buffer.
// The header maps each tensor name to {"dtype", "shape", "data_offsets": [begin, end]} (offsets
// relative to the data buffer, little-endian C-order bytes) and the optional "__metadata__" key
// to a string -> string object. As the reference implementation (huggingface/safetensors) does,
// we require the tensors' byte ranges, sorted by offset, to tile the data buffer exactly: the
// first starts at 0, each starts where the previous one ends, the last ends at the end of the
// file. So holes, overlaps and trailing bytes are all errors; zero-byte tensors may sit at any
// boundary. Unlike the reference reader (which caps N at 100,000,000) we cap N at 100 MiB.

// One tensor of a file: dtype is the safetensors name ("F32", "BF16", ...), offsets are into the
// data buffer.
struct TensorEntry {
  std::string name;
  std::string dtype;
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;
};

// Bytes per element of a safetensors dtype name; throws ember::Error for an unknown name and for
// the sub-byte types (F4, F6_E2M3, F6_E3M2), which ember does not read.
size_t dtype_size(const std::string& dtype);

// A validated, opened file. Tensor bytes are read on demand (pread on a descriptor kept open), so
// opening a large checkpoint costs one header read. Copies share the descriptor; read() is safe
// to call from several threads at once.
class File {
 public:
  // Validates the whole header against the file size (see Note [safetensors layout]); every
  // violation throws ember::Error naming the path and the problem.
  static File open(const std::string& path);

  // Sorted by data offset, which is the order the bytes lie in the file.
  const std::vector<TensorEntry>& entries() const { return entries_; }
  const TensorEntry* find(const std::string& name) const;  // nullptr if absent
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // Copies e's end - begin bytes into dst. e must describe a range of this file's data buffer.
  void read(const TensorEntry& e, void* dst) const;
  const std::string& path() const { return path_; }

 private:
  File() = default;

  std::string path_;
  struct Descriptor;                      // an open file descriptor, closed by its destructor
  std::shared_ptr<const Descriptor> fd_;  // shared by copies; closed when the last one goes
  uint64_t data_start_ = 0;               // 8 + N
  uint64_t data_size_ = 0;
  std::vector<TensorEntry> entries_;
  std::unordered_map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

// A tensor to write: its bytes are C-order, little-endian, nbytes = numel * dtype_size(dtype).
struct TensorView {
  std::string name;
  std::string dtype;
  std::vector<int64_t> shape;
  const void* data = nullptr;
  size_t nbytes = 0;
};

// Writes a safetensors file the way the Python library does: tensors ordered by dtype alignment
// (descending, the reference's dtype order) then by name, byte ranges contiguous in that order,
// the header padded with spaces to a multiple of 8, "__metadata__" first when metadata is
// non-empty. The write is atomic: a temporary file in the same directory, fsync, rename over
// path, fsync of the directory. Throws ember::Error for invalid tensors (duplicate or reserved
// names, unknown dtypes, byte counts that do not match the shape) and for I/O failures.
void save(const std::string& path, const std::vector<TensorView>& tensors,
          const std::map<std::string, std::string>& metadata = {});

namespace hooks {
// Fault injection for tests: when set, save() calls the hook after the header and after each tensor's
// bytes have gone to the temporary file (before fsync and rename), with the temporary file's path, the
// bytes written so far and the file's total size. A test can stop or kill the process there (a crash
// in the middle of a save). nullptr (the default) turns it off; set it before saving, not during.
using SaveProgressHook = void (*)(const std::string& temp_path, uint64_t written, uint64_t total);
void set_save_progress_hook(SaveProgressHook hook);
}  // namespace hooks

}  // namespace ember::safetensors
