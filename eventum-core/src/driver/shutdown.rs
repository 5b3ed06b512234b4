//! [`Shutdown`]: the graceful-shutdown plan, polled with the time.

use std::task::Waker;
use std::time::{Duration, Instant};

use crate::app::Command;

use super::Endpoint;

/// How long connections get to end after they were told to abort.
const ABORT_GRACE: Duration = Duration::from_millis(500);

/// A graceful shutdown in progress, from [`Endpoint::shutdown`]: new requests are
/// answered `503` from the start; open connections are served on through the drain
/// period, then told to close with 1001; connections that have not finished by the
/// shutdown timeout after that are aborted (their disconnect hooks still run), and after
/// a short grace the plan is done whatever is left. Keep accepting connections while it
/// runs, so health checks see the `503`.
///
/// ```
/// use eventum_core::app::App;
/// use eventum_core::driver::Endpoint;
/// use std::{task::Waker, time::Instant};
///
/// let endpoint = Endpoint::new(App::builder().build());
/// let session = endpoint.admit(Instant::now(), None).unwrap();
/// let mut plan = endpoint.shutdown(Instant::now());
/// assert!(plan.poll(Instant::now(), Waker::noop()).is_some()); // one connection left
/// drop(session); // its driver ends it
/// assert_eq!(plan.poll(Instant::now(), Waker::noop()), None); // done
/// ```
#[derive(Debug)]
pub struct Shutdown {
    endpoint: Endpoint,
    /// While draining: when the connections are told to close.
    drain_until: Option<Instant>,
    /// When the connections left are aborted (set when they are told to close).
    deadline: Instant,
    /// Set once the connections left at the deadline were told to abort.
    abort_deadline: Option<Instant>,
}

impl Shutdown {
    pub(crate) fn new(endpoint: Endpoint, now: Instant) -> Self {
        let options = endpoint.options();
        let drain_until = Some(far(now, options.drain_period));
        let deadline = far(now, options.shutdown_timeout);
        let mut plan = Shutdown {
            endpoint,
            drain_until,
            deadline,
            abort_deadline: None,
        };
        plan.poll_drain(now);
        plan
    }

    /// Advances the plan at `now`. Returns `None` when it is done (no connection left
    /// after the drain period, or the grace after aborting has passed), otherwise the
    /// instant to poll again at the latest; `waker` is woken when the last connection
    /// ends before then.
    pub fn poll(&mut self, now: Instant, waker: &Waker) -> Option<Instant> {
        if let Some(until) = self.poll_drain(now) {
            return Some(until);
        }
        let shared = self.endpoint.shared();
        shared.set_idle_waker(waker);
        if shared.active() == 0 {
            return None;
        }
        if now < self.deadline {
            return Some(self.deadline);
        }
        match self.abort_deadline {
            None => {
                log::debug!("shutdown: aborting {} connections after the timeout", shared.active());
                shared.hub.command_all(&Command::Abort);
                let until = now + ABORT_GRACE;
                self.abort_deadline = Some(until);
                Some(until)
            }
            Some(until) if now < until => Some(until),
            Some(_) => {
                log::warn!("shutdown: {} connections did not end; leaving them", shared.active());
                None
            }
        }
    }

    /// While the drain period lasts, when it ends; once it has, tells every connection
    /// to close and starts the shutdown timeout.
    fn poll_drain(&mut self, now: Instant) -> Option<Instant> {
        let until = self.drain_until?;
        if now < until {
            return Some(until);
        }
        self.drain_until = None;
        self.deadline = far(now, self.endpoint.options().shutdown_timeout);
        self.endpoint.close_all();
        None
    }
}

/// `now + wait`; a wait too large for an `Instant` waits a year (the far future in
/// practice).
fn far(now: Instant, wait: Duration) -> Instant {
    let wait = wait.min(Duration::from_secs(365 * 24 * 3600));
    now.checked_add(wait).unwrap_or(now)
}
