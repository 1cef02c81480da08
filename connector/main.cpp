// migraine-connector: clinic records -> FHIR R4 transaction Bundles -> the clinic's EHR.
// Start here: each command lives in commands.cpp and walks reader -> checks -> mapper.
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

#include "connector/cli/commands.h"
#include "connector/config/config.h"

#ifndef MIGRAINE_CONNECTOR_VERSION
#define MIGRAINE_CONNECTOR_VERSION "unknown"
#endif

namespace {

constexpr const char* usage = R"(migraine-connector - clinic records to FHIR R4 for the clinic's EHR

usage: migraine-connector COMMAND [OPTIONS]

commands:
  map [--config FILE] [--history FILE]... [--json] [--pretty] [--summary] RECORD_FILE
        Read clinic records (.json: one record; .ndjson: one per line), check them and print
        one FHIR R4 transaction Bundle per record, one per line. Flags go to stderr.
        Records are mapped as they will be delivered: each joins its patient's history; a
        follow-up waits until its procedure has been seen (later in the file is fine); a
        revision not newer than one already seen is a no-op.
        --history FILE  earlier records of the same patients, in any order (repeatable)
        --json          also print an OperationOutcome on stdout for each rejected record
        --pretty        indent the Bundle for reading
        --summary       print what each record yields instead of the Bundles
        exit: 0 mapped (flags allowed), 2 a record was rejected, 3 a follow-up still waits for
              its procedure (not printed), 1 usage or configuration error
  check [--config FILE] RECORD_FILE...
        Check records without mapping: one line per problem, file:record_id: path: message.
        exit: 0 all valid, 2 some rejected, 1 usage or configuration error

  ingest [--config FILE] RECORD_FILE...
        Store records durably in the outbox (store.path). A file is acknowledged only once it is
        committed. Rejected records are kept in quarantine with their problems; a corrected
        revision can be ingested again. A revision already stored, or older, is a no-op.
        exit: 0 all accepted, 2 some rejected, 1 usage or configuration error
  status [--config FILE] [--json]
        Records by state, quarantined records, the oldest pending record's age, the last error.
  sync --once [--config FILE]
        Deliver everything deliverable to the EHR (ehr.base_url) over TLS, then exit.
        exit: 0 nothing left waiting, 3 records remain (retry scheduled, EHR unreachable, held)
  run [--config FILE]
        The daemon: delivers as records arrive and retries fall due; takes files from inbox.dir,
        serves the ingest API (ingest_api.listen) and the status page, metrics and admin API
        (admin.listen); writes the sync log (log.path); raises alerts (alerts.webhook_url).
        SIGTERM or SIGINT: takes no new record, finishes the requests in flight, exits 0.
  replay (--record ID | --all-dead) --reason TEXT [--dry-run] [--config FILE]
        Put dead letters back in their lanes; who ($USER), why and when are recorded.
  config-check [--config FILE]
        Check the configuration, code tables, store, the certificates it names (readable,
        not expired, key matching its certificate), token files and the inbox folder.
        exit: 0 OK, 1 problems
  log [--config FILE] [--follow] [--record ID] [--since TIME] [--json]
        The sync log, readably, across its rotated files. TIME: 2026-11-24T10:00Z, 2026-11-24,
        or an age: 90s, 15m, 2h, 3d. --follow keeps printing as the daemon writes.
  profiles [--config FILE]
        The StructureDefinitions of the connector's own extensions, under the configured
        mapping.identifier_system, as one FHIR Bundle (collection) for the EHR's server or
        validator. The shipped files (default base) are in mappings/profiles/.
  jwks [--config FILE]
        The public JWK Set of ehr.auth's signing key (smart_backend): what the clinic
        registers with the EHR, or hosts at ehr.auth.jwks_url.
  backup [--config FILE] --to FILE
        A consistent copy of the store, safe while the daemon runs (SQLite's online backup);
        FILE must not exist. It holds patient data: it is written owner-only.

options:
  --help       this text
  --version    the connector's version

configuration: JSON with comments; see deploy/connector.example.jsonc. Every setting has a default.
)";

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    std::fputs(usage, args.empty() ? stderr : stdout);
    return args.empty() ? connector::exit_usage : connector::exit_ok;
  }
  if (args[0] == "--version") {
    std::printf("migraine-connector %s\n", MIGRAINE_CONNECTOR_VERSION);
    return connector::exit_ok;
  }
  const std::string command = args[0];
  args.erase(args.begin());
  try {
    if (command == "map") return connector::run_map(args);
    if (command == "check") return connector::run_check(args);
    if (command == "ingest") return connector::run_ingest(args);
    if (command == "status") return connector::run_status(args);
    if (command == "sync") return connector::run_sync(args);
    if (command == "run") return connector::run_daemon(args);
    if (command == "replay") return connector::run_replay(args);
    if (command == "config-check") return connector::run_config_check(args);
    if (command == "log") return connector::run_log(args);
    if (command == "profiles") return connector::run_profiles(args);
    if (command == "jwks") return connector::run_jwks(args);
    if (command == "backup") return connector::run_backup(args);
  } catch (const std::exception& e) {
    // Start-up only (configuration, code tables): messages name files and settings, never data.
    std::fprintf(stderr, "migraine-connector: %s\n", e.what());
    return connector::exit_usage;
  }
  std::fprintf(stderr, "migraine-connector: unknown command '%s' (try --help)\n", command.c_str());
  return connector::exit_usage;
}
