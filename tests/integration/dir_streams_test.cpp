// SPDX-License-Identifier: MIT
// Directory listings through a view (fuse/ops_dir.cpp), with the kernel opening directories
// itself and caching their listings (a local storage root) and with Options::dir_streams (a
// FUSE storage root: each open of a directory keeps its listing's stream on the backing
// directory from one READDIR to the next). Either way a listing names every entry once, across
// many replies, two listings at once, seekdir/telldir and rewinds, while entries come and go,
// and a view that shows only an app's own files lists only those.
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/fs_helpers.hpp"
#include "tests/integration/mounted_fs.hpp"

namespace portalfs::testutil {
namespace {

namespace fs = std::filesystem;

fuse::Options options_with(bool dir_streams) {
  fuse::Options o;
  o.dir_streams = dir_streams;
  // As over GlusterFS (fit_to_backing, which sets dir_streams): nothing tells the daemon of
  // changes made on the disk behind its back.
  o.host_watch = false;
  o.data_timeout = o.attr_timeout;
  return o;
}

// Names long enough that a listing of kFiles takes many READDIR replies and more than one
// getdents of the daemon's 32 KiB.
constexpr int kFiles = 1500;
std::string name_of(int i) { return "file-with-a-long-name-to-fill-the-replies-" + std::to_string(i); }
std::set<std::string> expected(int n) {
  std::set<std::string> out;
  for (int i = 0; i < n; ++i) out.insert(name_of(i));
  return out;
}

// Every name a DIR stream gives until its end, in order ("." and ".." left out).
std::vector<std::string> drain(DIR* d) {
  std::vector<std::string> names;
  errno = 0;
  while (const dirent* e = ::readdir(d)) {
    const std::string n = e->d_name;
    if (n != "." && n != "..") names.push_back(n);
  }
  EXPECT_EQ(errno, 0) << "readdir: " << std::strerror(errno);
  return names;
}

// Names seen more than once.
std::vector<std::string> repeated(const std::vector<std::string>& names) {
  std::map<std::string, int> seen;
  std::vector<std::string> out;
  for (const auto& n : names) {
    if (++seen[n] == 2) out.push_back(n);
  }
  return out;
}

class DirStreams : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    PORTALFS_REQUIRE_MOUNT(m_);
    view_ = m_.add_view("a", ViewKind::data, "d");
    disk_ = m_.views().back().backing;
  }
  void fill(const std::string& dir, int n) {
    fs::create_directories(dir);
    for (int i = 0; i < n; ++i) write_file(dir + "/" + name_of(i), "");
  }

  MountedFs m_{options_with(GetParam())};
  std::string view_, disk_;
};

TEST_P(DirStreams, AListingOfManyRepliesNamesEveryEntryOnce) {
  fill(disk_ + "/big", kFiles);
  DIR* d = ::opendir((view_ + "/big").c_str());
  ASSERT_NE(d, nullptr) << std::strerror(errno);
  const auto names = drain(d);
  ::closedir(d);
  EXPECT_EQ(repeated(names), std::vector<std::string>{});
  EXPECT_EQ(std::set<std::string>(names.begin(), names.end()), expected(kFiles));
  // `ls -l`: each entry looked up as it is listed (READDIRPLUS all the way).
  d = ::opendir((view_ + "/big").c_str());
  ASSERT_NE(d, nullptr);
  size_t stated = 0;
  while (const dirent* e = ::readdir(d)) {
    struct stat st {};
    ASSERT_EQ(sys(::fstatat(::dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW)), kOk) << e->d_name;
    stated++;
  }
  ::closedir(d);
  EXPECT_EQ(stated, static_cast<size_t>(kFiles) + 2);
}

