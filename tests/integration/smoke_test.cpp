// SPDX-License-Identifier: MIT
// First contact: a data view mounted in-process serves a file both ways.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include "tests/integration/mounted_fs.hpp"

namespace portalfs::testutil {
namespace {

TEST(Smoke, WriteThroughViewLandsOnDisk) {
  MountedFs m;
  PORTALFS_REQUIRE_MOUNT(m);
  std::string v = m.add_view("app1", ViewKind::data, "data");
  write_file(v + "/hello.txt", "hello\n");
  EXPECT_EQ(read_file(m.storage() + "/app1-data/hello.txt"), "hello\n");
  EXPECT_EQ(read_file(v + "/hello.txt"), "hello\n");
  struct stat st {};
  ASSERT_EQ(::stat((m.mountpoint() + "/apps/app1/data").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0555u);
}

}  // namespace
}  // namespace portalfs::testutil
