// SPDX-License-Identifier: MIT
// docker-compose.yml.template -> ComposeApp. See policy/compose.hpp for the approach.

#include "policy/compose.hpp"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <map>

#include "policy/id_map.hpp"

namespace portalfs::policy {
namespace {

constexpr char kMask = 'Q';

// Every `{{ … }}` that opens and closes on one line, replaced by as many 'Q' as it has bytes.
std::string mask_jinja(std::string_view text) {
  std::string out(text);
  std::size_t at = 0;
  while ((at = out.find("{{", at)) != std::string::npos) {
    const std::size_t close = out.find("}}", at + 2);
    const std::size_t newline = out.find('\n', at);
    if (close == std::string::npos || (newline != std::string::npos && newline < close)) {
      at += 2;
      continue;
    }
    std::fill(out.begin() + static_cast<std::ptrdiff_t>(at),
              out.begin() + static_cast<std::ptrdiff_t>(close + 2), kMask);
    at = close + 2;
  }
  return out;
}

std::string trim(std::string_view s) {
  const auto b = s.find_first_not_of(" \t");
  if (b == std::string_view::npos) return "";
  const auto e = s.find_last_not_of(" \t");
  return std::string(s.substr(b, e - b + 1));
}

std::optional<uint32_t> parse_id(std::string_view s) {
  uint64_t v = 0;
  if (s.empty()) return std::nullopt;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || end != s.data() + s.size() || v > kMaxId) return std::nullopt;
  return static_cast<uint32_t>(v);
}

// "1000" | "1000:1000"; nullopt for a name or an expression. A uid alone gets gid = uid.
std::optional<Owner> parse_user(std::string_view s) {
  const auto colon = s.find(':');
  const auto uid = parse_id(s.substr(0, colon));
  if (!uid) return std::nullopt;
  if (colon == std::string_view::npos) return Owner{*uid, *uid};
  const auto gid = parse_id(s.substr(colon + 1));
  if (!gid) return std::nullopt;
  return Owner{*uid, *gid};
}

bool is_scalar(const YAML::Node& n) { return n.IsDefined() && n.IsScalar(); }

class ComposeReader {
 public:
  ComposeReader(std::string_view text, std::string masked, std::string_view source)
      : text_(text), masked_(std::move(masked)), source_(source) {}

  ComposeApp read(const YAML::Node& root) {
    if (!root.IsMap()) fail_doc("expected a mapping at the top of the document");
    const YAML::Node services = root["services"];
    if (!services.IsDefined() || services.IsNull()) fail_doc("expected a `services` mapping");
    if (!services.IsMap()) fail_at(services.Mark(), "expected `services` to be a mapping");
    ComposeApp app;
    for (const auto& item : services) {
      app.services.push_back(read_service(item.first.as<std::string>(), item.second));
    }
    return app;
  }

 private:
  [[noreturn]] void fail_doc(const std::string& problem) const {
    throw ManifestError(std::string(source_) + ": " + problem);
  }
  [[noreturn]] void fail_at(const YAML::Mark& mark, const std::string& problem) const {
    throw ManifestError(std::string(source_) + ":" + std::to_string(mark.line + 1) + ":" +
                        std::to_string(mark.column + 1) + ": " + problem);
  }

  ComposeService read_service(const std::string& name, const YAML::Node& node) {
    ComposeService service;
    service.name = name;
    if (node.IsNull()) return service;
    if (!node.IsMap()) fail_at(node.Mark(), "service " + name + ": expected a mapping");
    std::optional<Owner> from_user;
    if (const auto user = node["user"]; is_scalar(user)) from_user = parse_user(user.Scalar());
    service.user = from_user ? from_user : env_owner(node["environment"]);
    const YAML::Node volumes = node["volumes"];
    if (!volumes.IsDefined() || volumes.IsNull()) return service;
    if (!volumes.IsSequence()) fail_at(volumes.Mark(), "service " + name + ": expected `volumes` to be a list");
    std::size_t index = 0;
    for (const auto& entry : volumes) {
      service.volumes.push_back(read_volume(name, index++, entry));
    }
    return service;
  }

