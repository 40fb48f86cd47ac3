// SPDX-License-Identifier: MIT
// Attacks on the mount manager, against the real portalfsd and portalctl. From the host side:
// a symlink planted inside the storage root where the daemon is about to provision an app's
// data directory (`<storage>/apps/<app>/<dir>` -> a victim directory elsewhere), then
// `portalctl app install`: the install must refuse, or provision without following, and the
// victim must stay exactly as it was. From a third-party app.json: names with newlines and
// spaces aimed at the docker arguments the manager prints.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "tests/attack/attack_fixture.hpp"
#include "tests/testutil/daemon_fixture.hpp"

namespace portalfs::testutil {
namespace {

struct Plant {
  const char* name;
  const char* link;  // below the storage root: the symlink to the victim
};

const Plant kPlants[] = {
    {"DataDir", "apps/demo/data"},  // the leaf itself
    {"AppDir", "apps/demo"},        // the app's directory on the way
    {"AppsDir", "apps"},            // the first component below the root
};

void PrintTo(const Plant& p, std::ostream* os) { *os << p.name; }

class PlantedSymlink : public DaemonFixture, public ::testing::WithParamInterface<Plant> {};

TEST_P(PlantedSymlink, InStorageRootIsNotFollowedByAppInstall) {
  TempDir victim{"portalfs-victim"};
  write_file(victim / "precious", "host data\n");
  ASSERT_EQ(::mkdir((victim / "data").c_str(), 0750), 0);  // as if the leaf were already there
  const std::string before = snapshot_tree(victim.path());

  const std::string link = storage() + "/" + GetParam().link;
  std::filesystem::create_directories(std::filesystem::path(link).parent_path());
  ASSERT_EQ(::symlink(victim.path().c_str(), link.c_str()), 0);
  write_file(dir_ / "app.json", R"({"name": "demo", "v": "1.0",
    "data_dirs": [{"path": "/data", "uid": 1000, "gid": 1000}]})");
  ASSERT_NO_FATAL_FAILURE(start());

  auto r = ctl({"app", "install", dir_ / "app.json"});
  std::cout << "[ install ] exit " << r.code << ": " << r.err;
  EXPECT_EQ(r.code, 1) << r.out << r.err;  // a runtime failure, not bad input
  EXPECT_NE(r.err.find(link + ": is a symbolic link"), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;

  EXPECT_EQ(snapshot_tree(victim.path()), before) << "the victim changed";
  struct stat st {};
  ASSERT_EQ(::lstat(link.c_str(), &st), 0);
  EXPECT_TRUE(S_ISLNK(st.st_mode)) << "the planted symlink was replaced";
  // Nothing was recorded or served, and the daemon still answers.
  EXPECT_NE(ctl({"app", "show", "demo"}).code, 0);
  EXPECT_EQ(::lstat((mnt() + "/apps/demo").c_str(), &st), -1);
  EXPECT_EQ(errno, ENOENT);
  EXPECT_EQ(ctl({"status"}).code, 0);
}

INSTANTIATE_TEST_SUITE_P(EveryLevel, PlantedSymlink, ::testing::ValuesIn(kPlants),
                         [](const ::testing::TestParamInfo<Plant>& p) {
                           return std::string(p.param.name);
                         });

using HostAttack = DaemonFixture;

TEST_F(HostAttack, ManifestPathsWithNewlinesOrSpacesCannotInjectDockerArguments) {
  // A third-party app.json names a data directory so that the "-v" arguments printed for
  // `docker run $(portalctl mounts demo --format docker)` carry an extra option (a ':' is
  // already refused). Either the install refuses the path as bad input (exit 2), or every
  // printed mount stays one word after "-v".
  write_file(dir_ / "app.json", R"({"name": "demo", "v": "1.0",
    "data_dirs": ["/data\n--privileged", "/x --privileged"]})");
  ASSERT_NO_FATAL_FAILURE(start());
  auto r = ctl({"app", "install", dir_ / "app.json"});
  if (r.code == 2) {
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    return;
  }
  ASSERT_EQ(r.code, 0) << r.err;
  auto m = ctl({"mounts", "demo", "--format", "docker"});
  std::cout << "[ docker ] exit " << m.code << ":\n" << m.out << m.err;
  if (m.code != 0) return;  // refused to print them: nothing to inject into
  std::istringstream words(m.out);
  std::vector<std::string> argv;
  for (std::string w; words >> w;) argv.push_back(w);
  // Two mounts: "-v" and "src:dst" each, nothing more, and no option of the app's choosing.
  EXPECT_EQ(argv.size(), 4u);
  EXPECT_EQ(std::count(argv.begin(), argv.end(), "--privileged"), 0);
}

}  // namespace
}  // namespace portalfs::testutil
