// SPDX-License-Identifier: MIT
#pragma once

// Strict reading of the JSON the mount manager owns (state.json, request args): every value is
// checked for its type, every object for unknown keys, and the first fault throws FieldError
// with the JSON pointer of the value and what was expected. The caller adds the context (the
// file, or the verb) and so makes the one-line message DESIGN.md asks for.

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace portalfs::mountmgr {

class FieldError : public std::runtime_error {
 public:
  FieldError(std::string pointer, std::string problem);
  /// RFC 6901 pointer of the faulty value ("" = the whole document).
  [[nodiscard]] const std::string& pointer() const { return pointer_; }
  /// "expected a string, got 3" / "missing, expected a string" / "unknown field".
  [[nodiscard]] const std::string& problem() const { return problem_; }

 private:
  std::string pointer_;
  std::string problem_;
};

/// A value as compact one-line JSON, cut to a readable length ("3", "\"x\"", "{...}"): `max`
/// bytes and "...".
std::string describe_json(const nlohmann::json& value, std::size_t max = 60);

/// One reference token of a JSON pointer: '~' -> "~0", '/' -> "~1".
std::string pointer_token(std::string_view key);

/// A view of one value at a known pointer. Getters by key read a member of an object.
class JsonReader {
 public:
  explicit JsonReader(const nlohmann::json& value, std::string pointer = "")
      : value_(&value), pointer_(std::move(pointer)) {}

  [[nodiscard]] const nlohmann::json& json() const { return *value_; }
  [[nodiscard]] const std::string& pointer() const { return pointer_; }
  [[noreturn]] void fail(std::string problem) const;

  /// Requires an object whose keys are all in `allowed`.
  void expect_object(std::initializer_list<std::string_view> allowed) const;
  [[nodiscard]] bool has(std::string_view key) const;

  /// A member; `expected` names what it should be, for the "missing" message.
  [[nodiscard]] JsonReader member(std::string_view key, std::string_view expected) const;
  [[nodiscard]] std::optional<JsonReader> opt_member(std::string_view key) const;

  [[nodiscard]] std::string string(std::string_view key) const;
  [[nodiscard]] std::optional<std::string> opt_string(std::string_view key) const;
  [[nodiscard]] bool boolean(std::string_view key) const;
  [[nodiscard]] std::optional<bool> opt_boolean(std::string_view key) const;
  [[nodiscard]] int64_t integer(std::string_view key, int64_t min, int64_t max) const;

  /// The value itself, type-checked.
  [[nodiscard]] std::string as_string() const;
  [[nodiscard]] bool as_boolean() const;
  [[nodiscard]] int64_t as_integer(int64_t min, int64_t max) const;
  void expect_array() const;
  [[nodiscard]] std::size_t size() const { return value_->size(); }
  [[nodiscard]] JsonReader at(std::size_t index) const;

 private:
  const nlohmann::json* value_;
  std::string pointer_;
};

}  // namespace portalfs::mountmgr
