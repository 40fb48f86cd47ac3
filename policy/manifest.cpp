// SPDX-License-Identifier: MIT
// app.json -> AppSpec.
//
// The text is parsed whole into an ordered_json, whose objects keep document order, and then
// walked once in that order; the first bad value throws. That is all "first error wins" needs,
// and it keeps each check next to the value it checks. fail() is the one place that builds the
// one-line message "SOURCE: POINTER: expected WHAT, got FOUND". A key given twice in one object
// keeps its last value, as the platform's own (Python) parser does.
//
// Container paths (check_container_path), after normalise_container_path() dropped one
// trailing '/': absolute; at most 4096 bytes; no control character; no empty, "." or ".." segment; not "/";
// not /proc, /sys, /dev or below them (the container runtime owns those). No two grants of one
// app may have the same path; nesting (/data and /data/documents) is fine.

#include "policy/manifest.hpp"

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "common/escape.hpp"
#include "policy/id_map.hpp"

namespace portalfs::policy {
namespace {

using Json = nlohmann::ordered_json;

constexpr std::size_t kMaxIdLength = 63;
constexpr std::size_t kMaxPathBytes = 4096;
constexpr std::size_t kMaxFoundBytes = 60;
constexpr std::size_t kMaxReasonBytes = 160;

// A found value as compact JSON, one line of valid UTF-8 whatever it holds: dump escapes control
// characters but DEL, and `replace` keeps invalid UTF-8 from a name override from throwing.
std::string describe(const Json& value) {
  const std::string text = value.dump(-1, ' ', false, Json::error_handler_t::replace);
  return common::escape_for_message(common::truncated_utf8(text, kMaxFoundBytes),
                                    common::Escape::controls_and_invalid_utf8);
}

std::string json_string(std::string_view text) { return describe(Json(std::string(text))); }

bool is_lower_alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

bool is_id(std::string_view name, bool allow_underscore) {
  auto head = [&](char c) { return is_lower_alnum(c) || (allow_underscore && c == '_'); };
  return !name.empty() && name.size() <= kMaxIdLength && head(name.front()) &&
         std::all_of(name.begin(), name.end(), [&](char c) { return head(c) || c == '-'; });
}

// Where and why a text is not JSON. parse() reports a number too big for a double
// (out_of_range.406) without a position; this SAX pass over the same text gets one for every
// error. It runs only after parse() failed.
class SyntaxErrorLocator final : public nlohmann::json_sax<Json> {
 public:
  explicit SyntaxErrorLocator(std::string reason) : reason_(std::move(reason)) {}

  bool null() override { return true; }
  bool boolean(bool) override { return true; }
  bool number_integer(number_integer_t) override { return true; }
  bool number_unsigned(number_unsigned_t) override { return true; }
  bool number_float(number_float_t, const string_t&) override { return true; }
  bool string(string_t&) override { return true; }
  bool binary(binary_t&) override { return true; }
  bool start_object(std::size_t) override { return true; }
  bool key(string_t&) override { return true; }
  bool end_object() override { return true; }
  bool start_array(std::size_t) override { return true; }
  bool end_array() override { return true; }
  bool parse_error(std::size_t position, const std::string&, const Json::exception& ex) override {
    position_ = position;
    reason_ = ex.what();
    return false;
  }

  /// The byte count nlohmann had read: the offending byte is number `position` (1-based), or
  /// one past the end at the end of the input. Same value as parse_error::byte.
  [[nodiscard]] std::size_t position() const { return position_; }
  /// Without nlohmann's "[json.exception.parse_error.101] parse error at line 9, column 1: ".
  [[nodiscard]] std::string short_reason() const {
    std::string_view reason = reason_;
    if (reason.starts_with("[json.exception.")) {
      const auto end = reason.find("] ");
      if (end != std::string_view::npos) reason.remove_prefix(end + 2);
    }
    if (reason.starts_with("parse error")) {
      const auto end = reason.find(": ");
      if (end != std::string_view::npos) reason.remove_prefix(end + 2);
    }
    // nlohmann quotes the raw bytes it read ("last read: '...'"; C0 controls it writes as
    // <U+000A> itself, but not DEL), and a message must be one line of valid UTF-8.
    return common::escape_for_message(common::truncated_utf8(std::string(reason), kMaxReasonBytes),
                                      common::Escape::controls_and_invalid_utf8);
  }

