// Errors that cross into JavaScript. An ArgumentError says which argument was wrong and what
// was expected; the addon turns it into a TypeError or RangeError. Anything else that a
// backend throws (a CUDA failure, out of memory) becomes a plain Error with its message.
#pragma once
#include <stdexcept>
#include <string>

namespace sg {

class ArgumentError : public std::invalid_argument {
 public:
  enum class Kind { Type, Range };
  ArgumentError(Kind kind, const std::string& message)
      : std::invalid_argument(message), kind_(kind) {}
  Kind kind() const { return kind_; }

 private:
  Kind kind_;
};

inline ArgumentError typeError(const std::string& message) {
  return ArgumentError(ArgumentError::Kind::Type, message);
}
inline ArgumentError rangeError(const std::string& message) {
  return ArgumentError(ArgumentError::Kind::Range, message);
}

}  // namespace sg
