//! One macro per port: each expands every scenario of that port's suite into a
//! `#[tokio::test]` inside a module named after the port.

/// Expands scenarios of a suite into tests. Internal; use the per-port macros.
#[doc(hidden)]
#[macro_export]
macro_rules! __omoi_suite {
    ($module:ident, $factory:expr, [$($scenario:ident),* $(,)?]) => {
        #[allow(non_snake_case)]
        mod $module {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $scenario() {
                    let clock = $crate::testkit::ManualClock::new();
                    let Some(store) = ($factory)(::std::sync::Arc::clone(&clock)).await else { return };
                    let harness = $crate::testkit::suites::$module::Harness::new(store, clock);
                    let run = $crate::testkit::suites::$module::$scenario(harness);
                    ::tokio::time::timeout(::std::time::Duration::from_secs(180), run)
                        .await
                        .expect(concat!(stringify!($scenario), " did not finish within 180 s"));
                }
            )*
        }
    };
}

/// Runs the whole [`TaskStore`](crate::TaskStore) suite against an adapter. The factory is
/// `async fn(Arc<ManualClock>) -> Option<Arc<S>>` with `S: TaskStore + EventStore`.
#[macro_export]
macro_rules! task_store_suite {
    ($factory:expr) => {
        $crate::__omoi_suite!(
            task_store,
            $factory,
            [
                insert_and_get_round_trip_every_field,
                claim_is_exactly_once_under_16_concurrent_claimers,
                chain_releases_each_task_only_after_its_dependency_completed,
                diamond_join_is_claimable_only_after_both_branches_completed,
                cycle_in_batch_is_rejected_naming_the_path_and_nothing_is_inserted,
                unknown_dependency_is_rejected_and_nothing_is_inserted,
                invalid_or_duplicate_tasks_reject_the_whole_batch,
                dependencies_on_stored_tasks_decide_the_initial_state,
                expired_lease_is_reclaimed_and_the_stale_holder_is_fenced,
                renewed_lease_survives_past_its_original_expiry,
                failed_attempt_is_not_claimable_before_its_backoff_elapses,
                exhausted_attempts_dead_letter_the_task_and_block_its_dependents,
                permanent_failure_dead_letters_at_once,
                cancel_cascades_blocked_to_transitive_dependents,
                redrive_of_a_dead_letter_unblocks_its_dependents,
                claims_follow_priority_then_fifo_within_a_priority,
                capability_filter_hands_out_only_matching_tasks,
                concurrency_key_limits_simultaneous_leases,
                dedup_key_is_unique_among_non_terminal_tasks,
                release_returns_the_task_without_using_an_attempt,
                reclaim_holder_takes_back_a_failed_agents_tasks,
                every_state_change_emits_one_event_in_order,
                future_run_at_delays_the_first_claim,
                start_and_renew_require_the_current_token,
                list_and_count_filter_by_state_and_spec,
                oversized_result_is_rejected_and_the_lease_is_kept,
                complete_many_reports_each_item,
                hostile_text_and_json_are_refused_up_front_or_read_back_exactly,
                claim_and_start_marks_tasks_running_in_one_step,
                renew_leases_reports_each_lease,
                aging_bumps_a_long_waiting_task_one_priority_level,
            ]
        );
    };
}

/// Runs the whole [`SpecStore`](crate::SpecStore) suite against an adapter. The factory yields
/// `Arc<S>` with `S: SpecStore + TaskStore + EventStore`.
#[macro_export]
macro_rules! spec_store_suite {
    ($factory:expr) => {
        $crate::__omoi_suite!(
            spec_store,
            $factory,
            [
                create_get_and_list_specs,
                spec_transitions_follow_the_table_and_emit_events,
                checkpoints_are_kept_and_next_phase_skips_them,
                usage_accumulates_across_calls,
                sync_materializes_tickets_and_tasks_with_dependencies,
                sync_is_idempotent_same_ids_nothing_new,
                sync_rejects_unknown_local_ids_and_cycles_creating_nothing,
                sync_of_an_extended_plan_creates_only_the_new_tasks,
                sync_of_a_changed_dependency_is_refused_naming_the_task,
                ticket_status_is_derived_from_its_tasks,
            ]
        );
    };
}

/// Runs the whole [`AgentStore`](crate::AgentStore) suite against an adapter. The factory
/// yields `Arc<S>` with `S: AgentStore`.
#[macro_export]
macro_rules! agent_store_suite {
    ($factory:expr) => {
        $crate::__omoi_suite!(
            agent_store,
            $factory,
            [
                first_heartbeat_moves_a_spawning_agent_to_idle,
                heartbeat_sequence_must_increase_and_gaps_are_reported,
                overdue_agents_are_found_by_ttl_with_missed_periods,
                agent_transition_table_is_enforced,
                degraded_agent_recovers_on_heartbeat,
                failed_agent_cannot_heartbeat,
                list_agents_filters_by_status,
            ]
        );
    };
}

