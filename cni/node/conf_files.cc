#include "cni/node/conf_files.h"

#include <algorithm>
#include <cctype>
#include <charconv>

namespace weir::node {
namespace {

using ojson = nlohmann::ordered_json;

Error invalid(const std::string& msg) { return Error{ErrorKind::InvalidArgument, msg, 0}; }

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::optional<ojson> parse(const std::string& text) {
  try {
    return ojson::parse(text);
  } catch (const nlohmann::json::exception&) {
    return std::nullopt;
  }
}

bool is_weir_plugin(const ojson& p) {
  auto t = p.find("type");
  return p.is_object() && t != p.end() && t->is_string() && t->get<std::string>() == kPluginType;
}

// --- A span scanner over JSON text already accepted by nlohmann's parser. It
// only finds where values begin and end, so edits can splice the text.
struct Span {
  size_t begin = 0, end = 0;  // [begin, end)
};

size_t skip_ws(const std::string& s, size_t i) {
  while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) ++i;
  return i;
}

size_t skip_string(const std::string& s, size_t i) {  // s[i] == '"'
  for (++i; i < s.size(); ++i) {
    if (s[i] == '\\') ++i;
    else if (s[i] == '"') return i + 1;
  }
  return s.size();
}

size_t skip_value(const std::string& s, size_t i) {
  if (i >= s.size()) return i;
  if (s[i] == '"') return skip_string(s, i);
  if (s[i] == '{' || s[i] == '[') {
    int depth = 0;
    for (; i < s.size(); ++i) {
      char c = s[i];
      if (c == '"') {
        i = skip_string(s, i) - 1;
      } else if (c == '{' || c == '[') {
        ++depth;
      } else if (c == '}' || c == ']') {
        if (--depth == 0) return i + 1;
      }
    }
    return s.size();
  }
  while (i < s.size() && s[i] != ',' && s[i] != '}' && s[i] != ']' && !std::isspace(static_cast<unsigned char>(s[i]))) ++i;
  return i;
}

// The spans of the top-level "plugins" array and of its elements.
struct ListLayout {
  Span plugins;                // the array, '[' .. ']'
  std::vector<Span> elements;  // in order
};

std::optional<ListLayout> layout_of(const std::string& s) {
  size_t i = skip_ws(s, 0);
  if (i >= s.size() || s[i] != '{') return std::nullopt;
  std::optional<Span> plugins;
  i = skip_ws(s, i + 1);
  while (i < s.size() && s[i] != '}') {
    if (s[i] != '"') return std::nullopt;
    size_t key_end = skip_string(s, i);
    std::string key;
    try {
      key = nlohmann::json::parse(s.substr(i, key_end - i)).get<std::string>();
    } catch (const nlohmann::json::exception&) {
      return std::nullopt;
    }
    i = skip_ws(s, key_end);
    if (i >= s.size() || s[i] != ':') return std::nullopt;
    i = skip_ws(s, i + 1);
    size_t value_end = skip_value(s, i);
    if (key == "plugins") plugins = Span{i, value_end};  // the last one wins, as in the parser
    i = skip_ws(s, value_end);
    if (i < s.size() && s[i] == ',') i = skip_ws(s, i + 1);
  }
  if (!plugins || s[plugins->begin] != '[') return std::nullopt;
  ListLayout out{*plugins, {}};
  i = skip_ws(s, plugins->begin + 1);
  while (i < plugins->end && s[i] != ']') {
    size_t e = skip_value(s, i);
    out.elements.push_back({i, e});
    i = skip_ws(s, e);
    if (i < s.size() && s[i] == ',') i = skip_ws(s, i + 1);
  }
  return out;
}

// The whitespace run that starts the first indented line: the file's unit.
std::string indent_unit(const std::string& s) {
  for (size_t nl = s.find('\n'); nl != std::string::npos; nl = s.find('\n', nl + 1)) {
    size_t j = nl + 1;
    while (j < s.size() && (s[j] == ' ' || s[j] == '\t')) ++j;
    if (j > nl + 1 && j < s.size() && s[j] != '\n') return s.substr(nl + 1, j - nl - 1);
  }
  return "  ";
}

// The indentation after the last newline of `sep`, or nullopt when `sep`
// (the whitespace before an element) has none: the file is on one line.
std::optional<std::string> line_indent(const std::string& sep) {
  size_t nl = sep.rfind('\n');
  if (nl == std::string::npos) return std::nullopt;
  std::string rest = sep.substr(nl + 1);
  rest.erase(std::remove_if(rest.begin(), rest.end(), [](char c) { return c != ' ' && c != '\t'; }), rest.end());
  return rest;
}

// Every line after the first gets `indent` in front (JSON text has no raw
// newline inside a string, so this only changes whitespace between tokens).
std::string reindent(const std::string& text, const std::string& indent) {
  std::string out;
  for (char c : text) {
    out += c;
    if (c == '\n') out += indent;
  }
  return out;
}

std::string entry_text(const ojson& entry, const std::optional<std::string>& indent, const std::string& unit) {
  if (!indent) return entry.dump();
  const bool tabs = !unit.empty() && unit[0] == '\t';
  return reindent(entry.dump(static_cast<int>(unit.size()), tabs ? '\t' : ' '), *indent);
}

// The doc without weir plugins, for checking an edit changed nothing else.
ojson without_weir(ojson doc) {
  ojson kept = ojson::array();
  for (auto& p : doc["plugins"]) if (!is_weir_plugin(p)) kept.push_back(p);
  doc["plugins"] = std::move(kept);
  return doc;
}

// Rebuilds the plugins array keeping the original separators; appends
// `appended` (already formatted) when given.
Result<std::string> splice(const std::string& text, const std::optional<ojson>& entry) {
  auto doc = parse(text);
  if (!doc) return invalid("not valid JSON");
  if (Status s = check_network_config(ConfKind::List, text); !s.ok()) return s.error();
  auto layout = layout_of(text);
  if (!layout) return invalid("cannot find the plugins list in the text");  // a bug in the scanner, or odd input
  const auto& el = layout->elements;
  const size_t open = layout->plugins.begin, close = layout->plugins.end - 1;
  const std::string prefix = text.substr(open + 1, (el.empty() ? close : el[0].begin) - open - 1);
  const std::string suffix = el.empty() ? "" : text.substr(el.back().end, close - el.back().end);

  std::string body;
  std::optional<std::string> last_sep;  // the separator before the last kept element
  bool first = true;
  for (size_t k = 0; k < el.size(); ++k) {
    std::string elem = text.substr(el[k].begin, el[k].end - el[k].begin);
    if (is_weir_plugin((*doc)["plugins"][k])) continue;
    std::string sep = k == 0 ? "" : text.substr(el[k - 1].end, el[k].begin - el[k - 1].end);
    if (first) {
      body += prefix + elem;
      first = false;
    } else {
      body += sep + elem;
      last_sep = sep;
    }
  }
  if (entry) {
    std::string sep = last_sep ? *last_sep : (first ? prefix : "," + prefix);
    body += sep + entry_text(*entry, line_indent(first ? prefix : sep), indent_unit(text));
  }
  // An emptied list keeps the text around the brackets tidy.
  std::string tail = first && !entry ? "" : suffix;
  std::string out = text.substr(0, open + 1) + body + tail + text.substr(close);

  // The edit must have changed nothing but weir's plugins.
  auto got = parse(out);
  if (!got || without_weir(*got) != without_weir(*doc)) return Error{ErrorKind::Internal, "editing the plugins list changed other content", 0};
  if (entry && (got->at("plugins").empty() || got->at("plugins").back() != *entry || count_entries(ConfKind::List, out) != 1)) {
    return Error{ErrorKind::Internal, "weir's entry did not land as the last plugin", 0};
  }
  return out;
}

}  // namespace

