//! Delivery of run alerts (`run.alert`) to the server's targets: a Slack-compatible incoming
//! webhook (a JSON POST) and email over SMTP (STARTTLS whenever the mail server offers it).
//!
//! The client only writes the alert into its run's log; the store records it as `pending`, and
//! this loop delivers it, off the request path, with retries and growing pauses. A target that
//! fails is logged and retried; the training program never waits for it and never sees it.

use std::time::Duration;

use cairn_types::api::AlertInfo;
use cairn_types::{RunPath, Timestamp};

use crate::AppState;

/// Attempts before an alert is given up as `failed`.
pub const MAX_ATTEMPTS: u32 = 6;

/// Where alerts go.
#[derive(Debug, Clone, Default)]
pub struct AlertTargets {
    /// A Slack-compatible incoming webhook: receives `{"text": ..., "attachments": [...]}`.
    pub webhook_url: Option<String>,
    pub smtp: Option<SmtpTarget>,
    /// The server's public address, for links to the run.
    pub public_url: Option<String>,
}

#[derive(Debug, Clone)]
pub struct SmtpTarget {
    pub host: String,
    pub port: u16,
    pub from: String,
    pub to: Vec<String>,
    pub credentials: Option<(String, String)>,
}

impl AlertTargets {
    pub fn is_empty(&self) -> bool {
        self.webhook_url.is_none() && self.smtp.is_none()
    }
}

fn run_link(targets: &AlertTargets, path: &RunPath) -> Option<String> {
    targets.public_url.as_ref().map(|base| format!("{}/{}/{}/runs/{}", base.trim_end_matches('/'), path.entity, path.project, path.run_id))
}

/// A webhook URL as it may be shown: its path holds the secret (Slack's token), so only the
/// scheme and host are kept.
fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => format!("{scheme}://{}/…", rest.split('/').next().unwrap_or("")),
        None => "the webhook".to_owned(),
    }
}

fn post_webhook(url: &str, path: &RunPath, run_name: &str, alert: &AlertInfo, link: Option<&str>) -> Result<(), String> {
    let color = match alert.level {
        cairn_types::api::AlertLevel::Info => "#2eb67d",
        cairn_types::api::AlertLevel::Warn => "#ecb22e",
        cairn_types::api::AlertLevel::Error => "#e01e5a",
    };
    let run = match link {
        Some(link) => format!("<{link}|{run_name}> ({path})"),
        None => format!("{run_name} ({path})"),
    };
    let body = serde_json::json!({
        "text": format!("[{}] {}: {}", alert.level.as_str(), run, alert.title),
        "attachments": [{"color": color, "title": alert.title, "text": alert.text, "footer": format!("cairn · {path}"), "ts": alert.time.micros() / 1_000_000}],
        "cairn": {"run": path.to_string(), "run_name": run_name, "title": alert.title, "text": alert.text, "level": alert.level.as_str(), "time": alert.time},
    });
    let agent: ureq::Agent = ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(10))).http_status_as_error(false).build().into();
    let mut response = agent
        .post(url)
        .header("Content-Type", "application/json")
        .send(serde_json::to_vec(&body).expect("alerts serialize").as_slice())
        .map_err(|e| format!("webhook {}: {}", redact(url), e.to_string().replace(url, &redact(url))))?;
    let status = response.status().as_u16();
    if (200..300).contains(&status) {
        return Ok(());
    }
    let text = response.body_mut().read_to_string().unwrap_or_default();
    Err(format!("webhook {} answered HTTP {status}: {}", redact(url), text.chars().take(200).collect::<String>()))
}

fn send_email(smtp: &SmtpTarget, path: &RunPath, run_name: &str, alert: &AlertInfo, link: Option<&str>) -> Result<(), String> {
    use lettre::message::{Mailbox, header::ContentType};
    use lettre::transport::smtp::client::{Tls, TlsParameters};
    use lettre::{Message, SmtpTransport, Transport};

    let from: Mailbox = smtp.from.parse().map_err(|e| format!("alert sender {:?}: {e}", smtp.from))?;
    let mut message = Message::builder().from(from).subject(format!("[{}] {} ({run_name})", alert.level.as_str(), alert.title));
    for to in &smtp.to {
        message = message.to(to.parse().map_err(|e| format!("alert recipient {to:?}: {e}"))?);
    }
    let mut body = format!("{}\n\nRun: {run_name} ({path})\nLevel: {}\nTime: {}\n", alert.text, alert.level.as_str(), alert.time);
    if let Some(link) = link {
        body.push_str(&format!("{link}\n"));
    }
    let email = message.header(ContentType::TEXT_PLAIN).body(body).map_err(|e| format!("cannot write the email: {e}"))?;
    let tls = TlsParameters::new(smtp.host.clone()).map_err(|e| format!("TLS settings for {}: {e}", smtp.host))?;
    let mut transport = SmtpTransport::builder_dangerous(smtp.host.as_str()).port(smtp.port).tls(Tls::Opportunistic(tls)).timeout(Some(Duration::from_secs(15)));
    if let Some((user, password)) = &smtp.credentials {
        transport = transport.credentials(lettre::transport::smtp::authentication::Credentials::new(user.clone(), password.clone()));
    }
    transport.build().send(&email).map(|_| ()).map_err(|e| format!("SMTP {}:{}: {e}", smtp.host, smtp.port))
}

