//! The SQLite backend of [`crate::journeys::Journeys`].

#![allow(unused_variables)]

use siyu_domain::Millis;

use crate::journeys::*;
use crate::sqlite::SqliteStore;
use crate::{Result, TenantId};

impl Journeys for SqliteStore {
    fn put_journey(
        &self,
        tenant: TenantId,
        name: &str,
        definition: &str,
        now: Millis,
    ) -> Result<i64> {
        todo!("issue 13: journeys store")
    }

    fn journeys(&self, tenant: TenantId) -> Result<Vec<StoredJourney>> {
        todo!("issue 13: journeys store")
    }

    fn journey_version(
        &self,
        tenant: TenantId,
        name: &str,
        version: i64,
    ) -> Result<Option<String>> {
        todo!("issue 13: journeys store")
    }

    fn set_journey_paused(
        &self,
        tenant: TenantId,
        name: &str,
        paused: bool,
        now: Millis,
    ) -> Result<bool> {
        todo!("issue 13: journeys store")
    }

    fn journey_ids(&self, tenant: TenantId) -> Result<JourneyIds> {
        todo!("issue 13: journeys store")
    }

    fn commit_runs(&self, tenant: TenantId, batch: &RunBatch<'_>) -> Result<()> {
        todo!("issue 13: journeys store")
    }

    fn due_runs(&self, tenant: TenantId, now: Millis, limit: usize) -> Result<Vec<StoredRun>> {
        todo!("issue 13: journeys store")
    }

    fn next_wake(&self, tenant: TenantId) -> Result<Option<Millis>> {
        todo!("issue 13: journeys store")
    }

    fn runs_of(&self, tenant: TenantId, fans: &[i64], open_only: bool) -> Result<Vec<StoredRun>> {
        todo!("issue 13: journeys store")
    }

    fn run(&self, tenant: TenantId, id: i64) -> Result<Option<StoredRun>> {
        todo!("issue 13: journeys store")
    }

    fn run_history(&self, tenant: TenantId, run: i64) -> Result<Vec<StoredRunEvent>> {
        todo!("issue 13: journeys store")
    }

    fn step_counts(&self, tenant: TenantId, journey: &str) -> Result<Vec<StepCount>> {
        todo!("issue 13: journeys store")
    }

    fn run_counts(&self, tenant: TenantId, journey: &str) -> Result<Vec<RunCount>> {
        todo!("issue 13: journeys store")
    }

    fn variants(&self, tenant: TenantId, journey: &str) -> Result<Vec<StoredVariant>> {
        todo!("issue 13: journeys store")
    }

    fn fan_states(&self, tenant: TenantId, fans: &[i64]) -> Result<Vec<StoredFanState>> {
        todo!("issue 13: journeys store")
    }

    fn fan_sends(&self, tenant: TenantId, fans: &[i64], day: i32) -> Result<Vec<FanSends>> {
        todo!("issue 13: journeys store")
    }

    fn outbox_due(
        &self,
        tenant: TenantId,
        channel: &str,
        now: Millis,
        limit: usize,
    ) -> Result<Vec<StoredOutbox>> {
        todo!("issue 13: journeys store")
    }

    fn outbox_next_at(&self, tenant: TenantId, channel: &str) -> Result<Option<Millis>> {
        todo!("issue 13: journeys store")
    }

    fn settle_outbox(&self, tenant: TenantId, settled: &[Settle]) -> Result<()> {
        todo!("issue 13: journeys store")
    }

    fn outbox(&self, tenant: TenantId, filter: &OutboxFilter<'_>) -> Result<Vec<StoredOutbox>> {
        todo!("issue 13: journeys store")
    }

    fn retry_dead(&self, tenant: TenantId, ids: Option<&[i64]>, now: Millis) -> Result<usize> {
        todo!("issue 13: journeys store")
    }

    fn tasks(&self, tenant: TenantId, filter: &TaskFilter<'_>) -> Result<Vec<StoredTask>> {
        todo!("issue 13: journeys store")
    }

    fn task(&self, tenant: TenantId, id: i64) -> Result<Option<StoredTask>> {
        todo!("issue 13: journeys store")
    }

    fn update_task(
        &self,
        tenant: TenantId,
        id: i64,
        change: &TaskChange,
        now: Millis,
    ) -> Result<Option<StoredTask>> {
        todo!("issue 13: journeys store")
    }

    fn wake_held(&self, tenant: TenantId, journey: &str, now: Millis) -> Result<usize> {
        todo!("issue 13: journeys store")
    }

    fn outbox_counts(&self, tenant: TenantId, journey: &str) -> Result<Vec<OutboxCount>> {
        todo!("issue 13: journeys store")
    }
}
