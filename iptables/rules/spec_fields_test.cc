// The table of spec fields: every field through JSON and its text form, the
// one grammar, the caps on messages about long lists, near-linear lists.
#include "rules/spec_fields.h"

#include <chrono>
#include <set>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include "rules/spec_fields_samples.h"

using namespace weir;
using json = nlohmann::json;

namespace {

// The fields whose JSON form is a JSON number or boolean only (a quoted port
// is refused, so a typo'd config is noticed).
bool json_takes_no_string(const std::string& key) {
  static const std::set<std::string> kScalars{"outboundPort", "inboundPort", "inboundTunnelPort", "dns.port",
                                              "dns.capture", "dns.captureAll", "dropInvalid"};
  return kScalars.count(key) > 0;
}

std::string after_what(const std::string& message, const std::string& what) {
  REQUIRE_MESSAGE(message.rfind(what + ": ", 0) == 0, message, " should start with ", what);
  return message.substr(what.size() + 2);
}

}  // namespace

TEST_CASE("the table: one entry per field, every name distinct") {
  std::set<std::string> keys, flags;
  for (const SpecField& f : spec_fields()) {
    CAPTURE(f.key);
    CHECK(keys.insert(f.key).second);
    CHECK(flags.insert(f.flag).second);
    CHECK(find_spec_field(f.key) == &f);
    CHECK(field_annotation(f) == "weir.dev/" + f.key);
  }
  // to_json prints exactly the table's fields (dns.* inside "dns").
  std::set<std::string> printed;
  const json printed_json = to_json(CaptureSpec{});
  for (const auto& [k, v] : printed_json.items()) {
    if (k == "dns") {
      for (const auto& [sub, sv] : v.items()) printed.insert("dns." + sub);
    } else {
      printed.insert(k);
    }
  }
  CHECK(printed == keys);
  // Every field has a sample, so every test that walks the samples covers it.
  std::set<std::string> sampled;
  for (const auto& s : testing::field_samples()) sampled.insert(s.key);
  CHECK(sampled == keys);
  CHECK(flag_env_name("WEIR_", "outbound-port") == "WEIR_OUTBOUND_PORT");
  CHECK(find_spec_field("dns") == nullptr);
  CHECK(find_spec_field("nope") == nullptr);
}

TEST_CASE("every field: its text and its JSON give the same value, and the same error") {
  for (const auto& sample : testing::field_samples()) {
    CAPTURE(sample.key);
    const SpecField* f = find_spec_field(sample.key);
    REQUIRE(f != nullptr);
    for (const std::string& text : sample.texts) {
      CAPTURE(text);
      CaptureSpec by_text;
      REQUIRE_MESSAGE(f->set_text(by_text, sample.key, text).ok(), text);
      CHECK(f->get_json(by_text) == sample.value);
      CHECK(f->get_json(by_text) != f->get_json(CaptureSpec{}));  // the sample changes the field
      // JSON: the printed value reads back to the same value...
      CaptureSpec by_json;
      REQUIRE(f->set_json(by_json, sample.key, sample.value).ok());
      CHECK(f->get_json(by_json) == sample.value);
      // ...and the text as a JSON string means the same, where a string is taken.
      CaptureSpec by_json_text;
      Status st = f->set_json(by_json_text, sample.key, json(text));
      if (json_takes_no_string(sample.key)) {
        CHECK_FALSE(st.ok());
      } else {
        REQUIRE_MESSAGE(st.ok(), st.error().message);
        CHECK(f->get_json(by_json_text) == sample.value);
      }
    }
    CaptureSpec s;
    Status bad = f->set_text(s, sample.key, sample.bad);
    REQUIRE_FALSE(bad.ok());
    CHECK(bad.error().kind == ErrorKind::InvalidSpec);
    CHECK(after_what(bad.error().message, sample.key) == sample.error);
    if (!json_takes_no_string(sample.key)) {
      Status bad_json = f->set_json(s, sample.key, json(sample.bad));
      REQUIRE_FALSE(bad_json.ok());
      CHECK(after_what(bad_json.error().message, sample.key) == sample.error);
    }
  }
}

