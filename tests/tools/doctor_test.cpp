// SPDX-License-Identifier: MIT
// portalctl doctor (#15) against the real portalfsd: checks made to fail for real (a state file
// that does not parse, the dead mount a killed daemon leaves, a bad config line) name what is
// wrong and the command that fixes it, and exit 1; a healthy daemon's checks pass.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mount.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "tests/testutil/daemon_fixture.hpp"

namespace portalfs::testutil {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

class Doctor : public DaemonFixture {
 protected:
  void SetUp() override {
    DaemonFixture::SetUp();
    write_file(conf(), "storage-root = " + storage() + "\nmountpoint = " + mnt() + "\nstate-dir = " +
                           (dir_ / "state") + "\nsocket = " + sock() + "\n");
  }
  [[nodiscard]] std::string conf() const { return dir_ / "portalfsd.conf"; }
  [[nodiscard]] std::string state() const { return dir_ / "state/state.json"; }

  CommandResult doctor(std::vector<std::string> extra = {}) {
    std::vector<std::string> argv = {program("portalctl"), "doctor", "--config", conf()};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return run_command(argv);
  }

  // The output's lines that start with `prefix` ("FAIL state:").
  static std::vector<std::string> lines(const std::string& out, const std::string& prefix) {
    std::vector<std::string> found;
    std::istringstream in(out);
    for (std::string line; std::getline(in, line);) {
      if (line.starts_with(prefix)) found.push_back(line);
    }
    return found;
  }

