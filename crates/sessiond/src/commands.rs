//! The operator subcommands (`sessions …`, `rooms …`, `audit`): admin API calls rendered
//! as tables or JSON; and `completions`, which needs no server.

use crate::admin::AdminClient;
use crate::cli::{AuditArgs, Remote, RoomsCommand, SessionsCommand};
use crate::error::CliError;
use crate::output;
use serde_json::{json, Value};
use std::io::Write;
use std::time::{Duration, SystemTime};

/// Sessions asked for per request while paging through a long listing.
const PAGE: usize = 200;
/// New events fetched per poll in `audit --follow`; more are fetched at once if a poll filled it.
const FOLLOW_PAGE: usize = 500;

/// Writes to stdout; a closed pipe (`sessiond audit | head`) ends the program quietly.
fn emit(text: &str) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        r => Ok(r?),
    }
}

fn pretty(v: &Value) -> String {
    format!(
        "{}\n",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
    )
}

fn array<'a>(v: &'a Value, key: &str) -> Result<&'a Vec<Value>, CliError> {
    v.get(key)
        .and_then(Value::as_array)
        .ok_or_else(|| CliError::Protocol(format!("expected a {key:?} array")))
}

pub async fn sessions(remote: &Remote, command: SessionsCommand) -> Result<(), CliError> {
    let client = AdminClient::new(remote)?;
    match command {
        SessionsCommand::Ls {
            principal,
            role,
            all,
            limit,
        } => {
            let mut found: Vec<Value> = Vec::new();
            let mut after: Option<String> = None;
            let next = loop {
                let mut q: Vec<(&str, String)> = vec![
                    ("state", if all { "all" } else { "active" }.to_owned()),
                    ("limit", (limit - found.len()).clamp(1, PAGE).to_string()),
                ];
                q.extend(principal.clone().map(|p| ("principal", p)));
                q.extend(role.clone().map(|r| ("role", r)));
                q.extend(after.clone().map(|a| ("after", a)));
                let page = client.get(&["v1", "admin", "sessions"], &q).await?;
                let sessions = array(&page, "sessions")?;
                let room = limit - found.len();
                found.extend(sessions.iter().take(room).cloned());
                let next = page.get("next").and_then(Value::as_str).map(str::to_owned);
                if found.len() >= limit || sessions.is_empty() || next.is_none() {
                    break next;
                }
                after = next;
            };
            if remote.json {
                return emit(&pretty(&json!({ "sessions": found, "next": next })));
            }
            let rows: Vec<Vec<String>> = found.iter().map(output::session_row).collect();
            emit(&output::table(output::SESSION_HEADERS, &rows))?;
            if next.is_some() && found.len() >= limit {
                eprintln!("(more sessions exist; raise --limit to see them)");
            }
            Ok(())
        }
        SessionsCommand::Show { handle } => {
            let s = client
                .get(&["v1", "admin", "sessions", &handle], &[])
                .await?;
            emit(&if remote.json {
                pretty(&s)
            } else {
                output::fields(&s)
            })
        }
        SessionsCommand::Revoke { handle } => {
            let s = client.delete(&["v1", "admin", "sessions", &handle]).await?;
            if remote.json {
                let v = if s.is_null() {
                    json!({ "revoked": handle })
                } else {
                    s
                };
                return emit(&pretty(&v));
            }
            emit(&format!("revoked {handle}\n"))
        }
        SessionsCommand::RevokePrincipal { principal } => {
            let r = client
                .delete(&["v1", "admin", "principals", &principal, "sessions"])
                .await?;
            if remote.json {
                return emit(&pretty(&r));
            }
            let n = r.get("ended").and_then(Value::as_u64).unwrap_or(0);
            emit(&format!(
                "ended {n} session{} of {principal}\n",
                if n == 1 { "" } else { "s" }
            ))
        }
    }
}

/// `rooms ls` and `rooms show`: the admin API's room views, which count and list members
/// on every node of a cluster (one node's alone without a shared Redis store).
pub async fn rooms(remote: &Remote, command: RoomsCommand) -> Result<(), CliError> {
    let client = AdminClient::new(remote)?;
    match command {
        RoomsCommand::Ls => {
            let list = client.get(&["v1", "admin", "rooms"], &[]).await?;
            if remote.json {
                return emit(&pretty(&list));
            }
            let rows: Vec<Vec<String>> = array(&list, "rooms")?
                .iter()
                .map(|r| vec![output::cell(r.get("room")), output::cell(r.get("members"))])
                .collect();
            emit(&output::table(&["ROOM", "MEMBERS"], &rows))
        }
        RoomsCommand::Show { room } => {
            let view = client.get(&["v1", "admin", "rooms", &room], &[]).await?;
            if remote.json {
                return emit(&pretty(&view));
            }
            let rows: Vec<Vec<String>> = array(&view, "members")?
                .iter()
                .map(output::member_row)
                .collect();
            emit(&output::table(output::MEMBER_HEADERS, &rows))
        }
    }
}

