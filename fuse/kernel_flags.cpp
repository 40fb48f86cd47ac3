// SPDX-License-Identifier: MIT
// The kernel's own <asm/fcntl.h>, alone in this file: glibc's <fcntl.h> defines the same names
// (O_LARGEFILE as 0 on 64-bit targets) and the two can't be included together.
#include <asm/fcntl.h>

#include "fuse/kernel_flags.hpp"

namespace portalfs::fuse {

const int kKernelLargefile = O_LARGEFILE;

}  // namespace portalfs::fuse
