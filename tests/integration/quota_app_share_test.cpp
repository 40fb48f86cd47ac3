// SPDX-License-Identifier: MIT
// Issue #16, a limit per app within a share (APP:SHARE) and host changes counted live: the real
// portalfsd and portalctl over a plain directory (no project quotas), two apps sharing
// own_media read-write (fuse/quota_account.hpp).
//
// An app's usage in a share is what it created there (its files' provenance): its writes stop
// exactly at its limit with the bytes written kept, another app in the share goes on, and the
// share's own limit still binds both. The count is exact after a kill -9 and a restart. A file
// written or deleted on the host in the backing directory shows in `usage` within seconds.
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "tests/integration/fs_helpers.hpp"
#include "tests/integration/notes_app.hpp"

namespace portalfs::testutil {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using namespace std::chrono_literals;

constexpr uint64_t kK = 1 << 10;
constexpr uint64_t kM = 1 << 20;

class AppShareQuota : public NotesApp {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(DaemonFixture::SetUp());
    ASSERT_NO_FATAL_FAILURE(start());
    ASSERT_NO_FATAL_FAILURE(install_notes());
    write_file(dir_ / "photos.json", R"({"name": "photos", "data_dirs": [
      {"path": "/media", "shared_dir": "own_media", "access": "read-write"}]})");
    auto r = ctl({"app", "install", dir_ / "photos.json"});
    ASSERT_EQ(r.code, 0) << r.err;
  }
  std::string photos_media() { return mnt() + "/apps/photos/shared/own_media"; }
  std::string backing() { return storage() + "/shared/own_media"; }

  void set(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {"quota", "set"};
    argv.insert(argv.end(), args.begin(), args.end());
    const auto r = ctl(argv);
    ASSERT_EQ(r.code, 0) << r.err;
    ASSERT_THAT(r.out, HasSubstr("accounted by portalfsd"));
  }
  // The usage row of `target` once counted (10 s at most).
  nlohmann::json usage(const std::string& target) {
    nlohmann::json row;
    const bool counted = eventually(
        [&] {
          auto r = ctl({"usage", target, "--format", "json"});
          if (r.code != 0) return false;
          row = nlohmann::json::parse(r.out).at(0);
          return true;
        },
        10s);
    EXPECT_TRUE(counted) << ctl({"usage", target}).err;
    return row;
  }
  uint64_t bytes_used(const std::string& target) { return usage(target)["bytes_used"].get<uint64_t>(); }
  // Whether `target`'s usage comes to `bytes` and `inodes` within 5 s.
  bool usage_becomes(const std::string& target, uint64_t bytes, uint64_t inodes) {
    return eventually(
        [&] {
          const auto u = usage(target);
          return u["bytes_used"] == bytes && u["inodes_used"] == inodes;
        },
        5s);
  }

  // Writes 64 KiB blocks of 'x' to `path` (made) until one fails or `max` are written: the
  // errno (0: all written); `done` says how many bytes were.
  static int fill(const std::string& path, std::size_t max, std::size_t* done, int flags = O_CREAT | O_WRONLY) {
    const int fd = ::open(path.c_str(), flags | O_CLOEXEC, 0644);
    if (fd < 0) return errno;
    const std::string block(64 * kK, 'x');
    *done = 0;
    int err = 0;
    while (*done < max) {
      const ssize_t n = ::write(fd, block.data(), std::min<std::size_t>(block.size(), max - *done));
      if (n < 0) {
        err = errno;
        break;
      }
      *done += static_cast<std::size_t>(n);
    }
    ::close(fd);
    return err;
  }
};

