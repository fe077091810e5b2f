//! Retention for people: the expire plan, what `expire --confirm` deleted, pins.

use std::fmt::Write;

use pgkeep_core::{
    ExpirePlan, ExpireReport, HeldLease, LeftoverAction, LeftoverKind, Pin, PinChange, PinOutcome,
    PlannedLeftover,
};

use super::{bytes, when};

/// The expire plan: every backup kept or expired and why, the WAL, the leftovers, the leases and
/// the bytes to free.
pub fn expire_plan(plan: &ExpirePlan) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "expire plan for {} (cluster {}) at {}; days, weeks and months in time zone {}",
        plan.repository,
        plan.cluster,
        when(&plan.now),
        plan.time_zone
    );
    for (kind, policy) in [
        ("logical", &plan.logical_policy),
        ("physical", &plan.physical_policy),
    ] {
        let policy = policy.as_ref().map_or_else(
            || format!("none ([retention.{kind}] is not set): no {kind} backup expires"),
            ToString::to_string,
        );
        let _ = writeln!(out, "  {kind:<9} {policy}");
    }
    backups(&mut out, plan);
    wal(&mut out, plan);
    leftovers(&mut out, &plan.leftovers, &plan.grace);
    leases(&mut out, plan);
    let f = &plan.to_free;
    let _ = writeln!(
        out,
        "\nto free: {} (backups {}, WAL {}, leftovers {})",
        bytes(f.total),
        bytes(f.backups),
        bytes(f.wal),
        bytes(f.leftovers)
    );
    out
}

fn backups(out: &mut String, plan: &ExpirePlan) {
    let _ = writeln!(out, "\nbackups, by end time:");
    if plan.backups.is_empty() {
        let _ = writeln!(out, "  (none)");
    }
    for b in &plan.backups {
        let _ = writeln!(
            out,
            "  {:<6}  {}  {:<8}  ended {}  {:>10}  {}",
            if b.expire { "EXPIRE" } else { "keep" },
            b.id,
            b.kind.to_string(),
            when(&b.end),
            bytes(b.stored_size),
            match b.expire {
                true => "no rule keeps it".to_string(),
                false => b.why.join(", "),
            }
        );
    }
    if !plan.damaged.is_empty() {
        let _ = writeln!(
            out,
            "damaged backups, left alone (expire never deletes a backup whose manifest cannot be used):"
        );
        for d in &plan.damaged {
            let _ = writeln!(out, "  {}  {}", d.id, d.problem);
        }
    }
    for note in &plan.notes {
        let _ = writeln!(out, "note: {note}");
    }
    for b in &plan.future_backups {
        let _ = writeln!(
            out,
            "WARNING: backup {} ({}) ends at {}, more than 5 minutes after now: a clock jumped; `expire --confirm` refuses until the clock or its manifest is corrected, or it is removed by hand",
            b.id,
            b.kind,
            when(&b.end)
        );
    }
}

fn wal(out: &mut String, plan: &ExpirePlan) {
    let w = &plan.wal;
    let _ = write!(out, "\nWAL: ");
    match (&w.left_alone, w.delete.first(), w.delete.last()) {
        (Some(why), _, _) => {
            let _ = writeln!(out, "nothing is deleted: {why}");
        }
        (None, Some(first), Some(last)) => {
            let _ = writeln!(
                out,
                "delete {} file(s), {} ({} to {}), which no kept physical backup needs;",
                w.delete.len(),
                bytes(w.bytes),
                first.name,
                last.name
            );
        }
        _ => {
            let _ = writeln!(out, "nothing to delete: every archived file is needed;");
        }
    }
    let _ = writeln!(
        out,
        "     {} file(s) stay, and {} .history file(s), which always stay",
        w.kept, w.history_files
    );
}

