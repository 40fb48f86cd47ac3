// SPDX-License-Identifier: MIT
// libFuzzer target: one control request line, decoded as portalfsd decodes it.
//
// The line is framed as ControlServer::serve() frames it (up to the first '\n', one '\r'
// dropped, nlohmann::json::parse, objects only; serve() does that inline, on a socket), then
// handed to a real Manager::handle():
//   - read verbs (app.list, app.show, share.list, mounts, storage.*, status, who) go to a manager
//     with one app, one share and one storage mount installed, so their rendering runs too;
//   - every other verb goes to a manager with nothing installed, where each verb decodes and
//     checks all its arguments and is then refused (no such app/share/attachment), so nothing on
//     disk or in the state ever changes;
//   - app.install, share.create and storage.ensure-directory would change the disk even there:
//     their arguments are decoded here with the same calls the verbs make (Args, policy checks,
//     parse_manifest), stopping before any I/O.
// A response must be {"ok": true, "output": string} or {"ok": false, "code": 1|2, "error": one
// line}; a request that changes nothing must not get code 1 (that is an unexpected exception the
// manager caught; except from who, for which "no such file" is code 1) and the empty manager
// must never say ok.
//
// Regressions: fuzz/regressions/request/error-newline-*.json (a key or verb holding '\n' was
// quoted raw into the error, which was then not one line).

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <set>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "fuzz/fuzz_check.hpp"
#include "common/log.hpp"
#include "mountmgr/manager.hpp"
#include "mountmgr/report.hpp"
#include "mountmgr/request.hpp"
#include "policy/grant.hpp"
#include "policy/id_map.hpp"
#include "policy/manifest.hpp"

namespace {

using namespace portalfs;
using fuzz::one_line;
using fuzz::require;
using fuzz::show;
using nlohmann::json;
namespace fs = std::filesystem;

// A manager on a temporary storage root and state dir, removed at exit.
struct TempManager {
  fs::path dir;
  std::unique_ptr<mountmgr::Manager> manager;