TEST_F(AppShareQuota, AnAppStopsAtItsLimitInTheShareOthersGoOnAndTheShareLimitStillBinds) {
  ASSERT_NO_FATAL_FAILURE(set({"notes:own_media", "1M"}));
  const auto row = usage("notes:own_media");
  EXPECT_EQ(row["bytes_used"], 0u);  // what notes made there: nothing yet
  EXPECT_EQ(row["kind"], "app_share");
  EXPECT_EQ(row["bytes_limit"], kM);

  // notes: cut exactly at 1M, the bytes written kept.
  std::size_t done = 0;
  EXPECT_EQ(fill(media() + "/a.bin", 4 * kM, &done), EDQUOT);
  EXPECT_EQ(done, kM);
  EXPECT_EQ(fs::file_size(backing() + "/a.bin"), kM);
  EXPECT_EQ(read_file(backing() + "/a.bin"), std::string(kM, 'x'));
  EXPECT_EQ(bytes_used("notes:own_media"), kM);
  // Nor may it grow through another app: a file counts for the app that created it.
  EXPECT_EQ(fill(photos_media() + "/a.bin", 1, &done, O_WRONLY | O_APPEND), EDQUOT);
  // statfs in notes' view of the share: its limit, no room; photos' view: no such limit.
  struct statvfs sv {};
  ASSERT_EQ(::statvfs(media().c_str(), &sv), 0);
  EXPECT_EQ(sv.f_blocks * sv.f_frsize, kM);
  EXPECT_EQ(sv.f_bavail, 0u);
  ASSERT_EQ(::statvfs(photos_media().c_str(), &sv), 0);
  EXPECT_NE(sv.f_blocks * sv.f_frsize, kM);

  // photos, in the same share: unaffected.
  EXPECT_EQ(fill(photos_media() + "/b.bin", 2 * kM, &done), 0);
  EXPECT_EQ(done, 2 * kM);

  // The share's limit: 512K above what it holds now. notes gets room of its own, but the
  // share is what stops both now.
  ASSERT_NO_FATAL_FAILURE(set({"own_media", "1G"}));
  const uint64_t share_used = bytes_used("own_media");
  ASSERT_NO_FATAL_FAILURE(set({"own_media", std::to_string(share_used + 512 * kK)}));
  ASSERT_NO_FATAL_FAILURE(set({"notes:own_media", "10M"}));
  ASSERT_EQ(::statvfs(media().c_str(), &sv), 0);
  EXPECT_EQ(sv.f_bavail * sv.f_frsize, 512 * kK);  // the tighter of the two: the share's room
  EXPECT_EQ(fill(media() + "/c.bin", 4 * kM, &done), EDQUOT);
  EXPECT_EQ(done, 512 * kK);
  EXPECT_EQ(fill(photos_media() + "/d.bin", kM, &done), EDQUOT);
  EXPECT_EQ(done, 0u);
  EXPECT_EQ(bytes_used("notes:own_media"), kM + 512 * kK);
  EXPECT_EQ(bytes_used("own_media"), share_used + 512 * kK);

  // Deleting gives back to both counts.
  ASSERT_EQ(sys(::unlink((photos_media() + "/a.bin").c_str())), kOk);
  EXPECT_EQ(bytes_used("notes:own_media"), 512 * kK);
  EXPECT_EQ(bytes_used("own_media"), share_used - 512 * kK);

  // All of them in `usage --format json`; cleared, notes writes on.
  const auto all = nlohmann::json::parse(ctl({"usage", "--format", "json"}).out);
  std::vector<std::string> targets;
  for (const auto& r : all) targets.push_back(r["target"]);
  EXPECT_THAT(targets, ::testing::UnorderedElementsAre("notes:own_media", "shared/own_media"));
  ASSERT_EQ(ctl({"quota", "clear", "notes:own_media"}).code, 0);
  ASSERT_EQ(ctl({"quota", "clear", "own_media"}).code, 0);
  EXPECT_EQ(fill(media() + "/e.bin", 2 * kM, &done), 0);
}

