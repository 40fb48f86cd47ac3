// SPDX-License-Identifier: MIT
// The device record (fuse/device_nodes.hpp): what is read back from a backing file is
// untrusted, so anything but a well-formed record is no device.
#include "fuse/device_nodes.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

namespace portalfs::fuse::device_nodes {
namespace {

TEST(DeviceRecord, RoundTripsCharacterAndBlockDevices) {
  for (const Device d : {Device{S_IFCHR, makedev(1, 3)}, Device{S_IFBLK, makedev(259, 1048575)},
                         Device{S_IFCHR, makedev(0, 0)}, Device{S_IFBLK, makedev(4095, 0)}}) {
    auto back = decode(encode(d));
    ASSERT_TRUE(back) << encode(d);
    EXPECT_EQ(back->type, d.type);
    EXPECT_EQ(back->rdev, d.rdev);
  }
  EXPECT_EQ(encode(Device{S_IFCHR, makedev(1, 3)}), "c 1:3");
  EXPECT_EQ(encode(Device{S_IFBLK, makedev(8, 16)}), "b 8:16");
}

TEST(DeviceRecord, AnythingElseIsNoDevice) {
  for (const char* bad : {"", "c", "c 1", "c 1:", "c :3", "x 1:3", "p 1:3", "c1:3", "c  1:3",
                          "c 1:3 ", "c -1:3", "c 1:-3", "c 4096:0", "c 0:1048576", "c 1:3\n",
                          "c 0x1:3", "c 99999999999999999999:1", "d 1:3"}) {
    EXPECT_FALSE(decode(bad)) << '"' << bad << '"';
  }
}

TEST(DeviceRecord, OnlyAnEmptyRegularFileWithTheMarkerIsACandidate) {
  struct stat st {};
  st.st_mode = S_IFREG | S_ISGID | 0644;
  st.st_size = 0;
  EXPECT_TRUE(may_be_device(st));
  st.st_size = 1;
  EXPECT_FALSE(may_be_device(st));
  st.st_size = 0;
  st.st_mode = S_IFREG | 0644;
  EXPECT_FALSE(may_be_device(st));
  st.st_mode = S_IFDIR | S_ISGID | 0755;
  EXPECT_FALSE(may_be_device(st));
  st.st_mode = S_IFCHR | S_ISGID | 0644;  // a real device node on disk is never "emulated"
  EXPECT_FALSE(may_be_device(st));
}

}  // namespace
}  // namespace portalfs::fuse::device_nodes