  // PUID / PGID from `environment` (a list of "K=V" or a mapping), when numeric.
  static std::optional<Owner> env_owner(const YAML::Node& env) {
    if (!env.IsDefined()) return std::nullopt;  // any other call on a missing node throws
    std::optional<std::string> puid, pgid;
    auto take = [&](const std::string& key, const std::string& value) {
      if (key == "PUID") puid = value;
      if (key == "PGID") pgid = value;
    };
    if (env.IsMap()) {
      for (const auto& item : env) {
        if (is_scalar(item.second)) take(item.first.as<std::string>(), item.second.Scalar());
      }
    } else if (env.IsSequence()) {
      for (const auto& item : env) {
        if (!is_scalar(item)) continue;
        const std::string& kv = item.Scalar();
        const auto eq = kv.find('=');
        if (eq != std::string::npos) take(kv.substr(0, eq), kv.substr(eq + 1));
      }
    }
    if (!puid) return std::nullopt;
    const auto uid = parse_id(*puid);
    if (!uid) return std::nullopt;
    const auto gid = pgid ? parse_id(*pgid) : uid;
    if (!gid) return std::nullopt;
    return Owner{*uid, *gid};
  }

  // The scalar's bytes in the original text and where they start, when they can be found
  // there (plain or quoted without escapes, on one line); nullopt otherwise.
  std::optional<std::size_t> raw_start(const YAML::Node& scalar) const {
    std::size_t start = static_cast<std::size_t>(scalar.Mark().pos);
    if (start < text_.size() && (text_[start] == '"' || text_[start] == '\'')) ++start;
    const std::string& value = scalar.Scalar();
    if (masked_.compare(start, value.size(), value) != 0) return std::nullopt;
    return start;
  }

  // A volume's source as the template has it.
  struct VolumeSource {
    std::string text;        // original bytes of the source
    std::size_t at = 0;      // its offset in the text
    bool exact = false;      // `text` is the original bytes (else the parsed value)
  };
  using Fail = std::function<void(const std::string&)>;  // throws ManifestError

  ComposeVolume read_volume(const std::string& service, std::size_t index, const YAML::Node& entry) {
    ComposeVolume v;
    v.index = index;
    v.line = static_cast<std::size_t>(entry.Mark().line + 1);
    v.column = static_cast<std::size_t>(entry.Mark().column + 1);
    auto where = [&]() {
      return "service " + service + ", volume " + std::to_string(index + 1) + " (\"" + v.text + "\")";
    };
    const Fail fail = [&](const std::string& problem) { fail_at(entry.Mark(), where() + ": " + problem); };

    VolumeSource source;
    if (entry.IsScalar()) {
      source = read_short_syntax(entry, v, fail);
    } else if (entry.IsMap()) {
      source = read_long_syntax(entry, v, fail);
    } else {
      fail("expected a string or a mapping");
    }
    read_source(source, v, fail);
    return v;
  }

  // SRC:DST[:MODE] | DST. A mediated source ends at the first ':' after its "}}".
  VolumeSource read_short_syntax(const YAML::Node& entry, ComposeVolume& v, const Fail& fail) {
    VolumeSource source;
    const auto start = raw_start(entry);
    const std::string& value = entry.Scalar();
    v.text = start ? std::string(text_.substr(*start, value.size())) : value;
    if (!start && value.find(std::string(2, kMask)) != std::string::npos) {
      fail("write a volume with a {{ }} variable on one line, without escapes");
    }
    const std::size_t close = v.text.starts_with("{{") ? v.text.find("}}") : std::string::npos;
    const std::size_t colon = v.text.find(':', close == std::string::npos ? 0 : close);
    if (colon == std::string::npos) {
      v.target = v.text;
    } else {
      source.text = v.text.substr(0, colon);
      const std::string rest = v.text.substr(colon + 1);
      const std::size_t colon2 = rest.find(':');
      v.target = rest.substr(0, colon2);
      if (colon2 != std::string::npos) {
        const std::string mode = rest.substr(colon2 + 1);
        if (mode.find(':') != std::string::npos) fail("expected SOURCE:TARGET[:MODE]");
        std::size_t b = 0;
        while (b <= mode.size()) {
          const std::size_t e = std::min(mode.find(',', b), mode.size());
          const std::string option = mode.substr(b, e - b);
          if (option == "ro") v.access = Access::read;
          if (option == "rw") v.access = Access::read_write;
          b = e + 1;
        }
      }
    }
    source.at = start.value_or(0);
    source.exact = start.has_value();
    return source;
  }

