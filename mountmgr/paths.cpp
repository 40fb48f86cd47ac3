// SPDX-License-Identifier: MIT
#include "mountmgr/paths.hpp"

#include <stdexcept>

#include "common/beneath.hpp"

namespace portalfs::mountmgr {

std::vector<std::string> split_path(std::string_view relative) {
  // "" is one empty segment here, so that the checks below refuse it.
  return relative.empty() ? std::vector<std::string>{""} : common::split_components(relative);
}

void check_data_dir_name(std::string_view name) {
  constexpr auto kExpected = R"(expected a relative path without empty, "." or ".." segments)";
  if (name.empty() || name.find('\0') != std::string_view::npos) throw std::invalid_argument(kExpected);
  for (const auto& segment : split_path(name)) {
    if (segment.empty() || segment == "." || segment == "..") throw std::invalid_argument(kExpected);
  }
}

void check_host_path(std::string_view path) {
  if (!path.starts_with('/')) throw std::invalid_argument("expected an absolute host path");
  if (path.find('\0') != std::string_view::npos) throw std::invalid_argument("expected a host path without NUL");
  if (path.find(':') != std::string_view::npos) throw std::invalid_argument("expected a host path without ':'");
  for (const auto& segment : split_path(path.substr(1))) {
    if (segment == "." || segment == "..") {
      throw std::invalid_argument(R"(expected a host path without "." or ".." segments)");
    }
  }
}

std::string normalise_host_path(std::string_view path) {
  std::string out;
  out.reserve(path.size());
  for (char c : path) {
    if (c == '/' && !out.empty() && out.back() == '/') continue;
    out += c;
  }
  if (out.size() > 1 && out.back() == '/') out.pop_back();
  return out;
}

std::string normalise_lexically(std::string_view path) {
  std::vector<std::string> kept;
  if (path.starts_with('/')) path.remove_prefix(1);
  for (auto& segment : common::split_components(path)) {
    if (segment.empty() || segment == ".") continue;
    if (segment == "..") {
      if (!kept.empty()) kept.pop_back();
      continue;
    }
    kept.push_back(std::move(segment));
  }
  std::string out;
  for (const auto& segment : kept) out += "/" + segment;
  return out.empty() ? "/" : out;
}

bool path_within(std::string_view path, std::string_view base) {
  if (base == "/") return path.starts_with('/');
  return path.starts_with(base) && (path.size() == base.size() || path[base.size()] == '/');
}

std::optional<StorageSpec> split_storage_spec(std::string_view spec) {
  std::vector<std::string_view> parts;
  for (std::size_t colon; (colon = spec.find(':')) != std::string_view::npos; spec.remove_prefix(colon + 1)) {
    parts.push_back(spec.substr(0, colon));
  }
  parts.push_back(spec);
  if (parts.size() < 2 || parts.size() > 3 || (parts.size() == 3 && parts[2] != "ro" && parts[2] != "rw")) {
    return std::nullopt;
  }
  return StorageSpec{std::string(parts[0]), std::string(parts[1]), parts.size() == 3 && parts[2] == "ro"};
}

}  // namespace portalfs::mountmgr
