//! The hot path: one lookup for "which live session is this" by token hash (requests)
//! or by handle (an open WebSocket), optionally recording activity. A cache hit takes
//! the lock once: lookup, deadline check, activity and timer move together.

use super::cache::{Cache, Entry};
use super::types::Credential;
use super::types::Seen;
use super::{SessionError, SessionResult, SessionService};
use sessiond_core::{lifecycle, EndReason, Handle, Session, Timestamp, TokenHash};

/// What names the session being looked up.
#[derive(Clone, Copy)]
enum Key<'a> {
    Token(&'a TokenHash),
    /// A caller that authenticated earlier (an open WebSocket): found by handle, valid
    /// only while the session's token is still the one it authenticated with.
    Credential(&'a Credential),
}

impl Key<'_> {
    /// The cached entry this key names; `Err` when the session is cached under another
    /// token than the credential's (rotated since it authenticated).
    fn entry<'c>(&self, c: &'c mut Cache) -> Result<Option<&'c mut Entry>, SessionError> {
        match self {
            Key::Token(hash) => Ok(c.by_token_mut(hash)),
            Key::Credential(who) => match c.by_handle.get_mut(&who.handle) {
                Some(e) if !e.session.token_hash.ct_eq(&who.token_hash) => {
                    Err(SessionError::Rotated)
                }
                e => Ok(e.map(|b| &mut **b)),
            },
        }
    }
}

/// A cached session checked (and maybe touched) at one instant: what the caller asked
/// to see of it, taken under the lock, rather than a copy of the whole record.
struct Checked<R> {
    handle: Handle,
    /// `Err` with its reason when the session has ended.
    view: Result<R, EndReason>,
    /// Activity inside the warning window moved the deadline: connections get `renewed`
    /// (the record they are told about).
    renewed: Option<Session>,
    /// Cluster mode and the stored deadline is near: write the activity now.
    urgent: bool,
    /// The touched session's new timer (moved under the same lock as the touch).
    timer: Option<Timestamp>,
}

/// A session whose deadline passed: it must end now for `reason`.
struct Overdue {
    handle: Handle,
    reason: EndReason,
}

/// One pass over the cache. Only ever a short-lived local, so its size does not matter
/// and boxing the hit would cost an allocation per request.
#[allow(clippy::large_enum_variant)]
enum Probe<R> {
    Hit(Result<Checked<R>, Overdue>),
    /// Cluster mode: the entry is too old to trust; re-read it first.
    Stale(Handle),
    Miss,
}

impl SessionService {
    /// The live session a token names, recording activity if `touch`: cache first, then
    /// the store. An ended or overdue session is `Ended` with its reason (an overdue one
    /// is ended here); an unknown token is `Unauthenticated`.
    /// A sign-in draft move that failed on this node is finished first, so the request
    /// sees the user's drafts.
    pub async fn authenticate(&self, token: &TokenHash, touch: bool) -> SessionResult<Session> {
        let (handle, s) = self
            .lookup(Key::Token(token), touch, None, Session::clone)
            .await?;
        self.finish_move_of(&handle).await;
        Ok(s)
    }

    /// [`Self::authenticate`] for a request from `client`: where the session was seen
    /// from is noted in the same locking as the lookup (no second cache lookup per
    /// request).
    pub async fn authenticate_from(
        &self,
        token: &TokenHash,
        touch: bool,
        client: &Seen<'_>,
    ) -> SessionResult<Session> {
        self.authenticate_view(token, touch, client, Session::clone)
            .await
    }

    /// [`Self::authenticate_from`] returning only what `view` takes from the live
    /// session (the hot path's forward-auth answer), not a copy of the whole record.
    pub async fn authenticate_view<R>(
        &self,
        token: &TokenHash,
        touch: bool,
        client: &Seen<'_>,
        view: impl Fn(&Session) -> R,
    ) -> SessionResult<R> {
        let (handle, r) = self
            .lookup(Key::Token(token), touch, Some(client), view)
            .await?;
        self.finish_move_of(&handle).await;
        Ok(r)
    }

    /// Records activity for a caller that authenticated earlier (an open WebSocket's
    /// `activity`); `Rotated`, with nothing recorded, if its token was rotated away since.
    pub async fn touch(&self, who: &Credential) -> SessionResult<Session> {
        self.lookup(Key::Credential(who), true, None, Session::clone)
            .await
            .map(|(_, s)| s)
    }

    /// The live session of a caller that authenticated earlier, without activity:
    /// `Rotated` if its token was rotated away since (checked before anything it asks
    /// for, so an old connection never acts as the session's new principal or role).
    pub async fn current(&self, who: &Credential) -> SessionResult<Session> {
        self.lookup(Key::Credential(who), false, None, Session::clone)
            .await
            .map(|(_, s)| s)
    }

