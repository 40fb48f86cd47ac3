// SPDX-License-Identifier: MIT
// portalctl quota set|clear and usage: what they send, and the one-line refusals of bad input
// (the daemon's side: tests/mountmgr/quota_test.cpp).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tools/options.hpp"

namespace portalfs::tools {
namespace {

using ::testing::HasSubstr;

std::string ctl_error(const std::vector<std::string>& args) {
  try {
    (void)parse_ctl_command(args);
  } catch (const UsageError& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a UsageError";
  return "";
}

TEST(QuotaVerbs, SendTheSizeInBytes) {
  auto set = parse_ctl_command({"quota", "set", "notes", "10G", "--inodes", "1000"});
  EXPECT_EQ(set.verb, "quota.set");
  EXPECT_EQ(set.args, (nlohmann::json{{"target", "notes"}, {"bytes", uint64_t{10} << 30}, {"inodes", 1000}}));
  EXPECT_EQ(parse_ctl_command({"quota", "set", "shared/docs", "1048576"}).args,
            (nlohmann::json{{"target", "shared/docs"}, {"bytes", 1048576}}));
  auto clear = parse_ctl_command({"quota", "clear", "notes"});
  EXPECT_EQ(clear.verb, "quota.clear");
  EXPECT_EQ(clear.args, (nlohmann::json{{"target", "notes"}}));
  auto all = parse_ctl_command({"usage", "--format", "json"});
  EXPECT_EQ(all.verb, "usage");
  EXPECT_EQ(all.args, nlohmann::json::object());
  EXPECT_EQ(all.format, OutputFormat::json);
  EXPECT_EQ(parse_ctl_command({"usage", "notes"}).args, (nlohmann::json{{"target", "notes"}}));
}

TEST(QuotaVerbs, BadInputIsOneLine) {
  EXPECT_EQ(ctl_error({"quota", "set", "notes", "10X"}),
            "portalctl: quota set: SIZE: expected a size like 10G, 500M, 64K or 1048576 (bytes), at least 1 and at "
            "most 1024P, got \"10X\"; see portalctl --help");
  EXPECT_EQ(ctl_error({"quota", "set", "notes", "-1"}), "portalctl: quota set: unrecognised option '-1'; see portalctl --help");
  EXPECT_THAT(ctl_error({"quota", "set", "notes", "1.5G"}), HasSubstr("SIZE: expected a size"));
  EXPECT_EQ(ctl_error({"quota", "set", "notes", "1G", "--inodes", "0"}),
            "portalctl: quota set: --inodes: expected a positive number of files and directories, got \"0\"; see "
            "portalctl --help");
  EXPECT_THAT(ctl_error({"quota", "set", "notes"}), HasSubstr("SIZE"));
  EXPECT_THAT(ctl_error({"quota"}), HasSubstr("set or clear"));
  EXPECT_THAT(ctl_error({"usage", "a", "b"}), HasSubstr("\"b\""));
}

}  // namespace
}  // namespace portalfs::tools
