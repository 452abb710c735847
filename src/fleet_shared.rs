//! One fan-out for many callers of `/api/v1/fleet`: callers that arrive while the peers
//! are being asked (and, with `fleet.coalesce`, within that long of when it began) get
//! the same answer, serialized once. N concurrent callers cost one request per peer, not N, and hold one
//! shared buffer between them. The fan-out runs as a task of its own, so a caller that
//! hangs up does not cancel it for the others.

use crate::daemon::State;
use bytes::Bytes;
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

type Answer = Shared<BoxFuture<'static, Option<Bytes>>>;

/// One fan-out: when it began, when it ended (set by its task, whether or not anyone
/// still waits for it), and its answer.
struct FanOut {
    began: Instant,
    ended: Arc<OnceLock<Instant>>,
    answer: Answer,
}

impl FanOut {
    /// Whether a caller arriving now may have this answer: it is still being gathered,
    /// or it ended within `coalesce` of when it began and is that fresh still.
    fn shareable(&self, coalesce: Duration) -> bool {
        match self.ended.get() {
            None => true,
            Some(_) => self.began.elapsed() < coalesce,
        }
    }
}

#[derive(Default)]
pub struct Coalesced {
    current: Mutex<Option<FanOut>>,
}

impl Coalesced {
    /// The fleet view as JSON; `None` if gathering it panicked.
    pub async fn get(&self, state: &Arc<State>) -> Option<Bytes> {
        let answer = {
            let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
            match &*current {
                Some(f) if f.shareable(state.config.fleet.coalesce) => f.answer.clone(),
                _ => {
                    let s = state.clone();
                    let ended = Arc::new(OnceLock::new());
                    let mark = ended.clone();
                    let task = tokio::spawn(async move {
                        // Marked ended however the task ends, a panic included, so a
                        // failed fan-out is not shared forever.
                        let _ended = Ended(mark);
                        let view = crate::fleet::fleet(&s).await;
                        Bytes::from(serde_json::to_vec(&view).expect("the fleet view is JSON"))
                    });
                    let answer = async move { task.await.ok() }.boxed().shared();
                    *current = Some(FanOut {
                        began: Instant::now(),
                        ended,
                        answer: answer.clone(),
                    });
                    answer
                }
            }
        };
        answer.await
    }
}

struct Ended(Arc<OnceLock<Instant>>);

impl Drop for Ended {
    fn drop(&mut self) {
        let _ = self.0.set(Instant::now());
    }
}
