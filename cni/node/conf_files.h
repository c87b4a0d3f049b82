// The node's CNI config directory as weir-node sees it: which file the
// runtime uses (the primary), weir's entry in it, and what install and
// uninstall change. Pure: files come in as names and texts, changes go out as
// a list of writes and removals, tested without root.
//
// Edits are made on the text, not by re-serialising the JSON: every byte
// outside weir's entry (other keys, other plugins, whitespace, number
// spellings) stays as it was, and uninstall gives back the file as it was
// before install.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "rules/error.h"

namespace weir::node {

inline constexpr const char* kPluginType = "weir-cni";
// --conflist-mode own: weir's file, sorting before every usual primary.
inline constexpr const char* kOwnFileName = "00-weir.conflist";

// .conf and .json hold one plugin; .conflist a list (libcni's reading).
enum class ConfKind { Single, List };
// nullopt when the runtime would not read the file at all.
std::optional<ConfKind> conf_kind(const std::string& file_name);

struct ConfFile {
  std::string name;  // file name inside the conf dir
  std::string text;
};

// Whether the runtime can use `text` as a network config of `kind`: a JSON
// object; a list needs a non-empty "plugins" array of objects with a string
// "type"; a single config needs a string "type". The error says why not.
Status check_network_config(ConfKind kind, const std::string& text);

struct Primary {
  std::string name;
  ConfKind kind = ConfKind::List;
  std::string text;
};
// The config the runtime uses: the first file by name (byte order, as Go's
// sort.Strings) with a config extension that parses and is not weir's own
// file. `skipped` gets one "name: reason" line per config file passed over
// (unparsable ones). nullopt when there is none yet.
std::optional<Primary> select_primary(std::vector<ConfFile> files, std::vector<std::string>* skipped = nullptr);

// Number of plugins of type weir-cni in a list (0 for a single config whose
// type is something else, 1 when the single config is weir-cni itself).
// 0 when the text does not parse.
int count_entries(ConfKind kind, const std::string& text);

// A list's text with `entry` as its last plugin and every other weir-cni
// plugin taken out; everything else byte for byte. The text is unchanged when
// the entry is already there, last, and the same. InvalidArgument when `text`
// is not a usable list.
Result<std::string> with_entry(const std::string& list_text, const nlohmann::ordered_json& entry);

// A list's text with every weir-cni plugin taken out, everything else byte for
// byte; for a list weir's with_entry wrote, exactly the text before it.
Result<std::string> without_entries(const std::string& list_text);

// A single config turned into a list as libcni does (ConfListFromConf):
// {"cniVersion", "name", "plugins": [the config]}, the config kept whole.
Result<std::string> single_to_list(const std::string& single_text);

// "10-flannel.conf" -> "10-flannel.conflist".
std::string list_name_for(const std::string& single_name);

enum class ConflistMode { Insert, Own };

struct FileChange {
  enum class Op { Write, Remove } op = Op::Write;
  std::string name;
  std::string text;           // Write: the new content
  std::string mode_from;      // Write: take mode and owner from this file (empty: the file itself)
  bool operator==(const FileChange&) const = default;
};

struct InstallPlan {
  std::optional<Primary> primary;       // nullopt: none yet, nothing to do but wait
  std::vector<FileChange> changes;      // in order; empty when all is in place
  std::vector<std::string> skipped;     // unparsable config files passed over
  std::string config_file;              // the file that holds weir's entry once applied
};

// What puts weir's entry in place over `files` (the conf dir's config files):
// Insert: in the primary (a .conf becomes a .conflist, written first, then the
// .conf removed so the runtime cannot pick the old one), and a leftover own
// file removed; Own: kOwnFileName = the primary's list plus weir's entry.
// Idempotent: no changes when everything is already in place.
Result<InstallPlan> plan_install(const std::vector<ConfFile>& files, ConflistMode mode, const nlohmann::ordered_json& entry);

struct UninstallPlan {
  std::vector<FileChange> changes;          // own file removed, entries taken out: first
  std::vector<std::string> still_named_by;  // config files that still name weir-cni afterwards
  bool remove_binary() const { return still_named_by.empty(); }
};
// Takes weir's entry out of every list that has one and removes weir's own
// file; the binary may go only when no config file names weir-cni after that.
UninstallPlan plan_uninstall(const std::vector<ConfFile>& files);

// Durations as weir-node's flags write them: "500ms", "2s", "1m", "1h"
// (one number, one unit). InvalidArgument otherwise.
Result<long long> parse_duration_ms(const std::string& text);

}  // namespace weir::node
