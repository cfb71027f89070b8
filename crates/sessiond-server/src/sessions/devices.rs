//! "My devices": a signed-in principal's live sessions, seen and ended by the principal
//! itself, and where each session was last seen from (IP, user agent), kept current
//! by the requests it makes and written with its coalesced activity.

use super::{SessionError, SessionResult, SessionService};
use sessiond_core::lifecycle::ClientInfo;
use sessiond_core::store::SessionFilter;
use sessiond_core::{EndReason, Handle, Session};

/// Most sessions one listing returns: a user with more live sessions than this sees the
/// most recently active ones ("end the others" still ends every one).
pub const MAX_DEVICES: usize = 100;
/// Page size when walking all of a principal's sessions.
const PAGE: usize = 200;

impl SessionService {
    /// Notes where a live session was just seen from (see [`Entry::note_client`]), for
    /// callers that did not authenticate through [`SessionService::authenticate_from`].
    ///
    /// [`Entry::note_client`]: super::cache::Entry::note_client
    pub fn seen_from(&self, handle: &Handle, client: &ClientInfo) {
        let mut c = self.lock();
        if let Some(e) = c.by_handle.get_mut(handle) {
            let was_dirty = e.dirty;
            e.note_client(&client.into());
            if e.dirty && !was_dirty {
                c.queue_dirty(*handle);
            }
        }
    }

    /// Every live session of `principal`, with this node's unflushed activity and
    /// client changes applied, from the store's pages.
    async fn sessions_of(&self, principal: &str) -> SessionResult<Vec<Session>> {
        let mut out = Vec::new();
        let mut after = None;
        loop {
            let page = self
                .store
                .list_sessions(&SessionFilter {
                    principal: Some(principal.to_owned()),
                    active_only: true,
                    after,
                    limit: PAGE,
                    ..Default::default()
                })
                .await?;
            let full = page.len() == PAGE;
            after = page.last().map(|s| s.handle);
            for s in page {
                let s = match self.cached(&s.handle) {
                    Some(c) if !c.is_older_than(&s) => c,
                    _ => s,
                };
                if s.is_active() && s.principal.as_str() == principal {
                    out.push(s);
                }
            }
            if !full {
                return Ok(out);
            }
        }
    }

    /// Stores one server-kept value (reserved key) in every live session of `principal`;
    /// returns in how many. A session ending meanwhile is skipped.
    pub async fn put_principal_data(
        &self,
        principal: &str,
        key: &str,
        value: &serde_json::Value,
    ) -> SessionResult<usize> {
        let mut n = 0;
        for s in self.sessions_of(principal).await? {
            match self.put_server_data(&s.handle, key, value).await {
                Ok(()) => n += 1,
                Err(SessionError::Ended { .. } | SessionError::Unauthenticated) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(n)
    }

    /// The live sessions of the signed-in principal of `me`, most recently active
    /// first, at most [`MAX_DEVICES`] (`me` is always among them). `NotSignedIn` for an
    /// anonymous session: it has no other devices.
    pub async fn devices(&self, me: &Session) -> SessionResult<Vec<Session>> {
        if me.principal.is_anonymous() {
            return Err(SessionError::NotSignedIn);
        }
        let mut all = self.sessions_of(me.principal.as_str()).await?;
        if !all.iter().any(|s| s.handle == me.handle) {
            all.push(me.clone());
        }
        all.sort_by(|a, b| {
            (b.handle == me.handle, b.last_activity_at)
                .cmp(&(a.handle == me.handle, a.last_activity_at))
        });
        all.truncate(MAX_DEVICES);
        Ok(all)
    }

    /// Ends one session of `me`'s principal for `ended_by_user`, recording `me` as who
    /// ended it. `NotFound` for a handle that names no live session of this principal
    /// (another user's session looks exactly like one that does not exist).
    pub async fn end_device(&self, me: &Session, handle: &Handle) -> SessionResult<()> {
        if me.principal.is_anonymous() {
            return Err(SessionError::NotSignedIn);
        }
        let target = self.get(handle).await?;
        match target {
            Some(s) if s.is_active() && s.principal == me.principal => {}
            _ => return Err(SessionError::NotFound),
        }
        let by = me.handle.to_string();
        self.end_with(handle, EndReason::EndedByUser, Some(("by", by.as_str())))
            .await?;
        Ok(())
    }

    /// Ends every other live session of `me`'s principal (`ended_by_user`); returns how
    /// many this call ended.
    pub async fn end_other_devices(&self, me: &Session) -> SessionResult<usize> {
        if me.principal.is_anonymous() {
            return Err(SessionError::NotSignedIn);
        }
        let by = me.handle.to_string();
        let mut ended = 0;
        for s in self.sessions_of(me.principal.as_str()).await? {
            if s.handle == me.handle {
                continue;
            }
            if self
                .end_with(&s.handle, EndReason::EndedByUser, Some(("by", by.as_str())))
                .await?
                .is_some()
            {
                ended += 1;
            }
        }
        Ok(ended)
    }
}
