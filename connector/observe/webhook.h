// Posts alert changes to alerts.webhook_url as JSON over HTTPS (the same TLS client as the EHR's).
// A post that fails stays queued and is tried again at the next flush; the sync log has every
// change regardless.
#pragma once

#include <cstddef>
#include <deque>
#include <memory>
#include <string>

#include <boost/asio/io_context.hpp>

#include "connector/config/config.h"
#include "connector/observe/alerts.h"
#include "connector/net/ehr_client.h"

namespace connector {

class alert_webhook {
 public:
  // Throws config_error for a bad URL or CA file.
  explicit alert_webhook(const alerts_config& config);

  void queue(const alert_change& change);
  // Posts what is queued, oldest first, stopping at the first failure. Blocks at most about the
  // client's timeout per post. Returns the error of a failed post, or an empty string.
  std::string flush();
  std::size_t waiting() const { return payloads_.size(); }

  // The JSON body of one change: {"alert","state":"open"|"closed","detail","opened_at","at","source"}.
  static std::string payload(const alert_change& change);

 private:
  boost::asio::io_context io_;
  std::unique_ptr<ehr_client> client_;
  std::deque<std::string> payloads_;
  int sent_ = 0;
};

}  // namespace connector
