// SPDX-License-Identifier: MIT
#include "mountmgr/mount_spec.hpp"

#include <stdexcept>

#include <nlohmann/json.hpp>

#include "mountmgr/views.hpp"

namespace portalfs::mountmgr {
namespace {

bool read_only(const MountEntry& e) { return policy::mounted_read_only(e.grant); }

std::string render_docker(const std::vector<MountEntry>& entries) {
  std::string out;
  for (const auto& e : entries) {
    // One "-v SRC:DST[:ro]" per line, meant for $(...) in a shell: a ':' would be read as
    // a separator, whitespace would split the argument (and could smuggle in an option).
    for (const auto* path : {&e.host_path, &e.grant.container_path}) {
      if (path->find_first_of(": \t\n\r\v\f") != std::string::npos) {
        throw std::invalid_argument("the path \"" + *path +
                                    "\" holds ':' or whitespace, which docker -v can't express; use --format oci or json");
      }
    }
    out += "-v " + e.host_path + ":" + e.grant.container_path + (read_only(e) ? ":ro" : "") + "\n";
  }
  return out;
}

std::string render_oci(const std::vector<MountEntry>& entries) {
  nlohmann::json mounts = nlohmann::json::array();
  for (const auto& e : entries) {
    mounts.push_back({{"destination", e.grant.container_path},
                      {"type", "bind"},
                      {"source", e.host_path},
                      {"options", {"rbind", "nosuid", "nodev", read_only(e) ? "ro" : "rw"}}});
  }
  return mounts.dump(2) + "\n";
}

std::string render_json(const std::vector<MountEntry>& entries) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& e : entries) {
    out.push_back({{"app", e.app},
                   {"kind", policy::to_string(e.grant.kind)},
                   {"name", e.grant.name},
                   {"host_path", e.host_path},
                   {"container_path", e.grant.container_path},
                   {"access", policy::to_string(e.grant.access)}});
  }
  return out.dump(2) + "\n";
}

}  // namespace

std::optional<MountStyle> parse_mount_style(std::string_view text) {
  if (text == "docker") return MountStyle::docker;
  if (text == "oci") return MountStyle::oci;
  if (text == "json") return MountStyle::json;
  return std::nullopt;
}

std::vector<MountEntry> mount_entries(const std::string& mountpoint, const std::string& app,
                                      const std::vector<policy::Grant>& grants) {
  std::vector<MountEntry> out;
  out.reserve(grants.size());
  for (const auto& g : grants) out.push_back({app, g, view_path(mountpoint, app, g)});
  return out;
}

std::string render_mounts(const std::vector<MountEntry>& entries, MountStyle style) {
  switch (style) {
    case MountStyle::docker: return render_docker(entries);
    case MountStyle::oci: return render_oci(entries);
    case MountStyle::json: return render_json(entries);
  }
  return "";
}

}  // namespace portalfs::mountmgr
