// SPDX-License-Identifier: MIT
// A share's trash (#13) against the real portalfsd and portalctl: deletes through a view go to
// the trash and out of every view, the trash can't be reached from a view, restore brings back
// bytes, owner, mode and mtime (the same inode), purge and the daemon's expiry delete them.
#include <dirent.h>
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <regex>

#include <nlohmann/json.hpp>

#include "tests/testutil/daemon_fixture.hpp"

namespace portalfs::testutil {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using namespace std::chrono_literals;
using ::testing::HasSubstr;

class Trash : public DaemonFixture {
 protected:
  void SetUp() override {
    DaemonFixture::SetUp();
    if (HasFatalFailure() || IsSkipped()) return;
    extra_daemon_args_ = {"--trash-purge-interval", "1"};
    for (const char* app : {"alpha", "beta"}) write_app(app, {{"docs", "read-write"}, {"plain", "read-write"}});
    ASSERT_NO_FATAL_FAILURE(start());
    ASSERT_EQ(ctl({"share", "create", "docs", "--trash", "30d"}).code, 0);
    ASSERT_EQ(ctl({"share", "create", "plain"}).code, 0);
    ASSERT_NO_FATAL_FAILURE(install_apps({"alpha", "beta"}));
  }

  [[nodiscard]] std::string view(const std::string& app, const std::string& rest, const std::string& share = "docs") const {
    return mnt() + "/apps/" + app + "/shared/" + share + "/" + rest;
  }
  [[nodiscard]] std::string backing(const std::string& rest, const std::string& share = "docs") const {
    return storage() + "/shared/" + share + "/" + rest;
  }
  [[nodiscard]] std::string share_trash(const std::string& share = "docs") const {
    return storage() + "/share-trash/" + share;
  }

  static int errno_of(int rc) { return rc == 0 ? 0 : errno; }
  static int lstat_errno(const std::string& path) {
    struct stat st {};
    return errno_of(::lstat(path.c_str(), &st));
  }
  static std::vector<std::string> listing(const std::string& dir) {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename());
    std::sort(names.begin(), names.end());
    return names;
  }

  /// The trash entries `trash list` gives, as JSON.
  json listed(std::vector<std::string> args = {}) {
    args.insert(args.begin(), {"--format", "json", "trash", "list"});
    const auto r = ctl(args);
    EXPECT_EQ(r.code, 0) << r.err;
    return json::parse(r.out);
  }
  /// The id of the only entry whose path is `path`.
  std::string id_of(const std::string& path) {
    std::string id;
    for (const auto& e : listed()) {
      if (e.value("path", "") != path) continue;
      EXPECT_EQ(id, "") << "two entries for " << path;
      id = e["id"];
    }
    EXPECT_NE(id, "") << "no entry for " << path;
    return id;
  }
};

