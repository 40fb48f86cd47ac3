// SPDX-License-Identifier: MIT
// The daemon's quota counters (fuse/quota_account.hpp) without a mount: the first walk's
// count (sizes once per inode, every entry one inode), ops waiting for it, its progress, and
// limits taken and checked under one lock by many threads; an APP:SHARE count by provenance,
// an op against two limits, and recounts after host changes.
#include "fuse/quota_account.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "policy/provenance.hpp"
#include "tests/testutil/temp_dir.hpp"

namespace portalfs::fuse {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

common::UniqueFd open_dir(const std::string& path) {
  return common::UniqueFd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
}

TEST(QuotaCountTree, SizesOncePerInodeAndOneInodePerEntry) {
  testutil::TempDir tmp;
  const std::string root = tmp / "root";
  fs::create_directories(root + "/a/b");
  testutil::write_file(root + "/one", std::string(1000, '1'));
  testutil::write_file(root + "/a/two", std::string(20, '2'));
  fs::create_hard_link(root + "/a/two", root + "/a/b/two.link");  // counted once
  fs::create_symlink("one", root + "/a/sym");                     // an inode, no bytes
  QuotaCounter counter("apps/x");
  std::set<std::pair<dev_t, ino_t>> linked;
  std::stop_source stop;
  count_tree(open_dir(root).get(), counter, linked, stop.get_token());
  const auto u = counter.usage();
  EXPECT_EQ(u.bytes, 1020u);
  EXPECT_EQ(u.inodes, 5u);  // one, a, a/b, a/two, a/sym (the link is the same inode as a/two)
  EXPECT_EQ(u.walked, 5u);
  EXPECT_FALSE(u.counted);
}

TEST(QuotaAccounts, OpsWaitForTheFirstWalkWhichStatusShows) {
  testutil::TempDir tmp;
  const std::string root = tmp / "root";
  fs::create_directories(root);
  testutil::write_file(root + "/f", std::string(100, 'f'));
  QuotaAccounts accounts;
  auto dir = open_dir(root);
  accounts.update({{"apps/x", {policy::QuotaLimits{150, 0}, {dir.get()}}}});
  auto counter = accounts.find("apps/x");
  ASSERT_TRUE(counter);
  EXPECT_EQ(accounts.progress(), "counting 1 of 1 limits (first walk; 0 entries so far; their writes wait)");
  std::atomic<int> result{-1};
  std::jthread op([&] { result = counter->charge(60, 0); });  // waits: the walk has not started
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(result.load(), -1);
  accounts.start();
  op.join();
  EXPECT_EQ(result.load(), EDQUOT);  // 100 counted + 60 > 150
  EXPECT_EQ(counter->charge(50, 0), 0);  // exactly at the limit
  EXPECT_EQ(counter->usage().bytes, 150u);
  EXPECT_EQ(accounts.progress(), "");
  // A limit gone drops its counter; set again, it counts afresh.
  accounts.update({});
  EXPECT_FALSE(accounts.find("apps/x"));
}

TEST(QuotaAccounts, ManyWritersNeverPassTheLimitTogether) {
  testutil::TempDir tmp;
  fs::create_directories(tmp / "root");
  QuotaAccounts accounts;
  auto dir = open_dir(tmp / "root");
  accounts.update({{"shared/s", {policy::QuotaLimits{1'000'000, 0}, {dir.get()}}}});
  accounts.start();
  auto counter = accounts.find("shared/s");
  std::atomic<uint64_t> taken{0};
  std::vector<std::jthread> writers;
  for (int t = 0; t < 8; ++t) {
    writers.emplace_back([&] {
      // Each appends 997 bytes at a time to a file of its own, until nothing fits.
      uint64_t size = 0;
      while (uint64_t n = counter->charge_write(size, size, 997)) {
        size += n;
        taken += n;
      }
    });
  }
  writers.clear();
  EXPECT_EQ(taken.load(), 1'000'000u);
  EXPECT_EQ(counter->usage().bytes, 1'000'000u);
  EXPECT_EQ(counter->room().first, 0u);
}

void made_by(const std::string& path, const std::string& app) {
  ASSERT_EQ(::lsetxattr(path.c_str(), policy::kCreatedByXattr, app.data(), app.size(), 0), 0) << path;
}

// An APP:SHARE counter counts the entries its app created (their trusted.portalfs.created_by),
// below directories of anyone's.
TEST(QuotaCountTree, AnAppInAShareCountsWhatItCreated) {
  testutil::TempDir tmp;
  const std::string root = tmp / "root";
  fs::create_directories(root + "/theirs/mine");
  testutil::write_file(root + "/a", std::string(100, 'a'));
  testutil::write_file(root + "/b", std::string(10, 'b'));
  testutil::write_file(root + "/theirs/mine/c", std::string(7, 'c'));
  testutil::write_file(root + "/host", std::string(1000, 'h'));  // no provenance: no app's
  made_by(root + "/a", "notes");
  made_by(root + "/b", "photos");
  made_by(root + "/theirs", "photos");
  made_by(root + "/theirs/mine", "notes");
  made_by(root + "/theirs/mine/c", "notes");
  QuotaCounter notes("notes:docs");
  EXPECT_EQ(notes.creator(), "notes");
  std::set<std::pair<dev_t, ino_t>> linked;
  std::stop_source stop;
  count_tree(open_dir(root).get(), notes, linked, stop.get_token());
  EXPECT_EQ(notes.usage().bytes, 107u);
  EXPECT_EQ(notes.usage().inodes, 3u);  // a, theirs/mine, theirs/mine/c
  EXPECT_EQ(QuotaCounter("shared/docs").creator(), "");
}

// A write against two limits is cut at the tighter and settles both with what was written; a
// resize one of them refuses takes nothing from either.
TEST(QuotaAccounts, AnOpAgainstTwoLimitsIsCutAtTheTighterAndSettlesBoth) {
  testutil::TempDir tmp;
  fs::create_directories(tmp / "root");
  QuotaAccounts accounts;
  auto dir = open_dir(tmp / "root");
  accounts.update({{"shared/s", {policy::QuotaLimits{1000, 0}, {dir.get()}}},
                   {"notes:s", {policy::QuotaLimits{300, 0}, {dir.get()}}}});
  accounts.start();
  QuotaCounters both = {accounts.find("shared/s"), accounts.find("notes:s")};
  common::UniqueFd file(::open((tmp / "root/f").c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644));
  ASSERT_TRUE(file);
  {
    SizeChange op(accounts, both, file.get());
    EXPECT_EQ(op.write(0, 500), 300u);
    ASSERT_EQ(::pwrite(file.get(), std::string(300, 'x').data(), 300, 0), 300);
  }
  EXPECT_EQ(both[0]->usage().bytes, 300u);
  EXPECT_EQ(both[1]->usage().bytes, 300u);
  {
    SizeChange op(accounts, both, file.get());
    EXPECT_EQ(op.resize(301), EDQUOT);
  }
  EXPECT_EQ(both[0]->usage().bytes, 300u);
  EXPECT_EQ(both[1]->usage().bytes, 300u);
  EXPECT_EQ(charge_all(both, 0, 2), 0);
  EXPECT_EQ(charge_all(both, 1, 0), EDQUOT);  // the share's admits, notes' refuses: none taken
  EXPECT_EQ(both[0]->usage().bytes, 300u);
  Removal gone(accounts, both, dir.get(), "f");
  ASSERT_EQ(::unlinkat(dir.get(), "f", 0), 0);
  gone.done();
  EXPECT_EQ(both[0]->usage().bytes, 0u);
  EXPECT_EQ(both[1]->usage().bytes, 0u);
}

// A change on the host counts the limits whose trees hold it again, in the background; a
// change elsewhere does not; an overflow (-1) counts them all again.
TEST(QuotaAccounts, HostChangesRecountTheLimitsTheyAreIn) {
  testutil::TempDir tmp;
  fs::create_directories(tmp / "a/sub");
  fs::create_directories(tmp / "b");
  QuotaAccounts accounts;
  auto a = open_dir(tmp / "a"), b = open_dir(tmp / "b");
  accounts.update({{"apps/a", {policy::QuotaLimits{1000, 0}, {a.get()}}},
                   {"apps/b", {policy::QuotaLimits{1000, 0}, {b.get()}}}});
  accounts.start();
  auto ca = accounts.find("apps/a"), cb = accounts.find("apps/b");
  ca->wait();
  cb->wait();
  EXPECT_EQ(ca->usage().inodes, 1u);
  testutil::write_file(tmp / "a/sub/f", std::string(40, 'f'));
  testutil::write_file(tmp / "b/g", std::string(5, 'g'));
  auto sub = open_dir(tmp / "a/sub");
  accounts.host_changed(sub.get());
  auto until = [](const std::function<bool()>& pred) {
    for (auto end = std::chrono::steady_clock::now() + 5s; std::chrono::steady_clock::now() < end;) {
      if (pred()) return true;
      std::this_thread::sleep_for(10ms);
    }
    return pred();
  };
  EXPECT_TRUE(until([&] { return ca->usage().bytes == 40 && ca->usage().inodes == 2; })) << ca->usage().bytes;
  EXPECT_EQ(accounts.recounts(), 1u);
  EXPECT_EQ(cb->usage().bytes, 0u);  // not below b: not counted again
  accounts.host_changed(-1);
  EXPECT_TRUE(until([&] { return cb->usage().bytes == 5; }));
  EXPECT_TRUE(until([&] { return accounts.recounts() == 3; }));
  EXPECT_EQ(ca->usage().bytes, 40u);
}


// What a walk of `root` counts: every entry below it one inode, a regular file's size once.
std::pair<uint64_t, uint64_t> du_exact(const std::string& root) {
  std::set<std::pair<dev_t, ino_t>> seen;
  uint64_t bytes = 0, inodes = 0;
  for (const auto& e : fs::recursive_directory_iterator(root)) {
    struct stat st {};
    if (::lstat(e.path().c_str(), &st) != 0 || !seen.insert({st.st_dev, st.st_ino}).second) continue;
    ++inodes;
    if (S_ISREG(st.st_mode)) bytes += static_cast<uint64_t>(st.st_size);
  }
  return {bytes, inodes};
}

// Recounts while ops go on, as the daemon's ops do them (QuotaSteps, SizeChange, Removal,
// entered): files made, grown, cut and deleted, hard links, directories made and moved in and
// out of parts walked and not yet walked. Each recount's count is exact: after the last one,
// with the ops still counting, the usage is what is on disk.
TEST(QuotaAccounts, ARecountLosesNoOpThatRacesIt) {
  testutil::TempDir tmp;
  const std::string root = tmp / "root";
  for (int d = 0; d < 20; ++d) {
    fs::create_directories(root + "/big" + std::to_string(d));
    for (int f = 0; f < 200; ++f) testutil::write_file(root + "/big" + std::to_string(d) + "/f" + std::to_string(f), "xy");
  }
  fs::create_directories(root + "/top");
  QuotaAccounts accounts;
  auto dir = open_dir(root);
  accounts.update({{"apps/x", {policy::QuotaLimits{1ULL << 40, 0}, {dir.get()}}}});
  accounts.start();
  auto counter = accounts.find("apps/x");
  QuotaCounters counters = {counter};
  counter->wait();
  std::stop_source stop;
  std::atomic<int> recounts{0};
  std::jthread recounter([&] {
    for (int i = 0; i < 6; ++i) {
      std::vector<common::UniqueFd> roots;
      roots.emplace_back(::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
      if (recount_roots(roots, *counter, stop.get_token())) ++recounts;
    }
  });
  auto id_of = [](int fd) {
    struct stat st {};
    ::fstat(fd, &st);
    return FileId{st.st_dev, st.st_ino};
  };
  auto entered = [&](const std::string& parent, const std::string& name, bool made) {
    auto p = open_dir(parent);
    common::UniqueFd e(::openat(p.get(), name.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
    ASSERT_TRUE(e) << parent << "/" << name;
    counter->entered(id_of(p.get()), e.get(), made);
  };
  for (int i = 0; recounts.load() < 6 && i < 200000; ++i) {
    const std::string top = root + "/top";
    const std::string name = "w" + std::to_string(i % 40);
    switch (i % 6) {
      case 0: {  // made (or opened) and grown
        common::UniqueFd f;
        {
          QuotaSteps steps(counters);
          const bool made = !fs::exists(top + "/" + name);
          if (made) {
            ASSERT_EQ(counter->charge(0, 1), 0);
          }
          f.reset(::open((top + "/" + name).c_str(), O_CREAT | O_WRONLY | O_APPEND | O_CLOEXEC, 0644));
          ASSERT_TRUE(f);
          if (made) entered(top, name, true);
        }
        SizeChange op(accounts, counters, f.get());
        const uint64_t n = op.write(static_cast<uint64_t>(fs::file_size(top + "/" + name)), 100 + i % 9);
        ASSERT_EQ(::write(f.get(), std::string(n, 'w').data(), n), static_cast<ssize_t>(n));
        break;
      }
      case 1: {  // cut
        common::UniqueFd f(::open((top + "/" + name).c_str(), O_WRONLY | O_CLOEXEC));
        if (!f) break;
        SizeChange op(accounts, counters, f.get());
        ASSERT_EQ(op.resize(7), 0);
        ASSERT_EQ(::ftruncate(f.get(), 7), 0);
        break;
      }
      case 2: {  // deleted
        auto p = open_dir(top);
        Removal gone(accounts, counters, p.get(), name.c_str());
        if (::unlinkat(p.get(), name.c_str(), 0) == 0) gone.done();
        break;
      }
      case 3: {  // a second name, in a directory deep in the big tree
        QuotaSteps steps(counters);
        const std::string into = root + "/big" + std::to_string(i % 20);
        if (::link((top + "/" + name).c_str(), (into + "/l" + std::to_string(i)).c_str()) == 0) {
          entered(into, "l" + std::to_string(i), false);
        }
        break;
      }
      case 4: {  // a directory made at the top, with a file in it
        const std::string d = "d" + std::to_string(i);
        {
          QuotaSteps steps(counters);
          ASSERT_EQ(counter->charge(0, 1), 0);
          ASSERT_EQ(::mkdir((top + "/" + d).c_str(), 0755), 0);
          entered(top, d, true);
        }
        QuotaSteps steps(counters);
        ASSERT_EQ(counter->charge(0, 1), 0);
        testutil::write_file(top + "/" + d + "/e", "");
        entered(top + "/" + d, "e", true);
        break;
      }
      case 5: {  // a directory of the big tree moved to the top and back
        const std::string big = "big" + std::to_string(i % 20);
        QuotaSteps steps(counters);
        if (::rename((root + "/" + big).c_str(), (top + "/" + big).c_str()) == 0) entered(top, big, false);
        if (::rename((top + "/" + big).c_str(), (root + "/" + big).c_str()) == 0) entered(root, big, false);
        break;
      }
    }
  }
  recounter.join();
  EXPECT_EQ(recounts.load(), 6);
  const auto [bytes, inodes] = du_exact(root);
  EXPECT_EQ(counter->usage().bytes, bytes);
  EXPECT_EQ(counter->usage().inodes, inodes);
}

}  // namespace
}  // namespace portalfs::fuse