fn leftovers(out: &mut String, leftovers: &[PlannedLeftover], grace: &str) {
    if leftovers.is_empty() {
        return;
    }
    let _ = writeln!(out, "\nleftovers of interrupted runs (grace {grace}):");
    for l in leftovers {
        let what = &l.leftover;
        let fate = match &l.action {
            LeftoverAction::Remove => "removed".to_string(),
            LeftoverAction::Young { removable_after } => format!(
                "left alone: written too recently (removable after {})",
                when(removable_after)
            ),
            LeftoverAction::Leased { lease } => {
                format!("left alone: {} holds it", lease.lease)
            }
            LeftoverAction::AgeUnknown => {
                "left alone: the storage does not say when it was written".to_string()
            }
        };
        let kind = match what.kind {
            LeftoverKind::Incomplete => "a backup without a manifest",
            LeftoverKind::Unlisted => "objects no manifest lists",
            LeftoverKind::Staging => "unfinished writes",
        };
        let _ = writeln!(
            out,
            "  {}  {kind}, {} object(s), {}, last written {}: {fate}",
            what.prefix,
            what.keys.len(),
            bytes(what.bytes),
            what.modified.as_ref().map_or("?".into(), when)
        );
    }
}

fn lease_line(l: &HeldLease) -> String {
    format!(
        "{}{}, since {}, until {}",
        l.lease,
        l.lease
            .backup
            .as_ref()
            .map(|b| format!(" (backup {b})"))
            .unwrap_or_default(),
        when(&l.lease.started_at),
        when(&l.lease.expires_at)
    )
}

fn leases(out: &mut String, plan: &ExpirePlan) {
    if plan.live_leases.is_empty()
        && plan.expired_leases.is_empty()
        && plan.unreadable_leases.is_empty()
    {
        return;
    }
    let _ = writeln!(out, "\nleases:");
    for l in &plan.live_leases {
        let _ = writeln!(out, "  live     {}", lease_line(l));
    }
    for l in &plan.expired_leases {
        let _ = writeln!(
            out,
            "  expired  {}: its holder stopped renewing it (killed?); removed",
            lease_line(l)
        );
    }
    for l in &plan.unreadable_leases {
        let _ = writeln!(
            out,
            "  unreadable  {}: {}; left alone, it protects nothing",
            l.key, l.problem
        );
    }
}

/// The line after the plan: a dry run changed nothing, or what was deleted.
pub fn expire_done(plan: &ExpirePlan, done: Option<&ExpireReport>) -> String {
    match done {
        None if plan.changes_nothing() => {
            "\nnothing to do: `pgkeep expire --confirm` would change nothing\n".into()
        }
        None => "\nthis is a plan: nothing was changed; `pgkeep expire --confirm` carries it out\n"
            .into(),
        Some(done) => {
            let mut out = format!("\n{done}\n");
            if !done.spared.is_empty() {
                let _ = writeln!(
                    out,
                    "spared: {} (a restore began using them after the plan was made)",
                    done.spared.join(", ")
                );
            }
            out
        }
    }
}

/// After `pin ID`.
pub fn pinned(id: &str, outcome: &PinOutcome) -> String {
    let pin = &outcome.pin;
    let reason = pin
        .reason
        .as_ref()
        .map(|r| format!(" ({r})"))
        .unwrap_or_default();
    match outcome.change {
        PinChange::Pinned => {
            format!("backup {id} is pinned{reason}: expire keeps it until `pgkeep unpin {id}`\n")
        }
        PinChange::AlreadyPinned => format!(
            "backup {id} is already pinned{reason}, since {}; nothing changed (`--reason` replaces the reason)\n",
            when(&pin.pinned_at)
        ),
        PinChange::ReasonReplaced => format!(
            "backup {id} is still pinned, since {}; its reason is now{reason}\n",
            when(&pin.pinned_at)
        ),
    }
}

/// After `unpin ID`.
pub fn unpinned(id: &str, pin: Option<&Pin>) -> String {
    match pin {
        Some(_) => format!("backup {id} is no longer pinned: the retention policy decides\n"),
        None => format!("backup {id} was not pinned; nothing changed\n"),
    }
}