TEST_P(DirStreams, TwoListingsOfOneDirectoryAtOnceAreEachComplete) {
  fill(disk_ + "/big", kFiles);
  DIR* a = ::opendir((view_ + "/big").c_str());
  DIR* b = ::opendir((view_ + "/big").c_str());
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  // Interleaved an entry at a time: each getdents of one comes between two of the other.
  std::vector<std::string> from_a, from_b;
  bool a_done = false, b_done = false;
  while (!a_done || !b_done) {
    for (auto [d, out, done] : {std::tuple{a, &from_a, &a_done}, std::tuple{b, &from_b, &b_done}}) {
      if (*done) continue;
      const dirent* e = ::readdir(d);
      if (!e) {
        *done = true;
      } else if (std::string(e->d_name) != "." && std::string(e->d_name) != "..") {
        out->emplace_back(e->d_name);
      }
    }
  }
  ::closedir(a);
  ::closedir(b);
  EXPECT_EQ(repeated(from_a), std::vector<std::string>{});
  EXPECT_EQ(repeated(from_b), std::vector<std::string>{});
  EXPECT_EQ(std::set<std::string>(from_a.begin(), from_a.end()), expected(kFiles));
  EXPECT_EQ(std::set<std::string>(from_b.begin(), from_b.end()), expected(kFiles));
}

TEST_P(DirStreams, SeekdirGoesBackToWhatTelldirSaidAndARewindSeesNewEntries) {
  fill(disk_ + "/big", kFiles);
  DIR* d = ::opendir((view_ + "/big").c_str());
  ASSERT_NE(d, nullptr);
  // Positions (telldir before each entry) and the entry read there.
  std::vector<std::pair<long, std::string>> at;
  while (true) {
    const long pos = ::telldir(d);
    const dirent* e = ::readdir(d);
    if (!e) break;
    at.emplace_back(pos, e->d_name);
  }
  ASSERT_EQ(at.size(), static_cast<size_t>(kFiles) + 2);
  // Back to a few places, in no order: the same entry there, and the rest of the listing from it.
  for (size_t i : {at.size() / 2, size_t{5}, at.size() - 1, at.size() / 3, size_t{0}}) {
    ::seekdir(d, at[i].first);
    const dirent* e = ::readdir(d);
    ASSERT_NE(e, nullptr) << "at " << i;
    EXPECT_EQ(std::string(e->d_name), at[i].second) << "at " << i;
    size_t rest = 1;
    while (::readdir(d)) rest++;
    EXPECT_EQ(rest, at.size() - i) << "from " << i;
  }
  // A file made through the view after the listing shows after a rewind, one removed does not.
  write_file(view_ + "/big/new-after-the-listing", "");
  ASSERT_EQ(sys(::unlink((view_ + "/big/" + name_of(7)).c_str())), kOk);
  ::rewinddir(d);
  const auto names = drain(d);
  ::closedir(d);
  auto want = expected(kFiles);
  want.erase(name_of(7));
  want.insert("new-after-the-listing");
  EXPECT_EQ(repeated(names), std::vector<std::string>{});
  EXPECT_EQ(std::set<std::string>(names.begin(), names.end()), want);
}

