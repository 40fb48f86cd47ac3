// SPDX-License-Identifier: MIT
// libFuzzer target: app.json text -> policy::parse_manifest(), then what the mount manager derives
// from an accepted spec (views, binds, mount specs).
//
// parse_manifest() is documented to throw ManifestError for bad input, and only that is caught.
// Any other exception escapes and libFuzzer reports it; so do the checks below, which hold for
// every accepted manifest and every refusal (manifest.hpp, grant.hpp, mount_spec.hpp).

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "fuzz/fuzz_check.hpp"
#include "mountmgr/mount_spec.hpp"
#include "mountmgr/state.hpp"
#include "mountmgr/views.hpp"
#include "policy/manifest.hpp"

namespace {

using namespace portalfs;
using fuzz::one_line;
using fuzz::require;

// `parent` is `child` or a directory above it ("/data" holds "/data/x", not "/data-old").
bool holds(std::string_view parent, std::string_view child) {
  return child == parent || (child.starts_with(parent) && child[parent.size()] == '/');
}

void check_spec(const policy::AppSpec& spec) {
  require(!policy::check_app_name(spec.name), "accepted an invalid app id", spec.name);
  std::set<std::string> paths;
  std::set<std::string> shares;
  std::set<std::pair<policy::GrantKind, std::string>> view_names;
  for (std::size_t i = 0; i < spec.grants.size(); ++i) {
    const policy::Grant& g = spec.grants[i];
    const std::string& path = g.container_path;
    require(!policy::check_container_path(path), "accepted an invalid container path", path);
    require(policy::normalise_container_path(path) == path, "kept an unnormalised path", path);
    require(paths.insert(path).second, "granted one container path twice", path);
    switch (g.kind) {
      case policy::GrantKind::data:
        require(g.name == path.substr(1), "data dir name is not its path", g.name);
        require(g.access == policy::Access::read_write, "read-only data dir", g.name);
        break;
      case policy::GrantKind::shared:
        require(!policy::check_share_name(g.name), "accepted an invalid share name", g.name);
        require(shares.insert(g.name).second, "granted one share twice", g.name);
        break;
      case policy::GrantKind::host:
        require(false, "a manifest gave a host grant", g.name);
    }
    // View directory names: one path component, distinct per kind (the escaping is reversible).
    const std::string view = policy::view_dir_name(g);
    require(!view.empty() && view.find('/') == std::string::npos, "bad view dir name", view);
    require(view_names.insert({g.kind, view}).second, "two grants share a view dir", view);
    // Mount order: nothing below this grant's path came before it.
    for (std::size_t j = 0; j < i; ++j) {
      require(!holds(path, spec.grants[j].container_path), "child mounted before its parent", path);
    }
  }
}

// What the mount manager makes of an installed app: views, binds and the three mount specs.
void check_derived(const policy::AppSpec& spec) {
  mountmgr::State state;
  mountmgr::AppRecord& record = state.apps[spec.name].edit();
  record.version = spec.version;
  record.grants = spec.grants;
  for (const auto& g : spec.grants) {
    if (g.kind == policy::GrantKind::shared) state.shares[g.name] = policy::Owner{1000, 1000};
  }
  const auto views = mountmgr::build_views(state, "/var/lib/portalfs/storage");
  require(views.size() == spec.grants.size(), "views != grants");
  const auto binds = mountmgr::app_binds("/run/portalfs/fs", spec.name, record);
  require(binds.size() == spec.grants.size(), "binds != grants");
  require(mountmgr::detach_targets(binds).size() == binds.size(), "detach targets != binds");

  const auto entries = mountmgr::mount_entries("/run/portalfs/fs", spec.name, spec.grants);
  for (auto style : {mountmgr::MountStyle::oci, mountmgr::MountStyle::json}) {
    const std::string text = mountmgr::render_mounts(entries, style);
    const auto parsed = nlohmann::json::parse(text, nullptr, false);
    require(parsed.is_array() && parsed.size() == entries.size(), "mount spec is not an array of all grants",
            text);
  }
  try {
    const std::string docker = mountmgr::render_mounts(entries, mountmgr::MountStyle::docker);
    std::size_t lines = 0;
    for (char c : docker) lines += c == '\n';
    // A path holding '\n' would split its -v line in two (fuzz/regressions/manifest/docker-newline.json).
    require(lines == entries.size(), "docker spec is not one line per grant", docker);
  } catch (const std::invalid_argument&) {
    // Documented: a path holding ':' or whitespace can't be written as -v.
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);

  // The app id derived from a display name is empty or valid, whatever the name.
  const std::string id = policy::app_id_from_name(text);
  require(id.empty() || !policy::check_app_name(id), "app_id_from_name gave an invalid id", id);

  policy::AppSpec spec;
  try {
    spec = policy::parse_manifest(text, "app.json");
  } catch (const policy::ManifestError& e) {
    const std::string_view message = e.what();
    require(message.starts_with("app.json:"), "error does not name the file", message);
    require(one_line(message), "error is not one line", message);
    require(fuzz::valid_utf8(message), "error is not valid UTF-8", message);
    return 0;
  }
  check_spec(spec);
  check_derived(spec);
  return 0;
}
