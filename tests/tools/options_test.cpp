// SPDX-License-Identifier: MIT
// Command line parsing of portalfsd and portalctl (cryfs ParserTest style): every shape a verb
// takes, and the exact one-line message for each kind of mistake.

#include "tools/options.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>

namespace portalfs::tools {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

using Args = std::vector<std::string>;

/// The UsageError's full message, or a test failure when parsing succeeds.
template <typename Parse>
std::string usage_error_of(Parse parse) {
  try {
    parse();
  } catch (const UsageError& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a UsageError";
  return "";
}

std::string ctl_error(const Args& args) {
  return usage_error_of([&] { (void)parse_ctl_command(args); });
}
std::string daemon_error(const Args& args) {
  return usage_error_of([&] { (void)parse_daemon_options(args); });
}

/// The ExitRequest thrown for `args`.
template <typename Parse>
ExitRequest exit_request_of(Parse parse) {
  try {
    parse();
  } catch (const ExitRequest& e) {
    return e;
  }
  ADD_FAILURE() << "expected an ExitRequest";
  return ExitRequest(-1);
}

ExitRequest ctl_exit(const Args& args) {
  return exit_request_of([&] { (void)parse_ctl_command(args); });
}

// ---- portalfsd ---------------------------------------------------------------------------

TEST(DaemonOptions, Defaults) {
  DaemonOptions o = parse_daemon_options(Args{});
  EXPECT_EQ(o.storage_root, "/var/lib/portalfs/storage");
  EXPECT_EQ(o.mountpoint, "/run/portalfs/fs");
  EXPECT_EQ(o.state_dir, "/var/lib/portalfs");
  EXPECT_EQ(o.socket, "/run/portalfs/portalfs.sock");
  EXPECT_FALSE(o.foreground);
  EXPECT_EQ(o.threads, 0u);
  EXPECT_EQ(o.log_level, common::LogLevel::info);
  EXPECT_EQ(o.admin_group, "");
  EXPECT_FALSE(o.recover_from_backup);
  EXPECT_FALSE(o.example);
}

TEST(DaemonOptions, EveryOption) {
  DaemonOptions o = parse_daemon_options(
      Args{"--storage-root", "/s", "--mountpoint=/m", "--state-dir", "/st", "--socket", "/x.sock",
           "--foreground", "--threads", "8", "--log-level", "debug", "--admin-group", "wheel",
           "--recover-from-backup", "--example", "--trash-purge-interval", "60"});
  EXPECT_EQ(o.storage_root, "/s");
  EXPECT_EQ(o.mountpoint, "/m");
  EXPECT_EQ(o.state_dir, "/st");
  EXPECT_EQ(o.socket, "/x.sock");
  EXPECT_TRUE(o.foreground);
  EXPECT_EQ(o.threads, 8u);
  EXPECT_EQ(o.log_level, common::LogLevel::debug);
  EXPECT_EQ(o.admin_group, "wheel");
  EXPECT_TRUE(o.recover_from_backup);
  EXPECT_TRUE(o.example);
  EXPECT_EQ(o.trash_purge_interval, 60u);
}

TEST(DaemonOptions, ArgcArgvForm) {
  const char* argv[] = {"portalfsd", "--foreground", "--threads", "2"};
  DaemonOptions o = parse_daemon_options(4, argv);
  EXPECT_TRUE(o.foreground);
  EXPECT_EQ(o.threads, 2u);
}

TEST(DaemonOptions, HelpAndVersionAreExitRequests) {
  auto help = exit_request_of([] { (void)parse_daemon_options(Args{"--help"}); });
  EXPECT_EQ(help.code(), 0);
  EXPECT_THAT(help.output(), StartsWith("Usage: portalfsd"));
  EXPECT_THAT(help.output(), HasSubstr("--storage-root"));
  auto version = exit_request_of([] { (void)parse_daemon_options(Args{"--version"}); });
  EXPECT_EQ(version.code(), 0);
  EXPECT_THAT(version.output(), StartsWith("portalfsd "));
}

TEST(DaemonOptions, RelativePathRefused) {
  EXPECT_EQ(daemon_error({"--storage-root", "data"}),
            "portalfsd: --storage-root: expected an absolute path, got \"data\"; see portalfsd "
            "--help");
  EXPECT_EQ(daemon_error({"--socket", ""}),
            "portalfsd: --socket: expected an absolute path, got \"\"; see portalfsd --help");
}

TEST(DaemonOptions, BadValuesRefused) {
  EXPECT_EQ(daemon_error({"--threads", "-1"}),
            "portalfsd: --threads: expected 0 to 1024, got \"-1\"; see portalfsd --help");
  EXPECT_EQ(daemon_error({"--threads", "many"}),
            "portalfsd: --threads: expected 0 to 1024, got \"many\"; see portalfsd --help");
  EXPECT_EQ(daemon_error({"--trash-purge-interval", "0"}),
            "portalfsd: --trash-purge-interval: expected 1 to 2592000 seconds, got \"0\"; see portalfsd --help");
  EXPECT_EQ(daemon_error({"--log-level", "loud"}),
            "portalfsd: --log-level: expected debug, info, warn or error, got \"loud\"; see "
            "portalfsd --help");
}

TEST(DaemonOptions, UnknownOptionMissingValueAndStrayArgument) {
  EXPECT_EQ(daemon_error({"--bogus"}),
            "portalfsd: unrecognised option '--bogus'; see portalfsd --help");
  EXPECT_THAT(daemon_error({"--mountpoint"}), HasSubstr("--mountpoint"));
  EXPECT_EQ(daemon_error({"/mnt"}),
            "portalfsd: unexpected argument \"/mnt\"; see portalfsd --help");
  // No abbreviations: --fore is not --foreground.
  EXPECT_EQ(daemon_error({"--fore"}),
            "portalfsd: unrecognised option '--fore'; see portalfsd --help");
}

TEST(DaemonOptions, ResolveGroup) {
  EXPECT_EQ(resolve_group("portalfsd", "0"), 0u);
  EXPECT_EQ(resolve_group("portalfsd", "root"), 0u);
  try {
    (void)resolve_group("portalfsd", "no-such-group-portalfs");
    ADD_FAILURE() << "expected a UsageError";
  } catch (const UsageError& e) {
    EXPECT_STREQ(e.what(),
                 "portalfsd: --admin-group: no group named \"no-such-group-portalfs\"; see "
                 "portalfsd --help");
  }
}

// ---- portalfsd's config file --------------------------------------------------------------

/// A ConfigReader over files held in memory.
ConfigReader files(std::map<std::string, std::string> contents) {
  return [contents = std::move(contents)](const std::string& path) -> std::optional<std::string> {
    auto it = contents.find(path);
    if (it == contents.end()) return std::nullopt;
    return it->second;
  };
}

std::string config_error(const Args& args, const std::string& text) {
  return usage_error_of([&] { (void)parse_daemon_options(args, files({{kDefaultConfig, text}})); });
}

TEST(DaemonConfig, TheDefaultFileGivesOptionsAsTheCommandLineWould) {
  DaemonOptions o = parse_daemon_options(
      Args{}, files({{kDefaultConfig,
                      "# portalfsd.conf\n\nstorage-root = /srv/portalfs\n  threads=4  \n"
                      "foreground = true\nlog-level = warn # quieter\nadmin-group = portal\n"
                      "no-passthrough = yes\n"}}));
  EXPECT_EQ(o.storage_root, "/srv/portalfs");
  EXPECT_EQ(o.threads, 4u);
  EXPECT_TRUE(o.foreground);
  EXPECT_EQ(o.log_level, common::LogLevel::warn);
  EXPECT_EQ(o.admin_group, "portal");
  EXPECT_FALSE(o.passthrough);
  EXPECT_TRUE(o.io_uring);  // not in the file: the default
  EXPECT_EQ(o.mountpoint, "/run/portalfs/fs");  // not in the file: the default
}

TEST(DaemonConfig, NoIoUringKeepsRequestsOnDevFuse) {
  DaemonOptions o = parse_daemon_options(Args{"--no-io-uring"}, files({}));
  EXPECT_FALSE(o.io_uring);
  o = parse_daemon_options(Args{}, files({{kDefaultConfig, "no-io-uring = true\n"}}));
  EXPECT_FALSE(o.io_uring);
}

TEST(DaemonConfig, TheCommandLineWins) {
  DaemonOptions o = parse_daemon_options(
      Args{"--threads", "2", "--storage-root=/cli"},
      files({{kDefaultConfig, "threads = 4\nstorage-root = /conf\nstate-dir = /conf-state\n"}}));
  EXPECT_EQ(o.threads, 2u);
  EXPECT_EQ(o.storage_root, "/cli");
  EXPECT_EQ(o.state_dir, "/conf-state");
  // A value the file gets wrong is no error when the command line gives it.
  o = parse_daemon_options(Args{"--threads", "3"}, files({{kDefaultConfig, "threads = many\n"}}));
  EXPECT_EQ(o.threads, 3u);
}

TEST(DaemonConfig, ConfigNamesAnotherFileWhichMustExist) {
  DaemonOptions o = parse_daemon_options(
      Args{"--config", "/etc/other.conf"},
      files({{kDefaultConfig, "threads = 4\n"}, {"/etc/other.conf", "threads = 6\n"}}));
  EXPECT_EQ(o.threads, 6u);
  EXPECT_EQ(usage_error_of([] { (void)parse_daemon_options(Args{"--config", "/nope.conf"}, files({})); }),
            "portalfsd: --config: no such file \"/nope.conf\"; see portalfsd --help");
  EXPECT_EQ(usage_error_of([] { (void)parse_daemon_options(Args{"--config", "rel.conf"}, files({})); }),
            "portalfsd: --config: expected an absolute path, got \"rel.conf\"; see portalfsd --help");
  // No default file: the defaults.
  EXPECT_EQ(parse_daemon_options(Args{}, files({})).threads, 0u);
}

TEST(DaemonOptions, OpenFilesPerApp) {
  EXPECT_EQ(parse_daemon_options(Args{}).open_files_per_app, 0u);  // portalfsd sizes it
  EXPECT_EQ(parse_daemon_options(Args{"--open-files-per-app", "500"}).open_files_per_app, 500u);
  EXPECT_EQ(daemon_error({"--open-files-per-app", "0"}),
            "portalfsd: --open-files-per-app: expected a positive number of files, got \"0\"; see portalfsd --help");
  EXPECT_EQ(config_error({}, "open-files-per-app = lots\n"),
            "portalfsd: " + std::string(kDefaultConfig) +
                ":1: open-files-per-app: expected a positive number of files, got \"lots\"; see portalfsd --help");
  // Per app (--open-files-of APP=N, repeated or APP=N,APP=N; the config file's one line a list).
  const auto per_app = parse_daemon_options(Args{"--open-files-of", "alpha=3", "--open-files-of", "beta=70"});
  EXPECT_EQ(per_app.open_files_of, (std::map<std::string, size_t>{{"alpha", 3}, {"beta", 70}}));
  EXPECT_EQ(parse_daemon_options(Args{}, files({{kDefaultConfig, "open-files-of = alpha=3, beta=70\n"}}))
                .open_files_of,
            (std::map<std::string, size_t>{{"alpha", 3}, {"beta", 70}}));
  for (const std::string bad : {"alpha", "alpha=0", "alpha=x", "Bad_App=3", "=3", ""}) {
    EXPECT_EQ(daemon_error({"--open-files-of", bad}),
              "portalfsd: --open-files-of: expected APP=N (an app id and a positive number of files), got \"" +
                  bad + "\"; see portalfsd --help");
  }
}

TEST(DaemonOptions, InodesPerApp) {
  EXPECT_EQ(parse_daemon_options(Args{}).inodes_per_app, 0u);  // portalfsd's default
  EXPECT_EQ(parse_daemon_options(Args{"--inodes-per-app", "5000"}).inodes_per_app, 5000u);
  EXPECT_EQ(daemon_error({"--inodes-per-app", "0"}),
            "portalfsd: --inodes-per-app: expected a positive number of inodes, got \"0\"; see portalfsd --help");
  const auto per_app = parse_daemon_options(Args{"--inodes-of", "alpha=3", "--inodes-of", "beta=70"});
  EXPECT_EQ(per_app.inodes_of, (std::map<std::string, size_t>{{"alpha", 3}, {"beta", 70}}));
  EXPECT_TRUE(per_app.open_files_of.empty());
  EXPECT_EQ(parse_daemon_options(Args{}, files({{kDefaultConfig, "inodes-of = alpha=3, beta=70\n"}})).inodes_of,
            (std::map<std::string, size_t>{{"alpha", 3}, {"beta", 70}}));
  EXPECT_EQ(daemon_error({"--inodes-of", "alpha=0"}),
            "portalfsd: --inodes-of: expected APP=N (an app id and a positive number of inodes), got \"alpha=0\"; "
            "see portalfsd --help");
}

TEST(DaemonConfig, ABadLineIsNamedByFileAndLine) {
  const std::string f = kDefaultConfig;
  EXPECT_EQ(config_error({}, "threads = 2\n\nbogus = 1\n"),
            "portalfsd: " + f + ":3: unrecognised option 'bogus'; see portalfsd --help");
  EXPECT_EQ(config_error({}, "# comment\nforeground\n"),
            "portalfsd: " + f + ":2: expected NAME = VALUE, got \"foreground\"; see portalfsd --help");
  EXPECT_EQ(config_error({}, "threads = many\n"),
            "portalfsd: " + f + ":1: threads: expected 0 to 1024, got \"many\"; see portalfsd --help");
  EXPECT_EQ(config_error({}, "\nstorage-root = data\n"),
            "portalfsd: " + f + ":2: storage-root: expected an absolute path, got \"data\"; see portalfsd --help");
  EXPECT_EQ(config_error({}, "threads = 1\nthreads = 2\n"),
            "portalfsd: " + f + ":2: threads given twice (also at " + f + ":1: threads); see portalfsd --help");
  EXPECT_EQ(config_error({}, "foreground = maybe\n"),
            "portalfsd: " + f +
                ":1: the argument ('maybe') for option 'foreground' is invalid. Valid choices are 'on|off', "
                "'yes|no', '1|0' and 'true|false'; see portalfsd --help");
  EXPECT_EQ(config_error({}, "[daemon]\n"),
            "portalfsd: " + f + ":1: expected NAME = VALUE, got \"[daemon]\"; see portalfsd --help");
  EXPECT_EQ(config_error({}, "config = /x.conf\n"),
            "portalfsd: " + f + ":1: config can only be given on the command line; see portalfsd --help");
}

// ---- portalctl: global options -----------------------------------------------------------

TEST(CtlOptions, NoCommand) {
  EXPECT_EQ(ctl_error({}), "portalctl: missing command; see portalctl --help");
  EXPECT_EQ(ctl_error({"--socket", "/s"}), "portalctl: missing command; see portalctl --help");
}

TEST(CtlOptions, UsageErrorCarriesTheProblemAlone) {
  try {
    (void)parse_ctl_command({"frobnicate"});
    ADD_FAILURE();
  } catch (const UsageError& e) {
    EXPECT_EQ(e.problem(), "unknown command \"frobnicate\"");
  }
}

TEST(CtlOptions, HelpVersion) {
  auto help = ctl_exit({"--help"});
  EXPECT_EQ(help.code(), 0);
  EXPECT_THAT(help.output(), StartsWith("Usage: portalctl"));
  for (const char* verb : {"validate", "app install", "app upgrade", "app remove", "app list",
                           "app show", "share create", "share list", "grant", "revoke", "mounts",
                           "attach", "detach", "storage:list", "storage:mount", "storage:unmount",
                           "storage:report", "storage:ensure-directory", "status"}) {
    EXPECT_THAT(help.output(), HasSubstr(std::string("  ") + verb)) << verb;
  }
  EXPECT_EQ(ctl_exit({"-h"}).code(), 0);
  EXPECT_THAT(ctl_exit({"help"}).output(), StartsWith("Usage: portalctl"));
  auto version = ctl_exit({"--version"});
  EXPECT_EQ(version.code(), 0);
  EXPECT_THAT(version.output(), StartsWith("portalctl "));
}

TEST(CtlOptions, VerbHelp) {
  auto help = ctl_exit({"attach", "--help"});
  EXPECT_EQ(help.code(), 0);
  EXPECT_THAT(help.output(), StartsWith("Usage: portalctl [--socket PATH] attach APP --pid PID"));
  EXPECT_THAT(help.output(), HasSubstr("--pid PID"));
  // --help wins over what is missing or wrong around it.
  EXPECT_EQ(ctl_exit({"grant", "--help"}).code(), 0);
  EXPECT_EQ(ctl_exit({"attach", "--pid", "x", "-h"}).code(), 0);
  EXPECT_THAT(ctl_exit({"app", "install", "--help"}).output(), HasSubstr("--uid-map"));
  EXPECT_THAT(ctl_exit({"help", "storage:report"}).output(), HasSubstr("--storage-run-mounts"));
  auto group = ctl_exit({"app", "--help"});
  EXPECT_EQ(group.code(), 0);
  EXPECT_THAT(group.output(), HasSubstr("app install FILE"));
  EXPECT_THAT(group.output(), HasSubstr("app remove APP"));
  EXPECT_THAT(group.output(), ::testing::Not(HasSubstr("share create")));
}

TEST(CtlOptions, SocketPrecedence) {
  EXPECT_EQ(parse_ctl_command({"status"}).socket, "/run/portalfs/portalfs.sock");
  EXPECT_EQ(parse_ctl_command({"status"}, std::string("/env.sock")).socket, "/env.sock");
  EXPECT_EQ(parse_ctl_command({"status"}, std::string("")).socket, "/run/portalfs/portalfs.sock");
  EXPECT_EQ(
      parse_ctl_command({"--socket", "/flag.sock", "status"}, std::string("/env.sock")).socket,
      "/flag.sock");
  EXPECT_EQ(parse_ctl_command({"--socket=/eq.sock", "status"}).socket, "/eq.sock");
}

TEST(CtlOptions, FormatGlobalOrAfterTheVerb) {
  EXPECT_EQ(parse_ctl_command({"app", "list"}).format, OutputFormat::text);
  EXPECT_EQ(parse_ctl_command({"--format", "json", "app", "list"}).format, OutputFormat::json);
  EXPECT_EQ(parse_ctl_command({"app", "list", "--format", "json"}).format, OutputFormat::json);
  EXPECT_EQ(parse_ctl_command({"--format=json", "app", "list", "--format=text"}).format,
            OutputFormat::text);
  EXPECT_EQ(parse_ctl_command({"storage:list", "web", "--format", "json"}).format,
            OutputFormat::json);
  EXPECT_EQ(parse_ctl_command({"app", "list", "--format", "json"}).request()["format"], "json");
}

TEST(CtlOptions, BadFormat) {
  EXPECT_EQ(ctl_error({"--format", "xml", "status"}),
            "portalctl: --format: expected text or json, got \"xml\"; see portalctl --help");
  EXPECT_EQ(ctl_error({"app", "list", "--format", "yaml"}),
            "portalctl: app list: --format: expected text or json, got \"yaml\"; see portalctl "
            "--help");
  EXPECT_EQ(ctl_error({"mounts", "web", "--format", "text"}),
            "portalctl: mounts: --format: expected docker, oci or json, got \"text\"; see "
            "portalctl --help");
}

TEST(CtlOptions, UnknownCommandsAndOptions) {
  EXPECT_EQ(ctl_error({"frobnicate"}),
            "portalctl: unknown command \"frobnicate\"; see portalctl --help");
  EXPECT_EQ(ctl_error({"app", "frob"}),
            "portalctl: unknown command \"app frob\"; see portalctl --help");
  EXPECT_EQ(ctl_error({"app"}),
            "portalctl: missing app subcommand (install, upgrade, remove, list or show); see "
            "portalctl --help");
  EXPECT_EQ(ctl_error({"share"}),
            "portalctl: missing share subcommand (create, list or set); see portalctl --help");
  EXPECT_EQ(ctl_error({"trash"}),
            "portalctl: missing trash subcommand (list, restore or purge); see portalctl --help");
  EXPECT_EQ(ctl_error({"--bogus", "status"}),
            "portalctl: unrecognised option '--bogus'; see portalctl --help");
  EXPECT_EQ(ctl_error({"status", "--bogus"}),
            "portalctl: status: unrecognised option '--bogus'; see portalctl --help");
  EXPECT_EQ(ctl_error({"app", "remove", "web", "--pur"}),
            "portalctl: app remove: unrecognised option '--pur'; see portalctl --help");
}

// ---- portalctl: every verb ---------------------------------------------------------------

TEST(CtlVerbs, Validate) {
  auto cmd = parse_ctl_command({"validate", "a.json", "b.json"});
  EXPECT_EQ(cmd.verb, "validate");
  EXPECT_EQ(cmd.files, (std::vector<std::string>{"a.json", "b.json"}));
  EXPECT_EQ(parse_ctl_command({"validate", "--format", "json", "a.json"}).format,
            OutputFormat::json);
  EXPECT_EQ(parse_ctl_command({"validate", "--", "-odd.json"}).files,
            std::vector<std::string>{"-odd.json"});
  EXPECT_EQ(ctl_error({"validate"}), "portalctl: validate: missing FILE...; see portalctl --help");
}

TEST(CtlVerbs, AppInstall) {
  auto cmd = parse_ctl_command({"app", "install", "app.json"});
  EXPECT_EQ(cmd.verb, "app.install");
  EXPECT_EQ(cmd.manifest_file, "app.json");
  EXPECT_EQ(cmd.args, nlohmann::json::object());

  cmd = parse_ctl_command({"app", "install", "app.json", "--name", "web", "--uid-map",
                           "0:100000:65536", "--uid-map", "65536:300000:10", "--gid-map",
                           "0:100000:65536"});
  EXPECT_EQ(cmd.args["name"], "web");
  EXPECT_EQ(cmd.args["uid_maps"], (nlohmann::json{"0:100000:65536", "65536:300000:10"}));
  EXPECT_EQ(cmd.args["gid_maps"], (nlohmann::json{"0:100000:65536"}));
  nlohmann::json req = cmd.request();
  EXPECT_EQ(req["verb"], "app.install");
  EXPECT_EQ(req["format"], "text");

  EXPECT_EQ(ctl_error({"app", "install"}),
            "portalctl: app install: missing FILE; see portalctl --help");
  EXPECT_EQ(ctl_error({"app", "install", "a.json", "b.json"}),
            "portalctl: app install: unexpected argument \"b.json\"; see portalctl --help");
  EXPECT_EQ(
      ctl_error({"app", "install", "a.json", "--uid-map", "0:100000"}),
      "portalctl: app install: --uid-map: expected CONTAINER:HOST:COUNT (like 0:100000:65536), "
      "got \"0:100000\"; see portalctl --help");
  EXPECT_THAT(ctl_error({"app", "install", "a.json", "--gid-map", "0:1:0"}),
              HasSubstr("--gid-map: expected CONTAINER:HOST:COUNT"));
  EXPECT_THAT(ctl_error({"app", "install", "a.json", "--gid-map", "0:-1:5"}),
              HasSubstr("--gid-map: expected CONTAINER:HOST:COUNT"));
  EXPECT_THAT(ctl_error({"app", "install", "a.json", "--name"}), HasSubstr("app install: "));
}

TEST(CtlVerbs, AppUpgradeRemoveListShow) {
  auto up = parse_ctl_command({"app", "upgrade", "new.json", "--prune"});
  EXPECT_EQ(up.verb, "app.upgrade");
  EXPECT_EQ(up.manifest_file, "new.json");
  EXPECT_EQ(up.args["prune"], true);
  EXPECT_EQ(parse_ctl_command({"app", "upgrade", "new.json"}).args["prune"], false);
  // An app installed under another id is upgraded under that id, maps may change.
  auto renamed =
      parse_ctl_command({"app", "upgrade", "new.json", "--name", "site", "--gid-map", "0:1:2"});
  EXPECT_EQ(renamed.args,
            (nlohmann::json{{"name", "site"}, {"gid_maps", {"0:1:2"}}, {"prune", false}}));
  EXPECT_THAT(ctl_error({"app", "upgrade", "new.json", "--uid-map", "x"}),
              HasSubstr("app upgrade: --uid-map: expected CONTAINER:HOST:COUNT"));

  auto rm = parse_ctl_command({"app", "remove", "web", "--purge"});
  EXPECT_EQ(rm.verb, "app.remove");
  EXPECT_EQ(rm.args, (nlohmann::json{{"app", "web"}, {"purge", true}}));
  EXPECT_EQ(parse_ctl_command({"app", "remove", "web"}).args["purge"], false);
  EXPECT_EQ(ctl_error({"app", "remove"}),
            "portalctl: app remove: missing APP; see portalctl --help");

  auto list = parse_ctl_command({"app", "list"});
  EXPECT_EQ(list.verb, "app.list");
  EXPECT_EQ(list.args, nlohmann::json::object());
  EXPECT_EQ(ctl_error({"app", "list", "extra"}),
            "portalctl: app list: unexpected argument \"extra\"; see portalctl --help");

  auto show = parse_ctl_command({"app", "show", "web"});
  EXPECT_EQ(show.verb, "app.show");
  EXPECT_EQ(show.args, (nlohmann::json{{"app", "web"}}));
}

TEST(CtlVerbs, Shares) {
  auto create = parse_ctl_command({"share", "create", "own_media", "--owner", "1000:1000"});
  EXPECT_EQ(create.verb, "share.create");
  EXPECT_EQ(create.args, (nlohmann::json{{"name", "own_media"}, {"owner", "1000:1000"}}));
  EXPECT_EQ(parse_ctl_command({"share", "create", "docs"}).args,
            (nlohmann::json{{"name", "docs"}}));
  EXPECT_EQ(ctl_error({"share", "create", "docs", "--owner", "alice"}),
            "portalctl: share create: --owner: expected UID:GID (like 1000:1000), got \"alice\"; "
            "see portalctl --help");
  EXPECT_EQ(parse_ctl_command({"share", "list"}).verb, "share.list");
}

TEST(CtlVerbs, ShareTrash) {
  EXPECT_EQ(parse_ctl_command({"share", "create", "docs", "--trash", "30d"}).args,
            (nlohmann::json{{"name", "docs"}, {"trash", "30d"}}));
  auto set = parse_ctl_command({"share", "set", "docs", "--trash", "off"});
  EXPECT_EQ(set.verb, "share.set");
  EXPECT_EQ(set.args, (nlohmann::json{{"name", "docs"}, {"trash", "off"}}));
  auto list = parse_ctl_command({"trash", "list"});
  EXPECT_EQ(list.verb, "trash.list");
  EXPECT_EQ(list.args, nlohmann::json::object());
  EXPECT_EQ(parse_ctl_command({"trash", "list", "docs", "--app", "notes"}).args,
            (nlohmann::json{{"share", "docs"}, {"app", "notes"}}));
  auto restore = parse_ctl_command({"trash", "restore", "20261206-223800-1a2b3c4d", "--to", "a/b.txt"});
  EXPECT_EQ(restore.verb, "trash.restore");
  EXPECT_EQ(restore.args, (nlohmann::json{{"id", "20261206-223800-1a2b3c4d"}, {"to", "a/b.txt"}}));
  auto purge = parse_ctl_command({"trash", "purge", "--older-than", "12h"});
  EXPECT_EQ(purge.verb, "trash.purge");
  EXPECT_EQ(purge.args, (nlohmann::json{{"older_than", 12 * 3600}}));
  EXPECT_EQ(ctl_error({"share", "set", "docs", "--trash", "1 d"}),
            "portalctl: share set: --trash: expected a retention like 30d, 12h, 45m or 90s (at most 3650d), or "
            "off, got \"1 d\"; see portalctl --help");
  EXPECT_EQ(ctl_error({"share", "set", "docs"}),
            "portalctl: share set: missing --trash 30d|12h|off (the one setting there is); see portalctl --help");
  EXPECT_EQ(ctl_error({"trash", "purge", "--older-than", "0s"}),
            "portalctl: trash purge: --older-than: expected an age like 30d, 12h, 45m or 90s, got \"0s\"; see "
            "portalctl --help");
  EXPECT_THAT(ctl_error({"trash", "restore"}), HasSubstr("ID"));
  EXPECT_THAT(ctl_error({"trash", "list", "a", "b"}), HasSubstr("\"b\""));
  EXPECT_THAT(ctl_error({"trash", "empty"}), HasSubstr("empty"));
}

TEST(CtlVerbs, GrantRevoke) {
  auto g = parse_ctl_command({"grant", "web", "own_media", "read", "--path", "/media"});
  EXPECT_EQ(g.verb, "grant");
  EXPECT_EQ(g.args,
            (nlohmann::json{
                {"app", "web"}, {"share", "own_media"}, {"access", "read"}, {"path", "/media"}}));
  EXPECT_EQ(parse_ctl_command({"grant", "web", "s", "read-write", "--path=/s"}).args["access"],
            "read-write");
  EXPECT_EQ(parse_ctl_command({"grant", "web", "s", "rw", "--path=/s"}).args["access"],
            "read-write");
  EXPECT_EQ(parse_ctl_command({"grant", "web", "s", "ro", "--path=/s"}).args["access"], "read");
  EXPECT_EQ(parse_ctl_command({"grant", "web", "s", "read", "--path=/s", "--sidecar", "*.xmp", "--sidecar=*.nfo"})
                .args["sidecars"],
            (nlohmann::json{"*.xmp", "*.nfo"}));
  EXPECT_EQ(ctl_error({"grant", "web", "s", "read-write", "--path=/s", "--sidecar", "*.xmp"}),
            "portalctl: grant: --sidecar goes with read (the other modes write files already); see portalctl --help");
  EXPECT_EQ(ctl_error({"grant", "web", "s", "read", "--path=/s", "--sidecar", "a/b"}),
            "portalctl: grant: --sidecar: expected a file name pattern (like *.xmp: no '/', not . or .., 1 to 255 bytes), got \"a/b\"; see portalctl --help");
  for (const char* mode : {"create-only", "no-delete", "own-files"}) {
    EXPECT_EQ(parse_ctl_command({"grant", "web", "s", mode, "--path=/s"}).args["access"], mode);
  }
  // --audit-reads: a switch; without it the request says nothing (the grant replaces the last).
  EXPECT_EQ(parse_ctl_command({"grant", "web", "s", "read", "--path=/s", "--audit-reads"}).args,
            (nlohmann::json{{"app", "web"}, {"share", "s"}, {"access", "read"}, {"path", "/s"}, {"audit_reads", true}}));
  EXPECT_FALSE(parse_ctl_command({"grant", "web", "s", "read", "--path=/s"}).args.contains("audit_reads"));
  for (const Args& bad : {Args{"grant", "web", "s", "read", "--path=/s", "--audit-reads=yes"},
                          Args{"grant", "web", "s", "read", "--path=/s", "--audit-read"},
                          Args{"grant", "web", "s", "read", "--path=/s", "--audit-reads", "x"}}) {
    const std::string e = ctl_error(bad);
    EXPECT_THAT(e, StartsWith("portalctl: ")) << bad.back();
    EXPECT_EQ(e.find('\n'), std::string::npos) << e;
  }
  EXPECT_EQ(ctl_error({"grant", "web", "s", "write", "--path", "/s"}),
            "portalctl: grant: expected one of read, read-write, create-only, no-delete, own-files, got \"write\"; see portalctl --help");
  EXPECT_EQ(ctl_error({"grant", "web", "s", "read"}),
            "portalctl: grant: missing --path /in/container; see portalctl --help");
  EXPECT_EQ(ctl_error({"grant", "web", "s"}),
            "portalctl: grant: missing MODE; see portalctl --help");
  EXPECT_EQ(ctl_error({"grant", "web", "s", "read", "--path", "media"}),
            "portalctl: grant: --path: expected an absolute path inside the container, got "
            "\"media\"; see portalctl --help");

  auto r = parse_ctl_command({"revoke", "web", "own_media", "--force"});
  EXPECT_EQ(r.verb, "revoke");
  EXPECT_EQ(r.args, (nlohmann::json{{"app", "web"}, {"share", "own_media"}, {"force", true}}));
  EXPECT_EQ(parse_ctl_command({"revoke", "web", "own_media"}).args["force"], false);
  EXPECT_EQ(ctl_error({"revoke", "web"}), "portalctl: revoke: missing SHARE; see portalctl --help");
}

TEST(CtlVerbs, MountsFormatIsTheStyle) {
  auto docker = parse_ctl_command({"mounts", "web", "--format", "docker"});
  EXPECT_EQ(docker.verb, "mounts");
  EXPECT_EQ(docker.args, (nlohmann::json{{"app", "web"}, {"style", "docker"}}));
  EXPECT_EQ(docker.request()["format"], "text");
  auto oci = parse_ctl_command({"mounts", "web", "--format=oci"});
  EXPECT_EQ(oci.args["style"], "oci");
  EXPECT_EQ(oci.format, OutputFormat::text);
  auto json = parse_ctl_command({"mounts", "web", "--format", "json"});
  EXPECT_EQ(json.args["style"], "json");
  EXPECT_EQ(json.request()["format"], "json");
  EXPECT_EQ(parse_ctl_command({"mounts", "web"}).args["style"], "docker");
  EXPECT_EQ(parse_ctl_command({"--format", "json", "mounts", "web"}).args["style"], "json");
}

TEST(CtlVerbs, AttachDetach) {
  auto a = parse_ctl_command({"attach", "web", "--pid", "1234"});
  EXPECT_EQ(a.verb, "attach");
  EXPECT_EQ(a.args, (nlohmann::json{{"app", "web"}, {"pid", 1234}}));
  auto d = parse_ctl_command({"detach", "web", "--pid=77"});
  EXPECT_EQ(d.verb, "detach");
  EXPECT_EQ(d.args, (nlohmann::json{{"app", "web"}, {"pid", 77}}));

  EXPECT_EQ(ctl_error({"attach", "web"}),
            "portalctl: attach: missing --pid PID; see portalctl --help");
  EXPECT_EQ(ctl_error({"attach", "--pid", "1"}),
            "portalctl: attach: missing APP; see portalctl --help");
  for (const char* bad : {"abc", "0", "-5", "+5", "12x", "99999999999", ""}) {
    EXPECT_EQ(ctl_error({"detach", "web", "--pid", bad}),
              std::string("portalctl: detach: --pid: expected a process id (a positive integer), "
                          "got \"") +
                  bad + "\"; see portalctl --help")
        << bad;
  }
}

TEST(CtlVerbs, DokkuStorage) {
  auto list = parse_ctl_command({"storage:list", "web", "--format", "json"});
  EXPECT_EQ(list.verb, "storage.list");
  EXPECT_EQ(list.args, (nlohmann::json{{"app", "web"}}));
  EXPECT_EQ(list.format, OutputFormat::json);

  auto mount = parse_ctl_command({"storage:mount", "web", "/srv/x:/x:ro"});
  EXPECT_EQ(mount.verb, "storage.mount");
  EXPECT_EQ(mount.args, (nlohmann::json{{"app", "web"}, {"spec", "/srv/x:/x:ro"}}));
  EXPECT_EQ(parse_ctl_command({"storage:mount", "web", "/srv/x:/x"}).args["spec"], "/srv/x:/x");
  EXPECT_EQ(ctl_error({"storage:mount", "web", "/srv/x"}),
            "portalctl: storage:mount: expected HOST:CTR or HOST:CTR:ro, got \"/srv/x\"; see "
            "portalctl --help");
  EXPECT_THAT(ctl_error({"storage:mount", "web", "/a:/b:noexec"}), HasSubstr("expected HOST:CTR"));
  EXPECT_EQ(ctl_error({"storage:mount", "web"}),
            "portalctl: storage:mount: missing HOST:CTR[:ro]; see portalctl --help");

  auto unmount = parse_ctl_command({"storage:unmount", "web", "/srv/x:/x"});
  EXPECT_EQ(unmount.verb, "storage.unmount");
  EXPECT_EQ(unmount.args, (nlohmann::json{{"app", "web"}, {"spec", "/srv/x:/x"}}));
  EXPECT_EQ(parse_ctl_command({"storage:unmount", "web", "/srv/x:/x:ro"}).args["spec"],
            "/srv/x:/x:ro");
  EXPECT_EQ(ctl_error({"storage:unmount", "web", ":/x"}),
            "portalctl: storage:unmount: expected HOST:CTR or HOST:CTR:ro, got \":/x\"; see "
            "portalctl --help");

  EXPECT_EQ(parse_ctl_command({"storage:report"}).args, nlohmann::json::object());
  EXPECT_EQ(parse_ctl_command({"storage:report", "web"}).args, (nlohmann::json{{"app", "web"}}));
  EXPECT_EQ(parse_ctl_command({"storage:report", "web", "--storage-run-mounts"}).args,
            (nlohmann::json{{"app", "web"}, {"only", "run"}}));
  EXPECT_EQ(parse_ctl_command({"storage:report", "--storage-build-mounts"}).args,
            (nlohmann::json{{"only", "build"}}));
  EXPECT_EQ(parse_ctl_command({"storage:report", "--storage-deploy-mounts"}).verb,
            "storage.report");
  EXPECT_EQ(ctl_error({"storage:report", "--storage-run-mounts", "--storage-build-mounts"}),
            "portalctl: storage:report: give at most one --storage-*-mounts flag; see portalctl "
            "--help");
  EXPECT_EQ(ctl_error({"storage:report", "a", "b"}),
            "portalctl: storage:report: unexpected argument \"b\"; see portalctl --help");

  auto ensure = parse_ctl_command({"storage:ensure-directory", "--chown", "heroku", "cache"});
  EXPECT_EQ(ensure.verb, "storage.ensure-directory");
  EXPECT_EQ(ensure.args, (nlohmann::json{{"name", "cache"}, {"chown", "heroku"}}));
  EXPECT_EQ(parse_ctl_command({"storage:ensure-directory", "cache"}).args,
            (nlohmann::json{{"name", "cache"}}));
  EXPECT_EQ(ctl_error({"storage:ensure-directory", "--chown", "nobody", "cache"}),
            "portalctl: storage:ensure-directory: --chown: expected herokuish, heroku, packeto or "
            "false, got \"nobody\"; see portalctl --help");
}

TEST(CtlVerbs, Status) {
  auto s = parse_ctl_command({"status"});
  EXPECT_EQ(s.verb, "status");
  EXPECT_EQ(
      s.request(),
      (nlohmann::json{{"verb", "status"}, {"format", "text"}, {"args", nlohmann::json::object()}}));
}

// A relative PATH is the caller's: main() puts it below its working directory
// (with_absolute_paths); the daemon normalises "." and "..".
TEST(CtlVerbs, Who) {
  auto w = parse_ctl_command({"who", "/run/portalfs/fs/apps/a/shared/music/x"});
  EXPECT_EQ(w.request(), (nlohmann::json{{"verb", "who"},
                                         {"format", "text"},
                                         {"args", {{"path", "/run/portalfs/fs/apps/a/shared/music/x"}}}}));
  EXPECT_EQ(w.path_args, std::vector<std::string>{"path"});
  EXPECT_EQ(parse_ctl_command({"who", "x", "--format", "json"}).format, OutputFormat::json);
  EXPECT_EQ(with_absolute_paths(parse_ctl_command({"who", "music/x"}), "/srv/storage/shared").args["path"],
            "/srv/storage/shared/music/x");
  EXPECT_EQ(with_absolute_paths(parse_ctl_command({"who", "../x"}), "/").args["path"], "/../x");
  EXPECT_EQ(with_absolute_paths(parse_ctl_command({"who", "/abs"}), "/cwd").args["path"], "/abs");
  // Nothing else is a path to put below the working directory.
  EXPECT_EQ(with_absolute_paths(parse_ctl_command({"status"}), "/cwd").args, nlohmann::json::object());
  EXPECT_EQ(ctl_error({"who"}), "portalctl: who: missing PATH; see portalctl --help");
  EXPECT_EQ(ctl_error({"who", ""}), "portalctl: who: expected a path, got \"\"; see portalctl --help");
  EXPECT_EQ(ctl_error({"who", "a", "b"}), "portalctl: who: unexpected argument \"b\"; see portalctl --help");
  EXPECT_THAT(ctl_exit({"--help"}).output(), HasSubstr("  who PATH"));
}

}  // namespace
}  // namespace portalfs::tools