  // {type, source, target, read_only}.
  VolumeSource read_long_syntax(const YAML::Node& entry, ComposeVolume& v, const Fail& fail) {
    VolumeSource source;
    const YAML::Node type = entry["type"];
    const YAML::Node src = entry["source"];
    const YAML::Node target = entry["target"];
    const YAML::Node read_only = entry["read_only"];
    const std::string kind = is_scalar(type) ? type.Scalar() : "volume";
    if (!is_scalar(target)) {
      v.text = is_scalar(src) ? src.Scalar() : "";
      fail("expected a `target`");
    }
    v.target = target.Scalar();
    if (is_scalar(src)) {
      const auto start = raw_start(src);
      source.text = start ? std::string(text_.substr(*start, src.Scalar().size())) : src.Scalar();
      source.at = start.value_or(0);
      source.exact = start.has_value();
    }
    v.text = source.text + " -> " + v.target;
    if (read_only.IsDefined()) {
      bool ro = false;
      if (!is_scalar(read_only) || !YAML::convert<bool>::decode(read_only, ro)) {
        fail("expected `read_only` to be true or false");
      }
      v.access = ro ? Access::read : Access::read_write;
    }
    if (kind != "bind" && source.text.find("fs.") != std::string::npos && source.text.find("{{") != std::string::npos) {
      fail("an {{ fs.* }} source needs `type: bind`, got `type: " + kind + "`");
    }
    return source;
  }

  // The source: a host path (not mediated), or {{ fs.VAR }}[/SUB] (mediated); then the target.
  static void read_source(const VolumeSource& source_in, ComposeVolume& v, const Fail& fail) {
    const std::string& source = source_in.text;
    const std::size_t var_at = source.find("{{");
    const bool has_fs = var_at != std::string::npos &&
                        trim(source.substr(var_at + 2)).starts_with("fs.");
    if (!has_fs) {
      v.host_source = source;
      v.target = normalise_container_path(v.target);
      return;
    }
    if (var_at != 0) fail("an {{ fs.* }} variable must start the source");
    if (!source_in.exact) fail("write a volume with a {{ }} variable without escapes");
    const std::size_t close = source.find("}}");
    if (close == std::string::npos) fail("expected }} to close {{");
    const std::string var = trim(std::string_view(source).substr(2, close - 2));
    if (var == "fs.app_data") v.var = FsVar::app_data;
    else if (var == "fs.shared") v.var = FsVar::shared;
    else if (var == "fs.all_app_data") v.var = FsVar::all_app_data;
    else if (var == "fs.installation_dir") v.var = FsVar::installation_dir;
    else fail("unknown variable `" + var + "` (expected fs.app_data, fs.shared, fs.all_app_data or fs.installation_dir)");
    v.mediated = true;
    v.source_begin = source_in.at;
    v.source_end = source_in.at + source.size();
    v.sub = read_sub_path(std::string_view(source).substr(close + 2), fail);
    if (v.var == FsVar::shared && !v.sub.empty()) {
      const std::string share = v.sub.substr(0, v.sub.find('/'));
      if (auto expected = check_share_name(share)) fail(*expected);
    }
    v.target = normalise_container_path(v.target);
    if (auto expected = check_container_path(v.target)) fail("target: " + *expected);
  }