TEST_F(AppShareQuota, UsageIsExactAfterAKillAndRestart) {
  ASSERT_NO_FATAL_FAILURE(set({"notes:own_media", "16M", "--inodes", "10"}));
  write_file(media() + "/a.bin", std::string(300 * kK + 7, 'a'));
  ASSERT_EQ(sys(::mkdir((media() + "/sub").c_str(), 0755)), kOk);
  write_file(media() + "/sub/b", "bbb");
  write_file(photos_media() + "/sub/photo", std::string(kM, 'p'));  // photos', in notes' directory
  write_file(backing() + "/host.bin", std::string(kK, 'h'));       // the host's: no app's
  EXPECT_TRUE(usage_becomes("notes:own_media", 300 * kK + 10, 3));
  ASSERT_EQ(daemon_->stop(SIGKILL), 128 + SIGKILL);
  ::umount2(mnt().c_str(), MNT_DETACH);
  ASSERT_NO_FATAL_FAILURE(start());
  const auto after = usage("notes:own_media");
  EXPECT_EQ(after["bytes_used"], 300 * kK + 10);
  EXPECT_EQ(after["inodes_used"], 3u);
  EXPECT_EQ(after["bytes_limit"], 16 * kM);
  EXPECT_EQ(after["inodes_limit"], 10u);
  // Enforced from the new count on: 7 more inodes, then EDQUOT.
  for (int i = 0; i < 7; ++i) write_file(media() + "/n" + std::to_string(i), "");
  EXPECT_EQ(sys(::mkdir((media() + "/one-too-many").c_str(), 0755)), Err{EDQUOT});
}

// Host changes in the backing directory reach the counts within seconds, without a restart;
// the daemon's own writes (also seen by the host watch) count once.
TEST_F(AppShareQuota, HostWritesAndDeletesShowInUsageWithinSeconds) {
  ASSERT_NO_FATAL_FAILURE(set({"own_media", "1G"}));
  const auto base = usage("own_media");
  const uint64_t b0 = base["bytes_used"], i0 = base["inodes_used"];
  write_file(media() + "/app.bin", std::string(1000, 'a'));  // through notes' view
  EXPECT_TRUE(usage_becomes("own_media", b0 + 1000, i0 + 1));
  ASSERT_EQ(sys(::mkdir((backing() + "/host").c_str(), 0755)), kOk);
  write_file(backing() + "/host/h.bin", std::string(123456, 'h'));
  EXPECT_TRUE(usage_becomes("own_media", b0 + 1000 + 123456, i0 + 3)) << usage("own_media").dump();
  ASSERT_EQ(sys(::truncate((backing() + "/app.bin").c_str(), 10)), kOk);
  EXPECT_TRUE(usage_becomes("own_media", b0 + 10 + 123456, i0 + 3)) << usage("own_media").dump();
  ASSERT_EQ(sys(::unlink((backing() + "/host/h.bin").c_str())), kOk);
  EXPECT_TRUE(usage_becomes("own_media", b0 + 10, i0 + 2)) << usage("own_media").dump();
  // And the limit binds against what the host wrote: 64K of room, the host takes it.
  ASSERT_NO_FATAL_FAILURE(set({"own_media", std::to_string(b0 + 10 + 64 * kK)}));
  write_file(backing() + "/host/fill", std::string(64 * kK, 'f'));
  EXPECT_TRUE(usage_becomes("own_media", b0 + 10 + 64 * kK, i0 + 3));
  std::size_t done = 0;
  EXPECT_EQ(fill(media() + "/app.bin", 1, &done, O_WRONLY | O_APPEND), EDQUOT);
}

// What a walk of `root` counts (fuse/quota_account.hpp): every entry below it one inode, a
// regular file's size once per inode, nothing of another file system.
std::pair<uint64_t, uint64_t> du_exact(const std::string& root) {
  struct stat top {};
  if (::lstat(root.c_str(), &top) != 0) return {0, 0};
  std::set<std::pair<dev_t, ino_t>> seen;
  uint64_t bytes = 0, inodes = 0;
  for (const auto& e : fs::recursive_directory_iterator(root, fs::directory_options::skip_permission_denied)) {
    struct stat st {};
    if (::lstat(e.path().c_str(), &st) != 0 || st.st_dev != top.st_dev) continue;
    if (!seen.insert({st.st_dev, st.st_ino}).second) continue;
    ++inodes;
    if (S_ISREG(st.st_mode)) bytes += static_cast<uint64_t>(st.st_size);
  }
  return {bytes, inodes};
}

