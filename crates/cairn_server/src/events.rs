//! Live updates: every change to a run is published on a broadcast channel, and
//! `GET /api/v1/events` streams them as server-sent events, filtered by entity, project or run.
//! The UI refetches what it shows of a run when an event names it, and never whole histories.
//!
//! The channel lives in one server process. Several servers behind a load balancer each see only
//! their own changes; PostgreSQL's LISTEN/NOTIFY is the way to share them.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use cairn_types::api::{RunEvent, RunInfo, RunState};
use cairn_types::{RunPath, Timestamp};
use futures_util::Stream;
use serde::Deserialize;
use tokio::sync::broadcast;

use crate::AppState;
use crate::error::QueryParams;

/// Events kept for subscribers that fall behind before they are told to resync.
pub const CHANNEL_CAPACITY: usize = 4096;

pub fn channel() -> broadcast::Sender<RunEvent> {
    broadcast::channel(CHANNEL_CAPACITY).0
}

pub fn publish(state: &AppState, kind: &str, path: &RunPath, run_state: Option<RunState>, history_offset: Option<u64>) {
    // Nobody listening is fine.
    let _ = state.events.send(RunEvent {
        kind: kind.to_owned(),
        entity: path.entity.clone(),
        project: path.project.clone(),
        run_id: path.run_id.clone(),
        state: run_state,
        history_offset,
        time: Timestamp::now(),
    });
}

pub fn publish_run(state: &AppState, kind: &str, run: &RunInfo) {
    publish(state, kind, &run.path(), Some(run.state), Some(run.offsets.history));
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    pub entity: Option<String>,
    pub project: Option<String>,
    pub run_id: Option<String>,
}

impl EventsQuery {
    fn matches(&self, event: &RunEvent) -> bool {
        self.entity.as_ref().is_none_or(|e| *e == event.entity)
            && self.project.as_ref().is_none_or(|p| *p == event.project)
            && self.run_id.as_ref().is_none_or(|r| *r == event.run_id)
    }
}

#[utoipa::path(get, path = "/api/v1/events", tag = "runs",
    params(
        ("entity" = Option<String>, Query, description = "Only runs of this entity"),
        ("project" = Option<String>, Query, description = "Only runs of this project"),
        ("run_id" = Option<String>, Query, description = "Only this run"),
    ),
    responses((status = 200, description = "Server-sent events: each `data:` is a RunEvent as JSON; an event named `resync` means some were missed", content_type = "text/event-stream")))]
pub async fn stream(
    State(state): State<AppState>,
    QueryParams(query): QueryParams<EventsQuery>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let receiver = state.events.subscribe();
    let events = futures_util::stream::unfold((receiver, query), |(mut receiver, query)| async move {
        loop {
            match receiver.recv().await {
                Ok(event) if query.matches(&event) => {
                    let data = serde_json::to_string(&event).expect("events serialize");
                    return Some((Ok(Event::default().event("run").data(data)), (receiver, query)));
                }
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    let event = Event::default().event("resync").data(missed.to_string());
                    return Some((Ok(event), (receiver, query)));
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    // Fused, like every streamed body: polling it after its end must not panic.
    Sse::new(futures_util::StreamExt::fuse(events)).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
