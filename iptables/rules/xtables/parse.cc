#include "rules/xtables/parse.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <set>

namespace weir {

namespace {

Error parse_error(const std::string& message) {
  return Error{ErrorKind::InvalidArgument, message};
}

// Splits like iptables-restore: whitespace separates, double quotes group,
// a backslash takes the next character literally.
Result<std::vector<std::string>> tokenize(const std::string& text) {
  std::vector<std::string> tokens;
  std::string cur;
  bool in_token = false;
  bool quoted = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '\\') {
      if (i + 1 == text.size()) return parse_error("backslash at end of rule");
      cur += text[++i];
      in_token = true;
    } else if (c == '"') {
      quoted = !quoted;
      in_token = true;  // "" is an (empty) token
    } else if (!quoted && (c == ' ' || c == '\t' || c == '\n' || c == '\r')) {
      if (in_token) tokens.push_back(cur);
      cur.clear();
      in_token = false;
    } else {
      cur += c;
      in_token = true;
    }
  }
  if (quoted) return parse_error("unterminated double quote");
  if (in_token) tokens.push_back(cur);
  return tokens;
}

bool is_base_option(const std::string& t) {
  static const std::set<std::string> kBase = {
      "-s", "--source", "-d", "--destination", "-i", "--in-interface", "-o", "--out-interface",
      "-p", "--protocol", "-j", "--jump", "-m", "--match", "-g", "--goto"};
  return kBase.count(t) != 0;
}

// Decimal or 0x-hex, the whole text, within 32 bits.
std::optional<uint32_t> parse_number(const std::string& s) {
  if (s.empty() || s[0] == '-' || s[0] == '+' || s[0] == ' ') return std::nullopt;
  char* end = nullptr;
  errno = 0;
  const unsigned long long v = std::strtoull(s.c_str(), &end, 0);
  if (errno != 0 || *end != '\0' || v > 0xffffffffull) return std::nullopt;
  return static_cast<uint32_t>(v);
}

Result<MarkMatch> parse_mark(const std::string& text) {
  MarkMatch m;
  const auto slash = text.find('/');
  const auto value = parse_number(text.substr(0, slash));
  if (!value) return parse_error("\"" + text + "\" is not a mark");
  m.value = *value;
  if (slash != std::string::npos) {
    const auto mask = parse_number(text.substr(slash + 1));
    if (!mask) return parse_error("\"" + text + "\" is not a mark/mask");
    m.mask = *mask;
  }
  return m;
}

Result<uint16_t> parse_port(const std::string& text) {
  auto r = parse_port_range(text);
  if (!r) return r.error();
  if (r->first != r->last) return parse_error("\"" + text + "\": a single port is needed here");
  return r->first;
}

