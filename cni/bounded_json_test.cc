#include "cni/bounded_json.h"

#include <doctest/doctest.h>

using namespace weir::cni;

namespace {
std::string nested(int levels) { return std::string(levels, '[') + std::string(levels, ']'); }
}  // namespace

TEST_CASE("bounded JSON: the depth limit is exact and deep text never crashes") {
  CHECK(parse_bounded_json(nested(kMaxJsonDepth)).ok());
  auto deep = parse_bounded_json(nested(kMaxJsonDepth + 1));
  REQUIRE_FALSE(deep.ok());
  CHECK(deep.error().message.find("nested deeper than 512") != std::string::npos);
  CHECK_FALSE(parse_bounded_json(nested(200000)).ok());
  CHECK_FALSE(parse_bounded_json("{").ok());
  CHECK(parse_bounded_json(R"({"a":[1,{"b":2}]})")->value["a"][1]["b"] == 2);
}

TEST_CASE("bounded JSON: Drop leaves the deep part out and keeps the rest") {
  auto r = parse_bounded_json(R"({"cniVersion":"1.0.0","x":[[[1]]],"y":2})", DeepValues::Drop, 2);
  REQUIRE(r.ok());
  CHECK(r->dropped);
  CHECK(r->value["cniVersion"] == "1.0.0");
  CHECK(r->value["y"] == 2);
  auto big = parse_bounded_json(R"({"cniVersion":"1.0.0","x":)" + nested(300000) + "}", DeepValues::Drop);
  REQUIRE(big.ok());
  CHECK(big->dropped);
  CHECK(big->value["cniVersion"] == "1.0.0");
  auto shallow = parse_bounded_json(R"({"a":1})", DeepValues::Drop);
  REQUIRE(shallow.ok());
  CHECK_FALSE(shallow->dropped);
}

TEST_CASE("top_level_string reads a key from cut, invalid or deep text") {
  CHECK(top_level_string(R"({"cniVersion":"0.4.0","padding":"xxxx)", "cniVersion") == "0.4.0");
  CHECK(top_level_string(R"({"a":{"cniVersion":"9"},"cniVersion":"1.0.0"})", "cniVersion") == "1.0.0");
  CHECK(top_level_string(R"({"a":{"cniVersion":"9"}})", "cniVersion") == "");
  CHECK(top_level_string(R"({"cniVersion":1})", "cniVersion") == "");
  CHECK(top_level_string(R"({"cniVersion":"1.0.0","cniVersion":"0.3.1"})", "cniVersion") == "0.3.1");
  CHECK(top_level_string(R"({"x":)" + nested(200000) + R"(,"cniVersion":"1.0.0"})", "cniVersion") == "1.0.0");
  CHECK(top_level_string("", "cniVersion") == "");
  CHECK(top_level_string(R"(["cniVersion","1.0.0"])", "cniVersion") == "");
}
