// The safetensors reader (header validation, pread of tensor bytes) and the atomic writer.
#include "nn/safetensors.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <string_view>
#include <tuple>
#include <utility>

#include "runtime/error.h"

namespace ember::safetensors {
namespace {

using Json = nlohmann::json;
using OrderedJson = nlohmann::ordered_json;

constexpr uint64_t kMaxHeaderBytes = uint64_t{100} << 20;
constexpr const char* kMetadataKey = "__metadata__";

struct DtypeInfo {
  const char* name;
  size_t size;  // bytes per element; 0 for the sub-byte types
};

// In the order of the reference implementation's `Dtype` enum, which is by increasing alignment;
// the writer orders tensors by descending position here, then by name (its `prepare`).
constexpr DtypeInfo kDtypes[] = {
    {"BOOL", 1},    {"F4", 0},      {"F6_E2M3", 0}, {"F6_E3M2", 0},     {"U8", 1},          {"I8", 1},
    {"F8_E5M2", 1}, {"F8_E4M3", 1}, {"F8_E8M0", 1}, {"F8_E4M3FNUZ", 1}, {"F8_E5M2FNUZ", 1}, {"I16", 2},
    {"U16", 2},     {"F16", 2},     {"BF16", 2},    {"I32", 4},         {"U32", 4},         {"F32", 4},
    {"C64", 8},     {"F64", 8},     {"I64", 8},     {"U64", 8},
};

// Index into kDtypes, or -1.
int dtype_rank(std::string_view name) {
  for (size_t i = 0; i < std::size(kDtypes); ++i)
    if (name == kDtypes[i].name) return static_cast<int>(i);
  return -1;
}

// Empty when dtype is a whole-byte type ember knows, else why not.
std::string dtype_problem(const std::string& dtype) {
  int rank = dtype_rank(dtype);
  if (rank < 0) return detail::str_cat("unknown dtype \"", dtype, "\"");
  if (kDtypes[rank].size == 0)
    return detail::str_cat("dtype \"", dtype,
                           "\" packs several elements per byte, which ember does not support");
  return {};
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// numel * elem_size, or false when it overflows u64.
bool checked_nbytes(const std::vector<int64_t>& shape, uint64_t elem_size, uint64_t* out) {
  uint64_t n = elem_size;
  for (int64_t d : shape)
    if (__builtin_mul_overflow(n, static_cast<uint64_t>(d), &n)) return false;
  *out = n;
  return true;
}

std::string errno_str(int err) { return std::strerror(err); }

// Reads up to n bytes at offset; returns how many it got (fewer only at end of file).
size_t pread_full(int fd, void* dst, size_t n, uint64_t offset, int* err) {
  auto* p = static_cast<char*>(dst);
  size_t got = 0;
  while (got < n) {
    ssize_t r = ::pread(fd, p + got, n - got, static_cast<off_t>(offset + got));
    if (r < 0) {
      if (errno == EINTR) continue;
      *err = errno;
      return got;
    }
    if (r == 0) break;
    got += static_cast<size_t>(r);
  }
  *err = 0;
  return got;
}

// ---- reading ---------------------------------------------------------------------------------

[[noreturn]] void open_fail(const std::string& path, const std::string& problem) {
  EMBER_THROW("safetensors: cannot load '", path, "': ", problem);
}

// nlohmann keeps the last of duplicate keys silently; this parser callback sees every key and
// rejects a repeat within the same object (a repeated tensor name would hide a tensor's bytes).
// It also records the top-level keys in file order, which nlohmann's std::map-backed objects lose.
// nlohmann copies the callback, so the state lives outside it.
struct KeyScan {
  const std::string* path;
  std::vector<std::set<std::string>> open_objects;
  std::vector<std::string> top_level_keys;
};

bool scan_keys(KeyScan& s, Json::parse_event_t event, const Json& parsed) {
  switch (event) {
    case Json::parse_event_t::object_start:
      s.open_objects.emplace_back();
      break;
    case Json::parse_event_t::object_end:
      if (!s.open_objects.empty()) s.open_objects.pop_back();
      break;
    case Json::parse_event_t::key: {
      if (s.open_objects.empty()) break;
      const auto& key = parsed.get_ref<const Json::string_t&>();
      if (!s.open_objects.back().insert(key).second) {
        if (s.open_objects.size() == 1)
          open_fail(*s.path, detail::str_cat("duplicate tensor name \"", key, "\" in the header"));
        open_fail(*s.path, detail::str_cat("duplicate key \"", key, "\" in an object of the header"));
      }
      if (s.open_objects.size() == 1) s.top_level_keys.push_back(key);
      break;
    }
    default:
      break;
  }
  return true;
}

// A non-negative JSON integer that fits in int64, else the reason it is not one.
bool as_u63(const Json& v, uint64_t* out) {
  if (!v.is_number_unsigned()) return false;  // negatives are number_integer, 1.0 is number_float
  uint64_t u = v.get<uint64_t>();
  if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return false;
  *out = u;
  return true;
}

TensorEntry parse_entry(const std::string& path, const std::string& name, const Json& v, uint64_t data_size) {
  auto bad = [&](const std::string& problem) {
    open_fail(path, detail::str_cat("tensor \"", name, "\": ", problem));
  };
  if (!v.is_object()) bad(detail::str_cat("expected an object, got ", v.type_name()));
  TensorEntry e;
  e.name = name;

  auto dt = v.find("dtype");
  if (dt == v.end()) bad("missing \"dtype\"");
  if (!dt->is_string()) bad(detail::str_cat("\"dtype\" must be a string, got ", dt->type_name()));
  e.dtype = dt->get<std::string>();
  if (std::string p = dtype_problem(e.dtype); !p.empty()) bad(p);

  auto sh = v.find("shape");
  if (sh == v.end()) bad("missing \"shape\"");
  if (!sh->is_array()) bad(detail::str_cat("\"shape\" must be an array, got ", sh->type_name()));
  for (const Json& d : *sh) {
    uint64_t u;
    if (!as_u63(d, &u)) bad(detail::str_cat("\"shape\" must hold non-negative integers, got ", sh->dump()));
    e.shape.push_back(static_cast<int64_t>(u));
  }

  auto off = v.find("data_offsets");
  if (off == v.end()) bad("missing \"data_offsets\"");
  if (!off->is_array() || off->size() != 2 || !as_u63((*off)[0], &e.begin) || !as_u63((*off)[1], &e.end))
    bad(detail::str_cat("\"data_offsets\" must be [begin, end] with non-negative integers, got ",
                        off->dump()));
  if (e.begin > e.end) bad(detail::str_cat("data_offsets [", e.begin, ", ", e.end, "] have begin > end"));
  if (e.end > data_size)
    bad(detail::str_cat("data_offsets [", e.begin, ", ", e.end, "] end beyond the data buffer of ", data_size,
                        " bytes"));

  uint64_t nbytes;
  if (!checked_nbytes(e.shape, dtype_size(e.dtype), &nbytes))
    bad(detail::str_cat("shape ", shape_str(e.shape), " of dtype ", e.dtype,
                        " has a byte size that overflows 64 bits"));
  if (nbytes != e.end - e.begin)
    bad(detail::str_cat("shape ", shape_str(e.shape), " of dtype ", e.dtype, " needs ", nbytes,
                        " bytes but data_offsets [", e.begin, ", ", e.end, "] hold ", e.end - e.begin));
  return e;
}

}  // namespace

size_t dtype_size(const std::string& dtype) {
  std::string problem = dtype_problem(dtype);
  EMBER_CHECK(problem.empty(), "safetensors::dtype_size: ", problem);
  return kDtypes[dtype_rank(dtype)].size;
}

struct File::Descriptor {
  explicit Descriptor(int f) : fd(f) {}
  Descriptor(const Descriptor&) = delete;
  Descriptor& operator=(const Descriptor&) = delete;
  ~Descriptor() { ::close(fd); }
  int fd;
};

File File::open(const std::string& path) {
  int raw = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (raw < 0) open_fail(path, errno_str(errno));
  auto fd = std::make_shared<const Descriptor>(raw);

  struct stat st {};
  if (::fstat(raw, &st) != 0) open_fail(path, detail::str_cat("fstat failed: ", errno_str(errno)));
  if (!S_ISREG(st.st_mode)) open_fail(path, "not a regular file");
  const auto file_size = static_cast<uint64_t>(st.st_size);
  if (file_size < 8)
    open_fail(path,
              detail::str_cat("file is ", file_size, " bytes, shorter than the 8-byte header length field"));

  unsigned char len_bytes[8];
  int err = 0;
  if (pread_full(raw, len_bytes, 8, 0, &err) != 8)
    open_fail(path, detail::str_cat("cannot read the header length: ",
                                    err ? errno_str(err) : "unexpected end of file"));
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | len_bytes[i];
  if (n > kMaxHeaderBytes)
    open_fail(path, detail::str_cat("header length ", n, " exceeds the limit of ", kMaxHeaderBytes,
                                    " bytes (100 MiB)"));
  if (n > file_size - 8)
    open_fail(path, detail::str_cat("header length ", n, " exceeds the ", file_size - 8,
                                    " bytes that follow the length field (truncated file?)"));

  std::string text(n, '\0');
  if (pread_full(raw, text.data(), n, 8, &err) != n)
    open_fail(path,
              detail::str_cat("cannot read the header: ", err ? errno_str(err) : "unexpected end of file"));

  Json header;
  KeyScan scan{&path, {}, {}};
  try {
    header = Json::parse(text.begin(), text.end(), [&scan](int, Json::parse_event_t event, Json& parsed) {
      return scan_keys(scan, event, parsed);
    });
  } catch (const Json::exception& e) {
    open_fail(path, detail::str_cat("header is not valid JSON: ", e.what()));
  }
  if (!header.is_object())
    open_fail(path, detail::str_cat("header must be a JSON object, got ", header.type_name()));

  File f;
  f.path_ = path;
  f.data_start_ = 8 + n;
  f.data_size_ = file_size - 8 - n;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == kMetadataKey) {
      if (!it->is_object())
        open_fail(path, detail::str_cat("\"__metadata__\" must be an object, got ", it->type_name()));
      for (auto m = it->begin(); m != it->end(); ++m) {
        if (!m->is_string())
          open_fail(path, detail::str_cat("\"__metadata__\" value of \"", m.key(),
                                          "\" must be a string, got ", m->type_name()));
        f.metadata_.emplace(m.key(), m->get<std::string>());
      }
      continue;
    }
    f.entries_.push_back(parse_entry(path, it.key(), *it, f.data_size_));
  }

