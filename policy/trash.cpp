// SPDX-License-Identifier: MIT
#include "policy/trash.hpp"

#include <charconv>
#include <cstdio>
#include <ctime>

#include <nlohmann/json.hpp>

namespace portalfs::policy {
namespace {

struct Unit {
  char suffix;
  int64_t seconds;
};
// Largest first: format_retention picks the first that divides.
constexpr Unit kUnits[] = {{'d', 86400}, {'h', 3600}, {'m', 60}, {'s', 1}};
constexpr int64_t kMaxRetention = int64_t{3650} * 86400;

}  // namespace

std::optional<int64_t> parse_retention(std::string_view text, std::string* expected) {
  auto fail = [&]() -> std::optional<int64_t> {
    if (expected) *expected = "expected a retention like 30d, 12h, 45m or 90s (at most 3650d), or off";
    return std::nullopt;
  };
  if (text == "off") return 0;
  if (text.size() < 2 || text.front() < '1' || text.front() > '9') return fail();
  int64_t count = 0;
  const char* end = text.data() + text.size() - 1;
  auto [stop, ec] = std::from_chars(text.data(), end, count);
  if (ec != std::errc{} || stop != end) return fail();
  for (const Unit& u : kUnits) {
    if (*end != u.suffix) continue;
    if (count > kMaxRetention / u.seconds) return fail();
    return count * u.seconds;
  }
  return fail();
}

std::string format_retention(int64_t seconds) {
  if (seconds <= 0) return "off";
  for (const Unit& u : kUnits) {
    if (seconds % u.seconds == 0) return std::to_string(seconds / u.seconds) + u.suffix;
  }
  return std::to_string(seconds) + "s";
}

std::string trash_record_json(const TrashRecord& r) {
  return nlohmann::json({{"path", r.path}, {"app", r.app}, {"view", r.view}, {"deleted_at", r.deleted_at}, {"kind", r.kind}})
             .dump() + "\n";
}

std::optional<TrashRecord> parse_trash_record(std::string_view text, std::string* problem) {
  auto fail = [&](const std::string& why) -> std::optional<TrashRecord> {
    if (problem) *problem = why;
    return std::nullopt;
  };
  const auto doc = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!doc.is_object()) return fail("not a JSON object");
  TrashRecord r;
  for (const auto& [key, value] : doc.items()) {
    std::string* field = key == "path" ? &r.path : key == "app" ? &r.app : key == "view" ? &r.view
                         : key == "kind" ? &r.kind : nullptr;
    if (field && value.is_string()) {
      *field = value.get<std::string>();
    } else if (key == "deleted_at" && value.is_number_integer()) {
      r.deleted_at = value.get<int64_t>();
    } else {
      return fail("unexpected or wrong-typed field \"" + key + "\"");
    }
  }
  if (r.path.empty() || r.kind.empty()) return fail("\"path\" or \"kind\" missing");
  return r;
}

std::string make_trash_id(int64_t unix_seconds, uint32_t random) {
  const std::time_t t = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%d-%H%M%S-", &tm);
  char hex[9];
  std::snprintf(hex, sizeof hex, "%08x", random);
  return std::string(buf) + hex;
}

bool valid_trash_id(std::string_view id) {
  // "YYYYmmdd-HHMMSS-xxxxxxxx"
  if (id.size() != 24 || id[8] != '-' || id[15] != '-') return false;
  for (std::size_t i = 0; i < id.size(); ++i) {
    if (i == 8 || i == 15) continue;
    const char c = id[i];
    const bool digit = c >= '0' && c <= '9';
    if (i < 15 ? !digit : !(digit || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

}  // namespace portalfs::policy
