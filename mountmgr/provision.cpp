
// SPDX-License-Identifier: MIT
#include "mountmgr/provision.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/beneath.hpp"
#include "common/btrfs.hpp"
#include "common/dirs.hpp"
#include "common/rename.hpp"
#include "mountmgr/paths.hpp"
#include "policy/trash.hpp"

namespace portalfs::mountmgr {
namespace {

using common::UniqueFd;

constexpr mode_t kIntermediateMode = 0700;
constexpr off_t kMaxMarkerBytes = 256;
constexpr const char* kTrash = "trash";
constexpr const char* kNewPrefix = ".portalfs-new-";

[[noreturn]] void fail(const std::string& path, const std::string& what, int err) {
  throw ProvisionError(path + ": " + what + ": " + std::strerror(err));
}

[[noreturn]] void refuse_not_dir(const std::string& path) {
  throw ProvisionError(path + ": is a symbolic link or not a directory; refusing to follow it");
}

void check_component(const StorageRoot& root, const std::vector<std::string>& components, std::size_t i) {
  if (!common::valid_component(components[i])) {
    throw ProvisionError(root.display(components) + ": bad path component \"" + components[i] + "\"");
  }
}

std::vector<std::string> prefix(const std::vector<std::string>& components, std::size_t n) {
  return {components.begin(), components.begin() + static_cast<std::ptrdiff_t>(n)};
}

// Opens components[0, n) below the root as O_PATH fds, one at a time, creating missing ones
// when `create`. Returns an invalid fd when one is missing and !create.
UniqueFd walk(const StorageRoot& root, const std::vector<std::string>& components, std::size_t n, bool create) {
  UniqueFd cur(::openat(root.fd(), ".", O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!cur) fail(root.path(), "cannot open", errno);
  for (std::size_t i = 0; i < n; ++i) {
    check_component(root, components, i);
    const char* name = components[i].c_str();
    UniqueFd next(::openat(cur.get(), name, O_PATH | O_NOFOLLOW | O_DIRECTORY | O_CLOEXEC));
    if (!next && errno == ENOENT) {
      if (!create) return {};
      if (::mkdirat(cur.get(), name, kIntermediateMode) != 0 && errno != EEXIST) {
        fail(root.display(prefix(components, i + 1)), "cannot create", errno);
      }
      next.reset(::openat(cur.get(), name, O_PATH | O_NOFOLLOW | O_DIRECTORY | O_CLOEXEC));
    }
    if (!next) {
      if (errno == ELOOP || errno == ENOTDIR) refuse_not_dir(root.display(prefix(components, i + 1)));
      fail(root.display(prefix(components, i + 1)), "cannot open", errno);
    }
    cur = std::move(next);
  }
  return cur;
}

UniqueFd open_trash(const StorageRoot& root, bool create) {
  UniqueFd parent = walk(root, trash_components(), 1, create);
  if (!parent) return {};
  UniqueFd fd(::openat(parent.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) fail(root.display(trash_components()), "cannot open", errno);
  return fd;
}

// Renames parent/name into the trash under a name no other entry has (its inode number).
// Returns errno (0 on success).
int rename_into_trash(int parent_fd, const char* name, int trash_fd) {
  struct stat st {};
  if (::fstatat(parent_fd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) return errno;
  const std::string base = "i" + std::to_string(st.st_ino);
  for (int n = 0; n < 1000; ++n) {
    const std::string target = n == 0 ? base : base + "." + std::to_string(n);
    const int err = common::rename_noreplace(parent_fd, name, trash_fd, target.c_str());
    if (err != EEXIST) return err;
  }
  return EEXIST;
}

// The marker as written by write_marker: at most kMaxMarkerBytes, ends with "\n", and the
// version before it is displayable. Anything else is a problem, one line naming the file.
struct Marker {
  std::optional<std::string> version;
  std::string problem;  // "" when the version is good (or there is no marker at all: missing)
  bool missing = false;  // there is no marker file at all
};

Marker read_marker(int dir_fd, const std::string& display) {
  const std::string file = display + "/" + kVersionMarker;
  UniqueFd fd(::openat(dir_fd, kVersionMarker, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
  if (!fd) {
    const bool missing = errno == ENOENT;
    return {std::nullopt, file + (missing ? ": missing" : ": cannot open: " + std::string(std::strerror(errno))), missing};
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) return {std::nullopt, file + ": not a regular file"};
  if (st.st_size > kMaxMarkerBytes) return {std::nullopt, file + ": larger than " + std::to_string(kMaxMarkerBytes) + " bytes"};
  char buf[kMaxMarkerBytes + 1];
  const ssize_t n = ::read(fd.get(), buf, sizeof buf);
  if (n < 0) return {std::nullopt, file + ": cannot read: " + std::strerror(errno)};
  std::string text(buf, static_cast<std::size_t>(n));
  if (!text.ends_with('\n')) return {std::nullopt, file + ": incomplete (no final newline)"};
  text.pop_back();
  if (!displayable_version(text)) return {std::nullopt, file + ": not a version (invalid UTF-8 or control characters)"};
  return {std::move(text), ""};
}

void write_marker(int dir_fd, const std::string& version, const std::string& display) {
  const std::string file = display + "/" + kVersionMarker;
  // A leftover (an incomplete marker, or whatever the app put there) goes first.
  if (::unlinkat(dir_fd, kVersionMarker, 0) != 0 && errno != ENOENT) fail(file, "cannot replace", errno);
  UniqueFd fd(::openat(dir_fd, kVersionMarker, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0444));
  if (!fd) fail(file, "cannot create", errno);
  const std::string text = version + "\n";
  if (::write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size())) {
    fail(file, "cannot write", errno ? errno : EIO);
  }
  // The umask may have taken bits off; the marker is read-only for everyone, on purpose.
  if (::fchmod(fd.get(), 0444) != 0) fail(file, "cannot chmod", errno);
  if (::fsync(fd.get()) != 0) fail(file, "cannot sync", errno);
}

// Gives a directory its marker (when asked), owner and mode: the last step before it opens up.
void set_up(int fd, const LeafSpec& leaf, const std::string& display) {
  if (leaf.version_marker) write_marker(fd, *leaf.version_marker, display);
  if (leaf.owner && ::fchown(fd, leaf.owner->uid, leaf.owner->gid) != 0) fail(display, "cannot chown", errno);
  if (::fchmod(fd, leaf.mode) != 0) fail(display, "cannot chmod", errno);
}

// The new leaf under its temporary name: a btrfs subvolume when asked and the parent is on
// btrfs (so a qgroup can limit it, mountmgr/quota.hpp), a plain directory otherwise. 0 or an errno.
int make_tmp(int parent_fd, const std::string& tmp, bool subvolume) {
  if (subvolume && common::on_btrfs(parent_fd)) {
    UniqueFd parent(::openat(parent_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));  // an ioctl needs more than O_PATH
    if (!parent) return errno;
    return common::create_subvolume(parent.get(), tmp);
  }
  return ::mkdirat(parent_fd, tmp.c_str(), 0700) == 0 ? 0 : errno;
}

// Makes parent/name complete or not at all: made as a temporary name, set up, renamed into
// place. Returns false when `name` appeared meanwhile (made by someone else).
bool make_leaf(const StorageRoot& root, int parent_fd, const std::string& name, const LeafSpec& leaf,
               const std::string& display) {
  const std::string tmp = kNewPrefix + std::to_string(std::hash<std::string>()(name));
  UniqueFd trash = open_trash(root, /*create=*/true);
  // A leftover of a crash (or something planted under that name) is not reused.
  if (int err = rename_into_trash(parent_fd, tmp.c_str(), trash.get()); err != 0 && err != ENOENT) {
    fail(display, "cannot clear the leftover " + tmp, err);
  }
  if (int err = make_tmp(parent_fd, tmp, leaf.subvolume); err != 0) fail(display, "cannot create", err);
  auto discard = [&] { rename_into_trash(parent_fd, tmp.c_str(), trash.get()); };
  try {
    UniqueFd fd(::openat(parent_fd, tmp.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!fd) fail(display, "cannot open", errno);
    set_up(fd.get(), leaf, display);
    if (int err = common::rename_noreplace(parent_fd, tmp.c_str(), parent_fd, name.c_str()); err != 0) {
      if (err != EEXIST) fail(display, "cannot rename into place", err);
      discard();
      return false;
    }
    return true;
  } catch (...) {
    discard();
    throw;
  }
}

// The first problem met is the one reported.
void note(std::string& problem, const std::string& display, const char* name, const std::string& why) {
  if (problem.empty()) problem = display + "/" + name + ": " + why;
}

// A listing of the directory from its start, on a dup of its fd (closedir leaves `dir_fd` open).
DIR* list_from_start(int dir_fd, const std::string& display) {
  const int dup_fd = ::fcntl(dir_fd, F_DUPFD_CLOEXEC, 0);
  if (dup_fd < 0) fail(display, "cannot list", errno);
  DIR* dir = ::fdopendir(dup_fd);
  if (!dir) {
    ::close(dup_fd);
    fail(display, "cannot list", errno);
  }
  ::rewinddir(dir);
  return dir;
}

// Deletes every entry of `dir_fd` (a trash entry): files and links at once, empty directories
// at once, others moved up into the trash for a later pass. Counts what it deleted and moved;
// `problem` gets the first reason something stays.
struct Drained {
  std::size_t deleted = 0;
  std::size_t moved = 0;
};

Drained drain(int dir_fd, int trash_fd, dev_t dev, const std::string& display, std::string& problem) {
  DIR* dir = list_from_start(dir_fd, display);
  Drained out;
  while (const dirent* entry = ::readdir(dir)) {
    const char* name = entry->d_name;
    if (std::strcmp(name, ".") == 0 || std::strcmp(name, "..") == 0) continue;
    struct stat st {};
    if (::fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;  // gone meanwhile
    if (!S_ISDIR(st.st_mode)) {
      if (::unlinkat(dir_fd, name, 0) == 0) {
        ++out.deleted;
      } else {
        note(problem, display, name, std::string("cannot delete: ") + std::strerror(errno));
      }
    } else if (st.st_dev != dev) {
      note(problem, display, name, "another file system is mounted here; not deleted");
    } else if (::unlinkat(dir_fd, name, AT_REMOVEDIR) == 0) {
      ++out.deleted;
    } else if (errno != ENOTEMPTY && errno != EEXIST) {
      note(problem, display, name, std::string("cannot delete: ") + std::strerror(errno));  // EBUSY: a mount point
    } else if (int err = rename_into_trash(dir_fd, name, trash_fd); err == 0) {
      ++out.moved;
    } else {
      note(problem, display, name, std::string("cannot move: ") + std::strerror(err));
    }
  }
  ::closedir(dir);
  return out;
}


// One entry at the top of the trash: deleted whole if it can be (a file, an empty directory, a
// btrfs subvolume), else drained one level deep, deeper directories moved up to the top for a
// later pass. Counts into `report`; returns whether anything changed.
bool empty_entry(int trash, dev_t trash_dev, const char* name, const std::string& display, TrashReport& report) {
  struct stat st {};
  if (::fstatat(trash, name, &st, AT_SYMLINK_NOFOLLOW) != 0) return false;
  if (::unlinkat(trash, name, S_ISDIR(st.st_mode) ? AT_REMOVEDIR : 0) == 0) {
    ++report.deleted;
    return true;
  }
  if (!S_ISDIR(st.st_mode) || errno != ENOTEMPTY) {
    note(report.problem, display, name, std::string("cannot delete: ") + std::strerror(errno));
    ++report.left;
    return false;
  }
  UniqueFd dir(::openat(trash, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  // A purged app data root or share on btrfs is a subvolume (another st_dev, not a mount
  // point; one that is mounted on somewhere the kernel refuses to delete, EBUSY): the kernel
  // deletes it whole.
  if (dir && common::subvolume_root_id(dir.get())) {
    dir.reset();
    if (const int err = common::destroy_subvolume(trash, name); err != 0) {
      note(report.problem, display, name, std::string("cannot delete the btrfs subvolume: ") + std::strerror(err));
      ++report.left;
      return false;
    }
    ++report.deleted;
    return true;
  }
  struct stat opened {};
  if (!dir || ::fstat(dir.get(), &opened) != 0 || opened.st_dev != trash_dev) {
    note(report.problem, display, name, "cannot open (a mount point?)");
    ++report.left;
    return false;
  }
  const Drained drained = drain(dir.get(), trash, trash_dev, display + "/" + name, report.problem);
  report.deleted += drained.deleted;
  bool progress = drained.deleted > 0 || drained.moved > 0;
  if (::unlinkat(trash, name, AT_REMOVEDIR) == 0) {
    ++report.deleted;
    progress = true;
  } else {
    ++report.left;
  }
  return progress;
}

}  // namespace

StorageRoot::StorageRoot(std::string path, bool create) : path_(std::move(path)) {
  if (create) {
    // Root's alone: the backing files keep their apps' owners and modes.
    if (auto err = common::make_dirs(path_, 0700); !err.empty()) {
      throw ProvisionError(path_ + ": cannot create the storage root: " + err);
    }
  }
  fd_.reset(::open(path_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd_) fail(path_, "cannot open the storage root", errno);
}

std::string StorageRoot::display(const std::vector<std::string>& components) const {
  std::string out = path_;
  for (const auto& c : components) out += "/" + c;
  return out;
}

Ensured ensure_dir(const StorageRoot& root, const std::vector<std::string>& components, const LeafSpec& leaf) {
  if (components.empty()) throw ProvisionError(root.path() + ": refusing to provision the storage root itself");
  const std::size_t last = components.size() - 1;
  UniqueFd parent = walk(root, components, last, /*create=*/true);
  check_component(root, components, last);
  const std::string display = root.display(components);
  const std::string& name = components[last];

  constexpr int kOpenFlags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
  Ensured out;
  UniqueFd fd(::openat(parent.get(), name.c_str(), kOpenFlags));
  if (!fd && errno == ENOENT) {
    out.created = make_leaf(root, parent.get(), name, leaf, display);
    fd.reset(::openat(parent.get(), name.c_str(), kOpenFlags));
  }
  if (!fd) {
    if (errno == ELOOP || errno == ENOTDIR) refuse_not_dir(display);
    fail(display, "cannot open", errno);
  }
  if (out.created) return out;
  if (struct stat st {}; ::fstat(fd.get(), &st) == 0) out.existing_owner = policy::Owner{st.st_uid, st.st_gid};

  if (leaf.version_marker) {
    Marker marker = read_marker(fd.get(), display);
    if (!marker.version && leaf.adopt_unmarked && marker.missing) return out;
    if (!marker.version) {
      // Unfinished (or tampered with): finish it as if it were new.
      set_up(fd.get(), leaf, display);
      out.repair = marker.problem;
      return out;
    }
    out.marker = std::move(marker.version);
  }
  if (leaf.chown_existing && leaf.owner && ::fchown(fd.get(), leaf.owner->uid, leaf.owner->gid) != 0) {
    fail(display, "cannot chown", errno);
  }
  return out;
}

bool move_to_trash(const StorageRoot& root, const std::vector<std::string>& components) {
  if (components.empty()) throw ProvisionError(root.path() + ": refusing to delete the storage root itself");
  const std::size_t last = components.size() - 1;
  UniqueFd parent = walk(root, components, last, /*create=*/false);
  if (!parent) return false;
  check_component(root, components, last);
  UniqueFd trash = open_trash(root, /*create=*/true);
  const int err = rename_into_trash(parent.get(), components[last].c_str(), trash.get());
  if (err == ENOENT) return false;
  if (err == EXDEV || err == EBUSY) {
    throw ProvisionError(root.display(components) + ": is another file system (a mount point); unmount it first");
  }
  if (err != 0) fail(root.display(components), "cannot move to " + root.display(trash_components()), err);
  return true;
}

TrashReport empty_trash(const StorageRoot& root, const std::function<bool()>& keep_going) {
  TrashReport report;
  UniqueFd trash = open_trash(root, /*create=*/false);
  if (!trash) return report;
  const std::string display = root.display(trash_components());
  struct stat trash_st {};
  if (::fstat(trash.get(), &trash_st) != 0) fail(display, "cannot stat", errno);

  // Passes over the top level until it is empty or a pass changes nothing. A pass that meets no
  // entry ends it too: entries moved up during a pass may not show in it.
  for (bool progress = true, seen = true; progress && seen;) {
    progress = false;
    seen = false;
    report.left = 0;
    DIR* top = list_from_start(trash.get(), display);
    while (const dirent* entry = ::readdir(top)) {
      if (keep_going && !keep_going()) {
        ::closedir(top);
        return report;
      }
      const char* name = entry->d_name;
      if (std::strcmp(name, ".") == 0 || std::strcmp(name, "..") == 0) continue;
      seen = true;
      if (empty_entry(trash.get(), trash_st.st_dev, name, display, report)) progress = true;
    }
    ::closedir(top);
  }
  return report;
}

bool trash_pending(const StorageRoot& root) {
  UniqueFd trash = open_trash(root, /*create=*/false);
  if (!trash) return false;
  const int dup_fd = ::fcntl(trash.get(), F_DUPFD_CLOEXEC, 0);
  DIR* dir = dup_fd < 0 ? nullptr : ::fdopendir(dup_fd);
  if (!dir) return false;
  bool any = false;
  while (const dirent* entry = ::readdir(dir)) {
    if (std::strcmp(entry->d_name, ".") != 0 && std::strcmp(entry->d_name, "..") != 0) {
      any = true;
      break;
    }
  }
  ::closedir(dir);
  return any;
}

bool dir_exists(const StorageRoot& root, const std::vector<std::string>& components) {
  try {
    UniqueFd fd = walk(root, components, components.size(), /*create=*/false);
    return fd.valid();
  } catch (const ProvisionError&) {
    return false;
  }
}

std::vector<std::string> app_dir_components(const std::string& app, const std::string& apps_dir) {
  return {apps_dir, app};
}

std::vector<std::string> data_dir_components(const std::string& app, const std::string& name,
                                             const std::string& apps_dir) {
  std::vector<std::string> out = app_dir_components(app, apps_dir);
  for (auto& segment : split_path(name)) out.push_back(std::move(segment));
  return out;
}

std::vector<std::string> share_dir_components(const std::string& share) { return {"shared", share}; }

std::vector<std::string> storage_dir_components(const std::string& name) { return {"storage", name}; }

std::vector<std::string> trash_components() { return {kTrash}; }

std::vector<std::string> share_trash_components(const std::string& share) { return {policy::kShareTrashDir, share}; }

bool displayable_version(std::string_view text) {
  for (std::size_t i = 0; i < text.size();) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c < 0x20 || c == 0x7f) return false;
    std::size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 0;
    if (len == 0 || i + len > text.size()) return false;
    for (std::size_t k = 1; k < len; ++k) {
      if ((static_cast<unsigned char>(text[i + k]) & 0xc0) != 0x80) return false;
    }
    // Overlong forms, surrogates and values past U+10FFFF: not UTF-8 either.
    if (len == 2 && c < 0xc2) return false;
    if (len == 3) {
      const auto d = static_cast<unsigned char>(text[i + 1]);
      if ((c == 0xe0 && d < 0xa0) || (c == 0xed && d >= 0xa0)) return false;
    }
    if (len == 4) {
      const auto d = static_cast<unsigned char>(text[i + 1]);
      if ((c == 0xf0 && d < 0x90) || c > 0xf4 || (c == 0xf4 && d >= 0x90)) return false;
    }
    // C1 controls (U+0080..U+009F) are terminal controls too.
    if (len == 2 && c == 0xc2 && static_cast<unsigned char>(text[i + 1]) < 0xa0) return false;
    i += len;
  }
  return true;
}

}  // namespace portalfs::mountmgr
