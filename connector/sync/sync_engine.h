// The sync engine: takes lane heads from the outbox, maps each with its patient's delivered
// history, sends its transaction Bundle, and settles it by the delivery policy. One ordered lane
// per patient; as many patients at once as there are connections.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include <boost/asio/io_context.hpp>

#include "connector/observe/sync_event.h"
#include "connector/outbox/outbox.h"
#include "connector/sync/delivery_policy.h"
#include "connector/net/ehr_client.h"
#include "mappings/bundle_mapper.h"

namespace connector {

struct sync_report {
  int delivered = 0;
  int retries_scheduled = 0;
  int dead = 0;
  int held = 0;
  bool auth_fault = false;    // 401/403: delivery paused
  bool ehr_unreachable = false;
  std::optional<std::string> last_error;
};

class sync_engine {
 public:
  sync_engine(boost::asio::io_context& io, outbox& store, ehr_client& ehr,
              const mappings::bundle_mapper& mapper, const mappings::code_tables& tables,
              delivery_policy policy, event_sink& events, clock_ms now);

  // Returns to their lanes the records a crashed process left in flight. Call once, when the
  // process starts: the records in flight later are this process's own.
  int recover();

  // Delivers everything deliverable now, then returns. After a connection failure or an
  // authentication fault it stops taking new records: the EHR is backed off as a whole.
  // Once `stop` turns true it takes no new record and returns when the ones in flight are settled.
  sync_report run_once(const std::atomic<bool>* stop = nullptr);

 private:
  void pump();
  void deliver(const claimed_record& record);
  // A record on its way: what the log needs to say about its answer.
  struct attempt {
    claimed_record record;
    std::string record_type;
    std::string correlation_id;  // also the request's X-Request-ID
  };
  void on_answer(const attempt& sent, const ehr_answer& answer);
  sync_event event_of(const claimed_record& record, std::string_view name, const std::string& record_type) const;

  boost::asio::io_context& io_;
  outbox& store_;
  ehr_client& ehr_;
  const mappings::bundle_mapper& mapper_;
  const mappings::code_tables& tables_;
  delivery_policy policy_;
  event_sink& events_;
  clock_ms now_;
  sync_report report_;
  bool stop_claiming_ = false;
  const std::atomic<bool>* stop_ = nullptr;
};

}  // namespace connector
