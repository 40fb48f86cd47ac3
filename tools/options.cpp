// SPDX-License-Identifier: MIT
#include "tools/options.hpp"

#include <grp.h>

#include <algorithm>
#include <array>
#include <boost/program_options.hpp>
#include <charconv>
#include <chrono>
#include <climits>
#include <cstddef>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>

#include "common/audit.hpp"
#include "mountmgr/paths.hpp"
#include "policy/compose.hpp"
#include "policy/id_map.hpp"
#include "policy/manifest.hpp"
#include "policy/quota.hpp"
#include "policy/trash.hpp"

#ifndef PORTALFS_VERSION
#define PORTALFS_VERSION "unknown"
#endif

namespace portalfs::tools {
namespace po = boost::program_options;

UsageError::UsageError(std::string_view program, const std::string& problem)
    : std::runtime_error(std::string(program) + ": " + problem + "; see " + std::string(program) +
                         " --help"),
      problem_(problem) {}

std::vector<std::string> args_of(int argc, const char* const* argv) {
  std::vector<std::string> out;
  for (int i = 1; i < argc; ++i) out.emplace_back(argv[i]);
  return out;
}

namespace {

constexpr std::string_view kDaemon = "portalfsd";
constexpr std::string_view kCtl = "portalctl";

// Abbreviated long options (--pur for --purge) would make a typo silently mean something
// else, so guessing is off.
constexpr int kStyle =
    po::command_line_style::default_style & ~po::command_line_style::allow_guessing;

std::string json_quoted(std::string_view s) {
  return nlohmann::json(std::string(s)).dump();
}

/// A decimal number in [min, max] with nothing around it (no sign, no spaces).
std::optional<uint64_t> parse_number(std::string_view text, uint64_t min, uint64_t max) {
  if (text.empty() || text.front() < '0' || text.front() > '9') return std::nullopt;
  uint64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{} || end != text.data() + text.size()) return std::nullopt;
  if (value < min || value > max) return std::nullopt;
  return value;
}

std::vector<std::string_view> split(std::string_view text, char sep) {
  std::vector<std::string_view> parts;
  for (;;) {
    auto pos = text.find(sep);
    parts.push_back(text.substr(0, pos));
    if (pos == std::string_view::npos) return parts;
    text.remove_prefix(pos + 1);
  }
}

std::string help_text(const po::options_description& desc) {
  std::ostringstream out;
  out << desc;
  return out.str();
}

bool has_help_flag(const std::vector<std::string>& tokens) {
  for (const auto& t : tokens) {
    if (t == "--") return false;
    if (t == "--help" || t == "-h") return true;
  }
  return false;
}

// ---- portalfsd ---------------------------------------------------------------------------

po::options_description daemon_description() {
  po::options_description desc("Options");
  // clang-format off
  desc.add_options()
    ("storage-root", po::value<std::string>()->value_name("DIR"),
     "backing store of every app's data and shared directories (default /var/lib/portalfs/storage)")
    ("mountpoint", po::value<std::string>()->value_name("DIR"),
     "where the filesystem is mounted (default /run/portalfs/fs)")
    ("state-dir", po::value<std::string>()->value_name("DIR"),
     "where state.json lives (default /var/lib/portalfs)")
    ("socket", po::value<std::string>()->value_name("PATH"),
     "control socket for portalctl (default /run/portalfs/portalfs.sock)")
    ("foreground", po::bool_switch(), "stay in the foreground")
    ("threads", po::value<std::string>()->value_name("N"),
     "FUSE worker threads (default 0: libfuse's default)")
    ("open-files-per-app", po::value<std::string>()->value_name("N"),
     "files one app may hold open at once; one more gets EMFILE, for that app alone (default: "
     "half of what the fd cache leaves of the open-file limit)")
    ("request-timeout", po::value<std::string>()->value_name("SECONDS"),
     "the kernel ends the mount's connection when a request stays unanswered this long, rather "
     "than hang every caller forever (a portalfsd killed mid-request); 0: never (default 300)")
    ("open-files-of", po::value<std::vector<std::string>>()->value_name("APP=N"),
     "files app APP may hold open at once, instead of --open-files-per-app (repeat it, or "
     "APP=N,APP=N, for more apps)")
    ("inodes-per-app", po::value<std::string>()->value_name("N"),
     "inodes one app may have cached in the daemon at once (from its lookups, until the "
     "kernel forgets them); one more lookup gets ENFILE, for that app alone (default 262144; "
     "a rootless daemon: no more than --open-files-per-app)")
    ("inodes-of", po::value<std::vector<std::string>>()->value_name("APP=N"),
     "inodes app APP may have cached at once, instead of --inodes-per-app (repeat it, or "
     "APP=N,APP=N, for more apps)")
    ("log-level", po::value<std::string>()->value_name("L"),
     "debug, info, warn or error (default info)")
    ("admin-group", po::value<std::string>()->value_name("G"),
     "group (name or gid) whose members may use the control socket besides root")
    ("recover-from-backup", po::bool_switch(),
     "start from state.json.bak when state.json is corrupt")
    ("layout", po::value<std::string>()->value_name("portalfs|freeshard"),
     "where apps' data lives below the storage root: apps/<app>/ (portalfs, the default) or "
     "app_data/<app>/ (freeshard: serve an existing Freeshard user_data tree in place)")
    ("no-passthrough", po::bool_switch(),
     "serve every read and write of data views in the daemon, not by kernel passthrough")
    ("no-io-uring", po::bool_switch(),
     "take FUSE requests from /dev/fuse only, even when the kernel offers FUSE over io_uring "
     "(the fuse module's enable_uring)")
    ("audit", po::value<std::string>()->value_name("on|off"),
     "record denials and changes in <state-dir>/audit/<app>.jsonl (default on)")
    ("provenance", po::value<std::string>()->value_name("on|off"),
     "record which app made and changed files of shared views (default on; off is a bench "
     "and diagnostic switch: the modes that protect then treat every file as another's)")
    ("events", po::value<std::string>()->value_name("on|off"),
     "raise change events (inotify, fanotify) in every view of a changed file, for changes "
     "made through other views and on the host (default on; off saves the echoes' cost)")
    ("shared-state", po::value<std::string>()->value_name("on|off"),
     "share apps, shares and grants with the other nodes over the same storage root (a "
     "GlusterFS volume; README \"Over GlusterFS\"; default off)")
    ("example", po::bool_switch(),
     "install the example app (examples/notes.json) at start, to try portalfs out")
    ("trash-purge-interval", po::value<std::string>()->value_name("SECONDS"),
     "how often the shares' trashes are rid of entries older than their retention (default 3600)")
    ("config", po::value<std::string>()->value_name("FILE"),
     "read options from FILE (default /etc/portalfs/portalfsd.conf, when it exists); the "
     "command line wins over it")
    ("help,h", "print this help and exit")
    ("version", "print the version and exit");
  // clang-format on
  return desc;
}

std::string daemon_usage() {
  return "Usage: portalfsd [--storage-root DIR] [--mountpoint DIR] [--state-dir DIR]\n"
         "                 [--socket PATH] [--foreground] [--threads N] [--log-level L]\n"
         "                 [--open-files-per-app N] [--open-files-of APP=N ...] [--request-timeout SECONDS]\n"
         "                 [--inodes-per-app N] [--inodes-of APP=N ...]\n"
         "                 [--admin-group G] [--recover-from-backup] [--no-passthrough] [--no-io-uring]\n"
         "                 [--layout portalfs|freeshard] [--example] [--trash-purge-interval SECONDS]\n"
         "                 [--audit on|off] [--provenance on|off] [--events on|off] [--shared-state on|off]\n"
         "                 [--config FILE]\n\n"
         "Serves every app's data and shared directories as per-app views through one FUSE\n"
         "filesystem, and takes portalctl's requests on the control socket.\n\n" +
         help_text(daemon_description()) +
         "\nThe config file takes the same options, one NAME = VALUE a line without the\n"
         "leading --, `#` starting a comment (foreground = true for a switch).\n"
         "\nExit codes: 0 ok, 1 runtime failure, 2 bad command line.\n";
}

/// The options of one portalfsd start and where each one's value came from, so that a bad
/// value is named as it was written: "--threads" or "/etc/portalfs/portalfsd.conf:3: threads".
struct DaemonInput {
  po::variables_map vm;
  std::map<std::string, std::string> origin;

