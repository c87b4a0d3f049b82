// install, uninstall and status over real directories: the plans of
// conf_files.h carried out with node_files.h. Each call reads the directories
// afresh, so each is idempotent and safe to repeat after any change.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cni/node/conf_files.h"
#include "cni/node/node_files.h"
#include "rules/error.h"

namespace weir::node {

struct NodeOptions {
  std::vector<std::string> cni_bin_dirs{"/opt/cni/bin"};
  std::string cni_conf_dir = "/etc/cni/net.d";
  std::string plugin_binary;  // the weir-cni to copy
  std::optional<nlohmann::ordered_json> plugin_config;  // --plugin-config: keys of weir's entry
  ConflistMode mode = ConflistMode::Insert;
  std::string state_dir = "/var/run/weir";
};

// Files weir-node keeps in its state dir.
std::string readiness_file(const NodeOptions& o);       // read by weir-cni STATUS
std::string reconcile_state_file(const NodeOptions& o);  // the last reconcile's counts, for status

// weir's entry: --plugin-config's keys (or none) with "type": "weir-cni", the
// pod-annotations capability (added when missing: without it weir sees no
// annotations) and agentReadiness naming readiness_file(). InvalidArgument
// when the plugin config is not an object or names another type.
Result<nlohmann::ordered_json> weir_entry(const NodeOptions& o);

struct InstallOutcome {
  bool waiting = false;               // no primary config yet: nothing written to the conf dir
  std::string primary;                // the runtime's config file
  std::string config_file;            // the file that holds weir's entry
  std::vector<std::string> changes;   // one line per change made, for the log
  std::vector<std::string> skipped;   // config files passed over (unparsable)
};

// The copies weir-node made, remembered so that checking them needs a stat,
// not a read of every byte: a copy is intact while its fingerprint is the one
// it had right after the copy (and the source's is unchanged).
struct InstalledBinaries {
  std::optional<FileFingerprint> source;
  std::map<std::string, FileFingerprint> copies;  // bin dir -> fingerprint after copy
};

// Copies the binary into every bin dir (when not already identical) and asks
// each installed copy its VERSION, then puts weir's entry in place. The binary
// goes first, so no config ever names a missing plugin.
// With `known`, a copy whose fingerprint is unchanged is not read again.
Result<InstallOutcome> install_once(const NodeOptions& o, const nlohmann::ordered_json& entry, InstalledBinaries* known = nullptr);

// True when every bin dir holds a copy identical to the plugin binary (by
// fingerprint when `known` remembers it, else by content).
bool binaries_intact(const NodeOptions& o, const InstalledBinaries* known = nullptr);

struct UninstallOutcome {
  std::vector<std::string> changes;
  std::vector<std::string> kept_binary_for;  // config files that still name weir-cni
};
// Takes weir's entry out of the conf dir (and removes its own file) first,
// then removes the binary from each bin dir unless a config still names it.
// Idempotent.
Result<UninstallOutcome> uninstall(const NodeOptions& o);

// What is installed where, for `weir-node status` (JSON, in the field's words).
nlohmann::ordered_json node_status(const NodeOptions& o);

}  // namespace weir::node
