// weir explain: reads the packet flags into a PacketQuery (explain.h fills in
// the defaults), gets weir's rules (planned from the capture flags, or read
// live with --netns) and prints explain.h's trace.
#include <iostream>
#include <optional>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "frontend/capture_flags.h"
#include "cmd/command.h"
#include "rules/explain.h"
#include "kernel/ops.h"
#include "rules/plan.h"
#include "rules/xtables/lower.h"

namespace weir {
namespace {

Result<Cidr> host_addr(const std::string& what, const std::string& text) {
  Result<Cidr> c = parse_cidr(text);
  if (!c) return c.error().wrap(what);
  const uint8_t full = c->family == Family::V4 ? 32 : 128;
  if (c->prefix != full) return Error{ErrorKind::InvalidArgument, what + ": " + text + " is a network; want one address"};
  return c;
}

// The footer of --help: explain.h's packet defaults.
std::string defaults_text() {
  const PacketAddrDefaults& v4 = kV4PacketDefaults;
  const PacketAddrDefaults& v6 = kV6PacketDefaults;
  const std::string sport = std::to_string(kDefaultSourcePort);
  const std::string id = std::to_string(kDefaultAppId);
  return std::string("Defaults: inbound (hook prerouting) packets come from ") + v4.peer + ":" + sport + " (" +
         v6.peer + " for IPv6) on " + kDefaultIface + " to the pod at " + v4.pod + " (" + v6.pod +
         "); outbound (hook output) packets leave the pod from " + v4.pod + ":" + sport + " (" + v4.loopback +
         " when --dst is loopback) sent by uid " + id + ", gid " + id +
         ". The family follows the addresses given. Without --netns the rules are planned from the capture flags "
         "(defaults if none).";
}

class ExplainCommand : public Subcommand {
 public:
  void bind(CLI::App& app) override {
    app.footer(defaults_text());
    const std::string id = std::to_string(kDefaultAppId);
    netns_.bind(app, false, false);
    output_.bind(app);
    CLI::Option* dir = app.add_option("--direction", direction_, "inbound or outbound")->type_name("DIR")
                           ->check(CLI::IsMember({"inbound", "outbound"}));
    CLI::Option* hook = app.add_option("--hook", hook_, "prerouting or output (instead of --direction)")->type_name("HOOK")
                            ->check(CLI::IsMember({"prerouting", "output"}));
    dir->excludes(hook);
    app.add_option("--proto", proto_, "tcp or udp")->type_name("PROTO")->check(CLI::IsMember({"tcp", "udp"}));
    src_opt_ = app.add_option("--src", src_, "Source address")->type_name("ADDR");
    dst_opt_ = app.add_option("--dst", dst_, "Destination address")->type_name("ADDR");
    sport_opt_ = app.add_option("--sport", sport_, "Source port (default " + std::to_string(kDefaultSourcePort) + ")")
                     ->type_name("PORT");
    app.add_option("--dport", dport_, "Destination port")->type_name("PORT")->required();
    uid_opt_ = app.add_option("--uid", uid_, "UID of the sending process (outbound; default " + id + ")")->type_name("UID");
    gid_opt_ = app.add_option("--gid", gid_, "GID of the sending process (outbound; default " + id + ")")->type_name("GID");
    in_iface_opt_ = app.add_option("--in-iface", in_iface_,
                                   std::string("Interface the packet arrives on (inbound; default ") + kDefaultIface + ")")
                        ->type_name("IFACE");
    out_iface_opt_ = app.add_option("--out-iface", out_iface_,
                                    std::string("Interface the packet leaves by (outbound; default lo for loopback "
                                                "destinations and the pod's own address, --src, else ") +
                                        kDefaultIface + ")")
                         ->type_name("IFACE");
    app.add_option("--ct-state", ct_state_, "Conntrack state: new, established, related or invalid")->type_name("STATE")
        ->check(CLI::IsMember({"new", "established", "related", "invalid"}));
    app.add_option("--mark", mark_, "Packet mark (decimal or 0x-hex)")->type_name("MARK");
    app.add_option("--connmark", connmark_, "Connection mark (decimal or 0x-hex)")->type_name("MARK");
    flags_.bind(app);
  }

