// Dates and date-times as the contract writes them.
#include "mappings/dates.h"

#include <gtest/gtest.h>

namespace {

using mappings::parse_date;
using mappings::parse_date_time;

TEST(parse_date, accepts_real_dates_only) {
  EXPECT_TRUE(parse_date("2024-02-29"));
  EXPECT_FALSE(parse_date("2026-02-29"));
  EXPECT_FALSE(parse_date("2026-02-30"));
  EXPECT_FALSE(parse_date("2026-13-01"));
  EXPECT_FALSE(parse_date("2026-1-01"));
  EXPECT_FALSE(parse_date("20260101"));
}

TEST(civil_date, counts_days_across_months_and_leap_years) {
  const auto a = *parse_date("2024-02-28");
  const auto b = *parse_date("2024-03-01");
  EXPECT_EQ(b.days() - a.days(), 2);
  EXPECT_EQ(parse_date("1970-01-01")->days(), 0);
  EXPECT_EQ(a.plus_days(84).iso(), "2024-05-22");
}

TEST(parse_date_time, needs_seconds_and_an_offset) {
  EXPECT_TRUE(parse_date_time("2026-11-20T09:30:00-05:00"));
  EXPECT_TRUE(parse_date_time("2026-11-20T09:30:00Z"));
  EXPECT_TRUE(parse_date_time("2026-11-20T09:30:00.123+01:00"));
  EXPECT_FALSE(parse_date_time("2026-11-20T09:30-05:00"));
  EXPECT_FALSE(parse_date_time("2026-11-20T09:30:00"));
  EXPECT_FALSE(parse_date_time("2026-11-20 09:30:00Z"));
  EXPECT_FALSE(parse_date_time("2026-11-20t09:30:00z"));
  EXPECT_FALSE(parse_date_time("2026-11-20T24:00:00Z"));
  // FHIR allows offsets from -14:00 to +14:00.
  EXPECT_TRUE(parse_date_time("2026-11-20T09:30:00+14:00"));
  EXPECT_FALSE(parse_date_time("2026-11-20T09:30:00+14:01"));
  EXPECT_FALSE(parse_date_time("2026-11-20T09:30:00-15:00"));
}

TEST(parse_date_time, orders_instants_across_offsets) {
  const auto ny = *parse_date_time("2026-11-20T09:30:00-05:00");  // 14:30Z
  const auto utc = *parse_date_time("2026-11-20T14:00:00Z");
  EXPECT_TRUE(mappings::is_before(utc, ny));
  EXPECT_FALSE(mappings::is_before(ny, utc));
  EXPECT_EQ(ny.local_date.iso(), "2026-11-20");
}

}  // namespace
