// fail() and the in-memory input file of the fuzz bodies (fuzz_targets.h).
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "fuzz/fuzz_targets.h"

namespace ember_fuzz {

bool abort_on_failure = true;

void fail(const char* file, int line, const std::string& what) {
  std::string msg = std::string("ember fuzz: finding at ") + file + ":" + std::to_string(line) + ": " + what;
  if (abort_on_failure) {
    std::fprintf(stderr, "%s\n", msg.c_str());
    std::fflush(stderr);
    std::abort();
  }
  throw Failure(msg);
}

bool is_internal_error(const ember::Error& e) {
  return std::strncmp(e.what(), "ember internal error at ", 24) == 0;  // throw_internal's prefix
}

namespace {

struct InputFile {
  int fd = -1;
  std::string path;

  InputFile() {
#ifdef MFD_CLOEXEC
    fd = ::memfd_create("ember_fuzz_input", MFD_CLOEXEC);
    if (fd >= 0) {
      path = "/proc/self/fd/" + std::to_string(fd);
      if (::access(path.c_str(), R_OK) == 0) return;
      ::close(fd);
      fd = -1;
    }
#endif
    char tmpl[] = "/tmp/ember_fuzz_input.XXXXXX";
    fd = ::mkstemp(tmpl);
    if (fd < 0) {
      std::fprintf(stderr, "ember fuzz: cannot create an input file: %s\n", std::strerror(errno));
      std::abort();
    }
    path = tmpl;
  }
  ~InputFile() {
    if (fd < 0) return;
    ::close(fd);
    if (path.rfind("/proc/", 0) != 0) ::unlink(path.c_str());
  }
  InputFile(const InputFile&) = delete;
  InputFile& operator=(const InputFile&) = delete;
};

}  // namespace

std::string input_as_file(const uint8_t* data, size_t size) {
  static InputFile file;
  bool ok = ::ftruncate(file.fd, 0) == 0;
  size_t done = 0;
  while (ok && done < size) {
    ssize_t w = ::pwrite(file.fd, data + done, size - done, static_cast<off_t>(done));
    if (w < 0 && errno == EINTR) continue;
    ok = w > 0;
    if (ok) done += static_cast<size_t>(w);
  }
  if (!ok) {
    std::fprintf(stderr, "ember fuzz: cannot write the input file %s: %s\n", file.path.c_str(), std::strerror(errno));
    std::abort();
  }
  return file.path;
}

}  // namespace ember_fuzz
