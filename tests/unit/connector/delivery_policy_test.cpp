// The failure policy, with a fixed random source so schedules are exact.
#include "connector/sync/delivery_policy.h"

#include <gtest/gtest.h>

namespace {

using namespace connector;
using namespace std::chrono_literals;

attempt_outcome status(int code, std::optional<std::chrono::seconds> retry_after = std::nullopt) {
  return {attempt_outcome::kind::response, code, retry_after};
}

const delivery_policy always_max({10, 1000ms, 60000ms}, [] { return 0.999999; });
const delivery_policy half({10, 1000ms, 60000ms}, [] { return 0.5; });

TEST(delivery_policy, success_is_delivered) {
  EXPECT_EQ(half.judge(status(200), 1).decision, delivery_decision::delivered);
}

TEST(delivery_policy, transient_failures_are_retried) {
  for (int code : {408, 429, 500, 502, 503, 504}) {
    EXPECT_EQ(half.judge(status(code), 1).decision, delivery_decision::retry) << code;
  }
  EXPECT_EQ(half.judge({attempt_outcome::kind::connection_failed, 0, std::nullopt}, 1).decision, delivery_decision::retry);
  EXPECT_EQ(half.judge({attempt_outcome::kind::timed_out, 0, std::nullopt}, 1).decision, delivery_decision::retry);
}

TEST(delivery_policy, refused_data_goes_to_dead_letter) {
  for (int code : {400, 404, 409, 412, 422, 413}) {
    const auto v = half.judge(status(code), 1);
    EXPECT_EQ(v.decision, delivery_decision::dead) << code;
    EXPECT_EQ(v.reason, "HTTP " + std::to_string(code) + ": the EHR refused the record");
  }
}

TEST(delivery_policy, authentication_faults_pause_instead_of_burning_the_queue) {
  EXPECT_EQ(half.judge(status(401), 1).decision, delivery_decision::pause_for_auth);
  EXPECT_EQ(half.judge(status(403), 9).decision, delivery_decision::pause_for_auth);
}

TEST(delivery_policy, an_interaction_the_ehr_does_not_take_pauses_and_dead_letters_nothing) {
  for (int code : {405, 501}) {
    const auto v = half.judge(status(code), 9);
    EXPECT_EQ(v.decision, delivery_decision::pause_for_write_mode) << code;
    EXPECT_EQ(v.reason, "HTTP " + std::to_string(code) +
                            ": the EHR does not take records written this way; delivery paused, nothing dead-lettered");
  }
  auto not_supported = status(400);
  not_supported.not_supported = true;
  EXPECT_EQ(half.judge(not_supported, 1).decision, delivery_decision::pause_for_write_mode);
  EXPECT_EQ(half.judge(not_supported, 1).reason.rfind("HTTP 400 not-supported: ", 0), 0u);
  auto unprocessable = status(422);
  EXPECT_EQ(half.judge(unprocessable, 1).decision, delivery_decision::dead) << "a refused record stays the record's";
  auto server_error = status(500);
  server_error.not_supported = true;
  EXPECT_EQ(half.judge(server_error, 1).decision, delivery_decision::retry) << "only a 4xx refusal says not-supported";
}

TEST(delivery_policy, backoff_doubles_with_full_jitter_up_to_the_cap) {
  // Ceilings 1 s, 2 s, 4 s ... capped at 60 s; the random draw picks within [0, ceiling).
  EXPECT_EQ(half.judge(status(503), 1).retry_in, 500ms);
  EXPECT_EQ(half.judge(status(503), 2).retry_in, 1000ms);
  EXPECT_EQ(half.judge(status(503), 3).retry_in, 2000ms);
  EXPECT_EQ(half.judge(status(503), 7).retry_in, 30000ms);
  EXPECT_EQ(half.judge(status(503), 9).retry_in, 30000ms);
  EXPECT_EQ(always_max.judge(status(503), 4).retry_in, 7999ms);
}

TEST(delivery_policy, retry_after_is_a_floor) {
  EXPECT_EQ(half.judge(status(429, 20s), 1).retry_in, 20000ms);
  EXPECT_EQ(half.judge(status(503, 1s), 9).retry_in, 30000ms);  // the backoff is longer already
}

TEST(delivery_policy, gives_up_after_the_configured_attempts) {
  const auto v = half.judge(status(503), 10);
  EXPECT_EQ(v.decision, delivery_decision::dead);
  EXPECT_EQ(v.reason, "HTTP 503 on attempt 10 of 10: giving up");
}

TEST(delivery_policy, an_outage_never_dead_letters_a_record) {
  attempt_outcome unreachable;
  unreachable.what = attempt_outcome::kind::connection_failed;
  attempt_outcome timed_out;
  timed_out.what = attempt_outcome::kind::timed_out;
  for (int attempts : {10, 11, 1000}) {
    EXPECT_EQ(half.judge(unreachable, attempts).decision, delivery_decision::retry) << attempts;
    EXPECT_EQ(half.judge(timed_out, attempts).decision, delivery_decision::retry) << attempts;
  }
}

}  // namespace