TEST_CASE("merge_json and to_json go through the table, dns keys nested") {
  auto s = spec_from_json(json{{"dns", {{"capture", true}, {"port", 5353}}}, {"backend", "iptables"},
                               {"tproxyMark", "0x539"}});
  REQUIRE_MESSAGE(s.ok(), s.error().message);
  CHECK(s->dns.capture);
  CHECK(s->dns.port == 5353);
  CHECK(s->backend == FilterBackend::Iptables);
  CHECK(s->tproxy_mark == 0x539);
  CHECK(to_json(*s)["dns"]["port"] == 5353);
  CHECK(to_json(*s)["backend"] == "iptables");
  CHECK(to_json(CaptureSpec{})["backend"] == "auto");
  CHECK(*spec_from_json(to_json(*s)) == *s);
  // A nested key written flat is not a key.
  auto flat = spec_from_json(json{{"dns.port", 5353}});
  REQUIRE_FALSE(flat.ok());
  CHECK(flat.error().message.find("unknown key \"dns.port\"") != std::string::npos);
}

TEST_CASE("backend: auto (default), nftables, iptables") {
  CHECK(CaptureSpec{}.backend == FilterBackend::Auto);
  CHECK(*parse_filter_backend("auto") == FilterBackend::Auto);
  CHECK(*parse_filter_backend(" IPTABLES ") == FilterBackend::Iptables);
  CHECK(std::string(to_string(FilterBackend::Nftables)) == "nftables");
  auto bad = spec_from_json(json{{"backend", 1}});
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().message == "backend: expected a string, got number");
  CHECK(spec_from_json(json{{"backend", "legacy"}}).error().message.find("auto, nftables, iptables") !=
        std::string::npos);
}

TEST_CASE("numbers: one grammar") {
  CHECK(read_number("0").value == 0);
  CHECK(read_number("0x539").value == 1337);
  CHECK(read_number("0X539").value == 1337);
  CHECK(read_number("010").value == 10);  // never octal
  CHECK(read_number("4294967295").value == 4294967295u);
  CHECK(read_number("0xffffffff").value == 4294967295u);
  CHECK(read_number("4294967296").problem == NumberText::TooLarge);
  CHECK(read_number("99999999999999999999999").problem == NumberText::TooLarge);
  CHECK(read_number("15001.5").problem == NumberText::Fraction);
  CHECK(read_number("1.0").problem == NumberText::Fraction);
  for (const char* no : {"", "0x", "-1", "+1", " 1", "1 ", "1e3", "x", "0x1g", ".5", "5.", "1.2.3", "1,2"}) {
    CAPTURE(no);
    CHECK(read_number(no).problem == NumberText::NotNumber);
  }
  // The same number grammar in every kind of field.
  CHECK(*parse_port_text("p", "0x1f90") == 8080);
  CHECK(*parse_port_range("0x1f90-0x1f91") == PortRange{8080, 8081});
  CHECK(*parse_u32_text("m", "0x539") == 1337);
  CHECK(*parse_id_list("ids", "0x539") == std::vector<uint32_t>{1337});
  CHECK(*parse_port_or_none_text("t", "0") == 0);
  CHECK_FALSE(parse_port_text("t", "0").ok());
  CHECK(parse_port_text("--p", "8000-8100").error().message == "--p: 8000-8100 is a range; want one port (1-65535)");
}

TEST_CASE("a port that is not a whole number says so, in text and in JSON") {
  CHECK(parse_port_text("outboundPort", "15001.5").error().message ==
        "outboundPort: \"15001.5\" is not a whole number (a port is 1-65535)");
  CHECK(spec_from_json(json{{"outboundPort", 15001.5}}).error().message ==
        "outboundPort: 15001.5 is not a whole number (a port is 1-65535)");
  CHECK(spec_from_json(json{{"excludeOutboundPorts", json::array({80, 443.5})}}).error().message ==
        "excludeOutboundPorts[1]: 443.5 is not a whole number (a port is 1-65535)");
  CHECK(spec_from_json(json{{"proxyUids", json::array({1337.5})}}).error().message ==
        "proxyUids[0]: 1337.5 is not a whole number (0-4294967295)");
  CHECK(spec_from_json(json{{"outboundPort", 15001.0}}).error().message.find("write the whole number") !=
        std::string::npos);
  CHECK(parse_port_list("excludeInboundPorts", "80,15001.5").error().message ==
        "excludeInboundPorts: \"80,15001.5\": \"15001.5\" is not a whole number (a port is 1-65535)");
}

