// SPDX-License-Identifier: MIT
#include "mountmgr/control_protocol.hpp"

namespace portalfs::mountmgr {

nlohmann::json error_response(int code, std::string_view message) {
  return {{"ok", false}, {"code", code}, {"error", std::string(message)}};
}

nlohmann::json ok_response(std::string output) {
  return {{"ok", true}, {"output", std::move(output)}};
}

}  // namespace portalfs::mountmgr
