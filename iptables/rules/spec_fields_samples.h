// Test-only: one good and one bad text per spec field, shared by the tests
// of every input (JSON and text in rules/, flags and environment variables
// in frontend/, annotations in cni/), so each checks every field of the table
// and the same text gives the same value or the same error everywhere.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace weir::testing {

struct FieldSample {
  std::string key;                  // the field's JSON key
  std::vector<std::string> texts;   // each gives `value`
  nlohmann::json value;             // the field's JSON value afterwards (get_json)
  std::string bad;                  // a text every input refuses
  std::string error;                // the message after "<what>: "
};

inline std::vector<FieldSample> field_samples() {
  using nlohmann::json;
  return {
      {"outboundPort", {"16001", " 0x3E81 ", "016001"}, 16001, "15001.5",
       "\"15001.5\" is not a whole number (a port is 1-65535)"},
      {"inboundPort", {"16006", "0x3e86"}, 16006, "70000", "70000 is not a port (1-65535)"},
      {"proxyUids", {"1000,1001", "1000, 0x3e9"}, json::array({1000, 1001}), "1337,istio",
       "\"1337,istio\": \"istio\" is not a numeric id (0-4294967295)"},
      {"proxyGids", {"2000", "0x7d0"}, json::array({2000}), "-1", "\"-1\" is not a numeric id (0-4294967295)"},
      {"inboundPorts", {"80,8000-8100", "0x50, 8000:8100"}, json::array({80, "8000-8100"}), "80,x",
       "\"80,x\": \"x\" is not a port"},
      {"excludeInboundPorts", {"15020", "0x3AAC"}, json::array({15020}), "0", "0 is not a port (1-65535)"},
      {"excludeInboundCidrs", {"198.18.4.0/24"}, json::array({"198.18.4.0/24"}), "198.18.4.1/24",
       "198.18.4.1/24: host bits set (did you mean 198.18.4.0/24?)"},
      {"inboundTunnelPort", {"0", "0x0"}, 0, "-5", "\"-5\" is not a port"},
      {"outboundCidrs", {"198.18.0.0/15,fd00::/8", " 198.18.0.0/15 , fd00::/8 "},
       json::array({"198.18.0.0/15", "fd00::/8"}), "*,10.0.0.0/8", "\"*,10.0.0.0/8\": \"*\": \"*\" is not an IPv4 address"},
      {"excludeOutboundCidrs", {"198.19.0.1"}, json::array({"198.19.0.1/32"}), "198.19.0.0/33",
       "\"198.19.0.0/33\": prefix /33 is too long for ipv4 (at most /32)"},
      {"outboundPorts", {"443"}, json::array({443}), "443.0", "\"443.0\" is not a whole number (a port is 1-65535)"},
      {"excludeOutboundPorts", {"5432,6000-6100"}, json::array({5432, "6000-6100"}), "6100-6000",
       "\"6100-6000\": reversed range (first port above last)"},
      {"excludeInterfaces", {"eth1"}, json::array({"eth1"}), "a-very-long-name0",
       "interface name \"a-very-long-name0\" is longer than 15 characters"},
      {"kubeVirtInterfaces", {"tap0,tap1"}, json::array({"tap0", "tap1"}), "tap0,,tap1",
       "\"tap0,,tap1\": empty item in list"},
      {"kubeVirtExcludes", {"ignore", "IGNORE", " Ignore "}, "ignore", "skip", "\"skip\" is not one of apply, ignore"},
      {"ipFamilies", {"ipv4", "IPv4"}, "ipv4", "ipv5", "\"ipv5\" is not one of ipv4, ipv6, dual"},
      {"mode", {"tproxy", "TPROXY"}, "tproxy", "nat", "\"nat\" is not one of redirect, tproxy"},
      {"tproxyMark", {"0x100", "256"}, 256, "0x1ffffffff",
       "\"0x1ffffffff\" is not a number from 0 to 4294967295 (decimal or 0x-hex)"},
      {"tproxyRouteTable", {"200", "0xc8"}, 200, "1.5", "\"1.5\" is not a whole number (0-4294967295, decimal or 0x-hex)"},
      {"dns.capture", {"true", "TRUE", "1"}, true, "yes", "\"yes\" is not true or false (or 1 or 0)"},
      {"dns.captureAll", {"false", "0", "False"}, false, "no", "\"no\" is not true or false (or 1 or 0)"},
      {"dns.servers", {"198.18.0.53,fd00::53"}, json::array({"198.18.0.53/32", "fd00::53/128"}), "198.18.0.",
       "\"198.18.0.\": \"198.18.0.\" is not an IPv4 address"},
      {"dns.port", {"5353", "0x14e9"}, 5353, "0", "0 is not a port (1-65535)"},
      {"dropInvalid", {"true", "True"}, true, "on", "\"on\" is not true or false (or 1 or 0)"},
      {"backend", {"nftables", "NFTables"}, "nftables", "nft", "\"nft\" is not one of auto, nftables, iptables"},
  };
}

}  // namespace weir::testing
