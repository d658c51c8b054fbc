//! jwt-relay-kafka against two independent Kafka implementations: librdkafka's embedded mock
//! cluster (every run), and the real broker at `KAFKA_BROKERS` (Tansu in CI; skipped loudly
//! when unreachable, a failure under `CI=true`). Each scenario runs on both.

#![allow(clippy::unwrap_used, dead_code, unreachable_pub)]

use jwt_relay_test_support as common;
use jwt_relay_test_support::jwks_server;
mod support;

mod ahead;
mod broker_down;
mod context;
mod dead_letters;
mod exchange;
mod halt;
mod handler_errors;
mod hostile;
mod outage;
mod propagation;
mod restart;
mod round_trip;
mod stuck;
mod token_outage;

/// Runs `module::scenario(cluster)` as two tests: `mock` and `broker`.
macro_rules! on_both {
    ($($module:ident :: $scenario:ident => $name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn mock() {
                crate::$module::$scenario(crate::support::Cluster::mock()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn broker() {
                if let Some(cluster) = crate::support::Cluster::broker() {
                    crate::$module::$scenario(cluster).await;
                }
            }
        }
    )*};
}

on_both! {
    round_trip::the_handler_sees_the_verified_subject => round_trip_sees_the_subject,
    dead_letters::bad_tokens_are_dead_lettered_without_the_token => bad_tokens_go_to_the_dlq,
    outage::records_wait_for_the_key_set_and_none_is_lost => key_set_outage,
    outage::a_waiting_partition_does_not_hold_up_the_others => other_partitions_flow,
    restart::a_restarted_consumer_reads_what_was_not_stored => restart_in_the_same_group,
    propagation::a_handler_publishing_downstream_propagates_the_token => downstream_publish,
    exchange::an_expired_token_is_exchanged_and_flows_on => expired_token_exchanged,
    handler_errors::a_failing_handler_is_retried_then_dead_lettered => handler_failures,
    halt::a_halt_stops_the_consumer_and_stores_nothing => a_halt_stops,
    hostile::every_hostile_class_is_dead_lettered_and_good_records_flow => hostile_input,
    token_outage::records_wait_out_a_token_service_outage => token_service_outage,
    ahead::a_backlog_of_distinct_tokens_is_decided_in_order => distinct_tokens_checked_ahead,
    ahead::a_backlog_through_a_small_buffer_is_decided_in_order => small_buffer_refilled_by_halves,
    stuck::a_stuck_handler_does_not_hold_up_the_other_partitions => stuck_handler_other_partitions_flow,
    context::the_users_client_context_gets_the_callbacks => users_client_context,
}
