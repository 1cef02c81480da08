// Everything delivery needs, built from the configuration once: shared by `sync --once` and the
// daemon (`run`). The delivery side has its own connection to the store, used only by its worker
// thread, and registers this process as a claim holder for as long as it lives.
#pragma once

#include <chrono>
#include <cstdint>
#include <random>
#include <string_view>

#include <boost/asio/io_context.hpp>

#include "connector/auth/access_tokens.h"
#include "connector/auth/authorized_channel.h"
#include "connector/clock.h"
#include "connector/config/config.h"
#include "connector/net/ehr_client.h"
#include "connector/observe/sync_event.h"
#include "connector/outbox/open_outbox.h"
#include "connector/outbox/store_worker.h"
#include "connector/sync/sync_engine.h"
#include "mappings/mapping_set.h"

namespace connector {

inline ehr_settings ehr_settings_of(const ehr_config& e) {
  ehr_settings s;
  s.base_url = e.base_url;
  s.ca_file = e.ca_file;
  s.client_cert_file = e.client_cert_file;
  s.client_key_file = e.client_key_file;
  s.connections = e.connections;
  s.timeout = std::chrono::seconds(e.timeout_seconds);
  return s;
}

// Token requests and discovery go out over their own connection, trusting what the EHR's
// connections trust and presenting the same client certificate.
inline http_factory token_http_of(boost::asio::io_context& loop, const ehr_config& e) {
  return [&loop, e](const std::string& url) -> std::unique_ptr<ehr_channel> {
    ehr_settings s = ehr_settings_of(e);
    s.base_url = url;
    s.section = "ehr.auth";
    s.url_key = "token_url";
    s.connections = 1;
    return std::make_unique<ehr_client>(loop, s);
  };
}

// null without ehr.auth. Throws config_error for an unusable key or secret file.
inline std::unique_ptr<access_tokens> access_tokens_of(boost::asio::io_context& loop, const ehr_config& e) {
  if (e.auth.what == ehr_auth_config::kind::none) return nullptr;
  return std::make_unique<access_tokens>(e.auth, e.base_url, token_http_of(loop, e), steady_ms);
}

// The store as every process opens it: a busy store is reported to the sync log as it happens.
inline store_access store_access_of(const store_config& s, event_sink& events) {
  store_access a;
  a.busy_timeout_ms = s.busy_timeout_ms;
  a.on_busy = [&events, timeout = s.busy_timeout_ms](std::string_view operation, int attempt) {
    sync_event e;
    e.time_ms = now_ms();
    e.name = event::store_busy;
    e.detail = std::string(operation) + ": the store stayed locked by another process for " +
               std::to_string(timeout) + " ms, or its connection was lost (try " + std::to_string(attempt) + ")";
    events.emit(e);
  };
  return a;
}

inline engine_settings engine_settings_of(const connector_config& config, bool until_idle) {
  engine_settings s;
  s.lease = std::chrono::seconds(config.sync.lease_seconds);
  s.until_idle = until_idle;
  // Only ehr.write_mode transaction sends without asking the EHR first: any other mode needs the
  // EHR's CapabilityStatement to know how (and nothing it does not advertise is tried).
  s.mode = write_mode_named(config.ehr.write_mode).value_or(write_mode::automatic);
  s.parties = {.match_patient = config.ehr.patient == "match", .match_practitioner = config.ehr.practitioner == "match"};
  s.left_out = default_left_out_rules();
  for (const auto& [type, rule] : config.ehr.left_out) s.left_out[type] = rule;
  s.note = config.ehr.note_format == "xhtml" ? note_format::xhtml : note_format::text;
  return s;
}

// What GET [base]/metadata said: the strategy, or why it could not be read.
struct strategy_read {
  std::optional<write_strategy> strategy;
  std::string software;
  std::string error;
};

struct delivery_setup {
  // `owner_kind`: "daemon" (one per store) or "sync". Throws config_error or store_error.
  delivery_setup(const connector_config& config, boost::asio::io_context& loop, event_sink& events,
                 std::string_view owner_kind)
      : mappings(mappings::mapping_set::load(config.code_tables_path, config.mapping)),
        store(open_outbox(config.store, store_access_of(config.store, events))),
        owner(store->register_owner(owner_kind, now_ms())),
        ehr(loop, ehr_settings_of(config.ehr)),
        tokens(access_tokens_of(loop, config.ehr)),
        channel(ehr, tokens.get()),
        random(std::random_device{}()),
        worker(loop, *store),
        engine(loop, worker, channel, mappings,
               delivery_policy({config.sync.max_attempts, std::chrono::milliseconds(config.sync.base_delay_ms),
                                std::chrono::milliseconds(config.sync.max_delay_ms)},
                               [this] { return std::uniform_real_distribution<double>(0.0, 1.0)(random); }),
               events, now_ms, engine_settings_of(config, owner_kind != "daemon")) {}

  // On the way out: the worker finishes its jobs, then this process stops being a claim holder
  // (anything still claimed goes back to its lane, marked possibly at the EHR).
  ~delivery_setup() {
    const std::int64_t me = owner;
    worker.run([me](outbox& s) { s.release_owner(me, now_ms()); }, [](store_result<bool>) {});
  }

  // Reads the EHR's /metadata, chooses the write strategy, and hands it to the engine when it
  // can deliver that way; `done` runs on the loop with what was read.
  void read_write_strategy(const connector_config& config, std::string request_id,
                           std::function<void(const strategy_read&)> done) {
    channel.send(metadata_request(std::move(request_id)),
                 [this, mode = write_mode_named(config.ehr.write_mode).value_or(write_mode::automatic),
                  settings = engine_settings_of(config, false), done = std::move(done)](ehr_answer answer) {
                   strategy_read read;
                   const auto capabilities = capabilities_of(answer, read.error);
                   if (capabilities) {
                     read.strategy = choose_strategy(*capabilities, mode, settings.parties);
                     read.software = capabilities->software;
                     if (read.strategy->deliverable) {
                       engine.use_write_setup(std::make_shared<const write_setup>(
                           write_setup{*read.strategy, settings.parties, settings.left_out, settings.note}));
                     }
                   }
                   done(read);
                 });
  }

  mappings::mapping_source mappings;  // the code tables and mapper, replaced on SIGHUP
  std::unique_ptr<outbox> store;
  std::int64_t owner;
  ehr_client ehr;
  std::unique_ptr<access_tokens> tokens;  // null without ehr.auth
  authorized_channel channel;             // what delivery sends through: ehr, with the token
  std::mt19937_64 random;
  store_worker worker;
  sync_engine engine;
};

}  // namespace connector
