// SPDX-License-Identifier: MIT
// What a view presents and who a caller creates as, per kind of view; and that fsuid
// switches stay on the calling thread.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <atomic>
#include <fstream>
#include <string>
#include <thread>

#include "fuse/attr.hpp"

namespace portalfs::fuse {
namespace {

View view_with(policy::GrantKind kind, policy::IdPolicy ids) {
  View v;
  v.spec.kind = kind;
  v.spec.ids = std::move(ids);
  return v;
}

policy::IdPolicy range_map() {
  policy::IdPolicy ids;
  ids.uids = *policy::IdMap::make({{0, 100000, 65536}});
  ids.gids = ids.uids;
  return ids;
}

struct stat backing(uid_t uid, gid_t gid, mode_t mode) {
  struct stat st {};
  st.st_uid = uid;
  st.st_gid = gid;
  st.st_mode = mode;
  return st;
}

TEST(Present, RangeMapShiftsOwnersAndOverflowsTheUnmapped) {
  auto v = view_with(policy::GrantKind::data, range_map());
  auto st = present(v, backing(1000, 1000, S_IFREG | 0644));
  EXPECT_EQ(st.st_uid, 101000u);
  EXPECT_EQ(st.st_gid, 101000u);
  st = present(v, backing(70000, 5, S_IFREG | 0644));
  EXPECT_EQ(st.st_uid, policy::kOverflowId);
  EXPECT_EQ(st.st_gid, 100005u);
}

TEST(Present, SquashShowsEveryFileAsTheAppsOwner) {
  policy::IdPolicy ids;
  ids.squash = policy::Squash{2000, 2000, 1000, 1000};
  auto v = view_with(policy::GrantKind::shared, ids);
  for (uid_t disk : {0u, 2000u, 12345u}) {
    auto st = present(v, backing(disk, disk, S_IFREG | 0600));
    EXPECT_EQ(st.st_uid, 1000u);
    EXPECT_EQ(st.st_gid, 1000u);
  }
}

// A data view shows what the emulations show (a regular file's set-id bits come from its
// record: setid_bits.hpp); a shared view never shows set-id bits.
TEST(Present, SetIdBitsShowInDataViewsOnlyAndAreSetWhereARecordCanKeepThem) {
  auto data = view_with(policy::GrantKind::data, {});
  auto shared = view_with(policy::GrantKind::shared, {});
  EXPECT_EQ(present(data, backing(0, 0, S_IFREG | 06755)).st_mode & 07777, 06755u);
  EXPECT_EQ(present(data, backing(0, 0, S_IFDIR | 06775)).st_mode & 07777, 06775u);
  EXPECT_EQ(present(shared, backing(0, 0, S_IFDIR | 06775)).st_mode & 07777, 0775u);
  EXPECT_EQ(present(shared, backing(0, 0, S_IFREG | 07755)).st_mode & 07777, 01755u);
  EXPECT_EQ(allowed_mode(shared, 06755, true), 0755u);
  EXPECT_EQ(allowed_mode(data, 07755, true), 07755u);
  EXPECT_EQ(allowed_mode(data, 07755, false), 01755u);  // no record can be kept: stripped
}

TEST(Creator, MapsTheCallerOrRefusesTheUnmapped) {
  auto v = view_with(policy::GrantKind::shared, range_map());
  auto c = creator(v, 101000, 101000);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->uid, 1000u);
  EXPECT_FALSE(creator(v, 0, 0));  // host root is outside the container's range
  EXPECT_FALSE(chown_uid(v, 5));
  EXPECT_EQ(chown_uid(v, 100033), 33u);
}

TEST(Creator, SquashStoresAsTheShareOwnerWhoeverAsks) {
  policy::IdPolicy ids;
  ids.squash = policy::Squash{2000, 2001, 1000, 1000};
  auto v = view_with(policy::GrantKind::shared, ids);
  auto c = creator(v, 4242, 4242);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->uid, 2000u);
  EXPECT_EQ(c->gid, 2001u);
  EXPECT_EQ(chown_uid(v, 1000), 2000u);  // chown to the presented owner: a no-op
  EXPECT_FALSE(chown_uid(v, 1001));
}

std::string fsuid_line() {
  std::ifstream in("/proc/thread-self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("Uid:", 0) == 0) return line.substr(line.rfind('\t') + 1);
  }
  return "";
}

TEST(FsCredsGuard, SwitchesOnlyTheCallingThread) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root";
  // The other thread exists before the switch (a new thread would copy the creator's creds).
  std::string inside, other;
  std::atomic<bool> switched{false}, read{false};
  std::thread t([&] {
    while (!switched) std::this_thread::yield();
    other = fsuid_line();
    read = true;
  });
  {
    FsCredsGuard guard(4321, 4321);
    inside = fsuid_line();
    switched = true;
    while (!read) std::this_thread::yield();
  }
  t.join();
  EXPECT_EQ(inside, "4321");
  EXPECT_EQ(other, "0");
  EXPECT_EQ(fsuid_line(), "0");  // restored
}

}  // namespace
}  // namespace portalfs::fuse