TEST_F(Trash, RestoreRoundTripKeepsBytesOwnerModeAndMtime) {
  const std::string bytes(300000, 'x');
  write_file(view("alpha", "report.txt"), bytes + "end");
  // Owner, mode and mtime an app could not give it, so the restore can't just happen to match.
  ASSERT_EQ(::chown(backing("report.txt").c_str(), 1234, 5678), 0);
  ASSERT_EQ(::chmod(backing("report.txt").c_str(), 0640), 0);
  const timespec times[2] = {{1000000000, 111}, {1500000000, 123456789}};
  ASSERT_EQ(::utimensat(AT_FDCWD, backing("report.txt").c_str(), times, AT_SYMLINK_NOFOLLOW), 0);
  struct stat before {};
  ASSERT_EQ(::lstat(backing("report.txt").c_str(), &before), 0);

  ASSERT_EQ(::unlink(view("alpha", "report.txt").c_str()), 0) << std::strerror(errno);
  // Gone from every view and from the share, listed nowhere.
  EXPECT_EQ(lstat_errno(view("alpha", "report.txt")), ENOENT);
  EXPECT_TRUE(wait_until([&] { return lstat_errno(view("beta", "report.txt")) == ENOENT; }, 5s));
  EXPECT_EQ(lstat_errno(backing("report.txt")), ENOENT);
  EXPECT_EQ(listing(mnt() + "/apps/beta/shared/docs"), std::vector<std::string>{});
  EXPECT_EQ(listing(backing("")), std::vector<std::string>{});

  const json entries = listed();
  ASSERT_EQ(entries.size(), 1u) << entries.dump();
  EXPECT_EQ(entries[0]["share"], "docs");
  EXPECT_EQ(entries[0]["path"], "report.txt");
  EXPECT_EQ(entries[0]["app"], "alpha");
  EXPECT_EQ(entries[0]["view"], "docs");
  EXPECT_EQ(entries[0]["kind"], "file");
  const std::string id = entries[0]["id"];
  // The text form: one line, the path last.
  auto r = ctl({"trash", "list", "docs"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(std::regex_match(r.out, std::regex(id + " docs [0-9-]+T[0-9:]+Z alpha file report.txt\n"))) << r.out;
  EXPECT_EQ(listed({"--app", "beta"}), json::array());
  // A delete is a rename: the same inode sits in the trash.
  struct stat trashed {};
  ASSERT_EQ(::lstat((share_trash() + "/" + id + "/entry").c_str(), &trashed), 0);
  EXPECT_EQ(trashed.st_ino, before.st_ino);

  r = ctl({"trash", "restore", id});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "restored " + id + " to share docs: report.txt\n");
  struct stat after {};
  ASSERT_EQ(::lstat(backing("report.txt").c_str(), &after), 0);
  EXPECT_EQ(read_file(backing("report.txt")), bytes + "end");
  EXPECT_EQ(after.st_ino, before.st_ino);
  EXPECT_EQ(after.st_uid, 1234u);
  EXPECT_EQ(after.st_gid, 5678u);
  EXPECT_EQ(after.st_mode, before.st_mode);
  EXPECT_EQ(after.st_mode & 07777, 0640u);
  EXPECT_EQ(after.st_mtim.tv_sec, 1500000000);
  EXPECT_EQ(after.st_mtim.tv_nsec, 123456789);
  EXPECT_EQ(after.st_size, before.st_size);
  // And the views show it again (the shared views' 1 s name cache aside).
  ASSERT_TRUE(wait_until([&] { return lstat_errno(view("beta", "report.txt")) == 0; }, 5s));
  EXPECT_EQ(read_file(view("beta", "report.txt")), bytes + "end");
  EXPECT_EQ(listed(), json::array());
  EXPECT_EQ(listing(share_trash()), std::vector<std::string>{});
}

TEST_F(Trash, ADirectoryTreeRemovedEntryByEntryComesBackInOrder) {
  ASSERT_EQ(::mkdir(view("alpha", "d").c_str(), 0755), 0);
  ASSERT_EQ(::mkdir(view("alpha", "d/sub").c_str(), 0750), 0);
  write_file(view("alpha", "d/a.txt"), "A");
  write_file(view("alpha", "d/sub/b.txt"), "B");
  // rmdir of a directory with entries is refused as ever, and trashes nothing.
  EXPECT_EQ(errno_of(::rmdir(view("alpha", "d").c_str())), ENOTEMPTY);
  EXPECT_EQ(errno_of(::unlink(view("alpha", "d").c_str())), EISDIR);
  EXPECT_EQ(errno_of(::rmdir(view("alpha", "d/a.txt").c_str())), ENOTDIR);
  EXPECT_EQ(listed(), json::array());

  EXPECT_EQ(fs::remove_all(view("beta", "d")), 4u);  // children first, then each directory
  // Gone from alpha's view too, once the daemon's invalidation (sent after the reply) lands.
  EXPECT_TRUE(wait_until([&] { return lstat_errno(view("alpha", "d")) == ENOENT; }, 5s));
  EXPECT_EQ(lstat_errno(backing("d")), ENOENT);
  const json entries = listed();
  ASSERT_EQ(entries.size(), 4u) << entries.dump();
  for (const auto& e : entries) EXPECT_EQ(e["app"], "beta");
  EXPECT_EQ(listed({"docs", "--app", "beta"}).size(), 4u);

  // A file can't come back before its directory: one line saying what to do, nothing moved.
  const std::string b = id_of("d/sub/b.txt");
  auto r = ctl({"trash", "restore", b});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("its directory " + backing("d/sub") + " does not exist; restore that directory first"));
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1);
  EXPECT_EQ(listed().size(), 4u);

  for (const char* path : {"d", "d/sub", "d/a.txt", "d/sub/b.txt"}) {
    r = ctl({"trash", "restore", id_of(path)});
    ASSERT_EQ(r.code, 0) << path << ": " << r.err;
  }
  EXPECT_EQ(read_file(backing("d/a.txt")), "A");
  EXPECT_EQ(read_file(backing("d/sub/b.txt")), "B");
  struct stat st {};
  ASSERT_EQ(::lstat(backing("d/sub").c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(listed(), json::array());
}

TEST_F(Trash, ARenameOverAFileKeepsTheReplacedOneAndARestoreNeverOverwrites) {
  write_file(view("alpha", "a.txt"), "old");
  write_file(view("alpha", "a.txt.tmp"), "new");
  ASSERT_EQ(::rename(view("alpha", "a.txt.tmp").c_str(), view("alpha", "a.txt").c_str()), 0) << std::strerror(errno);
  EXPECT_EQ(read_file(view("alpha", "a.txt")), "new");
  const std::string id = id_of("a.txt");
  EXPECT_EQ(read_file(share_trash() + "/" + id + "/entry"), "old");

  auto r = ctl({"trash", "restore", id});
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(r.err, "portalctl: trash restore: share docs: a.txt exists; move it away first, or restore to another path "
                   "with --to PATH\n");
  EXPECT_EQ(read_file(backing("a.txt")), "new");
  r = ctl({"trash", "restore", id, "--to", "a.old.txt"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(read_file(backing("a.old.txt")), "old");
  EXPECT_EQ(read_file(backing("a.txt")), "new");

  // A rename that replaces nothing, or a file onto itself, keeps nothing.
  ASSERT_EQ(::rename(view("alpha", "a.txt").c_str(), view("alpha", "b.txt").c_str()), 0);
  ASSERT_EQ(::link(view("alpha", "b.txt").c_str(), view("alpha", "c.txt").c_str()), 0);
  ASSERT_EQ(::rename(view("alpha", "b.txt").c_str(), view("alpha", "c.txt").c_str()), 0);
  EXPECT_EQ(listed(), json::array());
  // A file with another name is deleted for good: its data stays under the other name.
  ASSERT_EQ(::unlink(view("alpha", "c.txt").c_str()), 0);
  EXPECT_EQ(read_file(view("alpha", "b.txt")), "new");
  EXPECT_EQ(listed(), json::array());
}

TEST_F(Trash, NoViewCanReachTheTrash) {
  write_file(view("alpha", "secret.txt"), "s");
  ASSERT_EQ(::unlink(view("alpha", "secret.txt").c_str()), 0);
  const std::string id = id_of("secret.txt");
  ASSERT_TRUE(fs::exists(share_trash() + "/" + id + "/entry"));
  // Nothing above or beside a view leads to it: the synthetic tree knows only apps.
  EXPECT_EQ(listing(mnt()), std::vector<std::string>{"apps"});
  EXPECT_EQ(listing(mnt() + "/apps/alpha/shared"), (std::vector<std::string>{"docs", "plain"}));
  for (const std::string& path :
       {view("alpha", "../share-trash"), view("alpha", "../../share-trash/docs/" + id), mnt() + "/share-trash",
        view("alpha", "../../../../share-trash"), view("alpha", id), view("alpha", "entry")}) {
    EXPECT_EQ(lstat_errno(path), ENOENT) << path;
    EXPECT_EQ(errno_of(::open(path.c_str(), O_RDONLY) >= 0 ? 0 : -1), ENOENT) << path;
  }
  // Nor can a rename move a file into it, or one out of it.
  write_file(view("alpha", "x.txt"), "x");
  for (const std::string& target : {view("alpha", "../../share-trash/docs/" + id + "/x"), mnt() + "/share-trash/x"}) {
    EXPECT_NE(::rename(view("alpha", "x.txt").c_str(), target.c_str()), 0) << target;
  }
  EXPECT_NE(::rename(view("alpha", "../../share-trash/docs/" + id + "/entry").c_str(), view("alpha", "y.txt").c_str()), 0);
  EXPECT_EQ(read_file(view("alpha", "x.txt")), "x");
  EXPECT_EQ(read_file(share_trash() + "/" + id + "/entry"), "s");
  // The trash is the daemon's: root's alone.
  struct stat st {};
  ASSERT_EQ(::lstat(share_trash().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0700u);
  EXPECT_EQ(st.st_uid, 0u);
}

TEST_F(Trash, PurgeAndTheDaemonsExpiryDeleteForGood) {
  for (const char* app : {"alpha", "beta"}) {
    write_file(view(app, std::string(app) + ".txt"), app);
    ASSERT_EQ(::unlink(view(app, std::string(app) + ".txt").c_str()), 0);
  }
  auto r = ctl({"trash", "purge", "docs", "--app", "beta", "--older-than", "1d"});
  EXPECT_EQ(r.out, "purged 0 entries\n");
  r = ctl({"trash", "purge", "docs", "--app", "beta"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "purged 1 entry\n");
  ASSERT_EQ(listed().size(), 1u);
  EXPECT_EQ(listed()[0]["app"], "alpha");
  r = ctl({"trash", "purge"});
  EXPECT_EQ(r.out, "purged 1 entry\n");
  EXPECT_EQ(listing(share_trash()), std::vector<std::string>{});
  EXPECT_TRUE(wait_until([&] { return fs::is_empty(storage() + "/trash"); }, 10s));

  // A share without a trash deletes; one given a short retention has the daemon purge it.
  write_file(view("alpha", "gone.txt", "plain"), "g");
  ASSERT_EQ(::unlink(view("alpha", "gone.txt", "plain").c_str()), 0);
  EXPECT_EQ(listed(), json::array());
  r = ctl({"share", "set", "plain", "--trash", "3s"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "share plain: deletes go to its trash, kept 3s\n");
  write_file(view("alpha", "brief.txt", "plain"), "b");
  ASSERT_EQ(::unlink(view("alpha", "brief.txt", "plain").c_str()), 0);
  EXPECT_EQ(listed({"plain"}).size(), 1u);
  EXPECT_TRUE(wait_until([&] { return listed({"plain"}).empty(); }, 15s)) << "the daemon did not purge the expired entry";
  EXPECT_EQ(listing(share_trash("plain")), std::vector<std::string>{});
  EXPECT_THAT(read_file(dir_ / "daemon.log"), HasSubstr("share trash: purged 1 expired entries"));
  // Off again: deletes delete.
  ASSERT_EQ(ctl({"share", "set", "plain", "--trash", "off"}).code, 0);
  write_file(view("alpha", "last.txt", "plain"), "l");
  ASSERT_EQ(::unlink(view("alpha", "last.txt", "plain").c_str()), 0);
  EXPECT_EQ(listing(share_trash("plain")), std::vector<std::string>{});
}

TEST_F(Trash, BadInputIsOneLineAndExitCode2) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"share", "set", "docs", "--trash", "forever"},
       "portalctl: share set: --trash: expected a retention like 30d, 12h, 45m or 90s (at most 3650d), or off, got "
       "\"forever\"; see portalctl --help\n"},
      {{"share", "set", "docs"}, "portalctl: share set: missing --trash 30d|12h|off (the one setting there is); see portalctl --help\n"},
      {{"share", "create", "x", "--trash", "0d"},
       "portalctl: share create: --trash: expected a retention like 30d, 12h, 45m or 90s (at most 3650d), or off, got "
       "\"0d\"; see portalctl --help\n"},
      {{"trash", "purge", "--older-than", "off"},
       "portalctl: trash purge: --older-than: expected an age like 30d, 12h, 45m or 90s, got \"off\"; see portalctl --help\n"},
      {{"trash", "restore", "nope"}, ""},
      {{"trash", "restore", "20261206-223800-1a2b3c4d"},
       "portalctl: trash restore: no entry 20261206-223800-1a2b3c4d in any share's trash; portalctl trash list shows them\n"},
      {{"trash", "list", "nope"}, ""},
  };
  const std::string state_before = state_files(dir_ / "state");
  for (const auto& [args, err] : cases) {
    const auto r = ctl(args);
    EXPECT_EQ(r.code, 2) << args[0] << " " << args[1] << ": " << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    if (!err.empty()) {
      EXPECT_EQ(r.err, err);
    }
  }
  EXPECT_EQ(state_files(dir_ / "state"), state_before);
  EXPECT_FALSE(fs::exists(storage() + "/share-trash/x"));
}

}  // namespace
}  // namespace portalfs::testutil
