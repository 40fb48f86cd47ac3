// SPDX-License-Identifier: MIT
// Recorded attachments follow what their apps have now: after a daemon restart (heal) and after
// every commit that changes an app (a grant, a grant's new path, a revoke, an upgrade, a storage
// mount), each running container of the app gets the binds it is missing and loses those it no
// longer has, without a restart. One function does it for both (follow_attachments).

#include <algorithm>

#include "common/escape.hpp"
#include "common/log.hpp"
#include "mountmgr/manager_impl.hpp"
#include "mountmgr/paths.hpp"
#include "mountmgr/views.hpp"

namespace portalfs::mountmgr {
namespace {

bool has_target(const std::vector<Bind>& binds, const std::string& target) {
  return std::any_of(binds.begin(), binds.end(), [&](const Bind& b) { return b.target == target; });
}

bool has_bind(const std::vector<Bind>& binds, const Bind& bind) {
  return std::find(binds.begin(), binds.end(), bind) != binds.end();
}

/// The container work that takes an attachment from the binds it has to the binds its app has.
struct Plan {
  std::vector<Bind> stale;      // recorded binds at a target the app no longer has
  std::vector<Bind> to_attach;  // binds the app has, to attach (parents first)
  [[nodiscard]] bool empty() const { return stale.empty() && to_attach.empty(); }
};

/// A bind is attached when it is new or differs from the recorded one at its target (another
/// view, or read-only now), or lies below a target whose mount is detached or replaced: a
/// detach (MNT_DETACH, and attach_binds' replacing of what is mounted at its target) takes the
/// whole subtree along. With `remount_all`, every bind is.
Plan plan_for(const std::vector<Bind>& recorded, const std::vector<Bind>& now, bool remount_all) {
  Plan plan;
  std::vector<std::string> disturbed;
  for (const Bind& b : recorded) {
    if (has_target(now, b.target)) continue;
    plan.stale.push_back(b);
    disturbed.push_back(b.target);
  }
  for (const Bind& b : now) {
    if (remount_all || !has_bind(recorded, b)) disturbed.push_back(b.target);
  }
  for (const Bind& b : now) {
    if (std::any_of(disturbed.begin(), disturbed.end(), [&](const std::string& t) { return path_within(b.target, t); })) {
      plan.to_attach.push_back(b);
    }
  }
  return plan;
}

/// What bringing one attachment up to date came to.
struct Brought {
  std::optional<Attachment> record;  // what the container has now; nullopt: forget the attachment
  std::string problem;               // "" when it is what its app has
  bool worked = false;               // container work was done (and succeeded if problem is "")
};

/// Carries out `plan` in the container of `a` and says what it has afterwards. On a failure the
/// record keeps every bind that may still be mounted (a failed detach keeps its targets; a
/// failed attach keeps the recorded binds, whose targets differ from the app's and so are
/// tried again at the next change or heal) and the new targets a failed attach may have mounted
/// are detached again, so that the record never misses a mount: detach relies on it.
Brought carry_out(const AttachOps& ops, const Attachment& a, const std::vector<Bind>& now, const Plan& plan) {
  const ProcessIdentity& process = *a.process;
  std::vector<std::string> problems;
  bool detached = true;
  if (!plan.stale.empty()) {
    try {
      ops.detach(process, detach_targets(plan.stale));
    } catch (const std::runtime_error& e) {
      problems.emplace_back(e.what());
      detached = false;
    }
  }
  bool attached = true;
  try {
    if (!plan.to_attach.empty()) ops.attach(process, plan.to_attach);
  } catch (const std::runtime_error& e) {
    problems.emplace_back(e.what());
    attached = false;
    std::vector<Bind> fresh;
    for (const Bind& b : plan.to_attach) {
      if (!has_target(a.binds, b.target)) fresh.push_back(b);
    }
    if (!fresh.empty()) {
      try {
        ops.detach(process, detach_targets(fresh));
      } catch (const std::runtime_error& undo) {
        problems.push_back(std::string("undoing: ") + undo.what());
      }
    }
  }

  Attachment record{a.app, a.pid, attached ? now : std::vector<Bind>{}, a.process};
  if (!attached) {
    for (const Bind& b : a.binds) {
      if (!detached || !has_bind(plan.stale, b)) record.binds.push_back(b);
    }
  } else if (!detached) {
    record.binds.insert(record.binds.end(), plan.stale.begin(), plan.stale.end());
  }
  std::string problem;
  for (const auto& p : problems) problem += (problem.empty() ? "" : "; ") + p;
  return {std::move(record), std::move(problem), true};
}

/// Brings the container of `a` to what its app has now (`app`; nullptr when it is gone: then
/// its views are unmounted from the container, and the attachment is forgotten).
Brought bring_up_to_date(const Manager::Impl& mgr, const Attachment& a, const AppRecord* app, bool remount_all) {
  // Never touch a process that merely has the recorded pid: it may be another container's, and
  // would get (or lose) this app's views.
  const std::string why = not_the_recorded_process(a, mgr.config.attach_ops);
  if (!why.empty()) {
    common::log(common::LogLevel::info,
                "forgetting the attachment of " + a.app + " to pid " + std::to_string(a.pid) + ": " + why);
    return {};
  }
  if (!app) {
    const std::string problem = carry_out(mgr.config.attach_ops, a, {}, plan_for(a.binds, {}, false)).problem;
    common::log(common::LogLevel::info, "app " + a.app + " removed: its views are unmounted from pid " +
                                            std::to_string(a.pid) + (problem.empty() ? "" : " (" + problem + ")"));
    return {};  // nothing left to follow
  }
  const std::vector<Bind> now = app_binds(mgr.config.mountpoint, a.app, *app);
  const Plan plan = plan_for(a.binds, now, remount_all);
  if (plan.empty() && !remount_all) return {a, "", false};
  return carry_out(mgr.config.attach_ops, a, now, plan);
}

}  // namespace

std::string Manager::Impl::AttachmentProblem::line() const {
  return "app " + app + ", pid " + std::to_string(pid) +
         ": container not brought up to date: " + common::escape_for_message(why);
}

Manager::Impl::Followed Manager::Impl::follow_attachments(const std::function<bool(const Attachment&)>& which,
                                                          bool remount_all) {
  Followed followed;
  State next = state;
  next.attachments.clear();
  for (const Attachment& a : state.attachments) {
    if (!which(a)) {
      next.attachments.push_back(a);
      continue;
    }
    const auto app = state.apps.find(a.app);
    Brought b = bring_up_to_date(*this, a, app == state.apps.end() ? nullptr : &*app->second, remount_all);
    if (!b.record) continue;
    if (!b.problem.empty()) {
      AttachmentProblem problem{a.app, a.pid, std::move(b.problem)};
      common::log(common::LogLevel::warn, problem.line());
      followed.problems.push_back(std::move(problem));
    } else if (b.worked) {
      ++followed.brought;
    }
    next.attachments.push_back(std::move(*b.record));
  }
  if (next == state) return followed;
  // The containers are as recorded here, saved or not: the state in memory says so, and the
  // worker saves it once it can.
  try {
    save(next);
  } catch (const StateError& e) {
    common::log(common::LogLevel::error, std::string("after bringing attachments up to date: ") + e.what());
    unsaved = e.what();
  }
  state = std::move(next);
  return followed;
}

int Manager::Impl::heal() {
  return follow_attachments([](const Attachment&) { return true; }, /*remount_all=*/true).brought;
}

std::vector<Manager::Impl::AttachmentProblem> Manager::Impl::follow_grants(uint64_t ticket) {
  std::lock_guard lock(mutex);
  // A later commit's views may not be served yet (its delivery waits for this one): its request
  // brings the containers of both up to date.
  if (ticket != tickets_issued || apps_to_follow.empty()) return {};
  const std::set<std::string> apps = std::move(apps_to_follow);
  apps_to_follow.clear();
  Followed followed = follow_attachments([&](const Attachment& a) { return apps.contains(a.app); }, false);
  if (!unsaved.empty()) start_worker();
  return std::move(followed.problems);
}

}  // namespace portalfs::mountmgr
