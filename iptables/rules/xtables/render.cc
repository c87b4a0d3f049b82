#include "rules/xtables/render.h"

#include <cctype>
#include <cstdio>

#include <nlohmann/json.hpp>

namespace weir {

using json = nlohmann::json;

namespace {

std::string hex(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%x", v);
  return buf;
}

// "0x539" or "0x539/0xff": the mask only when it is not the full one, as the
// mark and connmark matches print it.
std::string mark_text(uint32_t value, uint32_t mask) {
  return mask == 0xffffffff ? hex(value) : hex(value) + "/" + hex(mask);
}

// xtables_save_string(): bare when non-empty and only [A-Za-z0-9_-], else
// double-quoted with " \ ' backslash-escaped.
std::string save_string(const std::string& s) {
  bool bare = !s.empty();
  for (unsigned char c : s) {
    if (!(std::isalnum(c) || c == '_' || c == '-')) {
      bare = false;
      break;
    }
  }
  if (bare) return s;
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\' || c == '\'') out += '\\';
    out += c;
  }
  return out + "\"";
}

std::string neg(bool negated) { return negated ? "! " : ""; }

std::vector<std::string> ctstate_names(uint32_t states) {
  // The order conntrack's save function prints them in.
  static const std::pair<uint32_t, const char*> kNames[] = {
      {Conntrack::kInvalid, "INVALID"},     {Conntrack::kNew, "NEW"},
      {Conntrack::kRelated, "RELATED"},     {Conntrack::kEstablished, "ESTABLISHED"},
      {Conntrack::kUntracked, "UNTRACKED"},
  };
  std::vector<std::string> out;
  for (const auto& [bit, name] : kNames) {
    if (states & bit) out.push_back(name);
  }
  return out;
}

std::string join(const std::vector<std::string>& items, const char* sep) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    if (i) out += sep;
    out += items[i];
  }
  return out;
}

std::string target_text(const Target& t, Family f) {
  struct Visitor {
    Family f;
    std::string operator()(const Verdict& v) const {
      switch (v.kind) {
        case Verdict::Accept: return "-j ACCEPT";
        case Verdict::Drop: return "-j DROP";
        case Verdict::Return: return "-j RETURN";
      }
      return "-j ACCEPT";
    }
    std::string operator()(const Jump& j) const { return "-j " + j.chain; }
    std::string operator()(const Redirect& r) const { return "-j REDIRECT --to-ports " + std::to_string(r.port); }
    std::string operator()(const Tproxy& t) const {
      return "-j TPROXY --on-port " + std::to_string(t.port) + " --on-ip " + (f == Family::V4 ? "0.0.0.0" : "::") +
             " --tproxy-mark " + hex(t.mark) + "/" + hex(t.mask);
    }
    std::string operator()(const SetMark& m) const { return "-j MARK --set-xmark " + hex(m.value) + "/" + hex(m.mask); }
    std::string operator()(const Connmark& c) const {
      return std::string("-j CONNMARK ") + (c.mode == Connmark::Save ? "--save-mark" : "--restore-mark") +
             " --nfmask 0xffffffff --ctmask 0xffffffff";
    }
    std::string operator()(const CtZone& z) const { return "-j CT --zone " + std::to_string(z.zone); }
    std::string operator()(const UnknownTarget& u) const { return "-j " + u.name; }
  };
  return std::visit(Visitor{f}, t);
}

json target_json(const Target& t, Family f) {
  struct Visitor {
    Family f;
    json operator()(const Verdict& v) const {
      return json{{"type", v.kind == Verdict::Accept ? "ACCEPT" : v.kind == Verdict::Drop ? "DROP" : "RETURN"}};
    }
    json operator()(const Jump& j) const { return json{{"type", "jump"}, {"chain", j.chain}}; }
    json operator()(const Redirect& r) const { return json{{"type", "REDIRECT"}, {"toPort", r.port}}; }
    json operator()(const Tproxy& t) const {
      return json{{"type", "TPROXY"},
                  {"onPort", t.port},
                  {"onIp", f == Family::V4 ? "0.0.0.0" : "::"},
                  {"mark", hex(t.mark)},
                  {"mask", hex(t.mask)}};
    }
    json operator()(const SetMark& m) const {
      return json{{"type", "MARK"}, {"setMark", hex(m.value)}, {"mask", hex(m.mask)}};
    }
    json operator()(const Connmark& c) const {
      return json{{"type", "CONNMARK"}, {"mode", c.mode == Connmark::Save ? "save" : "restore"}};
    }
    json operator()(const CtZone& z) const { return json{{"type", "CT"}, {"zone", z.zone}}; }
    json operator()(const UnknownTarget& u) const { return json{{"type", "unknown"}, {"name", u.name}}; }
  };
  return std::visit(Visitor{f}, t);
}

