// SPDX-License-Identifier: MIT
// portalctl who against the real portalfsd: two apps share a directory; the provenance xattrs
// are put on the backing file as the filesystem records them, and who answers for a path in
// either view or on the host, in text and JSON, and refuses with one line and the right code.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/xattr.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "policy/provenance.hpp"
#include "tests/testutil/daemon_fixture.hpp"

namespace portalfs::testutil {
namespace {

using nlohmann::json;

class Who : public DaemonFixture {
 protected:
  void SetUp() override {
    DaemonFixture::SetUp();
    if (HasFatalFailure() || IsSkipped()) return;
    for (const char* app : {"alpha", "beta"}) write_app(app, {{"music", "read-write"}});
    ASSERT_NO_FATAL_FAILURE(start());
    ASSERT_EQ(ctl({"share", "create", "music"}).code, 0);
    ASSERT_NO_FATAL_FAILURE(install_apps({"alpha", "beta"}));
  }

  static void set(const std::string& path, const char* name, const std::string& value) {
    ASSERT_EQ(::setxattr(path.c_str(), name, value.data(), value.size(), 0), 0) << path << ": " << std::strerror(errno);
  }

  [[nodiscard]] std::string view(const std::string& app, const std::string& rest) const {
    return mnt() + "/apps/" + app + "/shared/music/" + rest;
  }
  [[nodiscard]] std::string backing(const std::string& rest) const { return storage() + "/shared/music/" + rest; }

  // portalctl run from `cwd`.
  CommandResult ctl_in(const std::string& cwd, const std::string& path) {
    return run_command({"/bin/sh", "-c", "cd '" + cwd + "' && exec '" + program("portalctl") + "' --socket '" + sock() +
                                             "' who '" + path + "'"});
  }
};

TEST_F(Who, AnswersThroughEitherViewAndOnTheHost) {
  write_file(view("alpha", "song.mp3"), "la");  // made through alpha's view
  set(backing("song.mp3"), policy::kCreatedByXattr, "alpha");
  auto r = ctl({"who", view("beta", "song.mp3")});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, view("beta", "song.mp3") + ": created by alpha, not changed by another app\n");
  EXPECT_EQ(r.err, "");

  set(backing("song.mp3"), policy::kChangedByXattr, "beta");
  for (const auto& path : {view("alpha", "song.mp3"), view("beta", "song.mp3"), backing("song.mp3")}) {
    r = ctl({"who", path});
    EXPECT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(r.out, path + ": created by alpha, last changed by beta\n");
  }
  // The share's directory itself, made by the daemon on the host: no app.
  r = ctl({"who", mnt() + "/apps/beta/shared/music"});
  EXPECT_EQ(r.out, mnt() + "/apps/beta/shared/music: no app recorded as its creator, no change by an app recorded\n");
}

TEST_F(Who, SaysWhatTheFilesystemRecordedThroughTheViewsAcrossAnAppsRemoval) {
  // Nothing set by hand: alpha makes the file through its view, beta appends through its own.
  write_file(view("alpha", "live.mp3"), "la");
  {
    std::FILE* f = std::fopen(view("beta", "live.mp3").c_str(), "a");
    ASSERT_NE(f, nullptr) << std::strerror(errno);
    EXPECT_GE(std::fputs("+beta", f), 0);
    EXPECT_EQ(std::fclose(f), 0);  // the close that records who wrote
  }
  auto r = ctl({"who", backing("live.mp3")});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, backing("live.mp3") + ": created by alpha, last changed by beta\n");
  // Provenance belongs to the file: it outlives the app that changed it.
  ASSERT_EQ(ctl({"app", "remove", "beta"}).code, 0);
  r = ctl({"who", view("alpha", "live.mp3")});
  EXPECT_EQ(r.out, view("alpha", "live.mp3") + ": created by alpha, last changed by beta\n");
}

