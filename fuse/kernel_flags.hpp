// SPDX-License-Identifier: MIT
#pragma once

// Open flags as the kernel has them, where glibc's differ.

namespace portalfs::fuse {

/// The kernel's O_LARGEFILE. It sets it in the flags of every file opened by a 64-bit process
/// (force_o_largefile), so FUSE's OPEN and CREATE carry it, but glibc defines O_LARGEFILE as 0
/// on 64-bit targets: a mask built from <fcntl.h>'s O_LARGEFILE does not cover it.
extern const int kKernelLargefile;

}  // namespace portalfs::fuse
