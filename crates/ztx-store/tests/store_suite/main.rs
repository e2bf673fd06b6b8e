//! The store suite, run against SQLite and PostgreSQL, property tests of apply/load and of
//! the history indexes on SQLite, and a printed micro-benchmark of `apply`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests: a panic is a failed test"
)]

mod common;
mod suite;

/// Instantiates every suite function for one backend; `$fixture` yields `Option<impl
/// Fixture>` (`None` skips, e.g. PostgreSQL not installed outside CI).
macro_rules! store_suite {
    ($module:ident, $fixture:expr) => {
        mod $module {
            use super::suite;
            store_suite!(@tests $fixture;
                apply_then_load_round_trips,
                reopening_keeps_data_and_migrates_once,
                mode_is_written_once,
                duplicate_email_is_refused_and_changes_nothing,
                api_keys_round_trip,
                history_queries_follow_binance,
                version_one_history_is_complete_after_migrating,
                concurrent_indexers_all_succeed,
                candles_are_built_from_trades,
                inbox_queues_and_completes,
                failed_apply_changes_nothing,
                corrupt_rows_are_errors_not_panics,
                upkeep_alongside_writes_keeps_every_commit,
            );
        }
    };
    (@tests $fixture:expr; $($name:ident),+ $(,)?) => {
        $(
            #[test]
            fn $name() {
                if let Some(fixture) = $fixture {
                    suite::$name(&fixture);
                }
            }
        )+
    };
}

store_suite!(sqlite, Some(crate::common::SqliteFixture::new()));
store_suite!(postgres, crate::common::PgFixture::new());

mod bench;
mod history;
mod roundtrip;