// Files made and removed through the view while it is listed again and again: every listing
// names each file that stays exactly once, and nothing that never was there.
TEST_P(DirStreams, ListingsWhileEntriesComeAndGoNameEveryStayingFileOnce) {
  constexpr int kStay = 600;
  fill(disk_ + "/busy", kStay);
  std::atomic<bool> stop{false};
  std::atomic<int> churned{0};
  std::thread churn([&] {
    for (int i = 0; !stop; ++i) {
      const std::string p = view_ + "/busy/churn-" + std::to_string(i % 50);
      if (i % 100 < 50) {
        int fd = ::open(p.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
        if (fd >= 0) ::close(fd);
      } else {
        ::unlink(p.c_str());
      }
      churned++;
    }
  });
  const auto stay = expected(kStay);
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  int listings = 0;
  while (std::chrono::steady_clock::now() < until || listings < 5) {
    DIR* d = ::opendir((view_ + "/busy").c_str());
    ASSERT_NE(d, nullptr);
    const auto names = drain(d);
    ::closedir(d);
    listings++;
    EXPECT_EQ(repeated(names), std::vector<std::string>{}) << "listing " << listings;
    std::set<std::string> got(names.begin(), names.end());
    for (const auto& n : stay) {
      if (!got.count(n)) ADD_FAILURE() << "listing " << listings << " misses " << n;
    }
    for (const auto& n : got) {
      if (!stay.count(n) && n.rfind("churn-", 0) != 0) ADD_FAILURE() << "listing " << listings << ": " << n;
    }
    if (HasFailure()) break;
  }
  stop = true;
  churn.join();
  EXPECT_GT(churned.load(), 0);
}

// A create-only view lists only what its app made, however the listing is read.
TEST_P(DirStreams, ACreateOnlyViewListsOnlyItsAppsFiles) {
  const std::string backing = m_.storage() + "/drop";
  fill(backing, 300);  // the host's: not the app's
  policy::ViewSpecs views{m_.shared_view("owner", "drop", backing, policy::Access::read_write),
                          m_.shared_view("app", "drop", backing, policy::Access::create_only)};
  m_.set_views(views);
  const std::string app = m_.path(views[1]);
  for (int i = 0; i < 40; ++i) write_file(app + "/mine-" + std::to_string(i), "");
  std::set<std::string> mine;
  for (int i = 0; i < 40; ++i) mine.insert("mine-" + std::to_string(i));
  for (bool with_stat : {false, true}) {
    DIR* d = ::opendir(app.c_str());
    ASSERT_NE(d, nullptr);
    std::vector<std::string> names;
    while (const dirent* e = ::readdir(d)) {
      const std::string n = e->d_name;
      if (n == "." || n == "..") continue;
      names.push_back(n);
      struct stat st {};
      if (with_stat) {
        EXPECT_EQ(sys(::fstatat(::dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW)), kOk) << n;
      }
    }
    ::closedir(d);
    EXPECT_EQ(std::set<std::string>(names.begin(), names.end()), mine) << (with_stat ? "ls -l" : "ls");
    EXPECT_EQ(names.size(), mine.size());
  }
}

INSTANTIATE_TEST_SUITE_P(Both, DirStreams, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& p) { return p.param ? "KeptStreams" : "KernelCache"; });

// ---- Options::dir_streams alone ----

// The daemon's open streams of the backing directory `disk` (the daemon runs in this process):
// its fds there that are not O_PATH (an inode's own fd is).
size_t fds_on(const std::string& disk) {
  size_t n = 0;
  for (const auto& e : fs::directory_iterator("/proc/self/fd")) {
    std::error_code ec;
    if (fs::read_symlink(e.path(), ec) != disk) continue;
    const std::string info = read_file("/proc/self/fdinfo/" + e.path().filename().string());
    const auto at = info.find("flags:");
    if (at == std::string::npos) continue;
    const unsigned long flags = std::stoul(info.substr(at + 6), nullptr, 8);
    if (!(flags & O_PATH)) n++;
  }
  return n;
}

// A listing's stream on the backing directory is opened at its first READDIR, kept while the
// listing is read (no open per READDIR), and closed at its end, before the directory is.
TEST(DirStreamsOn, AListingKeepsItsStreamOpenUntilItsEnd) {
  MountedFs m{options_with(true)};
  PORTALFS_REQUIRE_MOUNT(m);
  const std::string v = m.add_view("a", ViewKind::data, "d");
  const std::string disk = m.views().back().backing + "/big";
  fs::create_directories(disk);
  for (int i = 0; i < kFiles; ++i) write_file(disk + "/" + name_of(i), "");
  DIR* d = ::opendir((v + "/big").c_str());
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(fds_on(disk), 0u) << "opened before the first READDIR";
  size_t n = 0;
  for (; n < kFiles / 2; ++n) ASSERT_NE(::readdir(d), nullptr);
  EXPECT_EQ(fds_on(disk), 1u) << "the stream is not kept from one READDIR to the next";
  while (::readdir(d)) n++;
  EXPECT_EQ(n, static_cast<size_t>(kFiles) + 2);
  EXPECT_EQ(fds_on(disk), 0u) << "the stream outlives its listing";
  ::closedir(d);
}

