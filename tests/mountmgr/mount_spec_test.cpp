// SPDX-License-Identifier: MIT
// Golden outputs: docker / oci / json mount specs (parents first), the Dokku-compatible storage
// reports, and the views derived from an app record.

#include "mountmgr/mount_spec.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdexcept>

#include "mountmgr/report.hpp"
#include "mountmgr/views.hpp"

namespace portalfs::mountmgr {
namespace {

using policy::Access;
using policy::GrantKind;

constexpr auto kMnt = "/run/portalfs/fs";

// Given out of order on purpose: the rendering must put parents first.
AppRecord files_app() {
  AppRecord app;
  app.version = "1.0";
  app.grants = {{GrantKind::data, "data/documents", "/data/documents", Access::read_write, std::nullopt},
                {GrantKind::shared, "own_media", "/data/media", Access::read, std::nullopt},
                {GrantKind::data, "data", "/data", Access::read_write, policy::Owner{1000, 1000}}};
  app.storage_mounts = {{"/srv/music", "/music", true}};
  return app;
}

std::vector<MountEntry> files_entries() { return mount_entries(kMnt, "files", effective_grants(files_app())); }

TEST(MountSpecTest, Docker) {
  EXPECT_EQ(render_mounts(files_entries(), MountStyle::docker),
            "-v /run/portalfs/fs/apps/files/data/data:/data\n"
            "-v /run/portalfs/fs/apps/files/data/data%2Fdocuments:/data/documents\n"
            "-v /run/portalfs/fs/apps/files/shared/own_media:/data/media:ro\n"
            "-v /run/portalfs/fs/apps/files/host/%2Fsrv%2Fmusic:/music:ro\n");
}

TEST(MountSpecTest, Oci) {
  EXPECT_EQ(render_mounts(files_entries(), MountStyle::oci), R"([
  {
    "destination": "/data",
    "options": [
      "rbind",
      "nosuid",
      "nodev",
      "rw"
    ],
    "source": "/run/portalfs/fs/apps/files/data/data",
    "type": "bind"
  },
  {
    "destination": "/data/documents",
    "options": [
      "rbind",
      "nosuid",
      "nodev",
      "rw"
    ],
    "source": "/run/portalfs/fs/apps/files/data/data%2Fdocuments",
    "type": "bind"
  },
  {
    "destination": "/data/media",
    "options": [
      "rbind",
      "nosuid",
      "nodev",
      "ro"
    ],
    "source": "/run/portalfs/fs/apps/files/shared/own_media",
    "type": "bind"
  },
  {
    "destination": "/music",
    "options": [
      "rbind",
      "nosuid",
      "nodev",
      "ro"
    ],
    "source": "/run/portalfs/fs/apps/files/host/%2Fsrv%2Fmusic",
    "type": "bind"
  }
]
)");
}

TEST(MountSpecTest, Json) {
  const auto out = nlohmann::json::parse(render_mounts(files_entries(), MountStyle::json));
  const auto expected = nlohmann::json::parse(R"([
    {"app": "files", "kind": "data", "name": "data", "host_path": "/run/portalfs/fs/apps/files/data/data",
     "container_path": "/data", "access": "read-write"},
    {"app": "files", "kind": "data", "name": "data/documents",
     "host_path": "/run/portalfs/fs/apps/files/data/data%2Fdocuments", "container_path": "/data/documents",
     "access": "read-write"},
    {"app": "files", "kind": "shared", "name": "own_media", "host_path": "/run/portalfs/fs/apps/files/shared/own_media",
     "container_path": "/data/media", "access": "read"},
    {"app": "files", "kind": "host", "name": "/srv/music", "host_path": "/run/portalfs/fs/apps/files/host/%2Fsrv%2Fmusic",
     "container_path": "/music", "access": "read"}])");
  EXPECT_EQ(out, expected);
  EXPECT_TRUE(render_mounts(files_entries(), MountStyle::json).ends_with("]\n"));
}

TEST(MountSpecTest, EmptyAndStyles) {
  EXPECT_EQ(render_mounts({}, MountStyle::docker), "");
  EXPECT_EQ(render_mounts({}, MountStyle::oci), "[]\n");
  EXPECT_EQ(render_mounts({}, MountStyle::json), "[]\n");
  EXPECT_EQ(parse_mount_style("oci"), MountStyle::oci);
  EXPECT_FALSE(parse_mount_style("podman"));
}