 private:
  std::size_t position_ = 0;
  std::string reason_;
};

[[noreturn]] void throw_syntax_error(std::string_view text, std::string_view source,
                                     const Json::exception& parse_failure) {
  SyntaxErrorLocator locator(parse_failure.what());  // the SAX pass fails the same way and
                                                     // replaces this with a located reason
  Json::sax_parse(text.begin(), text.end(), &locator);
  // Lines from 1; columns from 1 and in characters (UTF-8 lead bytes), as editors count them.
  const std::size_t offset = locator.position() > 0 ? locator.position() - 1 : 0;
  const std::string_view before = text.substr(0, std::min(offset, text.size()));
  const std::size_t newline = before.rfind('\n');
  const std::string_view line_text =
      newline == std::string_view::npos ? before : before.substr(newline + 1);
  const auto line = 1 + std::count(before.begin(), before.end(), '\n');
  const auto column = 1 + std::count_if(line_text.begin(), line_text.end(),
                                        [](char c) { return !common::is_utf8_continuation(c); });
  throw ManifestError(std::string(source) + ":" + std::to_string(line) + ":" +
                      std::to_string(column) + ": " + locator.short_reason());
}

// One walk over a parsed manifest. Every read_* checks one value and throws on the first fault.
class ManifestReader {
 public:
  explicit ManifestReader(std::string_view source) : source_(source) {}

  AppSpec read(const Json& root, const ParseOptions& options) {
    // A bad override is the caller's mistake, reported before anything in the document.
    const std::string& override_name = options.name_override;
    if (!override_name.empty()) {
      if (auto expected = check_app_name(override_name)) {
        fail("name override", *expected, json_string(override_name));
      }
    }
    if (!root.is_object()) fail("", "expected an object", describe(root));

    std::optional<std::string> name;  // as written
    std::optional<std::string> v;
    std::optional<std::string> app_version;
    for (const auto& item : root.items()) {
      const std::string& key = item.key();
      if (key == "name") {
        name = read_name(item.value(), override_name.empty());
      } else if (key == "v") {
        v = read_version(item.value(), "/v");
      } else if (key == "app_version") {
        app_version = read_version(item.value(), "/app_version");
      } else if (key == "data_dirs") {
        read_data_dirs(item.value());
      } else if (key == "shared_dirs") {
        read_shared_dirs(item.value());
      }
    }
    if (!name) fail("/name", "expected an app name", "nothing");

    spec_.given_name = override_name.empty() ? *name : override_name;
    spec_.name = override_name.empty() ? id_of(*name) : override_name;
    // Newer manifests carry both: then "v" is the schema's version and "app_version" the app's.
    spec_.version = app_version ? *app_version : v.value_or("");
    std::stable_sort(spec_.grants.begin(), spec_.grants.end(), mount_order_less);
    return std::move(spec_);
  }

 private:
  [[noreturn]] void fail(std::string_view where, std::string_view expected,
                         std::string_view found) const {
    std::string message(source_);
    message += ": ";
    if (!where.empty()) {
      message += where;
      message += ": ";
    }
    message += expected;
    message += ", got ";
    message += found;
    throw ManifestError(message);
  }

  // The name as written, which must give an app id unless an override gives one.
  std::string read_name(const Json& value, bool must_yield_id) {
    if (!value.is_string()) fail("/name", "expected a string", describe(value));
    const auto& name = value.get_ref<const std::string&>();
    if (must_yield_id && id_of(name).empty()) {
      fail("/name", "expected an app id or a name with a letter or digit", describe(value));
    }
    return name;
  }