  Result<int> run() override {
    if (direction_.empty() && hook_.empty()) {
      return Error{ErrorKind::InvalidArgument, "give --direction inbound|outbound or --hook prerouting|output"};
    }
    if (!netns_.netns.empty() && flags_.any_given()) {
      return Error{ErrorKind::InvalidArgument,
                   "--netns reads the live rules; capture flags or --config would be ignored, so give one or the other"};
    }
    std::optional<CaptureSpec> spec;
    if (netns_.netns.empty()) {
      Result<CaptureSpec> s = flags_.build();
      if (!s) return s.error();
      spec = std::move(*s);
    }
    Result<PacketQuery> query = read_packet(spec);
    if (!query) return query.error();
    Result<Packet> packet = make_packet(*query);
    if (!packet) return packet.error();

    // The planned policy at the granularity the libiptc filter reads back, so
    // the rule numbers are those of the live rules.
    CapturePolicy rules;
    std::string source;
    if (spec) {
      rules = xtables::canonical(capture_policy(*spec));
      source = "planned from the capture flags";
    } else {
      Result<NetnsTarget> t = netns_.target();
      if (!t) return t.error();
      Result<ShowReport> live = show(*t);
      if (!live) return live.error();
      rules = std::move(live->live);
      source = "live rules of " + t->netns_path + " (" + live->backend + " backend)";
    }
    // A family without rules is an answer, not an error: "why does my IPv6
    // traffic bypass the proxy?" -- because weir installed no IPv6 rules.
    const Explanation e = explain(rules, *packet);
    if (output_.json()) {
      nlohmann::json j = to_json(e);
      j["rules"] = source;
      std::cout << j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << '\n';
    } else {
      std::cout << "rules: " << source << "\n" << render_explanation(e);
    }
    return kExitOk;
  }

 private:
  bool inbound() const { return direction_ == "inbound" || hook_ == "prerouting"; }

  // The packet flags as given; explain.h's make_packet fills in the rest.
  Result<PacketQuery> read_packet(const std::optional<CaptureSpec>& spec) const {
    PacketQuery q;
    q.hook = inbound() ? Packet::Hook::Prerouting : Packet::Hook::Output;
    q.proto = proto_ == "udp" ? Proto::Udp : Proto::Tcp;
    if (src_opt_->count()) {
      Result<Cidr> c = host_addr("--src", src_);
      if (!c) return c.error();
      q.src = *c;
    }
    if (dst_opt_->count()) {
      Result<Cidr> c = host_addr("--dst", dst_);
      if (!c) return c.error();
      q.dst = *c;
    }
    if (q.src && q.dst && q.src->family != q.dst->family) {
      return Error{ErrorKind::InvalidArgument, "--src " + src_ + " and --dst " + dst_ + " are of different families"};
    }
    // With no address, the spec's first family.
    q.family = (spec && spec->ip_families == IpFamilies::V6) ? Family::V6 : Family::V4;

    if (sport_opt_->count()) {
      Result<uint16_t> port = parse_port_value("--sport", sport_);
      if (!port) return port.error();
      q.sport = *port;
    }
    Result<uint16_t> dport = parse_port_value("--dport", dport_);
    if (!dport) return dport.error();
    q.dport = *dport;

    if (inbound()) {
      for (CLI::Option* o : {uid_opt_, gid_opt_, out_iface_opt_}) {
        if (o->count()) return Error{ErrorKind::InvalidArgument, o->get_name() + ": only for outbound packets (hook output)"};
      }
      q.in_iface = in_iface_;
    } else {
      if (in_iface_opt_->count()) return Error{ErrorKind::InvalidArgument, "--in-iface: only for inbound packets (hook prerouting)"};
      q.out_iface = out_iface_;
      if (uid_opt_->count()) {
        Result<uint32_t> v = parse_u32_value("--uid", uid_);
        if (!v) return v.error();
        q.uid = *v;
      }
      if (gid_opt_->count()) {
        Result<uint32_t> v = parse_u32_value("--gid", gid_);
        if (!v) return v.error();
        q.gid = *v;
      }
    }

    if (ct_state_ == "established") q.ct_state = Packet::CtState::Established;
    else if (ct_state_ == "related") q.ct_state = Packet::CtState::Related;
    else if (ct_state_ == "invalid") q.ct_state = Packet::CtState::Invalid;
    if (!mark_.empty()) {
      Result<uint32_t> v = parse_u32_value("--mark", mark_);
      if (!v) return v.error();
      q.mark = *v;
    }
    if (!connmark_.empty()) {
      Result<uint32_t> v = parse_u32_value("--connmark", connmark_);
      if (!v) return v.error();
      q.connmark = *v;
    }
    return q;
  }

  CaptureFlags flags_;
  NetnsFlags netns_;
  OutputFlag output_;
  std::string direction_, hook_, proto_ = "tcp", src_, dst_, sport_, dport_, uid_, gid_;
  std::string in_iface_, out_iface_, ct_state_ = "new", mark_, connmark_;
  CLI::Option *src_opt_ = nullptr, *dst_opt_ = nullptr, *sport_opt_ = nullptr, *uid_opt_ = nullptr,
              *gid_opt_ = nullptr, *in_iface_opt_ = nullptr, *out_iface_opt_ = nullptr;
};

}  // namespace

std::unique_ptr<Subcommand> make_explain_command() { return std::make_unique<ExplainCommand>(); }

}  // namespace weir
