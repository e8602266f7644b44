//! The coordinator on its own, fed events by hand: what it keeps stays bounded, and it
//! asks for a tick period only when that changes. Whole flows through the adapter are in
//! `crate::filter`'s tests.

use super::*;
use crate::config::tests_support::config;
use crate::gate::Request;

const NOW_MS: u64 = 1_700_000_000_000;

fn random(buf: &mut [u8]) -> bool {
    buf.fill(7);
    true
}

fn drain(c: &mut Coordinator) -> Vec<Action> {
    std::iter::from_fn(|| c.poll_action()).collect()
}

fn browser(path: &str) -> Request {
    Request {
        headers: [
            (":method", "GET"),
            (":path", path),
            (":authority", "app.example.com"),
            ("accept", "text/html"),
        ]
        .into(),
    }
}

/// Answers every read with empty shared data and every dispatch with a token; the tokens.
fn carry(c: &mut Coordinator, now: u64) -> Vec<u32> {
    let mut tokens = Vec::new();
    while let Some(action) = c.poll_action() {
        match action {
            Action::Read { read, keys } => {
                let values = vec![(None, None); keys.len()];
                c.handle(Event::Read { read, values }, now);
            }
            Action::Write {
                write: Some(write), ..
            } => {
                let event = Event::Written {
                    write,
                    ok: true,
                    version: Some(1),
                };
                c.handle(event, now);
            }
            Action::Dispatch { call, .. } => {
                let token = 1000 + u32::try_from(call).unwrap();
                tokens.push(token);
                c.handle(
                    Event::Dispatched {
                        call,
                        token: Some(token),
                    },
                    now,
                );
            }
            _ => {}
        }
    }
    tokens
}

#[test]
fn a_tick_period_is_asked_for_only_when_it_changes() {
    let mut c = Coordinator::new(config(), random);
    let first: Vec<_> = drain(&mut c)
        .into_iter()
        .filter_map(|a| match a {
            Action::TickEvery(ms) => Some(ms),
            _ => None,
        })
        .collect();
    assert_eq!(first, [1]);
    c.handle(Event::Tick, NOW_MS);
    let loads = carry(&mut c, NOW_MS);
    assert_eq!(loads.len(), 1, "discovery");
    // Still loading: a request parks, and nothing new is asked of the tick.
    c.handle(
        Event::Request {
            stream: 1,
            req: browser("/a"),
            exact: true,
        },
        NOW_MS,
    );
    c.handle(
        Event::Request {
            stream: 2,
            req: browser("/b"),
            exact: true,
        },
        NOW_MS,
    );
    let asked: Vec<_> = drain(&mut c)
        .into_iter()
        .filter(|a| matches!(a, Action::TickEvery(_)))
        .collect();
    assert_eq!(asked.len(), 1, "eager once: {asked:?}");
}

#[test]
fn callouts_whose_answer_never_comes_are_forgotten() {
    let mut c = Coordinator::new(config(), random);
    carry(&mut c, NOW_MS);
    c.handle(Event::Tick, NOW_MS);
    let [token] = carry(&mut c, NOW_MS)[..] else {
        panic!("expected the discovery load");
    };
    assert!(c.owns(token));
    // Long after the callout's timeout the host can no longer answer it.
    let later = NOW_MS + c.config.idp_timeout_ms + 5001;
    c.handle(Event::Tick, later);
    carry(&mut c, later);
    assert!(!c.owns(token));
    // A late answer anyway changes nothing.
    c.handle(
        Event::Answer {
            token,
            answer: Some((200, b"{}")),
            too_large: false,
        },
        later,
    );
    assert!(drain(&mut c)
        .iter()
        .all(|a| !matches!(a, Action::Continue { .. })));
}

#[test]
fn reports_nobody_asked_for_are_ignored() {
    let mut c = Coordinator::new(config(), random);
    drain(&mut c);
    c.handle(
        Event::Read {
            read: 999,
            values: vec![],
        },
        NOW_MS,
    );
    c.handle(
        Event::Written {
            write: 998,
            ok: true,
            version: Some(3),
        },
        NOW_MS,
    );
    c.handle(
        Event::Dispatched {
            call: 997,
            token: Some(5),
        },
        NOW_MS,
    );
    c.handle(
        Event::Answer {
            token: 5,
            answer: None,
            too_large: false,
        },
        NOW_MS,
    );
    c.stream_done(42);
    assert!(drain(&mut c).is_empty());
    assert!(!c.owns(5));
}

#[test]
fn a_stream_that_goes_away_leaves_nothing_behind() {
    let mut c = Coordinator::new(config(), random);
    carry(&mut c, NOW_MS);
    for stream in 0..50 {
        c.handle(
            Event::Request {
                stream,
                req: browser("/x"),
                exact: true,
            },
            NOW_MS,
        );
    }
    drain(&mut c);
    assert_eq!(c.gauges()[4], ("parked_requests", 50));
    for stream in 0..50 {
        c.stream_done(stream);
    }
    assert_eq!(c.gauges()[4], ("parked_requests", 0));
    assert!(c.paused.is_empty() && c.replies.is_empty());
}