  [[noreturn]] void bad(const std::string& name, const std::string& problem) const {
    auto it = origin.find(name);
    throw UsageError(kDaemon, (it == origin.end() ? "--" + name : it->second) + ": " + problem);
  }
};

/// An "on|off" option of portalfsd (`fallback` when it is not given).
bool on_off(const DaemonInput& in, const char* name, bool fallback) {
  if (!in.vm.count(name)) return fallback;
  const auto& text = in.vm[name].as<std::string>();
  if (text != "on" && text != "off") in.bad(name, "expected on or off, got " + json_quoted(text));
  return text == "on";
}

/// A per-app option of portalfsd (--open-files-of APP=N): repeated on the command line, or a
/// comma-separated list (one line in the config file). `what` names what N counts.
std::map<std::string, size_t> per_app_numbers(const DaemonInput& in, const char* name, const char* what) {
  std::vector<std::string> items;
  for (const auto& value : in.vm[name].as<std::vector<std::string>>()) {
    if (value.empty()) items.emplace_back();
    std::istringstream list(value);
    for (std::string item; std::getline(list, item, ',');) {
      const auto first = item.find_first_not_of(' ');
      const auto last = item.find_last_not_of(' ');
      items.push_back(first == std::string::npos ? "" : item.substr(first, last - first + 1));
    }
  }
  std::map<std::string, size_t> out;
  for (const auto& text : items) {
    const auto eq = text.find('=');
    const std::string app = text.substr(0, eq);
    auto n = eq == std::string::npos ? std::nullopt : parse_number(text.substr(eq + 1), 1, 1u << 30);
    if (!n || policy::check_app_name(app)) {
      in.bad(name, std::string("expected APP=N (an app id and a positive number of ") + what + "), got " +
                       json_quoted(text));
    }
    out[app] = static_cast<size_t>(*n);
  }
  return out;
}

std::string absolute_path(const DaemonInput& in, const char* name, std::string fallback) {
  if (!in.vm.count(name)) return fallback;
  auto value = in.vm[name].as<std::string>();
  if (value.empty() || value.front() != '/') in.bad(name, "expected an absolute path, got " + json_quoted(value));
  return value;
}

std::string_view trimmed(std::string_view text) {
  constexpr std::string_view kBlank = " \t\r";
  const auto first = text.find_first_not_of(kBlank);
  if (first == std::string_view::npos) return {};
  return text.substr(first, text.find_last_not_of(kBlank) - first + 1);
}

/// Adds the config file's options to `in` below the command line's. Each line is checked on its
/// own so that a bad one is named by its number; Boost's own errors name no line.
void store_config(const ConfigText& config, const po::options_description& desc, DaemonInput& in) {
  std::istringstream lines(config.text);
  std::string line;
  for (int number = 1; std::getline(lines, line); ++number) {
    const std::string where = config.path + ":" + std::to_string(number);
    const auto text = trimmed(line);
    if (text.empty() || text.front() == '#') continue;
    const auto eq = text.find('=');
    if (eq == std::string_view::npos) {
      throw UsageError(kDaemon, where + ": expected NAME = VALUE, got " + json_quoted(text));
    }
    const std::string name(trimmed(text.substr(0, eq)));
    if (name == "config" || name == "help" || name == "version") {
      throw UsageError(kDaemon, where + ": " + name + " can only be given on the command line");
    }
    if (auto it = in.origin.find(name); it != in.origin.end()) {
      if (it->second.starts_with("--")) continue;  // the command line wins
      throw UsageError(kDaemon, where + ": " + name + " given twice (also at " + it->second + ")");
    }
    try {
      std::istringstream one(line);
      po::store(po::parse_config_file(one, desc), in.vm);
    } catch (const po::error& e) {
      throw UsageError(kDaemon, where + ": " + e.what());
    }
    in.origin[name] = where + ": " + name;
  }
}

// ---- portalctl ---------------------------------------------------------------------------

/// What one verb's parser sees: its options and positional arguments.
struct VerbInput {
  const po::variables_map& vm;
  std::vector<std::string> positional;
};

/// One verb: how it is typed, its options, and how its arguments become a request.
struct Verb {
  const char* name;      // as typed: "app install", "storage:list"
  const char* protocol;  // the protocol verb: "app.install"
  const char* synopsis;  // after the name
  const char* summary;
  /// Names of the positional arguments, in order, for help and "missing X" messages; a name
  /// ending in "..." takes one or more, one in brackets is optional.
  std::vector<const char*> positionals;
  void (*define)(po::options_description&);
  void (*build)(const VerbInput&, CtlCommand&);
  /// mounts uses --format for the style of its output.
  bool own_format = false;
};

[[noreturn]] void usage(const std::string& problem) {
  throw UsageError(kCtl, problem);
}

OutputFormat parse_format(const std::string& where, const std::string& text) {
  if (text == "text") return OutputFormat::text;
  if (text == "json") return OutputFormat::json;
  usage(where + "--format: expected text or json, got " + json_quoted(text));
}

int pid_arg(const char* verb, const po::variables_map& vm) {
  if (!vm.count("pid")) usage(std::string(verb) + ": missing --pid PID");
  const auto& text = vm["pid"].as<std::string>();
  auto pid = parse_number(text, 1, INT_MAX);
  if (!pid) {
    usage(std::string(verb) + ": --pid: expected a process id (a positive integer), got " +
          json_quoted(text));
  }
  return static_cast<int>(*pid);
}

// The daemon parses the same way; checked here too so that the message names the option.
void check_id_range(const char* verb, const char* option, const std::string& text) {
  if (!policy::IdMap::parse_range(text)) {
    usage(std::string(verb) + ": " + option +
          ": expected CONTAINER:HOST:COUNT (like 0:100000:65536), got " + json_quoted(text));
  }
}

void check_container_path(const char* verb, const char* what, const std::string& text) {
  if (text.empty() || text.front() != '/') {
    usage(std::string(verb) + ": " + what +
          ": expected an absolute path inside the container, got " + json_quoted(text));
  }
}

void no_options(po::options_description&) {}

// storage:mount / storage:unmount: HOST:CTR[:ro|:rw], the grammar the daemon parses.
void build_storage_spec(const char* verb, const VerbInput& in, CtlCommand& cmd) {
  cmd.args["app"] = in.positional.at(0);
  const auto& spec = in.positional.at(1);
  const auto parts = mountmgr::split_storage_spec(spec);
  if (!parts || parts->host.empty() || parts->container.empty())
    usage(std::string(verb) + ": expected HOST:CTR or HOST:CTR:ro, got " + json_quoted(spec));
  cmd.args["spec"] = spec;
}

// --share: the operator's access for a share of a compose app, over the template's (checked
// by policy::parse_share_access where the template is read).
constexpr const char* kShareHelp =
    "with --compose: share NAME gets MODE (read, read-write, create-only, no-delete or own-files) whatever the template says; "
    "* is every share (repeatable; kept for later upgrades, which replace them only when they give --share)";

// --share values, checked here so that a bad one is a usage error before anything is read.
std::vector<std::string> share_rules(const VerbInput& in) {
  auto rules = in.vm["share"].as<std::vector<std::string>>();
  std::map<std::string, policy::Access> parsed;
  for (const auto& rule : rules) {
    if (auto expected = policy::parse_share_access(rule, parsed)) {
      usage("--share: " + *expected + ", got " + json_quoted(rule));
    }
  }
  return rules;
}

// app install and app upgrade: the manifest file plus the app id and id maps (an app installed
// with --name needs the same --name to be upgraded).
void define_manifest_options(po::options_description& d) {
  d.add_options()("name", po::value<std::string>()->value_name("N"),
                  "the app id to use instead of the manifest's name")(
      "uid-map", po::value<std::vector<std::string>>()->composing()->value_name("C:H:N"),
      "container uid C..C+N-1 is host uid H..H+N-1 (repeatable; as the container's uid_map)")(
      "gid-map", po::value<std::vector<std::string>>()->composing()->value_name("C:H:N"),
      "the same for gids (repeatable)")(
      "compose", po::bool_switch(), "FILE is a docker-compose.yml.template (Freeshard)")(
      "meta", po::value<std::string>()->value_name("app_meta.json"),
      "with --compose: the app's app_meta.json (default: the one beside the template)")(
      "allow-all-app-data", po::bool_switch(), "with --compose: allow {{ fs.all_app_data }}")(
      "share", po::value<std::vector<std::string>>()->composing()->value_name("NAME=MODE"),
      kShareHelp);
}

void build_manifest_args(const char* verb, const VerbInput& in, CtlCommand& cmd) {
  cmd.manifest_file = in.positional.at(0);
  if (in.vm.count("name")) cmd.args["name"] = in.vm["name"].as<std::string>();
  for (const char* opt : {"uid-map", "gid-map"}) {
    if (!in.vm.count(opt)) continue;
    auto maps = in.vm[opt].as<std::vector<std::string>>();
    for (const auto& m : maps) check_id_range(verb, (std::string("--") + opt).c_str(), m);
    cmd.args[std::string(opt) == "uid-map" ? "uid_maps" : "gid_maps"] = maps;
  }
  // --compose: portalctl adds the app id, version and installation_dir (tools/ctl_compose.cpp).
  if (in.vm["compose"].as<bool>()) {
    cmd.args["compose"] = true;
    cmd.args["allow_all_app_data"] = in.vm["allow-all-app-data"].as<bool>();
    if (in.vm.count("meta")) cmd.args["meta"] = in.vm["meta"].as<std::string>();
    if (in.vm.count("share")) cmd.args["share_access"] = share_rules(in);
  } else if (in.vm.count("meta") || in.vm["allow-all-app-data"].as<bool>() || in.vm.count("share")) {
    usage(std::string(verb) + ": --meta, --allow-all-app-data and --share need --compose");
  }
}

// validate --compose and render: how a template is read (tools/ctl_compose.cpp).
void define_compose_options(po::options_description& d) {
  d.add_options()("compose", po::bool_switch(), "the files are docker-compose.yml.template files")(
      "allow-all-app-data", po::bool_switch(), "allow {{ fs.all_app_data }} (every app's data)")(
      "share", po::value<std::vector<std::string>>()->composing()->value_name("NAME=MODE"), kShareHelp)(
      "name", po::value<std::string>()->value_name("N"), "the app id (default: app_meta.json's name)")(
      "mountpoint", po::value<std::string>()->value_name("DIR"), "portalfsd's mountpoint (default /run/portalfs/fs)")(
      "storage-root", po::value<std::string>()->value_name("DIR"),
      "portalfsd's storage root (default /var/lib/portalfs/storage)");
}

void build_compose_args(const VerbInput& in, CtlCommand& cmd) {
  cmd.args["compose"] = in.vm["compose"].as<bool>();
  cmd.args["allow_all_app_data"] = in.vm["allow-all-app-data"].as<bool>();
  if (in.vm.count("share")) cmd.args["share_access"] = share_rules(in);
  for (const char* opt : {"name", "mountpoint", "storage-root"}) {
    if (!in.vm.count(opt)) continue;
    const auto value = in.vm[opt].as<std::string>();
    if (std::string(opt) != "name" && (value.empty() || value.front() != '/')) {
      usage(std::string("--") + opt + ": expected an absolute path, got " + json_quoted(value));
    }
    cmd.args[std::string(opt) == "storage-root" ? "storage_root" : opt] = value;
  }
}

// The verb table, in pieces by area; the order of the pieces is the order of portalctl --help.
// Each entry's build() turns checked arguments into the request args documented next to the
// daemon's handler (mountmgr/verbs_*.cpp); the daemon validates names and paths in depth.

void build_nothing(const VerbInput&, CtlCommand&) {}

void build_app(const VerbInput& in, CtlCommand& cmd) { cmd.args["app"] = in.positional.at(0); }

// ---- validate, app * ----

void define_upgrade(po::options_description& d) {
  define_manifest_options(d);
  d.add_options()("prune", po::bool_switch(), "delete the data directories the new version no longer has");
}

void build_upgrade(const VerbInput& in, CtlCommand& cmd) {
  build_manifest_args("app upgrade", in, cmd);
  cmd.args["prune"] = in.vm["prune"].as<bool>();
}

void define_remove(po::options_description& d) {
  d.add_options()("purge", po::bool_switch(), "also delete its data directories");
}

void build_remove(const VerbInput& in, CtlCommand& cmd) {
  cmd.args["app"] = in.positional.at(0);
  cmd.args["purge"] = in.vm["purge"].as<bool>();
}

std::vector<Verb> app_verbs() {
  // clang-format off
  return {
      {"validate", "validate", "FILE... [--compose [--allow-all-app-data] [--name N]]",
       "check app.json files (or, with --compose, docker-compose.yml.template files) offline "
       "and print their grants",
       {"FILE..."}, define_compose_options,
       [](const VerbInput& in, CtlCommand& cmd) {
         cmd.files = in.positional;
         build_compose_args(in, cmd);
       }},
      {"render", "render", "APP TEMPLATE [-o FILE] [--allow-all-app-data]",
       "print TEMPLATE (a docker-compose.yml.template) with every {{ fs.* }} volume source "
       "replaced by its portalfs view and every other byte unchanged (offline)",
       {"APP", "TEMPLATE"},
       [](po::options_description& d) {
         define_compose_options(d);
         d.add_options()("output,o", po::value<std::string>()->value_name("FILE"),
                         "write to FILE (atomically) instead of stdout");
       },
       [](const VerbInput& in, CtlCommand& cmd) {
         cmd.args["name"] = in.positional.at(0);
         cmd.files = {in.positional.at(1)};
         build_compose_args(in, cmd);
         cmd.args["compose"] = true;
         if (in.vm.count("output")) cmd.args["output"] = in.vm["output"].as<std::string>();
       }},
      {"app install", "app.install", "FILE [--name N] [--uid-map C:H:N]... [--gid-map C:H:N]...",
       "install an app from its app.json: create its data directories and print its mounts",
       {"FILE"}, define_manifest_options,
       [](const VerbInput& in, CtlCommand& cmd) { build_manifest_args("app install", in, cmd); }},
      {"app upgrade", "app.upgrade",
       "FILE [--prune] [--name N] [--uid-map C:H:N]... [--gid-map C:H:N]...",
       "upgrade an installed app to a new app.json, keeping its data",
       {"FILE"}, define_upgrade, build_upgrade},
      {"app remove", "app.remove", "APP [--purge]", "remove an app",
       {"APP"}, define_remove, build_remove},
      {"app list", "app.list", "", "list the installed apps", {}, no_options, build_nothing},
      {"app show", "app.show", "APP", "show one app: version, grants, attachments", {"APP"},
       no_options, build_app},
  };
  // clang-format on
}

// ---- share *, grant, revoke ----

// --trash D: a retention, checked by the one parser (policy/trash.hpp).
void add_trash_option(po::options_description& d, const char* help) {
  d.add_options()("trash", po::value<std::string>()->value_name("30d|12h|off"), help);
}

void build_trash_option(const char* verb, const VerbInput& in, CtlCommand& cmd) {
  if (!in.vm.count("trash")) return;
  const auto& text = in.vm["trash"].as<std::string>();
  std::string expected;
  if (!policy::parse_retention(text, &expected)) usage(std::string(verb) + ": --trash: " + expected + ", got " + json_quoted(text));
  cmd.args["trash"] = text;
}

void define_share_create(po::options_description& d) {
  d.add_options()("owner", po::value<std::string>()->value_name("UID:GID"),
                  "who owns its files on disk (default 0:0)");
  add_trash_option(d, "deletes through a view go to the share's trash, kept this long (default off)");
}

void build_share_create(const VerbInput& in, CtlCommand& cmd) {
  cmd.args["name"] = in.positional.at(0);
  build_trash_option("share create", in, cmd);
  if (!in.vm.count("owner")) return;
  auto owner = in.vm["owner"].as<std::string>();
  auto parts = split(owner, ':');
  if (parts.size() != 2 || !parse_number(parts[0], 0, UINT32_MAX - 1) ||
      !parse_number(parts[1], 0, UINT32_MAX - 1)) {
    usage("share create: --owner: expected UID:GID (like 1000:1000), got " + json_quoted(owner));
  }
  cmd.args["owner"] = owner;
}

void define_share_set(po::options_description& d) {
  add_trash_option(d, "deletes through a view go to the share's trash, kept this long; off: deletes delete");
}

void build_share_set(const VerbInput& in, CtlCommand& cmd) {
  cmd.args["name"] = in.positional.at(0);
  if (!in.vm.count("trash")) usage("share set: missing --trash 30d|12h|off (the one setting there is)");
  build_trash_option("share set", in, cmd);
}

void define_grant(po::options_description& d) {
  d.add_options()("path", po::value<std::string>()->value_name("/in/container"),
                  "where the container sees the share")(
      "sidecar", po::value<std::vector<std::string>>()->composing()->value_name("PATTERN"),
      "with read: the app may also create files named like PATTERN (*.xmp) next to the "
      "originals, and change or remove those it made (repeatable)")(
      "audit-reads", po::bool_switch(),
      "also record the app's reads through this view in its audit trail (each open that can "
      "read, each directory listing); granting again without it stops that");
}

void build_grant(const VerbInput& in, CtlCommand& cmd) {
  cmd.args["app"] = in.positional.at(0);
  cmd.args["share"] = in.positional.at(1);
  const auto& access = in.positional.at(2);
  const auto mode = portalfs::policy::parse_access(access);
  if (!mode) usage("grant: expected one of " + portalfs::policy::access_names() + ", got " + json_quoted(access));
  cmd.args["access"] = portalfs::policy::to_string(*mode);
  if (in.vm.count("sidecar")) {
    const auto sidecars = in.vm["sidecar"].as<std::vector<std::string>>();
    for (const auto& p : sidecars) {
      if (auto e = portalfs::policy::check_sidecar_pattern(p)) usage("grant: --sidecar: " + *e + ", got " + json_quoted(p));
    }
    if (*mode != portalfs::policy::Access::read) usage("grant: --sidecar goes with read (the other modes write files already)");
    cmd.args["sidecars"] = sidecars;
  }
  if (in.vm["audit-reads"].as<bool>()) cmd.args["audit_reads"] = true;
  if (!in.vm.count("path")) usage("grant: missing --path /in/container");
  auto path = in.vm["path"].as<std::string>();
  check_container_path("grant", "--path", path);
  cmd.args["path"] = path;
}

void define_revoke(po::options_description& d) {
  d.add_options()("force", po::bool_switch(), "also fail the writes of files the app already has open (reads of files open before go on until closed)");
}

void build_revoke(const VerbInput& in, CtlCommand& cmd) {
  cmd.args["app"] = in.positional.at(0);
  cmd.args["share"] = in.positional.at(1);
  cmd.args["force"] = in.vm["force"].as<bool>();
}

std::vector<Verb> share_verbs() {
  // clang-format off
  return {
      {"share create", "share.create", "NAME [--owner UID:GID] [--trash 30d]", "create a shared directory",
       {"NAME"}, define_share_create, build_share_create},
      {"share list", "share.list", "", "list the shared directories", {}, no_options, build_nothing},
      {"share set", "share.set", "NAME --trash 30d|12h|off", "change a shared directory's trash",
       {"NAME"}, define_share_set, build_share_set},
      {"grant", "grant", "APP SHARE MODE --path /in/container",
       "give an app a shared directory; MODE is read, read-write, create-only, no-delete or own-files (takes effect at once)",
       {"APP", "SHARE", "MODE"}, define_grant, build_grant},
      {"revoke", "revoke", "APP SHARE [--force]", "take a shared directory away from an app",
       {"APP", "SHARE"}, define_revoke, build_revoke},
  };
  // clang-format on
}

// ---- mounts, attach, detach ----

void define_mounts(po::options_description& d) {
  d.add_options()("format", po::value<std::string>()->value_name("docker|oci|json"),
                  "docker -v options, OCI mounts[] entries, or JSON (default docker)")(
      "service", po::value<std::string>()->value_name("S"),
      "the mounts of service S of an app installed with --compose");
}

void build_mounts(const VerbInput& in, CtlCommand& cmd) {
  cmd.args["app"] = in.positional.at(0);
  // A compose app's service is recorded as app <app>--<service> (policy::service_app_id).
  if (in.vm.count("service")) {
    cmd.args["app"] = in.positional.at(0) + "--" + policy::app_id_from_name(in.vm["service"].as<std::string>());
  }
  // The global --format json means JSON here too; otherwise docker is the default.
  std::string style = cmd.format == OutputFormat::json ? "json" : "docker";
  if (in.vm.count("format")) style = in.vm["format"].as<std::string>();
  if (style != "docker" && style != "oci" && style != "json") {
    usage("mounts: --format: expected docker, oci or json, got " + json_quoted(style));
  }
  cmd.args["style"] = style;
  cmd.format = style == "json" ? OutputFormat::json : OutputFormat::text;
}

void define_attach(po::options_description& d) {
  d.add_options()("pid", po::value<std::string>()->value_name("PID"),
                  "a process in the container (its mount namespace is used)");
}

void define_detach(po::options_description& d) {
  d.add_options()("pid", po::value<std::string>()->value_name("PID"), "a process in the container");
}

void build_attach(const VerbInput& in, CtlCommand& cmd) {
  cmd.args["app"] = in.positional.at(0);
  cmd.args["pid"] = pid_arg("attach", in.vm);
}

void build_detach(const VerbInput& in, CtlCommand& cmd) {
  cmd.args["app"] = in.positional.at(0);
  cmd.args["pid"] = pid_arg("detach", in.vm);
}

std::vector<Verb> container_verbs() {
  // clang-format off
  return {
      {"mounts", "mounts", "APP [--format docker|oci|json]",
       "print the mounts to start APP's container with",
       {"APP"}, define_mounts, build_mounts, true},
      {"attach", "attach", "APP --pid PID",
       "put APP's views into the running container whose process is PID",
       {"APP"}, define_attach, build_attach},
      {"detach", "detach", "APP --pid PID",
       "take APP's views out of the running container whose process is PID",
       {"APP"}, define_detach, build_detach},
  };
  // clang-format on
}

// ---- trash * (a share's trash, policy/trash.hpp) ----

void define_trash_select(po::options_description& d) {
  d.add_options()("app", po::value<std::string>()->value_name("APP"), "only what this app deleted");
}

void build_trash_select(const VerbInput& in, CtlCommand& cmd) {
  if (!in.positional.empty()) cmd.args["share"] = in.positional.at(0);
  if (in.vm.count("app")) cmd.args["app"] = in.vm["app"].as<std::string>();
}

void define_trash_purge(po::options_description& d) {
  define_trash_select(d);
  d.add_options()("older-than", po::value<std::string>()->value_name("30d|12h"), "only what was deleted longer ago");
}

void build_trash_purge(const VerbInput& in, CtlCommand& cmd) {
  build_trash_select(in, cmd);
  if (!in.vm.count("older-than")) return;
  const auto& text = in.vm["older-than"].as<std::string>();
  std::string expected;
  const auto seconds = policy::parse_retention(text, &expected);
  if (!seconds || *seconds == 0) usage("trash purge: --older-than: expected an age like 30d, 12h, 45m or 90s, got " + json_quoted(text));
  cmd.args["older_than"] = *seconds;
}

void define_trash_restore(po::options_description& d) {
  d.add_options()("to", po::value<std::string>()->value_name("PATH"),
                  "where in the share to put it back (relative to the share; default where it was)");
}

void build_trash_restore(const VerbInput& in, CtlCommand& cmd) {
  cmd.args["id"] = in.positional.at(0);
  if (in.vm.count("to")) cmd.args["to"] = in.vm["to"].as<std::string>();
}

std::vector<Verb> trash_verbs() {
  // clang-format off
  return {
      {"trash list", "trash.list", "[SHARE] [--app APP]", "list what was deleted through views of shares with a trash",
       {"[SHARE]"}, define_trash_select, build_trash_select},
      {"trash restore", "trash.restore", "ID [--to PATH]",
       "put a trashed file or directory back, with its bytes, owner, mode and times",
       {"ID"}, define_trash_restore, build_trash_restore},
      {"trash purge", "trash.purge", "[SHARE] [--app APP] [--older-than 30d]", "delete trashed entries for good",
       {"[SHARE]"}, define_trash_purge, build_trash_purge},
  };
  // clang-format on
}

// ---- quota set|clear, usage (policy/quota.hpp) ----

void define_quota_set(po::options_description& d) {
  d.add_options()("inodes", po::value<std::string>()->value_name("N"), "also limit the files and directories to N");
}

void build_quota_set(const VerbInput& in, CtlCommand& cmd) {
  cmd.args["target"] = in.positional.at(0);
  const std::string& text = in.positional.at(1);
  std::string expected;
  const auto bytes = policy::parse_size(text, &expected);
  if (!bytes) usage("quota set: SIZE: " + expected + ", got " + json_quoted(text));
  cmd.args["bytes"] = *bytes;
  if (!in.vm.count("inodes")) return;
  const auto& inodes = in.vm["inodes"].as<std::string>();
  const auto n = parse_number(inodes, 1, INT64_MAX);
  if (!n) usage("quota set: --inodes: expected a positive number of files and directories, got " + json_quoted(inodes));
  cmd.args["inodes"] = *n;
}

std::vector<Verb> quota_verbs() {
  // clang-format off
  return {
      {"quota set", "quota.set", "APP|SHARE|APP:SHARE SIZE [--inodes N]",
       "limit an app's data directories (together), a share, or what an app creates in a share (APP:SHARE) to "
       "SIZE (10G, 500M, 1048576), enforced by the storage root's project quotas (APP:SHARE: by portalfsd)",
       {"APP|SHARE|APP:SHARE", "SIZE"}, define_quota_set, build_quota_set},
      {"quota clear", "quota.clear", "APP|SHARE|APP:SHARE", "take an app's or a share's limit away",
       {"APP|SHARE|APP:SHARE"}, no_options,
       [](const VerbInput& in, CtlCommand& cmd) { cmd.args["target"] = in.positional.at(0); }},
      {"usage", "usage", "[APP|SHARE|APP:SHARE]",
       "what each app or share with a quota uses: bytes and inodes, limit, percent",
       {"[APP|SHARE|APP:SHARE]"}, no_options,
       [](const VerbInput& in, CtlCommand& cmd) {
         if (!in.positional.empty()) cmd.args["target"] = in.positional.at(0);
       }},
  };
  // clang-format on
}

// ---- storage:* (Dokku) and status ----

void define_report(po::options_description& d) {
  d.add_options()("storage-deploy-mounts", po::bool_switch(), "only the deploy mounts")(
      "storage-run-mounts", po::bool_switch(), "only the run mounts")(
      "storage-build-mounts", po::bool_switch(), "only the build mounts");
}

void build_report(const VerbInput& in, CtlCommand& cmd) {
  if (!in.positional.empty()) cmd.args["app"] = in.positional.at(0);
  const char* only = nullptr;
  for (const char* phase : {"deploy", "run", "build"}) {
    if (!in.vm[std::string("storage-") + phase + "-mounts"].as<bool>()) continue;
    if (only) usage("storage:report: give at most one --storage-*-mounts flag");
    only = phase;
  }
  if (only) cmd.args["only"] = only;
}

void define_ensure_directory(po::options_description& d) {
  d.add_options()("chown", po::value<std::string>()->value_name("herokuish|heroku|packeto|false"),
                  "32767:32767 (herokuish, the default), 1000:1000 (heroku), 2000:2000 "
                  "(packeto), or leave the owner alone (false)");
}

void build_ensure_directory(const VerbInput& in, CtlCommand& cmd) {
  cmd.args["name"] = in.positional.at(0);
  if (!in.vm.count("chown")) return;
  auto chown = in.vm["chown"].as<std::string>();
  if (chown != "herokuish" && chown != "heroku" && chown != "packeto" && chown != "false") {
    usage("storage:ensure-directory: --chown: expected herokuish, heroku, packeto or false, got " +
          json_quoted(chown));
  }
  cmd.args["chown"] = chown;
}

void build_who(const VerbInput& in, CtlCommand& cmd) {
  const auto& path = in.positional.at(0);
  if (path.empty()) usage("who: expected a path, got \"\"");
  cmd.args["path"] = path;
  cmd.path_args = {"path"};
}

void define_audit(po::options_description& d) {
  // clang-format off
  d.add_options()
    ("since", po::value<std::string>()->value_name("T"),
     "only records from T on: a UTC time (2026-12-06T22:40:00) or a span before now (30s, 10m, 2h, 7d)")
    ("follow", po::bool_switch(), "keep printing new records as they are written (across rotations)")
    ("state-dir", po::value<std::string>()->value_name("DIR"),
     "portalfsd's --state-dir, whose audit/ is read (default /var/lib/portalfs)");
  // clang-format on
}

void build_audit(const VerbInput& in, CtlCommand& cmd) {
  if (!in.positional.empty()) {
    const auto& app = in.positional.front();
    if (app.empty() || app.find('/') != std::string::npos || app == "." || app == "..") {
      usage("audit: expected an app id, got " + json_quoted(app));
    }
    cmd.args["app"] = app;
  }
  if (in.vm.count("since")) {
    const auto& since = in.vm["since"].as<std::string>();
    if (!common::parse_since(since, std::chrono::system_clock::now())) {
      usage("audit: --since: expected a UTC time like 2026-12-06T22:40:00 or a span like 10m, 2h, 7d, got " +
            json_quoted(since));
    }
    cmd.args["since"] = since;
  }
  cmd.args["follow"] = in.vm["follow"].as<bool>();
  std::string dir = in.vm.count("state-dir") ? in.vm["state-dir"].as<std::string>() : "/var/lib/portalfs";
  if (dir.empty()) usage("audit: --state-dir: expected a directory");
  cmd.args["state_dir"] = dir;
}

std::vector<Verb> storage_verbs() {
  // clang-format off
  return {
      {"storage:list", "storage.list", "APP", "list APP's mounts (Dokku)", {"APP"}, no_options,
       build_app},
      {"storage:mount", "storage.mount", "APP HOST:CTR[:ro]",
       "add a hand-made mount of a host directory (Dokku)",
       {"APP", "HOST:CTR[:ro]"}, no_options,
       [](const VerbInput& in, CtlCommand& cmd) { build_storage_spec("storage:mount", in, cmd); }},
      // The mount's own spec (with :ro) is accepted too, as Dokku users copy it.
      {"storage:unmount", "storage.unmount", "APP HOST:CTR",
       "remove a hand-made mount (Dokku)",
       {"APP", "HOST:CTR"}, no_options,
       [](const VerbInput& in, CtlCommand& cmd) { build_storage_spec("storage:unmount", in, cmd); }},
      {"storage:report", "storage.report",
       "[APP] [--storage-deploy-mounts|--storage-run-mounts|--storage-build-mounts]",
       "report the mounts of one app or of all apps (Dokku)",
       {"[APP]"}, define_report, build_report},
      {"storage:ensure-directory", "storage.ensure-directory",
       "[--chown herokuish|heroku|packeto|false] NAME",
       "create a storage directory and chown it for a buildpack's user (Dokku)",
       {"NAME"}, define_ensure_directory, build_ensure_directory},
      {"status", "status", "", "show the daemon's state: mount, apps, attachments", {}, no_options,
       build_nothing},
      {"disk forget", "disk.forget", "PATH",
       "forget the disk recorded for a share's directory or a storage:mount path (status lists them "
       "under mounts), once it is retired or replaced on purpose: the next check records what is mounted there now",
       {"PATH"}, no_options,
       [](const VerbInput& in, CtlCommand& cmd) { cmd.args["path"] = in.positional.at(0); }},
      {"doctor", "doctor", "[--config FILE]",
       "check this machine for what portalfsd needs: one line per check, PASS, WARN or FAIL with "
       "the command that fixes it; exit 1 on a FAIL (runs here, also while the daemon is down)",
       {},
       [](po::options_description& d) {
         d.add_options()("config", po::value<std::string>()->value_name("FILE"),
                         "portalfsd's config file (default /etc/portalfs/portalfsd.conf, when it exists)");
       },
       [](const VerbInput& in, CtlCommand& cmd) {
         if (!in.vm.count("config")) return;
         const auto file = in.vm["config"].as<std::string>();
         if (file.empty() || file.front() != '/') usage("doctor: --config: expected an absolute path, got " + json_quoted(file));
         cmd.args["config"] = file;
       }},
      {"who", "who", "PATH",
       "which app created PATH (a file in a view, or below the storage root; a relative PATH is "
       "from the current directory) and which last changed it",
       {"PATH"}, no_options, build_who},
      // Read from the files on this host (root), not through the daemon: --follow tails them.
      {"audit", "audit", "[APP] [--since T] [--follow] [--state-dir DIR]",
       "print the audit trail: denials and changes in the views, app, grant and share changes "
       "(of APP, or of every app and the platform)",
       {"[APP]"}, define_audit, build_audit},
  };
  // clang-format on
}

const std::vector<Verb>& verbs() {
  static const std::vector<Verb> table = [] {
    std::vector<Verb> all;
    for (auto&& part : {app_verbs(), share_verbs(), container_verbs(), storage_verbs(), trash_verbs(), quota_verbs()}) {
      all.insert(all.end(), part.begin(), part.end());
    }
    return all;
  }();
  return table;
}

po::options_description global_description() {
  po::options_description desc("Global options");
  // clang-format off
  desc.add_options()
    ("socket", po::value<std::string>()->value_name("PATH"),
     "portalfsd's control socket (default $PORTALFS_SOCKET, else /run/portalfs/portalfs.sock)")
    ("format", po::value<std::string>()->value_name("text|json"), "output format (default text)")
    ("help,h", "print this help and exit")
    ("version", "print the version and exit");
  // clang-format on
  return desc;
}

po::options_description verb_description(const Verb& verb) {
  po::options_description desc("Options");
  verb.define(desc);
  if (!verb.own_format) {
    desc.add_options()("format", po::value<std::string>()->value_name("text|json"),
                       "output format (default text, or the global --format)");
  }
  desc.add_options()("help,h", "print this help and exit");
  return desc;
}

std::string ctl_usage() {
  std::ostringstream out;
  out << "Usage: portalctl [--socket PATH] [--format text|json] COMMAND [ARGS...]\n\n"
         "Manages portalfs: apps, shared directories, grants and container mounts, through\n"
         "portalfsd's control socket.\n\nCommands:\n";
  for (const auto& v : verbs()) {
    std::string head = std::string("  ") + v.name + (*v.synopsis ? " " : "") + v.synopsis;
    out << head << "\n      " << v.summary << "\n";
  }
  out << "\n"
      << help_text(global_description())
      << "\nRun 'portalctl COMMAND --help' for a command's options.\n"
         "Exit codes: 0 ok, 1 runtime failure (or daemon unreachable), 2 bad input.\n";
  return out.str();
}

std::string verb_usage(const Verb& verb) {
  std::string head = std::string(verb.name) + (*verb.synopsis ? " " : "") + verb.synopsis;
  std::string summary = verb.summary;
  if (!summary.empty() && summary[0] >= 'a' && summary[0] <= 'z') {
    summary[0] = static_cast<char>(summary[0] - 'a' + 'A');  // a sentence in the verb's help
  }
  return "Usage: portalctl [--socket PATH] " + head + "\n\n" + summary + ".\n\n" +
         help_text(verb_description(verb));
}

std::string group_usage(std::string_view group) {
  std::string out = "Usage: portalctl " + std::string(group) + " SUBCOMMAND ...\n\n";
  for (const auto& v : verbs()) {
    std::string_view name = v.name;
    if (name.substr(0, group.size() + 1) != std::string(group) + " ") continue;
    out += std::string("  ") + v.name + (*v.synopsis ? " " : "") + v.synopsis + "\n      " +
           v.summary + "\n";
  }
  return out + "\nRun 'portalctl " + std::string(group) + " SUBCOMMAND --help' for details.\n";
}

std::string group_subcommands(std::string_view group) {
  std::string out;
  std::vector<std::string> subs;
  for (const auto& v : verbs()) {
    std::string_view name = v.name;
    if (name.substr(0, group.size() + 1) == std::string(group) + " ") {
      subs.emplace_back(name.substr(group.size() + 1));
    }
  }
  for (std::size_t i = 0; i < subs.size(); ++i) {
    if (i) out += i + 1 == subs.size() ? " or " : ", ";
    out += subs[i];
  }
  return out;
}

const Verb* find_verb(std::string_view name) {
  for (const auto& v : verbs()) {
    if (name == v.name) return &v;
  }
  return nullptr;
}

// A word that starts two-word commands ("share create", "disk forget"): from the table alone.
bool is_group(std::string_view word) {
  return std::any_of(verbs().begin(), verbs().end(), [&](const Verb& v) {
    const std::string_view name = v.name;
    return name.size() > word.size() && name.starts_with(word) && name[word.size()] == ' ';
  });
}

/// Where the global options end: the index of the first token that is not a global option or
/// its value (the command word).
std::size_t global_end(const std::vector<std::string>& args,
                       const po::options_description& global) {
  std::size_t i = 0;
  while (i < args.size()) {
    const std::string& t = args[i];
    if (t == "--") return i;
    if (t.size() < 2 || t[0] != '-') return i;
    ++i;
    if (t.rfind("--", 0) == 0 && t.find('=') == std::string::npos) {
      const auto* opt = global.find_nothrow(t.substr(2), false);
      if (opt && opt->semantic()->max_tokens() > 0 && i < args.size()) ++i;
    }
  }
  return i;
}

po::variables_map parse_tokens(const std::string& where, const std::vector<std::string>& tokens,
                               const po::options_description& desc,
                               std::vector<std::string>* positional) {
  po::options_description all;
  all.add(desc);
  all.add_options()("positional__", po::value<std::vector<std::string>>());
  po::positional_options_description pos;
  pos.add("positional__", -1);
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(tokens).options(all).positional(pos).style(kStyle).run(), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    usage(where + e.what());
  }
  if (vm.count("positional__")) {
    auto values = vm["positional__"].as<std::vector<std::string>>();
    if (!positional) usage(where + "unexpected argument " + json_quoted(values.front()));
    *positional = std::move(values);
  }
  return vm;
}

}  // namespace

