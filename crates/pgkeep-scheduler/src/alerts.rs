//! Alerts: each condition is sent once when it starts and once when it clears, not at every check.
//! The active ones live in the state file, so a restart neither repeats nor forgets them.

use chrono::{DateTime, Utc};
use pgkeep_core::Settings;

use crate::error::SchedulerError;
use crate::history::{ActiveAlert, StateFile};
use crate::job::Jobs;
use crate::notify::{Event, Notification};
use crate::watch::Condition;

/// Compares `now_holding` with the active alerts: raises the new ones, clears the ones that no
/// longer hold, records both, and returns the notifications to send.
pub fn transitions(
    settings: &Settings,
    jobs: &Jobs,
    now_holding: &[Condition],
    now: DateTime<Utc>,
) -> Result<Vec<Notification>, SchedulerError> {
    let state = StateFile::new(&settings.state_dir, jobs.settings.history_runs);
    let host = pgkeep_core::host_name();
    let note = |event: Event, key: &str, summary: String| Notification {
        event,
        job: None,
        alert: Some(key.to_string()),
        cluster: settings.cluster.clone(),
        host: host.clone(),
        at: now,
        summary,
        detail: None,
    };
    state.update(|s| {
        let mut out = Vec::new();
        for c in now_holding {
            if !s.alerts.contains_key(&c.key) {
                s.alerts.insert(
                    c.key.clone(),
                    ActiveAlert {
                        since: now,
                        summary: c.summary.clone(),
                    },
                );
                out.push(note(Event::AlertRaised, &c.key, c.summary.clone()));
            }
        }
        let cleared: Vec<String> = s
            .alerts
            .keys()
            .filter(|k| !now_holding.iter().any(|c| &c.key == *k))
            .cloned()
            .collect();
        for key in cleared {
            if let Some(alert) = s.alerts.remove(&key) {
                out.push(note(
                    Event::AlertCleared,
                    &key,
                    format!("cleared: {}", alert.summary),
                ));
            }
        }
        out
    })
}