// Host changes recount the share's tree while an app writes through its view: the ops that
// land in a part the recount has already walked are not lost to it (quota_account.hpp). The
// writer works at the share's top, which a walk lists first, while the walk spends its time
// in a big tree below; the host stops changing things well before the writer stops, so no
// recount after the last write could hide a drift.
TEST_F(AppShareQuota, WritesDuringRecountsOfABigTreeAreNotLost) {
  for (int d = 0; d < 40; ++d) {
    const std::string dir = backing() + "/big/d" + std::to_string(d);
    fs::create_directories(dir);
    for (int f = 0; f < 500; ++f) write_file(dir + "/f" + std::to_string(f), std::string(f % 7, 'b'));
  }
  const auto walk_start = std::chrono::steady_clock::now();
  ASSERT_NO_FATAL_FAILURE(set({"own_media", "1G", "--inodes", "1000000"}));
  (void)usage("own_media");  // the first walk done (it holds the share's writes: what a recount holding them would cost)
  const auto walk_ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - walk_start).count();
  std::atomic<bool> host_done{false};
  std::thread host([&] {
    for (int i = 0; i < 12; ++i) {
      write_file(backing() + "/big/d" + std::to_string(i % 40) + "/host" + std::to_string(i), std::string(i, 'h'));
      std::this_thread::sleep_for(250ms);
    }
    host_done = true;
  });
  // The writer: files made, appended to, rewritten shorter and deleted at the top of the share.
  const std::string block(3000, 'w');
  int ops = 0;
  auto slowest = std::chrono::steady_clock::duration::zero();  // one op's, recounts going on
  auto end = std::chrono::steady_clock::time_point::max();
  for (int i = 0; std::chrono::steady_clock::now() < end; ++i) {
    const auto start = std::chrono::steady_clock::now();
    if (host_done && end == std::chrono::steady_clock::time_point::max()) {
      end = std::chrono::steady_clock::now() + 2s;  // past the last recount
    }
    const std::string path = media() + "/w" + std::to_string(i % 50);
    const int fd = ::open(path.c_str(), O_CREAT | O_WRONLY | O_APPEND | O_CLOEXEC, 0644);
    ASSERT_GE(fd, 0) << std::strerror(errno);
    ASSERT_EQ(::write(fd, block.data(), block.size() - static_cast<size_t>(i % 13)),
              static_cast<ssize_t>(block.size()) - i % 13);
    if (i % 5 == 0) {
      ASSERT_EQ(::ftruncate(fd, i % 1000), 0);
    }
    ::close(fd);
    if (i % 7 == 3) ::unlink((media() + "/w" + std::to_string((i + 20) % 50)).c_str());  // or gone already
    ++ops;
    if (!host_done) slowest = std::max(slowest, std::chrono::steady_clock::now() - start);
  }
  host.join();
  const auto slowest_ms = std::chrono::duration_cast<std::chrono::milliseconds>(slowest).count();
  RecordProperty("slowest_writer_op_ms", std::to_string(slowest_ms));
  std::cout << ops << " writer ops, the slowest (open, write, close, maybe truncate and unlink) during recounts "
            << slowest_ms << " ms; the first walk of the tree " << walk_ms << " ms\n";
  const auto [bytes, inodes] = du_exact(backing());
  EXPECT_TRUE(usage_becomes("own_media", bytes, inodes))
      << ops << " writer ops; on disk " << bytes << " bytes, " << inodes << " inodes; counted "
      << usage("own_media").dump();
}

TEST_F(AppShareQuota, BadTargetsGetOneLineExitTwoAndChangeNothing) {
  ASSERT_EQ(ctl({"share", "create", "other"}).code, 0);
  const std::string state = state_files(dir_ / "state");
  for (const auto& [target, says] : std::vector<std::pair<std::string, std::string>>{
           {"nobody:own_media", "no app named nobody"},
           {"notes:nothing", "no share named nothing"},
           {"notes:other", "app notes has no grant of share other"},
           {"notes:", "expected APP:SHARE"},
           {":own_media", "expected APP:SHARE"},
           {"notes:own_media:x", "expected APP:SHARE"}}) {
    for (const auto& argv : std::vector<std::vector<std::string>>{
             {"quota", "set", target, "1M"}, {"quota", "clear", target}, {"usage", target}}) {
      const auto r = ctl(argv);
      EXPECT_EQ(r.code, 2) << target << ": " << r.out << r.err;
      EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
      EXPECT_THAT(r.err, HasSubstr(says)) << argv[0];
      EXPECT_EQ(state_files(dir_ / "state"), state);
    }
  }
}

}  // namespace
}  // namespace portalfs::testutil