  // The sub-path after the variable: "" or "/seg[/seg…][/]", without the first '/' and a last one.
  static std::string read_sub_path(std::string_view sub, const Fail& fail) {
    if (!sub.empty() && sub.front() != '/') fail("expected '/' after the variable, got \"" + std::string(sub) + "\"");
    if (sub.size() > 1 && sub.back() == '/') sub.remove_suffix(1);
    if (sub == "/") sub = "";
    if (!sub.empty()) {
      sub.remove_prefix(1);
      for (std::size_t b = 0; b <= sub.size();) {
        const std::size_t e = std::min(sub.find('/', b), sub.size());
        const std::string_view seg = sub.substr(b, e - b);
        if (seg.empty() || seg == "." || seg == "..") {
          fail("the sub-path must not have empty, \".\" or \"..\" segments");
        }
        if (std::any_of(seg.begin(), seg.end(), [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; })) {
          fail("the sub-path must not have control characters");
        }
        b = e + 1;
      }
    }
    return std::string(sub);
  }

  std::string_view text_;
  std::string masked_;
  std::string_view source_;
};

}  // namespace

const char* to_string(FsVar var) {
  switch (var) {
    case FsVar::app_data: return "fs.app_data";
    case FsVar::shared: return "fs.shared";
    case FsVar::all_app_data: return "fs.all_app_data";
    case FsVar::installation_dir: return "fs.installation_dir";
  }
  return "?";
}

ComposeApp parse_compose(std::string_view text, std::string_view source) {
  std::string masked = mask_jinja(text);
  YAML::Node root;
  try {
    root = YAML::Load(masked);
  } catch (const YAML::Exception& e) {
    throw ManifestError(std::string(source) + ":" + std::to_string(e.mark.line + 1) + ":" +
                        std::to_string(e.mark.column + 1) + ": " + e.msg);
  }
  try {
    return ComposeReader(text, std::move(masked), source).read(root);
  } catch (const YAML::Exception& e) {  // a conversion on a malformed node
    throw ManifestError(std::string(source) + ":" + std::to_string(e.mark.line + 1) + ":" +
                        std::to_string(e.mark.column + 1) + ": " + e.msg);
  }
}

std::string render_compose(std::string_view text, const ComposeApp& app,
                           const std::function<std::string(const ComposeService&, const ComposeVolume&)>& view_path) {
  struct Cut {
    std::size_t begin, end;
    std::string with;
  };
  std::vector<Cut> cuts;
  for (const auto& s : app.services) {
    for (const auto& v : s.volumes) {
      if (v.mediated) cuts.push_back({v.source_begin, v.source_end, view_path(s, v)});
    }
  }
  std::sort(cuts.begin(), cuts.end(), [](const Cut& a, const Cut& b) { return a.begin < b.begin; });
  std::string out;
  std::size_t at = 0;
  for (const auto& c : cuts) {
    out.append(text.substr(at, c.begin - at));
    out += c.with;
    at = c.end;
  }
  out.append(text.substr(at));
  return out;
}

std::string service_app_id(std::string_view app, std::string_view service, std::string_view source) {
  std::string id = std::string(app) + "--" + app_id_from_name(service);
  if (app_id_from_name(service).empty() || check_app_name(id).has_value()) {
    throw ManifestError(std::string(source) + ": service " + std::string(service) + ": \"" + id +
                        "\" is not a valid app id for it (" + *check_app_name(id) + ")");
  }
  return id;
}

