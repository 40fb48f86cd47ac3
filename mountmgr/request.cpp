// SPDX-License-Identifier: MIT
#include "mountmgr/request.hpp"

namespace portalfs::mountmgr {

void refuse(const std::string& message) { throw RequestError(kCodeUsage, message); }
void failed(const std::string& message) { throw RequestError(kCodeRuntime, message); }

Request parse_request(const nlohmann::json& request) {
  Request out;
  try {
    const JsonReader r(request);
    r.expect_object({"verb", "format", "args"});
    out.verb = r.string("verb");
    if (auto format = r.opt_member("format")) {
      const std::string text = format->as_string();
      if (text != "text" && text != "json") format->fail(R"(expected "text" or "json", got )" + describe_json(format->json()));
      out.json = text == "json";
    }
    if (auto args = r.opt_member("args")) {
      if (!args->json().is_object()) args->fail("expected an object, got " + describe_json(args->json()));
      out.args = args->json();
    }
  } catch (const FieldError& e) {
    // The field's name is the client's: quoted, so that a newline in it can't split the line.
    if (e.pointer().empty()) refuse("bad request: " + e.problem());
    const std::string field = describe_json(e.pointer().substr(1));
    if (e.problem() == "unknown field") refuse("bad request: unknown field " + field);
    refuse("bad request: field " + field + ": " + e.problem());
  }
  return out;
}

Args::Args(const Request& request, std::initializer_list<std::string_view> allowed)
    : request_(request), reader_(request.args) {
  read([&] {
    reader_.expect_object(allowed);
    return 0;
  });
}

template <typename F>
auto Args::read(F&& f) const -> decltype(f()) {
  try {
    return f();
  } catch (const FieldError& e) {
    // "/uid_maps/1" -> argument "uid_maps/1"
    bad(e.pointer().empty() ? std::string_view() : std::string_view(e.pointer()).substr(1), e.problem());
  }
}

void Args::bad(std::string_view key, const std::string& problem) const {
  // The key may be the client's (an unknown one): quoted as JSON, control characters escaped.
  const std::string quoted = describe_json(std::string(key));
  if (problem == "unknown field") refuse(request_.verb + ": unknown argument " + quoted);
  refuse(request_.verb + ": argument " + quoted + ": " + problem);
}

std::string Args::str(std::string_view key) const {
  return read([&] { return reader_.string(key); });
}

std::optional<std::string> Args::opt_str(std::string_view key) const {
  return read([&] { return reader_.opt_string(key); });
}

bool Args::flag(std::string_view key) const {
  return read([&] { return reader_.opt_boolean(key).value_or(false); });
}

int64_t Args::integer(std::string_view key, int64_t min, int64_t max) const {
  return read([&] { return reader_.integer(key, min, max); });
}

std::optional<std::vector<std::string>> Args::opt_str_list(std::string_view key) const {
  return read([&]() -> std::optional<std::vector<std::string>> {
    auto member = reader_.opt_member(key);
    if (!member) return std::nullopt;
    member->expect_array();
    std::vector<std::string> out;
    for (std::size_t i = 0; i < member->size(); ++i) out.push_back(member->at(i).as_string());
    return out;
  });
}

}  // namespace portalfs::mountmgr