// ---- portalfsd ---------------------------------------------------------------------------

namespace {

DaemonInput daemon_input(const std::vector<std::string>& args, const ConfigReader& read_config) {
  auto desc = daemon_description();
  auto all = desc;
  all.add_options()("positional__", po::value<std::vector<std::string>>());
  po::positional_options_description pos;
  pos.add("positional__", -1);
  DaemonInput in;
  try {
    po::store(po::command_line_parser(args).options(all).positional(pos).style(kStyle).run(), in.vm);
  } catch (const po::error& e) {
    throw UsageError(kDaemon, e.what());
  }
  if (in.vm.count("positional__")) {
    throw UsageError(kDaemon,
                     "unexpected argument " +
                         json_quoted(in.vm["positional__"].as<std::vector<std::string>>().front()));
  }
  if (in.vm.count("help")) throw ExitRequest(0, daemon_usage());
  if (in.vm.count("version"))
    throw ExitRequest(0, std::string("portalfsd ") + PORTALFS_VERSION + "\n");
  for (const auto& [name, value] : in.vm) {
    if (!value.defaulted()) in.origin[name] = "--" + name;
  }

  // --config names a file that must be there; the default one is read only when it exists.
  const bool named = in.vm.count("config") != 0;
  const std::string path = named ? absolute_path(in, "config", "") : kDefaultConfig;
  if (read_config) {
    if (auto text = read_config(path)) {
      store_config({path, *text}, desc, in);
    } else if (named) {
      in.bad("config", "no such file " + json_quoted(path));
    }
  }
  try {
    po::notify(in.vm);
  } catch (const po::error& e) {
    throw UsageError(kDaemon, e.what());
  }
  return in;
}

}  // namespace

