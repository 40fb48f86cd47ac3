// SPDX-License-Identifier: MIT
// The built portalctl on compose templates: validate --compose and render (offline verbs).

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "tests/testutil/temp_dir.hpp"

namespace {

namespace fs = std::filesystem;

struct Run {
  int code = -1;
  std::string out, err;
};

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

fs::path fixtures() { return fs::path(PORTALFS_TEST_SOURCE_DIR) / "tests" / "fixtures" / "compose"; }

// Runs portalctl with stdout and stderr sent to files of `dir` (the outputs are small).
Run portalctl(const portalfs::testutil::TempDir& dir, std::vector<std::string> args) {
  const std::string binary = std::string(PORTALFS_TEST_BUILD_DIR) + "/tools/portalctl";
  const fs::path out = fs::path(dir.path()) / "stdout", err = fs::path(dir.path()) / "stderr";
  std::vector<char*> argv{const_cast<char*>(binary.c_str())};
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    if (!std::freopen(out.c_str(), "w", stdout) || !std::freopen(err.c_str(), "w", stderr)) ::_exit(126);
    ::alarm(30);  // the test's own timeout for one run
    ::execv(binary.c_str(), argv.data());
    ::_exit(127);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), slurp(out), slurp(err)};
}

TEST(ComposeCli, ValidateListsEveryVolumeOfEveryService) {
  portalfs::testutil::TempDir dir;
  const auto r = portalctl(dir, {"validate", "--compose", (fixtures() / "immich" / "docker-compose.yml.template").string()});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out,
            "immich: service immich-server: data dir upload at /usr/src/app/upload rw (as the image's user)\n"
            "immich: service immich-server: share pictures at /usr/src/app/upload/library rw (as the image's user)\n"
            "immich: service immich-machine-learning: data dir model-cache at /cache rw (as the image's user)\n"
            "immich: service redis: no volumes\n"
            "immich: service database: data dir pgdata at /var/lib/postgresql/data rw (as the image's user)\n");
}

TEST(ComposeCli, ValidateShapes) {
  portalfs::testutil::TempDir dir;
  const auto file = (fixtures() / "shapes" / "docker-compose.yml.template").string();
  const auto refused = portalctl(dir, {"validate", "--compose", file});
  EXPECT_EQ(refused.code, 2);
  EXPECT_EQ(refused.out, "");
  EXPECT_EQ(refused.err, file + ":46:9: service files, volume 2 (\"{{ fs.all_app_data }}:/data/app_data:rw,z\"): "
                                "{{ fs.all_app_data }} gives every app's data; allow it with --allow-all-app-data\n");
  const auto r = portalctl(dir, {"validate", "--compose", "--allow-all-app-data", "--name", "shapes", file});
  EXPECT_EQ(r.code, 2) << "a bare {{ fs.app_data }} is not supported yet";
  EXPECT_NE(r.err.find("service files, volume 3 (\"{{ fs.app_data }}:/data/own\"): {{ fs.app_data }} alone"),
            std::string::npos)
      << r.err;
}

TEST(ComposeCli, ValidateReportsUnmediatedPaths) {
  portalfs::testutil::TempDir dir;
  const auto r = portalctl(dir, {"validate", "--compose", (fixtures() / "dozzle" / "docker-compose.yml.template").string()});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("/var/run/docker.sock at /var/run/docker.sock: not mediated by portalfs\n"), std::string::npos)
      << r.out;
}

TEST(ComposeCli, BadTemplateIsOneLineExit2) {
  portalfs::testutil::TempDir dir;
  const fs::path bad = fs::path(dir.path()) / "docker-compose.yml.template";
  std::ofstream(bad) << "services:\n  web:\n    volumes:\n      - \"{{ fs.app_data }}/../x:/x\"\n";
  const auto r = portalctl(dir, {"validate", "--compose", "--name", "web", bad.string()});
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(r.err, bad.string() + ":4:9: service web, volume 1 (\"{{ fs.app_data }}/../x:/x\"): the sub-path must "
                                  "not have empty, \".\" or \"..\" segments\n");
  // render refuses the same, and writes nothing.
  const fs::path out = fs::path(dir.path()) / "out.yml";
  const auto render = portalctl(dir, {"render", "web", bad.string(), "-o", out.string()});
  EXPECT_EQ(render.code, 2);
  EXPECT_FALSE(fs::exists(out));
}

TEST(ComposeCli, RenderReplacesOnlyTheFsSources) {
  portalfs::testutil::TempDir dir;
  const fs::path tmpl = fixtures() / "immich" / "docker-compose.yml.template";
  const fs::path out = fs::path(dir.path()) / "docker-compose.yml";
  const auto r = portalctl(dir, {"render", "immich", tmpl.string(), "-o", out.string()});
  ASSERT_EQ(r.code, 0) << r.err;
  std::string expected = slurp(tmpl);
  auto replace = [&](const std::string& from, const std::string& to) {
    const auto at = expected.find(from);
    ASSERT_NE(at, std::string::npos) << from;
    expected.replace(at, from.size(), to);
  };
  replace("{{ fs.app_data }}/upload", "/run/portalfs/fs/apps/immich--immich-server/data/upload");
  replace("{{ fs.shared }}/pictures", "/run/portalfs/fs/apps/immich--immich-server/shared/pictures");
  replace("{{ fs.app_data }}/model-cache", "/run/portalfs/fs/apps/immich--immich-machine-learning/data/model-cache");
  replace("{{ fs.app_data }}/pgdata", "/run/portalfs/fs/apps/immich--database/data/pgdata");
  EXPECT_EQ(slurp(out), expected);
  // To stdout, with another mountpoint; nested data dirs keep their escaped view names.
  const auto baikal = portalctl(dir, {"render", "baikal", (fixtures() / "baikal" / "docker-compose.yml.template").string(),
                                      "--mountpoint", "/mnt/p"});
  ASSERT_EQ(baikal.code, 0) << baikal.err;
  EXPECT_NE(baikal.out.find("/mnt/p/apps/baikal--baikal/data/var%2Fwww%2Fbaikal%2Fconfig:/var/www/baikal/config"),
            std::string::npos)
      << baikal.out;
}

}  // namespace
