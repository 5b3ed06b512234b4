//! [`Shutdown`]: the graceful-shutdown plan, polled with the time.

use std::task::Waker;
use std::time::{Duration, Instant};

use crate::app::Command;

use super::Endpoint;

/// How long connections get to end after they were told to abort.
const ABORT_GRACE: Duration = Duration::from_millis(500);

/// A graceful shutdown in progress, from [`Endpoint::shutdown`]: every connection was
/// told to close with 1001; connections that have not finished by the shutdown timeout
/// are aborted (their disconnect hooks still run), and after a short grace the plan is
/// done whatever is left.
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
    deadline: Instant,
    /// Set once the connections left at the deadline were told to abort.
    abort_deadline: Option<Instant>,
}

impl Shutdown {
    pub(crate) fn new(endpoint: Endpoint, deadline: Instant) -> Self {
        Shutdown {
            endpoint,
            deadline,
            abort_deadline: None,
        }
    }

    /// Advances the plan at `now`. Returns `None` when it is done (no connection left,
    /// or the grace after aborting has passed), otherwise the instant to poll again at
    /// the latest; `waker` is woken when the last connection ends before then.
    pub fn poll(&mut self, now: Instant, waker: &Waker) -> Option<Instant> {
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
}