namespace {

// One line naming the volume (file:line:column, service, its number and text) and the problem.
ManifestError volume_error(std::string_view source, const ComposeService& s, const ComposeVolume& v,
                           const std::string& problem) {
  return ManifestError(std::string(source) + ":" + std::to_string(v.line) + ":" + std::to_string(v.column) +
                       ": service " + s.name + ", volume " + std::to_string(v.index + 1) + " (\"" + v.text +
                       "\"): " + problem);
}

// The grant a mediated volume asks for: which view (data, shared or host directory), with the
// template's access unless the operator's rules for the share say otherwise.
PlannedVolume plan_volume(const ComposeService& s, const ComposeVolume& v, const ComposePlanOptions& options,
                          std::string_view source) {
  PlannedVolume pv;
  pv.volume = &v;
  pv.grant.container_path = v.target;
  pv.grant.access = v.access;
  switch (v.var) {
    case FsVar::app_data:
      if (v.sub.empty()) {
        // The app's whole directory, its data dirs and anything else in it.
        pv.grant.kind = GrantKind::host;
        pv.grant.name = options.storage_root + "/" + options.apps_dir + "/" + options.app;
        break;
      }
      pv.grant.kind = GrantKind::data;
      pv.grant.name = v.sub;
      pv.grant.owner = s.user;
      break;
    case FsVar::shared: {
      const auto slash = v.sub.find('/');
      if (slash != std::string::npos) pv.deeper = v.sub.substr(slash + 1);
      if (v.sub.empty() || !pv.deeper.empty()) {
        // Every share, or a folder inside one: a view of that host directory.
        pv.grant.kind = GrantKind::host;
        pv.grant.name = options.storage_root + "/shared" + (v.sub.empty() ? "" : "/" + v.sub);
        break;
      }
      pv.grant.kind = GrantKind::shared;
      pv.grant.name = v.sub;
      pv.grant.owner = s.user;
      break;
    }
    case FsVar::installation_dir:
      pv.grant.kind = GrantKind::host;
      pv.grant.name = options.installation_dir + (v.sub.empty() ? "" : "/" + v.sub);
      pv.grant.access = Access::read;
      break;
    case FsVar::all_app_data:
      if (!options.allow_all_app_data) {
        throw volume_error(source, s, v,
                           "{{ fs.all_app_data }} gives every app's data; allow it with --allow-all-app-data");
      }
      pv.grant.kind = GrantKind::host;
      pv.grant.name = options.storage_root + "/" + options.apps_dir + (v.sub.empty() ? "" : "/" + v.sub);
      break;
  }
  if (v.var == FsVar::shared) {
    // The operator's word wins over the template's, for the share and for folders in it.
    const std::string share = v.sub.substr(0, v.sub.find('/'));
    auto named = share.empty() ? options.share_access.end() : options.share_access.find(share);
    if (named == options.share_access.end()) named = options.share_access.find("*");
    if (named != options.share_access.end()) pv.grant.access = named->second;
  }
  return pv;
}

}  // namespace

std::vector<ServicePlan> plan_compose(const ComposeApp& app, const ComposePlanOptions& options,
                                      std::string_view source) {
  if (auto expected = check_app_name(options.app)) {
    throw ManifestError(std::string(source) + ": app name \"" + options.app + "\": " + *expected);
  }
  std::vector<ServicePlan> plans;
  for (const auto& s : app.services) {
    ServicePlan plan;
    plan.service = &s;
    plan.app_id = service_app_id(options.app, s.name, source);
    std::map<std::string, std::string> views;  // kind/name -> the volume that has it
    for (const auto& v : s.volumes) {
      if (!v.mediated) {
        plan.not_mediated.push_back(&v);
        continue;
      }
      PlannedVolume pv = plan_volume(s, v, options, source);
      const std::string key = std::string(to_string(pv.grant.kind)) + "/" + pv.grant.name;
      if (auto [it, fresh] = views.emplace(key, v.text); !fresh) {
        throw volume_error(source, s, v,
                           "the same " + std::string(to_string(pv.grant.kind)) + " view as \"" + it->second + "\"");
      }
      plan.volumes.push_back(std::move(pv));
    }
    plans.push_back(std::move(plan));
  }
  return plans;
}

std::optional<std::string> parse_share_access(std::string_view text, std::map<std::string, Access>& out) {
  const auto eq = text.find('=');
  const std::string_view name = text.substr(0, eq);
  const auto access = eq == std::string_view::npos ? std::nullopt : parse_access(text.substr(eq + 1));
  if (!access || (name != "*" && check_share_name(name).has_value())) {
    return "expected NAME=MODE, MODE one of " + access_names() + " (NAME a share, or * for every share)";
  }
  out[std::string(name)] = *access;
  return std::nullopt;
}

}  // namespace portalfs::policy