std::optional<ConfKind> conf_kind(const std::string& name) {
  if (name.empty() || name[0] == '.') return std::nullopt;  // our temporary files
  if (ends_with(name, ".conflist")) return ConfKind::List;
  if (ends_with(name, ".conf") || ends_with(name, ".json")) return ConfKind::Single;
  return std::nullopt;
}

Status check_network_config(ConfKind kind, const std::string& text) {
  auto doc = parse(text);
  if (!doc) return invalid("not valid JSON");
  if (!doc->is_object()) return invalid("not a JSON object");
  if (kind == ConfKind::Single) {
    auto t = doc->find("type");
    if (t == doc->end() || !t->is_string() || t->get<std::string>().empty()) return invalid("no \"type\": not a network config");
    return {};
  }
  auto n = doc->find("name");
  if (n == doc->end() || !n->is_string() || n->get<std::string>().empty()) return invalid("no \"name\"");
  auto p = doc->find("plugins");
  if (p == doc->end() || !p->is_array() || p->empty()) return invalid("no \"plugins\" list, or an empty one");
  for (const auto& plugin : *p) {
    auto t = plugin.is_object() ? plugin.find("type") : plugin.end();
    if (!plugin.is_object() || t == plugin.end() || !t->is_string()) return invalid("a plugin without a \"type\"");
  }
  return {};
}

