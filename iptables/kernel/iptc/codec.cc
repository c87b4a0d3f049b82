#include "kernel/iptc/codec.h"

#include <arpa/inet.h>
extern "C" {
#include <libiptc/libip6tc.h>
}
#include <libiptc/libiptc.h>
#include <linux/netfilter/nf_nat.h>
#include <linux/netfilter/xt_CONNMARK.h>
#include <linux/netfilter/xt_CT.h>
#include <linux/netfilter/xt_MARK.h>
#include <linux/netfilter/xt_TPROXY.h>
#include <linux/netfilter/xt_comment.h>
#include <linux/netfilter/xt_connmark.h>
#include <linux/netfilter/xt_conntrack.h>
#include <linux/netfilter/xt_mark.h>
#include <linux/netfilter/xt_multiport.h>
#include <linux/netfilter/xt_owner.h>
#include <linux/netfilter/xt_tcpudp.h>
#include <netinet/in.h>

#include <bit>
#include <cstring>
#include <string>

namespace weir::iptc {
namespace {

constexpr size_t kHeaderSize = XT_ALIGN(sizeof(xt_entry_match));
static_assert(sizeof(xt_entry_match) == sizeof(xt_entry_target), "match and target headers share a layout");

// Appends one match or target (header + XT_ALIGNed payload) to `out`.
// xt_entry_match and xt_entry_target have the same user-side layout.
Status append_part(std::vector<uint8_t>& out, const std::string& name, uint8_t revision, const void* info,
                   size_t info_size) {
  if (name.size() >= XT_EXTENSION_MAXNAMELEN)
    return Error{ErrorKind::InvalidArgument, "name " + name + " is longer than " +
                                                 std::to_string(XT_EXTENSION_MAXNAMELEN - 1) + " characters", 0};
  size_t size = kHeaderSize + XT_ALIGN(info_size);
  size_t at = out.size();
  out.resize(at + size, 0);
  xt_entry_match header{};
  header.u.user.match_size = static_cast<uint16_t>(size);
  std::memcpy(header.u.user.name, name.data(), name.size());
  header.u.user.revision = revision;
  std::memcpy(out.data() + at, &header, sizeof(header));
  std::memcpy(out.data() + at + kHeaderSize, info, info_size);
  return {};
}

template <typename Info>
Status append(std::vector<uint8_t>& out, const char* name, uint8_t revision, const Info& info) {
  return append_part(out, name, revision, &info, sizeof(info));
}

uint8_t ip_proto(Proto p) {
  switch (p) {
    case Proto::Tcp: return IPPROTO_TCP;
    case Proto::Udp: return IPPROTO_UDP;
    case Proto::Any: return 0;
  }
  return 0;
}

Status encode_matches(const Rule& r, std::vector<uint8_t>& out) {
  bool ported = r.sport || r.dport || r.multiport;
  if (ported && (r.proto == Proto::Any || r.proto_negated))
    return Error{ErrorKind::InvalidArgument, "a port match needs protocol tcp or udp", 0};
  if (r.sport || r.dport) {
    auto range = [](const std::optional<PortMatch>& m, uint16_t (&pts)[2], uint8_t inv, uint8_t& invflags) {
      pts[0] = m ? m->range.first : 0;
      pts[1] = m ? m->range.last : 0xffff;
      if (m && m->negated) invflags |= inv;
    };
    if (r.proto == Proto::Tcp) {
      xt_tcp info{};
      range(r.sport, info.spts, XT_TCP_INV_SRCPT, info.invflags);
      range(r.dport, info.dpts, XT_TCP_INV_DSTPT, info.invflags);
      if (Status s = append(out, "tcp", 0, info); !s) return s;
    } else {
      xt_udp info{};
      range(r.sport, info.spts, XT_UDP_INV_SRCPT, info.invflags);
      range(r.dport, info.dpts, XT_UDP_INV_DSTPT, info.invflags);
      if (Status s = append(out, "udp", 0, info); !s) return s;
    }
  }
  if (r.multiport) {
    xt_multiport_v1 info{};
    info.flags = XT_MULTIPORT_DESTINATION;
    size_t n = 0;
    for (const PortRange& p : r.multiport->ports) {
      size_t slots = p.first == p.last ? 1 : 2;
      if (n + slots > XT_MULTI_PORTS)
        return Error{ErrorKind::InvalidArgument,
                     "multiport match has more than " + std::to_string(XT_MULTI_PORTS) + " ports (a range counts as two)", 0};
      info.ports[n] = p.first;
      if (slots == 2) {
        info.pflags[n] = 1;
        info.ports[n + 1] = p.last;
      }
      n += slots;
    }
    if (n == 0) return Error{ErrorKind::InvalidArgument, "multiport match without ports", 0};
    info.count = static_cast<uint8_t>(n);
    info.invert = r.multiport->negated ? 1 : 0;
    if (Status s = append(out, "multiport", 1, info); !s) return s;
  }
  if (r.owner) {
    xt_owner_match_info info{};
    uint8_t bit = r.owner->kind == Owner::Kind::Uid ? XT_OWNER_UID : XT_OWNER_GID;
    if (bit == XT_OWNER_UID) info.uid_min = info.uid_max = r.owner->id;
    else info.gid_min = info.gid_max = r.owner->id;
    info.match = bit;
    info.invert = r.owner->negated ? bit : 0;
    if (Status s = append(out, "owner", 1, info); !s) return s;
  }
  if (r.conntrack) {
    xt_conntrack_mtinfo3 info{};
    info.match_flags = XT_CONNTRACK_STATE;
    info.invert_flags = r.conntrack->negated ? XT_CONNTRACK_STATE : 0;
    info.state_mask = static_cast<uint16_t>(r.conntrack->states);
    if (Status s = append(out, "conntrack", 3, info); !s) return s;
  }
  if (r.mark) {
    xt_mark_mtinfo1 info{};
    info.mark = r.mark->value;
    info.mask = r.mark->mask;
    info.invert = r.mark->negated ? 1 : 0;
    if (Status s = append(out, "mark", 1, info); !s) return s;
  }
  if (r.connmark) {
    xt_connmark_mtinfo1 info{};
    info.mark = r.connmark->value;
    info.mask = r.connmark->mask;
    info.invert = r.connmark->negated ? 1 : 0;
    if (Status s = append(out, "connmark", 1, info); !s) return s;
  }
  if (!r.comment.empty()) {
    xt_comment_info info{};
    if (r.comment.size() >= XT_MAX_COMMENT_LEN)
      return Error{ErrorKind::InvalidArgument,
                   "comment is longer than " + std::to_string(XT_MAX_COMMENT_LEN - 1) + " characters", 0};
    std::memcpy(info.comment, r.comment.data(), r.comment.size());
    if (Status s = append(out, "comment", 0, info); !s) return s;
  }
  return {};
}

Status encode_target(const Rule& r, Family f, std::vector<uint8_t>& out) {
  auto standard = [&](const std::string& label) {
    int verdict = 0;  // libiptc fills it in from the label
    return append(out, label.c_str(), 0, verdict);
  };
  struct Visitor {
    const Rule& r;
    Family f;
    std::vector<uint8_t>& out;
    decltype(standard)& std_target;

    Status operator()(const Verdict& v) const {
      switch (v.kind) {
        case Verdict::Accept: return std_target(IPTC_LABEL_ACCEPT);
        case Verdict::Drop: return std_target(IPTC_LABEL_DROP);
        case Verdict::Return: return std_target(IPTC_LABEL_RETURN);
      }
      return Error{ErrorKind::Internal, "unknown verdict", 0};
    }
    Status operator()(const Jump& j) const {
      if (j.chain.empty()) return Error{ErrorKind::InvalidArgument, "jump without a chain name", 0};
      return std_target(j.chain);
    }
    Status operator()(const Redirect& t) const {
      if (r.proto == Proto::Any || r.proto_negated)
        return Error{ErrorKind::InvalidArgument, "REDIRECT needs protocol tcp or udp", 0};
      if (f == Family::V4) {
        nf_nat_ipv4_multi_range_compat info{};
        info.rangesize = 1;
        info.range[0].flags = NF_NAT_RANGE_PROTO_SPECIFIED;
        info.range[0].min.tcp.port = htons(t.port);
        info.range[0].max.tcp.port = htons(t.port);
        return append(out, "REDIRECT", 0, info);
      }
      nf_nat_range info{};
      info.flags = NF_NAT_RANGE_PROTO_SPECIFIED;
      info.min_proto.tcp.port = htons(t.port);
      info.max_proto.tcp.port = htons(t.port);
      return append(out, "REDIRECT", 0, info);
    }
    Status operator()(const Tproxy& t) const {
      if (r.proto == Proto::Any || r.proto_negated)
        return Error{ErrorKind::InvalidArgument, "TPROXY needs protocol tcp or udp", 0};
      xt_tproxy_target_info_v1 info{};  // laddr stays any (0.0.0.0 / ::)
      info.mark_mask = t.mask;
      info.mark_value = t.mark;
      info.lport = htons(t.port);
      return append(out, "TPROXY", 1, info);
    }
    Status operator()(const SetMark& t) const {
      xt_mark_tginfo2 info{};
      info.mark = t.value;
      info.mask = t.mask;
      return append(out, "MARK", 2, info);
    }
    Status operator()(const Connmark& t) const {
      // Revision 2 (shift 0): iptables-legacy-save prints revision 1 as
      // "[unsupported revision]" on this kernel, which offers 2.
      xt_connmark_tginfo2 info{};
      info.ctmask = 0xffffffff;
      info.nfmask = 0xffffffff;
      info.mode = t.mode == Connmark::Save ? XT_CONNMARK_SAVE : XT_CONNMARK_RESTORE;
      return append(out, "CONNMARK", 2, info);
    }
    Status operator()(const CtZone& t) const {
      xt_ct_target_info_v1 info{};
      info.zone = t.zone;
      return append(out, "CT", 2, info);
    }
    Status operator()(const UnknownTarget& t) const {
      return Error{ErrorKind::InvalidArgument, "cannot install unknown target '" + t.name + "'", 0};
    }
  };
  return std::visit(Visitor{r, f, out, standard}, r.target);
}

// iptables masks an interface name over its characters and the terminator.
Status set_iface(const std::string& name, char (&iface)[IFNAMSIZ], unsigned char (&mask)[IFNAMSIZ]) {
  if (name.empty()) return {};
  if (name.size() >= IFNAMSIZ)
    return Error{ErrorKind::InvalidArgument, "interface name " + name + " is longer than 15 characters", 0};
  std::memcpy(iface, name.data(), name.size());
  std::memset(mask, 0xff, name.size() + 1);
  return {};
}

void set_addr(const std::optional<Cidr>& c, size_t len, void* addr, void* mask) {
  if (!c) return;
  std::memcpy(addr, c->addr.data(), len);
  auto* m = static_cast<uint8_t*>(mask);
  for (size_t i = 0; i < len; ++i) {
    int bits = static_cast<int>(c->prefix) - static_cast<int>(i * 8);
    m[i] = bits >= 8 ? 0xff : bits <= 0 ? 0 : static_cast<uint8_t>(0xff << (8 - bits));
  }
}

std::optional<Cidr> get_addr(Family f, const void* addr, const void* mask, size_t len) {
  const auto* m = static_cast<const uint8_t*>(mask);
  const auto* a = static_cast<const uint8_t*>(addr);
  int prefix = 0;
  bool any = false;
  for (size_t i = 0; i < len; ++i) {
    prefix += std::popcount(m[i]);
    any |= m[i] != 0 || a[i] != 0;
  }
  if (!any) return std::nullopt;
  Cidr c;
  c.family = f;
  std::memcpy(c.addr.data(), addr, len);
  c.prefix = static_cast<uint8_t>(prefix);
  return c;
}

std::string bounded(const char* s, size_t max) { return std::string(s, strnlen(s, max)); }

void decode_header_fields(Rule& r, Family f, const void* src, const void* smsk, const void* dst, const void* dmsk,
                          const char* in, const char* out, uint16_t proto, uint8_t inv, uint8_t inv_src,
                          uint8_t inv_dst, uint8_t inv_in, uint8_t inv_out) {
  size_t len = f == Family::V4 ? 4 : 16;
  r.src = get_addr(f, src, smsk, len);
  r.src_negated = (inv & inv_src) != 0;
  r.dst = get_addr(f, dst, dmsk, len);
  r.dst_negated = (inv & inv_dst) != 0;
  r.in_iface = bounded(in, IFNAMSIZ);
  r.in_negated = (inv & inv_in) != 0;
  r.out_iface = bounded(out, IFNAMSIZ);
  r.out_negated = (inv & inv_out) != 0;
  r.proto_negated = (inv & XT_INV_PROTO) != 0;
  switch (proto) {
    case 0: r.proto = Proto::Any; break;
    case IPPROTO_TCP: r.proto = Proto::Tcp; break;
    case IPPROTO_UDP: r.proto = Proto::Udp; break;
    default: r.unknown_matches.push_back("-p " + std::to_string(proto)); break;
  }
}

// Reads `Info` out of a match/target payload when it is big enough.
template <typename Info>
bool payload(const uint8_t* part, uint16_t size, Info& info) {
  if (size < kHeaderSize + sizeof(Info)) return false;
  std::memcpy(&info, part + kHeaderSize, sizeof(Info));
  return true;
}

// Decodes one match into `r`; false when weir does not know it.
bool decode_match(Rule& r, const std::string& name, uint8_t rev, const uint8_t* m, uint16_t size) {
  if ((name == "tcp" || name == "udp") && rev == 0 && !r.sport && !r.dport) {
    uint16_t spts[2], dpts[2];
    uint8_t invflags = 0, inv_s, inv_d;
    if (name == "tcp") {
      xt_tcp info{};
      if (!payload(m, size, info) || info.option || info.flg_mask) return false;
      std::memcpy(spts, info.spts, sizeof spts);
      std::memcpy(dpts, info.dpts, sizeof dpts);
      invflags = info.invflags;
      inv_s = XT_TCP_INV_SRCPT;
      inv_d = XT_TCP_INV_DSTPT;
    } else {
      xt_udp info{};
      if (!payload(m, size, info)) return false;
      std::memcpy(spts, info.spts, sizeof spts);
      std::memcpy(dpts, info.dpts, sizeof dpts);
      invflags = info.invflags;
      inv_s = XT_UDP_INV_SRCPT;
      inv_d = XT_UDP_INV_DSTPT;
    }
    if (spts[0] != 0 || spts[1] != 0xffff || (invflags & inv_s))
      r.sport = PortMatch{{spts[0], spts[1]}, (invflags & inv_s) != 0};
    if (dpts[0] != 0 || dpts[1] != 0xffff || (invflags & inv_d))
      r.dport = PortMatch{{dpts[0], dpts[1]}, (invflags & inv_d) != 0};
    return true;
  }
  if (name == "multiport" && rev == 1 && !r.multiport) {
    xt_multiport_v1 info{};
    if (!payload(m, size, info) || info.flags != XT_MULTIPORT_DESTINATION || info.count > XT_MULTI_PORTS) return false;
    Multiport mp;
    for (size_t i = 0; i < info.count; ++i) {
      if (info.pflags[i] && i + 1 < info.count) {
        mp.ports.push_back({info.ports[i], info.ports[i + 1]});
        ++i;
      } else {
        mp.ports.push_back({info.ports[i], info.ports[i]});
      }
    }
    mp.negated = info.invert != 0;
    r.multiport = mp;
    return true;
  }
  if (name == "owner" && rev == 1 && !r.owner) {
    xt_owner_match_info info{};
    if (!payload(m, size, info)) return false;
    if (info.match == XT_OWNER_UID && info.uid_min == info.uid_max && (info.invert & ~XT_OWNER_UID) == 0) {
      r.owner = Owner{Owner::Kind::Uid, info.uid_min, info.invert != 0};
      return true;
    }
    if (info.match == XT_OWNER_GID && info.gid_min == info.gid_max && (info.invert & ~XT_OWNER_GID) == 0) {
      r.owner = Owner{Owner::Kind::Gid, info.gid_min, info.invert != 0};
      return true;
    }
    return false;
  }
  if (name == "conntrack" && rev == 3 && !r.conntrack) {
    xt_conntrack_mtinfo3 info{};
    if (!payload(m, size, info) || info.match_flags != XT_CONNTRACK_STATE) return false;
    r.conntrack = Conntrack{info.state_mask, (info.invert_flags & XT_CONNTRACK_STATE) != 0};
    return true;
  }
  if (name == "mark" && rev == 1 && !r.mark) {
    xt_mark_mtinfo1 info{};
    if (!payload(m, size, info)) return false;
    r.mark = MarkMatch{info.mark, info.mask, info.invert != 0};
    return true;
  }
  if (name == "connmark" && rev == 1 && !r.connmark) {
    xt_connmark_mtinfo1 info{};
    if (!payload(m, size, info)) return false;
    r.connmark = MarkMatch{info.mark, info.mask, info.invert != 0};
    return true;
  }
  if (name == "comment" && rev == 0 && r.comment.empty()) {
    xt_comment_info info{};
    if (!payload(m, size, info)) return false;
    r.comment = bounded(info.comment, sizeof info.comment);
    return true;
  }
  return false;
}

Target decode_target(const std::string& name, uint8_t rev, const uint8_t* t, uint16_t size, Family f) {
  if (name == "REDIRECT" && rev == 0) {
    if (f == Family::V4) {
      nf_nat_ipv4_multi_range_compat info{};
      if (payload(t, size, info) && info.rangesize == 1 && info.range[0].flags == NF_NAT_RANGE_PROTO_SPECIFIED &&
          info.range[0].min.tcp.port == info.range[0].max.tcp.port)
        return Redirect{ntohs(info.range[0].min.tcp.port)};
    } else {
      nf_nat_range info{};
      if (payload(t, size, info) && info.flags == NF_NAT_RANGE_PROTO_SPECIFIED &&
          info.min_proto.tcp.port == info.max_proto.tcp.port)
        return Redirect{ntohs(info.min_proto.tcp.port)};
    }
  } else if (name == "TPROXY" && rev == 1) {
    xt_tproxy_target_info_v1 info{};
    static const nf_inet_addr any{};
    if (payload(t, size, info) && std::memcmp(&info.laddr, &any, sizeof any) == 0)
      return Tproxy{ntohs(info.lport), info.mark_value, info.mark_mask};
  } else if (name == "MARK" && rev == 2) {
    xt_mark_tginfo2 info{};
    if (payload(t, size, info)) return SetMark{info.mark, info.mask};
  } else if (name == "CONNMARK" && rev == 2) {
    xt_connmark_tginfo2 info{};
    if (payload(t, size, info) && info.ctmask == 0xffffffff && info.nfmask == 0xffffffff && info.shift_bits == 0) {
      if (info.mode == XT_CONNMARK_SAVE) return Connmark{Connmark::Save};
      if (info.mode == XT_CONNMARK_RESTORE) return Connmark{Connmark::Restore};
    }
  } else if (name == "CT" && rev == 2) {
    xt_ct_target_info_v1 info{};
    if (payload(t, size, info) && info.flags == 0 && info.ct_events == 0 && info.exp_events == 0 &&
        info.helper[0] == 0 && info.timeout[0] == 0)
      return CtZone{info.zone};
  }
  return UnknownTarget{name};
}

// The part shared by both families once the header fields are read.
template <typename Entry>
Rule decode_entry(const Entry* e, Family f, const char* target_label) {
  Rule r;
  const auto* base = reinterpret_cast<const uint8_t*>(e);
  for (size_t off = sizeof(Entry); off + kHeaderSize <= e->target_offset;) {
    xt_entry_match hdr{};
    std::memcpy(&hdr, base + off, sizeof hdr);
    uint16_t size = hdr.u.user.match_size;
    if (size < kHeaderSize || off + size > e->target_offset) break;  // malformed; stop rather than over-read
    std::string name = bounded(hdr.u.user.name, sizeof hdr.u.user.name);
    if (!decode_match(r, name, hdr.u.user.revision, base + off, size)) r.unknown_matches.push_back(name);
    off += size;
  }
  xt_entry_target thdr{};
  std::memcpy(&thdr, base + e->target_offset, sizeof thdr);
  std::string tname = bounded(thdr.u.user.name, sizeof thdr.u.user.name);
  std::string label = target_label ? target_label : "";
  // The standard target (a verdict, a jump or no target at all) has an empty
  // name in the kernel; an entry not yet through libiptc still carries the label.
  bool standard = tname.empty() ||
                  (thdr.u.user.target_size == XT_ALIGN(sizeof(xt_standard_target)) && tname == label &&
                   (label == IPTC_LABEL_ACCEPT || label == IPTC_LABEL_DROP || label == IPTC_LABEL_RETURN ||
                    label.rfind(kChainPrefix, 0) == 0));
  if (standard) {
    if (label == IPTC_LABEL_ACCEPT) r.target = Verdict{Verdict::Accept};
    else if (label == IPTC_LABEL_DROP) r.target = Verdict{Verdict::Drop};
    else if (label == IPTC_LABEL_RETURN) r.target = Verdict{Verdict::Return};
    else if (label.empty() || label == IPTC_LABEL_QUEUE) r.target = UnknownTarget{label};
    else r.target = Jump{label};
  } else {
    r.target = decode_target(tname, thdr.u.user.revision, base + e->target_offset, thdr.u.user.target_size, f);
  }
  r.counters = Counters{e->counters.pcnt, e->counters.bcnt};
  return r;
}

}  // namespace

Result<EntryBuf> encode(const Rule& r, Family f) {
  // A rule read back with matches weir cannot decode would be rebuilt
  // without them, wider than it was (only a rollback re-encodes read rules):
  // refuse, as for an unknown target, so the failure is reported, not hidden.
  if (!r.unknown_matches.empty()) {
    std::string names;
    for (const auto& m : r.unknown_matches) names += (names.empty() ? "" : ", ") + m;
    return Error{ErrorKind::InvalidArgument, "cannot rebuild a rule with matches weir does not decode (" + names + ")", 0};
  }
  std::vector<uint8_t> elems;
  if (Status s = encode_matches(r, elems); !s) return s.error();
  size_t matches = elems.size();
  if (Status s = encode_target(r, f, elems); !s) return s.error();
  size_t header = f == Family::V4 ? sizeof(ipt_entry) : sizeof(ip6t_entry);
  EntryBuf buf;
  buf.size = header + elems.size();
  buf.words.assign((buf.size + 7) / 8, 0);
  auto* bytes = reinterpret_cast<uint8_t*>(buf.words.data());
  std::memcpy(bytes + header, elems.data(), elems.size());
  uint8_t proto = ip_proto(r.proto);
  if (r.proto_negated && proto == 0) return Error{ErrorKind::InvalidArgument, "'! -p all' is not a protocol", 0};
  if (f == Family::V4) {
    auto* e = reinterpret_cast<ipt_entry*>(bytes);
    if (r.src && r.src->family != Family::V4) return Error{ErrorKind::InvalidArgument, "IPv6 source in an IPv4 rule", 0};
    if (r.dst && r.dst->family != Family::V4) return Error{ErrorKind::InvalidArgument, "IPv6 destination in an IPv4 rule", 0};
    set_addr(r.src, 4, &e->ip.src, &e->ip.smsk);
    set_addr(r.dst, 4, &e->ip.dst, &e->ip.dmsk);
    if (Status s = set_iface(r.in_iface, e->ip.iniface, e->ip.iniface_mask); !s) return s.error();
    if (Status s = set_iface(r.out_iface, e->ip.outiface, e->ip.outiface_mask); !s) return s.error();
    e->ip.proto = proto;
    e->ip.invflags = (r.src_negated ? IPT_INV_SRCIP : 0) | (r.dst_negated ? IPT_INV_DSTIP : 0) |
                     (r.in_negated ? IPT_INV_VIA_IN : 0) | (r.out_negated ? IPT_INV_VIA_OUT : 0) |
                     (r.proto_negated ? XT_INV_PROTO : 0);
    e->target_offset = static_cast<uint16_t>(header + matches);
    e->next_offset = static_cast<uint16_t>(buf.size);
  } else {
    auto* e = reinterpret_cast<ip6t_entry*>(bytes);
    if (r.src && r.src->family != Family::V6) return Error{ErrorKind::InvalidArgument, "IPv4 source in an IPv6 rule", 0};
    if (r.dst && r.dst->family != Family::V6) return Error{ErrorKind::InvalidArgument, "IPv4 destination in an IPv6 rule", 0};
    set_addr(r.src, 16, &e->ipv6.src, &e->ipv6.smsk);
    set_addr(r.dst, 16, &e->ipv6.dst, &e->ipv6.dmsk);
    if (Status s = set_iface(r.in_iface, e->ipv6.iniface, e->ipv6.iniface_mask); !s) return s.error();
    if (Status s = set_iface(r.out_iface, e->ipv6.outiface, e->ipv6.outiface_mask); !s) return s.error();
    e->ipv6.proto = proto;
    // Without IP6T_F_PROTO the kernel ignores ipv6.proto altogether.
    if (proto != 0) e->ipv6.flags |= IP6T_F_PROTO;
    e->ipv6.invflags = (r.src_negated ? IP6T_INV_SRCIP : 0) | (r.dst_negated ? IP6T_INV_DSTIP : 0) |
                       (r.in_negated ? IP6T_INV_VIA_IN : 0) | (r.out_negated ? IP6T_INV_VIA_OUT : 0) |
                       (r.proto_negated ? XT_INV_PROTO : 0);
    e->target_offset = static_cast<uint16_t>(header + matches);
    e->next_offset = static_cast<uint16_t>(buf.size);
  }
  return buf;
}

Rule decode(const void* entry, Family f, const char* target_label) {
  if (f == Family::V4) {
    const auto* e = static_cast<const ipt_entry*>(entry);
    Rule r = decode_entry(e, f, target_label);
    std::vector<std::string> unknown = std::move(r.unknown_matches);
    r.unknown_matches.clear();
    decode_header_fields(r, f, &e->ip.src, &e->ip.smsk, &e->ip.dst, &e->ip.dmsk, e->ip.iniface, e->ip.outiface,
                         e->ip.proto, e->ip.invflags, IPT_INV_SRCIP, IPT_INV_DSTIP, IPT_INV_VIA_IN, IPT_INV_VIA_OUT);
    if (e->ip.flags & IPT_F_FRAG) r.unknown_matches.push_back("-f");
    r.unknown_matches.insert(r.unknown_matches.end(), unknown.begin(), unknown.end());
    return r;
  }
  const auto* e = static_cast<const ip6t_entry*>(entry);
  Rule r = decode_entry(e, f, target_label);
  std::vector<std::string> unknown = std::move(r.unknown_matches);
  r.unknown_matches.clear();
  uint16_t proto = (e->ipv6.flags & IP6T_F_PROTO) ? e->ipv6.proto : 0;
  decode_header_fields(r, f, &e->ipv6.src, &e->ipv6.smsk, &e->ipv6.dst, &e->ipv6.dmsk, e->ipv6.iniface,
                       e->ipv6.outiface, proto, e->ipv6.invflags, IP6T_INV_SRCIP, IP6T_INV_DSTIP, IP6T_INV_VIA_IN,
                       IP6T_INV_VIA_OUT);
  r.unknown_matches.insert(r.unknown_matches.end(), unknown.begin(), unknown.end());
  return r;
}

}  // namespace weir::iptc
