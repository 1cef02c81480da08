// Delivering one record's write plan to an EHR that takes no transaction: one request per
// resource (write mode single), or batch Bundles of the writes whose references are known
// (batch), in dependency order, each reference to an earlier write rewritten to the id the EHR
// gave it. How each type is created and updated comes from the strategy (type_route).
//
// Keeping "nothing twice" without a transaction: a create is made safe by the EHR (If-None-Exist),
// by a search by identifier first, or, where the EHR offers neither, by the ledger in the outbox:
// per resource key the EHR's id and version, written as each request succeeds, so a record
// interrupted mid-way resumes where it stopped and an amendment updates what it created.
//
// Crash windows (a process killed, or the store failing, between two steps), and what follows:
//   1. before a request is written: nothing happened; the resend does it.
//   2. a create written, no answer yet (or the answer lost): it may be at the EHR. Conditional
//      create and search-first find it; a ledger-only create had its intent written to the ledger
//      before it was sent, so the resend knows it is in doubt: it searches when it can, and
//      otherwise sends it again, logging "possibly twice at the EHR" for that resource.
//   3. the answer received, the ledger not yet written: as 2.
//   4. an update written, the ledger's version not moved on: the resend's If-Match fails with
//      412; the current version is read (GET Type/id) and the update sent once more.
//   5. the ledger written, the record not yet settled: the resend finds every write in the
//      ledger and sends nothing again.
// tests/unit/connector/plan_delivery_test.cpp fails each step in turn.
//
// Patients and practitioners the EHR owns (ehr.patient / ehr.practitioner match, or an EHR that
// does not create them): found by identifier; none holds the record, several dead-letter it.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>

#include "connector/clock.h"
#include "connector/net/ehr_client.h"
#include "connector/outbox/outbox.h"
#include "connector/outbox/store_worker.h"
#include "connector/sync/ehr_capabilities.h"
#include "connector/sync/folded_note.h"
#include "fhir/transaction_response.h"
#include "fhir/write_plan.h"

namespace connector {

// What delivery follows while the EHR's capabilities hold: the strategy and the party rules.
struct write_setup {
  write_strategy strategy;
  party_rules parties;
  left_out_rules left_out = default_left_out_rules();  // ehr.left_out
  note_format note = note_format::text;                // ehr.note_format
};

// Resources many records share (Organization, Device, Practitioner, Patient) are looked up and
// created by one delivery at a time per key in this process, and what one learnt the next knows:
// two patients' lanes going at once would otherwise both find nothing and both create.
class shared_keys {
 public:
  bool try_hold(const ledger_key& key) { return held_.insert(key).second; }
  void release(const ledger_key& key) { held_.erase(key); }
  const ledger_entry* known(const ledger_key& key) const {
    const auto it = known_.find(key);
    return it == known_.end() ? nullptr : &it->second;
  }
  void learn(const ledger_entry& e) { known_[e.key] = e; }

 private:
  std::set<ledger_key> held_;
  std::map<ledger_key, ledger_entry> known_;
};

struct plan_result {
  enum class ending {
    written,          // every write that could be sent is at the EHR
    failed,           // a request failed: `answer` is its answer, for the delivery policy
    party_unknown,    // the patient (or practitioner) is not at the EHR yet: hold
    party_ambiguous,  // several at the EHR: a dead letter naming their ids
    store_failed,     // the ledger could not be written: released, tried again
    lost,             // the claim was taken over: nothing more may be written
  };
  ending how = ending::written;
  ehr_answer answer;  // failed: the answer that ended it
  std::string detail;  // party_*: who and why; store_failed: the store's message
  // What became of each write: "201 Created Observation/12/_history/1", "found Patient/7",
  // "in the ledger Observation/12", "left out: ChargeItem (the EHR does not list ChargeItem)".
  std::vector<std::string> made;
  std::vector<std::string> left_out;  // "ChargeItem: the EHR's CapabilityStatement does not list ChargeItem"
  std::vector<std::string> possibly_twice;  // types sent again although possibly at the EHR
  int requests = 0;
};

class plan_delivery : public std::enable_shared_from_this<plan_delivery> {
 public:
  struct parts {
    boost::asio::io_context& loop;
    ehr_channel& ehr;
    store_worker& store;
    clock_ms wall;
    shared_keys& shared;
  };
  using done_fn = std::function<void(plan_result)>;

