// SPDX-License-Identifier: MIT
#include "mountmgr/control_protocol.hpp"

#include "common/escape.hpp"

namespace portalfs::mountmgr {

nlohmann::json error_response(int code, std::string_view message) {
  // One line whatever the message quotes (an exception's text may hold a path with a newline).
  return {{"ok", false}, {"code", code}, {"error", common::escape_for_message(message)}};
}

nlohmann::json ok_response(std::string output) {
  return {{"ok", true}, {"output", std::move(output)}};
}

}  // namespace portalfs::mountmgr
