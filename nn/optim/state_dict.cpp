// StateValue printing and the checked StateReader.
#include "nn/optim/state_dict.h"

#include <charconv>
#include <cmath>
#include <sstream>
#include <system_error>
#include <utility>

#include "runtime/error.h"

namespace ember {

namespace {
// The shortest text that reads back as `v`.
std::string shortest(double v) {
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  return ec == std::errc() ? std::string(buf, end) : std::to_string(v);
}
}  // namespace

std::string state_value_str(const StateValue& value) {
  std::ostringstream os;
  if (const auto* b = std::get_if<bool>(&value)) {
    os << (*b ? "true" : "false");
  } else if (const auto* i = std::get_if<int64_t>(&value)) {
    os << *i;
  } else if (const auto* d = std::get_if<double>(&value)) {
    os << shortest(*d);
  } else {
    const auto& v = std::get<std::vector<double>>(value);
    os << "[";
    for (size_t k = 0; k < v.size(); ++k) os << (k ? ", " : "") << shortest(v[k]);
    os << "]";
  }
  return os.str();
}

StateReader::StateReader(const StateValueMap& map, std::string where) : map_(map), where_(std::move(where)) {}

const StateValue& StateReader::get(const std::string& key) {
  auto it = map_.find(key);
  EMBER_CHECK(it != map_.end(), where_, ": the entry '", key, "' is missing");
  read_.insert(key);
  return it->second;
}

void StateReader::wrong_type(const std::string& key, const char* expected) const {
  EMBER_THROW(where_, ": the entry '", key, "' should be ", expected, ", got ", state_value_str(map_.at(key)));
}

bool StateReader::boolean(const std::string& key) {
  const StateValue& v = get(key);
  if (const auto* b = std::get_if<bool>(&v)) return *b;
  wrong_type(key, "a bool");
}

int64_t StateReader::integer(const std::string& key) {
  const StateValue& v = get(key);
  if (const auto* i = std::get_if<int64_t>(&v)) return *i;
  wrong_type(key, "an integer");
}

double StateReader::number(const std::string& key) {
  const StateValue& v = get(key);
  if (const auto* d = std::get_if<double>(&v)) return *d;
  if (const auto* i = std::get_if<int64_t>(&v)) return static_cast<double>(*i);
  wrong_type(key, "a number");
}

std::vector<double> StateReader::numbers(const std::string& key, size_t size) {
  const StateValue& v = get(key);
  const auto* list = std::get_if<std::vector<double>>(&v);
  if (!list) wrong_type(key, size ? detail::str_cat("a list of ", size, " numbers").c_str() : "a list of numbers");
  EMBER_CHECK(size == 0 || list->size() == size, where_, ": the entry '", key, "' should hold ", size, " numbers, got ",
              list->size(), " (", state_value_str(v), ")");
  return *list;
}

void StateReader::finish(const std::string& expected) const {
  std::string unknown;
  for (const auto& [key, value] : map_)
    if (!read_.count(key)) unknown += detail::str_cat(unknown.empty() ? "" : ", ", "'", key, "'");
  EMBER_CHECK(unknown.empty(), where_, ": unexpected entries ", unknown, " (expected ", expected, ")");
}

}  // namespace ember
