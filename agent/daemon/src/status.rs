//! `postwarden-agent status`: what the state folder says about the running agent.

use std::fmt::Write as _;

use postwarden_queue::{Limits, Queue};
use serde::Serialize;

use crate::state::{
    ContactFile, QueueStatus, StateDir, StatusFile, CONTACT_FILE, QUEUE_FILE, QUEUE_STATUS_FILE,
    STATUS_FILE,
};

/// Everything `status` shows (`--format json` prints it as is).
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub schema: &'static str,
    pub state_dir: String,
    pub enrolled: Option<EnrolledStatus>,
    pub contact: Option<ContactFile>,
    pub queue: Option<QueueStatus>,
    pub agent: Option<StatusFile>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EnrolledStatus {
    pub server: String,
    pub device_id: String,
    pub enrolled_at: String,
    pub users: Vec<String>,
}

/// Reads the state folder; a missing part is `None`, a corrupt one an error naming the file.
pub fn read(state: &StateDir) -> Result<Status, String> {
    let enrolled = if state.is_enrolled() {
        let e = state.enrollment().map_err(|e| e.to_string())?;
        Some(EnrolledStatus {
            server: e.server,
            device_id: e.device_id.0,
            enrolled_at: e.enrolled_at,
            users: e.users,
        })
    } else {
        None
    };
    let queue_path = state.file(QUEUE_FILE);
    // The running agent holds the queue exclusively and publishes its depth in queue.json;
    // a stopped agent's queue is read directly.
    let queue = if !queue_path.exists() {
        None
    } else {
        match Queue::open(&queue_path, Limits::default()) {
            Ok(q) => {
                let s = q.stats().map_err(|e| e.to_string())?;
                Some(QueueStatus::of(&s, time::OffsetDateTime::now_utc()))
            }
            Err(postwarden_queue::QueueError::Busy { .. }) => state
                .read_json::<QueueStatus>(QUEUE_STATUS_FILE)
                .map_err(|e| e.to_string())?,
            Err(e) => return Err(e.to_string()),
        }
    };
    Ok(Status {
        schema: "postwarden.status/v1",
        state_dir: state.path().display().to_string(),
        enrolled,
        contact: state.read_json(CONTACT_FILE).map_err(|e| e.to_string())?,
        queue,
        agent: state.read_json(STATUS_FILE).map_err(|e| e.to_string())?,
    })
}

/// The text form.
pub fn render(s: &Status) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "State folder: {}", s.state_dir);
    match &s.enrolled {
        Some(e) => {
            let _ = writeln!(
                out,
                "Enrolled to:  {} as device {} (since {})",
                e.server, e.device_id, e.enrolled_at
            );
        }
        None => {
            let _ = writeln!(out, "Enrolled to:  (not enrolled)");
        }
    }
    if let Some(c) = &s.contact {
        let _ = writeln!(
            out,
            "Last contact: {}",
            c.last_contact_at.as_deref().unwrap_or("never")
        );
        if let Some(e) = &c.last_error {
            let _ = writeln!(
                out,
                "Last error:   {} ({})",
                e,
                c.last_error_at.as_deref().unwrap_or("")
            );
        }
    }
    match &s.agent {
        Some(a) => {
            match &a.profile {
                Some(p) => {
                    let _ = writeln!(
                        out,
                        "Profile:      {} v{}{} ({})",
                        p.id,
                        p.version,
                        p.serial
                            .map(|s| format!(", bundle serial {s}"))
                            .unwrap_or_default(),
                        p.source
                    );
                }
                None => {
                    let _ = writeln!(
                        out,
                        "Profile:      (none yet: waiting for the first bundle)"
                    );
                }
            }
            let _ = writeln!(
                out,
                "Mode:         {} (status written {})",
                a.mode, a.updated_at
            );
        }
        None => {
            let _ = writeln!(out, "Agent:        has not run yet");
        }
    }
    if let Some(q) = &s.queue {
        let _ = writeln!(
            out,
            "Queue:        {} item(s) waiting{}{}",
            q.depth,
            q.oldest_at
                .as_deref()
                .map(|t| format!(", oldest from {t}"))
                .unwrap_or_default(),
            if q.merged_total + q.dropped_total > 0 {
                format!(
                    " ({} folded, {} dropped while full)",
                    q.merged_total, q.dropped_total
                )
            } else {
                String::new()
            }
        );
    }
    if let Some(a) = &s.agent {
        if !a.users.is_empty() {
            let _ = writeln!(out, "\nLast findings:");
        }
        for (user, u) in &a.users {
            let _ = writeln!(
                out,
                "  {} {user} (checked {})",
                if u.compliant { "✓" } else { "✗" },
                u.checked_at
            );
            for (client, counts) in &u.clients {
                let list: Vec<String> = counts.iter().map(|(k, v)| format!("{v} {k}")).collect();
                let _ = writeln!(out, "      {client}: {}", list.join(", "));
            }
        }
        for (user, e) in &a.errors {
            let _ = writeln!(out, "  ✗ {user}: cannot be enforced: {e}");
        }
        if !a.contested.is_empty() {
            let _ = writeln!(
                out,
                "\nContested settings (left alone until the time shown or the next bundle):"
            );
            for c in &a.contested {
                let _ = writeln!(
                    out,
                    "  {} {} {} [{}]: repaired {} times in the last hour, held until {}{}",
                    c.user,
                    c.client,
                    c.setting,
                    c.scope,
                    c.repairs_in_last_hour,
                    c.held_until,
                    c.changed_by
                        .as_deref()
                        .map(|b| format!("; changed by {b}"))
                        .unwrap_or_default()
                );
            }
        }
    }
    out
}
