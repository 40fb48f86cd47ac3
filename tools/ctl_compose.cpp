// SPDX-License-Identifier: MIT
#include "tools/ctl_compose.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "mountmgr/views.hpp"
#include "policy/compose.hpp"
#include "policy/manifest.hpp"

namespace portalfs::tools {
namespace {

namespace fs = std::filesystem;

constexpr const char* kDefaultMountpoint = "/run/portalfs/fs";
constexpr const char* kDefaultStorageRoot = "/var/lib/portalfs/storage";

/// A refusal: one line for stderr, exit 2.
struct Refused {
  std::string message;
};

std::string read_whole(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Refused{"cannot read " + path + ": " + std::strerror(errno)};
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

struct Loaded {
  std::string file;
  std::string text;
  policy::ComposeApp app;
  std::string name;
  std::vector<policy::ServicePlan> plans;
};

// The app id: --name, else app_meta.json's name beside the template, else the folder's name.
std::string app_name(const CtlCommand& cmd, const fs::path& dir) {
  if (cmd.args.contains("name")) return cmd.args["name"].get<std::string>();
  const fs::path meta = dir / "app_meta.json";
  if (fs::exists(meta)) {
    try {
      return policy::parse_manifest(read_whole(meta.string()), meta.string()).name;
    } catch (const policy::ManifestError& e) {
      throw Refused{e.what()};
    }
  }
  return policy::app_id_from_name(dir.filename().string());
}

Loaded load(const CtlCommand& cmd, const std::string& file) {
  Loaded l;
  l.file = file;
  l.text = read_whole(file);
  const fs::path dir = fs::absolute(fs::path(file)).lexically_normal().parent_path();
  try {
    l.app = policy::parse_compose(l.text, file);
    l.name = app_name(cmd, dir);
    policy::ComposePlanOptions options;
    options.app = l.name;
    options.storage_root = cmd.args.value("storage_root", std::string(kDefaultStorageRoot));
    options.installation_dir = dir.string();
    options.allow_all_app_data = cmd.args.value("allow_all_app_data", false);
    for (const auto& text : cmd.args.value("share_access", std::vector<std::string>{})) {
      (void)policy::parse_share_access(text, options.share_access);  // checked by options.cpp
    }
    l.plans = policy::plan_compose(l.app, options, file);
  } catch (const policy::ManifestError& e) {
    throw Refused{e.what()};
  }
  return l;
}

std::string view_source(const std::string& mountpoint, const policy::ServicePlan& plan,
                        const policy::PlannedVolume& pv) {
  return mountmgr::view_path(mountpoint, plan.app_id, pv.grant);
}

std::string describe(const policy::PlannedVolume& pv) {
  const auto& g = pv.grant;
  std::string what;
  switch (g.kind) {
    case policy::GrantKind::data: what = "data dir " + g.name; break;
    case policy::GrantKind::shared: what = "share " + g.name; break;
    case policy::GrantKind::host:
      switch (pv.volume->var) {
        case policy::FsVar::all_app_data: what = "every app's data " + g.name; break;
        case policy::FsVar::installation_dir: what = "installed files " + g.name; break;
        case policy::FsVar::app_data: what = "the app's whole directory " + g.name; break;
        case policy::FsVar::shared:
          what = pv.volume->sub.empty() ? "every share (including shares created later) " + g.name
                                        : "folder " + pv.deeper + " of share " + pv.volume->sub.substr(0, pv.volume->sub.find('/')) + " " + g.name;
      }
      break;
  }
  return what + " at " + g.container_path + " " + policy::short_text(g.access);
}

std::string owner_text(const policy::ComposeService& s) {
  if (!s.user) return "the image's user";
  return std::to_string(s.user->uid) + ":" + std::to_string(s.user->gid);
}

ExitCode refused(const Refused& r) {
  std::string line = r.message;
  for (char& c : line) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  std::cerr << line << '\n';
  return ExitCode::usage;
}

}  // namespace

ExitCode run_validate_compose(const CtlCommand& cmd) {
  std::vector<Loaded> all;
  try {
    for (const auto& file : cmd.files) all.push_back(load(cmd, file));
  } catch (const Refused& r) {
    return refused(r);
  }
  if (cmd.format == OutputFormat::json) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& l : all) {
      nlohmann::json services = nlohmann::json::array();
      for (const auto& plan : l.plans) {
        nlohmann::json volumes = nlohmann::json::array();
        for (const auto& pv : plan.volumes) {
          volumes.push_back({{"volume", pv.volume->text},
                             {"variable", policy::to_string(pv.volume->var)},
                             {"kind", policy::to_string(pv.grant.kind)},
                             {"name", pv.grant.name},
                             {"deeper", pv.deeper},
                             {"container_path", pv.grant.container_path},
                             {"access", policy::to_string(pv.grant.access)}});
        }
        nlohmann::json not_mediated = nlohmann::json::array();
        for (const auto* v : plan.not_mediated) {
          not_mediated.push_back({{"volume", v->text}, {"source", v->host_source}, {"target", v->target}});
        }
        nlohmann::json service = {{"service", plan.service->name}, {"app", plan.app_id},
                                  {"volumes", volumes}, {"not_mediated", not_mediated}};
        service["user"] = plan.service->user ? nlohmann::json(owner_text(*plan.service)) : nlohmann::json(nullptr);
        services.push_back(service);
      }
      out.push_back({{"file", l.file}, {"app", l.name}, {"services", services}});
    }
    std::cout << out.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << '\n';
    return ExitCode::ok;
  }
  for (const auto& l : all) {
    for (const auto& plan : l.plans) {
      const std::string head = l.name + ": service " + plan.service->name;
      if (plan.volumes.empty() && plan.not_mediated.empty()) {
        std::cout << head << ": no volumes\n";
        continue;
      }
      for (const auto& pv : plan.volumes) {
        std::cout << head << ": " << describe(pv) << " (as " << owner_text(*plan.service) << ")\n";
      }
      for (const auto* v : plan.not_mediated) {
        std::cout << head << ": " << (v->host_source.empty() ? "(anonymous volume)" : v->host_source) << " at "
                  << v->target << ": not mediated by portalfs\n";
      }
    }
  }
  return ExitCode::ok;
}

