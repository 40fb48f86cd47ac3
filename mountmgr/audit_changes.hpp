// SPDX-License-Identifier: MIT
#pragma once

// The audit records of a committed change of the mount manager's state (common/audit.hpp):
// apps installed, upgraded and removed, grants given, changed and taken away (as the views
// served for them), shares created and removed. Derived from the states and views before and
// after the commit, in one place, so that every verb that changes them (app, compose, grant,
// revoke, storage:mount...) is recorded the same way.

#include <vector>

#include "common/audit.hpp"
#include "mountmgr/state.hpp"
#include "policy/view_spec.hpp"

namespace portalfs::mountmgr {

std::vector<common::AuditRecord> state_changes(const State& before, const State& after,
                                               const policy::ViewSpecs& views_before,
                                               const policy::ViewSpecs& views_after);

}  // namespace portalfs::mountmgr