DaemonOptions parse_daemon_options(const std::vector<std::string>& args, const ConfigReader& read_config) {
  const DaemonInput in = daemon_input(args, read_config);
  const po::variables_map& vm = in.vm;

  DaemonOptions o;
  o.storage_root = absolute_path(in, "storage-root", o.storage_root);
  o.mountpoint = absolute_path(in, "mountpoint", o.mountpoint);
  o.state_dir = absolute_path(in, "state-dir", o.state_dir);
  o.socket = absolute_path(in, "socket", o.socket);
  o.foreground = vm["foreground"].as<bool>();
  o.recover_from_backup = vm["recover-from-backup"].as<bool>();
  o.example = vm["example"].as<bool>();
  o.passthrough = !vm["no-passthrough"].as<bool>();
  o.io_uring = !vm["no-io-uring"].as<bool>();
  if (vm.count("layout")) {
    o.layout = vm["layout"].as<std::string>();
    if (o.layout != "portalfs" && o.layout != "freeshard") {
      in.bad("layout", "expected portalfs or freeshard, got " + json_quoted(o.layout));
    }
  }
  o.audit = on_off(in, "audit", o.audit);
  o.provenance = on_off(in, "provenance", o.provenance);
  o.events = on_off(in, "events", o.events);
  o.shared_state = on_off(in, "shared-state", o.shared_state);
  if (vm.count("threads")) {
    const auto& text = vm["threads"].as<std::string>();
    // libfuse caps its own pool far below this; the bound only catches typos.
    auto n = parse_number(text, 0, 1024);
    if (!n) in.bad("threads", "expected 0 to 1024, got " + json_quoted(text));
    o.threads = static_cast<unsigned>(*n);
  }
  if (vm.count("trash-purge-interval")) {
    const auto& text = vm["trash-purge-interval"].as<std::string>();
    auto n = parse_number(text, 1, 86400 * 30);
    if (!n) in.bad("trash-purge-interval", "expected 1 to 2592000 seconds, got " + json_quoted(text));
    o.trash_purge_interval = static_cast<unsigned>(*n);
  }
  if (vm.count("open-files-per-app")) {
    const auto& text = vm["open-files-per-app"].as<std::string>();
    auto n = parse_number(text, 1, 1u << 30);
    if (!n) in.bad("open-files-per-app", "expected a positive number of files, got " + json_quoted(text));
    o.open_files_per_app = static_cast<size_t>(*n);
  }
  if (vm.count("request-timeout")) {
    const auto& text = vm["request-timeout"].as<std::string>();
    auto n = parse_number(text, 0, 65535);  // the protocol's field is 16 bits
    if (!n) in.bad("request-timeout", "expected 0 to 65535 seconds, got " + json_quoted(text));
    o.request_timeout = static_cast<uint16_t>(*n);
  }
  if (vm.count("open-files-of")) o.open_files_of = per_app_numbers(in, "open-files-of", "files");
  if (vm.count("inodes-of")) o.inodes_of = per_app_numbers(in, "inodes-of", "inodes");
  if (vm.count("inodes-per-app")) {
    const auto& text = vm["inodes-per-app"].as<std::string>();
    auto n = parse_number(text, 1, 1u << 30);
    if (!n) in.bad("inodes-per-app", "expected a positive number of inodes, got " + json_quoted(text));
    o.inodes_per_app = static_cast<size_t>(*n);
  }
  if (vm.count("log-level")) {
    const auto& text = vm["log-level"].as<std::string>();
    if (!common::parse_log_level(text, o.log_level)) {
      in.bad("log-level", "expected debug, info, warn or error, got " + json_quoted(text));
    }
  }
  if (vm.count("admin-group")) {
    o.admin_group = vm["admin-group"].as<std::string>();
    if (o.admin_group.empty()) in.bad("admin-group", "expected a group name or gid");
  }
  return o;
}