/// Writes the completion script for `shell` to stdout.
pub fn completions(shell: clap_complete::Shell) -> Result<(), CliError> {
    use clap::CommandFactory;
    let mut script = Vec::new();
    clap_complete::generate(
        shell,
        &mut crate::cli::Cli::command(),
        "sessiond",
        &mut script,
    );
    emit(&String::from_utf8_lossy(&script))
}

/// `--since` as the RFC 3339 time the API expects: given as such, or a duration ago.
pub fn since_param(s: &str, now: SystemTime) -> Result<String, CliError> {
    if let Ok(t) = humantime::parse_rfc3339_weak(s) {
        return Ok(humantime::format_rfc3339_millis(t).to_string());
    }
    let ago = humantime::parse_duration(s).map_err(|_| CliError::BadSince(s.to_owned()))?;
    let t = now
        .checked_sub(ago)
        .ok_or_else(|| CliError::BadSince(s.to_owned()))?;
    Ok(humantime::format_rfc3339_millis(t).to_string())
}

fn event_id(e: &Value) -> i64 {
    e.get("id").and_then(Value::as_i64).unwrap_or(0)
}

/// One event as a log line, for `--follow` where rows arrive one by one.
fn event_line(e: &Value) -> String {
    let c = |k: &str| output::cell(e.get(k));
    format!(
        "{} {} {} handle={} principal={} role={} reason={} ip={}\n",
        c("id"),
        c("at"),
        c("kind"),
        c("handle"),
        c("principal"),
        c("role"),
        c("reason"),
        c("client_ip")
    )
}

pub async fn audit(args: AuditArgs) -> Result<(), CliError> {
    let client = AdminClient::new(&args.remote)?;
    let mut filters: Vec<(&str, String)> = Vec::new();
    filters.extend(args.principal.clone().map(|v| ("principal", v)));
    filters.extend(args.handle.clone().map(|v| ("handle", v)));
    filters.extend(args.reason.clone().map(|v| ("reason", v)));
    filters.extend(args.kind.clone().map(|v| ("kind", v)));
    if let Some(s) = &args.since {
        filters.push(("since", since_param(s, SystemTime::now())?));
    }
    let mut q = filters.clone();
    q.push(("limit", args.limit.max(1).to_string()));
    let first = client.get(&["v1", "admin", "audit"], &q).await?;
    let events = array(&first, "events")?;
    if !args.follow {
        if args.remote.json {
            return emit(&pretty(&first));
        }
        let rows: Vec<Vec<String>> = events.iter().map(output::audit_row).collect();
        return emit(&output::table(output::AUDIT_HEADERS, &rows));
    }

    // Following prints oldest first, like a log, one line (or one JSON object) per event.
    let mut batch = events.clone();
    batch.sort_by_key(event_id);
    let mut last = batch.iter().map(event_id).max().unwrap_or(0);
    let show = |batch: &[Value]| -> Result<(), CliError> {
        for e in batch {
            emit(&if args.remote.json {
                format!("{e}\n")
            } else {
                event_line(e)
            })?;
        }
        Ok(())
    };
    show(&batch)?;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
        let mut q = filters.clone();
        q.push(("after", last.to_string()));
        q.push(("limit", FOLLOW_PAGE.to_string()));
        match client.get(&["v1", "admin", "audit"], &q).await {
            Ok(page) => {
                let mut batch = array(&page, "events")?.clone();
                batch.retain(|e| event_id(e) > last);
                batch.sort_by_key(event_id);
                last = batch.iter().map(event_id).max().unwrap_or(last);
                show(&batch)?;
                if batch.len() >= FOLLOW_PAGE {
                    tick.reset_immediately();
                }
            }
            // A restarting server is expected while following: say so and keep polling.
            Err(e @ CliError::Unreachable { .. }) => eprintln!("sessiond: {e}; retrying"),
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_accepts_times_and_durations() {
        let now = humantime::parse_rfc3339("2026-11-21T19:00:00Z").unwrap();
        assert_eq!(since_param("10m", now).unwrap(), "2026-11-21T18:50:00.000Z");
        assert_eq!(
            since_param("2026-11-20T08:00:00Z", now).unwrap(),
            "2026-11-20T08:00:00.000Z"
        );
        assert!(matches!(
            since_param("yesterday-ish", now),
            Err(CliError::BadSince(_))
        ));
    }

    #[test]
    fn follow_lines_carry_the_fields() {
        let e = json!({"id":7,"at":"t","kind":"ended","handle":"s_1","principal":"user:a","role":"editor","reason":"revoked"});
        assert_eq!(
            event_line(&e),
            "7 t ended handle=s_1 principal=user:a role=editor reason=revoked ip=-\n"
        );
    }
}
