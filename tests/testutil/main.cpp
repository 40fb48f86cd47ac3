// SPDX-License-Identifier: MIT
// The gtest main shared by every test binary.
#include <gmock/gmock.h>

#include "common/log.hpp"

int main(int argc, char** argv) {
  ::testing::InitGoogleMock(&argc, argv);
  portalfs::common::set_log_level(portalfs::common::LogLevel::warn);
  return RUN_ALL_TESTS();
}
