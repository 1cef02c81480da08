// The sync engine: a continuous pump on the event loop. It claims lane heads from the outbox
// (under a lease), maps each with its patient's history, sends its transaction Bundle and settles
// it by the delivery policy: one ordered lane per patient, as many patients at once as there are
// connections. All store work runs on the store worker's thread; the loop never blocks.
//
// Every claim ends in a settle or a release, whatever fails on the way:
//   claim -> prepare (read, history, map; on the worker) -> send -> answer -> settle
// - 401/403, or a write the EHR refuses as a whole (405, 501, not-supported): released, and all
//   delivery pauses, doubling up to engine_settings.auth_pause; nothing is dead-lettered;
// - held, stale, or no longer valid: settled without sending;
// - a failure while preparing, a full connection pool, an exception on the loop: released;
// - a settle the store refuses (busy, full): kept in memory and tried again with backoff while
//   delivery takes no new claim ("store degraded", logged once and left by itself);
// - a claim whose lease runs out before its request is written is withheld, never sent late;
// - a settle whose claim was taken over is refused by the store (fencing) and logged.
// A sweep takes back the claims of processes that died or stalled; a heartbeat renews this
// process's leases while requests are in flight.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <optional>
#include <string>
#include <utility>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include "connector/net/ehr_client.h"
#include "connector/observe/sync_event.h"
#include "connector/outbox/outbox.h"
#include "connector/outbox/store_worker.h"
#include "connector/sync/delivery_policy.h"
#include "connector/sync/plan_delivery.h"
#include "mappings/mapping_set.h"

namespace connector {

struct sync_report {
  int delivered = 0;
  int retries_scheduled = 0;
  int dead = 0;
  int held = 0;
  int claims_lost = 0;
  int claims_recovered = 0;
  bool auth_fault = false;    // 401/403: delivery paused
  bool write_refused = false;  // 405, 501, not-supported: the EHR refuses the write mode; paused
  bool ehr_unreachable = false;
  std::optional<std::string> last_error;
  std::optional<std::string> store_error;  // the store failed and sync --once gave up waiting
};

struct engine_settings {
  std::chrono::milliseconds lease{60000};   // how long a claim holds without renewal
  std::chrono::milliseconds poll{200};      // how soon records stored by another process are noticed
  std::chrono::milliseconds sweep{5000};    // how often dead or stalled holders' claims are taken back
  std::chrono::milliseconds auth_pause{60000};  // the longest pause after 401/403 or a refused token
  std::chrono::milliseconds store_retry_max{5000};  // backoff ceiling while the store refuses writes
  // sync --once: stop once nothing is claimable (or the EHR is down), and give up on a store
  // that refuses writes for this long. Zero: the daemon, which goes on until stopped.
  bool until_idle = false;
  std::chrono::milliseconds give_up_on_store{60000};
  // ehr.write_mode and ehr.patient/practitioner. With any mode but transaction, nothing is sent
  // before the EHR's /metadata has said how (read by the engine when a record is claimed and no
  // strategy is known, and again after the EHR refused a way of writing; use_write_setup gives
  // one read elsewhere). Transaction: one transaction Bundle per record, no /metadata needed.
  write_mode mode = write_mode::transaction;
  party_rules parties;
  left_out_rules left_out = default_left_out_rules();  // ehr.left_out: fold or skip per type
  note_format note = note_format::text;                // ehr.note_format
};

class sync_engine {
 public:
  sync_engine(boost::asio::io_context& loop, store_worker& store, ehr_channel& ehr,
              const mappings::mapping_source& mappings, delivery_policy policy,
              event_sink& events, clock_ms wall, engine_settings settings);

  // Starts pumping as `owner` (outbox::register_owner). With settings.until_idle, `on_idle` runs
  // once nothing more can be done now.
  void start(std::int64_t owner, std::function<void()> on_idle = nullptr);
  // Records were stored by this process: look for work now rather than at the next poll.
  void wake();
  // How records are written from now on (the strategy read from the EHR's /metadata). Records
  // already in flight finish the way they started. Null: one transaction Bundle per record.
  void use_write_setup(std::shared_ptr<const write_setup> setup);
  // Takes no new record; `done` runs once every claim is settled or released (or, with a store
  // that refuses writes, after a bounded wait: those claims are taken back by the next process).
  void stop(std::function<void()> done);

  const sync_report& report() const { return report_; }
  bool store_degraded() const { return degraded_; }
  const std::string& store_problem() const { return store_problem_; }
  int in_flight() const { return static_cast<int>(flights_.size()); }
  // Records held because the EHR has not their patient (or practitioner) yet: those held again
  // within the last two minutes (each is looked at again every 30 s at most).
  int waiting_for_party() const;
  // When the EHR last answered anything, by the steady clock (for the idle probe).
  std::optional<std::int64_t> last_answer_steady_ms() const { return last_answer_; }

