import type { LocalKey, LocalStore } from "./local.js";
import type { Clock } from "./timing.js";
export interface AttachmentMeta {
    name: string;
    content_type: string;
    size: number;
}
/** A draft as the server returns it. */
export interface ServerDraft {
    conversation: string;
    seq: number;
    updated_at?: string;
    text: string;
    attachments: AttachmentMeta[];
    deleted?: boolean;
}
/** What `get()` returns: the text and attachments to show. */
export interface Draft {
    conversation: string;
    text: string;
    seq: number;
    attachments: AttachmentMeta[];
    /** true when shown from the local copy because the server could not be asked. */
    local: boolean;
}
/** Another tab (or a send) changed the draft; nothing was overwritten. Call
 * `overwrite(seq)` to keep mine, or `discardMine()` to take `current`. */
export interface DraftConflict {
    kind: "draft";
    conversation: string;
    mine: {
        text: string;
        attachments: string[];
    };
    /** The server's draft, or null if it was deleted (sent) or never existed. */
    current: ServerDraft | null;
    /** The server's current seq: the one `overwrite` must name. */
    seq: number;
}
export interface Res {
    status: number;
    data: any;
    res?: Response;
}
/** What a draft needs from the client. */
export interface DraftHost {
    readonly ended: boolean;
    readonly lk: LocalKey | null;
    readonly local: LocalStore;
    readonly clock: Clock;
    readonly draftDebounceMs: number;
    req(method: string, path: string, o?: {
        json?: unknown;
        body?: BodyInit;
        type?: string;
        keepalive?: boolean;
        raw?: boolean;
    }): Promise<Res>;
    fire(type: "conflict", e: DraftConflict): void;
    fire(type: "draft_saved", e: {
        conversation: string;
        seq: number;
    }): void;
    fire(type: "draft_local", e: {
        conversation: string;
        saved: boolean;
    }): void;
    fire(type: "error", e: {
        code: string;
        conversation?: string;
    }): void;
}
export declare class DraftHandle {
    readonly conversation: string;
    private readonly c;
    text: string;
    seq: number;
    conflict: DraftConflict | null;
    private server;
    /** Attachments not yet confirmed by the server, by name. */
    private readonly pendingAtts;
    private savedH;
    private dirty;
    private loaded;
    private dropped;
    private ops;
    private queued;
    private chain;
    private lw;
    private lastLocal;
    /** Hash of the text the local copy holds ("" : none). */
    private localH;
    private retryTimer;
    private readonly deb;
    constructor(conversation: string, c: DraftHost);
    private get path();
    /** Attachments to show: the server's plus those still uploading. */
    get attachments(): AttachmentMeta[];
    /** true when there is something unsent (text or attachments). */
    get hasContent(): boolean;
    /** true when the text as it stands is in this device's local copy (never assumed:
     * set only after the copy was written). */
    get savedLocally(): boolean;
    /** true while a change has not been confirmed by the server. */
    get unsaved(): boolean;
    private state;
    /** The draft to show: reloaded from the server unless this tab holds unsaved work. */
    get(): Promise<Draft>;
    /** Sets the text; saved after the debounce (and on switch, hide and unload). */
    set(text: string): void;
    /** Adds or replaces an attachment; uploaded at once (kept locally until confirmed). */
    attach(name: string, blob: Blob): Promise<void>;
    /** Removes an attachment. */
    detach(name: string): Promise<void>;
    /** The bytes of an attachment: from memory, the server, or the local copy. */
    attachment(name: string): Promise<Blob | null>;
    /** Saves now whatever is pending. With `keepalive` (page hide/unload) the request is
     * started synchronously and may outlive the page. */
    flush(keepalive?: boolean): Promise<void>;
    /** After the app confirmed the message was sent: deletes the draft naming the current
     * seq. Resolves false (nothing removed) on conflict or failure. */
    clear(): Promise<boolean>;
    /** Resolves a conflict by keeping this tab's version, naming the server's current seq. */
    overwrite(seq: number): Promise<void>;
    /** Resolves a conflict by taking the server's version. */
    discardMine(): Draft;
    /** Forgets everything in memory (the principal changed); storage is untouched. */
    drop(): void;
    private reset;
    private enqueue;
    private load;
    private adoptLocal;
    private raise;
    private save;
    /** Applies a write's answer; false if it was not applied (conflict, failure, ended). */
    private applied;
    /** Writes the local copy (serialised, latest state wins); skips unchanged content. */
    /** Writes the local copy (serialised, latest state wins); skips unchanged content.
     * Unconfirmed text is announced with `draft_local` ({saved}: whether it is now on this
     * device), so a page never claims a copy that was not written. */
    writeLocal(): Promise<void>;
}