TEST(MountSpecTest, DockerRefusesAColon) {
  AppRecord app;
  app.grants = {{GrantKind::data, "a:b", "/a:b", Access::read_write, std::nullopt}};
  EXPECT_THROW(render_mounts(mount_entries(kMnt, "x", effective_grants(app)), MountStyle::docker), std::invalid_argument);
  EXPECT_NO_THROW(render_mounts(mount_entries(kMnt, "x", effective_grants(app)), MountStyle::oci));
}

// "/x --privileged" printed as "-v SRC:/x --privileged" would become an option of
// `docker run $(portalctl mounts APP)`.
TEST(MountSpecTest, DockerRefusesWhitespace) {
  for (const char* path : {"/x --privileged", "/x\t--privileged", "/My Documents"}) {
    AppRecord app;
    app.grants = {{GrantKind::data, "d", path, Access::read_write, std::nullopt}};
    const auto entries = mount_entries(kMnt, "x", effective_grants(app));
    EXPECT_THROW(render_mounts(entries, MountStyle::docker), std::invalid_argument) << path;
    EXPECT_NO_THROW(render_mounts(entries, MountStyle::oci)) << path;
  }
}

TEST(MountOrderTest, ParentsFirstSegmentWise) {
  AppRecord app;
  for (const auto* p : {"/data-old", "/data/x", "/b", "/data", "/data/x/y"}) {
    app.grants.push_back({GrantKind::data, std::string(p).substr(1), p, Access::read_write, std::nullopt});
  }
  std::vector<std::string> order;
  for (const auto& g : effective_grants(app)) order.push_back(g.container_path);
  EXPECT_EQ(order, (std::vector<std::string>{"/b", "/data", "/data/x", "/data/x/y", "/data-old"}));
}

TEST(EffectiveGrantsTest, AdminGrantsAndRevokes) {
  AppRecord app;
  app.grants = {{GrantKind::data, "data", "/data", Access::read_write, std::nullopt},
                {GrantKind::shared, "music", "/music", Access::read_write, policy::Owner{1, 1}},
                {GrantKind::shared, "own_media", "/media", Access::read, std::nullopt}};
  app.admin_grants = {{GrantKind::shared, "music", "/music", Access::read, policy::Owner{1, 1}},
                      {GrantKind::shared, "own_documents", "/docs", Access::read, std::nullopt}};
  app.revoked = {"own_media"};
  const auto grants = effective_grants(app);
  ASSERT_EQ(grants.size(), 3u);
  EXPECT_EQ(grants[0].container_path, "/data");
  EXPECT_EQ(grants[1].container_path, "/docs");
  EXPECT_EQ(grants[2].name, "music");
  EXPECT_EQ(grants[2].access, Access::read);
}

TEST(ViewsTest, MapsAndSquash) {
  State state = fresh_state();
  state.shares["music"] = {500, 600};
  AppRecord app;
  app.uid_maps = {{0, 100000, 65536}};
  app.gid_maps = {{0, 200000, 65536}};
  app.grants = {{GrantKind::data, "data", "/data", Access::read_write, policy::Owner{1000, 1000}},
                {GrantKind::shared, "music", "/music", Access::read, policy::Owner{1000, 1001}},
                {GrantKind::shared, "own_media", "/media", Access::read_write, std::nullopt}};
  app.storage_mounts = {{"/srv/x", "/x", false}};
  state.apps["nav"] = app;
  const auto views = build_views(state, "/st");
  ASSERT_EQ(views.size(), 4u);

  EXPECT_EQ(views[0].backing, "/st/apps/nav/data");
  EXPECT_EQ(views[0].kind, GrantKind::data);
  EXPECT_EQ(views[0].dir_name, "data");
  EXPECT_FALSE(views[0].ids.squash);  // a data grant's owner is only its directory's owner
  EXPECT_EQ(views[0].ids.uids.to_host(1000), 101000u);

  EXPECT_EQ(views[1].backing, "/st/shared/own_media");
  // A read-write share without an owner is presented as the app's known user, the data dir's
  // owner 1000:1000 (#11), and stores new files as the share's owner 0:0.
  ASSERT_TRUE(views[1].ids.squash);
  EXPECT_EQ(*views[1].ids.squash, (policy::Squash{0, 0, 101000, 201000}));

  EXPECT_EQ(views[2].backing, "/st/shared/music");
  EXPECT_EQ(views[2].access, Access::read);
  ASSERT_TRUE(views[2].ids.squash);
  EXPECT_EQ(*views[2].ids.squash, (policy::Squash{500, 600, 101000, 201001}));

  EXPECT_EQ(views[3].kind, GrantKind::host);
  EXPECT_EQ(views[3].backing, "/srv/x");
  EXPECT_EQ(views[3].dir_name, "%2Fsrv%2Fx");

  const auto binds = app_binds("/mnt", "nav", app);
  ASSERT_EQ(binds.size(), 4u);
  EXPECT_EQ(binds[2], (Bind{"/mnt/apps/nav/shared/music", "/music", true}));
  EXPECT_EQ(detach_targets(binds), (std::vector<std::string>{"/x", "/music", "/media", "/data"}));
}

