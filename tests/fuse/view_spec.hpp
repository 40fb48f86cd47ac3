// SPDX-License-Identifier: MIT
#pragma once

// A view spec over a test's storage directory, for the fuse unit tests.

#include <string>

#include "policy/view_spec.hpp"

namespace portalfs::fuse::testing {

inline policy::ViewSpec view_spec(const std::string& storage, const std::string& app, policy::GrantKind kind,
                                  const std::string& name, const std::string& backing, policy::Access access) {
  policy::ViewSpec v;
  v.app = app;
  v.kind = kind;
  v.dir_name = name;
  v.backing = storage + "/" + backing;
  v.anchor = storage;
  v.access = access;
  return v;
}

}  // namespace portalfs::fuse::testing
