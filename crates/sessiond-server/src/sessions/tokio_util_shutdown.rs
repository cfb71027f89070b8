//! A cloneable shutdown signal passed down explicitly (no globals): the server's older
//! shutdown type, kept while the rest of the server moves to `CancellationToken`.

use tokio::sync::watch;

/// Resolves once shutdown has been requested.
#[derive(Clone)]
pub struct Signal(pub watch::Receiver<bool>);

impl Signal {
    pub async fn wait(&mut self) {
        while !*self.0.borrow() {
            if self.0.changed().await.is_err() {
                return;
            }
        }
    }
    pub fn is_set(&self) -> bool {
        *self.0.borrow()
    }
}

/// The sending half: `trigger()` starts the shutdown.
pub struct Trigger(pub watch::Sender<bool>);

impl Trigger {
    pub fn trigger(&self) {
        let _ = self.0.send(true);
    }
}

pub fn channel() -> (Trigger, Signal) {
    let (tx, rx) = watch::channel(false);
    (Trigger(tx), Signal(rx))
}
