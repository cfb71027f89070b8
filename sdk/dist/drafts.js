//! One conversation's draft: debounced autosave, saves serialised on the seq of the
//! previous answer, attachments, conflicts surfaced (never overwritten), a local
//! encrypted copy when the server cannot be reached, and clear-after-send.
import { Debouncer, hash } from "./timing.js";
/** How long after a failed save (network, 5xx) it is retried. */
const RETRY_MS = 5000;
export class DraftHandle {
    constructor(conversation, c) {
        this.conversation = conversation;
        this.c = c;
        this.text = "";
        this.seq = 0;
        this.conflict = null;
        this.server = [];
        /** Attachments not yet confirmed by the server, by name. */
        this.pendingAtts = new Map();
        this.savedH = hash("");
        this.dirty = false;
        this.loaded = false;
        this.dropped = false;
        this.ops = 0;
        this.queued = false;
        this.chain = Promise.resolve();
        this.lw = Promise.resolve();
        this.lastLocal = "";
        /** Hash of the text the local copy holds ("" : none). */
        this.localH = "";
        this.retryTimer = null;
        this.deb = new Debouncer(() => void this.flush(), c.draftDebounceMs, 4 * c.draftDebounceMs, c.clock);
    }
    get path() {
        return `/v1/drafts/${encodeURIComponent(this.conversation)}`;
    }
    /** Attachments to show: the server's plus those still uploading. */
    get attachments() {
        const out = this.server.filter((a) => !this.pendingAtts.has(a.name));
        for (const [name, b] of this.pendingAtts)
            out.push({ name, content_type: b.type, size: b.size });
        return out;
    }
    /** true when there is something unsent (text or attachments). */
    get hasContent() {
        return this.text.trim() !== "" || this.attachments.length > 0;
    }
    /** true when the text as it stands is in this device's local copy (never assumed:
     * set only after the copy was written). */
    get savedLocally() {
        return this.localH !== "" && this.localH === hash(this.text);
    }
    /** true while a change has not been confirmed by the server. */
    get unsaved() {
        return this.dirty || this.pendingAtts.size > 0 || this.conflict !== null || this.deb.pending;
    }
    state(local = false) {
        return { conversation: this.conversation, text: this.text, seq: this.seq, attachments: this.attachments, local };
    }
    /** The draft to show: reloaded from the server unless this tab holds unsaved work. */
    async get() {
        await this.chain;
        if (this.loaded && this.unsaved)
            return this.state();
        return this.enqueue(() => this.load());
    }
    /** Sets the text; saved after the debounce (and on switch, hide and unload). */
    set(text) {
        if (this.dropped)
            return;
        this.text = text;
        this.dirty = true;
        this.deb.call();
    }
    /** Adds or replaces an attachment; uploaded at once (kept locally until confirmed). */
    attach(name, blob) {
        this.pendingAtts.set(name, blob);
        const lk = this.c.lk;
        const stored = lk ? this.c.local.putBlob(lk, this.conversation, name, blob).catch(() => undefined) : undefined;
        return this.enqueue(async () => {
            await stored;
            await this.save();
        });
    }
    /** Removes an attachment. */
    detach(name) {
        return this.enqueue(async () => {
            const lk = this.c.lk;
            if (lk)
                await this.c.local.delBlob(lk, this.conversation, name).catch(() => undefined);
            this.pendingAtts.delete(name);
            if (this.server.some((a) => a.name === name) && !this.c.ended) {
                const r = await this.c.req("DELETE", `${this.path}/attachments/${encodeURIComponent(name)}?seq=${this.seq}`);
                if (r.status === 404)
                    this.server = this.server.filter((a) => a.name !== name);
                else
                    this.applied(r);
            }
            await this.writeLocal();
        });
    }
    /** The bytes of an attachment: from memory, the server, or the local copy. */
    async attachment(name) {
        const p = this.pendingAtts.get(name);
        if (p)
            return p;
        if (!this.c.ended) {
            const r = await this.c.req("GET", `${this.path}/attachments/${encodeURIComponent(name)}`, { raw: true });
            if (r.status === 200 && r.res)
                return r.res.blob();
        }
        const lk = this.c.lk;
        return lk ? this.c.local.getBlob(lk, this.conversation, name) : null;
    }
    /** Saves now whatever is pending. With `keepalive` (page hide/unload) the request is
     * started synchronously and may outlive the page. */
    flush(keepalive = false) {
        this.deb.cancel();
        if (this.dropped || (!this.dirty && !this.pendingAtts.size))
            return this.chain;
        if (keepalive && this.ops === 0)
            return this.enqueue(() => this.save(true), true);
        if (this.queued)
            return this.chain;
        this.queued = true;
        return this.enqueue(() => {
            this.queued = false;
            return this.save();
        });
    }
    /** After the app confirmed the message was sent: deletes the draft naming the current
     * seq. Resolves false (nothing removed) on conflict or failure. */
    clear() {
        this.deb.cancel();
        let ok = false;
        return this.enqueue(async () => {
            if (this.c.ended)
                return;
            const r = await this.c.req("DELETE", `${this.path}?seq=${this.seq}`);
            if (r.status === 200 || r.status === 404) {
                if (r.status === 200)
                    this.seq = Number(r.data?.seq ?? this.seq + 1);
                this.reset("", []);
                this.c.fire("draft_saved", { conversation: this.conversation, seq: this.seq });
                ok = true;
            }
            else
                this.applied(r);
            const lk = this.c.lk;
            if (ok && lk)
                await this.c.local.remove(lk, this.conversation).catch(() => undefined);
        }).then(() => ok);
    }
    /** Resolves a conflict by keeping this tab's version, naming the server's current seq. */
    overwrite(seq) {
        this.conflict = null;
        this.seq = seq;
        this.savedH = "";
        this.dirty = true;
        return this.flush();
    }
    /** Resolves a conflict by taking the server's version. */
    discardMine() {
        const cur = this.conflict;
        if (cur) {
            const lk = this.c.lk;
            if (lk)
                for (const n of this.pendingAtts.keys())
                    void this.c.local.delBlob(lk, this.conversation, n).catch(() => undefined);
            this.seq = cur.seq;
            this.reset(cur.current?.deleted ? "" : cur.current?.text ?? "", cur.current?.deleted ? [] : cur.current?.attachments ?? []);
            void this.writeLocal();
        }
        return this.state();
    }
    /** Forgets everything in memory (the principal changed); storage is untouched. */
    drop() {
        this.dropped = true;
        this.deb.cancel();
        if (this.retryTimer !== null)
            this.c.clock.clearTimeout(this.retryTimer);
    }
    reset(text, atts) {
        this.text = text;
        this.server = atts;
        this.pendingAtts.clear();
        this.savedH = hash(text);
        this.dirty = false;
        this.conflict = null;
    }
    enqueue(op, now = false) {
        this.ops++;
        const run = async () => {
            try {
                return await op();
            }
            finally {
                this.ops--;
            }
        };
        const p = now ? run() : this.chain.then(run);
        this.chain = p.then(() => undefined, () => undefined);
        return p;
    }
    async load() {
        const c = this.c;
        const lk = c.lk;
        const local = lk ? await c.local.read(lk, this.conversation) : null;
        const r = c.ended ? null : await c.req("GET", this.path);
        if (this.dropped)
            return this.state();
        this.loaded = true;
        const ok = r?.status === 200 || r?.status === 404;
        const server = r?.status === 200 && !r.data?.deleted ? r.data : null;
        // A deleted draft answers 404 with its tombstone's seq, so the next draft starts there.
        const sseq = Number(r?.data?.seq ?? 0);
        const stext = server?.text ?? "";
        const pendingLocal = !!local && (local.p || local.atts.some((a) => a.p));
        if (ok && !pendingLocal) {
            this.seq = sseq;
            this.reset(stext, server?.attachments ?? []);
            void this.writeLocal();
            return this.state();
        }
        if (!local)
            return this.state(true);
        await this.adoptLocal(local.atts);
        this.text = local.text;
        if (!ok) {
            this.seq = local.seq;
            this.dirty = local.p;
            return this.state(true);
        }
        this.server = server?.attachments ?? [];
        this.savedH = hash(stext);
        if (local.seq === sseq) {
            // Nothing happened on the server since this copy was made: upload it.
            this.seq = sseq;
            this.dirty = true;
            void this.flush();
        }
        else if (local.text === stext && !this.pendingAtts.size) {
            this.seq = sseq;
            this.dirty = false;
            void this.writeLocal();
        }
        else {
            this.seq = local.seq;
            this.raise(server, sseq);
        }
        return this.state();
    }
    async adoptLocal(atts) {
        const lk = this.c.lk;
        for (const a of atts) {
            const b = a.p && lk ? await this.c.local.getBlob(lk, this.conversation, a.name) : null;
            if (b)
                this.pendingAtts.set(a.name, b);
        }
    }
    raise(current, seq) {
        this.conflict = {
            kind: "draft",
            conversation: this.conversation,
            mine: { text: this.text, attachments: [...this.pendingAtts.keys()] },
            current,
            seq,
        };
        this.c.fire("conflict", this.conflict);
    }
    async save(keepalive = false) {
        const c = this.c;
        if (this.conflict || this.dropped)
            return;
        const text = this.text;
        const h = hash(text);
        this.dirty = false;
        const lw = this.writeLocal();
        if (c.ended) {
            this.dirty = true; // uploaded after sign-in
            return lw;
        }
        if (h !== this.savedH) {
            const r = await c.req("PUT", this.path, { json: { text, seq: this.seq }, keepalive });
            if (!this.applied(r))
                return void (await this.writeLocal());
            this.savedH = h;
        }
        for (const [name, blob] of keepalive ? [] : [...this.pendingAtts]) {
            const r = await c.req("PUT", `${this.path}/attachments/${encodeURIComponent(name)}?seq=${this.seq}`, {
                body: blob,
                type: blob.type.split(";")[0] || "application/octet-stream",
            });
            if (!this.applied(r))
                break;
            if (this.pendingAtts.get(name) === blob)
                this.pendingAtts.delete(name);
        }
        await this.writeLocal();
    }
    /** Applies a write's answer; false if it was not applied (conflict, failure, ended). */
    applied(r) {
        if (r.status === 200) {
            const d = r.data;
            this.seq = Number(d.seq);
            if (d.attachments)
                this.server = d.attachments;
            this.c.fire("draft_saved", { conversation: this.conversation, seq: this.seq });
            return true;
        }
        this.dirty = true;
        if (r.status === 409) {
            const cur = (r.data?.current ?? null);
            this.raise(cur, Number(cur?.seq ?? 0));
        }
        else if (r.status === 0 || r.status >= 500) {
            if (this.retryTimer !== null)
                this.c.clock.clearTimeout(this.retryTimer);
            this.retryTimer = this.c.clock.setTimeout(() => {
                this.retryTimer = null;
                void this.flush();
            }, RETRY_MS);
        }
        else if (r.status !== 401) {
            // Refused for good (too large, bad type): retrying cannot help.
            this.dirty = false;
            this.pendingAtts.clear();
            this.c.fire("error", { code: String(r.data?.code ?? r.status), conversation: this.conversation });
        }
        return false;
    }
    /** Writes the local copy (serialised, latest state wins); skips unchanged content. */
    /** Writes the local copy (serialised, latest state wins); skips unchanged content.
     * Unconfirmed text is announced with `draft_local` ({saved}: whether it is now on this
     * device), so a page never claims a copy that was not written. */
    writeLocal() {
        this.lw = this.lw.then(async () => {
            if (this.dropped)
                return;
            const lk = this.c.lk;
            const text = this.text;
            const h = hash(text);
            const atts = this.attachments.map((a) => ({ name: a.name, type: a.content_type, size: a.size, p: this.pendingAtts.has(a.name) }));
            const d = { text, seq: this.seq, p: h !== this.savedH, atts };
            const sig = JSON.stringify({ ...d, text: h, k: lk?.prefix });
            if (sig === this.lastLocal)
                return;
            this.lastLocal = sig;
            let saved = false;
            try {
                if (!lk)
                    saved = false;
                else if (!this.hasContent && !d.p)
                    await this.c.local.remove(lk, this.conversation);
                else
                    saved = await this.c.local.write(lk, this.conversation, d);
            }
            catch {
                this.lastLocal = ""; // not written: try again with the next change
            }
            this.localH = saved ? h : "";
            if (d.p)
                this.c.fire("draft_local", { conversation: this.conversation, saved });
        }).catch(() => undefined);
        return this.lw;
    }
}