ExitCode prepare_compose_request(CtlCommand& cmd) {
  const fs::path dir = fs::absolute(fs::path(cmd.manifest_file)).lexically_normal().parent_path();
  const fs::path meta = cmd.args.contains("meta") ? fs::path(cmd.args["meta"].get<std::string>()) : dir / "app_meta.json";
  const bool explicit_meta = cmd.args.contains("meta");
  cmd.args.erase("meta");
  try {
    if (explicit_meta || fs::exists(meta)) {
      policy::ParseOptions options;
      if (cmd.args.contains("name")) options.name_override = cmd.args["name"].get<std::string>();
      const auto spec = policy::parse_manifest(read_whole(meta.string()), meta.string(), options);
      cmd.args["name"] = spec.name;
      if (!spec.version.empty()) cmd.args["version"] = spec.version;
    } else if (!cmd.args.contains("name")) {
      cmd.args["name"] = policy::app_id_from_name(dir.filename().string());
    }
  } catch (const policy::ManifestError& e) {
    return refused(Refused{e.what()});
  } catch (const Refused& r) {
    return refused(r);
  }
  cmd.args["installation_dir"] = dir.string();
  return ExitCode::ok;
}

ExitCode run_render(const CtlCommand& cmd) {
  Loaded l;
  try {
    l = load(cmd, cmd.files.at(0));
  } catch (const Refused& r) {
    return refused(r);
  }
  const std::string mountpoint = cmd.args.value("mountpoint", std::string(kDefaultMountpoint));
  // Each volume's plan entry, found by address (plans point into l.app).
  const std::string out = policy::render_compose(
      l.text, l.app, [&](const policy::ComposeService& s, const policy::ComposeVolume& v) -> std::string {
        for (const auto& plan : l.plans) {
          if (plan.service != &s) continue;
          for (const auto& pv : plan.volumes) {
            if (pv.volume == &v) return view_source(mountpoint, plan, pv);
          }
        }
        return l.text.substr(v.source_begin, v.source_end - v.source_begin);  // unreachable
      });
  if (!cmd.args.contains("output")) {
    std::cout << out << std::flush;
    return ExitCode::ok;
  }
  // Atomically: a temporary file beside the target, then rename.
  const std::string target = cmd.args["output"].get<std::string>();
  const std::string temp = target + ".portalfs-tmp";
  {
    std::ofstream f(temp, std::ios::binary | std::ios::trunc);
    f << out;
    f.flush();
    if (!f) {
      std::remove(temp.c_str());
      std::cerr << "portalctl: render: cannot write " << temp << ": " << std::strerror(errno) << '\n';
      return ExitCode::runtime;
    }
  }
  if (std::rename(temp.c_str(), target.c_str()) != 0) {
    std::cerr << "portalctl: render: cannot rename to " << target << ": " << std::strerror(errno) << '\n';
    std::remove(temp.c_str());
    return ExitCode::runtime;
  }
  return ExitCode::ok;
}

}  // namespace portalfs::tools