  // The app id: the name itself when it is one, else derived from it ("home assistant").
  static std::string id_of(const std::string& name) {
    return !check_app_name(name) ? name : app_id_from_name(name);
  }

  // A string, or a number kept as its JSON text (2.0 -> "2.0"); null is no version.
  std::optional<std::string> read_version(const Json& value, std::string_view where) {
    if (value.is_null()) return std::nullopt;
    if (value.is_string()) return value.get<std::string>();
    if (value.is_number()) return value.dump();
    fail(where, "expected a string or a number", describe(value));
  }

  void read_data_dirs(const Json& value) {
    if (value.is_null()) return;
    if (!value.is_array()) fail("/data_dirs", "expected an array", describe(value));
    for (std::size_t i = 0; i < value.size(); ++i) {
      read_data_dir(value[i], "/data_dirs/" + std::to_string(i));
    }
  }

  // "/path" | {"path", "uid"?, "gid"?, "audit_reads"?} |
  // {"path", "shared_dir", "access"?, "sidecars"?, "audit_reads"?}
  void read_data_dir(const Json& entry, const std::string& where) {
    if (entry.is_string()) {
      const std::string path = read_path(entry, where);
      spec_.grants.push_back(
          {GrantKind::data, path.substr(1), path, Access::read_write, std::nullopt});
      return;
    }
    if (!entry.is_object()) fail(where, "expected a path or an object", describe(entry));

    const bool shared = entry.contains("shared_dir");
    std::optional<std::string> path;
    std::string share;
    Access access = Access::read_write;
    std::vector<std::string> sidecars;
    std::optional<uint32_t> uid;
    std::optional<uint32_t> gid;
    bool audit_reads = false;
    for (const auto& item : entry.items()) {
      const std::string& key = item.key();
      if (key == "path") {
        path = read_path(item.value(), where + "/path");
      } else if (shared && key == "shared_dir") {
        share = read_share(item.value(), where + "/shared_dir");
      } else if (shared && key == "access") {
        access = read_access(item.value(), where + "/access");
      } else if (shared && key == "sidecars") {
        sidecars = read_sidecars(item.value(), where + "/sidecars");
      } else if (!shared && key == "uid") {
        uid = read_id(item.value(), where + "/uid");
      } else if (!shared && key == "gid") {
        gid = read_id(item.value(), where + "/gid");
      } else if (key == "audit_reads") {
        audit_reads = read_bool(item.value(), where + "/audit_reads");
      } else {
        fail(where, shared ? "expected one of path, shared_dir, access, sidecars, audit_reads"
                           : "expected one of path, uid, gid, shared_dir, audit_reads",
             "key " + json_string(key));
      }
    }
    if (!path) fail(where + "/path", "expected a path", "nothing");
    if (shared) {
      check_sidecars_need_read(sidecars, access, where);
      spec_.grants.push_back({GrantKind::shared, share, *path, access, std::nullopt, sidecars, audit_reads});
    } else {
      spec_.grants.push_back({GrantKind::data, path->substr(1), *path, Access::read_write,
                              read_owner(uid, gid, where), {}, audit_reads});
    }
  }

  void read_shared_dirs(const Json& value) {
    if (value.is_null()) return;
    if (!value.is_array()) fail("/shared_dirs", "expected an array", describe(value));
    for (std::size_t i = 0; i < value.size(); ++i) {
      read_shared_dir(value[i], "/shared_dirs/" + std::to_string(i));
    }
  }

