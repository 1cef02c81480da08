// Blocking store work off the event loop: fsync'd commits, scans, and the waits of a busy store
// run on a thread of their own with its own outbox connection, one job after another, and each
// job's result is posted back to the loop. The loop thread never waits for the disk, so the EHR's
// answers, the timers and the HTTP listeners go on while a large batch commits.
#pragma once

#include <atomic>
#include <functional>
#include <optional>
#include <thread>
#include <type_traits>
#include <utility>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include "connector/outbox/outbox.h"

namespace connector {

template <typename T>
struct store_result {
  std::optional<T> value;            // the job's result, when it completed
  std::optional<store_error> error;  // why it did not
  bool ok() const { return value.has_value(); }
};

class store_worker {
 public:
  enum class mode {
    threaded,  // jobs run on the worker's thread
    inline_,   // jobs run at once on the caller's thread (deterministic tests); results still posted
  };

  // `store` is used only by this worker's jobs from now on, and must outlive it.
  store_worker(boost::asio::io_context& loop, outbox& store, mode how = mode::threaded)
      : loop_(loop), store_(store), mode_(how), guard_(work_.get_executor()) {
    if (mode_ == mode::threaded) thread_ = std::thread([this] { work_.run(); });
  }

  // Finishes the jobs already queued, then stops.
  ~store_worker() {
    guard_.reset();
    if (thread_.joinable()) thread_.join();
  }
  store_worker(const store_worker&) = delete;
  store_worker& operator=(const store_worker&) = delete;

  // Runs job(outbox&) on the worker; then done(store_result<R>) on the loop, exactly once. A job
  // returning void gives store_result<bool>. Exceptions become store_error values.
  template <typename Job, typename Done>
  void run(Job job, Done done) {
    using returned = std::invoke_result_t<Job&, outbox&>;
    using value = std::conditional_t<std::is_void_v<returned>, bool, returned>;
    ++queued_;
    auto task = [this, job = std::move(job), done = std::move(done)]() mutable {
      store_result<value> r;
      try {
        if constexpr (std::is_void_v<returned>) {
          job(store_);
          r.value = true;
        } else {
          r.value = job(store_);
        }
      } catch (const store_error& e) {
        r.error = e;
      } catch (const std::exception& e) {
        r.error = store_error(store_error::kind::other, e.what());
      }
      --queued_;
      boost::asio::post(loop_, [done = std::move(done), r = std::move(r)]() mutable { done(std::move(r)); });
    };
    if (mode_ == mode::threaded) {
      boost::asio::post(work_, std::move(task));
    } else {
      task();
    }
  }

  // Jobs queued or running.
  int queued() const { return queued_; }

 private:
  boost::asio::io_context& loop_;
  outbox& store_;
  mode mode_;
  boost::asio::io_context work_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> guard_;
  std::atomic<int> queued_{0};
  std::thread thread_;
};

}  // namespace connector
