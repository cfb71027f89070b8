//! The write-through paths that make or rebind a session: get-or-create (idempotent)
//! and sign-in (token rotation, sign-in as another user, drafts moving to the user).
//! Each write carries its audit events into the store, which commits them together.

use super::types::{Idempotency, Obtained, SignIn, SignedIn};
use super::{SessionError, SessionResult, SessionService};
use crate::bus::Event;
use sessiond_core::audit::{AuditEvent, AuditKind};
use sessiond_core::lifecycle::{self, ClientInfo};
use sessiond_core::store::{CreateOutcome, DraftMove, IdempotencyRecord};
use sessiond_core::{EndReason, Handle, Principal, Session, Timestamp, Token, TokenHash};

impl SessionService {
    /// Creates a fresh anonymous session of the default role (not yet stored).
    fn new_session(&self, client: &ClientInfo) -> (Session, Token) {
        let role = self.policies.default_role.clone();
        let now = self.now();
        let handle = if self.store.time_ordered_handles() {
            Handle::generate_at(now)
        } else {
            Handle::generate()
        };
        lifecycle::new_session_as(handle, now, &role, self.policy(&role), client)
    }

    /// The live session `current` names (recording activity), or a new one. With
    /// `idempotency`, concurrent and repeated calls with the same key get the same
    /// session; the same key with another request is `IdempotencyMismatch`; a replay
    /// after the replay window is `IdempotencyExpired` (the token is a bearer credential:
    /// it is handed out again only briefly); a replay whose session ended (or was signed
    /// in since) is `Ended`/`Unauthenticated`.
    pub async fn get_or_create(
        &self,
        current: Option<&TokenHash>,
        idempotency: Option<Idempotency<'_>>,
        client: &ClientInfo,
    ) -> SessionResult<Obtained> {
        if let Some(hash) = current {
            match self.authenticate(hash, true).await {
                Ok(s) => return Ok(Obtained::Current(s)),
                // An unknown or ended token never maps to a session: make a new one.
                Err(SessionError::Unauthenticated | SessionError::Ended { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let now = self.now();
        let (s, token) = self.new_session(client);
        let record = idempotency.as_ref().map(|i| IdempotencyRecord {
            key_hash: self.idempotency.key_hash(i.key),
            fingerprint: i.fingerprint.clone(),
            handle: s.handle,
            sealed_token: self.idempotency.seal(i.key, &token),
            created_at: now,
        });
        let created = [AuditEvent::for_session(now, AuditKind::Created, &s)];
        match self
            .store
            .create_session(&s, record.as_ref(), &created)
            .await?
        {
            CreateOutcome::Created => {
                self.created(&s);
                tracing::info!(handle = %s.handle, principal = %s.principal, role = %s.role, "session created");
                Ok(Obtained::Created { session: s, token })
            }
            CreateOutcome::Existing(rec) => {
                let i = idempotency.ok_or_else(|| {
                    SessionError::Internal("create without a key reported a duplicate".into())
                })?;
                if rec.fingerprint != i.fingerprint {
                    return Err(SessionError::IdempotencyMismatch);
                }
                if !self.idempotency.replay_open(rec.created_at, now) {
                    return Err(SessionError::IdempotencyExpired);
                }
                let token = self
                    .idempotency
                    .unseal(i.key, &rec.sealed_token)
                    .ok_or_else(|| {
                        SessionError::Internal(format!(
                            "idempotency record of {} cannot be opened",
                            rec.handle
                        ))
                    })?;
                // Ended, or signed in since (token rotated): the replay cannot resume it.
                let session = self.authenticate(&token.hash(), false).await?;
                Ok(Obtained::Replayed { session, token })
            }
        }
    }

    /// A new session was written (with its audit): cache it, count it.
    fn created(&self, s: &Session) {
        self.remember(s.clone());
        metrics::counter!("sessiond_sessions_created_total").increment(1);
    }

    /// Signs a session in, rotating its token. A live session `current` of the same (or
    /// an anonymous) principal is kept (same handle and data; anonymous drafts move to
    /// the user); another user's live session is signed out first and, like no live
    /// session, gives way to a new signed-in one. A concurrent rotation is `Conflict`.
    /// The ticket is used up first (`TicketReused` if it was used before, on any node),
    /// so a replayed ticket changes nothing.
    pub async fn sign_in(
        &self,
        current: Option<&TokenHash>,
        who: SignIn,
        client: &ClientInfo,
    ) -> SessionResult<SignedIn> {
        let now = self.now();
        if !self
            .store
            .claim_once(&who.once.key, who.once.until, now)
            .await?
        {
            metrics::counter!("sessiond_tickets_replayed_total").increment(1);
            return Err(SessionError::TicketReused);
        }
        let mut live = None;
        if let Some(hash) = current {
            match self.authenticate(hash, false).await {
                Ok(s) => live = Some(s),
                Err(SessionError::Unauthenticated | SessionError::Ended { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let presented_live = live.is_some();
        if let Some(s) = &live {
            if s.user_id.as_deref().is_some_and(|u| u != who.user_id) {
                // Another person's session on a shared browser: their data must not carry
                // over, so it ends and the new user starts fresh.
                self.end(&s.handle, EndReason::SignedOut).await?;
                live = None;
            }
        }
        let policy = self.policy(&who.role).clone();
        let (mut s, created) = match live {
            Some(s) => (s, false),
            None => (self.new_session(client).0, true),
        };
        let old_hash = s.token_hash;
        let old_principal = s.principal.clone();
        let old_role = s.role.clone();
        let token = lifecycle::sign_in(
            &mut s,
            now,
            &who.user_id,
            &who.role,
            &policy,
            who.rooms,
            client,
        );
        let mut events = Vec::with_capacity(3);
        if created {
            events.push(AuditEvent::for_session(now, AuditKind::Created, &s));
        }
        events.extend(sign_in_events(now, &s, &old_principal, &old_role));
        if created {
            match self.store.create_session(&s, None, &events).await? {
                CreateOutcome::Created => {}
                CreateOutcome::Existing(_) => {
                    return Err(SessionError::Internal(
                        "create without a key reported a duplicate".into(),
                    ))
                }
            }
            self.created(&s);
        } else {
            // The anonymous drafts' move is recorded with the rotation, so it is finished
            // (here, on the next request, or by the background sweep) even if this
            // attempt fails or the process dies now.
            let draft_move =
                (old_principal.is_anonymous() && old_principal != s.principal).then(|| DraftMove {
                    handle: s.handle,
                    from: old_principal.clone(),
                    to: s.principal.clone(),
                    at: now,
                });
            if !self
                .store
                .update_session(&s, &old_hash, &events, draft_move.as_ref())
                .await?
            {
                return Err(SessionError::Conflict);
            }
            // Replaces the cached record and its token index: the old token stops at once.
            self.remember(s.clone());
            // Every connection opened with the old token, on every node, is closed with
            // "reauthenticate": none may go on acting as the principal it authenticated as.
            self.bus.publish(Event::SessionRotated {
                handle: s.handle,
                version: s.version,
            });
            if let Some(m) = draft_move {
                if let Err(e) = self.finish_draft_move(&m).await {
                    // The sign-in stands (the new cookie must reach the client); the
                    // recorded move is retried on this session's next request and by
                    // the background sweep, and nothing is lost meanwhile.
                    tracing::warn!(handle = %s.handle, error = %e, "moving drafts on sign-in failed; will retry");
                    self.remember_move(m);
                }
            }
        }
        metrics::counter!("sessiond_sign_ins_total").increment(1);
        tracing::info!(handle = %s.handle, principal = %s.principal, role = %s.role, "signed in; token rotated");
        Ok(SignedIn {
            session: s,
            token,
            created,
            presented_live,
        })
    }
}

/// The events of a sign-in: who signed in (and from which principal), and the rotation.
fn sign_in_events(
    now: Timestamp,
    s: &Session,
    from: &Principal,
    old_role: &str,
) -> [AuditEvent; 2] {
    let detail = serde_json::json!({"from_principal": from.as_str(), "previous_role": old_role});
    [
        AuditEvent::for_session(now, AuditKind::SignedIn, s).with_detail(detail),
        AuditEvent::for_session(now, AuditKind::TokenRotated, s)
            .with_detail(serde_json::json!({"cause": "sign_in"})),
    ]
}
