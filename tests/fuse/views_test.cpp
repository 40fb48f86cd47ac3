// SPDX-License-Identifier: MIT
// ViewRegistry::set on real directories: a change of one app's views leaves every other view
// the very same object (no allocation, no re-open, nothing retired), and replaces only what
// changed.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <random>
#include <set>
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
    const SynthDir* dir = layout->find("apps/" + app + "/" + kind);
    if (!dir) return nullptr;
    const auto it = dir->views.find(name);
    return it == dir->views.end() ? nullptr : registry_.get(it->second);
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

TEST_F(ViewsTest, AnUpdateOfOneAppReplacesOnlyItsViewsAndDirs) {
  policy::ViewSpecs alpha = {spec("alpha", GrantKind::data, "docs", "alpha/docs", Access::read_write),
                             spec("alpha", GrantKind::shared, "media", "media", Access::read_write)};
  policy::ViewSpecs beta = {spec("beta", GrantKind::data, "docs", "beta/docs", Access::read_write)};
  policy::ViewSpecs all = alpha;
  all.insert(all.end(), beta.begin(), beta.end());
  std::vector<std::string> errors;
  registry_.set(all, {}, &errors);
  ASSERT_TRUE(errors.empty());
  const View* alpha_docs = view("alpha", "data", "docs");
  const View* alpha_media = view("alpha", "shared", "media");
  const auto before = registry_.layout();

  // beta is granted the share: only beta's views and dirs are rebuilt.
  beta.push_back(spec("beta", GrantKind::shared, "media", "media", Access::read));
  const auto change = registry_.update({"beta"}, beta, {}, &errors);
  ASSERT_TRUE(errors.empty());
  const auto after = registry_.layout();
  EXPECT_EQ(view("alpha", "data", "docs"), alpha_docs);
  EXPECT_EQ(view("alpha", "shared", "media"), alpha_media);
  const View* beta_media = view("beta", "shared", "media");
  ASSERT_NE(beta_media, nullptr);
  EXPECT_EQ(change.added, std::vector<ViewId>{beta_media->id});  // beta's docs view is kept
  EXPECT_TRUE(change.removed.empty());
  EXPECT_EQ(change.dirs, (std::vector<std::string>{"apps/beta", "apps/beta/shared"}));
  // The dirs of alpha, and apps/ (no app came or went), are the very same objects.
  for (const char* path : {"apps", "apps/alpha", "apps/alpha/data", "apps/alpha/shared"}) {
    EXPECT_EQ(before->find(path), after->find(path)) << path;
  }
  // The share's root fd is the one alpha's view opened.
  EXPECT_EQ(beta_media->root, alpha_media->root);

  // beta goes: its dirs and its name in apps/ go with it, alpha's stay.
  const auto gone = registry_.update({"beta"}, {}, {}, &errors);
  EXPECT_EQ(view("beta", "data", "docs"), nullptr);
  EXPECT_EQ(registry_.layout()->find("apps/beta"), nullptr);
  EXPECT_EQ(registry_.layout()->find("apps")->subdirs, std::vector<std::string>{"alpha"});
  EXPECT_EQ(gone.removed.size(), 2u);
  EXPECT_EQ(view("alpha", "data", "docs"), alpha_docs);

  // A view of an app the update is not about is refused, not served.
  registry_.update({"alpha"}, {spec("beta", GrantKind::data, "docs", "beta/docs", Access::read)}, {}, &errors);
  EXPECT_EQ(errors.size(), 1u);
  EXPECT_EQ(view("beta", "data", "docs"), nullptr);
}

// The layout is kept in shards by app: an update of one app copies its shard alone (and shard 0,
// which holds apps/, when an app comes or goes); every other shard is the very same object, so a
// change costs the same whatever the number of apps served (the map of every dir was copied).
TEST_F(ViewsTest, AnUpdateOfOneAppCopiesOnlyItsShardOfTheLayout) {
  std::vector<std::string> apps;
  policy::ViewSpecs all;
  for (int i = 0; i < 40; ++i) {
    apps.push_back("app" + std::to_string(i));
    std::filesystem::create_directories(storage_ / apps.back());
    all.push_back(spec(apps.back(), GrantKind::data, "docs", apps.back(), Access::read_write));
  }
  std::vector<std::string> errors;
  registry_.set(all, {}, &errors);
  ASSERT_TRUE(errors.empty());
  // app7 is granted the share: its shard is copied, no other.
  const std::size_t mine = LayoutDirs::shard_of("apps/app7");
  ASSERT_EQ(LayoutDirs::shard_of("apps/app7/shared"), mine);
  ASSERT_NE(mine, LayoutDirs::shard_of("apps")) << "pick another app: this one shares shard 0";
  const auto before = registry_.layout();
  registry_.update({"app7"}, {all[7], spec("app7", GrantKind::shared, "media", "media", Access::read)}, {}, &errors);
  ASSERT_TRUE(errors.empty());
  const auto after = registry_.layout();
  ASSERT_NE(after->find("apps/app7/shared"), nullptr);
  for (std::size_t i = 0; i < LayoutDirs::kShards; ++i) {
    EXPECT_EQ(before->dirs.shards[i] == after->dirs.shards[i], i != mine) << "shard " << i;
  }
  // Every dir is still found, and walked once.
  std::size_t walked = 0;
  for (const auto& [path, dir] : after->dirs) {
    EXPECT_EQ(after->find(path), dir.get()) << path;
    ++walked;
  }
  EXPECT_EQ(walked, 2 + 40 * 2 + 1u);  // "", apps/, apps/<app> and apps/<app>/data, apps/app7/shared

  // An app going takes its shard's dirs and its name in apps/ (shard 0) with it.
  registry_.update({"app7"}, {}, {}, &errors);
  const auto gone = registry_.layout();
  EXPECT_EQ(gone->find("apps/app7"), nullptr);
  EXPECT_EQ(gone->find("apps/app7/data"), nullptr);
  EXPECT_EQ(gone->find("apps")->subdirs.size(), 39u);
  for (std::size_t i = 0; i < LayoutDirs::kShards; ++i) {
    if (i == mine || i == LayoutDirs::shard_of("apps")) continue;
    EXPECT_EQ(after->dirs.shards[i], gone->dirs.shards[i]) << "shard " << i;
  }
}