  // See Note [safetensors layout]: sorted by offset, the ranges must tile the data buffer. Ties
  // (zero-byte tensors) keep the header's order, so entries() lists a file's tensors in the
  // order its writer laid them out.
  std::unordered_map<std::string_view, size_t> position;
  for (size_t i = 0; i < scan.top_level_keys.size(); ++i) position.emplace(scan.top_level_keys[i], i);
  std::sort(f.entries_.begin(), f.entries_.end(), [&](const TensorEntry& a, const TensorEntry& b) {
    return std::tuple(a.begin, a.end, position.at(a.name)) < std::tuple(b.begin, b.end, position.at(b.name));
  });
  uint64_t covered = 0;
  const TensorEntry* prev = nullptr;
  for (const TensorEntry& e : f.entries_) {
    if (e.begin < covered)
      open_fail(path,
                detail::str_cat("byte ranges of tensors \"", prev->name, "\" [", prev->begin, ", ", prev->end,
                                "] and \"", e.name, "\" [", e.begin, ", ", e.end, "] overlap"));
    if (e.begin > covered)
      open_fail(path,
                detail::str_cat("bytes [", covered, ", ", e.begin,
                                ") of the data buffer belong to no tensor (a hole before \"", e.name, "\")"));
    covered = e.end;
    prev = &e;
  }
  if (covered != f.data_size_)
    open_fail(path, detail::str_cat("bytes [", covered, ", ", f.data_size_,
                                    ") at the end of the data buffer belong to no tensor"));

