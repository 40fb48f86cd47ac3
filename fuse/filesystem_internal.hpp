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

struct Filesystem::SynthInode : Inode {
  std::string path;
};

// A path naming the inode of `fd` itself, for the syscalls without an *at form (xattrs): its
// /proc/self/fd entry (for a symlink's O_PATH fd, the link).
using common::proc_path;

// The handle of an echo's open that shares a passthrough backing (ops_file.cpp, echo_backing):
// no FileHandle behind it, as 0 is a plain echo's. No FileHandle is at address 1.
constexpr uint64_t kEchoBacked = 1;

/// The FileHandle of an open file, or null for an echo's handle.
inline FileHandle* handle_of(const fuse_file_info* fi) {
  return fi && fi->fh != 0 && fi->fh != kEchoBacked ? reinterpret_cast<FileHandle*>(fi->fh) : nullptr;
}

inline FileHandle* file_of(const fuse_file_info* fi) {
  return reinterpret_cast<FileHandle*>(fi->fh);
}

}  // namespace portalfs::fuse
