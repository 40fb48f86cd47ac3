// SPDX-License-Identifier: MIT
// portalfsd under systemd (#15), the way systemd's own tests check a service: the notify
// protocol against a datagram socket the test listens on (NOTIFY_SOCKET), the journal's native
// protocol against a socket the test puts at /run/systemd/journal/socket in a mount namespace
// of the daemon's own, and the unit file through systemd-analyze verify.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>

#include "common/unique_fd.hpp"
#include "tests/testutil/daemon_fixture.hpp"

namespace portalfs::testutil {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using namespace std::chrono_literals;

constexpr decltype(statfs::f_type) kFuseMagic = 0x65735546;

/// A datagram socket bound at a path, as systemd listens for notifications and journal entries.
class DatagramListener {
 public:
  explicit DatagramListener(const std::string& path) : path_(path) {
    fd_.reset(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
    if (!fd_ || ::bind(fd_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      throw std::runtime_error("cannot listen at " + path + ": " + std::strerror(errno));
    }
    ::chmod(path.c_str(), 0666);
  }

  /// The next datagram, or "" after `timeout` without one.
  std::string next(std::chrono::milliseconds timeout) {
    pollfd p{fd_.get(), POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count())) != 1) return "";
    std::string buf(65536, '\0');
    const ssize_t n = ::recv(fd_.get(), buf.data(), buf.size(), 0);
    buf.resize(n > 0 ? static_cast<size_t>(n) : 0);
    return buf;
  }

  /// Datagrams until one contains `what` (returned last), within `timeout` in all.
  std::vector<std::string> until(const std::string& what, std::chrono::milliseconds timeout) {
    std::vector<std::string> got;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      std::string d = next(left);
      if (d.empty()) break;
      got.push_back(d);
      if (d.find(what) != std::string::npos) return got;
    }
    ADD_FAILURE() << "no datagram with " << what << " at " << path_ << " within " << timeout.count()
                  << " ms; got " << ::testing::PrintToString(got);
    return got;
  }

 private:
  std::string path_;
  common::UniqueFd fd_;
};

bool mount_answers(const std::string& path) {
  struct statfs st {};
  return ::statfs(path.c_str(), &st) == 0 && st.f_type == kFuseMagic;
}

class Systemd : public DaemonFixture {
 protected:
  /// portalfsd with `env` (NAME=VALUE) added to its environment.
  void start_with_env(const std::vector<std::string>& env) {
    std::vector<std::string> argv = {"/usr/bin/env"};
    argv.insert(argv.end(), env.begin(), env.end());
    for (const auto& a : daemon_argv()) argv.push_back(a);
    daemon_ = std::make_unique<Child>(argv, dir_ / "daemon.log");
  }
  /// portalctl against this daemon, quoted for sh.
  std::string ctl_cmd() { return "'" + program("portalctl") + "' --socket '" + sock() + "'"; }
  /// In a mount namespace of its own whose /run/systemd/journal is `journal_dir`: portalfsd,
  /// with its stderr as the journal stream, then `steps` (sh) once it answers, then SIGTERM.
  /// Returns the shell's exit code.
  int run_under_journal(const std::string& journal_dir, const std::string& steps) {
    std::string daemon_cmd;
    for (const auto& a : daemon_argv()) daemon_cmd += "'" + a + "' ";
    const std::string script =
        "set -e\n"
        "mount -t tmpfs tmpfs /run/systemd\n"
        "mkdir /run/systemd/journal\n"
        "mount --bind '" + journal_dir + "' /run/systemd/journal\n"
        "export JOURNAL_STREAM=$(stat -L -c %d:%i /proc/self/fd/2)\n" +
        daemon_cmd + "& pid=$!\n"
        "i=0; until " + ctl_cmd() + " status >/dev/null 2>&1; do i=$((i+1)); [ $i -lt 100 ]; sleep 0.1; done\n" +
        steps + "kill -TERM $pid; wait $pid\n";
    Child shell({"/usr/bin/unshare", "--mount", "/bin/sh", "-c", script}, dir_ / "daemon.log");
    return shell.wait(60s);
  }
  [[nodiscard]] std::string notify_path() const { return dir_ / "notify.sock"; }
};

TEST_F(Systemd, ReadyOnlyOnceTheMountAnswersAndStoppingOnSigterm) {
  DatagramListener notify(notify_path());
  start_with_env({"NOTIFY_SOCKET=" + notify_path()});
  auto got = notify.until("READY=1", 10s);
  ASSERT_FALSE(got.empty()) << read_file(dir_ / "daemon.log");
  // Told ready: the mount serves and the control socket answers at once, without waiting.
  EXPECT_TRUE(mount_answers(mnt()));
  EXPECT_EQ(ctl({"status"}).code, 0);
  EXPECT_EQ(got.front(), "STATUS=mounting " + mnt());
  EXPECT_EQ(got.back(), "READY=1\nSTATUS=serving " + mnt() + ": 0 views");
  EXPECT_EQ(std::count_if(got.begin(), got.end(), [](const auto& d) { return d.find("READY=1") != std::string::npos; }), 1);

  ASSERT_EQ(::kill(daemon_->pid(), SIGTERM), 0);
  got = notify.until("STOPPING=1", 10s);
  ASSERT_FALSE(got.empty());
  EXPECT_EQ(got.back(), "STOPPING=1\nSTATUS=stopping");
  EXPECT_EQ(daemon_->wait(10s), 0);
  EXPECT_FALSE(mounted(mnt()));
}

