//! A tiny typed event emitter: `on` returns the function that unsubscribes.

export class Emitter<M> {
  private readonly listeners = new Map<keyof M, Set<(e: never) => void>>();

  on<K extends keyof M>(type: K, fn: (e: M[K]) => void): () => void {
    let set = this.listeners.get(type);
    if (!set) this.listeners.set(type, (set = new Set()));
    set.add(fn);
    return () => this.off(type, fn);
  }

  off<K extends keyof M>(type: K, fn: (e: M[K]) => void): void {
    this.listeners.get(type)?.delete(fn);
  }

  protected emit<K extends keyof M>(type: K, e: M[K]): void {
    for (const fn of [...(this.listeners.get(type) ?? [])]) {
      // A throwing listener must not stop the SDK's own bookkeeping; report it async.
      try {
        (fn as (e: M[K]) => void)(e);
      } catch (err) {
        queueMicrotask(() => {
          throw err;
        });
      }
    }
  }
}
