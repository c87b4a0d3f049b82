#include "kernel/nft/foreign.h"

namespace weir::nft::netlink {
namespace {

// What a dump asks for: request() builds an inet header; the payload
// writer sets the family the dump is of (AF_UNSPEC: every family) and, for
// chains, the table (a kernel that does not filter by it sends all chains
// of the family, and the answer is filtered here too).
struct DumpOf {
  uint8_t family;
  const char* table;  // or nullptr
};

void put_dump_of(nlmsghdr* nlh, const void* arg) {
  const auto* d = static_cast<const DumpOf*>(arg);
  static_cast<nfgenmsg*>(mnl_nlmsg_get_payload(nlh))->nfgen_family = d->family;
  if (d->table) mnl_attr_put_strz(nlh, NFTA_CHAIN_TABLE, d->table);
}

// The string attribute `type` of an nf_tables object message, read with
// libmnl alone (no libnftnl parse of another tool's objects); empty if none.
std::string name_attr(const nlmsghdr* m, uint16_t type) {
  const char* tail = static_cast<const char*>(mnl_nlmsg_get_payload_tail(m));
  for (auto* attr = static_cast<const nlattr*>(mnl_nlmsg_get_payload_offset(m, sizeof(nfgenmsg)));
       mnl_attr_ok(attr, static_cast<int>(tail - reinterpret_cast<const char*>(attr))); attr = mnl_attr_next(attr)) {
    if (mnl_attr_get_type(attr) == type && mnl_attr_validate(attr, MNL_TYPE_NUL_STRING) >= 0)
      return mnl_attr_get_str(attr);
  }
  return {};
}

uint8_t family_of(const nlmsghdr* m) { return static_cast<const nfgenmsg*>(mnl_nlmsg_get_payload(m))->nfgen_family; }

// nft's word for a table family ("ip", "inet", ...).
std::string family_word(uint8_t f) {
  switch (f) {
    case NFPROTO_IPV4: return "ip";
    case NFPROTO_IPV6: return "ip6";
    case NFPROTO_INET: return "inet";
    case NFPROTO_ARP: return "arp";
    case NFPROTO_BRIDGE: return "bridge";
    case NFPROTO_NETDEV: return "netdev";
  }
  return "family " + std::to_string(f);
}

bool xtables_table(const std::string& name) { return name == "nat" || name == "mangle" || name == "raw"; }

}  // namespace

Result<std::vector<ForeignRules>> foreign_rules(Socket& s) {
  struct Table {
    uint8_t family;
    std::string name;
  };
  std::vector<Table> tables;
  const DumpOf every{NFPROTO_UNSPEC, nullptr};
  Status st = request(s, NFT_MSG_GETTABLE, NLM_F_DUMP, "list the nftables tables", put_dump_of, &every,
                      [&](const nlmsghdr* m) {
                        if (NFNL_MSG_TYPE(m->nlmsg_type) != NFT_MSG_NEWTABLE) return;
                        std::string name = name_attr(m, NFTA_TABLE_NAME);
                        if (!name.empty()) tables.push_back(Table{family_of(m), std::move(name)});
                      });
  if (!st.ok()) return st.error();
  std::vector<ForeignRules> out;
  for (const Table& t : tables)
    if (const char* tool = capture_tool_of_table(t.name))
      out.push_back(ForeignRules{tool, "nftables", family_word(t.family) + " " + t.name, {}});
  // iptables-nft's tables: ip and ip6 nat, mangle, raw, one chain dump per family.
  for (uint8_t fam : {uint8_t{NFPROTO_IPV4}, uint8_t{NFPROTO_IPV6}}) {
    std::vector<std::string> names;
    for (const Table& t : tables)
      if (t.family == fam && xtables_table(t.name)) names.push_back(t.name);
    if (names.empty()) continue;
    std::vector<std::pair<std::string, std::string>> chains;  // table, chain; kernel order
    const DumpOf of{fam, names.size() == 1 ? names[0].c_str() : nullptr};
    st = request(s, NFT_MSG_GETCHAIN, NLM_F_DUMP, "list the chains of the " + family_word(fam) + " tables",
                 put_dump_of, &of, [&](const nlmsghdr* m) {
                   if (NFNL_MSG_TYPE(m->nlmsg_type) != NFT_MSG_NEWCHAIN || family_of(m) != fam) return;
                   chains.emplace_back(name_attr(m, NFTA_CHAIN_TABLE), name_attr(m, NFTA_CHAIN_NAME));
                 });
    if (!st.ok()) return st.error();
    for (const std::string& table : names) {
      std::vector<std::string> in_table;
      for (const auto& [tn, cn] : chains)
        if (tn == table) in_table.push_back(cn);
      for (ForeignRules& f : foreign_chains("iptables-nft", family_word(fam) + " " + table, in_table))
        out.push_back(std::move(f));
    }
  }
  return out;
}

}  // namespace weir::nft::netlink
