// SPDX-License-Identifier: MIT
#include "fuse/privileges.hpp"

#include <fcntl.h>
#include <linux/capability.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace portalfs::fuse {

namespace {

bool effective(int cap) {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2] = {};
  if (::syscall(SYS_capget, &header, data) != 0) return false;
  return data[cap / 32].effective & (1u << (cap % 32));
}

// Tried for real on the root directory's own handle: the rule is not only a capability (a
// user namespace's CAP_DAC_READ_SEARCH serves for its own mounts alone, fs/fhandle.c). A file
// system that gives "/" no handle leaves the capability to tell.
bool may_decode_handles() {
  struct {
    struct file_handle fh;
    unsigned char bytes[MAX_HANDLE_SZ];
  } buf{};
  buf.fh.handle_bytes = MAX_HANDLE_SZ;
  int mount_id = 0;
  if (::name_to_handle_at(AT_FDCWD, "/", &buf.fh, &mount_id, 0) != 0) return effective(CAP_DAC_READ_SEARCH);
  int root = ::open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (root < 0) return effective(CAP_DAC_READ_SEARCH);
  int fd = ::open_by_handle_at(root, &buf.fh, O_PATH | O_CLOEXEC);
  const bool ok = fd >= 0 || errno != EPERM;
  if (fd >= 0) ::close(fd);
  ::close(root);
  return ok;
}

}  // namespace

Privileges Privileges::probe() {
  Privileges p;
  p.decode_handles = may_decode_handles();
  p.sys_admin = effective(CAP_SYS_ADMIN);
  p.other_owners = effective(CAP_SETUID) && effective(CAP_CHOWN);
  p.allow_other = ::geteuid() == 0;
  return p;
}

std::vector<std::string> Privileges::missing() const {
  std::vector<std::string> out;
  if (!decode_handles) {
    out.emplace_back(
        "no CAP_DAC_READ_SEARCH: every file the kernel caches keeps an fd open (the open-file "
        "limit bounds them), and no change events reach sibling views or come from the host "
        "(run as root for them)");
  }
  if (!sys_admin) {
    out.emplace_back(
        "no CAP_SYS_ADMIN: no kernel passthrough (the daemon serves every read and write), and "
        "which app made a shared view's file is not recorded (trusted.* xattrs): in the grant "
        "modes that protect others' files every file counts as another's");
  }
  if (!other_owners) {
    out.emplace_back("no CAP_SETUID/CAP_CHOWN: files are created as uid " + std::to_string(::geteuid()) +
                     " only; a create as any other owner (a view's id map or squash) and chown "
                     "to another owner fail with EPERM");
  }
  if (!allow_other) {
    out.emplace_back("not root: mounted through fusermount3 without allow_other; only uid " +
                     std::to_string(::geteuid()) + " (and its rootless containers) can use the mount");
  }
  return out;
}

}  // namespace portalfs::fuse
