// SPDX-License-Identifier: MIT
// The built portalctl binary: exit codes, the one stderr line, what it sends to a fake daemon
// (a ControlServer in this process) and what it prints; `validate` over the real manifests in
// tests/fixtures/manifests (copies of shared/manifests).

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <regex>

#include "common/unique_fd.hpp"
#include "mountmgr/control_protocol.hpp"
#include "mountmgr/control_server.hpp"
#include "tests/testutil/temp_dir.hpp"

namespace portalfs::tools {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

struct CtlRun {
  int code = -1;
  std::string out;
  std::string err;
};

/// $name, else the directory CMake compiled in.
std::string dir_from_env(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return v && *v ? v : fallback;
}

std::string build_dir() {
  return dir_from_env("PORTALFS_BUILD_DIR", PORTALFS_TEST_BUILD_DIR);
}
std::string source_dir() {
  return dir_from_env("PORTALFS_SOURCE_DIR", PORTALFS_TEST_SOURCE_DIR);
}

std::string portalctl_path() {
  return build_dir() + "/tools/portalctl";
}

/// Runs portalctl with `args`; `socket_env` (if not null) becomes $PORTALFS_SOCKET, otherwise
/// the variable is unset.
CtlRun run_portalctl(const std::vector<std::string>& args, const char* socket_env = nullptr) {
  std::string binary = portalctl_path();
  std::vector<std::string> env_strings = {"PATH=/usr/bin:/bin", "LC_ALL=C"};
  if (socket_env) env_strings.push_back(std::string("PORTALFS_SOCKET=") + socket_env);
  std::vector<char*> argv;
  argv.push_back(binary.data());
  std::vector<std::string> args_copy = args;
  for (auto& a : args_copy) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (auto& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);

  int out_pipe[2];
  int err_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0 || ::pipe2(err_pipe, O_CLOEXEC) != 0) return {};
  common::UniqueFd out_r(out_pipe[0]), out_w(out_pipe[1]), err_r(err_pipe[0]), err_w(err_pipe[1]);
  pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(out_w.get(), 1);
    ::dup2(err_w.get(), 2);
    ::execve(binary.c_str(), argv.data(), envp.data());
    ::_exit(127);
  }
  out_w.reset();
  err_w.reset();
  CtlRun run;
  pollfd fds[2] = {{out_r.get(), POLLIN, 0}, {err_r.get(), POLLIN, 0}};
  int open_fds = 2;
  while (open_fds > 0) {
    if (::poll(fds, 2, 30000) <= 0) break;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !fds[i].revents) continue;
      char buf[4096];
      ssize_t n = ::read(fds[i].fd, buf, sizeof(buf));
      if (n <= 0) {
        fds[i].fd = -1;
        --open_fds;
        continue;
      }
      (i == 0 ? run.out : run.err).append(buf, static_cast<std::size_t>(n));
    }
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  run.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return run;
}

/// Exactly one line on stderr.
bool one_stderr_line(const CtlRun& r) {
  return !r.err.empty() && r.err.back() == '\n' && r.err.find('\n') == r.err.size() - 1;
}

class PortalctlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(portalctl_path())) {
      GTEST_SKIP() << "portalctl not built at " << portalctl_path();
    }
  }
};

TEST_F(PortalctlTest, BadUsageIsExit2WithOneLine) {
  for (const auto& args :
       std::vector<std::vector<std::string>>{{},
                                             {"frobnicate"},
                                             {"attach", "web", "--pid", "abc"},
                                             {"attach", "web"},
                                             {"--format", "xml", "status"},
                                             {"grant", "web", "media", "write", "--path", "/m"},
                                             {"app"},
                                             {"status", "--bogus"}}) {
    CtlRun r = run_portalctl(args);
    EXPECT_EQ(r.code, 2) << r.err;
    EXPECT_EQ(r.out, "");
    EXPECT_TRUE(one_stderr_line(r)) << r.err;
    EXPECT_THAT(r.err, StartsWith("portalctl: "));
    EXPECT_THAT(r.err, HasSubstr("; see portalctl --help\n"));
  }
  EXPECT_EQ(run_portalctl({}).err, "portalctl: missing command; see portalctl --help\n");
  EXPECT_EQ(run_portalctl({"detach", "web", "--pid", "0"}).err,
            "portalctl: detach: --pid: expected a process id (a positive integer), got \"0\"; "
            "see portalctl --help\n");
}