std::vector<StorageEntry> report_entries() {
  return {{"/run/portalfs/fs/apps/web/data/data", "/data", false}, {"/srv/assets", "/app/assets", true}};
}

TEST(ReportTest, StorageList) {
  EXPECT_EQ(render_storage_list(report_entries(), false),
            "/run/portalfs/fs/apps/web/data/data:/data\n"
            "/srv/assets:/app/assets:ro\n");
  EXPECT_EQ(nlohmann::json::parse(render_storage_list(report_entries(), true)), nlohmann::json::parse(R"([
    {"host_path": "/run/portalfs/fs/apps/web/data/data", "container_path": "/data", "volume_options": ""},
    {"host_path": "/srv/assets", "container_path": "/app/assets", "volume_options": "ro"}])"));
}

TEST(ReportTest, StorageReportInDokkusLayout) {
  const std::vector<std::pair<std::string, std::vector<StorageEntry>>> apps = {{"web", report_entries()}, {"empty", {}}};
  EXPECT_EQ(render_storage_report(apps, std::nullopt, false),
            "=====> web storage information\n"
            "       Storage build mounts:\n"
            "       Storage deploy mounts:         -v /run/portalfs/fs/apps/web/data/data:/data -v /srv/assets:/app/assets:ro\n"
            "       Storage run mounts:            -v /run/portalfs/fs/apps/web/data/data:/data -v /srv/assets:/app/assets:ro\n"
            "=====> empty storage information\n"
            "       Storage build mounts:\n"
            "       Storage deploy mounts:\n"
            "       Storage run mounts:\n");
  EXPECT_EQ(render_storage_report(apps, Phase::deploy, false),
            "-v /run/portalfs/fs/apps/web/data/data:/data -v /srv/assets:/app/assets:ro\n\n");
  const auto json = nlohmann::json::parse(render_storage_report({{"web", report_entries()}}, Phase::run, true));
  EXPECT_EQ(json, nlohmann::json::parse(R"([{"app": "web", "storage_run_mounts":
      ["-v /run/portalfs/fs/apps/web/data/data:/data", "-v /srv/assets:/app/assets:ro"]}])"));
}

TEST(ReportTest, EnsureDirectoryAndPresets) {
  EXPECT_EQ(render_ensure_directory("/st/storage/cache", policy::Owner{32767, 32767}, false),
            "-----> Ensuring /st/storage/cache exists\n"
            "       Setting directory ownership to 32767:32767\n"
            "       Directory ready for mounting\n");
  EXPECT_EQ(render_ensure_directory("/st/storage/cache", std::nullopt, false),
            "-----> Ensuring /st/storage/cache exists\n"
            "       Directory ready for mounting\n");
  EXPECT_EQ(parse_chown_preset("herokuish"), (ChownPreset{true, {32767, 32767}}));
  EXPECT_EQ(parse_chown_preset("heroku"), (ChownPreset{true, {1000, 1000}}));
  EXPECT_EQ(parse_chown_preset("packeto"), (ChownPreset{true, {2000, 2000}}));
  EXPECT_FALSE(parse_chown_preset("false")->chown);
  EXPECT_FALSE(parse_chown_preset("root"));
  EXPECT_NO_THROW(check_storage_dir_name("n8n_apk-cache.1"));
  EXPECT_THROW(check_storage_dir_name("../x"), std::invalid_argument);
  EXPECT_THROW(check_storage_dir_name(".hidden"), std::invalid_argument);
  EXPECT_THROW(check_storage_dir_name(""), std::invalid_argument);
}

}  // namespace
}  // namespace portalfs::mountmgr
