// SPDX-License-Identifier: MIT
// A compose app end to end: the real portalctl installs a docker-compose.yml.template into the
// real portalfsd, and processes with each service's uid write through its views without any
// chown: bytes and owners on disk, EROFS on the read-only share, mounts per service, render.

#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <functional>

#include "tests/testutil/container_user.hpp"
#include "tests/testutil/daemon_fixture.hpp"

namespace portalfs::testutil {
namespace {

// web runs as 1000 and reads own_media; db (postgres-like) runs as 999; both use data/.
constexpr auto kTemplate = R"(# shop: two services, one data directory
services:
  web:
    image: example/web:${WEB_VERSION:-1}
    user: "1000:1000"
    volumes:
      - "{{ fs.app_data }}/data:/srv/data"
      - {{fs.shared}}/own_media:/srv/data/media:ro
  db:
    image: postgres:16
    environment:
      PUID: 999
      PGID: 999
    volumes:
      - type: bind
        source: "{{ fs.app_data }}/data/pg"
        target: /var/lib/postgresql/data
)";

int create_file(const std::string& path, const std::string& text) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return errno;
  const bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  const int e = ok ? 0 : errno;
  ::close(fd);
  return e;
}

class ComposeDaemon : public DaemonFixture {
 protected:
  std::string app_dir() const { return dir_ / "store/shop"; }
  std::string tmpl() const { return app_dir() + "/docker-compose.yml.template"; }
  void SetUp() override {
    DaemonFixture::SetUp();
    std::filesystem::create_directories(app_dir());
    write_file(tmpl(), kTemplate);
    write_file(app_dir() + "/app_meta.json", R"({"v": "1.0", "app_version": "2.1", "name": "shop"})");
  }
  struct stat disk(const std::string& rel) {
    struct stat st {};
    EXPECT_EQ(::lstat((storage() + "/" + rel).c_str(), &st), 0) << rel;
    return st;
  }
};

