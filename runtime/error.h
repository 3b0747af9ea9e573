// ember::Error and the checking macros used everywhere (EMBER_CHECK, EMBER_ASSERT).
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace ember {

// The one exception type of ember. Messages name the op, the offending shapes,
// devices or dtypes, and what was expected.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {

template <class... Args>
std::string str_cat(const Args&... args) {
  if constexpr (sizeof...(Args) == 0) {
    return std::string();
  } else {
    std::ostringstream os;
    (os << ... << args);
    return os.str();
  }
}

[[noreturn]] void throw_error(std::string msg);
[[noreturn]] void throw_internal(const char* file, int line, const char* cond, std::string msg);
// Logs to stderr; for destructors, which never throw.
void log_warning(const std::string& msg);

}  // namespace detail
}  // namespace ember

// What a user can get wrong: throws ember::Error with the message pieces concatenated.
#define EMBER_CHECK(cond, ...)                                          \
  do {                                                                  \
    if (!(cond)) [[unlikely]]                                           \
      ::ember::detail::throw_error(::ember::detail::str_cat(__VA_ARGS__)); \
  } while (0)

#define EMBER_THROW(...) ::ember::detail::throw_error(::ember::detail::str_cat(__VA_ARGS__))

// Our own invariants: a bug in ember if it fires. Still an ember::Error, never an abort.
#define EMBER_ASSERT(cond, ...)                                                            \
  do {                                                                                     \
    if (!(cond)) [[unlikely]]                                                              \
      ::ember::detail::throw_internal(__FILE__, __LINE__, #cond,                           \
                                      ::ember::detail::str_cat(__VA_ARGS__));              \
  } while (0)
