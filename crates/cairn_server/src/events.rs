//! Live updates: every change to a run is published to every server's subscribers, and
//! `GET /api/v1/events` streams them as server-sent events, filtered by entity, project or run.
//! The UI refetches what it shows of a run when an event names it, and never whole histories.
//!
//! On a store that several servers share (PostgreSQL), an event goes out through the store's
//! notices (LISTEN/NOTIFY) and comes back to every server, this one included, so a browser sees
//! the change whichever server took the write. On the embedded store the events stay in the
//! process. A subscriber that may have missed events gets `resync`, and refetches what it shows.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use cairn_store::Notices;
use cairn_types::api::{RunEvent, RunInfo, RunState};
use cairn_types::{RunPath, Timestamp};
use futures_util::Stream;
use serde::Deserialize;
use tokio::sync::broadcast;

use crate::AppState;
use crate::error::QueryParams;

/// Events kept for subscribers that fall behind before they are told to resync.
pub const CHANNEL_CAPACITY: usize = 4096;

/// The kind of the event that tells subscribers they may have missed some.
const RESYNC: &str = "resync";

/// Where events go: this process's subscribers, through the store's notices when it has them.
#[derive(Clone)]
pub struct Hub {
    local: broadcast::Sender<RunEvent>,
    shared: Option<Arc<dyn Notices>>,
}

impl Hub {
    /// A hub for this process alone, or shared through `notices`, whose events it starts
    /// listening to.
    pub fn new(notices: Option<Arc<dyn Notices>>) -> Hub {
        let local = broadcast::channel(CHANNEL_CAPACITY).0;
        if let Some(notices) = &notices {
            let to = local.clone();
            notices.listen(Box::new(move |payload| {
                let event = match payload {
                    Some(payload) => match serde_json::from_str::<RunEvent>(&payload) {
                        Ok(event) => event,
                        Err(e) => {
                            tracing::warn!("an event from another server is unreadable ({e}): {payload}");
                            return;
                        }
                    },
                    None => resync_event(),
                };
                let _ = to.send(event);
            }));
        }
        Hub { local, shared: notices }
    }

    pub fn send(&self, event: RunEvent) {
        match &self.shared {
            Some(notices) => notices.notify(serde_json::to_string(&event).expect("events serialize")),
            // Nobody listening is fine.
            None => {
                let _ = self.local.send(event);
            }
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<RunEvent> {
        self.local.subscribe()
    }
}

fn resync_event() -> RunEvent {
    RunEvent { kind: RESYNC.into(), entity: String::new(), project: String::new(), run_id: String::new(), state: None, history_offset: None, time: Timestamp::now() }
}

pub fn publish(state: &AppState, kind: &str, path: &RunPath, run_state: Option<RunState>, history_offset: Option<u64>) {
    state.events.send(RunEvent {
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
    caller: crate::auth::Caller,
    QueryParams(query): QueryParams<EventsQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, crate::error::ApiError> {
    // A stream of one entity's runs needs read access there; every stream carries only events
    // of runs the caller may read.
    if let Some(entity) = &query.entity {
        state.authorize(&caller, entity, query.project.as_deref(), crate::auth::Need::Read).await?;
    }
    let receiver = state.events.subscribe();
    let events = futures_util::stream::unfold((receiver, query, state, caller), |(mut receiver, query, state, caller)| async move {
        loop {
            match receiver.recv().await {
                Ok(event) if event.kind == RESYNC => {
                    return Some((Ok(Event::default().event("resync").data("0")), (receiver, query, state, caller)));
                }
                Ok(event) if query.matches(&event) => {
                    // The caller as they are now (looked up at most once a second): a revoked
                    // key or a sign-out ends the stream, a lost role stops its events.
                    let now = state.caller_now(&caller).await?;
                    if !state.can_read(&now, &event.entity, &event.project).await {
                        continue;
                    }
                    let data = serde_json::to_string(&event).expect("events serialize");
                    return Some((Ok(Event::default().event("run").data(data)), (receiver, query, state, caller)));
                }
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    let event = Event::default().event("resync").data(missed.to_string());
                    return Some((Ok(event), (receiver, query, state, caller)));
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    // Fused, like every streamed body: polling it after its end must not panic.
    Ok(Sse::new(futures_util::StreamExt::fuse(events)).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
