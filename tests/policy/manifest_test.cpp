// SPDX-License-Identifier: MIT
#include "policy/manifest.hpp"

#include <gtest/gtest.h>

#include "tests/testutil/process.hpp"

#include <cstdlib>
#include <filesystem>
#include <optional>
#include <ostream>

#include "tests/testutil/temp_dir.hpp"

namespace portalfs::policy {

void PrintTo(const Grant& g, std::ostream* os) {
  *os << "{" << to_string(g.kind) << " " << g.name << " at " << g.container_path << " "
      << to_string(g.access);
  if (g.owner) *os << " owner " << g.owner->uid << ":" << g.owner->gid;
  if (g.audit_reads) *os << " audit_reads";
  *os << "}";
}

namespace {

constexpr const char* kSource = "app.json";

Grant data(const std::string& path, std::optional<Owner> owner = std::nullopt) {
  return {GrantKind::data, path.substr(1), path, Access::read_write, owner};
}

Grant shared(const std::string& share, const std::string& path, Access access = Access::read_write,
             std::optional<Owner> owner = std::nullopt) {
  return {GrantKind::shared, share, path, access, owner};
}

std::string parse_error(const std::string& json, const ParseOptions& options = {}) {
  try {
    parse_manifest(json, kSource, options);
  } catch (const ManifestError& e) {
    return e.what();
  }
  return "(accepted)";
}

// ---------------------------------------------------------------------------------------------
// Accepted manifests: the whole resulting AppSpec.

struct ValidCase {
  std::string test_name;
  std::string json;
  std::string name;
  std::string version;
  std::vector<Grant> grants;
  std::string name_override = "";
};

void PrintTo(const ValidCase& c, std::ostream* os) { *os << c.test_name; }

class ManifestValid : public ::testing::TestWithParam<ValidCase> {};

TEST_P(ManifestValid, Parses) {
  const ValidCase& c = GetParam();
  AppSpec spec;
  try {
    spec = parse_manifest(c.json, kSource, {.name_override = c.name_override});
  } catch (const ManifestError& e) {
    FAIL() << e.what();
  }
  EXPECT_EQ(spec.name, c.name);
  EXPECT_EQ(spec.version, c.version);
  EXPECT_EQ(spec.grants, c.grants);
}

const std::string k63 = std::string(63, 'a');
const std::string kLongPath = "/" + std::string(4095, 'p');  // 4096 bytes

INSTANTIATE_TEST_SUITE_P(
    Rules, ManifestValid,
    ::testing::Values(
        // name
        ValidCase{"name_minimal", R"({"name": "app"})", "app", "", {}},
        ValidCase{"name_digits_and_dashes", R"({"name": "0-a-"})", "0-a-", "", {}},
        ValidCase{"name_63", R"({"name": ")" + k63 + R"("})", k63, "", {}},
        ValidCase{"name_derived_from_space", R"({"name": "home assistant"})", "home-assistant", "", {}},
        ValidCase{"name_derived_from_upper", R"({"name": "Moodle"})", "moodle", "", {}},
        ValidCase{"name_derived_run", R"({"name": "  My  App (beta)! "})", "my-app-beta", "", {}},
        ValidCase{"name_derived_underscore", R"({"name": "own_app"})", "own-app", "", {}},
        ValidCase{"name_derived_cut", R"({"name": ")" + std::string(70, 'A') + R"("})", k63, "", {}},
        ValidCase{"name_override", R"({"name": "app"})", "custom", "", {}, "custom"},
        ValidCase{"name_override_underivable", R"({"name": "!!!"})", "ok", "", {}, "ok"},
        ValidCase{"name_twice_last_wins", R"({"name": "first", "name": "second"})", "second", "", {}},
        // version
        ValidCase{"version_string", R"({"name": "a", "v": "1.2.3"})", "a", "1.2.3", {}},
        ValidCase{"version_float", R"({"name": "a", "v": 2.0})", "a", "2.0", {}},
        ValidCase{"version_float_fraction", R"({"name": "a", "v": 3.5})", "a", "3.5", {}},
        ValidCase{"version_integer", R"({"name": "a", "v": 3})", "a", "3", {}},
        ValidCase{"version_null", R"({"name": "a", "v": null})", "a", "", {}},
        ValidCase{"app_version", R"({"name": "a", "app_version": "1.16.0"})", "a", "1.16.0", {}},
        ValidCase{"app_version_over_v", R"({"app_version": "7", "name": "a", "v": "2.0"})", "a", "7", {}},
        ValidCase{"app_version_null_falls_back", R"({"name": "a", "v": "2.0", "app_version": null})", "a", "2.0", {}},
        // data_dirs shapes
        ValidCase{"data_dirs_missing", R"({"name": "a"})", "a", "", {}},
        ValidCase{"data_dirs_null", R"({"name": "a", "data_dirs": null})", "a", "", {}},
        ValidCase{"data_dirs_empty", R"({"name": "a", "data_dirs": []})", "a", "", {}},
        ValidCase{"data_string", R"({"name": "a", "data_dirs": ["/var/lib/mysql"]})", "a", "",
                  {data("/var/lib/mysql")}},
        ValidCase{"data_object", R"({"name": "a", "data_dirs": [{"path": "/data"}]})", "a", "", {data("/data")}},
        ValidCase{"data_owner", R"({"name": "a", "data_dirs": [{"path": "/data", "uid": 1000, "gid": 1001}]})",
                  "a", "", {data("/data", Owner{1000, 1001})}},
        ValidCase{"data_owner_keys_any_order", R"({"name": "a", "data_dirs": [{"gid": 2, "path": "/d", "uid": 1}]})",
                  "a", "", {data("/d", Owner{1, 2})}},
        ValidCase{"data_owner_limits", R"({"name": "a", "data_dirs": [{"path": "/d", "uid": 0, "gid": 4294967294}]})",
                  "a", "", {data("/d", Owner{0, 4294967294u})}},
        ValidCase{"data_shared_default_rw", R"({"name": "a", "data_dirs": [{"path": "/music", "shared_dir": "music"}]})",
                  "a", "", {shared("music", "/music")}},
        ValidCase{"data_shared_read",
                  R"({"name": "a", "data_dirs": [{"path": "/m", "shared_dir": "own_media", "access": "read"}]})",
                  "a", "", {shared("own_media", "/m", Access::read)}},
        ValidCase{"data_shared_read_write",
                  R"({"name": "a", "data_dirs": [{"access": "read-write", "shared_dir": "m", "path": "/m"}]})",
                  "a", "", {shared("m", "/m")}},
        // shared_dirs
        ValidCase{"shared_dirs_null", R"({"name": "a", "shared_dirs": null})", "a", "", {}},
        ValidCase{"shared_dirs_read",
                  R"({"name": "a", "shared_dirs": [{"name": "own_media", "path": "/media", "access": "read"}]})",
                  "a", "", {shared("own_media", "/media", Access::read)}},
        ValidCase{"shared_dirs_modes_that_protect",
                  R"({"name": "a", "shared_dirs": [{"name": "inbox", "path": "/in", "access": "create-only"},
                      {"name": "own_media", "path": "/media", "access": "no-delete"},
                      {"name": "own_documents", "path": "/docs", "access": "own-files"}]})",
                  "a", "", {shared("own_documents", "/docs", Access::own_files), shared("inbox", "/in", Access::create_only),
                            shared("own_media", "/media", Access::no_delete)}},
        ValidCase{"shared_dirs_sidecars",
                  R"({"name": "a", "shared_dirs": [{"name": "photos", "path": "/p", "access": "read", "sidecars": ["*.xmp", "*.nfo"]}]})",
                  "a", "", {[] { auto g = shared("photos", "/p", Access::read); g.sidecars = {"*.xmp", "*.nfo"}; return g; }()}},
        // Reads recorded per grant: on every kind of entry that is an object; false is the default.
        ValidCase{"audit_reads",
                  R"({"name": "a", "shared_dirs": [{"name": "photos", "path": "/p", "access": "read", "audit_reads": true},
                      {"name": "docs", "path": "/docs", "access": "read-write", "audit_reads": false}],
                      "data_dirs": [{"path": "/d", "audit_reads": true}, {"path": "/m", "shared_dir": "music", "audit_reads": true}]})",
                  "a", "",
                  {[] { auto g = data("/d"); g.audit_reads = true; return g; }(), shared("docs", "/docs"),
                   [] { auto g = shared("music", "/m"); g.audit_reads = true; return g; }(),
                   [] { auto g = shared("photos", "/p", Access::read); g.audit_reads = true; return g; }()}},
        ValidCase{"shared_dirs_owner",
                  R"({"name": "a", "shared_dirs": [{"name": "own_documents", "path": "/docs", "access": "read-write",
                      "uid": 1000, "gid": 100}]})",
                  "a", "", {shared("own_documents", "/docs", Access::read_write, Owner{1000, 100})}},
        ValidCase{"share_names", R"({"name": "a", "shared_dirs": [
                      {"name": "_private", "path": "/p", "access": "read"},
                      {"name": "a-b_c", "path": "/q", "access": "read"},
                      {"name": ")" + k63 + R"(", "path": "/r", "access": "read"}]})",
                  "a", "",
                  {shared("_private", "/p", Access::read), shared("a-b_c", "/q", Access::read),
                   shared(k63, "/r", Access::read)}},
        // container paths
        ValidCase{"path_trailing_slash", R"({"name": "a", "data_dirs": ["/data/"]})", "a", "", {data("/data")}},
        ValidCase{"path_dots_inside_names", R"({"name": "a", "data_dirs": ["/.config", "/a..b/...", "/x./.y"]})",
                  "a", "", {data("/.config"), data("/a..b/..."), data("/x./.y")}},
        ValidCase{"path_like_reserved", R"({"name": "a", "data_dirs": ["/procfs", "/system", "/devices", "/a/proc"]})",
                  "a", "", {data("/a/proc"), data("/devices"), data("/procfs"), data("/system")}},
        ValidCase{"path_4096_bytes", R"({"name": "a", "data_dirs": [")" + kLongPath + R"("]})", "a", "",
                  {data(kLongPath)}},
        ValidCase{"path_utf8_and_spaces", R"({"name": "a", "data_dirs": ["/Mes documents/été"]})", "a", "",
                  {data("/Mes documents/été")}},
        // nesting: parents first, whatever the document order
        ValidCase{"nesting_order", R"({"name": "a",
                      "data_dirs": ["/data/documents/x", {"path": "/data/documents", "shared_dir": "docs"},
                                    "/data-old", "/data", "/a/b"],
                      "shared_dirs": [{"name": "m", "path": "/a", "access": "read"}]})",
                  "a", "",
                  {shared("m", "/a", Access::read), data("/a/b"), data("/data"),
                   shared("docs", "/data/documents"), data("/data/documents/x"), data("/data-old")}},
        ValidCase{"same_dir_name_as_share", R"({"name": "a", "data_dirs": ["/media", {"path": "/m", "shared_dir": "media"}]})",
                  "a", "", {shared("media", "/m"), data("/media")}},
        // everything else at the top level is ignored
        ValidCase{"ignored_fields", R"({"v": "4.0", "name": "kanboard", "image": "kanboard/kanboard:latest",
                      "port": 80, "entrypoints": [{"container_port": 80}], "paths": {"": {"access": "private"}},
                      "env_vars": {"DEBUG": true}, "services": null, "lifecycle": {"always_on": false},
                      "store_info": {"hint": ["x"]}, "description": "d", "authentication": {},
                      "prefix_protected": "/x/", "whatever": [1, {"data_dirs": 5}]})",
                  "kanboard", "4.0", {}}),
    [](const auto& test_info) { return test_info.param.test_name; });