  for (size_t i = 0; i < f.entries_.size(); ++i) f.index_.emplace(f.entries_[i].name, i);
  f.fd_ = std::move(fd);
  return f;
}

const TensorEntry* File::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &entries_[it->second];
}

void File::read(const TensorEntry& e, void* dst) const {
  EMBER_CHECK(e.begin <= e.end && e.end <= data_size_, "safetensors: reading tensor \"", e.name, "\" from '",
              path_, "': data_offsets [", e.begin, ", ", e.end, "] do not lie in the data buffer of ",
              data_size_, " bytes");
  const uint64_t n = e.end - e.begin;
  if (n == 0) return;
  EMBER_CHECK(fd_ != nullptr, "safetensors: reading tensor \"", e.name, "\" from a moved-from File");
  int err = 0;
  size_t got = pread_full(fd_->fd, dst, n, data_start_ + e.begin, &err);
  EMBER_CHECK(got == n, "safetensors: reading tensor \"", e.name, "\" from '", path_,
              "': ", err ? errno_str(err) : "unexpected end of file (was the file changed after opening?)",
              " after ", got, " of ", n, " bytes");
}

// ---- writing ---------------------------------------------------------------------------------

namespace {

std::atomic<hooks::SaveProgressHook> g_save_progress_hook{nullptr};

[[noreturn]] void save_fail(const std::string& path, const std::string& problem) {
  EMBER_THROW("safetensors::save: '", path, "': ", problem);
}

// JSON strings must be UTF-8; nlohmann throws type_error 316 when dumping one that is not.
void check_utf8(const std::string& path, const std::string& s, const char* what) {
  try {
    (void)Json(s).dump();
  } catch (const Json::exception&) {
    save_fail(path, detail::str_cat(what, " \"", s, "\" is not valid UTF-8"));
  }
}

// The temporary file of an atomic write: closed and unlinked unless committed.
class TempFile {
 public:
  explicit TempFile(const std::string& target) : target_(target) {
    std::random_device rd;
    uint64_t r = (uint64_t{rd()} << 32) | rd();
    char suffix[64];
    std::snprintf(suffix, sizeof suffix, ".tmp.%ld.%016llx", static_cast<long>(::getpid()),
                  static_cast<unsigned long long>(r));
    path_ = target + suffix;
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd_ < 0)
      save_fail(target_, detail::str_cat("cannot create temporary file '", path_, "': ", errno_str(errno)));
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  ~TempFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!committed_) ::unlink(path_.c_str());
  }

  void write(const void* data, size_t n) {
    auto* p = static_cast<const char*>(data);
    while (n > 0) {
      ssize_t w = ::write(fd_, p, n);
      if (w < 0) {
        if (errno == EINTR) continue;
        fail("write", errno);
      }
      p += w;
      n -= static_cast<size_t>(w);
    }
  }

  const std::string& path() const { return path_; }

  // fsync, close, rename over the target, fsync the directory so the rename itself is durable.
  void commit() {
    if (::fsync(fd_) != 0) fail("fsync", errno);
    int fd = std::exchange(fd_, -1);
    if (::close(fd) != 0) fail("close", errno);
    if (::rename(path_.c_str(), target_.c_str()) != 0) fail("rename", errno);
    committed_ = true;

    size_t slash = target_.rfind('/');
    std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : target_.substr(0, slash);
    int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
      save_fail(target_, detail::str_cat("written, but cannot open its directory '", dir,
                                         "' to fsync it: ", errno_str(errno)));
    // Some file systems cannot fsync a directory (EINVAL); the rename is then as durable as it gets.
    int rc = ::fsync(dfd);
    int fsync_err = errno;
    ::close(dfd);
    if (rc != 0 && fsync_err != EINVAL)
      save_fail(target_, detail::str_cat("written, but fsync of its directory '", dir,
                                         "' failed: ", errno_str(fsync_err)));
  }

 private:
  [[noreturn]] void fail(const char* step, int err) {
    save_fail(target_, detail::str_cat(step, " of temporary file '", path_, "' failed: ", errno_str(err)));
  }

  std::string target_;
  std::string path_;
  int fd_ = -1;
  bool committed_ = false;
};

}  // namespace

