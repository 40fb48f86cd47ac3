// SPDX-License-Identifier: MIT
#include "mountmgr/share_trash.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "common/beneath.hpp"
#include "common/rename.hpp"
#include "mountmgr/paths.hpp"
#include "mountmgr/request.hpp"

namespace portalfs::mountmgr {
namespace {

using common::UniqueFd;

constexpr std::size_t kMaxRecordBytes = 64 * 1024;

[[noreturn]] void fail(const std::string& path, const std::string& what, int err) {
  throw ProvisionError(path + ": " + what + ": " + std::strerror(err));
}

// Reads the slot's record into `item` (or says what is wrong with it).
void read_record(int slot_fd, TrashItem& item) {
  UniqueFd fd(::openat(slot_fd, policy::kTrashRecord, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
  struct stat st {};
  if (!fd || ::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > static_cast<off_t>(kMaxRecordBytes)) {
    item.problem = std::string(policy::kTrashRecord) + " missing or not a small regular file";
    return;
  }
  std::string text(static_cast<std::size_t>(st.st_size), '\0');
  if (::read(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size())) {
    item.problem = std::string(policy::kTrashRecord) + ": cannot read";
    return;
  }
  std::string problem;
  item.record = policy::parse_trash_record(text, &problem);
  if (!item.record) item.problem = std::string(policy::kTrashRecord) + ": " + problem;
}

void list_one(const StorageRoot& root, const std::string& share, std::vector<TrashItem>& out) {
  const auto components = share_trash_components(share);
  common::WalkFailure failure;
  auto dir = common::open_beneath(root.fd(), components, O_RDONLY, &failure);
  if (!dir) {
    if (failure.err == ENOENT) return;  // nothing was ever trashed there
    throw ProvisionError(common::describe_walk_failure(root.path(), components, failure));
  }
  const int dir_fd = dir->get();
  DIR* d = ::fdopendir(::dup(dir_fd));
  if (!d) fail(root.display(components), "cannot list", errno);
  while (const dirent* e = ::readdir(d)) {
    if (!policy::valid_trash_id(e->d_name)) continue;  // not a slot (".", "..", anything else)
    TrashItem item{share, e->d_name, std::nullopt, "", 0};
    UniqueFd slot(::openat(dir_fd, e->d_name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    struct stat st {};
    if (!slot || ::fstat(slot.get(), &st) != 0) continue;
    read_record(slot.get(), item);
    if (item.record && ::fstatat(slot.get(), policy::kTrashEntry, &st, AT_SYMLINK_NOFOLLOW) != 0) {
      item.problem = "incomplete: no entry";  // the delete was interrupted before its rename
    }
    item.deleted_at = item.record ? item.record->deleted_at : st.st_mtim.tv_sec;
    out.push_back(std::move(item));
  }
  ::closedir(d);
}

std::string where(const TrashItem& item, const std::string& path) {
  return "share " + item.share + ": " + path;
}

}  // namespace

std::vector<TrashItem> list_share_trash(const StorageRoot& root, const std::vector<std::string>& shares) {
  std::vector<TrashItem> out;
  for (const auto& share : shares) list_one(root, share, out);
  std::stable_sort(out.begin(), out.end(), [](const TrashItem& a, const TrashItem& b) {
    return a.deleted_at != b.deleted_at ? a.deleted_at < b.deleted_at : a.id < b.id;
  });
  return out;
}

void restore_share_trash(const StorageRoot& root, const TrashItem& item, const std::string& path) {
  std::vector<std::string> parts = split_path(path);
  for (const auto& p : parts) {
    if (!common::valid_component(p)) {
      refuse("trash restore: expected a path relative to the share (no empty, . or .. part), got " + describe_json(path));
    }
  }
  const std::string leaf = parts.back();
  parts.pop_back();
  std::vector<std::string> parent_components = share_dir_components(item.share);
  parent_components.insert(parent_components.end(), parts.begin(), parts.end());
  common::WalkFailure failure;
  auto parent = common::open_beneath(root.fd(), parent_components, O_PATH, &failure);
  if (!parent && failure.err == ENOENT) {
    refuse("trash restore: " + where(item, path) + ": its directory " + root.display(parent_components) +
           " does not exist; restore that directory first (portalctl trash list " + item.share +
           ") or give another place with --to PATH");
  }
  if (!parent) refuse("trash restore: " + common::describe_walk_failure(root.path(), parent_components, failure));

  const auto slot_components = [&] {
    auto c = share_trash_components(item.share);
    c.push_back(item.id);
    return c;
  }();
  auto slot = common::open_beneath(root.fd(), slot_components, O_PATH, &failure);
  if (!slot) throw ProvisionError(common::describe_walk_failure(root.path(), slot_components, failure));
  if (int err = common::rename_noreplace(slot->get(), policy::kTrashEntry, parent->get(), leaf.c_str()); err != 0) {
    if (err == EEXIST) {
      refuse("trash restore: " + where(item, path) + " exists; move it away first, or restore to another path with --to PATH");
    }
    fail(root.display(slot_components) + "/" + policy::kTrashEntry, "cannot move back to " + where(item, path), err);
  }
  // The entry is back: the slot's record goes with the slot.
  ::unlinkat(slot->get(), policy::kTrashRecord, 0);
  auto trash_dir = common::open_beneath(root.fd(), share_trash_components(item.share), O_PATH, &failure);
  if (trash_dir) ::unlinkat(trash_dir->get(), item.id.c_str(), AT_REMOVEDIR);
}

std::size_t purge_share_trash(const StorageRoot& root, const std::vector<TrashItem>& items) {
  std::size_t moved = 0;
  for (const auto& item : items) {
    auto components = share_trash_components(item.share);
    components.push_back(item.id);
    if (move_to_trash(root, components)) ++moved;
  }
  return moved;
}

}  // namespace portalfs::mountmgr