 private:
  // A claim of this process, from the claim to its settle.
  struct flight {
    claimed_record claim;
    std::string record_type;
    std::string correlation_id;
    std::int64_t lease_deadline = 0;  // steady ms: no request goes out after this
    enum class stage { sending, settling, unsettled } at = stage::sending;
    attempt_report report;  // settling, unsettled: what to record
    sync_event event;       // what the log says once it is recorded
    bool lost = false;      // a renewal found the claim taken over, or the record was claimed anew
    bool waits_for_party = false;  // released because the EHR has not its patient yet
  };
  // A claimed record after the worker read and mapped it.
  struct prepared {
    claimed_record claim;
    enum class kind { send, held, stale, invalid, failed } what = kind::send;
    std::string bundle;
    std::optional<fhir::write_plan> plan;  // outside a transaction: the bundle read back as a plan
    std::vector<ledger_entry> ledger;      // ... with what the ledger holds for it
    std::shared_ptr<const write_setup> setup;
    bool had_setup = false;  // a strategy was known when it was prepared
    std::string record_type;
    std::string detail;  // held: what it waits for; failed: what went wrong
    std::vector<mappings::clinical_flag> flags;
  };

  void pump(bool force = false);
  void poll() { pump(); }
  // A claim is known by its record and its token: the same record claimed again (after it was
  // taken back from this very process) is another flight, and the old one's answer is not its.
  using flight_key = std::pair<std::int64_t, std::int64_t>;  // (seq, token)
  static flight_key key_of(const claimed_record& c) { return {c.seq, c.token}; }

  void on_claimed(store_result<std::vector<prepared>> result, std::int64_t asked_at);
  void send(flight& f, const std::string& bundle);
  void send_plan(flight& f, prepared& p);
  // GET /metadata for the claimed record `key`: a strategy, then the record goes back to be
  // prepared for it; a failure is judged as that record's attempt (an outage, a TLS fault).
  void read_write_setup(const flight_key& key);
  bool needs_write_setup() const { return settings_.mode != write_mode::transaction; }
  void on_plan_done(const flight_key& key, plan_result result);
  bool may_send(const flight_key& key) const;
  // `plan`: the answer ends a plan delivered outside a transaction (what it made, what it left out).
  void on_answer(const flight_key& key, const ehr_answer& answer, const plan_result* plan = nullptr);
  void settle(const flight_key& key, attempt_report report, sync_event event);
  void on_settled(const flight_key& key, const store_result<bool>& result);
  // Lets go of a claim without an attempt; the lane is ready again after `ready_in_ms` (a local
  // failure waits sync.base_delay_ms, so it never becomes a tight loop).
  void release(const flight_key& key, const std::string& why, std::int64_t ready_in_ms);
  void sweep();
  void renew();
  void store_failed(const store_error& e);
  void store_succeeded();
  void retry_store();
  void arm(boost::asio::steady_timer& timer, std::chrono::milliseconds in, void (sync_engine::*then)());
  void maybe_finish();
  sync_event event_of(const claimed_record& record, std::string_view name, const std::string& record_type) const;
  std::int64_t steady_now() const;
  void emit(const sync_event& e);

  boost::asio::io_context& loop_;
  store_worker& store_;
  ehr_channel& ehr_;
  const mappings::mapping_source& mappings_;  // each claim is prepared with the set current then
  delivery_policy policy_;
  event_sink& events_;
  clock_ms wall_;
  engine_settings settings_;

  std::int64_t owner_ = 0;
  std::shared_ptr<const write_setup> write_setup_;
  shared_keys shared_keys_;  // outside transactions: shared resources one delivery at a time
  bool reading_setup_ = false;  // a /metadata request is out: no claims meanwhile
  std::string strategy_line_;   // last noted in the store for `status`
  std::map<std::int64_t, std::int64_t> waiting_for_party_;  // seq -> steady ms it was last held for its patient
  std::map<flight_key, flight> flights_;  // claimed by this process, not yet settled
  bool started_ = false;
  bool claiming_ = false;      // a claim job is out
  bool stopping_ = false;
  bool finished_ = false;
  bool nothing_claimable_ = false;  // the last claim found no ready lane
  bool claims_stopped_ = false;     // until_idle: the EHR is down or refuses credentials
  bool degraded_ = false;
  std::string store_problem_;
  std::int64_t degraded_since_ = 0;
  std::chrono::milliseconds store_backoff_{100};
  std::int64_t pause_until_ = 0;  // steady: the EHR is backed off as a whole until then
  int unreachable_streak_ = 0;
  int auth_streak_ = 0;  // authentication faults in a row: the pause doubles
  int refusal_streak_ = 0;  // write refusals (405, 501, not-supported) in a row: the pause doubles
  std::optional<std::int64_t> last_answer_;
  sync_report report_;
  std::function<void()> on_idle_;
  std::function<void()> on_stopped_;
  std::int64_t stop_deadline_ = 0;

  boost::asio::steady_timer poll_timer_;
  boost::asio::steady_timer sweep_timer_;
  boost::asio::steady_timer renew_timer_;
  boost::asio::steady_timer store_timer_;
};

}  // namespace connector
