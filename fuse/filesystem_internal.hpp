// SPDX-License-Identifier: MIT
#pragma once

// Pieces shared by the ops_*.cpp files; not part of the library's interface.

#include <dirent.h>

#include <mutex>
#include <string>
#include <vector>

#include "fuse/filesystem.hpp"

namespace portalfs::fuse {

struct DirEntry {
  std::string name;
  ino_t ino;
  mode_t type;  // S_IFMT bits
};

struct DirHandle {
  std::mutex mutex;  // the kernel may call readdir on one handle from two threads
  Inode* inode = nullptr;
  DIR* dir = nullptr;          // a backed directory
  off_t offset = 0;
  struct dirent* entry = nullptr;
  std::vector<DirEntry> synth;  // a synthetic directory's listing, taken at opendir
  DirHandle() = default;
  DirHandle(const DirHandle&) = delete;
  DirHandle& operator=(const DirHandle&) = delete;
  ~DirHandle() {
    if (dir) ::closedir(dir);
  }
};

struct Filesystem::SynthInode : Inode {
  std::string path;
};

inline FileHandle* file_of(const fuse_file_info* fi) {
  return reinterpret_cast<FileHandle*>(fi->fh);
}
inline DirHandle* dir_of(const fuse_file_info* fi) {
  return reinterpret_cast<DirHandle*>(fi->fh);
}

/// Replies with an errno.
inline void reply_err(fuse_req_t req, int err) { fuse_reply_err(req, err); }

}  // namespace portalfs::fuse