Result<uint32_t> parse_states(const std::string& text) {
  uint32_t states = 0;
  size_t start = 0;
  while (start <= text.size()) {
    const auto comma = text.find(',', start);
    const std::string name = text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    if (name == "INVALID") states |= Conntrack::kInvalid;
    else if (name == "NEW") states |= Conntrack::kNew;
    else if (name == "RELATED") states |= Conntrack::kRelated;
    else if (name == "ESTABLISHED") states |= Conntrack::kEstablished;
    else if (name == "UNTRACKED") states |= Conntrack::kUntracked;
    else return parse_error("unsupported conntrack state \"" + name + "\"");
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return states;
}

// Target extensions that a save can show with no options; any other bare
// name after -j is a user chain.
bool is_known_target_extension(const std::string& name) {
  static const std::set<std::string> kTargets = {
      "MASQUERADE", "NOTRACK", "REJECT", "LOG", "NFLOG", "TRACE", "AUDIT", "CHECKSUM", "CLASSIFY",
      "DNAT", "SNAT", "NETMAP", "TCPMSS", "TEE", "NFQUEUE", "SECMARK", "CONNSECMARK", "TOS", "TTL",
      "HL", "DSCP", "ECN", "IDLETIMER", "LED", "RATEEST", "SET", "SYNPROXY", "TCPOPTSTRIP", "QUEUE",
      "REDIRECT", "TPROXY", "MARK", "CONNMARK", "CT"};
  return kTargets.count(name) != 0;
}

// A name iptables-save prints as one word: not empty, no whitespace, quote
// or backslash. Anything else could not be printed back as it was read.
bool is_plain_name(const std::string& name) {
  return !name.empty() && name.find_first_of(" \t\n\r\v\f\"'\\") == std::string::npos;
}

// Reads one rule's tokens into a Rule.
class RuleParser {
 public:
  RuleParser(std::vector<std::string> tokens, Family f) : t_(std::move(tokens)), f_(f) {}

  Result<Rule> parse() {
    while (i_ < t_.size()) {
      bool negated = false;
      if (t_[i_] == "!") {
        negated = true;
        ++i_;
        if (i_ == t_.size()) return parse_error("\"!\" at end of rule");
      }
      const std::string opt = t_[i_++];
      Status st;
      if (opt == "-s" || opt == "--source") {
        st = address(r_.src, r_.src_negated, negated, opt);
      } else if (opt == "-d" || opt == "--destination") {
        st = address(r_.dst, r_.dst_negated, negated, opt);
      } else if (opt == "-i" || opt == "--in-interface") {
        st = iface(r_.in_iface, r_.in_negated, negated, opt);
      } else if (opt == "-o" || opt == "--out-interface") {
        st = iface(r_.out_iface, r_.out_negated, negated, opt);
      } else if (opt == "-p" || opt == "--protocol") {
        st = protocol(negated);
      } else if ((opt == "--dport" || opt == "--sport" || opt == "--destination-port" || opt == "--source-port") &&
                 r_.proto != Proto::Any) {
        // iptables loads the protocol's match implicitly for "-p tcp --dport N".
        i_ -= negated ? 2 : 1;
        st = port_match(to_string(r_.proto));
      } else if (negated) {
        return parse_error("\"!\" before " + opt + " is not supported");
      } else if (opt == "-m" || opt == "--match") {
        st = match();
      } else if (opt == "-j" || opt == "--jump") {
        st = target();
      } else if (opt == "-g" || opt == "--goto") {
        return parse_error("-g (goto) is not supported");
      } else {
        return parse_error("unexpected \"" + opt + "\"");
      }
      if (!st) return st.error();
    }
    if (!has_target_) return parse_error("rule has no target (-j)");
    if ((r_.sport || r_.dport || r_.multiport) && r_.proto == Proto::Any) {
      return parse_error("port match without -p tcp or -p udp");
    }
    return std::move(r_);
  }

 private:
  Result<std::string> value(const std::string& opt) {
    if (i_ == t_.size()) return parse_error(opt + " needs a value");
    return t_[i_++];
  }

  // Consumes "[!] --option value" if the next tokens are that option.
  bool next_is(const std::string& option, bool* negated) {
    size_t j = i_;
    *negated = false;
    if (j < t_.size() && t_[j] == "!") {
      *negated = true;
      ++j;
    }
    if (j < t_.size() && t_[j] == option) {
      i_ = j + 1;
      return true;
    }
    return false;
  }

  // True when the next token starts a module option (not a base option).
  bool at_module_option() const {
    size_t j = i_;
    if (j < t_.size() && t_[j] == "!") ++j;
    return j < t_.size() && t_[j].rfind("--", 0) == 0 && !is_base_option(t_[j]);
  }

  Status address(std::optional<Cidr>& slot, bool& slot_neg, bool negated, const std::string& opt) {
    auto v = value(opt);
    if (!v) return v.error();
    auto c = parse_cidr(*v);
    if (!c) return c.error().wrap(opt);
    if (c->family != f_) return parse_error(opt + " " + *v + ": address is not " + to_string(f_));
    slot = *c;
    slot_neg = negated;
    return {};
  }

  Status iface(std::string& slot, bool& slot_neg, bool negated, const std::string& opt) {
    auto v = value(opt);
    if (!v) return v.error();
    slot = *v;
    slot_neg = negated;
    return {};
  }

  Status protocol(bool negated) {
    auto v = value("-p");
    if (!v) return v.error();
    std::string p = *v;
    std::transform(p.begin(), p.end(), p.begin(), [](unsigned char c) { return std::tolower(c); });
    if (p == "tcp" || p == "6") r_.proto = Proto::Tcp;
    else if (p == "udp" || p == "17") r_.proto = Proto::Udp;
    else if (p == "all" || p == "0") r_.proto = Proto::Any;
    else return parse_error("-p " + *v + ": unsupported protocol");
    r_.proto_negated = negated;
    return {};
  }

  Status port_match(const std::string& module) {
    if (module != to_string(r_.proto)) {
      return parse_error("-m " + module + " in a rule with -p " + to_string(r_.proto));
    }
    while (at_module_option()) {
      bool negated = false;
      std::optional<PortMatch>* slot = nullptr;
      if (next_is("--sport", &negated) || next_is("--source-port", &negated)) slot = &r_.sport;
      else if (next_is("--dport", &negated) || next_is("--destination-port", &negated)) slot = &r_.dport;
      else return parse_error("-m " + module + ": unsupported option \"" + t_[i_] + "\"");
      auto v = value("--dport");
      if (!v) return v.error();
      auto range = parse_port_range(*v);
      if (!range) return range.error().wrap("-m " + module);
      *slot = PortMatch{*range, negated};
    }
    return {};
  }

  Status multiport() {
    bool negated = false;
    if (!next_is("--dports", &negated) && !next_is("--destination-ports", &negated)) {
      return parse_error("-m multiport: only --dports is supported");
    }
    auto v = value("--dports");
    if (!v) return v.error();
    Multiport m;
    m.negated = negated;
    size_t start = 0;
    while (true) {
      const auto comma = v->find(',', start);
      const std::string item = v->substr(start, comma == std::string::npos ? std::string::npos : comma - start);
      auto range = parse_port_range(item);
      if (!range) return range.error().wrap("-m multiport --dports");
      m.ports.push_back(*range);
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
    r_.multiport = m;
    return {};
  }

  Status owner() {
    while (at_module_option()) {
      bool negated = false;
      Owner o;
      if (next_is("--uid-owner", &negated)) o.kind = Owner::Kind::Uid;
      else if (next_is("--gid-owner", &negated)) o.kind = Owner::Kind::Gid;
      else return parse_error("-m owner: unsupported option \"" + t_[i_] + "\"");
      auto v = value("--uid-owner");
      if (!v) return v.error();
      const auto id = parse_number(*v);
      // Names would need an NSS look-up, which weir never does.
      if (!id || (*v)[0] < '0' || (*v)[0] > '9') return parse_error("-m owner: \"" + *v + "\" is not a numeric id");
      o.id = *id;
      o.negated = negated;
      if (r_.owner) return parse_error("-m owner: only one of --uid-owner and --gid-owner is supported");
      r_.owner = o;
    }
    if (!r_.owner) return parse_error("-m owner without --uid-owner or --gid-owner");
    return {};
  }

  Status conntrack() {
    bool negated = false;
    if (!next_is("--ctstate", &negated)) return parse_error("-m conntrack: only --ctstate is supported");
    auto v = value("--ctstate");
    if (!v) return v.error();
    auto states = parse_states(*v);
    if (!states) return states.error().wrap("-m conntrack");
    r_.conntrack = Conntrack{*states, negated};
    return {};
  }

  Status mark(const std::string& module, std::optional<MarkMatch>& slot) {
    bool negated = false;
    if (!next_is("--mark", &negated)) return parse_error("-m " + module + ": only --mark is supported");
    auto v = value("--mark");
    if (!v) return v.error();
    auto m = parse_mark(*v);
    if (!m) return m.error().wrap("-m " + module);
    m->negated = negated;
    slot = *m;
    return {};
  }

  Status comment() {
    bool negated = false;
    if (!next_is("--comment", &negated) || negated) return parse_error("-m comment without --comment");
    auto v = value("--comment");
    if (!v) return v.error();
    r_.comment = *v;
    return {};
  }

  Status match() {
    auto name = value("-m");
    if (!name) return name.error();
    const std::string& m = *name;
    if (!is_plain_name(m)) return parse_error("-m \"" + m + "\": not a match name");
    if (m == "tcp" || m == "udp") return port_match(m);
    if (m == "multiport") return multiport();
    if (m == "owner") return owner();
    if (m == "conntrack") return conntrack();
    if (m == "mark") return mark(m, r_.mark);
    if (m == "connmark") return mark(m, r_.connmark);
    if (m == "comment") return comment();
    // A match weir does not decode: keep its name, skip its options.
    r_.unknown_matches.push_back(m);
    while (i_ < t_.size()) {
      const std::string& tok = t_[i_];
      if (is_base_option(tok)) break;
      if (tok == "!" && i_ + 1 < t_.size() && is_base_option(t_[i_ + 1])) break;
      ++i_;
    }
    return {};
  }

  Status target() {
    if (has_target_) return parse_error("more than one -j");
    has_target_ = true;
    auto name = value("-j");
    if (!name) return name.error();
    const std::string& n = *name;
    if (!is_plain_name(n)) return parse_error("-j \"" + n + "\": not a chain or target name");
    if (n == "ACCEPT") r_.target = Verdict{Verdict::Accept};
    else if (n == "DROP") r_.target = Verdict{Verdict::Drop};
    else if (n == "RETURN") r_.target = Verdict{Verdict::Return};
    else if (n == "REDIRECT") return redirect();
    else if (n == "TPROXY") return tproxy();
    else if (n == "MARK") return set_mark();
    else if (n == "CONNMARK") return connmark();
    else if (n == "CT") return ct();
    else if (is_weir_chain(n)) r_.target = Jump{n};
    else if (is_known_target_extension(n)) {
      r_.target = UnknownTarget{n};
      while (i_ < t_.size() && !is_base_option(t_[i_])) ++i_;  // its options
      return {};
    } else {
      r_.target = Jump{n};
    }
    // A jump to a chain takes no options; a target extension weir does not
    // know would be printed back without them, as a jump (fuzz finding 4).
    if (i_ < t_.size() && t_[i_].rfind("--", 0) == 0 && !is_base_option(t_[i_])) {
      return parse_error("-j " + n + ": unexpected option \"" + t_[i_] + "\" (not a chain, and not a target extension weir knows)");
    }
    return {};
  }

  Status redirect() {
    bool negated = false;
    if (!next_is("--to-ports", &negated) && !next_is("--to-port", &negated)) {
      return parse_error("-j REDIRECT without --to-ports");
    }
    auto v = value("--to-ports");
    if (!v) return v.error();
    auto port = parse_port(*v);
    if (!port) return port.error().wrap("-j REDIRECT --to-ports");
    r_.target = Redirect{*port};
    return no_more_target_options("REDIRECT");
  }

  Status tproxy() {
    Tproxy t;
    bool have_port = false;
    bool negated = false;
    while (at_module_option()) {
      if (next_is("--on-port", &negated)) {
        auto v = value("--on-port");
        if (!v) return v.error();
        auto port = parse_port(*v);
        if (!port) return port.error().wrap("-j TPROXY --on-port");
        t.port = *port;
        have_port = true;
      } else if (next_is("--on-ip", &negated)) {
        auto v = value("--on-ip");
        if (!v) return v.error();
        // weir always listens on the wildcard address.
        auto c = parse_cidr(*v);
        if (!c || c->family != f_ || *c != parse_cidr(f_ == Family::V4 ? "0.0.0.0" : "::").value()) {
          return parse_error("-j TPROXY --on-ip " + *v + ": only the wildcard address is supported");
        }
      } else if (next_is("--tproxy-mark", &negated)) {
        auto v = value("--tproxy-mark");
        if (!v) return v.error();
        auto m = parse_mark(*v);
        if (!m) return m.error().wrap("-j TPROXY");
        t.mark = m->value;
        t.mask = m->mask;
      } else {
        return parse_error("-j TPROXY: unsupported option \"" + t_[i_] + "\"");
      }
    }
    if (!have_port) return parse_error("-j TPROXY without --on-port");
    r_.target = t;
    return {};
  }

  Status set_mark() {
    bool negated = false;
    const bool xmark = next_is("--set-xmark", &negated);
    if (!xmark && !next_is("--set-mark", &negated)) return parse_error("-j MARK: only --set-xmark/--set-mark are supported");
    auto v = value("--set-xmark");
    if (!v) return v.error();
    auto m = parse_mark(*v);
    if (!m) return m.error().wrap("-j MARK");
    // libxt_MARK: --set-mark V/M is --set-xmark V/(V|M).
    r_.target = SetMark{m->value, xmark ? m->mask : (m->mask | m->value)};
    return no_more_target_options("MARK");
  }

  Status connmark() {
    Connmark c;
    bool have_mode = false;
    bool negated = false;
    while (at_module_option()) {
      if (next_is("--save-mark", &negated)) {
        c.mode = Connmark::Save;
        have_mode = true;
      } else if (next_is("--restore-mark", &negated)) {
        c.mode = Connmark::Restore;
        have_mode = true;
      } else if (next_is("--nfmask", &negated) || next_is("--ctmask", &negated) || next_is("--mask", &negated)) {
        auto v = value("--nfmask");
        if (!v) return v.error();
        const auto mask = parse_number(*v);
        if (!mask || *mask != 0xffffffff) {
          return parse_error("-j CONNMARK: mask " + *v + " is not supported (only 0xffffffff)");
        }
      } else {
        return parse_error("-j CONNMARK: unsupported option \"" + t_[i_] + "\"");
      }
    }
    if (!have_mode) return parse_error("-j CONNMARK without --save-mark or --restore-mark");
    r_.target = c;
    return {};
  }

  Status ct() {
    bool negated = false;
    if (!next_is("--zone", &negated)) return parse_error("-j CT: only --zone is supported");
    auto v = value("--zone");
    if (!v) return v.error();
    const auto zone = parse_number(*v);
    if (!zone || *zone > 0xffff) return parse_error("-j CT --zone " + *v + ": not a zone (0-65535)");
    r_.target = CtZone{static_cast<uint16_t>(*zone)};
    return no_more_target_options("CT");
  }

  Status no_more_target_options(const char* name) {
    if (at_module_option()) return parse_error(std::string("-j ") + name + ": unsupported option \"" + t_[i_] + "\"");
    return {};
  }

  std::vector<std::string> t_;
  Family f_;
  size_t i_ = 0;
  Rule r_;
  bool has_target_ = false;
};

// "[123:456]" → counters.
bool parse_counters(const std::string& text, Counters& c) {
  if (text.size() < 5 || text.front() != '[' || text.back() != ']') return false;
  const auto colon = text.find(':');
  if (colon == std::string::npos) return false;
  char* end = nullptr;
  const std::string p = text.substr(1, colon - 1);
  const std::string b = text.substr(colon + 1, text.size() - colon - 2);
  if (p.empty() || b.empty()) return false;
  c.packets = std::strtoull(p.c_str(), &end, 10);
  if (*end != '\0') return false;
  c.bytes = std::strtoull(b.c_str(), &end, 10);
  return *end == '\0';
}

// The jump target named in raw rule text, to recognise weir's jumps in rules
// weir cannot decode.
bool text_jumps_to_weir(const std::vector<std::string>& tokens) {
  for (size_t i = 0; i + 1 < tokens.size(); ++i) {
    if ((tokens[i] == "-j" || tokens[i] == "--jump" || tokens[i] == "-g" || tokens[i] == "--goto") &&
        is_weir_chain(tokens[i + 1])) {
      return true;
    }
  }
  return false;
}

Chain& chain_in(Table& t, const std::string& name) {
  for (auto& c : t.chains) {
    if (c.name == name) return c;
  }
  t.chains.push_back(Chain{name, {}});
  return t.chains.back();
}

}  // namespace

Result<Rule> parse_rule_args(const std::string& args, Family f) {
  auto tokens = tokenize(args);
  if (!tokens) return tokens.error();
  return RuleParser(std::move(*tokens), f).parse();
}

Result<Ruleset> parse_ruleset(const std::string& text, Family f, ParseOptions opts) {
  Ruleset rs;
  rs.family = f;
  std::optional<Table> table;
  size_t line_no = 0;
  size_t pos = 0;
  auto fail = [&](const std::string& msg) {
    return Error{ErrorKind::InvalidArgument, "line " + std::to_string(line_no) + ": " + msg};
  };
  while (pos < text.size()) {
    const auto nl = text.find('\n', pos);
    std::string line = text.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
    pos = nl == std::string::npos ? text.size() : nl + 1;
    ++line_no;
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t')) line.pop_back();
    const auto first = line.find_first_not_of(" \t");
    if (first == std::string::npos) continue;
    line = line.substr(first);
    if (line[0] == '#') continue;

    if (line[0] == '*') {
      if (table) return fail("table \"" + line.substr(1) + "\" starts before COMMIT of \"" + table->name + "\"");
      if (!is_plain_name(line.substr(1))) return fail("\"" + line + "\": not a table name");
      table = Table{line.substr(1), {}};
      continue;
    }
    if (line == "COMMIT") {
      if (!table) return fail("COMMIT outside a table");
      // With only_weir, a table with nothing of weir's is left out.
      if (!opts.only_weir || !table->chains.empty()) rs.tables.push_back(std::move(*table));
      table.reset();
      continue;
    }
    if (!table) return fail("\"" + line + "\" outside a table (no *table line before it)");
    if (line[0] == ':') {
      const auto space = line.find(' ');
      const std::string name = line.substr(1, space == std::string::npos ? std::string::npos : space - 1);
      if (name.empty()) return fail("chain line without a name");
      const bool builtin = is_builtin_chain(table->name, name);
      // Built-ins are added when weir's jump in them is found (only_weir).
      if (!opts.only_weir || (!builtin && is_weir_chain(name))) {
        if (!is_plain_name(name)) return fail("\"" + name + "\": not a chain name");
        chain_in(*table, name);
      }
      continue;
    }

    Counters counters;
    std::string rest = line;
    if (rest[0] == '[') {
      const auto close = rest.find(']');
      if (close == std::string::npos || !parse_counters(rest.substr(0, close + 1), counters)) {
        return fail("malformed counters in \"" + line + "\"");
      }
      rest = rest.substr(close + 1);
      rest = rest.substr(std::min(rest.size(), rest.find_first_not_of(" \t")));
    }
    if (rest.rfind("-A ", 0) != 0 && rest.rfind("--append ", 0) != 0) {
      return fail("unexpected line \"" + line + "\"");
    }
    rest = rest.substr(rest.find(' ') + 1);
    const auto space = rest.find(' ');
    const std::string chain = rest.substr(0, space);
    if (chain.empty()) return fail("\"" + line + "\": -A without a chain name");
    const std::string args = space == std::string::npos ? "" : rest.substr(space + 1);
    const bool builtin = is_builtin_chain(table->name, chain);
    if (opts.only_weir && !builtin && !is_weir_chain(chain)) continue;  // a foreign chain
    if (!is_plain_name(chain)) return fail("\"" + chain + "\": not a chain name");

    auto rule = parse_rule_args(args, f);
    if (!rule) {
      if (opts.only_weir && builtin) {
        // A foreign rule in a built-in chain: skip it unless it is weir's jump.
        auto tokens = tokenize(args);
        if (!tokens || !text_jumps_to_weir(*tokens)) continue;
      }
      return fail(table->name + " " + chain + ": " + rule.error().message);
    }
    if (opts.only_weir && builtin && !is_weir_jump(*rule)) continue;
    rule->counters = counters;
    chain_in(*table, chain).rules.push_back(std::move(*rule));
  }
  if (table) return Error{ErrorKind::InvalidArgument, "table \"" + table->name + "\" has no COMMIT"};
  return rs;
}

}  // namespace weir
