// SPDX-License-Identifier: MIT
#pragma once

// The libfuse API portalfs is written against: the low-level API of libfuse 3.12+ (Debian 12
// ships 3.14). Every file that needs libfuse includes this one, so the version is set once.

#define FUSE_USE_VERSION FUSE_MAKE_VERSION(3, 12)
#include <fuse_lowlevel.h>