// ---------------------------------------------------------------------------------------------
// Refused manifests: the exact one-line message.

struct InvalidCase {
  std::string test_name;
  std::string json;
  std::string error;
  std::string name_override = "";
};

void PrintTo(const InvalidCase& c, std::ostream* os) { *os << c.test_name; }

class ManifestInvalid : public ::testing::TestWithParam<InvalidCase> {};

TEST_P(ManifestInvalid, IsRefusedWithOneLine) {
  const InvalidCase& c = GetParam();
  const std::string error = parse_error(c.json, {.name_override = c.name_override});
  EXPECT_EQ(error, c.error);
  EXPECT_EQ(error.find('\n'), std::string::npos);
}

// A manifest with one data_dirs entry.
std::string with_dir(const std::string& entry) { return R"({"name": "a", "data_dirs": [)" + entry + "]}"; }
std::string with_share(const std::string& entry) { return R"({"name": "a", "shared_dirs": [)" + entry + "]}"; }

const std::string kIdRange = "expected an integer from 0 to 4294967294";
const std::string kBadPathSegments = R"(expected a path without empty, "." or ".." segments)";

INSTANTIATE_TEST_SUITE_P(
    Rules, ManifestInvalid,
    ::testing::Values(
        // the top level
        InvalidCase{"top_array", "[1, 2]", "app.json: expected an object, got [1,2]"},
        InvalidCase{"top_string", R"("app")", R"(app.json: expected an object, got "app")"},
        InvalidCase{"top_null", "null", "app.json: expected an object, got null"},
        // name
        InvalidCase{"name_missing", R"({"data_dirs": []})", "app.json: /name: expected an app name, got nothing"},
        InvalidCase{"name_number", R"({"name": 42})", "app.json: /name: expected a string, got 42"},
        InvalidCase{"name_null", R"({"name": null})", "app.json: /name: expected a string, got null"},
        InvalidCase{"name_underivable", R"({"name": "!!!"})",
                    R"(app.json: /name: expected an app id or a name with a letter or digit, got "!!!")"},
        InvalidCase{"name_empty", R"({"name": ""})",
                    R"(app.json: /name: expected an app id or a name with a letter or digit, got "")"},
        InvalidCase{"name_non_ascii_only", R"({"name": "ÄÖÜ"})",
                    R"(app.json: /name: expected an app id or a name with a letter or digit, got "ÄÖÜ")"},
        InvalidCase{"name_missing_with_override", R"({})", "app.json: /name: expected an app name, got nothing", "ok"},
        InvalidCase{"override_upper", R"({"name": "a"})",
                    R"(app.json: name override: expected an app id matching [a-z0-9][a-z0-9-]{0,62}, got "Bad")", "Bad"},
        InvalidCase{"override_leading_dash", R"({"name": "a"})",
                    R"(app.json: name override: expected an app id matching [a-z0-9][a-z0-9-]{0,62}, got "-a")", "-a"},
        InvalidCase{"override_underscore", R"({"name": "a"})",
                    R"(app.json: name override: expected an app id matching [a-z0-9][a-z0-9-]{0,62}, got "a_b")", "a_b"},
        InvalidCase{"override_64", R"({"name": "a"})",
                    "app.json: name override: expected an app id matching [a-z0-9][a-z0-9-]{0,62}, got \"" +
                        std::string(59, 'a') + "...",
                    std::string(64, 'a')},
        // version
        InvalidCase{"v_bool", R"({"name": "a", "v": true})", "app.json: /v: expected a string or a number, got true"},
        InvalidCase{"app_version_object", R"({"name": "a", "app_version": {"x": 1}})",
                    R"(app.json: /app_version: expected a string or a number, got {"x":1})"},
        InvalidCase{"v_array", R"({"name": "a", "v": [2]})", "app.json: /v: expected a string or a number, got [2]"},
        // data_dirs
        InvalidCase{"data_dirs_object", R"({"name": "a", "data_dirs": {"a": 1}})",
                    R"(app.json: /data_dirs: expected an array, got {"a":1})"},
        InvalidCase{"data_dirs_string", R"({"name": "a", "data_dirs": "/data"})",
                    R"(app.json: /data_dirs: expected an array, got "/data")"},
        InvalidCase{"data_entry_number", with_dir("42"), "app.json: /data_dirs/0: expected a path or an object, got 42"},
        InvalidCase{"data_entry_null", with_dir("null"), "app.json: /data_dirs/0: expected a path or an object, got null"},
        InvalidCase{"data_entry_array", with_dir(R"(["/data"])"),
                    R"(app.json: /data_dirs/0: expected a path or an object, got ["/data"])"},
        InvalidCase{"data_string_relative", with_dir(R"("data")"),
                    R"(app.json: /data_dirs/0: expected an absolute path, got "data")"},
        InvalidCase{"data_path_relative_third",
                    R"({"name": "convos", "data_dirs": ["/a", {"path": "/b"}, {"path": "~/convos/data"}]})",
                    R"(app.json: /data_dirs/2/path: expected an absolute path, got "~/convos/data")"},
        InvalidCase{"data_path_number", with_dir(R"({"path": 1})"), "app.json: /data_dirs/0/path: expected a string, got 1"},
        InvalidCase{"data_path_missing", with_dir(R"({"uid": 1, "gid": 1})"),
                    "app.json: /data_dirs/0/path: expected a path, got nothing"},
        InvalidCase{"data_path_missing_shared", with_dir(R"({"shared_dir": "m"})"),
                    "app.json: /data_dirs/0/path: expected a path, got nothing"},
        InvalidCase{"data_unknown_key", with_dir(R"({"path": "/d", "owner": "me"})"),
                    R"(app.json: /data_dirs/0: expected one of path, uid, gid, shared_dir, audit_reads, got key "owner")"},
        InvalidCase{"data_access_without_share", with_dir(R"({"path": "/d", "access": "read"})"),
                    R"(app.json: /data_dirs/0: expected one of path, uid, gid, shared_dir, audit_reads, got key "access")"},
        InvalidCase{"data_shared_unknown_key", with_dir(R"({"path": "/m", "shared_dir": "m", "uid": 1})"),
                    R"(app.json: /data_dirs/0: expected one of path, shared_dir, access, sidecars, audit_reads, got key "uid")"},
        InvalidCase{"data_unknown_key_escaped", with_dir(R"({"path": "/d", "a\"b\n": 1})"),
                    R"(app.json: /data_dirs/0: expected one of path, uid, gid, shared_dir, audit_reads, got key "a\"b\n")"},
        // uid / gid
        InvalidCase{"uid_without_gid", with_dir(R"({"path": "/d", "uid": 1000})"),
                    "app.json: /data_dirs/0/gid: expected a gid to go with the uid, got nothing"},
        InvalidCase{"gid_without_uid", with_dir(R"({"path": "/d", "gid": 1000})"),
                    "app.json: /data_dirs/0/uid: expected a uid to go with the gid, got nothing"},
        InvalidCase{"uid_float", with_dir(R"({"path": "/d", "uid": 1000.0, "gid": 1})"),
                    "app.json: /data_dirs/0/uid: " + kIdRange + ", got 1000.0"},
        InvalidCase{"uid_exponent", with_dir(R"({"path": "/d", "uid": 1e3, "gid": 1})"),
                    "app.json: /data_dirs/0/uid: " + kIdRange + ", got 1000.0"},
        InvalidCase{"uid_negative", with_dir(R"({"path": "/d", "uid": -1, "gid": 1})"),
                    "app.json: /data_dirs/0/uid: " + kIdRange + ", got -1"},
        InvalidCase{"uid_string", with_dir(R"({"path": "/d", "uid": "1000", "gid": 1})"),
                    "app.json: /data_dirs/0/uid: " + kIdRange + R"(, got "1000")"},
        InvalidCase{"uid_null", with_dir(R"({"path": "/d", "uid": null, "gid": 1})"),
                    "app.json: /data_dirs/0/uid: " + kIdRange + ", got null"},
        InvalidCase{"uid_no_change_value", with_dir(R"({"path": "/d", "uid": 4294967295, "gid": 1})"),
                    "app.json: /data_dirs/0/uid: " + kIdRange + ", got 4294967295"},
        InvalidCase{"uid_64_bit", with_dir(R"({"path": "/d", "uid": 18446744073709551615, "gid": 1})"),
                    "app.json: /data_dirs/0/uid: " + kIdRange + ", got 18446744073709551615"},
        InvalidCase{"gid_too_big", with_dir(R"({"path": "/d", "uid": 1, "gid": 4294967296})"),
                    "app.json: /data_dirs/0/gid: " + kIdRange + ", got 4294967296"},
        InvalidCase{"shared_dirs_gid_float", with_share(R"({"name": "m", "path": "/m", "access": "read", "uid": 1, "gid": 2.5})"),
                    "app.json: /shared_dirs/0/gid: " + kIdRange + ", got 2.5"},
        InvalidCase{"shared_dirs_uid_without_gid", with_share(R"({"name": "m", "path": "/m", "access": "read", "uid": 1})"),
                    "app.json: /shared_dirs/0/gid: expected a gid to go with the uid, got nothing"},
        // share names
        InvalidCase{"share_upper", with_dir(R"({"path": "/m", "shared_dir": "Media"})"),
                    R"(app.json: /data_dirs/0/shared_dir: expected a share name matching [a-z0-9_][a-z0-9_-]{0,62}, got "Media")"},
        InvalidCase{"share_leading_dash", with_dir(R"({"path": "/m", "shared_dir": "-m"})"),
                    R"(app.json: /data_dirs/0/shared_dir: expected a share name matching [a-z0-9_][a-z0-9_-]{0,62}, got "-m")"},
        InvalidCase{"share_slash", with_dir(R"({"path": "/m", "shared_dir": "a/b"})"),
                    R"(app.json: /data_dirs/0/shared_dir: expected a share name matching [a-z0-9_][a-z0-9_-]{0,62}, got "a/b")"},
        InvalidCase{"share_dotdot", with_share(R"({"name": "..", "path": "/m", "access": "read"})"),
                    R"(app.json: /shared_dirs/0/name: expected a share name matching [a-z0-9_][a-z0-9_-]{0,62}, got "..")"},
        InvalidCase{"share_empty", with_dir(R"({"path": "/m", "shared_dir": ""})"),
                    R"(app.json: /data_dirs/0/shared_dir: expected a share name matching [a-z0-9_][a-z0-9_-]{0,62}, got "")"},
        InvalidCase{"share_64", with_dir(R"({"path": "/m", "shared_dir": ")" + std::string(64, 's') + R"("})"),
                    "app.json: /data_dirs/0/shared_dir: expected a share name matching [a-z0-9_][a-z0-9_-]{0,62}, got \"" +
                        std::string(59, 's') + "..."},
        InvalidCase{"share_null", with_dir(R"({"path": "/m", "shared_dir": null})"),
                    "app.json: /data_dirs/0/shared_dir: expected a string, got null"},
        // access
        InvalidCase{"access_rw", with_dir(R"({"path": "/m", "shared_dir": "m", "access": "rw"})"),
                    R"(app.json: /data_dirs/0/access: expected one of read, read-write, create-only, no-delete, own-files, got "rw")"},
        InvalidCase{"access_bool", with_share(R"({"name": "m", "path": "/m", "access": true})"),
                    R"(app.json: /shared_dirs/0/access: expected one of read, read-write, create-only, no-delete, own-files, got true)"},
        InvalidCase{"sidecars_with_read_write",
                    R"({"name": "a", "shared_dirs": [{"name": "p", "path": "/p", "access": "read-write", "sidecars": ["*.xmp"]}]})",
                    R"(app.json: /shared_dirs/0/access: expected "read" with sidecars (other modes write files already), got "read-write")"},
        InvalidCase{"sidecar_with_a_slash",
                    R"({"name": "a", "shared_dirs": [{"name": "p", "path": "/p", "access": "read", "sidecars": ["x/*.xmp"]}]})",
                    R"(app.json: /shared_dirs/0/sidecars/0: expected a file name pattern (like *.xmp: no '/', not . or .., 1 to 255 bytes), got "x/*.xmp")"},
        InvalidCase{"sidecars_empty",
                    R"({"name": "a", "shared_dirs": [{"name": "p", "path": "/p", "access": "read", "sidecars": []}]})",
                    R"(app.json: /shared_dirs/0/sidecars: expected an array of file name patterns, got [])"},
        InvalidCase{"audit_reads_string", with_share(R"({"name": "m", "path": "/m", "access": "read", "audit_reads": "yes"})"),
                    R"(app.json: /shared_dirs/0/audit_reads: expected true or false, got "yes")"},
        InvalidCase{"audit_reads_number", with_dir(R"({"path": "/d", "audit_reads": 1})"),
                    "app.json: /data_dirs/0/audit_reads: expected true or false, got 1"},
        InvalidCase{"audit_reads_null_in_a_shared_data_dir", with_dir(R"({"path": "/m", "shared_dir": "m", "audit_reads": null})"),
                    "app.json: /data_dirs/0/audit_reads: expected true or false, got null"},
        InvalidCase{"access_missing_in_shared_dirs", with_share(R"({"name": "m", "path": "/m"})"),
                    R"(app.json: /shared_dirs/0/access: expected one of read, read-write, create-only, no-delete, own-files, got nothing)"},
        // shared_dirs
        InvalidCase{"shared_dirs_object", R"({"name": "a", "shared_dirs": {}})",
                    "app.json: /shared_dirs: expected an array, got {}"},
        InvalidCase{"shared_dirs_entry_string", with_share(R"("own_media")"),
                    R"(app.json: /shared_dirs/0: expected an object, got "own_media")"},
        InvalidCase{"shared_dirs_name_missing", with_share(R"({"path": "/m", "access": "read"})"),
                    "app.json: /shared_dirs/0/name: expected a share name, got nothing"},
        InvalidCase{"shared_dirs_path_missing", with_share(R"({"name": "m", "access": "read"})"),
                    "app.json: /shared_dirs/0/path: expected a path, got nothing"},
        InvalidCase{"shared_dirs_unknown_key", with_share(R"({"name": "m", "path": "/m", "access": "read", "shared_dir": "x"})"),
                    R"(app.json: /shared_dirs/0: expected one of name, path, access, uid, gid, sidecars, audit_reads, got key "shared_dir")"},
        // container paths
        InvalidCase{"path_root", with_dir(R"("/")"), R"(app.json: /data_dirs/0: expected a path below /, got "/")"},
        InvalidCase{"path_double_slash", with_dir(R"("//")"), R"(app.json: /data_dirs/0: expected a path below /, got "//")"},
        InvalidCase{"path_empty", with_dir(R"("")"), R"(app.json: /data_dirs/0: expected an absolute path, got "")"},
        InvalidCase{"path_empty_segment", with_dir(R"("/a//b")"),
                    R"(app.json: /data_dirs/0: )" + kBadPathSegments + R"(, got "/a//b")"},
        InvalidCase{"path_two_trailing_slashes", with_dir(R"("/data//")"),
                    R"(app.json: /data_dirs/0: )" + kBadPathSegments + R"(, got "/data//")"},
        InvalidCase{"path_dot", with_dir(R"("/a/./b")"), R"(app.json: /data_dirs/0: )" + kBadPathSegments + R"(, got "/a/./b")"},
        InvalidCase{"path_dotdot", with_dir(R"("/a/../etc")"),
                    R"(app.json: /data_dirs/0: )" + kBadPathSegments + R"(, got "/a/../etc")"},
        InvalidCase{"path_trailing_dotdot", with_dir(R"("/a/..")"), R"(app.json: /data_dirs/0: )" + kBadPathSegments + R"(, got "/a/..")"},
        InvalidCase{"path_only_dot", with_dir(R"("/.")"), R"(app.json: /data_dirs/0: )" + kBadPathSegments + R"(, got "/.")"},
        InvalidCase{"path_nul", with_dir(R"("/a\u0000b")"), R"(app.json: /data_dirs/0: expected a path without control characters, got "/a\u0000b")"},
        InvalidCase{"path_newline", with_dir(R"("/data\n--privileged")"), R"(app.json: /data_dirs/0: expected a path without control characters, got "/data\n--privileged")"},
        InvalidCase{"path_tab", with_dir(R"("/a\tb")"), R"(app.json: /data_dirs/0: expected a path without control characters, got "/a\tb")"},
        InvalidCase{"path_4097_bytes", with_dir("\"/" + std::string(4096, 'p') + "\""),
                    "app.json: /data_dirs/0: expected a path of at most 4096 bytes, got \"/" + std::string(58, 'p') + "..."},
        InvalidCase{"path_proc", with_dir(R"("/proc")"), R"(app.json: /data_dirs/0: expected a path outside /proc, /sys and /dev, got "/proc")"},
        InvalidCase{"path_below_sys", with_dir(R"({"path": "/sys/fs/cgroup"})"),
                    R"(app.json: /data_dirs/0/path: expected a path outside /proc, /sys and /dev, got "/sys/fs/cgroup")"},
        InvalidCase{"path_dev_trailing_slash", with_dir(R"("/dev/")"),
                    R"(app.json: /data_dirs/0: expected a path outside /proc, /sys and /dev, got "/dev/")"},
        InvalidCase{"path_dev_shm", with_share(R"({"name": "m", "path": "/dev/shm", "access": "read"})"),
                    R"(app.json: /shared_dirs/0/path: expected a path outside /proc, /sys and /dev, got "/dev/shm")"},
        InvalidCase{"path_long_value_truncated", with_dir("\"" + std::string(100, 'r') + "\""),
                    "app.json: /data_dirs/0: expected an absolute path, got \"" + std::string(59, 'r') + "..."},
        InvalidCase{"path_truncated_on_utf8_boundary", with_dir("\"" + [] {
                      std::string s;
                      for (int i = 0; i < 50; ++i) s += "é";
                      return s;
                    }() + "\""),
                    "app.json: /data_dirs/0: expected an absolute path, got \"" + [] {
                      std::string s;
                      for (int i = 0; i < 29; ++i) s += "é";
                      return s;
                    }() + "..."},
        // duplicates, after normalisation and across all grants
        InvalidCase{"duplicate_path", with_dir(R"("/data", "/data")"),
                    R"(app.json: /data_dirs/1: expected a path not already granted by /data_dirs/0, got "/data")"},
        InvalidCase{"duplicate_path_trailing_slash", with_dir(R"("/data", {"path": "/data/", "uid": 1, "gid": 1})"),
                    R"(app.json: /data_dirs/1/path: expected a path not already granted by /data_dirs/0, got "/data/")"},
        InvalidCase{"duplicate_path_data_and_share", with_dir(R"({"path": "/m", "shared_dir": "m"}, "/m/")"),
                    R"(app.json: /data_dirs/1: expected a path not already granted by /data_dirs/0/path, got "/m/")"},
        InvalidCase{"duplicate_path_across_lists",
                    R"({"name": "a", "data_dirs": [{"path": "/media", "shared_dir": "music"}],
                        "shared_dirs": [{"name": "own_media", "path": "/media", "access": "read"}]})",
                    R"(app.json: /shared_dirs/0/path: expected a path not already granted by /data_dirs/0/path, got "/media")"},
        InvalidCase{"duplicate_share", with_dir(R"({"path": "/a", "shared_dir": "media"}, {"path": "/b", "shared_dir": "media"})"),
                    R"(app.json: /data_dirs/1/shared_dir: expected a share not already granted by /data_dirs/0/shared_dir, got "media")"},
        InvalidCase{"duplicate_share_across_lists",
                    R"({"shared_dirs": [{"name": "media", "path": "/a", "access": "read"}],
                        "data_dirs": [{"path": "/b", "shared_dir": "media"}], "name": "a"})",
                    R"(app.json: /data_dirs/0/shared_dir: expected a share not already granted by /shared_dirs/0/name, got "media")"},
        // the first error in document order wins
        InvalidCase{"first_error_data_dirs_before_name", R"({"data_dirs": ["rel"], "name": 5})",
                    R"(app.json: /data_dirs/0: expected an absolute path, got "rel")"},
        InvalidCase{"first_error_name_before_data_dirs", R"({"name": 5, "data_dirs": ["rel"]})",
                    "app.json: /name: expected a string, got 5"},
        InvalidCase{"first_error_inside_entry", with_dir(R"({"uid": -1, "path": "rel"})"),
                    "app.json: /data_dirs/0/uid: " + kIdRange + ", got -1"},
        InvalidCase{"first_error_unknown_key_before_bad_path", with_dir(R"({"x": 1, "path": "rel"})"),
                    R"(app.json: /data_dirs/0: expected one of path, uid, gid, shared_dir, audit_reads, got key "x")"},
        InvalidCase{"first_error_second_entry", with_dir(R"("/ok", "bad", "worse")"),
                    R"(app.json: /data_dirs/1: expected an absolute path, got "bad")"},
        InvalidCase{"first_error_override_before_document", "[]",
                    R"(app.json: name override: expected an app id matching [a-z0-9][a-z0-9-]{0,62}, got "X")", "X"}),
    [](const auto& test_info) { return test_info.param.test_name; });

// ---------------------------------------------------------------------------------------------
// Invalid JSON: "SOURCE:LINE:COL: reason", the position of the offending character.

struct SyntaxCase {
  std::string test_name;
  std::string json;
  std::string error;
};

void PrintTo(const SyntaxCase& c, std::ostream* os) { *os << c.test_name; }

class ManifestSyntax : public ::testing::TestWithParam<SyntaxCase> {};

TEST_P(ManifestSyntax, NamesLineAndColumn) {
  const SyntaxCase& c = GetParam();
  EXPECT_EQ(parse_error(c.json), c.error);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, ManifestSyntax,
    ::testing::Values(
        SyntaxCase{"empty", "", "app.json:1:1: syntax error while parsing value - unexpected end of input; expected '[', '{', or a literal"},
        SyntaxCase{"missing_value", R"({"name": })",
                   "app.json:1:10: syntax error while parsing value - unexpected '}'; expected '[', '{', or a literal"},
        SyntaxCase{"trailing_comma", "{\n  \"name\": \"a\",\n}\n",
                   "app.json:3:1: syntax error while parsing object key - unexpected '}'; expected string literal"},
        SyntaxCase{"unclosed", "{\n  \"name\": \"a\"\n",
                   "app.json:3:1: syntax error while parsing object - unexpected end of input; expected '}'"},
        SyntaxCase{"columns_count_characters", "{\n \"é\": x}",
                   "app.json:2:7: syntax error while parsing value - invalid literal; last read: '\"é\": x'"},
        SyntaxCase{"trailing_garbage", R"({"name": "a"} x)",
                   "app.json:1:15: syntax error while parsing value - invalid literal; last read: '\"a\"} x'; expected end of input"},
        SyntaxCase{"comment", "{\n// no comments in JSON\n\"name\": \"a\"}",
                   "app.json:2:1: syntax error while parsing object key - invalid literal; last read: '{<U+000A>/'; "
                   "expected string literal"},
        SyntaxCase{"number_overflow", R"({"name": "a", "v": 1e400})",
                   "app.json:1:24: number overflow parsing '1e400'"}),
    [](const auto& test_info) { return test_info.param.test_name; });

// Whether `text` is valid UTF-8 (RFC 3629), checked the slow, obvious way: decode, re-check.
bool valid_utf8(const std::string& text) {
  for (std::size_t i = 0; i < text.size();) {
    const auto b = [&](std::size_t k) { return static_cast<unsigned char>(text[k]); };
    const unsigned char lead = b(i);
    const std::size_t n = lead < 0x80 ? 1 : lead >> 5 == 0x6 ? 2 : lead >> 4 == 0xE ? 3 : lead >> 3 == 0x1E ? 4 : 0;
    if (n == 0 || i + n > text.size()) return false;
    uint32_t cp = n == 1 ? lead : lead & (0x7F >> n);
    for (std::size_t k = 1; k < n; ++k) {
      if ((b(i + k) & 0xC0) != 0x80) return false;
      cp = cp << 6 | (b(i + k) & 0x3F);
    }
    const uint32_t min = n == 1 ? 0 : n == 2 ? 0x80 : n == 3 ? 0x800 : 0x10000;
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += n;
  }
  return true;
}

// nlohmann quotes the bytes it read ("last read: '...'") raw: invalid UTF-8 and DEL in the file
// must come out as \xNN, and the message stays valid UTF-8 and one line.
TEST(ManifestSyntax, InvalidUtf8AndDelAreEscaped) {
  EXPECT_EQ(parse_error("{\"a\xff\": 1}"),
            R"(app.json:1:4: syntax error while parsing object key - invalid string: ill-formed UTF-8 byte; last read: '"a\xff'; expected string literal)");
  const std::vector<std::string> bad_inputs = {"{\"\xc3\": 1}", "{\"\xc0\xaf\"}", "{\"\xed\xa0\x80\"}", "{\"\xf4\x90\x80\x80\"}",
                                "[\"\xe2\x82\", \n]", "{\"\xc3\xa9\xc3\n\"}", "\xfe\xff", "{\"x\": \"" + std::string(200, '\xe9')};
  for (const auto& bad : bad_inputs) {
    const std::string error = parse_error(bad);
    EXPECT_TRUE(error.starts_with("app.json:1:")) << error;
    EXPECT_TRUE(valid_utf8(error)) << error;
    EXPECT_EQ(error.find('\n'), std::string::npos) << error;
  }
  // DEL, which nlohmann does not write as <U+007F> as it does the other controls.
  EXPECT_EQ(parse_error("{\x7f}"),
            R"(app.json:1:2: syntax error while parsing object key - invalid literal; last read: '{\x7f'; expected string literal)");
  EXPECT_EQ(parse_error("{\"name\": \"\x7f\"}"),
            R"(app.json: /name: expected an app id or a name with a letter or digit, got "\x7f")");
  // Valid UTF-8 is kept as it is.
  EXPECT_EQ(parse_error("{\"\xc3\xa9\xf0\x9f\x98\x80\": x}"),
            "app.json:1:8: syntax error while parsing value - invalid literal; last read: '\"\xc3\xa9\xf0\x9f\x98\x80\": x'");
}

TEST(ManifestSource, IsUsedVerbatim) {
  try {
    parse_manifest("{", "/srv/apps/x/app.json", {});
    FAIL() << "accepted";
  } catch (const ManifestError& e) {
    EXPECT_EQ(std::string(e.what()),
              "/srv/apps/x/app.json:1:2: syntax error while parsing object key - unexpected end of input; "
              "expected string literal");
  }
}

// ---------------------------------------------------------------------------------------------
// The single-value checks, on their own.

TEST(ManifestChecks, AppName) {
  for (const char* ok : {"a", "0", "home-assistant", "a-", "0-9", "abcdefghijklmnopqrstuvwxyz0123456789"}) {
    EXPECT_EQ(check_app_name(ok), std::nullopt) << ok;
  }
  EXPECT_EQ(check_app_name(k63), std::nullopt);
  for (const std::string& bad : {std::string(""), std::string("-a"), std::string("A"), std::string("a_b"),
                                 std::string("a b"), std::string("a.b"), std::string("é"), std::string(64, 'a'),
                                 std::string("a\0b", 3)}) {
    EXPECT_EQ(check_app_name(bad), "expected an app id matching [a-z0-9][a-z0-9-]{0,62}") << bad;
  }
}

TEST(ManifestChecks, ShareName) {
  for (const char* ok : {"a", "_", "_a", "own_media", "a-b", "0"}) EXPECT_EQ(check_share_name(ok), std::nullopt) << ok;
  EXPECT_EQ(check_share_name(k63), std::nullopt);
  for (const std::string& bad : {std::string(""), std::string("-a"), std::string("Media"), std::string("a/b"),
                                 std::string("."), std::string(".."), std::string(64, 'a')}) {
    EXPECT_EQ(check_share_name(bad), "expected a share name matching [a-z0-9_][a-z0-9_-]{0,62}") << bad;
  }
}

TEST(ManifestChecks, ContainerPath) {
  EXPECT_EQ(check_container_path("/data"), std::nullopt);
  EXPECT_EQ(check_container_path("/data/documents"), std::nullopt);
  EXPECT_EQ(check_container_path("/data/"), kBadPathSegments) << "not normalised";
  EXPECT_EQ(check_container_path("data"), "expected an absolute path");
  EXPECT_EQ(check_container_path("/"), "expected a path below /");
  EXPECT_EQ(check_container_path(std::string_view("/a\0", 3)), "expected a path without control characters");
  EXPECT_EQ(check_container_path("/a\x7f"), "expected a path without control characters");
  EXPECT_EQ(check_container_path("/My Documents"), std::nullopt);  // a space is a fine path
  EXPECT_EQ(check_container_path("/sys"), "expected a path outside /proc, /sys and /dev");
  EXPECT_EQ(check_container_path("/sysfs"), std::nullopt);
}

TEST(ManifestChecks, NormaliseDropsOneTrailingSlash) {
  EXPECT_EQ(normalise_container_path("/data/"), "/data");
  EXPECT_EQ(normalise_container_path("/data"), "/data");
  EXPECT_EQ(normalise_container_path("/data//"), "/data/");
  EXPECT_EQ(normalise_container_path("/"), "/");
  EXPECT_EQ(normalise_container_path("//"), "/");
  EXPECT_EQ(normalise_container_path(""), "");
}

TEST(ManifestChecks, AppIdFromName) {
  const struct {
    std::string name;
    std::string id;
  } cases[] = {
      {"home assistant", "home-assistant"},
      {"Moodle", "moodle"},
      {"node-red", "node-red"},
      {"  Ubuntu  Web_Shell ", "ubuntu-web-shell"},
      {"a - b", "a---b"},
      {"--a--", "a"},
      {"Grüße", "gr-e"},
      {"!!!", ""},
      {"", ""},
      {"ÄÖÜ", ""},
      {std::string(70, 'X'), std::string(63, 'x')},
      {std::string(62, 'a') + " b", std::string(62, 'a')},  // no '-' left at the cut
  };
  for (const auto& c : cases) {
    EXPECT_EQ(app_id_from_name(c.name), c.id) << c.name;
    if (!c.id.empty()) {
      EXPECT_EQ(check_app_name(c.id), std::nullopt) << c.id;
    }
  }
}

// The name as given is kept next to the id it gives, so that two names giving one id can be
// told apart (the mount manager refuses the second).
TEST(ManifestName, TheGivenNameIsKeptAsWritten) {
  const std::string stem(63, 'x');
  const struct {
    std::string json;
    std::string name_override;
    std::string id;
    std::string given;
  } cases[] = {
      {R"({"name": "app"})", "", "app", "app"},
      {R"({"name": "0-a-"})", "", "0-a-", "0-a-"},  // an id as it is, trailing '-' and all
      {R"({"name": "Home Assistant"})", "", "home-assistant", "Home Assistant"},
      {R"({"name": "a/b"})", "", "a-b", "a/b"},
      {R"({"name": "a\nb"})", "", "a-b", "a\nb"},
      {R"({"name": ")" + stem + R"(-1234567"})", "", stem, stem + "-1234567"},
      {R"({"name": ")" + stem + R"(-abcdefg"})", "", stem, stem + "-abcdefg"},
      {R"({"name": "app"})", "custom", "custom", "custom"},
      {R"({"name": "!!!"})", "ok", "ok", "ok"},
  };
  for (const auto& c : cases) {
    const AppSpec spec = parse_manifest(c.json, kSource, {.name_override = c.name_override});
    EXPECT_EQ(spec.name, c.id) << c.json;
    EXPECT_EQ(spec.given_name, c.given) << c.json;
  }
}

// ---------------------------------------------------------------------------------------------
// The platform's real manifests.

// The fixtures in the repository (every shape), and the store's corpus beside it when present.
std::filesystem::path manifests_dir() {
  return std::filesystem::path(testutil::source_dir()) / "tests" / "fixtures" / "manifests";
}

constexpr const char* kInvalidManifest = "ubuntu-web-shell-f0d6f20c.json";

// Every manifest of `dir` is accepted but the invalid one, refused with FILE:LINE:COL.
void expect_all_accepted_but_the_invalid_one(const std::filesystem::path& dir) {
  int accepted = 0;
  bool saw_invalid = false;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().extension() != ".json") continue;
    const std::string file = entry.path().string();
    const std::string text = testutil::read_file(file);
    if (entry.path().filename() == kInvalidManifest) {
      saw_invalid = true;
      try {
        parse_manifest(text, file);
        ADD_FAILURE() << file << " was accepted";
      } catch (const ManifestError& e) {
        EXPECT_EQ(std::string(e.what()),
                  file + ":9:1: syntax error while parsing object key - unexpected '}'; expected string literal");
      }
      continue;
    }
    try {
      const AppSpec spec = parse_manifest(text, file);
      EXPECT_EQ(check_app_name(spec.name), std::nullopt) << file;
      ++accepted;
    } catch (const ManifestError& e) {
      ADD_FAILURE() << e.what();
    }
  }
  EXPECT_TRUE(saw_invalid) << kInvalidManifest << " is missing from " << dir;
  EXPECT_GE(accepted, 30);
}

TEST(RealManifests, AllAcceptedButTheInvalidOne) { expect_all_accepted_but_the_invalid_one(manifests_dir()); }

TEST(RealManifests, OptionalSharedCorpusWhenPresent) {
  if (const auto dir = testutil::optional_corpus("manifests")) expect_all_accepted_but_the_invalid_one(*dir);
}

AppSpec parse_real(const std::string& file) {
  const auto path = manifests_dir() / file;
  return parse_manifest(testutil::read_file(path.string()), path.string());
}

TEST(RealManifests, Shapes) {
  const AppSpec filebrowser = parse_real("filebrowser-11c9b665.json");
  EXPECT_EQ(filebrowser.name, "filebrowser2");
  EXPECT_EQ(filebrowser.version, "2.0");
  EXPECT_EQ(filebrowser.grants,
            (std::vector<Grant>{data("/data"), shared("documents", "/data/documents"),
                                shared("media", "/data/media"), shared("music", "/data/music")}));

  const AppSpec bitwarden = parse_real("bitwarden-b995e46d.json");
  EXPECT_EQ(bitwarden.grants, std::vector<Grant>{data("/data")});

  const AppSpec huginn = parse_real("huginn-78aa0e96.json");
  EXPECT_EQ(huginn.version, "");
  EXPECT_EQ(huginn.grants, std::vector<Grant>{data("/var/lib/mysql", Owner{1001, 1001})});

  const AppSpec home_assistant = parse_real("homeassistant-f2bd91c5.json");
  EXPECT_EQ(home_assistant.name, "home-assistant");
  EXPECT_EQ(home_assistant.version, "4.0");

  const AppSpec moodle = parse_real("moodle-fd90185f.json");
  EXPECT_EQ(moodle.name, "moodle");
  EXPECT_TRUE(moodle.grants.empty());

  const AppSpec photoprism = parse_real("photoprism-148b778e.json");
  EXPECT_EQ(photoprism.grants, (std::vector<Grant>{shared("media", "/photoprism/originals"),
                                                   data("/photoprism/storage")}));
}

}  // namespace
}  // namespace portalfs::policy