  // Exit 1 exactly when some line FAILs (other tests' dead mounts may FAIL too on this machine).
  static void expect_exit_matches_lines(const CommandResult& r) {
    EXPECT_EQ(r.code, lines(r.out, "FAIL ").empty() ? 0 : 1) << r.out << r.err;
  }
};

TEST_F(Doctor, AHealthyDaemonsChecksPass) {
  ASSERT_NO_FATAL_FAILURE(start());
  auto r = doctor();
  EXPECT_EQ(lines(r.out, "PASS config: " + conf() + " read").size(), 1u) << r.out;
  EXPECT_EQ(lines(r.out, "PASS fuse-device: /dev/fuse is usable").size(), 1u) << r.out;
  EXPECT_EQ(lines(r.out, "PASS state: " + state() + " is good").size(), 1u) << r.out;
  EXPECT_EQ(lines(r.out, "PASS daemon: portalfsd answers on " + sock()).size(), 1u) << r.out;
  EXPECT_THAT(r.out, Not(HasSubstr(mnt() + " (its daemon is gone)")));
  // Every line is one check: a result, a name, what was found, and a fix unless it passed.
  std::istringstream in(r.out);
  for (std::string line; std::getline(in, line);) {
    const bool passed = line.starts_with("PASS ");
    EXPECT_TRUE(passed || line.starts_with("WARN ") || line.starts_with("FAIL ")) << line;
    EXPECT_EQ(line.find("; fix: ") == std::string::npos, passed) << line;
  }
  expect_exit_matches_lines(r);
}

// Run by an ordinary user (who would run a rootless portalfsd): the privileges check says what
// that daemon goes without, and how to get it; root's says it has them all.
TEST_F(Doctor, SaysWhatARootlessDaemonGoesWithout) {
  EXPECT_EQ(lines(doctor().out, "PASS privileges: root: every privilege portalfsd uses").size(), 1u);
  const auto r = run_command({"/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                              "--inh-caps=-all", program("portalctl"), "doctor", "--config", conf()});
  const auto found = lines(r.out, "WARN privileges: rootless (uid 65534), goes without:");
  ASSERT_EQ(found.size(), 1u) << r.out << r.err;
  EXPECT_THAT(found[0], HasSubstr("no CAP_SYS_ADMIN: no kernel passthrough"));
  EXPECT_THAT(found[0], HasSubstr("no change events"));
  EXPECT_THAT(found[0], HasSubstr("; fix: run portalfsd as root"));
}

TEST_F(Doctor, AStateFileThatDoesNotParseFails) {
  std::filesystem::create_directories(dir_ / "state");
  write_file(state(), "{\"apps\": {\"notes\": ");  // torn
  auto r = doctor();
  EXPECT_EQ(r.code, 1) << r.out;
  const auto failed = lines(r.out, "FAIL state: ");
  ASSERT_EQ(failed.size(), 1u) << r.out;
  EXPECT_THAT(failed[0], HasSubstr(state() + ": is not valid JSON (torn or corrupt)"));
  EXPECT_THAT(failed[0], HasSubstr("; fix: mv " + state() + " " + state() + ".bad"));
  // With a backup, the fix is to start from it.
  write_file(state() + ".bak", "{}");
  r = doctor();
  EXPECT_THAT(r.out, HasSubstr("; fix: portalfsd --recover-from-backup (uses " + state() + ".bak)\n"));
  // The daemon refuses that state too: doctor says what start would say.
  auto start = run_command({program("portalfsd"), "--config", conf(), "--foreground"});
  EXPECT_EQ(start.code, 2);
  EXPECT_THAT(start.err, HasSubstr("is not valid JSON"));
}

TEST_F(Doctor, TheDeadMountOfAKilledDaemonFailsWithItsUnmount) {
  ASSERT_NO_FATAL_FAILURE(start());
  ASSERT_EQ(daemon_->stop(SIGKILL), 128 + SIGKILL);
  auto r = doctor({"--format", "json"});
  EXPECT_EQ(r.code, 1) << r.out;
  const auto checks = nlohmann::json::parse(r.out);
  const auto stale = std::find_if(checks.begin(), checks.end(), [&](const nlohmann::json& c) {
    return c["check"] == "stale-mounts" && c["detail"].get<std::string>().find(mnt()) != std::string::npos;
  });
  ASSERT_NE(stale, checks.end()) << r.out;
  EXPECT_EQ((*stale)["result"], "FAIL");
  EXPECT_EQ((*stale)["detail"], "dead portalfs mount at " + mnt() + " (its daemon is gone)");
  EXPECT_EQ((*stale)["fix"], "umount -l " + mnt());
  // The fix fixes it.
  ASSERT_EQ(::umount2(mnt().c_str(), MNT_DETACH), 0);
  r = doctor();
  EXPECT_THAT(r.out, Not(HasSubstr(mnt() + " (its daemon is gone)")));
  EXPECT_EQ(lines(r.out, "WARN daemon: portalfsd does not answer on " + sock()).size(), 1u) << r.out;
}

// A daemon that does not answer (stopped here) hangs every statfs of its mount: doctor waits
// two seconds for it, says so and goes on.
TEST_F(Doctor, AMountWhoseDaemonHangsFailsWithoutHangingTheDoctor) {
  ASSERT_NO_FATAL_FAILURE(start());
  ASSERT_EQ(::kill(daemon_->pid(), SIGSTOP), 0);
  const auto begin = std::chrono::steady_clock::now();
  auto r = doctor();
  ::kill(daemon_->pid(), SIGCONT);
  EXPECT_LT(std::chrono::steady_clock::now() - begin, std::chrono::seconds(20));
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_EQ(lines(r.out, "FAIL stale-mounts: the portalfs mount at " + mnt() +
                             " does not answer (its daemon hangs); fix: kill -9 the portalfsd serving it, then: umount -l " + mnt())
                .size(),
            1u)
      << r.out;
}

TEST_F(Doctor, ABadConfigLineFailsAndTheRestIsChecked) {
  write_file(conf(), "threads = many\n");
  auto r = doctor();
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(lines(r.out, "FAIL config: " + conf() + ":1: threads: expected 0 to 1024, got \"many\"").size(), 1u) << r.out;
  EXPECT_EQ(lines(r.out, "PASS fuse-device: ").size(), 1u) << r.out;
}

TEST_F(Doctor, BadArgumentsAreOneLineExit2) {
  auto r = run_command({program("portalctl"), "doctor", "--config", "rel.conf"});
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(r.err, "portalctl: doctor: --config: expected an absolute path, got \"rel.conf\"; see portalctl --help\n");
  EXPECT_EQ(r.out, "");
}

}  // namespace
}  // namespace portalfs::testutil