  // {"name", "path", "access", "uid"?, "gid"?, "sidecars"?, "audit_reads"?}
  void read_shared_dir(const Json& entry, const std::string& where) {
    if (!entry.is_object()) fail(where, "expected an object", describe(entry));
    std::optional<std::string> share;
    std::optional<std::string> path;
    std::optional<Access> access;
    std::vector<std::string> sidecars;
    std::optional<uint32_t> uid;
    std::optional<uint32_t> gid;
    bool audit_reads = false;
    for (const auto& item : entry.items()) {
      const std::string& key = item.key();
      if (key == "name") {
        share = read_share(item.value(), where + "/name");
      } else if (key == "path") {
        path = read_path(item.value(), where + "/path");
      } else if (key == "access") {
        access = read_access(item.value(), where + "/access");
      } else if (key == "uid") {
        uid = read_id(item.value(), where + "/uid");
      } else if (key == "gid") {
        gid = read_id(item.value(), where + "/gid");
      } else if (key == "sidecars") {
        sidecars = read_sidecars(item.value(), where + "/sidecars");
      } else if (key == "audit_reads") {
        audit_reads = read_bool(item.value(), where + "/audit_reads");
      } else {
        fail(where, "expected one of name, path, access, uid, gid, sidecars, audit_reads",
             "key " + json_string(key));
      }
    }
    if (!share) fail(where + "/name", "expected a share name", "nothing");
    if (!path) fail(where + "/path", "expected a path", "nothing");
    if (!access) fail(where + "/access", "expected one of " + access_names(), "nothing");
    check_sidecars_need_read(sidecars, *access, where);
    spec_.grants.push_back(
        {GrantKind::shared, *share, *path, *access, read_owner(uid, gid, where), sidecars, audit_reads});
  }

  // true or false; not 1 nor "true".
  bool read_bool(const Json& value, const std::string& where) {
    if (!value.is_boolean()) fail(where, "expected true or false", describe(value));
    return value.get<bool>();
  }

  // ["*.xmp", ...]: file name patterns, at least one.
  std::vector<std::string> read_sidecars(const Json& value, const std::string& where) {
    if (!value.is_array() || value.empty()) fail(where, "expected an array of file name patterns", describe(value));
    std::vector<std::string> out;
    for (std::size_t i = 0; i < value.size(); ++i) {
      const Json& p = value[i];
      const std::string at = where + "/" + std::to_string(i);
      if (!p.is_string()) fail(at, "expected a string", describe(p));
      if (auto expected = check_sidecar_pattern(p.get_ref<const std::string&>())) {
        fail(at, *expected, describe(p));
      }
      out.push_back(p.get<std::string>());
    }
    return out;
  }

  // Sidecars widen a read grant; any other mode writes already.
  void check_sidecars_need_read(const std::vector<std::string>& sidecars, Access access,
                                const std::string& where) {
    if (!sidecars.empty() && access != Access::read) {
      fail(where + "/access", "expected \"read\" with sidecars (other modes write files already)",
           json_string(to_string(access)));
    }
  }

  // A normalised container path no other grant of this app has.
  std::string read_path(const Json& value, const std::string& where) {
    if (!value.is_string()) fail(where, "expected a string", describe(value));
    std::string path = normalise_container_path(value.get_ref<const std::string&>());
    if (auto expected = check_container_path(path)) {
      fail(where, *expected, describe(value));
    }
    if (auto [it, fresh] = paths_.emplace(path, where); !fresh) {
      fail(where, "expected a path not already granted by " + it->second, describe(value));
    }
    return path;
  }

  // A share name not granted before: two grants of one share would be two views of it.
  std::string read_share(const Json& value, const std::string& where) {
    if (!value.is_string()) fail(where, "expected a string", describe(value));
    const auto& share = value.get_ref<const std::string&>();
    if (auto expected = check_share_name(share)) {
      fail(where, *expected, describe(value));
    }
    if (auto [it, fresh] = shares_.emplace(share, where); !fresh) {
      fail(where, "expected a share not already granted by " + it->second, describe(value));
    }
    return share;
  }

  // The modes' names only: parse_access()'s "ro"/"rw" are command-line shorthands, not part
  // of the file format.
  Access read_access(const Json& value, const std::string& where) {
    if (value.is_string()) {
      if (auto access = parse_access(value.get<std::string>(), false)) return *access;
    }
    fail(where, "expected one of " + access_names(), describe(value));
  }