    /// The looked-up live session's handle and `view` of it.
    async fn lookup<R>(
        &self,
        key: Key<'_>,
        touch: bool,
        client: Option<&Seen<'_>>,
        view: impl Fn(&Session) -> R,
    ) -> SessionResult<(Handle, R)> {
        // Cluster mode: a stale entry, or one that looks overdue, is re-read once first.
        let mut refreshed = false;
        loop {
            let now = self.now();
            let probe = {
                let mut c = self.lock();
                match key.entry(&mut c)? {
                    Some(e) if !refreshed && self.is_stale(e, now) => {
                        Probe::Stale(e.session.handle)
                    }
                    Some(e) => {
                        let was_dirty = e.dirty;
                        if let Some(cl) = client {
                            e.note_client(cl);
                        }
                        let checked = self.check_and_touch(e, now, touch, &view);
                        if e.dirty && !was_dirty {
                            let h = e.session.handle;
                            c.queue_dirty(h);
                        }
                        Self::reschedule(&mut c, &checked);
                        Probe::Hit(checked)
                    }
                    None => Probe::Miss,
                }
            };
            let checked = match probe {
                Probe::Hit(r) => r,
                Probe::Stale(h) => {
                    self.refresh(&h).await?;
                    refreshed = true;
                    continue;
                }
                Probe::Miss => {
                    let s = match key {
                        Key::Token(hash) => self
                            .store
                            .get_session_by_token(hash)
                            .await?
                            .filter(|s| s.token_hash.ct_eq(hash)),
                        Key::Credential(who) => self.store.get_session(&who.handle).await?,
                    }
                    .ok_or(SessionError::Unauthenticated)?;
                    let timer = self.timer_if_active(&s);
                    let mut c = self.lock();
                    // Refused when a rotation or ending committed while we read: then the
                    // cached (newer) record decides, and a rotated-away token names nothing.
                    let _ = c.insert(s, false, timer, now);
                    let Some(e) = key.entry(&mut c)? else {
                        return Err(SessionError::Unauthenticated);
                    };
                    let was_dirty = e.dirty;
                    if let Some(cl) = client {
                        e.note_client(cl);
                    }
                    let checked = self.check_and_touch(e, now, touch, &view);
                    if e.dirty && !was_dirty {
                        let h = e.session.handle;
                        c.queue_dirty(h);
                    }
                    Self::reschedule(&mut c, &checked);
                    checked
                }
            };
            return match checked {
                Ok(Checked {
                    handle,
                    view,
                    renewed,
                    urgent,
                    timer: _,
                }) => {
                    let view = view.map_err(|reason| SessionError::Ended { reason })?;
                    if let Some(s) = renewed {
                        self.publish_renewed(&s);
                    }
                    if urgent {
                        self.flush_urgent(&handle).await;
                    }
                    Ok((handle, view))
                }
                Err(Overdue { handle, reason }) => {
                    if self.cluster.get().is_some() && !refreshed {
                        // Another node may have moved the deadline: ask the store first.
                        self.refresh(&handle).await?;
                        refreshed = true;
                        continue;
                    }
                    self.end(&handle, reason).await?;
                    Err(SessionError::Ended { reason })
                }
            };
        }
    }

    /// Checks an entry at `now` and records activity on it if `touch`; or the ending
    /// that must happen now.
    fn check_and_touch<R>(
        &self,
        e: &mut Entry,
        now: Timestamp,
        touch: bool,
        view: &impl Fn(&Session) -> R,
    ) -> Result<Checked<R>, Overdue> {
        let mut checked = Checked {
            handle: e.session.handle,
            view: Err(EndReason::Revoked),
            renewed: None,
            urgent: false,
            timer: None,
        };
        if !e.session.is_active() {
            checked.view = Err(e.session.end_reason.unwrap_or(EndReason::Revoked));
            return Ok(checked);
        }
        if let Some(reason) = lifecycle::due_reason(&e.session, now) {
            return Err(Overdue {
                handle: e.session.handle,
                reason,
            });
        }
        if touch {
            let before = e.session.idle_expires_at;
            let policy = self.policy(&e.session.role);
            if lifecycle::touch(&mut e.session, now, policy) {
                checked.urgent = self
                    .cluster
                    .get()
                    .is_some_and(|m| before - now < m.urgent_ms);
                e.dirty = true;
                if e.warned {
                    e.warned = false;
                    checked.renewed = Some(e.session.clone());
                }
            }
            checked.timer = Some(self.timer_for(&e.session, e.warned));
        }
        checked.view = Ok(view(&e.session));
        Ok(checked)
    }

    /// Sets the timer of a touched live session (under the same lock as the touch) only
    /// where it would fire too late or is missing. Activity moves a deadline later: the
    /// timer already set then fires early, and the scheduler, finding the session not due,
    /// sets it to the deadline of that moment (one look per idle period instead of a
    /// move in the deadline queue on every request; on a cluster that look re-reads the
    /// record, which also catches activity seen by other nodes).
    fn reschedule<R>(c: &mut Cache, checked: &Result<Checked<R>, Overdue>) {
        if let Ok(Checked {
            handle,
            timer: Some(t),
            ..
        }) = checked
        {
            if c.timers.deadline(handle).is_none_or(|set| set > *t) {
                c.schedule(*handle, *t);
            }
        }
    }
}