TEST_F(PortalctlTest, HelpAndVersionGoToStdout) {
  CtlRun help = run_portalctl({"--help"});
  EXPECT_EQ(help.code, 0);
  EXPECT_THAT(help.out, StartsWith("Usage: portalctl"));
  EXPECT_EQ(help.err, "");
  CtlRun verb = run_portalctl({"storage:mount", "--help"});
  EXPECT_EQ(verb.code, 0);
  EXPECT_THAT(verb.out, HasSubstr("storage:mount APP HOST:CTR[:ro]"));
  CtlRun version = run_portalctl({"--version"});
  EXPECT_EQ(version.code, 0);
  EXPECT_THAT(version.out, StartsWith("portalctl "));
}

TEST_F(PortalctlTest, DaemonNotRunningIsExit1WithOneLine) {
  testutil::TempDir dir("portalfs-ctl");
  std::string sock = dir / "none.sock";
  CtlRun r = run_portalctl({"--socket", sock, "status"});
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "portalctl: cannot reach portalfsd at " + sock +
                       ": No such file or directory (is the daemon running? start it with: "
                       "portalfsd)\n");
}

class PortalctlDaemonTest : public PortalctlTest {
 protected:
  void SetUp() override {
    PortalctlTest::SetUp();
    if (IsSkipped()) return;
    server_ = std::make_unique<mountmgr::ControlServer>(
        sock_, std::nullopt, [this](const nlohmann::json& request) {
          std::lock_guard lock(mutex_);
          last_ = request;
          const std::string verb = request.value("verb", "");
          if (verb == "status") return mountmgr::ok_response("portalfsd: running\napps: 0\n");
          if (verb == "app.show") return mountmgr::error_response(2, "no app \"ghost\"");
          if (verb == "attach")
            return mountmgr::error_response(
                1, "attach /data into pid 9: move_mount: No such file or directory");
          return mountmgr::ok_response("");
        });
    server_->start();
  }
  nlohmann::json last() {
    std::lock_guard lock(mutex_);
    return last_;
  }

  testutil::TempDir dir_{"portalfs-ctl"};
  std::string sock_ = dir_ / "ctl.sock";
  std::mutex mutex_;
  nlohmann::json last_;
  // Last, so it is destroyed (its thread joined) before the mutex and last_ it writes to.
  std::unique_ptr<mountmgr::ControlServer> server_;
};

TEST_F(PortalctlDaemonTest, OkOutputPrintedExactly) {
  CtlRun r = run_portalctl({"--socket", sock_, "status"});
  EXPECT_EQ(r.code, 0);
  EXPECT_EQ(r.out, "portalfsd: running\napps: 0\n");
  EXPECT_EQ(r.err, "");
  EXPECT_EQ(
      last(),
      (nlohmann::json{{"verb", "status"}, {"format", "text"}, {"args", nlohmann::json::object()}}));
}

TEST_F(PortalctlDaemonTest, SocketFromTheEnvironment) {
  CtlRun r = run_portalctl({"status"}, sock_.c_str());
  EXPECT_EQ(r.code, 0);
  EXPECT_EQ(r.out, "portalfsd: running\napps: 0\n");
}

TEST_F(PortalctlDaemonTest, RefusedRequestsExitWithTheResponseCode) {
  CtlRun bad = run_portalctl({"--socket", sock_, "app", "show", "ghost"});
  EXPECT_EQ(bad.code, 2);
  EXPECT_EQ(bad.out, "");
  EXPECT_EQ(bad.err, "portalctl: no app \"ghost\"\n");

  CtlRun failed = run_portalctl({"--socket", sock_, "attach", "web", "--pid", "9"});
  EXPECT_EQ(failed.code, 1);
  EXPECT_EQ(failed.err,
            "portalctl: attach /data into pid 9: move_mount: No such file or directory\n");
  EXPECT_EQ(last()["args"], (nlohmann::json{{"app", "web"}, {"pid", 9}}));
}

TEST_F(PortalctlDaemonTest, InstallSendsTheManifestContents) {
  std::string manifest = dir_ / "app.json";
  testutil::write_file(manifest, "{\"name\": \"web\", \"data_dirs\": [\"/data\"]}\n");
  CtlRun r = run_portalctl({"--socket", sock_, "app", "install", manifest, "--name", "site",
                            "--uid-map", "0:100000:65536"});
  EXPECT_EQ(r.code, 0) << r.err;
  auto req = last();
  EXPECT_EQ(req["verb"], "app.install");
  EXPECT_EQ(req["args"]["manifest"], "{\"name\": \"web\", \"data_dirs\": [\"/data\"]}\n");
  EXPECT_EQ(req["args"]["source"], manifest);
  EXPECT_EQ(req["args"]["name"], "site");
  EXPECT_EQ(req["args"]["uid_maps"], (nlohmann::json{"0:100000:65536"}));

  CtlRun missing = run_portalctl({"--socket", sock_, "app", "upgrade", dir_ / "nope.json"});
  EXPECT_EQ(missing.code, 2);
  EXPECT_EQ(missing.err,
            "portalctl: cannot read " + (dir_ / "nope.json") + ": No such file or directory\n");
}

