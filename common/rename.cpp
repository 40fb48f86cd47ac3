// SPDX-License-Identifier: MIT
#include "common/rename.hpp"

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

namespace portalfs::common {

namespace {

// The fallback for a file system without rename flags (rename.hpp says why it is safe).
int rename_noreplace_emulated(int olddirfd, const char* oldname, int newdirfd, const char* newname) {
  struct stat st {};
  if (::fstatat(olddirfd, oldname, &st, AT_SYMLINK_NOFOLLOW) != 0) return errno;
  if (!S_ISDIR(st.st_mode)) {
    if (::linkat(olddirfd, oldname, newdirfd, newname, 0) != 0) return errno;
    if (::unlinkat(olddirfd, oldname, 0) != 0) {
      const int err = errno;
      ::unlinkat(newdirfd, newname, 0);  // back to one name: the old one
      return err;
    }
    return 0;
  }
  struct stat existing {};
  if (::fstatat(newdirfd, newname, &existing, AT_SYMLINK_NOFOLLOW) == 0) return EEXIST;
  if (errno != ENOENT) return errno;
  if (::renameat(olddirfd, oldname, newdirfd, newname) != 0) return errno == ENOTEMPTY ? EEXIST : errno;
  return 0;
}

}  // namespace

int rename_noreplace(int olddirfd, const char* oldname, int newdirfd, const char* newname) {
  if (::renameat2(olddirfd, oldname, newdirfd, newname, RENAME_NOREPLACE) == 0) return 0;
  if (errno != EINVAL) return errno;
  // EINVAL is also a rename of a directory into itself: the fallback's renameat says so again.
  return rename_noreplace_emulated(olddirfd, oldname, newdirfd, newname);
}

}  // namespace portalfs::common
