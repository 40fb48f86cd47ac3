// SPDX-License-Identifier: MIT
// A share's trash (policy/trash.hpp): unlink, rmdir and a rename that replaces a file, in a
// view of a share with a trash, keep what they remove in the trash.
//
// - unlink and rmdir rename the entry into a new slot <trash>/<id>/entry (RENAME_NOREPLACE),
//   after writing the slot's record.json: O(1), never a copy, and the inode keeps its bytes,
//   owner, mode, times and provenance (trusted.portalfs.* xattrs) for the restore.
// - A rename onto an existing file first hard-links that file into a slot, then renames as
//   asked: the replacement stays atomic for readers (the name never goes missing), and the
//   old inode survives in the trash. An empty directory replaced by a rename is not kept:
//   nothing but its name is lost, and keeping it would take the name away first.
// - A file with other hard links is unlinked for good: its data stays reachable under its
//   other names, which is what a user deleting one name of several expects; a trash slot
//   would keep a link that follows every later change made through the others.
//
// The daemon writes the slot as root, 0700: the trash is outside every view (see
// policy/trash.hpp), so apps never see it; the admin works on it with `portalctl trash`.
#include <dirent.h>
#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <climits>
#include <ctime>

#include "common/rename.hpp"
#include "fuse/filesystem_internal.hpp"
#include "policy/trash.hpp"

