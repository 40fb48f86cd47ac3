// SPDX-License-Identifier: MIT
#include "common/escape.hpp"

namespace portalfs::common {
namespace {

// The length of the valid UTF-8 sequence at the start of `text`, 0 if it does not start with one
// (RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF).
std::size_t utf8_sequence(std::string_view text) {
  const auto at = [&](std::size_t i) { return static_cast<unsigned char>(text[i]); };
  const unsigned char lead = at(0);
  if (lead < 0x80) return 1;
  std::size_t n = 0;
  unsigned char lo = 0x80, hi = 0xBF;  // the range of the second byte
  if (lead >= 0xC2 && lead <= 0xDF) {
    n = 2;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    n = 3;
    if (lead == 0xE0) lo = 0xA0;
    if (lead == 0xED) hi = 0x9F;
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    n = 4;
    if (lead == 0xF0) lo = 0x90;
    if (lead == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  if (text.size() < n || at(1) < lo || at(1) > hi) return 0;
  for (std::size_t i = 2; i < n; ++i) {
    if (!is_utf8_continuation(text[i])) return 0;
  }
  return n;
}

}  // namespace

std::string escape_for_message(std::string_view text, Escape how) {
  std::string out;
  out.reserve(text.size());
  while (!text.empty()) {
    const auto lead = static_cast<unsigned char>(text.front());
    const std::size_t n = how == Escape::controls_and_invalid_utf8 ? utf8_sequence(text) : 1;
    if (n > 0 && lead >= 0x20 && lead != 0x7f) {
      out += text.substr(0, n);
      text.remove_prefix(n);
      continue;
    }
    text.remove_prefix(1);
    if (how == Escape::controls && lead == '\n') {
      out += "\\n";
    } else if (how == Escape::controls && lead == '\t') {
      out += "\\t";
    } else if (how == Escape::controls && lead == '\r') {
      out += "\\r";
    } else {
      constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[lead >> 4];
      out += kHex[lead & 0xf];
    }
  }
  return out;
}

std::string truncated_utf8(std::string text, std::size_t max) {
  if (text.size() <= max) return text;
  std::size_t cut = max;
  while (cut > 0 && is_utf8_continuation(text[cut])) --cut;
  text.resize(cut);
  return text + "...";
}

}  // namespace portalfs::common
