// Posts alert changes to alerts.webhook_url as JSON over HTTPS (the same TLS client as the EHR's),
// on the daemon's event loop: a post never holds up delivery. A post that fails stays queued and
// is tried again at the next flush; the sync log has every change regardless.
#pragma once

#include <cstddef>
#include <deque>
#include <memory>
#include <string>

#include <boost/asio/io_context.hpp>

#include "connector/config/config.h"
#include "connector/net/ehr_client.h"
#include "connector/observe/alerts.h"

namespace connector {

class alert_webhook {
 public:
  // Throws config_error for a bad URL or CA file.
  alert_webhook(boost::asio::io_context& loop, const alerts_config& config);

  void queue(const alert_change& change);
  // Starts posting what is queued, oldest first, one at a time, stopping at the first failure
  // (reported on stderr once per failing flush). Returns at once.
  void flush();
  std::size_t waiting() const { return payloads_.size(); }

  // The JSON body of one change: {"alert","state":"open"|"closed","detail","opened_at","at","source"}.
  static std::string payload(const alert_change& change);

 private:
  void post_next();

  std::unique_ptr<ehr_client> client_;
  std::deque<std::string> payloads_;
  bool posting_ = false;
  int sent_ = 0;
};

}  // namespace connector
