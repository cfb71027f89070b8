export declare class Emitter<M> {
    private readonly listeners;
    on<K extends keyof M>(type: K, fn: (e: M[K]) => void): () => void;
    off<K extends keyof M>(type: K, fn: (e: M[K]) => void): void;
    protected emit<K extends keyof M>(type: K, e: M[K]): void;
}
