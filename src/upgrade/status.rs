//! `GET /api/v1/upgrades`: the state, the next window (in UTC and in its zone), what
//! waits for approval, the lease, and the history, newest first.

use super::record::{Attempt, Record};
use super::{Upgrades, now_unix, window};
use serde_json::{Value, json};

/// An opening as the API shows it.
pub fn opening_json(o: &window::Opening, window: &window::Window) -> Value {
    json!({
        "window": window.to_string(),
        "start_utc": o.start.timestamp().to_string(),
        "end_utc": o.end.timestamp().to_string(),
        "start_local": o.start.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string(),
        "end_local": o.end.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string(),
        "zone": o.start.time_zone().iana_name().unwrap_or("UTC"),
        "start_unix": o.start.timestamp().as_second(),
    })
}

pub fn status(up: &Upgrades, history: usize) -> Value {
    let rec = up.snapshot();
    let now = now_unix();
    let Some(cfg) = &up.config else {
        return json!({
            "enabled": false,
            "node": up.node,
            "state": "disabled",
            "message": "upgrades are not configured on this node (no [upgrades] table)",
        });
    };
    let ts = jiff::Timestamp::from_second(now).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    let next = cfg
        .windows
        .iter()
        .filter_map(|w| w.next_after(ts).map(|o| (o, w)))
        .min_by_key(|(o, _)| o.start.timestamp())
        .map(|(o, w)| opening_json(&o, w));
    let open = cfg.windows.iter().find_map(|w| match w {
        window::Window::Always => Some(json!({"window": "always"})),
        _ => w.open_at(ts).map(|o| opening_json(&o, w)),
    });
    let approvals: Vec<Value> = rec
        .pending
        .iter()
        .filter(|p| p.waiting_for == "approval")
        .map(|p| {
            json!({
                "id": p.release,
                "release": p.release,
                "class": p.class,
                "engine_version": p.candidate.engine_version,
                "waiting_seconds": now - p.since_unix,
                "since_unix": p.since_unix,
            })
        })
        .collect();
    json!({
        "enabled": true,
        "node": up.node,
        "state": Upgrades::state_name(&rec),
        "current": rec.current,
        "pending": rec.pending,
        "pending_approvals": approvals,
        "approvals": rec.approvals.values().collect::<Vec<_>>(),
        "window_open": open.is_some(),
        "open_window": open,
        "next_window": next,
        "windows": cfg.windows.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "policy": cfg.policy,
        "gate_timeout_seconds": cfg.gate_timeout.as_secs_f64(),
        "gate_settle_seconds": cfg.gate_settle.as_secs_f64(),
        "order": up.order,
        "lease": rec.live_lease(now),
        "active": rec.active(),
        "last_outcome": Upgrades::last_outcome(&rec).map(|o| o.as_str()),
        "failed_releases": rec.failed,
        "confirmed": rec.confirmed,
        "rollback_requested": rec.rollback_requested,
        "rollbacks_total": rec.rollbacks_total,
        "load_error": up.load_error,
        "history": history_newest_first(&rec, history),
    })
}

fn history_newest_first(rec: &Record, n: usize) -> Vec<&Attempt> {
    rec.attempts.iter().rev().take(n).collect()
}
