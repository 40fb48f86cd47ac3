// SPDX-License-Identifier: MIT
#include "policy/grant.hpp"

#include <fnmatch.h>

#include <algorithm>

namespace portalfs::policy {

// A string compare in which '/' sorts below every other byte is a segment-by-segment compare,
// since paths hold no NUL.
bool mount_order_less(const Grant& a, const Grant& b) {
  auto rank = [](char c) { return c == '/' ? 0 : static_cast<unsigned char>(c); };
  return std::lexicographical_compare(a.container_path.begin(), a.container_path.end(),
                                      b.container_path.begin(), b.container_path.end(),
                                      [&](char x, char y) { return rank(x) < rank(y); });
}

std::string view_dir_name(const Grant& grant) {
  // '%' is escaped first-class (not left as is) so that a literal "%2F" in a name can't collide
  // with an escaped '/': the mapping stays reversible.
  std::string out;
  out.reserve(grant.name.size());
  for (char c : grant.name) {
    if (c == '%') {
      out += "%25";
    } else if (c == '/') {
      out += "%2F";
    } else {
      out += c;
    }
  }
  return out;
}

const char* to_string(Access access) {
  switch (access) {
    case Access::read: return "read";
    case Access::read_write: return "read-write";
    case Access::create_only: return "create-only";
    case Access::no_delete: return "no-delete";
    case Access::own_files: return "own-files";
  }
  return "?";
}

const char* to_string(GrantKind kind) {
  switch (kind) {
    case GrantKind::data: return "data";
    case GrantKind::shared: return "shared";
    case GrantKind::host: return "host";
  }
  return "?";
}

namespace {
constexpr Access kAccesses[] = {Access::read, Access::read_write, Access::create_only,
                                Access::no_delete, Access::own_files};
}  // namespace

std::optional<Access> parse_access(std::string_view text, bool shorthands) {
  for (Access a : kAccesses) {
    if (text == to_string(a)) return a;
  }
  if (shorthands && text == "ro") return Access::read;
  if (shorthands && text == "rw") return Access::read_write;
  return std::nullopt;
}

std::string access_names() {
  std::string out;
  for (Access a : kAccesses) out += std::string(out.empty() ? "" : ", ") + to_string(a);
  return out;
}

bool writes(Access access) { return access != Access::read; }

bool mounted_read_only(const Grant& grant) { return !writes(grant.access) && grant.sidecars.empty(); }

std::optional<std::string> check_sidecar_pattern(std::string_view pattern) {
  constexpr const char* kExpected = "expected a file name pattern (like *.xmp: no '/', not . or .., 1 to 255 bytes)";
  if (pattern.empty() || pattern.size() > 255 || pattern == "." || pattern == ".." ||
      pattern.find_first_of(std::string_view("/\0", 2)) != std::string_view::npos) {
    return kExpected;
  }
  return std::nullopt;
}

bool is_sidecar(const std::vector<std::string>& patterns, std::string_view name) {
  const std::string n(name);
  for (const std::string& p : patterns) {
    // FNM_PERIOD: "*.xmp" does not match a hidden ".x.xmp" unless the pattern starts with '.'.
    if (::fnmatch(p.c_str(), n.c_str(), FNM_PERIOD) == 0) return true;
  }
  return false;
}

std::string short_text(Access access) {
  if (!writes(access)) return "ro";
  return protects(access) ? std::string("rw (") + to_string(access) + ")" : "rw";
}

namespace {
// What each mode allows, as rights.
enum Right : unsigned {
  kReadOwn = 1, kReadOthers = 2, kCreate = 4, kChangeOwn = 8, kChangeOthers = 16, kDeleteOthers = 32,
};
unsigned rights(Access access) {
  switch (access) {
    case Access::read: return kReadOwn | kReadOthers;
    case Access::read_write: return kReadOwn | kReadOthers | kCreate | kChangeOwn | kChangeOthers | kDeleteOthers;
    case Access::create_only: return kReadOwn | kCreate | kChangeOwn;
    case Access::no_delete: return kReadOwn | kReadOthers | kCreate | kChangeOwn | kChangeOthers;
    case Access::own_files: return kReadOwn | kReadOthers | kCreate | kChangeOwn;
  }
  return 0;
}
}  // namespace

bool narrower(Access to, Access from) { return (rights(from) & ~rights(to)) != 0; }

bool protects(Access access) {
  return access == Access::create_only || access == Access::no_delete || access == Access::own_files;
}

}  // namespace portalfs::policy