std::string route_text(const PolicyRoute& r) {
  return std::string("# weir: ") + to_string(r.family) + " policy route: fwmark " + hex(r.fwmark) + " lookup " +
         std::to_string(r.table) + ", local " + (r.family == Family::V4 ? "0.0.0.0/0" : "::/0") + " dev lo table " +
         std::to_string(r.table) + "\n";
}

}  // namespace

std::string render_rule_args(const Rule& r, Family f) {
  std::vector<std::string> parts;
  if (r.src) parts.push_back(neg(r.src_negated) + "-s " + format_cidr(*r.src));
  if (r.dst) parts.push_back(neg(r.dst_negated) + "-d " + format_cidr(*r.dst));
  if (!r.in_iface.empty()) parts.push_back(neg(r.in_negated) + "-i " + r.in_iface);
  if (!r.out_iface.empty()) parts.push_back(neg(r.out_negated) + "-o " + r.out_iface);
  if (r.proto != Proto::Any) parts.push_back(neg(r.proto_negated) + "-p " + to_string(r.proto));
  if (r.sport || r.dport) {
    std::string m = std::string("-m ") + (r.proto == Proto::Udp ? "udp" : "tcp");
    if (r.sport) m += " " + neg(r.sport->negated) + "--sport " + format_port_range(r.sport->range, ':');
    if (r.dport) m += " " + neg(r.dport->negated) + "--dport " + format_port_range(r.dport->range, ':');
    parts.push_back(m);
  }
  if (r.multiport) {
    std::vector<std::string> ports;
    for (const auto& p : r.multiport->ports) ports.push_back(format_port_range(p, ':'));
    parts.push_back("-m multiport " + neg(r.multiport->negated) + "--dports " + join(ports, ","));
  }
  if (r.owner) {
    parts.push_back("-m owner " + neg(r.owner->negated) +
                    (r.owner->kind == Owner::Kind::Uid ? "--uid-owner " : "--gid-owner ") + std::to_string(r.owner->id));
  }
  if (r.conntrack) {
    parts.push_back("-m conntrack " + neg(r.conntrack->negated) + "--ctstate " +
                    join(ctstate_names(r.conntrack->states), ","));
  }
  if (r.mark) parts.push_back("-m mark " + neg(r.mark->negated) + "--mark " + mark_text(r.mark->value, r.mark->mask));
  if (r.connmark) {
    parts.push_back("-m connmark " + neg(r.connmark->negated) + "--mark " +
                    mark_text(r.connmark->value, r.connmark->mask));
  }
  for (const auto& name : r.unknown_matches) parts.push_back("-m " + name);
  if (!r.comment.empty()) parts.push_back("-m comment --comment " + save_string(r.comment));
  parts.push_back(target_text(r.target, f));
  return join(parts, " ");
}

std::string render_ruleset(const Ruleset& rs, RenderOptions opts) {
  std::string out;
  for (const auto& t : rs.tables) {
    out += "*" + t.name + "\n";
    for (const auto& c : t.chains) {
      if (!is_builtin_chain(t.name, c.name)) out += ":" + c.name + " - [0:0]\n";
    }
    for (const auto& c : t.chains) {
      for (const auto& r : c.rules) {
        if (opts.counters) {
          out += "[" + std::to_string(r.counters.packets) + ":" + std::to_string(r.counters.bytes) + "] ";
        }
        out += "-A " + c.name + " " + render_rule_args(r, rs.family) + "\n";
      }
    }
    out += "COMMIT\n";
  }
  return out;
}