std::optional<Primary> select_primary(std::vector<ConfFile> files, std::vector<std::string>* skipped) {
  std::sort(files.begin(), files.end(), [](const ConfFile& a, const ConfFile& b) { return a.name < b.name; });
  for (auto& f : files) {
    auto kind = conf_kind(f.name);
    if (!kind || f.name == kOwnFileName) continue;
    if (Status s = check_network_config(*kind, f.text); !s.ok()) {
      if (skipped) skipped->push_back(f.name + ": " + s.error().message);
      continue;
    }
    return Primary{f.name, *kind, std::move(f.text)};
  }
  return std::nullopt;
}

int count_entries(ConfKind kind, const std::string& text) {
  auto doc = parse(text);
  if (!doc || !doc->is_object()) return 0;
  if (kind == ConfKind::Single) return is_weir_plugin(*doc) ? 1 : 0;
  auto p = doc->find("plugins");
  if (p == doc->end() || !p->is_array()) return 0;
  return static_cast<int>(std::count_if(p->begin(), p->end(), is_weir_plugin));
}

Result<std::string> with_entry(const std::string& list_text, const nlohmann::ordered_json& entry) {
  if (!is_weir_plugin(entry)) return invalid("weir's entry must be an object with \"type\": \"weir-cni\"");
  auto doc = parse(list_text);
  if (doc && doc->is_object() && doc->contains("plugins") && (*doc)["plugins"].is_array()) {
    const auto& p = (*doc)["plugins"];
    if (!p.empty() && p.back() == entry && count_entries(ConfKind::List, list_text) == 1) return list_text;
  }
  return splice(list_text, entry);
}

Result<std::string> without_entries(const std::string& list_text) {
  if (count_entries(ConfKind::List, list_text) == 0) return list_text;
  return splice(list_text, std::nullopt);
}

Result<std::string> single_to_list(const std::string& single_text) {
  if (Status s = check_network_config(ConfKind::Single, single_text); !s.ok()) return s.error();
  auto doc = parse(single_text);
  auto str = [&](const char* key) {
    auto it = doc->find(key);
    return ojson(it != doc->end() && it->is_string() ? it->get<std::string>() : std::string());
  };
  const std::string unit = indent_unit(single_text);
  const bool one_line = single_text.find('\n') == std::string::npos ||
                        single_text.find('\n') == single_text.find_last_not_of(" \t\r\n") + 1;
  size_t b = single_text.find_first_not_of(" \t\r\n"), e = single_text.find_last_not_of(" \t\r\n");
  std::string body = single_text.substr(b, e - b + 1);
  // Go marshals a map with sorted keys: cniVersion, name, plugins.
  if (one_line) return "{\"cniVersion\":" + str("cniVersion").dump() + ",\"name\":" + str("name").dump() + ",\"plugins\":[" + body + "]}";
  return "{\n" + unit + "\"cniVersion\": " + str("cniVersion").dump() + ",\n" + unit + "\"name\": " + str("name").dump() + ",\n" +
         unit + "\"plugins\": [\n" + unit + unit + reindent(body, unit + unit) + "\n" + unit + "]\n}\n";
}

