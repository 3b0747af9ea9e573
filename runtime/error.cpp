// Out-of-line throwing helpers, so that the checks inline to a compare and a cold call.
#include "runtime/error.h"

#include <cstdio>

namespace ember::detail {

void throw_error(std::string msg) { throw Error(std::move(msg)); }

void throw_internal(const char* file, int line, const char* cond, std::string msg) {
  std::string full = str_cat("ember internal error at ", file, ":", line, ": ", cond);
  if (!msg.empty()) full += ": " + msg;
  full += " (this is a bug in ember; please report it)";
  throw Error(std::move(full));
}

void log_warning(const std::string& msg) { std::fprintf(stderr, "[ember warning] %s\n", msg.c_str()); }

}  // namespace ember::detail