  // A JSON integer, not 1000.0 nor "1000": a float or a string id is a typo worth refusing.
  // Non-negative integers parse as number_unsigned.
  uint32_t read_id(const Json& value, const std::string& where) {
    if (!value.is_number_unsigned() || value.get<uint64_t>() > kMaxId) {
      fail(where, "expected an integer from 0 to " + std::to_string(kMaxId), describe(value));
    }
    return static_cast<uint32_t>(value.get<uint64_t>());
  }

  std::optional<Owner> read_owner(std::optional<uint32_t> uid, std::optional<uint32_t> gid,
                                  const std::string& where) const {
    if (uid && !gid) fail(where + "/gid", "expected a gid to go with the uid", "nothing");
    if (gid && !uid) fail(where + "/uid", "expected a uid to go with the gid", "nothing");
    if (!uid) return std::nullopt;
    return Owner{*uid, *gid};
  }

  std::string_view source_;
  AppSpec spec_;
  std::map<std::string, std::string> paths_;   // container path -> pointer of its first grant
  std::map<std::string, std::string> shares_;  // share name -> pointer of its first grant
};

}  // namespace

AppSpec parse_manifest(std::string_view json_text, std::string_view source,
                       const ParseOptions& options) {
  Json root;
  try {
    root = Json::parse(json_text.begin(), json_text.end());
  } catch (const Json::exception& e) {
    throw_syntax_error(json_text, source, e);
  }
  return ManifestReader(source).read(root, options);
}

std::optional<std::string> check_app_name(std::string_view name) {
  if (is_id(name, false)) return std::nullopt;
  return "expected an app id matching [a-z0-9][a-z0-9-]{0,62}";
}

std::optional<std::string> check_share_name(std::string_view name) {
  if (is_id(name, true)) return std::nullopt;
  return "expected a share name matching [a-z0-9_][a-z0-9_-]{0,62}";
}

std::optional<std::string> check_container_path(std::string_view path) {
  // Control characters (NUL, newline, tab...) have no business in a mount target, and a
  // newline would split the lines `portalctl mounts` prints into extra arguments.
  if (std::any_of(path.begin(), path.end(), [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; })) {
    return "expected a path without control characters";
  }
  if (path.size() > kMaxPathBytes) return "expected a path of at most 4096 bytes";
  if (!path.starts_with('/')) return "expected an absolute path";
  if (path == "/") return "expected a path below /";
  for (std::size_t start = 1; start <= path.size();) {
    const std::size_t end = std::min(path.find('/', start), path.size());
    const std::string_view segment = path.substr(start, end - start);
    if (segment.empty() || segment == "." || segment == "..") {
      return R"(expected a path without empty, "." or ".." segments)";
    }
    start = end + 1;
  }
  for (std::string_view reserved : {"/proc", "/sys", "/dev"}) {
    const std::string_view rest = path.substr(std::min(reserved.size(), path.size()));
    if (path.starts_with(reserved) && (rest.empty() || rest.front() == '/')) {
      return "expected a path outside /proc, /sys and /dev";
    }
  }
  return std::nullopt;
}

std::string normalise_container_path(std::string_view path) {
  if (path.size() > 1 && path.ends_with('/')) path.remove_suffix(1);
  return std::string(path);
}

std::string app_id_from_name(std::string_view name) {
  std::string id;
  bool in_run = false;  // inside a run of characters that became one '-'
  for (char c : name) {
    const char lower = c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
    const bool keep = is_lower_alnum(lower) || lower == '-';
    if (keep) {
      id += lower;
    } else if (!in_run) {
      id += '-';
    }
    in_run = !keep;
  }
  auto trim_end = [&] { id.erase(id.find_last_not_of('-') + 1); };
  id.erase(0, id.find_first_not_of('-'));
  trim_end();
  if (id.size() > kMaxIdLength) {
    id.resize(kMaxIdLength);
    trim_end();  // the cut must not leave a trailing '-' either
  }
  return id;
}

}  // namespace portalfs::policy