TEST_F(Who, Json) {
  write_file(view("alpha", "song.mp3"), "la");
  set(backing("song.mp3"), policy::kCreatedByXattr, "alpha");
  const json views = {{{"app", "alpha"}, {"path", view("alpha", "song.mp3")}, {"access", "read-write"}},
                      {{"app", "beta"}, {"path", view("beta", "song.mp3")}, {"access", "read-write"}}};
  auto r = ctl({"--format", "json", "who", view("beta", "song.mp3")});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(json::parse(r.out), (json{{"path", view("beta", "song.mp3")},
                                      {"backing", backing("song.mp3")},
                                      {"type", "file"},
                                      {"created_by", "alpha"},
                                      {"changed_by", nullptr},
                                      {"views", views}}));
  // Made on the host: no app, for both.
  write_file(backing("host.txt"), "h");
  r = ctl({"who", backing("host.txt"), "--format", "json"});
  ASSERT_EQ(r.code, 0) << r.err;
  const json answer = json::parse(r.out);
  EXPECT_EQ(answer["path"], backing("host.txt"));
  EXPECT_EQ(answer["created_by"], nullptr);
  EXPECT_EQ(answer["changed_by"], nullptr);
  EXPECT_EQ(answer["views"].size(), 2u);
}

TEST_F(Who, ARelativePathIsTheCallers) {
  write_file(view("alpha", "song.mp3"), "la");
  set(backing("song.mp3"), policy::kCreatedByXattr, "alpha");
  // From inside beta's view (getcwd answers through the mount) and from the host.
  auto r = ctl_in(mnt() + "/apps/beta/shared/music", "song.mp3");
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, view("beta", "song.mp3") + ": created by alpha, not changed by another app\n");
  r = ctl_in(storage() + "/shared", "./music/../music/song.mp3");
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, backing("song.mp3") + ": created by alpha, not changed by another app\n");
}

TEST_F(Who, RefusesWithOneLineAndTheRightCode) {
  auto r = ctl({"who", "/etc/passwd"});
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(r.err, "portalctl: who: /etc/passwd: not below the mountpoint " + mnt() + " or the storage root " +
                       storage() + "; expected a file in a view or in the storage root\n");
  EXPECT_EQ(r.out, "");
  // ".." is taken away before judging: it leads out of the storage root.
  r = ctl({"who", storage() + "/shared/music/../../../outside"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, ::testing::HasSubstr(": not below the mountpoint"));

  r = ctl({"who", mnt() + "/apps/alpha"});
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(r.err, "portalctl: who: " + mnt() + "/apps/alpha: not in a view (a directory portalfs makes above them); expected " +
                       mnt() + "/apps/APP/data|shared|host/VIEW/...\n");

  r = ctl({"who", mnt() + "/apps/gamma/shared/music/song.mp3"});
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err, "portalctl: who: " + mnt() + "/apps/gamma/shared/music/song.mp3: no such view: app gamma is not installed\n");
  r = ctl({"who", mnt() + "/apps/alpha/shared/photos/x"});
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err, "portalctl: who: " + mnt() + "/apps/alpha/shared/photos/x: no such view: app alpha has no view shared/photos\n");

  r = ctl({"who", view("alpha", "nope")});
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err, "portalctl: who: " + view("alpha", "nope") + ": no such file or directory (backing " + backing("nope") + ")\n");

  // A link an app planted in the share is not followed on the way.
  std::filesystem::create_directories(dir_ / "outside");
  write_file(dir_ / "outside/secret", "s");
  std::filesystem::create_symlink(dir_ / "outside", backing("link"));
  r = ctl({"who", view("beta", "link/secret")});
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err, "portalctl: who: " + view("beta", "link/secret") + ": " + backing("link") +
                       ": is a symbolic link; refusing to follow it\n");
  // The link itself is answered for.
  r = ctl({"who", backing("link"), "--format", "json"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(json::parse(r.out)["type"], "symlink");
}

}  // namespace
}  // namespace portalfs::testutil