TEST_CASE("errors about long lists name the field, the item and its position, and stay short") {
  std::string ports;
  for (int i = 0; i < 10000; ++i) ports += (i ? "," : "") + std::to_string(1000 + i % 60000);
  std::string bad = ports;
  bad.replace(bad.rfind(',') + 1, std::string::npos, "x");  // the last item
  auto r = parse_port_list("excludeOutboundPorts", bad);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message == "excludeOutboundPorts: item 10000 of 10000: \"x\" is not a port");

  std::string cidrs;
  for (int i = 0; i < 10000; ++i) cidrs += (i ? "," : "") + std::string("198.18.0.") + std::to_string(i % 250);
  cidrs += ",198.18.0.1/15";
  auto c = parse_cidr_list("excludeOutboundCidrs", cidrs);
  REQUIRE_FALSE(c.ok());
  CHECK(c.error().message.rfind("excludeOutboundCidrs: item 10001 of 10001: 198.18.0.1/15: host bits set", 0) == 0);

  auto e = parse_port_list("excludeOutboundPorts", ports + ",,80");
  REQUIRE_FALSE(e.ok());
  CHECK(e.error().message == "excludeOutboundPorts: item 10001 of 10002: empty item in list");

  auto ids = parse_id_list("proxyUids", ports + ",istio");
  REQUIRE_FALSE(ids.ok());
  CHECK(ids.error().message.size() < 200);

  std::string names;
  for (int i = 0; i < 5000; ++i) names += (i ? "," : "") + std::string("eth") + std::to_string(i);
  auto n = parse_interface_list("excludeInterfaces", names + ",eth/0");
  REQUIRE_FALSE(n.ok());
  CHECK(n.error().message == "excludeInterfaces: item 5001 of 5001: interface name \"eth/0\" contains '/', ':' or whitespace");

  // One enormous item is cut, not quoted whole.
  const std::string huge(49000, '7');
  for (const auto& msg : {parse_port_list("p", huge).error().message, parse_cidr_list("c", huge).error().message,
                          parse_id_list("i", huge).error().message, parse_u32_text("m", huge).error().message,
                          parse_interface_list("f", huge).error().message}) {
    CAPTURE(msg);
    CHECK(msg.size() < 300);
  }
}

TEST_CASE("append_unique keeps order, drops repeats, and is near-linear") {
  std::vector<PortRange> p{{80, 80}, {443, 443}};
  append_unique(p, {{443, 443}, {8080, 8080}, {80, 80}, {8080, 8080}});
  CHECK(p == std::vector<PortRange>{{80, 80}, {443, 443}, {8080, 8080}});
  std::vector<Cidr> c{*parse_cidr("198.18.0.0/15")};
  append_unique(c, {*parse_cidr("198.18.0.0/16"), *parse_cidr("198.18.0.0/15"), *parse_cidr("::/0"),
                    *parse_cidr("0.0.0.0/0")});
  CHECK(c.size() == 4);
  std::vector<std::string> s{"eth0"};
  append_unique(s, {"eth1", "eth0", "eth1"});
  CHECK(s == std::vector<std::string>{"eth0", "eth1"});

  // 60,000 distinct CIDRs: a quadratic de-duplication takes seconds here.
  std::vector<Cidr> many, into;
  for (uint32_t i = 0; i < 60000; ++i) {
    Cidr x;
    x.addr = {198, 18, static_cast<uint8_t>(i >> 8), static_cast<uint8_t>(i)};
    x.prefix = 32;
    many.push_back(x);
  }
  const auto t0 = std::chrono::steady_clock::now();
  append_unique(into, many);
  append_unique(into, many);
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
  CHECK(into.size() == 60000);
  CHECK_MESSAGE(ms < 1000, "append_unique of 60,000 CIDRs took ", ms, " ms");
}
