//! Everything that waits, in one sans-IO state machine with quinn-proto's shape: host
//! events go into [`Coordinator::handle`] with the time, and what the host must do comes
//! out of [`Coordinator::poll_action`], including when to be woken next
//! ([`Action::TickEvery`]). It owns the gate's state and drives it: requests, callouts and
//! their answers, requests parked for an issuer's metadata or fresh keys (`waits`, over the
//! issuer loader), and the refresh slots in shared data through which workers agree on who
//! refreshes a session (`slots`). The `filter` adapter only carries out its actions.

mod io;
mod machine;
mod ops;
mod slots;
mod steps;
pub mod waits;

pub use io::{Action, Event, HeaderEdit};
pub use machine::Coordinator;

#[cfg(test)]
mod tests;