std::string list_name_for(const std::string& single_name) {
  size_t dot = single_name.rfind('.');
  return (dot == std::string::npos ? single_name : single_name.substr(0, dot)) + ".conflist";
}

Result<InstallPlan> plan_install(const std::vector<ConfFile>& files, ConflistMode mode, const nlohmann::ordered_json& entry) {
  InstallPlan plan;
  plan.primary = select_primary(files, &plan.skipped);
  if (!plan.primary) return plan;
  const Primary& p = *plan.primary;
  auto find = [&](const std::string& name) -> const ConfFile* {
    for (const auto& f : files) if (f.name == name) return &f;
    return nullptr;
  };
  std::string list = p.text;
  if (p.kind == ConfKind::Single) {
    auto converted = single_to_list(p.text);
    if (!converted.ok()) return converted.error().wrap(p.name);
    list = converted.value();
  }
  auto edited = with_entry(list, entry);
  if (!edited.ok()) return edited.error().wrap(p.name);

  if (mode == ConflistMode::Own) {
    plan.config_file = kOwnFileName;
    const ConfFile* own = find(kOwnFileName);
    if (!own || own->text != edited.value()) {
      plan.changes.push_back({FileChange::Op::Write, kOwnFileName, edited.value(), own ? "" : p.name});
    }
    return plan;
  }
  if (p.kind == ConfKind::Single) {
    plan.config_file = list_name_for(p.name);
    plan.changes.push_back({FileChange::Op::Write, plan.config_file, edited.value(), p.name});
    plan.changes.push_back({FileChange::Op::Remove, p.name, "", ""});
  } else {
    plan.config_file = p.name;
    if (edited.value() != p.text) plan.changes.push_back({FileChange::Op::Write, p.name, edited.value(), ""});
  }
  if (find(kOwnFileName)) plan.changes.push_back({FileChange::Op::Remove, kOwnFileName, "", ""});
  return plan;
}

UninstallPlan plan_uninstall(const std::vector<ConfFile>& files) {
  UninstallPlan plan;
  std::vector<ConfFile> sorted = files;
  std::sort(sorted.begin(), sorted.end(), [](const ConfFile& a, const ConfFile& b) { return a.name < b.name; });
  for (const auto& f : sorted) {
    auto kind = conf_kind(f.name);
    if (!kind) continue;
    if (f.name == kOwnFileName) {
      plan.changes.push_back({FileChange::Op::Remove, f.name, "", ""});
      continue;
    }
    if (count_entries(*kind, f.text) == 0) continue;
    if (*kind == ConfKind::List) {
      auto edited = without_entries(f.text);
      if (edited.ok()) {
        plan.changes.push_back({FileChange::Op::Write, f.name, edited.value(), ""});
        continue;
      }
    }
    plan.still_named_by.push_back(f.name);  // a standalone weir-cni config is not ours to delete
  }
  return plan;
}

Result<long long> parse_duration_ms(const std::string& text) {
  long long n = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  const std::string unit(ptr, text.data() + text.size());
  if (ec != std::errc() || ptr == text.data() || n < 0) {
    return invalid("duration \"" + text + "\": expected a number and a unit, e.g. 500ms, 2s, 1m");
  }
  long long scale = 0;
  if (unit == "ms") scale = 1;
  else if (unit == "s") scale = 1000;
  else if (unit == "m") scale = 60 * 1000;
  else if (unit == "h") scale = 3600 * 1000;
  else return invalid("duration \"" + text + "\": unit must be ms, s, m or h");
  if (n > (1LL << 40)) return invalid("duration \"" + text + "\" is too long");
  return n * scale;
}

}  // namespace weir::node