  // Starts delivering; `done` runs once on the loop. `ledger`: what the ledger held for the plan's
  // keys and its conditional references when the record was prepared. `may_send` is asked before
  // every request (the claim's lease).
  static void start(parts p, std::shared_ptr<const write_setup> setup, claimed_record claim, fhir::write_plan plan,
                    std::vector<ledger_entry> ledger, std::function<bool()> may_send, std::string request_id,
                    done_fn done);

  // The keys whose ledger entries a plan needs: its writes' and its conditional references'.
  static std::vector<ledger_key> keys_of(const fhir::write_plan& plan);

  plan_delivery(parts p, std::shared_ptr<const write_setup> setup, claimed_record claim, fhir::write_plan plan,
                std::vector<ledger_entry> ledger, std::function<bool()> may_send, std::string request_id, done_fn done);
  ~plan_delivery();  // lets go of any shared key still held

 private:
  // One HTTP request of the plan, relative to the base URL.
  struct request {
    std::size_t write = 0;
    std::string method, url, body;
    std::vector<std::pair<std::string, std::string>> headers;
    bool create = false;   // POST: the id comes back in Location
    bool if_match = false;  // PUT by id with If-Match: a 412 reads the version and tries once more
  };
  // What to do about one write, decided from the route, the ledger and any searches.
  struct decision {
    enum class what { done, left_out, request, stop } is = what::done;
    request req;
  };
  using then_fn = std::function<void()>;

  void resolve_conditional_references(std::size_t next);
  void next_single();
  void next_wave();
  void decide_in_wave();
  void record_wave();
  void decide(std::size_t i, std::function<void(decision)> then);
  void search(const ledger_key& key, std::function<void(std::optional<std::vector<fhir::search_match>>, const ehr_answer&)> then);
  void send(const request& r, std::function<void(const ehr_answer&)> then);
  void send_now(std::shared_ptr<ehr_request> r, std::function<void(const ehr_answer&)> then);
  void on_written(const request& r, const ehr_answer& answer, then_fn then);
  void remember(const ledger_key& key, const std::string& id, const std::string& version, then_fn then);
  std::string body_of(std::size_t i);  // notes references it cannot resolve in result_.left_out
  request create_request(std::size_t i, bool conditional);
  request update_request(std::size_t i, const ledger_entry& known);
  const type_route& route_of(std::size_t i) const;
  ledger_key key_of(std::size_t i) const;
  void resolve(std::size_t i, std::optional<std::string> reference);
  void let_go(const ledger_key& key);  // a shared key held: released for the next delivery
  void finish(plan_result::ending how, std::string detail = {}, ehr_answer answer = {});

  parts parts_;
  std::shared_ptr<const write_setup> setup_;
  claimed_record claim_;
  fhir::write_plan plan_;
  std::map<ledger_key, ledger_entry> ledger_;
  std::function<bool()> may_send_;
  std::string request_id_;
  done_fn done_;
  std::size_t at_ = 0;  // single: the next write
  std::vector<std::size_t> wave_;  // batch: the writes of this wave, the requests made of them, and their answers
  std::size_t wave_at_ = 0;
  std::vector<request> wave_requests_;
  std::vector<ehr_answer> wave_answers_;
  std::set<ledger_key> holding_;  // shared keys this delivery holds (shared_keys)
  std::vector<bool> finished_;  // per write: resolved, left out or found
  std::map<std::string, std::optional<std::string>, std::less<>> resolved_;  // fullUrl or conditional ref -> "Type/id"
  plan_result result_;
  bool over_ = false;
};

}  // namespace connector
