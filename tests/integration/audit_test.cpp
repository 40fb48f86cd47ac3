// SPDX-License-Identifier: MIT
// The audit trail (#13) against the real portalfsd: a scripted sequence of operations through
// the views gives exactly the expected records (minus their time), app, grant and share changes
// are recorded by the mount manager, and portalctl audit filters and refuses bad input.
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/testutil/daemon_fixture.hpp"

namespace portalfs::testutil {
namespace {

using nlohmann::json;

class Audit : public DaemonFixture {
 protected:
  void SetUp() override {
    DaemonFixture::SetUp();
    if (HasFatalFailure() || IsSkipped()) return;
    // alpha may change the share, beta may only read it.
    write_app("alpha", {{"music", "read-write"}});
    write_app("beta", {{"music", "read"}});
    ASSERT_NO_FATAL_FAILURE(start());
    ASSERT_EQ(ctl({"share", "create", "music"}).code, 0);
    ASSERT_NO_FATAL_FAILURE(install_apps({"alpha", "beta"}));
  }

  [[nodiscard]] std::string view(const std::string& app, const std::string& rest) const {
    return mnt() + "/apps/" + app + "/shared/music/" + rest;
  }

  CommandResult audit(std::vector<std::string> args) {
    args.insert(args.begin(), {"audit", "--state-dir", dir_ / "state"});
    return ctl(std::move(args));
  }

