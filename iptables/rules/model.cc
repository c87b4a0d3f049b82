#include "rules/model.h"

#include <arpa/inet.h>

#include <algorithm>

namespace weir {

const char* to_string(Family f) {
  return f == Family::V4 ? "ipv4" : "ipv6";
}

const char* to_string(Proto p) {
  switch (p) {
    case Proto::Any: return "all";
    case Proto::Tcp: return "tcp";
    case Proto::Udp: return "udp";
  }
  return "all";
}

namespace {

int max_prefix(Family f) { return f == Family::V4 ? 32 : 128; }
int addr_len(Family f) { return f == Family::V4 ? 4 : 16; }

// Parses a decimal number made only of digits (no sign, no spaces), at most `max`.
std::optional<uint32_t> parse_decimal(const std::string& s, uint32_t max) {
  if (s.empty() || s.size() > 10) return std::nullopt;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  if (v > max) return std::nullopt;
  return static_cast<uint32_t>(v);
}

// Clears every bit of `c.addr` below the prefix.
Cidr network_of(Cidr c) {
  const int len = addr_len(c.family);
  for (int i = 0; i < len; ++i) {
    const int bits_kept = std::max(0, std::min(8, c.prefix - i * 8));
    const uint8_t mask = bits_kept == 0 ? 0 : static_cast<uint8_t>(0xff << (8 - bits_kept));
    c.addr[i] &= mask;
  }
  return c;
}

}  // namespace

Result<Cidr> parse_cidr(const std::string& text) {
  const auto slash = text.find('/');
  const std::string addr_text = text.substr(0, slash);
  Cidr c;
  if (addr_text.find(':') != std::string::npos) {
    c.family = Family::V6;
    if (inet_pton(AF_INET6, addr_text.c_str(), c.addr.data()) != 1) {
      return Error{ErrorKind::InvalidSpec, "\"" + clip(text) + "\": \"" + clip(addr_text) + "\" is not an IPv6 address"};
    }
  } else {
    c.family = Family::V4;
    if (inet_pton(AF_INET, addr_text.c_str(), c.addr.data()) != 1) {
      return Error{ErrorKind::InvalidSpec, "\"" + clip(text) + "\": \"" + clip(addr_text) + "\" is not an IPv4 address"};
    }
  }
  const int maxp = max_prefix(c.family);
  c.prefix = static_cast<uint8_t>(maxp);
  if (slash != std::string::npos) {
    const std::string prefix_text = text.substr(slash + 1);
    const auto p = parse_decimal(prefix_text, 1000);
    if (!p) {
      return Error{ErrorKind::InvalidSpec, "\"" + clip(text) + "\": prefix \"" + clip(prefix_text) + "\" is not a number"};
    }
    if (*p > static_cast<uint32_t>(maxp)) {
      return Error{ErrorKind::InvalidSpec, "\"" + clip(text) + "\": prefix /" + clip(prefix_text) + " is too long for " +
                                               to_string(c.family) + " (at most /" + std::to_string(maxp) + ")"};
    }
    c.prefix = static_cast<uint8_t>(*p);
  }
  const Cidr net = network_of(c);
  if (net != c) {
    return Error{ErrorKind::InvalidSpec,
                 clip(text) + ": host bits set (did you mean " + format_cidr(net) + "?)"};
  }
  return c;
}

std::string format_addr(const Cidr& c) {
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(c.family == Family::V4 ? AF_INET : AF_INET6, c.addr.data(), buf, sizeof buf);
  return buf;
}

std::string format_cidr(const Cidr& c) {
  return format_addr(c) + "/" + std::to_string(c.prefix);
}

bool cidr_contains(const Cidr& net, const Cidr& host) {
  if (net.family != host.family || host.prefix < net.prefix) return false;
  Cidr h = host;
  h.prefix = net.prefix;
  return network_of(h).addr == network_of(net).addr;
}

NumberText read_number(const std::string& text) {
  NumberText out;
  const bool hex = text.size() > 2 && text[0] == '0' && (text[1] == 'x' || text[1] == 'X');
  const std::size_t begin = hex ? 2 : 0;
  if (text.size() == begin) return out;  // "" or "0x"
  uint64_t v = 0;
  for (std::size_t i = begin; i < text.size(); ++i) {
    const char c = text[i];
    int digit = -1;
    if (c >= '0' && c <= '9') digit = c - '0';
    else if (hex && c >= 'a' && c <= 'f') digit = c - 'a' + 10;
    else if (hex && c >= 'A' && c <= 'F') digit = c - 'A' + 10;
    if (digit < 0) {
      // "15001.5": digits, a point, digits. Anything else is no number.
      if (!hex && c == '.' && i > 0 && i + 1 < text.size() &&
          text.find_first_not_of("0123456789", i + 1) == std::string::npos) {
        out.problem = NumberText::Fraction;
      }
      return out;
    }
    v = v * (hex ? 16 : 10) + static_cast<uint64_t>(digit);
    if (v > 0xffffffffull) {
      const bool all_digits = text.find_first_not_of(hex ? "0123456789abcdefABCDEF" : "0123456789", begin) ==
                              std::string::npos;
      out.problem = all_digits ? NumberText::TooLarge : NumberText::NotNumber;
      return out;
    }
  }
  out.problem = NumberText::None;
  out.value = static_cast<uint32_t>(v);
  return out;
}

std::string clip(const std::string& text, std::size_t max) {
  if (text.size() <= max) return text;
  return text.substr(0, max) + "...";
}

Result<PortRange> parse_port_range(const std::string& text) {
  // '-' first, but not a leading one ("-80" is no range): that is a sign.
  auto sep = text.find('-', 1);
  if (sep == std::string::npos) sep = text.find(':');
  if (text.size() > 0 && text[0] == '-') sep = std::string::npos;
  auto one = [&](const std::string& s) -> Result<uint16_t> {
    const NumberText n = read_number(s);
    switch (n.problem) {
      case NumberText::None: break;
      case NumberText::NotNumber: return Error{ErrorKind::InvalidSpec, "\"" + clip(s) + "\" is not a port"};
      case NumberText::Fraction:
        return Error{ErrorKind::InvalidSpec, "\"" + clip(s) + "\" is not a whole number (a port is 1-65535)"};
      case NumberText::TooLarge: return Error{ErrorKind::InvalidSpec, clip(s) + " is not a port (1-65535)"};
    }
    if (n.value == 0 || n.value > 65535) {
      return Error{ErrorKind::InvalidSpec, std::to_string(n.value) + " is not a port (1-65535)"};
    }
    return static_cast<uint16_t>(n.value);
  };
  if (sep == std::string::npos) {
    auto p = one(text);
    if (!p) return p.error();
    return PortRange{*p, *p};
  }
  auto first = one(text.substr(0, sep));
  if (!first) return first.error().wrap("\"" + clip(text) + "\"");
  auto last = one(text.substr(sep + 1));
  if (!last) return last.error().wrap("\"" + clip(text) + "\"");
  if (*last < *first) {
    return Error{ErrorKind::InvalidSpec, "\"" + clip(text) + "\": reversed range (first port above last)"};
  }
  return PortRange{*first, *last};
}

std::string format_port_range(const PortRange& r, char sep) {
  if (r.first == r.last) return std::to_string(r.first);
  return std::to_string(r.first) + sep + std::to_string(r.last);
}

std::vector<std::vector<PortRange>> pack_multiport(const std::vector<PortRange>& ports) {
  std::vector<std::vector<PortRange>> groups;
  int used = kMultiportMaxPorts;  // forces a new group for the first port
  for (const auto& p : ports) {
    const int cost = p.first == p.last ? 1 : 2;
    if (used + cost > kMultiportMaxPorts) {
      groups.emplace_back();
      used = 0;
    }
    groups.back().push_back(p);
    used += cost;
  }
  return groups;
}

bool is_builtin_chain(const std::string& table, const std::string& chain) {
  auto in = [&](std::initializer_list<const char*> names) {
    for (const char* n : names) {
      if (chain == n) return true;
    }
    return false;
  };
  if (table == "nat") return in({"PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"});
  if (table == "mangle") return in({"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"});
  if (table == "raw") return in({"PREROUTING", "OUTPUT"});
  if (table == "filter") return in({"INPUT", "FORWARD", "OUTPUT"});
  return false;
}

bool is_weir_chain(const std::string& name) {
  return name.rfind(kChainPrefix, 0) == 0;
}

bool is_weir_jump(const Rule& r) {
  const auto* j = std::get_if<Jump>(&r.target);
  return j != nullptr && is_weir_chain(j->chain);
}

const Chain* Table::find(const std::string& chain) const {
  for (const auto& c : chains) {
    if (c.name == chain) return &c;
  }
  return nullptr;
}

const Table* Ruleset::find(const std::string& table) const {
  for (const auto& t : tables) {
    if (t.name == table) return &t;
  }
  return nullptr;
}

const Ruleset* RulePlan::find(Family f) const {
  for (const auto& rs : rulesets) {
    if (rs.family == f) return &rs;
  }
  return nullptr;
}

}  // namespace weir