namespace portalfs::fuse {
namespace {

std::string kind_of(mode_t mode) {
  if (S_ISREG(mode)) return "file";
  if (S_ISDIR(mode)) return "directory";
  if (S_ISLNK(mode)) return "symlink";
  return "other";
}

// The kernel's name of what `fd` is open on.
std::string name_of(int fd) {
  char buf[PATH_MAX];
  const ssize_t n = ::readlink(proc_path(fd).c_str(), buf, sizeof buf);
  return n < 0 ? std::string() : std::string(buf, static_cast<size_t>(n));
}

// `name` in `dirfd` as a path relative to the view's root, for the record (and the restore).
std::string relative_path(const View& view, int dirfd, const char* name) {
  const std::string root = name_of(view.root->get());
  const std::string dir = name_of(dirfd);
  if (!root.empty() && dir.size() > root.size() && dir.starts_with(root + "/")) {
    return dir.substr(root.size() + 1) + "/" + name;
  }
  return name;  // in the root (or its name is unknown: the restore asks for --to then)
}

// A new slot in the trash holding `record`: its id, or "" (errno set).
std::string make_slot(int trash_fd, const policy::TrashRecord& record) {
  const std::string json = policy::trash_record_json(record);
  for (int attempt = 0; attempt < 8; ++attempt) {
    uint32_t random = 0;
    if (::getrandom(&random, sizeof random, 0) != sizeof random) return {};
    const std::string id = policy::make_trash_id(record.deleted_at, random);
    if (::mkdirat(trash_fd, id.c_str(), 0700) != 0) {
      if (errno == EEXIST) continue;
      return {};
    }
    common::UniqueFd slot(::openat(trash_fd, id.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    common::UniqueFd file(slot ? ::openat(slot.get(), policy::kTrashRecord, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)
                               : -1);
    if (file && ::write(file.get(), json.data(), json.size()) == static_cast<ssize_t>(json.size())) return id;
    const int err = errno;
    ::unlinkat(trash_fd, (id + "/" + policy::kTrashRecord).c_str(), 0);
    ::unlinkat(trash_fd, id.c_str(), AT_REMOVEDIR);
    errno = err ? err : EIO;
    return {};
  }
  errno = EEXIST;
  return {};
}

void drop_slot(int trash_fd, const std::string& id) {
  ::unlinkat(trash_fd, (id + "/" + policy::kTrashEntry).c_str(), 0);
  ::unlinkat(trash_fd, (id + "/" + policy::kTrashRecord).c_str(), 0);
  ::unlinkat(trash_fd, id.c_str(), AT_REMOVEDIR);
}

policy::TrashRecord record_for(const View& view, int dirfd, const char* name, mode_t mode) {
  return {relative_path(view, dirfd, name), view.spec.app, view.spec.dir_name, static_cast<int64_t>(::time(nullptr)),
          kind_of(mode)};
}

// Whether the directory `dirfd`/`name` has entries: rmdir's ENOTEMPTY, which a rename into
// the trash would not give. An entry made between this check and the rename goes to the trash
// with the directory: kept, not lost.
int check_empty(int dirfd, const char* name) {
  const int fd = ::openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return errno;
  DIR* dir = ::fdopendir(fd);
  if (!dir) {
    ::close(fd);
    return errno;
  }
  int err = 0;
  while (const dirent* e = ::readdir(dir)) {
    if (std::string_view(e->d_name) != "." && std::string_view(e->d_name) != "..") {
      err = ENOTEMPTY;
      break;
    }
  }
  ::closedir(dir);
  return err;
}

}  // namespace

int Filesystem::remove_entry(const View& view, int dirfd, const char* name, bool dir) {
  struct stat st {};
  const bool trashing = view.trash && ::fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
                        (S_ISDIR(st.st_mode) || st.st_nlink <= 1);  // see the top of this file
  if (!trashing) return ::unlinkat(dirfd, name, dir ? AT_REMOVEDIR : 0) == 0 ? 0 : errno;
  // The errors unlinkat would give, before anything moves.
  if (!dir && S_ISDIR(st.st_mode)) return EISDIR;
  if (dir && !S_ISDIR(st.st_mode)) return ENOTDIR;
  if (dir) {
    if (int err = check_empty(dirfd, name)) return err;
  }
  const int trash_fd = view.trash->get();
  const std::string id = make_slot(trash_fd, record_for(view, dirfd, name, st.st_mode));
  if (id.empty()) return errno;
  const std::string entry = id + "/" + policy::kTrashEntry;
  if (const int err = common::rename_noreplace(dirfd, name, trash_fd, entry.c_str()); err != 0) {
    drop_slot(trash_fd, id);
    if (err == EXDEV) {
      // A disk mounted on the share's directory after it got its trash (`share set --trash`
      // refuses that order): nothing is deleted rather than deleted without the trash.
      common::log_once(common::LogLevel::warn, "trash-xdev:" + view.spec.dir_name,
                       "deletes in share " + view.spec.dir_name + " fail (EXDEV): the share is now a file system of "
                       "its own and its trash is on the storage root's; turn the trash off (portalctl share set " +
                       view.spec.dir_name + " --trash off) or unmount the disk",
                       {view.spec.app, view.spec.dir_name, "unlink", EXDEV});
    }
    return err;
  }
  return 0;
}

std::string Filesystem::keep_replaced(const View& view, int from_dirfd, const char* from_name, int dirfd,
                                      const char* name) {
  struct stat st {};
  if (!view.trash || ::fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) return {};
  if (S_ISDIR(st.st_mode) || st.st_nlink > 1) return {};  // see the top of this file
  // A rename onto itself (the same inode) replaces nothing.
  struct stat moved {};
  if (::fstatat(from_dirfd, from_name, &moved, AT_SYMLINK_NOFOLLOW) != 0 || moved.st_ino == st.st_ino) return {};
  const int trash_fd = view.trash->get();
  // No slot (the disk is full): the rename still goes ahead, as it would without a trash; an
  // app's rename must not fail for want of room for what it replaces.
  const std::string id = make_slot(trash_fd, record_for(view, dirfd, name, st.st_mode));
  if (id.empty()) return {};
  // linkat without AT_SYMLINK_FOLLOW links a symlink itself, never its target.
  if (::linkat(dirfd, name, trash_fd, (id + "/" + policy::kTrashEntry).c_str(), 0) != 0) {
    drop_slot(trash_fd, id);
    return {};
  }
  return id;
}

void Filesystem::drop_kept(const View& view, const std::string& id) {
  if (!id.empty() && view.trash) drop_slot(view.trash->get(), id);
}

}  // namespace portalfs::fuse
