// SPDX-License-Identifier: MIT
#pragma once

// Command lines of portalfsd and portalctl, parsed into value structs (STYLE.md guideline 12).
// The parsers do no I/O and never exit: a bad command line throws UsageError, --help and
// --version throw ExitRequest carrying the text to print. main() catches both, prints, and
// returns the code (tools/exit_codes.hpp).

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "common/log.hpp"

namespace portalfs::tools {

/// A bad command line. what() is the whole line for stderr:
///   "portalctl: attach: missing --pid PID; see portalctl --help"
class UsageError : public std::runtime_error {
 public:
  UsageError(std::string_view program, const std::string& problem);
  /// Just the problem ("attach: missing --pid PID").
  [[nodiscard]] const std::string& problem() const noexcept { return problem_; }

 private:
  std::string problem_;
};

/// The command line asks to stop before doing anything (--help, --version): print output() to
/// stdout and return code() from main().
class ExitRequest : public std::exception {
 public:
  explicit ExitRequest(int code, std::string output = {})
      : code_(code), output_(std::move(output)) {}
  [[nodiscard]] int code() const noexcept { return code_; }
  [[nodiscard]] const std::string& output() const noexcept { return output_; }
  [[nodiscard]] const char* what() const noexcept override { return "exit requested"; }

 private:
  int code_;
  std::string output_;
};

// ---- portalfsd ---------------------------------------------------------------------------

struct DaemonOptions {
  std::string storage_root = "/var/lib/portalfs/storage";
  std::string mountpoint = "/run/portalfs/fs";
  std::string state_dir = "/var/lib/portalfs";
  std::string socket = "/run/portalfs/portalfs.sock";
  bool foreground = false;
  /// Files of data views pass through to their backing files in the kernel (Linux 6.9+).
  bool passthrough = true;
  /// FUSE over io_uring when the kernel offers it (--no-io-uring: off; fuse/uring.hpp).
  bool io_uring = true;
  /// FUSE worker threads; 0 keeps libfuse's default.
  unsigned threads = 0;
  /// Files one app may hold open through the daemon; 0: half of what the fd cache leaves of
  /// the open-file limit.
  size_t open_files_per_app = 0;
  /// --request-timeout: fuse::Options::request_timeout (fuse/session_io.hpp says why).
  uint16_t request_timeout = 300;
  /// Per app, instead of open_files_per_app (--open-files-of APP=N).
  std::map<std::string, size_t> open_files_of{};
  /// Inodes one app may have cached in the daemon (fuse::Options::inodes_per_app); 0: the
  /// default (portalfsd.cpp says why it is a fixed number).
  size_t inodes_per_app = 0;
  /// Per app, instead of inodes_per_app (--inodes-of APP=N).
  std::map<std::string, size_t> inodes_of{};
  common::LogLevel log_level = common::LogLevel::info;
  /// Members of this group (a name or a numeric gid) may use the control socket besides root;
  /// "" = root only. Turn it into a gid with resolve_group().
  std::string admin_group;
  bool recover_from_backup = false;
  bool example = false;
  /// Denials and changes go to <state_dir>/audit/<app>.jsonl (common/audit.hpp).
  bool audit = true;
  /// Provenance of shared views' files (fuse::Options::provenance; off: bench/diagnostics).
  bool provenance = true;
  /// --events: fuse::Options::events.
  bool events = true;
  /// --shared-state: mountmgr::ManagerConfig::shared_state.
  bool shared_state = false;
  /// "portalfs" (apps/<app>/) or "freeshard" (app_data/<app>/, a Freeshard user_data tree).
  std::string layout = "portalfs";
  /// Seconds between purges of the shares' trashes' expired entries (--trash-purge-interval).
  unsigned trash_purge_interval = 3600;
};

inline constexpr const char* kDefaultConfig = "/etc/portalfs/portalfsd.conf";

/// A config file's name and contents.
struct ConfigText {
  std::string path;
  std::string text;
};

/// Reads a config file for the parser: its text, or nullopt when there is no file at `path`
/// (any other failure to read it throws). portalfsd passes read_config_file(); a test passes
/// files from memory.
using ConfigReader = std::function<std::optional<std::string>(const std::string& path)>;

/// Parses portalfsd's arguments (without argv[0]) and its config file: --config FILE (which
/// must exist), else kDefaultConfig when it exists; none at all without `read_config`. The
/// file takes the same options as "NAME = VALUE" lines (Boost.Program_options' syntax); the
/// command line wins, and a bad line is named as "FILE:LINE: ...". Every path must be
/// absolute, because the daemon does not depend on the directory it was started from.
DaemonOptions parse_daemon_options(const std::vector<std::string>& args, const ConfigReader& read_config = {});
DaemonOptions parse_daemon_options(int argc, const char* const* argv, const ConfigReader& read_config = {});

/// The ConfigReader of the real file system; a file that exists but can't be read is a
/// UsageError naming it.
std::optional<std::string> read_config_file(const std::string& path);

/// Looks up a group name or numeric gid in the group database (this one reads /etc/group or
/// NSS, so it is kept out of the parser). Throws UsageError for `program` when there is no
/// such group.
gid_t resolve_group(std::string_view program, const std::string& group);

// ---- portalctl ---------------------------------------------------------------------------

enum class OutputFormat { text, json };

inline constexpr const char* kDefaultSocket = "/run/portalfs/portalfs.sock";

/// One portalctl invocation.
struct CtlCommand {
  /// The daemon's socket: --socket, else $PORTALFS_SOCKET, else kDefaultSocket.
  std::string socket = kDefaultSocket;
  OutputFormat format = OutputFormat::text;
  /// The protocol verb ("app.install", "storage.list", ...; see mountmgr/control_protocol.hpp)
  /// or "validate", which runs offline.
  std::string verb;
  /// The request's args, except the manifest contents for app.install / app.upgrade.
  nlohmann::json args = nlohmann::json::object();
  /// app.install / app.upgrade: the manifest file, read by portalctl and sent as
  /// args.manifest (contents) and args.source (this name).
  std::string manifest_file;
  /// validate: the files to check, in order.
  std::vector<std::string> files;
  /// Keys of `args` that name a path on this machine (who: "path"). main() makes a relative
  /// one absolute against its working directory (with_absolute_paths) before sending: the
  /// daemon has a working directory of its own.
  std::vector<std::string> path_args;

  /// The request line's object: {"verb", "format", "args"}.
  [[nodiscard]] nlohmann::json request() const;
};

/// Parses portalctl's arguments (without argv[0]). `env_socket` is $PORTALFS_SOCKET (passed in
/// so the parser does not read the environment).
CtlCommand parse_ctl_command(const std::vector<std::string>& args,
                             const std::optional<std::string>& env_socket = std::nullopt);

/// `cmd` with each of its path_args that is relative put below `cwd` ("x" -> "<cwd>/x"; the
/// daemon normalises "." and "..").
CtlCommand with_absolute_paths(CtlCommand cmd, const std::string& cwd);

/// argv[1..argc) as strings.
std::vector<std::string> args_of(int argc, const char* const* argv);

}  // namespace portalfs::tools
