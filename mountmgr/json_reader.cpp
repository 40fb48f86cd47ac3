// SPDX-License-Identifier: MIT
#include "mountmgr/json_reader.hpp"

#include "common/escape.hpp"

namespace portalfs::mountmgr {
FieldError::FieldError(std::string pointer, std::string problem)
    : std::runtime_error((pointer.empty() ? std::string("(document)") : pointer) + ": " + problem),
      pointer_(std::move(pointer)),
      problem_(std::move(problem)) {}

std::string describe_json(const nlohmann::json& value, std::size_t max) {
  std::string text = value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return common::truncated_utf8(std::move(text), max);
}

std::string pointer_token(std::string_view key) {
  std::string out;
  out.reserve(key.size());
  for (char c : key) {
    if (c == '~') {
      out += "~0";
    } else if (c == '/') {
      out += "~1";
    } else {
      out += c;
    }
  }
  return out;
}

void JsonReader::fail(std::string problem) const { throw FieldError(pointer_, std::move(problem)); }

void JsonReader::expect_object(std::initializer_list<std::string_view> allowed) const {
  if (!value_->is_object()) fail("expected an object, got " + describe_json(*value_));
  for (const auto& item : value_->items()) {
    bool known = false;
    for (auto key : allowed) known = known || key == item.key();
    if (!known) throw FieldError(pointer_ + "/" + pointer_token(item.key()), "unknown field");
  }
}

bool JsonReader::has(std::string_view key) const {
  return value_->is_object() && value_->contains(key);
}

JsonReader JsonReader::member(std::string_view key, std::string_view expected) const {
  if (!value_->is_object()) fail("expected an object, got " + describe_json(*value_));
  auto it = value_->find(key);
  std::string pointer = pointer_ + "/" + pointer_token(key);
  if (it == value_->end()) throw FieldError(std::move(pointer), "missing, expected " + std::string(expected));
  return JsonReader(*it, std::move(pointer));
}

std::optional<JsonReader> JsonReader::opt_member(std::string_view key) const {
  if (!has(key)) return std::nullopt;
  return member(key, "");
}

std::string JsonReader::string(std::string_view key) const {
  return member(key, "a string").as_string();
}

std::optional<std::string> JsonReader::opt_string(std::string_view key) const {
  if (!has(key)) return std::nullopt;
  return string(key);
}

bool JsonReader::boolean(std::string_view key) const {
  return member(key, "true or false").as_boolean();
}

std::optional<bool> JsonReader::opt_boolean(std::string_view key) const {
  if (!has(key)) return std::nullopt;
  return boolean(key);
}

int64_t JsonReader::integer(std::string_view key, int64_t min, int64_t max) const {
  return member(key, "an integer").as_integer(min, max);
}

std::string JsonReader::as_string() const {
  if (!value_->is_string()) fail("expected a string, got " + describe_json(*value_));
  return value_->get<std::string>();
}

bool JsonReader::as_boolean() const {
  if (!value_->is_boolean()) fail("expected true or false, got " + describe_json(*value_));
  return value_->get<bool>();
}

int64_t JsonReader::as_integer(int64_t min, int64_t max) const {
  const auto range = [&] {
    return "expected an integer from " + std::to_string(min) + " to " + std::to_string(max) +
           ", got " + describe_json(*value_);
  };
  if (value_->is_number_unsigned()) {
    const uint64_t v = value_->get<uint64_t>();
    if (v > static_cast<uint64_t>(max)) fail(range());
    const auto s = static_cast<int64_t>(v);
    if (s < min) fail(range());
    return s;
  }
  if (value_->is_number_integer()) {
    const int64_t v = value_->get<int64_t>();
    if (v < min || v > max) fail(range());
    return v;
  }
  fail(range());
}

void JsonReader::expect_array() const {
  if (!value_->is_array()) fail("expected an array, got " + describe_json(*value_));
}

JsonReader JsonReader::at(std::size_t index) const {
  return JsonReader((*value_)[index], pointer_ + "/" + std::to_string(index));
}

}  // namespace portalfs::mountmgr