  // The app's records as `portalctl audit APP --format json` prints them, without their time,
  // once there are at least `count` (the daemon writes them from a thread of its own).
  std::vector<std::string> records(const std::string& app, size_t count) {
    std::vector<std::string> out;
    for (int i = 0; i < 100; ++i) {
      out.clear();
      const auto r = audit({app, "--format", "json"});
      if (r.code != 0) {  // its file is not there yet (the writer comes every 100 ms)
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        continue;
      }
      std::istringstream in(r.out);
      for (std::string line; std::getline(in, line);) {
        json j = json::parse(line);
        EXPECT_TRUE(j.contains("time")) << line;
        j.erase("time");
        out.push_back(j.dump());
      }
      if (out.size() >= count) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return out;
  }
};

TEST_F(Audit, AScriptedSequenceGivesExactlyTheExpectedRecords) {
  write_file(view("alpha", "a.txt"), "hello");  // create, write, close
  ASSERT_EQ(::chmod(view("alpha", "a.txt").c_str(), 0600), 0) << std::strerror(errno);
  ASSERT_EQ(::rename(view("alpha", "a.txt").c_str(), view("alpha", "b.txt").c_str()), 0) << std::strerror(errno);
  // beta may only read: a write open, a truncate and a create are refused, and recorded.
  errno = 0;
  EXPECT_EQ(::open(view("beta", "b.txt").c_str(), O_WRONLY), -1);
  EXPECT_EQ(errno, EROFS);
  errno = 0;
  EXPECT_EQ(::truncate(view("beta", "b.txt").c_str(), 0), -1);
  EXPECT_EQ(errno, EROFS);
  errno = 0;
  EXPECT_EQ(::open(view("beta", "x.txt").c_str(), O_WRONLY | O_CREAT, 0644), -1);
  EXPECT_EQ(errno, EROFS);
  // Reads are not recorded.
  EXPECT_EQ(read_file(view("beta", "b.txt")), "hello");
  ASSERT_EQ(::mkdir(view("alpha", "d").c_str(), 0755), 0) << std::strerror(errno);
  ASSERT_EQ(::rename(view("alpha", "b.txt").c_str(), view("alpha", "d/c.txt").c_str()), 0) << std::strerror(errno);
  ASSERT_EQ(::unlink(view("alpha", "d/c.txt").c_str()), 0) << std::strerror(errno);

  const std::vector<std::string> alpha = {
      R"({"app":"alpha","detail":"version 1","op":"app.install","result":"ok"})",
      R"({"app":"alpha","detail":"read-write","op":"grant","result":"ok","view":"data/data"})",
      R"({"app":"alpha","detail":"read-write","op":"grant","result":"ok","view":"shared/music"})",
      R"({"app":"alpha","op":"create","path":"/a.txt","result":"ok","view":"shared/music"})",
      R"({"app":"alpha","op":"write-close","path":"/a.txt","result":"ok","view":"shared/music"})",
      R"({"app":"alpha","detail":"mode=0600","op":"chmod","path":"/a.txt","result":"ok","view":"shared/music"})",
      R"({"app":"alpha","op":"rename","path":"/a.txt","result":"ok","to":"/b.txt","view":"shared/music"})",
      R"({"app":"alpha","op":"mkdir","path":"/d","result":"ok","view":"shared/music"})",
      R"({"app":"alpha","op":"rename","path":"/b.txt","result":"ok","to":"/d/c.txt","view":"shared/music"})",
      R"({"app":"alpha","op":"unlink","path":"/d/c.txt","result":"ok","view":"shared/music"})",
  };
  EXPECT_EQ(records("alpha", alpha.size()), alpha);
  const std::vector<std::string> beta = {
      R"({"app":"beta","detail":"version 1","op":"app.install","result":"ok"})",
      R"({"app":"beta","detail":"read-write","op":"grant","result":"ok","view":"data/data"})",
      R"({"app":"beta","detail":"read","op":"grant","result":"ok","view":"shared/music"})",
      R"({"app":"beta","op":"open-write","path":"/b.txt","result":"EROFS","view":"shared/music"})",
      R"({"app":"beta","op":"setattr","path":"/b.txt","result":"EROFS","view":"shared/music"})",
      R"({"app":"beta","op":"create","path":"/x.txt","result":"EROFS","view":"shared/music"})",
  };
  EXPECT_EQ(records("beta", beta.size()), beta);
}

// A file removed while open, then closed: its write-close names the path it had, not the
// kernel's "/gone.txt (deleted)".
TEST_F(Audit, AFileRemovedWhileOpenKeepsItsPath) {
  const int fd = ::open(view("alpha", "gone.txt").c_str(), O_WRONLY | O_CREAT, 0644);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  ASSERT_EQ(::write(fd, "x", 1), 1);
  ASSERT_EQ(::unlink(view("alpha", "gone.txt").c_str()), 0) << std::strerror(errno);
  ASSERT_EQ(::close(fd), 0);
  EXPECT_THAT(records("alpha", 6),
              ::testing::ElementsAre(
                  R"({"app":"alpha","detail":"version 1","op":"app.install","result":"ok"})",
                  R"({"app":"alpha","detail":"read-write","op":"grant","result":"ok","view":"data/data"})",
                  R"({"app":"alpha","detail":"read-write","op":"grant","result":"ok","view":"shared/music"})",
                  R"({"app":"alpha","op":"create","path":"/gone.txt","result":"ok","view":"shared/music"})",
                  R"({"app":"alpha","op":"unlink","path":"/gone.txt","result":"ok","view":"shared/music"})",
                  R"({"app":"alpha","op":"write-close","path":"/gone.txt","result":"ok","view":"shared/music"})"));
}

TEST_F(Audit, GrantAndShareChangesAreRecorded) {
  ASSERT_EQ(ctl({"grant", "beta", "music", "read-write", "--path", "/music"}).code, 0);
  ASSERT_EQ(ctl({"revoke", "alpha", "music"}).code, 0);
  ASSERT_EQ(ctl({"app", "remove", "beta"}).code, 0);
  // The removal takes its views away too.
  EXPECT_THAT(records("beta", 7),
              ::testing::ElementsAre(
                  R"({"app":"beta","detail":"version 1","op":"app.install","result":"ok"})",
                  R"({"app":"beta","detail":"read-write","op":"grant","result":"ok","view":"data/data"})",
                  R"({"app":"beta","detail":"read","op":"grant","result":"ok","view":"shared/music"})",
                  R"({"app":"beta","detail":"read -> read-write","op":"grant","result":"ok","view":"shared/music"})",
                  R"({"app":"beta","op":"app.remove","result":"ok"})",
                  R"({"app":"beta","detail":"read-write","op":"revoke","result":"ok","view":"data/data"})",
                  R"({"app":"beta","detail":"read-write","op":"revoke","result":"ok","view":"shared/music"})"));
  EXPECT_THAT(records("alpha", 4),
              ::testing::Contains(R"({"app":"alpha","detail":"read-write","op":"revoke","result":"ok","view":"shared/music"})"));
  // Share-level records go to the platform's file.
  EXPECT_THAT(read_file(dir_ / "state/audit/_platform.jsonl"),
              ::testing::HasSubstr(R"("op":"share.create","result":"ok","time":)"));
}

TEST_F(Audit, PortalctlFiltersAndRefusesBadInput) {
  write_file(view("alpha", "a.txt"), "x");
  ASSERT_EQ(records("alpha", 5).size(), 5u);
  // Text: one line per record, oldest first; every app merged without APP.
  auto r = audit({"alpha"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, ::testing::MatchesRegex(R"(^[0-9T:.-]+Z alpha - app\.install ok \(version 1\)
.* alpha data/data grant ok \(read-write\)
.* alpha shared/music grant ok \(read-write\)
.* alpha shared/music create /a\.txt ok
.* alpha shared/music write-close /a\.txt ok
$)"));
  r = audit({});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, ::testing::HasSubstr(" beta shared/music grant ok (read)\n"));
  EXPECT_THAT(r.out, ::testing::HasSubstr(" - shared/music share.create ok (owner 0:0)\n"));
  // --since: a span, and a time after every record.
  EXPECT_EQ(audit({"alpha", "--since", "1h"}).out, audit({"alpha"}).out);
  r = audit({"alpha", "--since", "2099-01-01T00:00:00"});
  EXPECT_EQ(r.code, 0);
  EXPECT_EQ(r.out, "");

  // Bad input: one line, exit 2.
  for (const std::vector<std::string>& bad :
       {std::vector<std::string>{"--since", "yesterday"}, {"a/b"}, {"alpha", "beta"}, {"--format", "xml"}}) {
    r = audit(bad);
    EXPECT_EQ(r.code, 2) << bad.front();
    EXPECT_EQ(r.out, "");
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_THAT(r.err, ::testing::StartsWith("portalctl: audit: "));
  }
  // Nothing there: a runtime failure that says where it looked.
  r = ctl({"audit", "--state-dir", dir_ / "nowhere"});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, ::testing::HasSubstr("no audit trail in " + dir_ / "nowhere/audit"));
  r = audit({"gamma"});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, ::testing::HasSubstr("no records of app \"gamma\""));
}

TEST_F(Audit, FollowPrintsNewRecords) {
  // --follow keeps going; it is stopped by its pid.
  Child follower({program("portalctl"), "audit", "alpha", "--follow", "--state-dir", dir_ / "state"},
                 dir_ / "follow.out");
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  write_file(view("alpha", "late.txt"), "x");
  std::string out;
  for (int i = 0; i < 50 && out.find("write-close /late.txt") == std::string::npos; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    out = read_file(dir_ / "follow.out");
  }
  EXPECT_THAT(out, ::testing::HasSubstr(" alpha shared/music create /late.txt ok\n"));
  EXPECT_THAT(out, ::testing::HasSubstr(" alpha shared/music write-close /late.txt ok\n"));
}

// Reads are recorded where the grant asks for it (audit_reads), and only there: gamma has the
// share music with audit_reads and docs without. With change events on, gamma's view of music
// is watched, so alpha's changes there are echoed through it (events.cpp): none is recorded.
class AuditReads : public Audit {
 protected:
  void SetUp() override {
    extra_daemon_args_ = {"--events", "on"};
    Audit::SetUp();
    if (HasFatalFailure() || IsSkipped()) return;
    ASSERT_EQ(ctl({"share", "create", "docs"}).code, 0);
    write_file(dir_ / "gamma.json",
               json{{"name", "gamma"},
                    {"v", "1"},
                    {"shared_dirs",
                     {{{"name", "music"}, {"path", "/music"}, {"access", "read"}, {"audit_reads", true}},
                      {{"name", "docs"}, {"path", "/docs"}, {"access", "read-write"}}}}}
                   .dump());
    const auto r = ctl({"app", "install", dir_ / "gamma.json"});
    ASSERT_EQ(r.code, 0) << r.err;
  }