DaemonOptions parse_daemon_options(int argc, const char* const* argv, const ConfigReader& read_config) {
  return parse_daemon_options(args_of(argc, argv), read_config);
}

gid_t resolve_group(std::string_view program, const std::string& group) {
  if (auto gid = parse_number(group, 0, UINT32_MAX - 1)) return static_cast<gid_t>(*gid);
  struct group entry {};
  struct group* found = nullptr;
  std::vector<char> buf(16384);
  for (;;) {
    int rc = ::getgrnam_r(group.c_str(), &entry, buf.data(), buf.size(), &found);
    if (rc == ERANGE && buf.size() < (1u << 22)) {
      buf.resize(buf.size() * 2);
      continue;
    }
    break;
  }
  if (!found) throw UsageError(program, "--admin-group: no group named " + json_quoted(group));
  return found->gr_gid;
}

std::optional<std::string> read_config_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    if (errno == ENOENT) return std::nullopt;
    throw UsageError(kDaemon, "cannot read the config file " + path + ": " + std::strerror(errno));
  }
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// ---- portalctl ---------------------------------------------------------------------------

nlohmann::json CtlCommand::request() const {
  return {
      {"verb", verb}, {"format", format == OutputFormat::json ? "json" : "text"}, {"args", args}};
}

CtlCommand with_absolute_paths(CtlCommand cmd, const std::string& cwd) {
  for (const auto& key : cmd.path_args) {
    auto& value = cmd.args[key];
    if (!value.is_string()) continue;
    const auto path = value.get<std::string>();
    if (!path.empty() && path.front() != '/') value = cwd + (cwd.ends_with('/') ? "" : "/") + path;
  }
  return cmd;
}

