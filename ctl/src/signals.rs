//! SIGINT and SIGTERM (Ctrl-C, `kill`) as something to wait for. The handlers are installed when
//! [`Interrupt::install`] returns, so no signal after that takes the default action (dying with a
//! relay paused, a stack half started).

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

#[derive(Clone)]
pub struct Interrupt(watch::Receiver<bool>);

impl Interrupt {
    pub fn install() -> Self {
        let (tx, rx) = watch::channel(false);
        match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
            (Ok(mut int), Ok(mut term)) => {
                tokio::spawn(async move {
                    tokio::select! {
                        _ = int.recv() => {}
                        _ = term.recv() => {}
                    }
                    tracing::info!("interrupted by a signal");
                    let _ = tx.send(true);
                });
            }
            // No handler could be installed: the default ones stay; nothing will be reported.
            _ => std::mem::forget(tx),
        }
        Self(rx)
    }

    /// Resolves once a signal came.
    pub async fn wait(&self) {
        let mut rx = self.0.clone();
        let _ = rx.wait_for(|v| *v).await;
    }
}
