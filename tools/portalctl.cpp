// SPDX-License-Identifier: MIT
// portalctl: the command line of portalfs. Parses the command (tools/options.hpp), then either
// validates manifests offline or sends one request to portalfsd and prints its answer.

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>

#include "common/escape.hpp"
#include "common/unique_fd.hpp"
#include "mountmgr/control_client.hpp"
#include "policy/manifest.hpp"
#include "tools/ctl_audit.hpp"
#include "tools/ctl_compose.hpp"
#include "tools/doctor.hpp"
#include "tools/exit_codes.hpp"
#include "tools/options.hpp"

namespace {

using portalfs::tools::CtlCommand;
using portalfs::tools::ExitCode;
using portalfs::tools::OutputFormat;

/// A message that must fit on one line of stderr, whatever the daemon or a parser put in it.
std::string one_line(std::string text) {
  for (char& c : text) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  while (!text.empty() && text.back() == ' ') text.pop_back();
  return text;
}

ExitCode fail(ExitCode code, const std::string& message) {
  std::cerr << "portalctl: " << one_line(message) << '\n';
  return code;
}

/// Reads a whole file; throws std::runtime_error ("cannot read FILE: <strerror>").
std::string read_file(const std::string& path) {
  portalfs::common::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  std::string text;
  if (fd) {
    char buf[65536];
    for (;;) {
      ssize_t n = ::read(fd.get(), buf, sizeof(buf));
      if (n > 0) {
        text.append(buf, static_cast<std::size_t>(n));
        continue;
      }
      if (n == 0) return text;
      if (errno != EINTR) break;
    }
  }
  throw std::runtime_error("cannot read " + path + ": " + std::strerror(errno));
}

std::string grant_line(const std::string& app, const portalfs::policy::Grant& g) {
  using portalfs::policy::GrantKind;
  std::string line = app + ": " + portalfs::policy::to_string(g.kind) + " " + g.container_path +
                     " " + portalfs::policy::short_text(g.access);
  if (g.kind != GrantKind::data) line += " from " + g.name;
  if (g.owner)
    line += " owner " + std::to_string(g.owner->uid) + ":" + std::to_string(g.owner->gid);
  for (const auto& p : g.sidecars) line += " sidecar " + p;
  if (g.audit_reads) line += " audit-reads";
  return line;
}

nlohmann::json grant_json(const portalfs::policy::Grant& g) {
  nlohmann::json out = {{"kind", portalfs::policy::to_string(g.kind)},
                        {"name", g.name},
                        {"container_path", g.container_path},
                        {"access", portalfs::policy::to_string(g.access)}};
  if (g.owner) out["owner"] = {{"uid", g.owner->uid}, {"gid", g.owner->gid}};
  if (!g.sidecars.empty()) out["sidecars"] = g.sidecars;
  if (g.audit_reads) out["audit_reads"] = true;
  return out;
}

/// validate: every file must parse; the first invalid one is the only thing printed.
ExitCode run_validate(const CtlCommand& cmd) {
  std::vector<std::pair<std::string, portalfs::policy::AppSpec>> specs;
  for (const auto& file : cmd.files) {
    std::string text;
    try {
      text = read_file(file);
    } catch (const std::runtime_error& e) {
      return fail(ExitCode::usage, e.what());
    }
    try {
      specs.emplace_back(file, portalfs::policy::parse_manifest(text, file));
    } catch (const portalfs::policy::ManifestError& e) {
      // Already "FILE:LINE:COL: ..." or "FILE: /pointer: ...", like a compiler's message.
      std::cerr << one_line(e.what()) << '\n';
      return ExitCode::usage;
    }
  }
  if (cmd.format == OutputFormat::json) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& [file, spec] : specs) {
      nlohmann::json grants = nlohmann::json::array();
      for (const auto& g : spec.grants) grants.push_back(grant_json(g));
      out.push_back(
          {{"file", file}, {"app", spec.name}, {"version", spec.version}, {"grants", grants}});
    }
    std::cout << out.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << '\n';
  } else {
    for (const auto& [file, spec] : specs) {
      if (spec.grants.empty()) std::cout << spec.name << ": no grants\n";
      for (const auto& g : spec.grants) std::cout << grant_line(spec.name, g) << '\n';
    }
  }
  return ExitCode::ok;
}

ExitCode run(CtlCommand cmd) {
  if (cmd.verb == "validate" && cmd.args.value("compose", false)) return portalfs::tools::run_validate_compose(cmd);
  if (cmd.verb == "render") return portalfs::tools::run_render(cmd);
  if (cmd.verb == "validate") return run_validate(cmd);
  if (cmd.verb == "doctor") return portalfs::tools::run_doctor(cmd);
  if (cmd.verb == "audit") return portalfs::tools::run_audit(cmd);

  if (!cmd.manifest_file.empty()) {
    try {
      cmd.args["manifest"] = read_file(cmd.manifest_file);
    } catch (const std::runtime_error& e) {
      return fail(ExitCode::usage, e.what());
    }
    cmd.args["source"] = cmd.manifest_file;
    if (cmd.args.value("compose", false)) {
      if (const ExitCode code = portalfs::tools::prepare_compose_request(cmd); code != ExitCode::ok) return code;
    }
  }

  if (!cmd.path_args.empty()) {
    const std::unique_ptr<char, decltype(&std::free)> cwd(::getcwd(nullptr, 0), &std::free);
    if (!cwd) return fail(ExitCode::runtime, std::string("cannot tell the current directory: ") + std::strerror(errno));
    cmd = portalfs::tools::with_absolute_paths(std::move(cmd), cwd.get());
  }

  nlohmann::json response;
  try {
    response = portalfs::mountmgr::ControlClient().call(cmd.socket, cmd.request());
  } catch (const std::exception& e) {
    return fail(ExitCode::runtime, e.what());
  }
  if (response["ok"].get<bool>()) {
    std::cout << response["output"].get<std::string>() << std::flush;
    // A change in force but not saved (--format json keeps stdout pure JSON).
    if (response.contains("warning") && response["warning"].is_string()) {
      std::cerr << "portalctl: " << portalfs::common::escape_for_message(response["warning"].get<std::string>()) << "\n";
    }
    return ExitCode::ok;
  }
  // The daemon's codes are the exit codes; anything else it might send is a runtime failure.
  int code = response["code"].get<int>();
  return fail(code == 2 ? ExitCode::usage : ExitCode::runtime,
              response["error"].get<std::string>());
}

}  // namespace

int main(int argc, char** argv) {
  using namespace portalfs::tools;
  try {
    const char* env_socket = std::getenv("PORTALFS_SOCKET");
    auto cmd = parse_ctl_command(
        args_of(argc, argv), env_socket ? std::optional<std::string>(env_socket) : std::nullopt);
    return to_int(run(std::move(cmd)));
  } catch (const ExitRequest& request) {
    std::cout << request.output();
    return request.code();
  } catch (const UsageError& e) {
    std::cerr << e.what() << '\n';
    return to_int(ExitCode::usage);
  } catch (const std::exception& e) {
    std::cerr << "portalctl: " << one_line(e.what()) << '\n';
    return to_int(ExitCode::runtime);
  }
}
