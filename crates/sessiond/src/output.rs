//! Human-readable rendering of admin API answers: aligned tables and key/value listings.

use serde_json::Value;

/// One cell: strings as they are, numbers and booleans printed, absent values as `-`.
pub fn cell(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "-".to_owned(),
        Some(Value::String(s)) if s.is_empty() => "-".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// Seconds as a short duration (`14m58s`), for `seconds_left`.
pub fn seconds(v: Option<&Value>) -> String {
    match v.and_then(Value::as_i64) {
        Some(s) if s <= 0 => "0s".to_owned(),
        Some(s) => {
            let (h, m, sec) = (s / 3600, (s % 3600) / 60, s % 60);
            match (h, m) {
                (0, 0) => format!("{sec}s"),
                (0, _) => format!("{m}m{sec:02}s"),
                _ => format!("{h}h{m:02}m"),
            }
        }
        None => cell(v),
    }
}

/// Renders rows under headers with columns padded to their widest cell.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut l = String::new();
        for (i, c) in cells.enumerate() {
            if i > 0 {
                l.push_str("  ");
            }
            l.push_str(c);
            let pad = widths[i].saturating_sub(c.chars().count());
            l.extend(std::iter::repeat_n(' ', pad));
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&mut headers.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

pub const SESSION_HEADERS: &[&str] = &[
    "HANDLE",
    "PRINCIPAL",
    "USER",
    "ROLE",
    "STATE",
    "LAST ACTIVITY",
    "IDLE LEFT",
    "ENDS AT",
];

pub fn session_row(s: &Value) -> Vec<String> {
    let mut state = cell(s.get("state"));
    let reason = s.get("end_reason").or_else(|| s.get("reason"));
    if reason.is_some_and(|r| !r.is_null()) {
        state = format!("{state} ({})", cell(reason));
    }
    vec![
        cell(s.get("handle")),
        cell(s.get("principal")),
        cell(s.get("user_id")),
        cell(s.get("role")),
        state,
        cell(s.get("last_activity_at")),
        seconds(s.get("seconds_left")),
        cell(s.get("absolute_expires_at")),
    ]
}

pub const AUDIT_HEADERS: &[&str] = &[
    "ID",
    "AT",
    "KIND",
    "HANDLE",
    "PRINCIPAL",
    "ROLE",
    "REASON",
    "CLIENT IP",
];

pub fn audit_row(e: &Value) -> Vec<String> {
    vec![
        cell(e.get("id")),
        cell(e.get("at")),
        cell(e.get("kind")),
        cell(e.get("handle")),
        cell(e.get("principal")),
        cell(e.get("role")),
        cell(e.get("reason")),
        cell(e.get("client_ip")),
    ]
}

pub const MEMBER_HEADERS: &[&str] = &["CONNECTION", "HANDLE", "PRINCIPAL", "ROLE", "NODE"];

/// One member of a room (`GET /v1/admin/rooms/{room}`).
pub fn member_row(m: &Value) -> Vec<String> {
    vec![
        cell(m.get("connection_id")),
        cell(m.get("handle")),
        cell(m.get("principal")),
        cell(m.get("role")),
        cell(m.get("node")),
    ]
}

/// `key: value` lines for one object, nested values as compact JSON.
pub fn fields(obj: &Value) -> String {
    let Some(map) = obj.as_object() else {
        return format!("{obj}\n");
    };
    let width = map.keys().map(|k| k.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (k, v) in map {
        out.push_str(&format!("{k:<width$}  {}\n", cell(Some(v))));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn table_aligns_columns() {
        let t = table(
            &["A", "LONG"],
            &[
                vec!["xyz".into(), "1".into()],
                vec!["-".into(), "22".into()],
            ],
        );
        assert_eq!(t, "A    LONG\nxyz  1\n-    22\n");
    }

    #[test]
    fn session_rows_show_reason_and_time_left() {
        let s = json!({"handle":"s_1","principal":"anon:x","user_id":null,"role":"editor","state":"ended",
            "end_reason":"revoked","seconds_left":905,"last_activity_at":"t1","absolute_expires_at":"t2"});
        assert_eq!(
            session_row(&s),
            [
                "s_1",
                "anon:x",
                "-",
                "editor",
                "ended (revoked)",
                "t1",
                "15m05s",
                "t2"
            ]
        );
        assert_eq!(seconds(Some(&json!(7300))), "2h01m");
        assert_eq!(seconds(Some(&json!(-3))), "0s");
    }

    #[test]
    fn fields_lists_every_key() {
        let f = fields(&json!({"handle":"s_1","policy":{"a":1}}));
        assert_eq!(f, "handle  s_1\npolicy  {\"a\":1}\n");
    }
}