TEST_F(Systemd, WatchdogPingsAtHalfTheIntervalWhileTheMountAnswers) {
  DatagramListener notify(notify_path());
  start_with_env({"NOTIFY_SOCKET=" + notify_path(), "WATCHDOG_USEC=200000"});
  ASSERT_FALSE(notify.until("READY=1", 10s).empty()) << read_file(dir_ / "daemon.log");
  const auto start = std::chrono::steady_clock::now();
  int pings = 0;
  while (std::chrono::steady_clock::now() - start < 1s) {
    if (notify.next(500ms) == "WATCHDOG=1") ++pings;
  }
  // Every 100 ms: about 10 in a second; at least 5 on a loaded machine.
  EXPECT_GE(pings, 5);
  EXPECT_LE(pings, 12);
}

TEST_F(Systemd, WithoutNotifySocketNothingIsSentAndTheDaemonServes) {
  ASSERT_NO_FATAL_FAILURE(start());  // no NOTIFY_SOCKET: sd_notify does nothing
  EXPECT_TRUE(mount_answers(mnt()));
}

// The journal's socket is the test's, inside a mount namespace of the daemon's own, and the
// daemon's stderr is what JOURNAL_STREAM names (as systemd sets it): a refusal is an entry
// with its fields, and not a line on stderr.
TEST_F(Systemd, LogsToTheJournalWithFieldsWhenItsStderrIsTheJournal) {
  const std::string journal_dir = dir_ / "journal";
  std::filesystem::create_directories(journal_dir);
  DatagramListener journal(journal_dir + "/socket");
  write_file(dir_ / "app.json", R"({"name": "alpha", "data_dirs": ["/data"]})");
  const std::string backing = storage() + "/apps/alpha/data";
  ASSERT_EQ(run_under_journal(journal_dir,
                              ctl_cmd() + " app install '" + (dir_ / "app.json") + "' >/dev/null\n"
                              "mkdir '" + backing + "/inner'\n"
                              "mount -t tmpfs tmpfs '" + backing + "/inner'\n"
                              "ls '" + mnt() + "/apps/alpha/data/data/inner' 2>/dev/null && exit 3\n"),
            0)
      << read_file(dir_ / "daemon.log");

  auto got = journal.until("MESSAGE=refusing a mount point inside " + backing, 5s);
  ASSERT_FALSE(got.empty());
  const std::string& entry = got.back();
  for (const std::string field : {"PRIORITY=4", "SYSLOG_IDENTIFIER=portalfsd", "APP=alpha", "VIEW=data",
                                  "OP=lookup", "ERRNO=18"}) {
    EXPECT_THAT(entry, HasSubstr("\n" + field + "\n")) << entry;
  }
  EXPECT_THAT(read_file(dir_ / "daemon.log"), Not(HasSubstr("refusing a mount point")));
}

// A denial through a view (debug level) is an entry with the request's fields: a create in a
// share the app may only read answers EROFS.
TEST_F(Systemd, DenialsReachTheJournalWithAppViewOpAndErrno) {
  const std::string journal_dir = dir_ / "journal";
  std::filesystem::create_directories(journal_dir);
  DatagramListener journal(journal_dir + "/socket");
  write_file(dir_ / "app.json",
             R"({"name": "beta", "data_dirs": ["/data"],
                 "shared_dirs": [{"name": "music", "path": "/music", "access": "read"}]})");
  extra_daemon_args_ = {"--log-level", "debug"};
  ASSERT_EQ(run_under_journal(journal_dir,
                              ctl_cmd() + " share create music >/dev/null\n" + ctl_cmd() + " app install '" +
                                  (dir_ / "app.json") + "' >/dev/null\n"
                                  "touch '" + mnt() + "/apps/beta/shared/music/x' 2>/dev/null && exit 3\n"),
            0)
      << read_file(dir_ / "daemon.log");

  auto got = journal.until("MESSAGE=denied: create in beta's view shared/music: EROFS", 5s);
  ASSERT_FALSE(got.empty());
  const std::string& entry = got.back();
  for (const std::string field : {"PRIORITY=7", "SYSLOG_IDENTIFIER=portalfsd", "APP=beta", "VIEW=music",
                                  "OP=create", "ERRNO=30"}) {
    EXPECT_THAT(entry, HasSubstr("\n" + field + "\n")) << entry;
  }
}

// packaging/portalfsd.service, with ExecStart pointing at this build's portalfsd (verify wants
// the program to exist): systemd-analyze verify has nothing to say. Man pages are checked by
// the package test, once installed.
TEST_F(Systemd, TheUnitFileVerifies) {
  const std::string analyze = "/usr/bin/systemd-analyze";
  ASSERT_TRUE(std::filesystem::exists(analyze)) << analyze << " is missing: apt-get install systemd";
  std::string unit = read_file(source_dir() + "/packaging/portalfsd.service");
  for (const std::string line : {"Type=notify", "ExecStart=/usr/sbin/portalfsd --foreground", "Restart=on-failure",
                                 "RuntimeDirectory=portalfs", "StateDirectory=portalfs", "LimitNOFILE=65536",
                                 "DeviceAllow=/dev/fuse rw"}) {
    EXPECT_THAT(unit, HasSubstr("\n" + line + "\n"));
  }
  for (const std::string namespacing : {"ProtectSystem=", "PrivateTmp=", "ProtectHome=", "PrivateDevices="}) {
    EXPECT_THAT(unit, Not(HasSubstr("\n" + namespacing))) << "the mount would not reach the host";
  }
  const std::string from = "/usr/sbin/portalfsd";
  unit.replace(unit.find(from), from.size(), program("portalfsd"));
  write_file(dir_ / "portalfsd.service", unit);
  auto r = run_command({analyze, "verify", "--man=no", dir_ / "portalfsd.service"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.err, "");
}

}  // namespace
}  // namespace portalfs::testutil