CtlCommand parse_ctl_command(const std::vector<std::string>& args,
                             const std::optional<std::string>& env_socket) {
  auto global = global_description();
  std::size_t end = global_end(args, global);
  std::vector<std::string> head(args.begin(), args.begin() + static_cast<std::ptrdiff_t>(end));
  std::vector<std::string> rest(args.begin() + static_cast<std::ptrdiff_t>(end), args.end());
  if (!rest.empty() && rest.front() == "--") rest.erase(rest.begin());

  auto gvm = parse_tokens("", head, global, nullptr);
  if (gvm.count("help")) throw ExitRequest(0, ctl_usage());
  if (gvm.count("version"))
    throw ExitRequest(0, std::string("portalctl ") + PORTALFS_VERSION + "\n");

  CtlCommand cmd;
  if (env_socket && !env_socket->empty()) cmd.socket = *env_socket;
  if (gvm.count("socket")) {
    cmd.socket = gvm["socket"].as<std::string>();
    if (cmd.socket.empty()) usage("--socket: expected a path");
  }
  if (gvm.count("format")) cmd.format = parse_format("", gvm["format"].as<std::string>());

  if (rest.empty()) usage("missing command");

  // "help [COMMAND...]" is --help spelled as a command.
  if (rest.front() == "help") {
    rest.erase(rest.begin());
    if (rest.empty()) throw ExitRequest(0, ctl_usage());
    rest.emplace_back("--help");
  }

  std::string name = rest.front();
  std::size_t used = 1;
  if (is_group(name)) {
    if (rest.size() < 2 || rest[1].empty() || rest[1][0] == '-') {
      if (rest.size() >= 2 && (rest[1] == "--help" || rest[1] == "-h")) {
        throw ExitRequest(0, group_usage(name));
      }
      usage("missing " + name + " subcommand (" + group_subcommands(name) + ")");
    }
    name += " " + rest[1];
    used = 2;
  }
  const Verb* verb = find_verb(name);
  if (!verb) usage("unknown command " + json_quoted(name));
  std::vector<std::string> tokens(rest.begin() + static_cast<std::ptrdiff_t>(used), rest.end());
  if (has_help_flag(tokens)) throw ExitRequest(0, verb_usage(*verb));

  std::string where = std::string(verb->name) + ": ";
  std::vector<std::string> positional;
  auto vm = parse_tokens(where, tokens, verb_description(*verb), &positional);

  // Positional arguments: every required one present, nothing extra.
  std::size_t required = 0;
  std::size_t max = 0;
  for (const char* p : verb->positionals) {
    std::string_view pn = p;
    if (pn.size() > 3 && pn.substr(pn.size() - 3) == "...") {
      ++required;
      max = SIZE_MAX;
    } else if (pn.front() == '[') {
      ++max;
    } else {
      ++required;
      ++max;
    }
  }
  if (positional.size() < required)
    usage(where + "missing " + verb->positionals[positional.size()]);
  if (positional.size() > max) usage(where + "unexpected argument " + json_quoted(positional[max]));

  cmd.verb = verb->protocol;
  if (!verb->own_format && vm.count("format")) {
    cmd.format = parse_format(where, vm["format"].as<std::string>());
  }
  verb->build(VerbInput{vm, std::move(positional)}, cmd);
  return cmd;
}

}  // namespace portalfs::tools