std::string render_plan(const RulePlan& plan, RenderOptions opts) {
  std::string out;
  for (const auto& rs : plan.rulesets) {
    out += std::string("# weir: ") + to_string(rs.family) + " rules (" +
           (rs.family == Family::V4 ? "iptables" : "ip6tables") + "-restore input)\n";
    out += render_ruleset(rs, opts);
    for (const auto& r : plan.routes) {
      if (r.family == rs.family) out += route_text(r);
    }
    if (rs.family == Family::V6) {
      out += "# weir: ipv6 address ::6/128 on lo (the proxy's passthrough source; apply adds it when missing)\n";
    }
  }
  // Routes of a family without rules (not something plan() makes) still show.
  for (const auto& r : plan.routes) {
    if (plan.find(r.family) == nullptr) out += route_text(r);
  }
  return out;
}

json to_json(const Rule& r, Family f) {
  json matches = json::array();
  auto add = [&](const char* type, json value, bool negated) {
    matches.push_back(json{{"type", type}, {"value", std::move(value)}, {"negated", negated}});
  };
  if (r.src) add("source", format_cidr(*r.src), r.src_negated);
  if (r.dst) add("destination", format_cidr(*r.dst), r.dst_negated);
  if (!r.in_iface.empty()) add("inInterface", r.in_iface, r.in_negated);
  if (!r.out_iface.empty()) add("outInterface", r.out_iface, r.out_negated);
  if (r.proto != Proto::Any) add("protocol", to_string(r.proto), r.proto_negated);
  if (r.sport) add("sourcePort", format_port_range(r.sport->range), r.sport->negated);
  if (r.dport) add("destinationPort", format_port_range(r.dport->range), r.dport->negated);
  if (r.multiport) {
    json ports = json::array();
    for (const auto& p : r.multiport->ports) ports.push_back(format_port_range(p));
    add("destinationPorts", std::move(ports), r.multiport->negated);
  }
  if (r.owner) add(r.owner->kind == Owner::Kind::Uid ? "uidOwner" : "gidOwner", r.owner->id, r.owner->negated);
  if (r.conntrack) add("ctstate", ctstate_names(r.conntrack->states), r.conntrack->negated);
  if (r.mark) add("mark", mark_text(r.mark->value, r.mark->mask), r.mark->negated);
  if (r.connmark) add("connmark", mark_text(r.connmark->value, r.connmark->mask), r.connmark->negated);
  for (const auto& name : r.unknown_matches) add("unknown", name, false);
  if (!r.comment.empty()) add("comment", r.comment, false);

  json j{{"text", render_rule_args(r, f)}, {"matches", std::move(matches)}, {"target", target_json(r.target, f)}};
  // Only live rules carry counters; a plan's are all zero.
  if (r.counters.packets != 0 || r.counters.bytes != 0) {
    j["counters"] = json{{"packets", r.counters.packets}, {"bytes", r.counters.bytes}};
  }
  return j;
}

json to_json(const Ruleset& rs) {
  json tables = json::array();
  for (const auto& t : rs.tables) {
    json chains = json::array();
    for (const auto& c : t.chains) {
      json rules = json::array();
      for (const auto& r : c.rules) rules.push_back(to_json(r, rs.family));
      chains.push_back(
          json{{"name", c.name}, {"builtin", is_builtin_chain(t.name, c.name)}, {"rules", std::move(rules)}});
    }
    tables.push_back(json{{"name", t.name}, {"chains", std::move(chains)}});
  }
  return json{{"family", to_string(rs.family)}, {"tables", std::move(tables)}};
}

json to_json(const RulePlan& plan) {
  json rulesets = json::array();
  for (const auto& rs : plan.rulesets) rulesets.push_back(to_json(rs));
  json routes = json::array();
  for (const auto& r : plan.routes) {
    routes.push_back(json{{"family", to_string(r.family)},
                          {"fwmark", r.fwmark},
                          {"table", r.table},
                          {"localRoute", r.family == Family::V4 ? "0.0.0.0/0" : "::/0"},
                          {"device", "lo"}});
  }
  return json{{"rulesets", std::move(rulesets)}, {"routes", std::move(routes)}};
}

}  // namespace weir
