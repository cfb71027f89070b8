//! Micro-benchmarks of the core's per-request work: token generation and hashing, the
//! in-memory lookup the validate path does, the deadline queue, and policy evaluation.
//! `cargo bench -p sessiond-core` runs them (`-- --quick` for a fast pass).

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion};
use sessiond_core::lifecycle::{self, new_session, ClientInfo};
use sessiond_core::policy::Policies;
use sessiond_core::rooms::{may_join, Grants};
use sessiond_core::timer::DeadlineQueue;
use sessiond_core::{Handle, Session, Token, TokenHash};
use std::collections::HashMap;

/// Sessions held by the lookup and queue benchmarks: a busy node's cache, not a toy.
const SESSIONS: usize = 100_000;

fn tokens(c: &mut Criterion) {
    let mut g = c.benchmark_group("token");
    g.bench_function("generate", |b| b.iter(Token::generate));
    let t = Token::generate();
    g.bench_function("hash", |b| b.iter(|| black_box(&t).hash()));
    let text = t.as_str().to_owned();
    g.bench_function("parse_and_hash", |b| {
        b.iter(|| Token::parse(black_box(&text)).map(|t| t.hash()))
    });
    g.bench_function("handle_generate", |b| b.iter(Handle::generate));
    let (h1, h2) = (t.hash(), Token::generate().hash());
    g.bench_function("hash_ct_eq", |b| {
        b.iter(|| black_box(&h1).ct_eq(black_box(&h2)))
    });
    g.finish();
}

/// What the server's session cache holds: the record by handle, the handle by token hash.
struct Cache {
    by_token: HashMap<TokenHash, Handle>,
    by_handle: HashMap<Handle, Session>,
}

fn cache(n: usize) -> (Cache, Vec<String>) {
    let policies = Policies::default();
    let policy = policies.get("editor").expect("default role");
    let mut c = Cache {
        by_token: HashMap::with_capacity(n),
        by_handle: HashMap::with_capacity(n),
    };
    let mut tokens = Vec::with_capacity(n);
    for _ in 0..n {
        let (s, t) = new_session(0, "editor", policy, &ClientInfo::default());
        c.by_token.insert(s.token_hash, s.handle);
        c.by_handle.insert(s.handle, s);
        tokens.push(t.as_str().to_owned());
    }
    (c, tokens)
}

/// The validate path's memory work: parse the cookie, hash it, find the record, check
/// its deadlines and record the activity.
fn hot_lookup(c: &mut Criterion) {
    let (mut cache, tokens) = cache(SESSIONS);
    let policies = Policies::default();
    let mut i = 0usize;
    let mut now = 1_000;
    c.bench_function("hot_lookup/validate_and_touch", |b| {
        b.iter(|| {
            i = (i + 7919) % tokens.len();
            now += 1;
            let hash = Token::parse(&tokens[i]).expect("valid token").hash();
            let handle = cache.by_token.get(&hash).expect("cached");
            let s = cache.by_handle.get_mut(handle).expect("cached");
            let policy = policies.get(&s.role).expect("role");
            if lifecycle::due_reason(s, now).is_none() {
                lifecycle::touch(s, now, policy);
            }
            black_box(s.idle_expires_at)
        })
    });
    let unknown = Token::generate().as_str().to_owned();
    c.bench_function("hot_lookup/unknown_token", |b| {
        b.iter(|| {
            let hash = Token::parse(black_box(&unknown)).expect("valid").hash();
            black_box(!cache.by_token.contains_key(&hash))
        })
    });
}

fn deadline_queue(c: &mut Criterion) {
    let handles: Vec<Handle> = (0..SESSIONS).map(|_| Handle::generate()).collect();
    let full = || {
        let mut q = DeadlineQueue::new();
        for (k, h) in handles.iter().enumerate() {
            q.schedule(*h, 1_000_000 + k as i64);
        }
        q
    };
    let mut g = c.benchmark_group("deadline_queue");
    let fresh = Handle::generate();
    g.bench_function("insert_into_100k", |b| {
        b.iter_batched_ref(
            full,
            |q| q.schedule(fresh, 1_500_000),
            BatchSize::LargeInput,
        )
    });
    // A touch: the same key's deadline moves later.
    let mut q = full();
    let mut i = 0usize;
    let mut t = 2_000_000i64;
    g.bench_function("move_in_100k", |b| {
        b.iter(|| {
            i = (i + 7919) % handles.len();
            t += 1;
            q.schedule(handles[i], t);
        })
    });
    g.bench_function("pop_due_100_of_100k", |b| {
        b.iter_batched_ref(
            full,
            |q| black_box(q.pop_due(1_000_099, 10_000)),
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

fn policy(c: &mut Criterion) {
    let policies = Policies::default();
    let p = policies.get("editor").expect("default role");
    let (mut s, _) = new_session(0, "editor", p, &ClientInfo::default());
    s.allowed_rooms = Some(vec!["doc:1".into(), "team:*".into()]);
    let role_rooms = vec!["lobby".to_owned(), "public:*".to_owned()];
    let mut g = c.benchmark_group("policy");
    g.bench_function("role_lookup", |b| {
        b.iter(|| policies.get(black_box("viewer")))
    });
    g.bench_function("due_reason", |b| {
        b.iter(|| lifecycle::due_reason(black_box(&s), black_box(60_000)))
    });
    g.bench_function("view_state", |b| {
        b.iter(|| lifecycle::view_state(black_box(&s), black_box(60_000), p))
    });
    let mut now = 0;
    g.bench_function("touch", |b| {
        b.iter(|| {
            now += 1;
            lifecycle::touch(black_box(&mut s), now, p)
        })
    });
    let grants = Grants {
        role: &role_rooms,
        admin: false,
        token_room: None,
    };
    g.bench_function("may_join_ticket_pattern", |b| {
        b.iter(|| may_join(black_box(&s), black_box("team:alpha"), &grants))
    });
    g.finish();
}

criterion_group!(benches, tokens, hot_lookup, deadline_queue, policy);
criterion_main!(benches);
