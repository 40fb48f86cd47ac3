// SPDX-License-Identifier: MIT
#include "policy/grant.hpp"

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

std::optional<Access> parse_access(std::string_view text) {
  if (text == "read" || text == "ro") return Access::read;
  if (text == "read-write" || text == "rw") return Access::read_write;
  return std::nullopt;
}

}  // namespace portalfs::policy
