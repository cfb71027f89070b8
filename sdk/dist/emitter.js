//! A tiny typed event emitter: `on` returns the function that unsubscribes.
export class Emitter {
    constructor() {
        this.listeners = new Map();
    }
    on(type, fn) {
        let set = this.listeners.get(type);
        if (!set)
            this.listeners.set(type, (set = new Set()));
        set.add(fn);
        return () => this.off(type, fn);
    }
    off(type, fn) {
        this.listeners.get(type)?.delete(fn);
    }
    emit(type, e) {
        for (const fn of [...(this.listeners.get(type) ?? [])]) {
            // A throwing listener must not stop the SDK's own bookkeeping; report it async.
            try {
                fn(e);
            }
            catch (err) {
                queueMicrotask(() => {
                    throw err;
                });
            }
        }
    }
}