// A kept stream is one more daemon fd, counted in its app's open files: past the share, a
// listing is read with a fresh open per READDIR, and is as complete.
TEST(DirStreamsOn, PastItsOpenFileShareAnAppsListingsAreStillComplete) {
  fuse::Options options = options_with(true);
  options.open_files_per_app = 2;
  MountedFs m{options};
  PORTALFS_REQUIRE_MOUNT(m);
  const std::string v = m.add_view("a", ViewKind::data, "d");
  const std::string disk = m.views().back().backing;
  constexpr int kEach = kFiles / 3;
  std::vector<DIR*> dirs;
  std::vector<std::vector<std::string>> names(4);
  for (size_t k = 0; k < 4; ++k) {
    const std::string sub = "d" + std::to_string(k);
    fs::create_directories(disk + "/" + sub);
    for (int i = 0; i < kEach; ++i) write_file(disk + "/" + sub + "/" + name_of(i), "");
    dirs.push_back(::opendir((v + "/" + sub).c_str()));
    ASSERT_NE(dirs.back(), nullptr);
    const dirent* e = ::readdir(dirs.back());
    ASSERT_NE(e, nullptr);
    const std::string first = e->d_name;
    if (first != "." && first != "..") names[k].push_back(first);
  }
  size_t kept = 0;
  for (size_t k = 0; k < 4; ++k) kept += fds_on(disk + "/d" + std::to_string(k));
  EXPECT_EQ(kept, 2u) << "kept streams beyond the app's share of 2";
  for (size_t k = 0; k < 4; ++k) {
    for (auto& n : drain(dirs[k])) names[k].push_back(std::move(n));
    ::closedir(dirs[k]);
    EXPECT_EQ(repeated(names[k]), std::vector<std::string>{}) << "d" << k;
    EXPECT_EQ(std::set<std::string>(names[k].begin(), names[k].end()), expected(kEach)) << "d" << k;
  }
}

// The kernel serves a listing from its cache only for half the entry timeout (1 s here) after
// the last one read from the disk began: right after a listing, another opens no stream; later,
// the listing is read again, and shows a file made on the disk behind the daemon's back. Without
// dir_streams a cached listing is served until the directory's new mtime is seen.
TEST(DirStreamsOn, AListingIsServedFromTheCacheOnlyWhileItsEntriesAreFresh) {
  MountedFs m{options_with(true)};
  PORTALFS_REQUIRE_MOUNT(m);
  const std::string v = m.add_view("a", ViewKind::data, "d");
  const std::string disk = m.views().back().backing + "/sub";
  fs::create_directories(disk);
  write_file(disk + "/one", "");
  EXPECT_EQ(list_dir(v + "/sub"), (std::vector<std::string>{".", "..", "one"}));
  DIR* d = ::opendir((v + "/sub").c_str());
  ASSERT_NE(d, nullptr);
  ASSERT_NE(::readdir(d), nullptr);
  EXPECT_EQ(fds_on(disk), 0u) << "a listing right after another was read from the disk";
  ::closedir(d);
  write_file(disk + "/two", "");
  std::this_thread::sleep_for(std::chrono::milliseconds(600));
  d = ::opendir((v + "/sub").c_str());
  ASSERT_NE(d, nullptr);
  ASSERT_NE(::readdir(d), nullptr);
  EXPECT_EQ(fds_on(disk), 1u) << "a listing past half the entry timeout was served from the cache";
  ::closedir(d);
  EXPECT_EQ(list_dir(v + "/sub"), (std::vector<std::string>{".", "..", "one", "two"}));
}

}  // namespace
}  // namespace portalfs::testutil