TEST_F(ComposeDaemon, EachServiceWritesAsItselfWithoutChown) {
  ASSERT_NO_FATAL_FAILURE(start());
  auto r = ctl({"app", "install", "--compose", tmpl()});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("service web (app shop--web):"), std::string::npos) << r.out;

  const std::string web_data = mnt() + "/apps/shop--web/data/data";
  const std::string db_data = mnt() + "/apps/shop--db/data/data%2Fpg";
  EXPECT_EQ(as_container_user(mnt(), 1000, 1000, [&] { return create_file(web_data + "/upload.jpg", "jpeg"); }), 0);
  EXPECT_EQ(as_container_user(mnt(), 999, 999, [&] { return create_file(db_data + "/PG_VERSION", "16\n"); }), 0);
  EXPECT_EQ(as_container_user(mnt(), 999, 999, [&] { return ::mkdir((db_data + "/base").c_str(), 0700) == 0 ? 0 : errno; }), 0);
  EXPECT_EQ(read_file(storage() + "/apps/shop/data/upload.jpg"), "jpeg");
  EXPECT_EQ(disk("apps/shop/data/upload.jpg").st_uid, 1000u);
  EXPECT_EQ(disk("apps/shop/data/pg/PG_VERSION").st_uid, 999u);
  EXPECT_EQ(disk("apps/shop/data/pg/base").st_gid, 999u);
  // web sees db's directory as its own (its view presents everything as 1000).
  struct stat st {};
  ASSERT_EQ(::stat((web_data + "/pg/PG_VERSION").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 1000u);
  // Another uid is not the service's: the data view is web's, owned by 1000 0755.
  EXPECT_EQ(as_container_user(mnt(), 1234, 1234, [&] { return create_file(web_data + "/intruder", "x"); }), EACCES);
  // The read-only share.
  EXPECT_EQ(as_container_user(mnt(), 1000, 1000, [&] { return create_file(mnt() + "/apps/shop--web/shared/own_media/x", "x"); }), EROFS);

  // mounts per service, parents first.
  r = ctl({"mounts", "shop", "--service", "web", "--format", "docker"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "-v " + web_data + ":/srv/data\n-v " + mnt() + "/apps/shop--web/shared/own_media:/srv/data/media:ro\n");

  // render: every view it names exists in the mount; every other byte is the template's.
  r = ctl({"render", "shop", tmpl(), "--mountpoint", mnt()});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("      - \"" + web_data + ":/srv/data\"\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("      - " + mnt() + "/apps/shop--web/shared/own_media:/srv/data/media:ro\n"), std::string::npos);
  EXPECT_NE(r.out.find("        source: \"" + db_data + "\"\n"), std::string::npos);
  EXPECT_EQ(::access(db_data.c_str(), F_OK), 0);
  EXPECT_NE(r.out.find("# shop: two services"), std::string::npos);
  EXPECT_NE(r.out.find("${WEB_VERSION:-1}"), std::string::npos);

  // Remove: the views go, the data stays.
  r = ctl({"app", "remove", "shop"});
  ASSERT_EQ(r.code, 0) << r.err;
  errno = 0;
  EXPECT_NE(::access(web_data.c_str(), F_OK), 0);
  EXPECT_EQ(errno, ENOENT);
  EXPECT_EQ(read_file(storage() + "/apps/shop/data/pg/PG_VERSION"), "16\n");
}

TEST_F(ComposeDaemon, BadTemplateIsOneLineExit2AndChangesNothing) {
  ASSERT_NO_FATAL_FAILURE(start());
  write_file(tmpl(), "services:\n  web:\n    volumes:\n      - \"{{ fs.app_data }}/../../etc:/x\"\n");
  const auto r = ctl({"app", "install", "--compose", tmpl()});
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(r.err, "portalctl: " + tmpl() + ":4:9: service web, volume 1 (\"{{ fs.app_data }}/../../etc:/x\"): "
                   "the sub-path must not have empty, \".\" or \"..\" segments\n");
  EXPECT_FALSE(std::filesystem::exists(storage() + "/apps/shop"));
}

// The owner decision (#11): a read-write share whose grant names no owner is presented as the
// app's known user, so an app running as 1000 creates files in a root-owned 0755 share. Both
// manifest formats: app.json (the data dir's uid) and compose (the service's user:).
TEST_F(ComposeDaemon, ReadWriteShareWithoutOwnerIsWritableByTheAppsUser) {
  ASSERT_NO_FATAL_FAILURE(start());
  write_file(dir_ / "notes.json", R"({"name": "notes", "data_dirs": [{"path": "/data", "uid": 1000, "gid": 1000}],
    "shared_dirs": [{"name": "own_documents", "path": "/documents", "access": "read-write"}]})");
  auto r = ctl({"app", "install", dir_ / "notes.json"});
  ASSERT_EQ(r.code, 0) << r.err;
  struct stat share {};
  ASSERT_EQ(::stat((storage() + "/shared/own_documents").c_str(), &share), 0);
  ASSERT_EQ(share.st_uid, 0u);  // root-owned on disk
  ASSERT_EQ(share.st_mode & 0777, 0755u);
  EXPECT_EQ(as_container_user(mnt(), 1000, 1000, [&] { return create_file(mnt() + "/apps/notes/shared/own_documents/n.txt", "n"); }), 0);

  write_file(tmpl(), "services:\n  web:\n    user: \"1000:1000\"\n    volumes:\n"
                     "      - \"{{ fs.shared }}/own_documents:/documents\"\n");
  r = ctl({"app", "install", "--compose", tmpl()});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(as_container_user(mnt(), 1000, 1000, [&] { return create_file(mnt() + "/apps/shop--web/shared/own_documents/w.txt", "w"); }), 0);

  // Stored as the share's owner; each app sees them as its own.
  struct stat st {};
  ASSERT_EQ(::stat((storage() + "/shared/own_documents/w.txt").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 0u);
  ASSERT_EQ(::stat((mnt() + "/apps/notes/shared/own_documents/w.txt").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 1000u);
}

// When nothing says who the app runs as (app.json: no uid on any data dir; compose: no user:
// or PUID), a read-write share lets any uid of the app write: stored as the share's owner,
// shown as the container's root with every directory 0777. A read-only share stays as it is.
TEST_F(ComposeDaemon, ReadWriteShareOfAnUnknownUserIsWritableByAnyUid) {
  ASSERT_NO_FATAL_FAILURE(start());
  write_file(dir_ / "notes.json", R"({"name": "notes", "data_dirs": [{"path": "/data"}],
    "shared_dirs": [{"name": "own_documents", "path": "/documents", "access": "read-write"},
                    {"name": "own_media", "path": "/media", "access": "read"}]})");
  auto r = ctl({"app", "install", dir_ / "notes.json"});
  ASSERT_EQ(r.code, 0) << r.err;
  write_file(tmpl(), "services:\n  web:\n    image: x\n    volumes:\n"
                     "      - \"{{ fs.shared }}/own_documents:/documents\"\n");
  r = ctl({"app", "install", "--compose", tmpl()});
  ASSERT_EQ(r.code, 0) << r.err;

  for (const std::string app : {"notes", "shop--web"}) {
    const std::string docs = mnt() + "/apps/" + app + "/shared/own_documents";
    EXPECT_EQ(as_container_user(mnt(), 1000, 1000, [&] { return create_file(docs + "/" + app + "-1000", "a"); }), 0) << app;
    EXPECT_EQ(as_container_user(mnt(), 33, 33, [&] { return ::mkdir((docs + "/" + app + "-33").c_str(), 0755) == 0 ? 0 : errno; }), 0)
        << app;
    // Another uid of the app writes into what the first made.
    EXPECT_EQ(as_container_user(mnt(), 1000, 1000, [&] { return create_file(docs + "/" + app + "-33/x", "x"); }), 0) << app;
    struct stat st {};
    ASSERT_EQ(::stat(docs.c_str(), &st), 0);
    EXPECT_EQ(st.st_uid, 0u);
    EXPECT_EQ(st.st_mode & 0777, 0777u);
    ASSERT_EQ(::stat((storage() + "/shared/own_documents/" + app + "-33").c_str(), &st), 0);
    EXPECT_EQ(st.st_uid, 0u) << "stored as the share's owner";
    EXPECT_EQ(st.st_mode & 0777, 0755u) << "the disk keeps the mode asked for";
  }
  // The read-only share keeps its real owners and modes: uid 1000 is refused by the kernel's
  // permission check on the root-owned 0755 directory, root by the view.
  EXPECT_EQ(as_container_user(mnt(), 1000, 1000, [&] { return create_file(mnt() + "/apps/notes/shared/own_media/x", "x"); }), EACCES);
  EXPECT_EQ(create_file(mnt() + "/apps/notes/shared/own_media/x", "x"), EROFS);
  struct stat media {};
  ASSERT_EQ(::stat((mnt() + "/apps/notes/shared/own_media").c_str(), &media), 0);
  EXPECT_EQ(media.st_mode & 0777, 0755u);
}

// --share own_documents=read makes a template's read-write share read-only, in the running
// view; an upgrade without --share keeps it so.
TEST_F(ComposeDaemon, OperatorMakesAShareReadOnlyWithOneOption) {
  ASSERT_NO_FATAL_FAILURE(start());
  write_file(tmpl(), "services:\n  web:\n    user: \"1000:1000\"\n    volumes:\n"
                     "      - \"{{ fs.shared }}/own_documents:/documents\"\n");
  auto r = ctl({"app", "install", "--compose", tmpl(), "--share", "own_documents=read"});
  ASSERT_EQ(r.code, 0) << r.err;
  const std::string docs = mnt() + "/apps/shop--web/shared/own_documents";
  EXPECT_EQ(as_container_user(mnt(), 1000, 1000, [&] { return create_file(docs + "/a", "a"); }), EROFS);
  r = ctl({"app", "upgrade", "--compose", tmpl()});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(as_container_user(mnt(), 1000, 1000, [&] { return create_file(docs + "/a", "a"); }), EROFS);
  r = ctl({"app", "upgrade", "--compose", tmpl(), "--share", "*=read-write"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(as_container_user(mnt(), 1000, 1000, [&] { return create_file(docs + "/a", "a"); }), 0);
}

}  // namespace
}  // namespace portalfs::testutil