/// Runs the whole [`EventStore`](crate::EventStore) suite against an adapter. The factory
/// yields `Arc<S>` with `S: EventStore`.
#[macro_export]
macro_rules! event_store_suite {
    ($factory:expr) => {
        $crate::__omoi_suite!(
            event_store,
            $factory,
            [
                appended_events_get_increasing_cursors_and_read_back_in_order,
                read_after_a_cursor_returns_only_later_events_up_to_the_limit,
                subscribe_replays_then_tails_live_without_gaps_or_repeats,
                subscriber_resumes_from_its_last_cursor_after_reconnecting,
                concurrent_appenders_produce_one_total_order,
            ]
        );
    };
}

/// Runs the whole [`MemoryStore`](crate::MemoryStore) suite against an adapter. The factory
/// yields `Arc<S>` with `S: MemoryStore`, storing 3-dimensional embeddings.
#[macro_export]
macro_rules! memory_store_suite {
    ($factory:expr) => {
        $crate::__omoi_suite!(
            memory_store,
            $factory,
            [
                put_and_get_round_trip,
                hybrid_search_ranks_agreement_first_where_vector_and_keyword_disagree,
                vector_and_keyword_modes_rank_by_one_signal,
                kind_filter_and_limit_apply,
                wrong_dimension_is_rejected,
                reinforcement_counts_refreshes_and_merges_citations,
                uses_are_counted_once_per_call,
                embedder_dimensions_are_checked_against_the_store,
            ]
        );
    };
}

/// Runs the whole [`SandboxProvider`](crate::SandboxProvider) suite against an adapter. The
/// factory yields `Arc<P>` with `P: SandboxProvider` (the clock it receives can be ignored).
#[macro_export]
macro_rules! sandbox_suite {
    ($factory:expr) => {
        $crate::__omoi_suite!(
            sandbox,
            $factory,
            [
                exit_code_and_separate_stdout_and_stderr_are_reported,
                argv_is_passed_verbatim_and_a_missing_program_exits_127,
                stdin_is_fed_and_then_closed,
                spec_env_and_exec_env_reach_the_command,
                cwd_runs_the_command_in_a_workspace_subdirectory,
                timeout_kills_the_whole_process_tree,
                output_is_truncated_at_the_limit_and_flagged_per_stream,
                files_round_trip_binary_content_in_nested_directories,
                paths_are_confined_to_the_workspace,
                reading_a_missing_file_is_file_not_found,
                destroy_is_idempotent_and_final,
                sandboxes_do_not_share_files,
                concurrent_execs_in_one_sandbox_all_succeed,
                special_files_in_the_workspace_are_refused_not_waited_on,
                read_file_prefix_returns_at_most_the_limit,
            ]
        );
    };
}

/// Runs the read-only execution suite ([`ExecRequest::read_only`](crate::ExecRequest)) against
/// an adapter that supports it; same factory as [`sandbox_suite!`].
#[macro_export]
macro_rules! sandbox_read_only_suite {
    ($factory:expr) => {
        $crate::__omoi_suite!(
            sandbox_read_only,
            $factory,
            [
                read_only_escape_through_shell_redirection_changes_nothing,
                read_only_escape_through_find_and_git_changes_nothing,
                read_only_commands_see_the_workspace_and_their_copy_is_removed,
            ]
        );
    };
}

/// Runs the whole [`DiscoveryStore`](crate::DiscoveryStore) suite against an adapter. The
/// factory yields `Arc<S>` with `S: DiscoveryStore + TaskStore + EventStore`.
#[macro_export]
macro_rules! discovery_store_suite {
    ($factory:expr) => {
        $crate::__omoi_suite!(
            discovery_store,
            $factory,
            [
                branch_is_recorded_with_links_boosted_priority_and_events,
                blocking_discovery_holds_the_sources_dependents_until_the_branch_completes,
                non_blocking_discovery_runs_beside_the_source,
                discovery_is_resolved_when_its_last_branch_task_completes,
                exact_duplicate_links_to_the_existing_branch_and_spawns_nothing,
                duplicate_named_by_the_caller_is_recorded_and_spawns_nothing,
                eight_concurrent_reports_of_the_same_discovery_create_exactly_one_branch,
                per_source_cap_refuses_the_sixth_branch_and_keeps_the_refusal,
                per_spec_cap_refuses_branches_beyond_the_limit,
                depth_cap_refuses_a_branch_nested_deeper_than_allowed,
                cooldown_refuses_a_second_branch_until_it_has_passed,
                consecutive_diagnostic_failures_refuse_further_diagnostics,
                failed_branch_is_atomic_and_leaves_nothing,
                list_filters_by_spec_source_status_and_kind,
                random_report_sequences_never_exceed_any_limit,
            ]
        );
    };
}

/// Runs the whole [`AccessStore`](crate::AccessStore) suite against an adapter. The factory
/// yields `Arc<S>` with `S: AccessStore`.
#[macro_export]
macro_rules! access_store_suite {
    ($factory:expr) => {
        $crate::__omoi_suite!(
            access_store,
            $factory,
            [
                created_key_is_found_by_hash_and_listed_by_project,
                revoked_key_keeps_its_first_revocation_time,
                duplicate_or_invalid_keys_are_refused_storing_nothing,
                an_entity_has_one_owner_that_another_project_cannot_take,
                owned_by_lists_a_projects_entities_in_assignment_order,
            ]
        );
    };
}