/// Delivers one alert to the targets that do not have it yet. Returns every target that has
/// it now, and the errors of those that failed (a retry goes only to them).
pub fn deliver(targets: &AlertTargets, path: &RunPath, run_name: &str, alert: &AlertInfo) -> (Vec<String>, Result<(), String>) {
    let link = run_link(targets, path);
    let mut done = alert.delivered_to.clone();
    let mut errors = Vec::new();
    let mut attempt = |name: &str, send: &dyn Fn() -> Result<(), String>| {
        if done.iter().any(|d| d == name) {
            return;
        }
        match send() {
            Ok(()) => done.push(name.to_owned()),
            Err(e) => errors.push(e),
        }
    };
    if let Some(url) = &targets.webhook_url {
        attempt("webhook", &|| post_webhook(url, path, run_name, alert, link.as_deref()));
    }
    if let Some(smtp) = &targets.smtp {
        attempt("email", &|| send_email(smtp, path, run_name, alert, link.as_deref()));
    }
    (done, if errors.is_empty() { Ok(()) } else { Err(errors.join("; ")) })
}

/// The pause before attempt `attempts + 1`: 1 s, 2 s, 4 s ... at most 5 minutes.
pub fn backoff(attempts: u32) -> Duration {
    Duration::from_secs(1u64 << attempts.min(8)).min(Duration::from_secs(300))
}

/// How long a server holds the alerts it is delivering.
const CLAIM: Duration = Duration::from_secs(120);

/// Delivers due alerts, every `interval`, until the server stops.
pub async fn delivery_loop(state: AppState, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let store = state.store.clone();
        let targets = state.config.alerts.clone();
        let result = tokio::task::spawn_blocking(move || -> Result<(), cairn_types::error::CodedError> {
            // Claimed for longer than a delivery can take (two targets, 15 s each): with several
            // servers, each alert goes out from one of them.
            for (path, run_name, alert) in store.claim_due_alerts(Timestamp::now(), CLAIM, 32)? {
                if targets.is_empty() {
                    store.record_alert_delivery(alert.id, "stored", &[], None, None)?;
                    continue;
                }
                let (done, result) = deliver(&targets, &path, &run_name, &alert);
                match result {
                    Ok(()) => {
                        tracing::info!("alert {:?} of run {path} delivered to {}", alert.title, done.join(" and "));
                        store.record_alert_delivery(alert.id, "delivered", &done, None, None)?;
                    }
                    Err(e) if alert.attempts + 1 >= MAX_ATTEMPTS => {
                        tracing::warn!("alert {:?} of run {path} not delivered after {MAX_ATTEMPTS} attempts: {e}", alert.title);
                        store.record_alert_delivery(alert.id, "failed", &done, Some(e), None)?;
                    }
                    Err(e) => {
                        let pause = backoff(alert.attempts);
                        tracing::warn!("alert {:?} of run {path}: delivery failed, retrying in {}s: {e}", alert.title, pause.as_secs());
                        let next = Timestamp(Timestamp::now().micros() + pause.as_micros() as i64);
                        store.record_alert_delivery(alert.id, "pending", &done, Some(e), Some(next))?;
                    }
                }
            }
            Ok(())
        })
        .await;
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("alert delivery: {}", e.message),
            Err(_) => tracing::warn!("the alert delivery task failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_secrets_are_not_shown() {
        assert_eq!(redact("https://hooks.slack.com/services/T0/B0/secret"), "https://hooks.slack.com/…");
        assert!(!redact("http://127.0.0.1:9/hooks/token").contains("token"));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff(0), Duration::from_secs(1));
        assert_eq!(backoff(3), Duration::from_secs(8));
        assert_eq!(backoff(30), Duration::from_secs(256));
    }
}