void save(const std::string& path, const std::vector<TensorView>& tensors,
          const std::map<std::string, std::string>& metadata) {
  std::set<std::string_view> names;
  for (const TensorView& t : tensors) {
    auto bad = [&](const std::string& problem) {
      save_fail(path, detail::str_cat("tensor \"", t.name, "\": ", problem));
    };
    if (t.name == kMetadataKey) bad("the name \"__metadata__\" is reserved for the metadata");
    if (!names.insert(t.name).second) bad("duplicate tensor name");
    check_utf8(path, t.name, "tensor name");
    if (std::string p = dtype_problem(t.dtype); !p.empty()) bad(p);
    for (int64_t d : t.shape)
      if (d < 0) bad(detail::str_cat("shape ", shape_str(t.shape), " has a negative dimension"));
    uint64_t nbytes;
    if (!checked_nbytes(t.shape, dtype_size(t.dtype), &nbytes))
      bad(detail::str_cat("shape ", shape_str(t.shape), " has a byte size that overflows 64 bits"));
    if (nbytes != t.nbytes)
      bad(detail::str_cat("shape ", shape_str(t.shape), " of dtype ", t.dtype, " needs ", nbytes,
                          " bytes, got nbytes = ", t.nbytes));
    if (t.nbytes > 0 && t.data == nullptr) bad("data is null");
  }
  for (const auto& [k, v] : metadata) {
    check_utf8(path, k, "metadata key");
    check_utf8(path, v, "metadata value");
  }

  // The reference's `prepare`: descending dtype alignment (its enum order), then by name.
  std::vector<const TensorView*> order;
  for (const TensorView& t : tensors) order.push_back(&t);
  std::sort(order.begin(), order.end(), [](const TensorView* a, const TensorView* b) {
    int ra = dtype_rank(a->dtype), rb = dtype_rank(b->dtype);
    if (ra != rb) return ra > rb;
    return a->name < b->name;  // char_traits<char> compares as unsigned char: byte order, as Rust
  });

  // serde_json's compact output is what ordered_json::dump() produces: no spaces, keys in
  // insertion order, the same escapes for control characters, UTF-8 passed through.
  OrderedJson header = OrderedJson::object();
  if (!metadata.empty()) {
    OrderedJson m = OrderedJson::object();
    for (const auto& [k, v] : metadata) m[k] = v;
    header[kMetadataKey] = std::move(m);
  }
  uint64_t offset = 0;
  for (const TensorView* t : order) {
    OrderedJson e = OrderedJson::object();
    e["dtype"] = t->dtype;
    e["shape"] = t->shape;
    e["data_offsets"] = {offset, offset + t->nbytes};
    offset += t->nbytes;
    header[t->name] = std::move(e);
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // so the data buffer starts 8-byte aligned

  unsigned char len_bytes[8];
  for (int i = 0; i < 8; ++i) len_bytes[i] = static_cast<unsigned char>(uint64_t{text.size()} >> (8 * i));

  TempFile tmp(path);
  const hooks::SaveProgressHook hook = g_save_progress_hook.load();
  const uint64_t total = 8 + text.size() + offset;
  uint64_t written = 8 + text.size();
  tmp.write(len_bytes, 8);
  tmp.write(text.data(), text.size());
  if (hook) hook(tmp.path(), written, total);
  for (const TensorView* t : order) {
    if (t->nbytes > 0) tmp.write(t->data, t->nbytes);
    written += t->nbytes;
    if (hook) hook(tmp.path(), written, total);
  }
  tmp.commit();
}

namespace hooks {
void set_save_progress_hook(SaveProgressHook hook) { g_save_progress_hook.store(hook); }
}  // namespace hooks

}  // namespace ember::safetensors
