# SPDX-License-Identifier: MIT
# Every dependency comes from Debian 12's packages (see .ci/run for the package names).
find_package(PkgConfig REQUIRED)
pkg_check_modules(FUSE3 REQUIRED IMPORTED_TARGET fuse3>=3.14)
# FUSE over io_uring (fuse/uring.hpp): SQE128 and IORING_OP_URING_CMD came with liburing 2.2.
pkg_check_modules(LIBURING REQUIRED IMPORTED_TARGET liburing>=2.2)
# sd_notify(3) and the journal, for running under systemd.
pkg_check_modules(SYSTEMD REQUIRED IMPORTED_TARGET libsystemd)
find_package(nlohmann_json 3.10 REQUIRED)
find_package(Boost 1.74 REQUIRED COMPONENTS program_options)
find_package(GTest REQUIRED)
find_package(Threads REQUIRED)
find_package(yaml-cpp 0.7 REQUIRED)
