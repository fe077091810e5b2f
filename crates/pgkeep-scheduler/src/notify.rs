//! Notifications — a failed (or, when asked, a successful) run, an alert raised or cleared — sent
//! to a webhook (a JSON POST, retried with backoff, each attempt with a timeout) and/or a shell
//! command (the same JSON on its stdin). The webhook's URL is never shown beyond its scheme and
//! host: Slack's carry their secret in the path.

use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use http_body_util::{BodyExt, Full};
use pgkeep_core::{ConfigError, NotifyConfig};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Event {
    /// A run failed (or timed out, was interrupted, died).
    JobFailed,
    /// A run succeeded (sent only with `on-success = true`).
    JobSucceeded,
    /// A condition started.
    AlertRaised,
    /// A condition cleared.
    AlertCleared,
}

impl Event {
    fn as_str(self) -> &'static str {
        match self {
            Event::JobFailed => "job-failed",
            Event::JobSucceeded => "job-succeeded",
            Event::AlertRaised => "alert-raised",
            Event::AlertCleared => "alert-cleared",
        }
    }
}

/// One notification: the JSON body of the webhook and the command's stdin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// What happened.
    pub event: Event,
    /// The job, for a run.
    pub job: Option<String>,
    /// The alert's key (`overdue:logical`, `archiving-stuck`), for an alert.
    pub alert: Option<String>,
    /// The cluster's name in the repository.
    pub cluster: String,
    /// This machine's name.
    pub host: String,
    /// When.
    pub at: DateTime<Utc>,
    /// One line for a person.
    pub summary: String,
    /// The error, in full.
    pub detail: Option<String>,
}

impl Notification {
    /// The JSON body, with a `text` line that Slack's incoming webhooks show as it is.
    pub fn body(&self) -> serde_json::Value {
        let mut text = format!("[pgkeep {}/{}] {}", self.host, self.cluster, self.summary);
        if let Some(detail) = &self.detail {
            text.push('\n');
            text.push_str(detail);
        }
        let mut body = serde_json::to_value(self).expect("a notification serializes");
        body["text"] = text.into();
        body
    }
}

/// A notification that could not be delivered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotifyError {
    /// The webhook failed every attempt (or answered a client error, which retrying won't mend).
    #[error(
        "webhook {target}: {cause} (after {attempts} attempt(s))\n  fix: check [notify] webhook and that this machine reaches it"
    )]
    Webhook {
        /// Scheme and host of the URL.
        target: String,
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        cause: String,
    },
    /// The command failed.
    #[error(
        "command `{command}`: {cause}\n  fix: run it by hand with a notification's JSON on its stdin"
    )]
    Command {
        /// The command.
        command: String,
        /// Why.
        cause: String,
    },
}

#[derive(Debug, Clone)]
struct Webhook {
    url: hyper::Uri,
    timeout: Duration,
    attempts: u32,
    backoff: Duration,
}

/// The checked `[notify]` settings.
#[derive(Debug, Clone, Default)]
pub struct Notifier {
    webhook: Option<Webhook>,
    command: Option<String>,
    /// Notify after successful runs too.
    pub on_success: bool,
}

fn invalid(origin: &str, key: &str, problem: String, fix: &str) -> ConfigError {
    ConfigError::Invalid {
        origin: origin.to_string(),
        key: format!("notify.{key}"),
        problem,
        fix: fix.to_string(),
    }
}

impl Notifier {
    /// Checks `[notify]`; `origin` names the file in errors.
    pub fn from_config(config: &NotifyConfig, origin: &str) -> Result<Notifier, ConfigError> {
        let timeout = match &config.webhook_timeout {
            None => Duration::from_secs(10),
            Some(t) => pgkeep_core::parse_duration(t)
                .ok()
                .filter(|d| (Duration::from_secs(1)..=Duration::from_secs(300)).contains(d))
                .ok_or_else(|| {
                    invalid(
                        origin,
                        "webhook-timeout",
                        format!("`{t}` is not a duration from 1s to 5m"),
                        "give e.g. 10s (the default)",
                    )
                })?,
        };
        let attempts = config.webhook_attempts.unwrap_or(5);
        if !(1..=20).contains(&attempts) {
            return Err(invalid(
                origin,
                "webhook-attempts",
                format!("{attempts} is out of range"),
                "give 1 to 20 (default 5)",
            ));
        }
        let webhook = match &config.webhook {
            None => None,
            Some(url) => {
                let uri: hyper::Uri = url.parse().map_err(|_| {
                    invalid(
                        origin,
                        "webhook",
                        "the value is not a URL".into(),
                        "give an http:// or https:// URL",
                    )
                })?;
                if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
                    return Err(invalid(
                        origin,
                        "webhook",
                        format!("`{}` is not an http:// or https:// URL", target(&uri)),
                        "give an http:// or https:// URL",
                    ));
                }
                Some(Webhook {
                    url: uri,
                    timeout,
                    attempts,
                    backoff: Duration::from_secs(1),
                })
            }
        };
        Ok(Notifier {
            webhook,
            command: config.command.clone(),
            on_success: config.on_success,
        })
    }

    /// Whether nothing is configured.
    pub fn is_empty(&self) -> bool {
        self.webhook.is_none() && self.command.is_none()
    }

    /// Sends `n` to every configured channel; one error per channel that failed.
    pub async fn send(&self, n: &Notification) -> Vec<NotifyError> {
        let body = n.body().to_string();
        let mut errors = Vec::new();
        if let Some(hook) = &self.webhook
            && let Err(e) = post(hook, &body).await
        {
            errors.push(e);
        }
        if let Some(command) = &self.command {
            let timeout = self
                .webhook
                .as_ref()
                .map_or(Duration::from_secs(10), |w| w.timeout);
            if let Err(e) = run_command(command, n, &body, timeout).await {
                errors.push(e);
            }
        }
        errors
    }
}

