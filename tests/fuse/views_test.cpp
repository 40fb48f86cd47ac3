// SPDX-License-Identifier: MIT
// ViewRegistry::set on real directories: a change of one app's views leaves every other view
// the very same object (no allocation, no re-open, nothing retired), and replaces only what
// changed.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "fuse/views.hpp"
#include "tests/fuse/view_spec.hpp"
#include "tests/testutil/temp_dir.hpp"

namespace portalfs::fuse {
namespace {

using policy::Access;
using policy::GrantKind;

class ViewsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* d : {"alpha/docs", "beta/docs", "media"}) std::filesystem::create_directories(storage_ / d);
  }
  policy::ViewSpec spec(const std::string& app, GrantKind kind, const std::string& name,
                        const std::string& backing, Access access) {
    return testing::view_spec(storage_.path(), app, kind, name, backing, access);
  }
  // The served view of app/kind/name now (nullptr: none).
  const View* view(const std::string& app, const std::string& kind, const std::string& name) {
    const auto layout = registry_.layout();
    const auto dir = layout->dirs.find("apps/" + app + "/" + kind);
    if (dir == layout->dirs.end()) return nullptr;
    const auto it = dir->second.views.find(name);
    return it == dir->second.views.end() ? nullptr : registry_.get(it->second);
  }
  testutil::TempDir storage_{"views"};
  ViewRegistry registry_;
};

TEST_F(ViewsTest, AChangeOfOneAppLeavesTheOtherViewsTheSameObjects) {
  policy::ViewSpecs specs = {spec("alpha", GrantKind::data, "docs", "alpha/docs", Access::read_write),
                             spec("alpha", GrantKind::shared, "media", "media", Access::read_write),
                             spec("beta", GrantKind::data, "docs", "beta/docs", Access::read_write),
                             spec("beta", GrantKind::shared, "media", "media", Access::read)};
  std::vector<std::string> errors;
  registry_.set(specs, {}, &errors);
  ASSERT_TRUE(errors.empty());
  const View* alpha_docs = view("alpha", "data", "docs");
  const View* alpha_media = view("alpha", "shared", "media");
  const View* beta_media = view("beta", "shared", "media");
  ASSERT_TRUE(alpha_docs && alpha_media && beta_media);

  specs[3].access = Access::read_write;  // beta's share turns read-write
  const auto change = registry_.set(specs, {}, &errors);
  ASSERT_TRUE(errors.empty());
  EXPECT_EQ(view("alpha", "data", "docs"), alpha_docs);
  EXPECT_EQ(view("alpha", "shared", "media"), alpha_media);
  const View* beta_now = view("beta", "shared", "media");
  ASSERT_NE(beta_now, nullptr);
  EXPECT_NE(beta_now, beta_media);
  EXPECT_EQ(beta_now->spec.access, Access::read_write);
  EXPECT_EQ(change.changed, std::vector<ViewId>{beta_now->id});
  EXPECT_TRUE(change.removed.empty());

  specs.erase(specs.begin() + 2);  // beta's data dir goes
  registry_.set(specs, {}, &errors);
  EXPECT_EQ(view("beta", "data", "docs"), nullptr);
  EXPECT_EQ(view("alpha", "data", "docs"), alpha_docs);
  EXPECT_EQ(view("beta", "shared", "media"), beta_now);
}

}  // namespace
}  // namespace portalfs::fuse