TEST_F(PortalctlDaemonTest, MountsFormatPicksTheStyle) {
  EXPECT_EQ(run_portalctl({"--socket", sock_, "mounts", "web", "--format", "json"}).code, 0);
  EXPECT_EQ(last()["format"], "json");
  EXPECT_EQ(last()["args"], (nlohmann::json{{"app", "web"}, {"style", "json"}}));
  EXPECT_EQ(run_portalctl({"--socket", sock_, "mounts", "web", "--format", "oci"}).code, 0);
  EXPECT_EQ(last()["format"], "text");
  EXPECT_EQ(last()["args"]["style"], "oci");
}

// ---- validate (offline) ------------------------------------------------------------------

// The repository's copies of the store's manifests (tests/fixtures/manifests/README.md).
std::string manifests_dir() {
  return source_dir() + "/tests/fixtures/manifests";
}

constexpr const char* kInvalid = "ubuntu-web-shell-f0d6f20c.json";

std::vector<std::string> valid_manifests() {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(manifests_dir(), ec)) {
    if (e.path().extension() == ".json" && e.path().filename() != kInvalid) {
      out.push_back(e.path().string());
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

TEST_F(PortalctlTest, ValidateAcceptsEveryRealManifestButOne) {
  auto files = valid_manifests();
  ASSERT_GE(files.size(), 30u) << "manifests missing from " << manifests_dir();
  for (const auto& file : files) {
    CtlRun r = run_portalctl({"validate", file});
    EXPECT_EQ(r.code, 0) << file << ": " << r.err;
    EXPECT_EQ(r.err, "") << file;
    EXPECT_FALSE(r.out.empty()) << file;
  }
  std::vector<std::string> all = {"validate"};
  all.insert(all.end(), files.begin(), files.end());
  EXPECT_EQ(run_portalctl(all).code, 0);
}

TEST_F(PortalctlTest, ValidatePrintsGrants) {
  std::string convos = manifests_dir() + "/convos-af51e444.json";
  CtlRun text = run_portalctl({"validate", convos});
  EXPECT_EQ(text.code, 0) << text.err;
  EXPECT_EQ(text.out, "convos: data /data rw\n");

  CtlRun json = run_portalctl({"validate", "--format", "json", convos});
  EXPECT_EQ(json.code, 0) << json.err;
  auto doc = nlohmann::json::parse(json.out);
  ASSERT_TRUE(doc.is_array());
  ASSERT_EQ(doc.size(), 1u);
  EXPECT_EQ(doc[0]["app"], "convos");
  EXPECT_EQ(doc[0]["file"], convos);
  EXPECT_EQ(doc[0]["grants"][0]["container_path"], "/data");
  EXPECT_EQ(doc[0]["grants"][0]["access"], "read-write");
}

TEST_F(PortalctlTest, ValidateRefusesInvalidJsonWithFileLineColumn) {
  std::string bad = manifests_dir() + "/" + kInvalid;
  CtlRun r = run_portalctl({"validate", bad});
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(r.out, "");
  EXPECT_TRUE(one_stderr_line(r)) << r.err;
  EXPECT_TRUE(std::regex_search(
      r.err,
      std::regex("^" + std::regex_replace(bad, std::regex(R"([.^$|()\[\]{}*+?\\])"), R"(\$&)") +
                 ":[0-9]+:[0-9]+: ")))
      << r.err;

  // The first invalid file stops the run; nothing is printed for the valid ones before it.
  auto files = valid_manifests();
  ASSERT_FALSE(files.empty());
  CtlRun mixed = run_portalctl({"validate", files.front(), bad, files.back()});
  EXPECT_EQ(mixed.code, 2);
  EXPECT_EQ(mixed.out, "");
  EXPECT_TRUE(one_stderr_line(mixed)) << mixed.err;

  CtlRun unreadable = run_portalctl({"validate", manifests_dir() + "/no-such.json"});
  EXPECT_EQ(unreadable.code, 2);
  EXPECT_EQ(unreadable.err, "portalctl: cannot read " + manifests_dir() +
                                "/no-such.json: No such file or directory\n");
}

}  // namespace
}  // namespace portalfs::tools