/// Scheme and host (and port) of a URL: what errors may show.
fn target(uri: &hyper::Uri) -> String {
    format!(
        "{}://{}",
        uri.scheme_str().unwrap_or("?"),
        uri.authority()
            .map_or("?", |a| a.as_str().rsplit('@').next().unwrap_or("?"))
    )
}

async fn post(hook: &Webhook, body: &str) -> Result<(), NotifyError> {
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_native_roots()
        .map_err(|e| NotifyError::Webhook {
            target: target(&hook.url),
            attempts: 0,
            cause: format!("no TLS root certificates: {e}"),
        })?
        .https_or_http()
        .enable_http1()
        .build();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build::<_, Full<Bytes>>(https);
    let mut backoff = hook.backoff;
    let mut cause = String::new();
    for attempt in 1..=hook.attempts {
        let request = hyper::Request::post(hook.url.clone())
            .header("content-type", "application/json")
            .header("user-agent", concat!("pgkeep/", env!("CARGO_PKG_VERSION")))
            .body(Full::new(Bytes::from(body.to_string())))
            .expect("a valid request");
        let retry = match tokio::time::timeout(hook.timeout, client.request(request)).await {
            Err(_) => {
                cause = format!(
                    "no answer within {}",
                    pgkeep_core::format_duration(hook.timeout)
                );
                true
            }
            Ok(Err(e)) => {
                cause = format!("cannot send: {}", error_chain(&e));
                true
            }
            Ok(Ok(response)) => {
                let status = response.status();
                let _ = tokio::time::timeout(hook.timeout, response.into_body().collect()).await;
                if status.is_success() {
                    return Ok(());
                }
                cause = format!("answered {status}");
                status.is_server_error() || status.as_u16() == 429
            }
        };
        if !retry {
            return Err(NotifyError::Webhook {
                target: target(&hook.url),
                attempts: attempt,
                cause,
            });
        }
        if attempt < hook.attempts {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
    }
    Err(NotifyError::Webhook {
        target: target(&hook.url),
        attempts: hook.attempts,
        cause,
    })
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

async fn run_command(
    command: &str,
    n: &Notification,
    body: &str,
    timeout: Duration,
) -> Result<(), NotifyError> {
    let failed = |cause: String| NotifyError::Command {
        command: command.to_string(),
        cause,
    };
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .env("PGKEEP_EVENT", n.event.as_str())
        .env("PGKEEP_JOB", n.job.as_deref().unwrap_or(""))
        .env("PGKEEP_ALERT", n.alert.as_deref().unwrap_or(""))
        .env("PGKEEP_SUMMARY", &n.summary)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| failed(e.to_string()))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A command that does not read its stdin is fine.
        let _ = stdin.write_all(body.as_bytes()).await;
    }
    let out = tokio::time::timeout(timeout, child.wait_with_output())
        .await
        .map_err(|_| {
            failed(format!(
                "still running after {}",
                pgkeep_core::format_duration(timeout)
            ))
        })?
        .map_err(|e| failed(e.to_string()))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr
            .lines()
            .rev()
            .take(5)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        return Err(failed(format!("{}: {}", out.status, tail.join(" / "))));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
    use tokio::net::TcpListener;

    fn note() -> Notification {
        Notification {
            event: Event::JobFailed,
            job: Some("nightly".into()),
            alert: None,
            cluster: "main".into(),
            host: "db1".into(),
            at: Utc::now(),
            summary: "job nightly failed".into(),
            detail: Some("pg_dump: error".into()),
        }
    }

    fn notifier(url: &str, attempts: u32, timeout: &str) -> Notifier {
        let config = NotifyConfig {
            webhook: Some(url.into()),
            webhook_timeout: Some(timeout.into()),
            webhook_attempts: Some(attempts),
            ..NotifyConfig::default()
        };
        let mut n = Notifier::from_config(&config, "f.toml").unwrap();
        if let Some(w) = &mut n.webhook {
            w.backoff = Duration::from_millis(50);
        }
        n
    }

    /// A listener answering each request with the next status of `statuses` (`0`: no answer);
    /// returns its URL and the bodies it got.
    async fn listener(
        statuses: Vec<u16>,
    ) -> (String, tokio::sync::mpsc::UnboundedReceiver<String>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/services/T0/SECRET", l.local_addr().unwrap());
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            for status in statuses {
                let (stream, _) = l.accept().await.unwrap();
                let mut reader = BufReader::new(stream);
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    reader.read_line(&mut line).await.unwrap();
                    if line == "\r\n" || line.is_empty() {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap();
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).await.unwrap();
                tx.send(String::from_utf8(body).unwrap()).unwrap();
                if status == 0 {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    continue;
                }
                let answer = format!(
                    "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                reader
                    .into_inner()
                    .write_all(answer.as_bytes())
                    .await
                    .unwrap();
            }
        });
        (url, rx)
    }

    #[tokio::test]
    async fn a_server_error_is_retried_and_the_body_carries_a_text_line() {
        let (url, mut bodies) = listener(vec![500, 200]).await;
        assert!(notifier(&url, 3, "2s").send(&note()).await.is_empty());
        let first: serde_json::Value = serde_json::from_str(&bodies.recv().await.unwrap()).unwrap();
        assert_eq!(first["event"], "job-failed");
        assert_eq!(first["job"], "nightly");
        assert_eq!(
            first["text"],
            "[pgkeep db1/main] job nightly failed\npg_dump: error"
        );
        assert!(bodies.recv().await.is_some(), "retried");
    }

    #[tokio::test]
    async fn a_client_error_is_not_retried_and_the_secret_path_is_not_shown() {
        let (url, mut bodies) = listener(vec![400, 200]).await;
        let errors = notifier(&url, 3, "2s").send(&note()).await;
        let e = errors[0].to_string();
        assert!(e.contains("400") && e.contains("after 1 attempt(s)"), "{e}");
        assert!(!e.contains("SECRET"), "{e}");
        bodies.recv().await.unwrap();
        assert!(bodies.try_recv().is_err(), "not retried");
    }

    #[tokio::test]
    async fn no_answer_times_out_and_a_closed_port_fails_after_every_attempt() {
        let (url, _bodies) = listener(vec![0, 0]).await;
        let started = std::time::Instant::now();
        let e = notifier(&url, 2, "1s").send(&note()).await[0].to_string();
        assert!(
            e.contains("no answer within 1s") && e.contains("after 2 attempt(s)"),
            "{e}"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
        let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", closed.local_addr().unwrap());
        drop(closed);
        let e = notifier(&url, 2, "1s").send(&note()).await[0].to_string();
        assert!(
            e.contains("cannot send") && e.contains("after 2 attempt(s)"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn the_command_gets_the_body_and_the_environment_and_its_failure_is_quoted() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("got");
        let command = format!(
            "cat > {0}; echo \"$PGKEEP_EVENT|$PGKEEP_JOB|$PGKEEP_SUMMARY\" >> {0}",
            out.display()
        );
        let n = Notifier::from_config(
            &NotifyConfig {
                command: Some(command),
                ..NotifyConfig::default()
            },
            "f.toml",
        )
        .unwrap();
        assert!(n.send(&note()).await.is_empty());
        let got = std::fs::read_to_string(&out).unwrap();
        assert!(got.contains("\"summary\":\"job nightly failed\""), "{got}");
        assert!(
            got.ends_with("job-failed|nightly|job nightly failed\n"),
            "{got}"
        );
        let failing = "echo mail server down >&2; exit 3".to_string();
        let n = Notifier::from_config(
            &NotifyConfig {
                command: Some(failing),
                ..NotifyConfig::default()
            },
            "f.toml",
        )
        .unwrap();
        let e = n.send(&note()).await[0].to_string();
        assert!(
            e.contains("exit status: 3") && e.contains("mail server down"),
            "{e}"
        );
    }

    #[test]
    fn notify_settings_are_checked() {
        for (config, key) in [
            (
                NotifyConfig {
                    webhook: Some("ftp://x/y".into()),
                    ..NotifyConfig::default()
                },
                "notify.webhook",
            ),
            (
                NotifyConfig {
                    webhook_timeout: Some("1h".into()),
                    ..NotifyConfig::default()
                },
                "notify.webhook-timeout",
            ),
            (
                NotifyConfig {
                    webhook_attempts: Some(0),
                    ..NotifyConfig::default()
                },
                "notify.webhook-attempts",
            ),
        ] {
            let e = Notifier::from_config(&config, "f.toml")
                .unwrap_err()
                .to_string();
            assert!(
                e.contains(&format!("`{key}`")) && e.contains("fix: "),
                "{e}"
            );
        }
    }
}
