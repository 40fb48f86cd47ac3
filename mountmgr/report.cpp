// SPDX-License-Identifier: MIT
#include "mountmgr/report.hpp"

#include <algorithm>
#include <cstdio>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "mountmgr/state.hpp"

namespace portalfs::mountmgr {
namespace {

constexpr const char* kIndent = "       ";  // Dokku's dokku_log_verbose indent (7 spaces)

std::string volume_flag(const StorageEntry& e) {
  return "-v " + e.host_path + ":" + e.container_path + (e.read_only ? ":ro" : "");
}

std::vector<std::string> phase_flags(const std::vector<StorageEntry>& entries, Phase phase) {
  std::vector<std::string> out;
  if (phase == Phase::build) return out;  // no build phase in portalfs
  for (const auto& e : entries) out.push_back(volume_flag(e));
  return out;
}

std::string join(const std::vector<std::string>& parts) {
  std::string out;
  for (const auto& p : parts) out += (out.empty() ? "" : " ") + p;
  return out;
}

const char* phase_label(Phase phase) {
  switch (phase) {
    case Phase::build: return "Storage build mounts:";
    case Phase::deploy: return "Storage deploy mounts:";
    case Phase::run: return "Storage run mounts:";
  }
  return "";
}

const char* phase_key(Phase phase) {
  switch (phase) {
    case Phase::build: return "storage_build_mounts";
    case Phase::deploy: return "storage_deploy_mounts";
    case Phase::run: return "storage_run_mounts";
  }
  return "";
}

}  // namespace

std::string render_storage_list(const std::vector<StorageEntry>& entries, bool json) {
  if (json) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& e : entries) {
      out.push_back({{"host_path", e.host_path},
                     {"container_path", e.container_path},
                     {"volume_options", e.read_only ? "ro" : ""}});
    }
    return out.dump(2) + "\n";
  }
  std::string out;
  for (const auto& e : entries) out += e.host_path + ":" + e.container_path + (e.read_only ? ":ro" : "") + "\n";
  return out;
}

std::optional<Phase> parse_phase(std::string_view text) {
  if (text == "build") return Phase::build;
  if (text == "deploy") return Phase::deploy;
  if (text == "run") return Phase::run;
  return std::nullopt;
}

std::string render_storage_report(const std::vector<std::pair<std::string, std::vector<StorageEntry>>>& apps,
                                  std::optional<Phase> only, bool json) {
  constexpr Phase kPhases[] = {Phase::build, Phase::deploy, Phase::run};
  if (json) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& [app, entries] : apps) {
      nlohmann::json item = {{"app", app}};
      for (Phase p : kPhases) {
        if (!only || *only == p) item[phase_key(p)] = phase_flags(entries, p);
      }
      out.push_back(std::move(item));
    }
    return out.dump(2) + "\n";
  }
  std::string out;
  for (const auto& [app, entries] : apps) {
    if (only) {
      out += join(phase_flags(entries, *only)) + "\n";
      continue;
    }
    out += "=====> " + app + " storage information\n";
    for (Phase p : kPhases) {
      // printf "%-30s %-25s" as Dokku does, without the trailing padding.
      char label[64];
      std::snprintf(label, sizeof label, "%-30s", phase_label(p));
      std::string line = std::string(kIndent) + label + " " + join(phase_flags(entries, p));
      line.erase(line.find_last_not_of(' ') + 1);
      out += line + "\n";
    }
  }
  return out;
}

std::optional<ChownPreset> parse_chown_preset(std::string_view text) {
  if (text == "herokuish") return ChownPreset{true, {32767, 32767}};
  if (text == "heroku") return ChownPreset{true, {1000, 1000}};
  if (text == "packeto") return ChownPreset{true, {2000, 2000}};
  if (text == "false") return ChownPreset{false, {}};
  return std::nullopt;
}

void check_storage_dir_name(std::string_view name) {
  auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); };
  const bool ok = !name.empty() && name.size() <= 64 && alnum(name.front()) &&
                  std::all_of(name.begin(), name.end(), [&](char c) { return alnum(c) || c == '.' || c == '_' || c == '-'; });
  if (!ok) throw std::invalid_argument("expected a directory name matching [A-Za-z0-9][A-Za-z0-9._-]{0,63}");
}

std::string render_ensure_directory(const std::string& path, const std::optional<policy::Owner>& owner, bool json) {
  if (json) {
    nlohmann::json out = {{"path", path}, {"owner", owner ? nlohmann::json(format_owner(*owner)) : nlohmann::json()}};
    return out.dump(2) + "\n";
  }
  std::string out = "-----> Ensuring " + path + " exists\n";
  if (owner) out += std::string(kIndent) + "Setting directory ownership to " + format_owner(*owner) + "\n";
  out += std::string(kIndent) + "Directory ready for mounting\n";
  return out;
}

}  // namespace portalfs::mountmgr
