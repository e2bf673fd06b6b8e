//! The store suite, run against SQLite and PostgreSQL, property tests of apply/load and of
//! the history indexes on SQLite, and a printed micro-benchmark of `apply`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests: a panic is a failed test"
)]

mod access;
mod audit;
mod common;
mod rls;
mod roles;
mod security;
mod suite;
mod tls;

/// Instantiates every suite function for one backend; `$fixture` yields `Option<impl
/// Fixture>` (`None` skips, e.g. PostgreSQL not installed outside CI).
macro_rules! store_suite {
    ($module:ident, $fixture:expr) => {
        mod $module {
            use super::{access, audit, security, suite};
            store_suite!(@tests $fixture;
                access::every_store_call_is_accounted_with_its_segment,
                access::untaken_accesses_are_bounded_and_counted,
                audit::audit_log_appends_and_proves,
                audit::audit_commits_of_every_size_land_whole,
                audit::audit_proofs_from_partly_indexed_groups,
                audit::audit_nodes_the_writer_hands_over_are_the_indexed_nodes,
                audit::audit_nodes_handed_over_past_a_gap_change_nothing,
                audit::audit_checkpoints_are_kept_in_order,
                audit::audit_appends_only_at_the_end,
                audit::audit_appends_after_another_connection_are_checked,
                audit::audit_rows_refuse_update_and_delete,
                security::security_effects_commit_with_their_entries,
                security::a_response_is_not_applied_without_its_entry,
                security::bans_outlive_a_restart,
                security::a_webhook_gets_its_customers_notifications_until_removed,
                security::a_look_at_the_outbox_takes_a_few_of_each_customers,
                suite::apply_then_load_round_trips,
                suite::reopening_keeps_data_and_migrates_once,
                suite::mode_is_written_once,
                suite::duplicate_email_is_refused_and_changes_nothing,
                suite::api_keys_round_trip,
                suite::history_queries_follow_binance,
                suite::version_one_history_is_complete_after_migrating,
                suite::concurrent_indexers_all_succeed,
                suite::candles_are_built_from_trades,
                suite::inbox_queues_and_completes,
                suite::failed_apply_changes_nothing,
                suite::corrupt_rows_are_errors_not_panics,
                suite::upkeep_alongside_writes_keeps_every_commit,
            );
        }
    };
    (@tests $fixture:expr; $($file:ident :: $name:ident),+ $(,)?) => {
        $(
            #[test]
            fn $name() {
                if let Some(fixture) = $fixture {
                    $file::$name(&fixture);
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
