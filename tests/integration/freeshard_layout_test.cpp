// SPDX-License-Identifier: MIT
// portalfsd --layout freeshard over a populated Freeshard user_data tree: an app installed from
// its compose template is served in place (app_data/<app>/..., shared/<name>/...), and the
// tree afterwards is byte for byte, owner for owner and mode for mode what it was.

#include <fcntl.h>
#include <signal.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <map>

#include "tests/testutil/daemon_fixture.hpp"

namespace portalfs::testutil {
namespace {

namespace fs = std::filesystem;

// Every entry below `root`: type, mode, owner, size, mtime, content or link target.
std::string tree(const std::string& root) {
  std::map<std::string, std::string> entries;
  for (auto it = fs::recursive_directory_iterator(root); it != fs::recursive_directory_iterator(); ++it) {
    struct stat st {};
    ::lstat(it->path().c_str(), &st);
    std::string line = std::to_string(st.st_mode) + " " + std::to_string(st.st_uid) + ":" +
                       std::to_string(st.st_gid) + " " + std::to_string(st.st_size) + " " +
                       std::to_string(st.st_mtim.tv_sec) + "." + std::to_string(st.st_mtim.tv_nsec);
    if (S_ISREG(st.st_mode)) line += " " + read_file(it->path().string());
    if (S_ISLNK(st.st_mode)) line += " -> " + fs::read_symlink(it->path()).string();
    entries[it->path().string().substr(root.size())] = line;
  }
  std::string out;
  for (const auto& [p, l] : entries) out += p + " " + l + "\n";
  return out;
}

void put(const std::string& path, const std::string& content, uid_t uid, gid_t gid, mode_t mode) {
  fs::create_directories(fs::path(path).parent_path());
  write_file(path, content);
  ASSERT_EQ(::chown(path.c_str(), uid, gid), 0);
  ASSERT_EQ(::chmod(path.c_str(), mode), 0);
}

class FreeshardLayout : public DaemonFixture {
 protected:
  std::string shard() const { return storage(); }  // …/user_data
  void SetUp() override {
    DaemonFixture::SetUp();
    extra_daemon_args_ = {"--layout", "freeshard"};
    const std::string app = shard() + "/app_data/notes";
    // A sqlite database's first bytes, binary content, files of uids 0, 1000 and 999.
    put(app + "/db/notes.sqlite", std::string("SQLite format 3\0\x10\x00\x01\x01", 20) + "pages", 999, 999, 0600);
    put(app + "/db/notes.sqlite-wal", "", 999, 999, 0600);
    put(app + "/files/2024/05/a.md", "# a\n", 1000, 1000, 0644);
    put(app + "/files/root-owned.txt", "root\n", 0, 0, 0640);
    ASSERT_EQ(::chown((app + "/db").c_str(), 999, 999), 0);
    ASSERT_EQ(::chmod((app + "/db").c_str(), 0700), 0);
    ASSERT_EQ(::chown((app + "/files/2024").c_str(), 1000, 1000), 0);
    fs::create_symlink("2024/05/a.md", app + "/files/latest.md");
    fs::create_symlink("/etc/passwd", app + "/files/outside");
    put(shard() + "/shared/documents/report.pdf", "%PDF-1.7", 1000, 1000, 0644);
    fs::create_directories(dir_ / "store/notes");
    write_file(dir_ / "store/notes/app_meta.json", R"({"name": "notes", "app_version": "1.0"})");
    write_file(dir_ / "store/notes/docker-compose.yml.template", R"(services:
  web:
    image: notes
    user: "1000:1000"
    volumes:
      - "{{ fs.app_data }}/files:/files"
      - "{{ fs.shared }}/documents:/documents"
  db:
    image: postgres
    user: "999:999"
    volumes:
      - "{{ fs.app_data }}/db:/db"
)");
  }
};

TEST_F(FreeshardLayout, AdoptedInPlaceAndLeftAsItWas) {
  const std::string before = tree(shard());
  ASSERT_NO_FATAL_FAILURE(start());
  ASSERT_EQ(ctl({"share", "create", "documents"}).code, 0);
  auto r = ctl({"app", "install", "--compose", dir_ / "store/notes/docker-compose.yml.template"});
  ASSERT_EQ(r.code, 0) << r.err;

  // Served in place: the same bytes through the views.
  EXPECT_EQ(read_file(mnt() + "/apps/notes--web/data/files/2024/05/a.md"), "# a\n");
  EXPECT_EQ(read_file(mnt() + "/apps/notes--db/data/db/notes.sqlite"),
            std::string("SQLite format 3\0\x10\x00\x01\x01", 20) + "pages");
  EXPECT_EQ(read_file(mnt() + "/apps/notes--web/shared/documents/report.pdf"), "%PDF-1.7");
  EXPECT_EQ(fs::read_symlink(mnt() + "/apps/notes--web/data/files/latest.md").string(), "2024/05/a.md");
  struct stat st {};
  ASSERT_EQ(::stat((mnt() + "/apps/notes--db/data/db").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 999u);  // the db service sees its directory as its own
  EXPECT_EQ(st.st_mode & 07777, 0700u);

  EXPECT_EQ(ctl({"app", "remove", "notes"}).code, 0);
  ASSERT_EQ(daemon_->stop(SIGTERM), 0);
  // Nothing copied, moved, chowned or added: the tree is what it was, but for the store marker
  // at its top (outside every view), by which the daemon knows the disk again (mountmgr/store.hpp).
  EXPECT_TRUE(fs::is_regular_file(shard() + "/.portalfs-store"));
  fs::remove(shard() + "/.portalfs-store");
  EXPECT_EQ(tree(shard()), before);
  EXPECT_FALSE(fs::exists(shard() + "/apps"));
}

}  // namespace
}  // namespace portalfs::testutil