  explicit TempManager(const char* name) {
    std::string tmpl = (fs::temp_directory_path() / (std::string("portalfs-fuzz-") + name + "-XXXXXX")).string();
    require(::mkdtemp(tmpl.data()) != nullptr, "mkdtemp", tmpl);
    dir = tmpl;
    fs::create_directories(dir / "storage");
    fs::create_directories(dir / "host");
    mountmgr::ManagerConfig config;
    config.storage_root = dir / "storage";
    config.state_dir = dir / "state";
    config.mountpoint = dir / "fs";  // never mounted: only view paths are made from it
    // No container is ever reached: every pid is gone.
    config.attach_ops.attach = [](const mountmgr::ProcessIdentity&, const std::vector<mountmgr::Bind>&) {
      throw std::runtime_error("fuzz: no attach");
    };
    config.attach_ops.detach = [](const mountmgr::ProcessIdentity&, const std::vector<std::string>&) {
      throw std::runtime_error("fuzz: no detach");
    };
    config.attach_ops.identify = [](int) { return std::optional<mountmgr::ProcessIdentity>(); };
    manager = std::make_unique<mountmgr::Manager>(config, nullptr);
  }
  ~TempManager() {
    manager.reset();
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  TempManager(const TempManager&) = delete;
  TempManager& operator=(const TempManager&) = delete;

  void setup(const json& request) {
    const json response = manager->handle(request);
    require(response.value("ok", false), "setting up the populated manager", [&] { return show(response); });
  }
};

TempManager* populated = nullptr;  // serves the read verbs
TempManager* empty = nullptr;      // refuses every app-scoped verb

const std::set<std::string, std::less<>> kReadVerbs = {
    "app.list", "app.show", "share.list", "mounts", "storage.list", "storage.report", "status", "who"};

void check_response(const json& response, bool may_change, bool may_fail = false) {
  require(response.is_object() && response.contains("ok") && response["ok"].is_boolean(), "response has no ok",
          [&] { return show(response); });
  if (response["ok"].get<bool>()) {
    require(may_change, "a verb that must be refused said ok", [&] { return show(response); });
    require(response.contains("output") && response["output"].is_string(), "ok response without output",
            [&] { return show(response); });
    return;
  }
  require(response.contains("code") && response["code"].is_number_integer() && response.contains("error") &&
              response["error"].is_string(),
          "error response without code or error", [&] { return show(response); });
  const std::string& error = response["error"].get_ref<const std::string&>();
  require(one_line(error), "error is not one line", error);
  // Code 1 is "carrying it out failed"; nothing here is carried out, so it can only come from
  // an exception the manager did not expect (handle() turns any std::exception into code 1).
  require(response["code"] == mountmgr::kCodeUsage || (may_fail && response["code"] == mountmgr::kCodeRuntime),
          "refused with code 1 (unexpected exception?)", error);
}

// uid_maps / gid_maps as app.install reads them (verbs_apps.cpp maps_arg).
void decode_maps(const mountmgr::Args& args, std::string_view key) {
  auto texts = args.opt_str_list(key);
  if (!texts) return;
  std::vector<policy::IdRange> ranges;
  for (const auto& text : *texts) {
    std::string error;
    auto range = policy::IdMap::parse_range(text, &error);
    if (!range) args.bad(key, error);
    ranges.push_back(*range);
  }
  std::string error;
  if (!policy::IdMap::make(ranges, &error)) args.bad(key, error);
}

// The decoding part of the verbs that would provision something even on an empty manager.
void decode_creating_verb(const mountmgr::Request& req) {
  if (req.verb == "app.install") {
    const mountmgr::Args args(req, {"manifest", "source", "name", "uid_maps", "gid_maps"});
    const std::string manifest = args.str("manifest");
    const std::string source = args.str("source");
    policy::ParseOptions options;
    if (auto name = args.opt_str("name")) {
      if (auto expected = policy::check_app_name(*name)) args.bad("name", *expected);
      options.name_override = *name;
    }
    decode_maps(args, "uid_maps");
    decode_maps(args, "gid_maps");
    try {
      const policy::AppSpec spec = policy::parse_manifest(manifest, source, options);
      require(!policy::check_app_name(spec.name), "accepted an invalid app id", spec.name);
    } catch (const policy::ManifestError& e) {
      mountmgr::refuse(e.what());
    }
  } else if (req.verb == "share.create") {
    const mountmgr::Args args(req, {"name", "owner"});
    const std::string share = args.str("name");
    if (auto expected = policy::check_share_name(share)) args.bad("name", *expected);
    (void)args.opt_str("owner");  // parse_owner() is private to verbs_shares.cpp
  } else {  // storage.ensure-directory
    const mountmgr::Args args(req, {"name", "chown"});
    const std::string name = args.str("name");
    try {
      mountmgr::check_storage_dir_name(name);
    } catch (const std::invalid_argument& e) {
      args.bad("name", e.what());
    }
    if (!mountmgr::parse_chown_preset(args.opt_str("chown").value_or("herokuish"))) args.bad("chown", "bad preset");
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  common::set_log_level(common::LogLevel::error);
  populated = new TempManager("request");
  empty = new TempManager("request-empty");
  populated->setup({{"verb", "share.create"}, {"args", {{"name", "media"}, {"owner", "1000:1000"}}}});
  const json manifest = {
      {"name", "notes"},
      {"v", "5.0"},
      {"data_dirs", {"/data", "/data/documents", {{"path", "/cache"}, {"uid", 1000}, {"gid", 1000}}}},
      {"shared_dirs", {{{"name", "media"}, {"path", "/media"}, {"access", "read"}, {"uid", 33}, {"gid", 33}}}}};
  populated->setup({{"verb", "app.install"},
                    {"args",
                     {{"manifest", manifest.dump()},
                      {"source", "notes.json"},
                      {"uid_maps", {"0:100000:65536"}},
                      {"gid_maps", {"0:100000:65536"}}}}});
  populated->setup({{"verb", "storage.mount"},
                    {"args", {{"app", "notes"}, {"spec", (populated->dir / "host").string() + ":/srv/host:ro"}}}});
  std::atexit([] {
    delete populated;
    delete empty;
  });
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  // Framing and parsing as in ControlServer::serve().
  std::string line(reinterpret_cast<const char*>(data), size);
  if (auto newline = line.find('\n'); newline != std::string::npos) line.resize(newline);
  if (!line.empty() && line.back() == '\r') line.pop_back();
  json request;
  try {
    request = json::parse(line);
  } catch (const json::exception&) {
    return 0;  // "malformed request"
  }
  if (!request.is_object()) return 0;

  const json* verb = request.contains("verb") ? &request["verb"] : nullptr;
  const std::string name = verb && verb->is_string() ? verb->get<std::string>() : "";
  if (kReadVerbs.contains(name)) {
    check_response(populated->manager->handle(request), true, name == "who");
  } else if (name == "app.install" || name == "share.create" || name == "storage.ensure-directory") {
    try {
      decode_creating_verb(mountmgr::parse_request(request));
    } catch (const mountmgr::RequestError& e) {
      require(e.code() == mountmgr::kCodeUsage, "decoding refused with code 1", e.what());
      require(one_line(e.what()), "error is not one line", e.what());
    }
  } else {
    check_response(empty->manager->handle(request), false);
  }
  return 0;
}
