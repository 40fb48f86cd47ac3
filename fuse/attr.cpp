// SPDX-License-Identifier: MIT
#include "fuse/attr.hpp"

#include <linux/securebits.h>
#include <sys/prctl.h>
#include <sched.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <string>
#include <vector>

#include "common/log.hpp"

namespace portalfs::fuse {

struct stat present(const View& view, const struct stat& backing) {
  struct stat st = backing;
  const auto& ids = view.spec.ids;
  if (ids.squash) {
    st.st_uid = ids.squash->present_uid;
    st.st_gid = ids.squash->present_gid;
    if (ids.squash->writable_by_all && (S_ISDIR(st.st_mode) || S_ISREG(st.st_mode))) {
      st.st_mode |= S_ISDIR(st.st_mode) ? 0777 : 0666;
    }
  } else {
    st.st_uid = ids.uids.present(backing.st_uid);
    st.st_gid = ids.gids.present(backing.st_gid);
  }
  if (view.is_shared()) st.st_mode &= ~(S_ISUID | S_ISGID);
  return st;
}

mode_t allowed_mode(const View& view, mode_t mode, bool records) {
  if (view.is_shared() || !records) mode &= ~(S_ISUID | S_ISGID);
  return mode;
}

std::optional<mode_t> without_setid(const struct stat& st) {
  if (!S_ISREG(st.st_mode) || !(st.st_mode & (S_ISUID | S_ISGID))) return std::nullopt;
  return st.st_mode & 07777 & ~(S_ISUID | S_ISGID);
}

std::optional<DiskOwner> creator(const View& view, uid_t host_uid, gid_t host_gid) {
  const auto& ids = view.spec.ids;
  if (ids.squash) return DiskOwner{ids.squash->store_uid, ids.squash->store_gid};
  auto uid = ids.uids.to_disk(host_uid);
  auto gid = ids.gids.to_disk(host_gid);
  if (!uid || !gid) return std::nullopt;
  return DiskOwner{*uid, *gid};
}

bool creatable_without_setuid(const DiskOwner& owner) {
  if (owner.uid != ::geteuid()) return false;
  if (owner.gid == ::getegid()) return true;
  std::vector<gid_t> groups(static_cast<size_t>(std::max(0, ::getgroups(0, nullptr))));
  int n = ::getgroups(static_cast<int>(groups.size()), groups.data());
  for (int i = 0; i < n; ++i) {
    if (groups[static_cast<size_t>(i)] == owner.gid) return true;
  }
  return false;
}

int refuse_owner(const View& view, const DiskOwner& owner, const char* op) {
  const std::string where = view.spec.app + "/" + view.spec.dir_name;
  common::log_once(common::LogLevel::warn, "owner:" + where,
                   std::string(op) + " in view " + where + " refused (EPERM): it would be made as " +
                       std::to_string(owner.uid) + ":" + std::to_string(owner.gid) +
                       ", and this daemon (uid " + std::to_string(::geteuid()) +
                       ", not root) can only make files as its own user",
                   {view.spec.app, view.spec.dir_name, op, EPERM});
  return EPERM;
}

std::optional<uid_t> chown_uid(const View& view, uid_t host_id) {
  const auto& ids = view.spec.ids;
  if (ids.squash) {
    if (host_id != ids.squash->present_uid) return std::nullopt;
    return ids.squash->store_uid;
  }
  return ids.uids.to_disk(host_id);
}

std::optional<gid_t> chown_gid(const View& view, gid_t host_id) {
  const auto& ids = view.spec.ids;
  if (ids.squash) {
    if (host_id != ids.squash->present_gid) return std::nullopt;
    return ids.squash->store_gid;
  }
  return ids.gids.to_disk(host_id);
}

namespace {
// Once per thread: keep capabilities when fsuid leaves 0 (see FsCredsGuard). Needs
// CAP_SETPCAP, which the daemon has as root; without it creation still works, but the
// backing file system re-checks permissions as the new owner.
void keep_caps_on_fsuid_change() {
  thread_local bool done = false;
  if (done) return;
  done = true;
  int bits = ::prctl(PR_GET_SECUREBITS);
  if (bits >= 0 && !(bits & SECBIT_NO_SETUID_FIXUP)) {
    ::prctl(PR_SET_SECUREBITS, bits | SECBIT_NO_SETUID_FIXUP);
  }
  // The kernel already applied the caller's umask to the mode it sends; the daemon's own
  // umask must not apply a second time. umask is per process, so give this thread its own.
  if (::unshare(CLONE_FS) == 0) ::umask(0);
}
}  // namespace

FsCredsGuard::FsCredsGuard(uid_t uid, gid_t gid) {
  keep_caps_on_fsuid_change();
  // setfsgid first: with fsuid still 0 the change is always permitted.
  old_gid_ = static_cast<gid_t>(::syscall(SYS_setfsgid, gid));
  old_uid_ = static_cast<uid_t>(::syscall(SYS_setfsuid, uid));
}

FsCredsGuard::~FsCredsGuard() {
  ::syscall(SYS_setfsuid, old_uid_);
  ::syscall(SYS_setfsgid, old_gid_);
}

}  // namespace portalfs::fuse
