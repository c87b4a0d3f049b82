#include "cni/bounded_json.h"

namespace weir::cni {

Result<BoundedJson> parse_bounded_json(const std::string& text, DeepValues deep, int max_depth) {
  BoundedJson out;
  bool too_deep = false;
  // Called at each object or array start with the depth of its parent; a
  // false keeps the parser from building the value (it still reads it).
  auto bound = [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json&) {
    if (event != nlohmann::json::parse_event_t::object_start && event != nlohmann::json::parse_event_t::array_start) return true;
    if (depth < max_depth) return true;
    too_deep = true;
    return false;
  };
  try {
    out.value = nlohmann::json::parse(text, bound);
  } catch (const nlohmann::json::exception& e) {
    return Error{ErrorKind::InvalidArgument, e.what(), 0};
  }
  if (too_deep && deep == DeepValues::Refuse) {
    return Error{ErrorKind::InvalidArgument, "nested deeper than " + std::to_string(max_depth) + " levels, the most weir reads", 0};
  }
  out.dropped = too_deep;
  return out;
}

namespace {

// Follows the nesting only as far as it must to see the top level's keys.
class TopLevelString : public nlohmann::json_sax<nlohmann::json> {
 public:
  explicit TopLevelString(const std::string& key) : key_(key) {}
  std::string found;

  bool null() override { return value(); }
  bool boolean(bool) override { return value(); }
  bool number_integer(number_integer_t) override { return value(); }
  bool number_unsigned(number_unsigned_t) override { return value(); }
  bool number_float(number_float_t, const string_t&) override { return value(); }
  bool string(string_t& s) override {
    if (depth_ == 1 && wanted_) {
      found = s;
      wanted_ = false;
    }
    return true;
  }
  bool binary(binary_t&) override { return value(); }
  bool start_object(std::size_t) override { return start(); }
  bool end_object() override { return end(); }
  bool start_array(std::size_t) override { return start(); }
  bool end_array() override { return end(); }
  bool key(string_t& k) override {
    if (depth_ == 1) wanted_ = k == key_;
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override { return false; }

 private:
  // A value of the key that is not a string: the key reads as absent.
  bool value() {
    if (depth_ == 1 && wanted_) found.clear();
    if (depth_ == 1) wanted_ = false;
    return true;
  }
  bool start() {
    value();
    ++depth_;
    return true;
  }
  bool end() {
    --depth_;
    return true;
  }
  const std::string& key_;
  long depth_ = 0;
  bool wanted_ = false;
};

}  // namespace

std::string top_level_string(const std::string& text, const std::string& key) {
  TopLevelString sax(key);
  try {
    (void)nlohmann::json::sax_parse(text, &sax);
  } catch (const nlohmann::json::exception&) {
  }
  return sax.found;
}

}  // namespace weir::cni