  [[nodiscard]] std::string gamma(const std::string& share, const std::string& rest) const {
    return mnt() + "/apps/gamma/shared/" + share + "/" + rest;
  }

  // Every entry of `dir`, read to its end as ls does.
  static std::vector<std::string> list(const std::string& dir) {
    std::vector<std::string> out;
    for (const auto& e : std::filesystem::directory_iterator(dir)) out.push_back(e.path().filename());
    std::sort(out.begin(), out.end());
    return out;
  }
};

TEST_F(AuditReads, AreRecordedWhereTheGrantAsksOnly) {
  // alpha writes into music while gamma's view of it is watched: the echoes are not gamma's.
  const int watch = ::inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
  ASSERT_GE(watch, 0) << std::strerror(errno);
  ASSERT_GE(::inotify_add_watch(watch, gamma("music", "").c_str(), IN_ALL_EVENTS), 0) << std::strerror(errno);
  write_file(view("alpha", "a.txt"), "hello");
  ASSERT_EQ(::mkdir(view("alpha", "d").c_str(), 0755), 0) << std::strerror(errno);
  write_file(gamma("docs", "b.txt"), "doc");  // a change: recorded in every view
  const auto heard = [&] {
    char buf[4096];
    return ::read(watch, buf, sizeof(buf)) > 0;
  };
  ASSERT_TRUE(wait_until(heard));  // the echo ran
  ::close(watch);

  // Two reads and two listings of music: each recorded (the second listing is not served
  // from the kernel's cache unrecorded); a read that is refused is a denial, as in any view.
  EXPECT_EQ(read_file(gamma("music", "a.txt")), "hello");
  EXPECT_EQ(read_file(gamma("music", "a.txt")), "hello");
  EXPECT_EQ(list(gamma("music", "")), (std::vector<std::string>{"a.txt", "d"}));
  EXPECT_EQ(list(gamma("music", "")), (std::vector<std::string>{"a.txt", "d"}));
  EXPECT_EQ(list(gamma("music", "d")), std::vector<std::string>{});
  errno = 0;
  EXPECT_EQ(::open(gamma("music", "a.txt").c_str(), O_RDWR), -1);
  EXPECT_EQ(errno, EROFS);
  // Only stat and lookups: no read.
  struct stat st {};
  EXPECT_EQ(::stat(gamma("music", "a.txt").c_str(), &st), 0);
  // The same in docs, which does not audit reads: nothing.
  EXPECT_EQ(read_file(gamma("docs", "b.txt")), "doc");
  EXPECT_EQ(list(gamma("docs", "")), std::vector<std::string>{"b.txt"});

  // Granted again without --audit-reads: no more read records; docs with it: recorded.
  auto r = ctl({"grant", "gamma", "music", "read", "--path", "/music"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(read_file(gamma("music", "a.txt")), "hello");
  EXPECT_EQ(list(gamma("music", "")).size(), 2u);
  r = ctl({"grant", "gamma", "docs", "read-write", "--path", "/docs", "--audit-reads"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "granted share docs to app gamma at /docs (read-write, reads audited)\n");
  // A write-only open is no read; a read-write one is.
  int fd = ::open(gamma("docs", "b.txt").c_str(), O_WRONLY);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  ::close(fd);
  fd = ::open(gamma("docs", "b.txt").c_str(), O_RDWR);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  ::close(fd);

  const std::vector<std::string> expected = {
      R"({"app":"gamma","detail":"version 1","op":"app.install","result":"ok"})",
      R"({"app":"gamma","detail":"read-write","op":"grant","result":"ok","view":"shared/docs"})",
      R"({"app":"gamma","detail":"read +audit-reads","op":"grant","result":"ok","view":"shared/music"})",
      R"({"app":"gamma","op":"create","path":"/b.txt","result":"ok","view":"shared/docs"})",
      R"({"app":"gamma","op":"write-close","path":"/b.txt","result":"ok","view":"shared/docs"})",
      R"({"app":"gamma","op":"open-read","path":"/a.txt","result":"ok","view":"shared/music"})",
      R"({"app":"gamma","op":"open-read","path":"/a.txt","result":"ok","view":"shared/music"})",
      R"({"app":"gamma","op":"readdir","path":"/","result":"ok","view":"shared/music"})",
      R"({"app":"gamma","op":"readdir","path":"/","result":"ok","view":"shared/music"})",
      R"({"app":"gamma","op":"readdir","path":"/d","result":"ok","view":"shared/music"})",
      R"({"app":"gamma","op":"open-write","path":"/a.txt","result":"EROFS","view":"shared/music"})",
      R"({"app":"gamma","detail":"read +audit-reads -> read","op":"grant","result":"ok","view":"shared/music"})",
      R"({"app":"gamma","detail":"read-write -> read-write +audit-reads","op":"grant","result":"ok","view":"shared/docs"})",
      R"({"app":"gamma","op":"open-read","path":"/b.txt","result":"ok","view":"shared/docs"})",
  };
  EXPECT_EQ(records("gamma", expected.size()), expected);
  // Nothing more comes (records() stops at the expected count).
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(records("gamma", expected.size()), expected);

  // app show names it, in text and JSON.
  r = ctl({"app", "show", "gamma"});
  EXPECT_THAT(r.out, ::testing::HasSubstr("grant: share docs at /docs (read-write, reads audited)\n"));
  EXPECT_THAT(r.out, ::testing::HasSubstr("grant: share music at /music (read)\n"));
  r = ctl({"app", "show", "gamma", "--format", "json"});
  ASSERT_EQ(r.code, 0) << r.err;
  const json shown = json::parse(r.out);
  auto grant_of = [&](const std::string& list, const std::string& share) {
    for (const json& g : shown[list]) {
      if (g["name"] == share) return g;
    }
    ADD_FAILURE() << "no " << share << " in " << list;
    return json();
  };
  // The manifest's grant of music asks for it; the admin's replacing it does not.
  EXPECT_EQ(grant_of("grants", "music").value("audit_reads", false), true);
  EXPECT_EQ(grant_of("admin_grants", "music").value("audit_reads", false), false);
  EXPECT_EQ(grant_of("admin_grants", "docs").value("audit_reads", false), true);
}

// --follow across a rotation, on files written by hand (as the writer rotates: rename, then a
// new file): the line appended to the old file before the rename and the new file's are printed.
TEST(AuditFollow, ReadsOnAcrossARotation) {
  TempDir dir("audit-follow");
  std::filesystem::create_directories(dir / "audit");
  const std::string file = dir / "audit/alpha.jsonl";
  auto line = [](const std::string& path) {
    return json{{"time", "2026-12-06T22:00:00.000Z"}, {"app", "alpha"}, {"op", "create"}, {"path", path}, {"result", "ok"}}.dump() + "\n";
  };
  write_file(file, line("/1"));
  Child follower({program("portalctl"), "audit", "alpha", "--follow", "--state-dir", dir.path()}, dir / "out");
  auto printed = [&](const std::string& what) {
    return wait_until([&] {
      return std::filesystem::exists(dir / "out") && read_file(dir / "out").find(what) != std::string::npos;
    });
  };
  ASSERT_TRUE(printed("create /1 ok"));
  {
    std::ofstream append(file, std::ios::app);
    append << line("/2");
  }
  std::filesystem::rename(file, file + ".1");
  write_file(file, line("/3"));
  ASSERT_TRUE(printed("create /3 ok"));
  EXPECT_EQ(read_file(dir / "out"),
            "2026-12-06T22:00:00.000Z alpha - create /1 ok\n"
            "2026-12-06T22:00:00.000Z alpha - create /2 ok\n"
            "2026-12-06T22:00:00.000Z alpha - create /3 ok\n");
}

}  // namespace
}  // namespace portalfs::testutil