// A canonical form of the synthetic tree: every dir with its inode number, subdirs, unservable
// names and views (by what they serve, not by id).
std::string describe(const ViewRegistry& registry) {
  std::string out;
  const auto layout = registry.layout();
  for (const auto& [path, dir] : layout->dirs) {
    EXPECT_EQ(dir->path, path);
    out += "[" + path + "] ino " + std::to_string(dir->ino) + " nlink-dirs";
    for (const auto& s : dir->subdirs) out += " " + s;
    out += " unservable";
    for (const auto& u : dir->unservable) out += " " + u;
    out += "\n";
    for (const auto& [name, id] : dir->views) {
      const View* v = registry.get(id);
      out += "  " + name + " -> ";
      out += v ? v->spec.app + "/" + std::string(policy::to_string(v->spec.kind)) + "/" + v->spec.dir_name + " " +
                     v->spec.backing + " " + std::string(policy::to_string(v->spec.access)) + (v->root ? "" : " no-root")
               : std::string("(none)");
      out += "\n";
    }
  }
  return out;
}

TEST_F(ViewsTest, IncrementalUpdatesGiveTheTreeAFullBuildGives) {
  // Random installs, grants, revokes, changes of access, unservable views and removals of six
  // apps, each as an update() of one app (now and then a set() of everything): after every
  // step the tree, and every view served, equal those of a registry built from scratch.
  std::mt19937 rng(20261207);
  const std::vector<std::string> apps = {"a", "b", "ab", "b0", "c", "c-d"};  // prefixes of each other
  const std::vector<std::string> shares = {"media", "docs", "missing"};     // "missing" is unservable
  std::filesystem::create_directories(storage_ / "docs");
  for (const auto& app : apps) {
    for (const char* d : {"data", "config"}) std::filesystem::create_directories(storage_ / ("apps/" + app + "/" + d));
  }
  std::map<std::string, policy::ViewSpecs> current;
  const Access modes[] = {Access::read, Access::read_write};
  std::vector<std::string> errors;
  for (int step = 0; step < 300; ++step) {
    const std::string app = apps[rng() % apps.size()];
    policy::ViewSpecs mine;
    if (rng() % 5 != 0) {  // else: removed
      for (const char* d : {"data", "config"}) {
        if (rng() % 3 != 0) mine.push_back(spec(app, GrantKind::data, d, "apps/" + app + "/" + d, modes[rng() % 2]));
      }
      for (const auto& s : shares) {
        if (rng() % 2 != 0) mine.push_back(spec(app, GrantKind::shared, s, s, modes[rng() % 2]));
      }
    }
    if (mine.empty()) current.erase(app);
    else current[app] = mine;
    policy::ViewSpecs all;
    for (const auto& [name, specs] : current) all.insert(all.end(), specs.begin(), specs.end());
    if (rng() % 10 == 0) registry_.set(all, {}, &errors);
    else registry_.update({app}, mine, {}, &errors);

    ViewRegistry fresh;
    fresh.set(all, {}, &errors);
    ASSERT_EQ(describe(registry_), describe(fresh)) << "step " << step;
    // Every view that should be served is, with its spec.
    for (const auto& v : all) {
      const View* served = view(v.app, std::string(policy::to_string(v.kind)), v.dir_name);
      if (v.dir_name == "missing") {
        EXPECT_EQ(served, nullptr);
      } else {
        ASSERT_NE(served, nullptr) << v.app << " " << v.dir_name;
        EXPECT_EQ(served->spec, v);
      }
    }
  }
}

}  // namespace
}  // namespace portalfs::fuse
