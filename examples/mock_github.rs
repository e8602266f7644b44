//! The tests' mock GitHub (`tests/support/mock_github.rs`) as a program, for `just demo-github`:
//! its web host (`/login/oauth/authorize`, `/login/oauth/access_token`) and its API host
//! (`/api/v3/user`, `/user/emails`, `/user/orgs`, …) on fixed ports of 127.0.0.1.
//!
//!   cargo run --example mock_github -- [--web-port 9000] [--api-port 9001]
//!       [--client-id demo-app] [--client-secret S] [--redirect-uri URL]
//!
//! One user, `octocat` (id 583231, verified primary email octocat@example.com, member of the
//! organisation `example-org` and its team `demo`), approves every authorization request: the
//! login needs no form. Every request the mock answers is printed (credentials left out), with
//! any protocol mistake of the client. Runs until killed.
//!
//! The mock binds its listeners on free ports (`MockGitHub::start`); this program relays the
//! fixed ports to them.

#[allow(dead_code)]
#[path = "../tests/support/jwt.rs"]
mod jwt;
#[allow(dead_code)]
#[path = "../tests/support/mock_common.rs"]
mod mock_common;
#[allow(dead_code)]
#[path = "../tests/support/mock_github.rs"]
mod mock_github;
#[allow(dead_code)]
#[path = "../tests/support/upstream.rs"]
mod upstream;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::time::Duration;

use mock_github::{GhUser, MockGitHub};

/// Seconds since the Unix epoch (what `tests/support/mod.rs` gives the mocks).
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

struct Args {
    web_port: u16,
    api_port: u16,
    client_id: String,
    client_secret: String,
    redirect_uri: Option<String>,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        web_port: 9000,
        api_port: 9001,
        client_id: "demo-app".into(),
        client_secret: "demo-app-secret-change-me".into(),
        redirect_uri: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        let port = |v: String| {
            v.parse::<u16>()
                .map_err(|_| format!("{flag}: bad port {v:?}"))
        };
        match flag.as_str() {
            "--web-port" => a.web_port = port(value()?)?,
            "--api-port" => a.api_port = port(value()?)?,
            "--client-id" => a.client_id = value()?,
            "--client-secret" => a.client_secret = value()?,
            "--redirect-uri" => a.redirect_uri = Some(value()?),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(a)
}

/// Copies one direction of a relayed connection until EOF, then half-closes the other side.
fn pump(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// Accepts on 127.0.0.1:`port` and relays every connection to 127.0.0.1:`target`.
fn relay(port: u16, target: u16) -> Result<(), String> {
    let listener = TcpListener::bind(("127.0.0.1", port))
        .map_err(|e| format!("cannot listen on 127.0.0.1:{port}: {e}"))?;
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                continue;
            };
            let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
                continue;
            };
            std::thread::spawn(move || pump(client, server));
            std::thread::spawn(move || pump(s2, c2));
        }
    });
    Ok(())
}

fn main() {
    let a = args().unwrap_or_else(|e| {
        eprintln!("mock_github: {e}");
        std::process::exit(2);
    });
    let gh = MockGitHub::start(&a.client_id, &a.client_secret);
    gh.add_user(
        GhUser::new("octocat", 583231)
            .org("example-org", 9919)
            .team("example-org", "demo", 42),
    );
    gh.approve_as("octocat");
    if let Some(r) = &a.redirect_uri {
        gh.set_redirect_uri(r);
    }
    for (port, target) in [(a.web_port, gh.web_port()), (a.api_port, gh.api_port())] {
        if let Err(e) = relay(port, target) {
            eprintln!("mock_github: {e}");
            std::process::exit(1);
        }
    }
    println!(
        "mock GitHub: web http://127.0.0.1:{} (login_url, redeem_url), \
         API http://127.0.0.1:{}{} (validate_url); user octocat",
        a.web_port,
        a.api_port,
        mock_github::API_PREFIX
    );
    // Print what the mock answered, as it happens.
    let (mut seen, mut flagged) = (0, 0);
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let all = gh.requests();
        for s in all.iter().skip(seen) {
            // Credentials stay out of the output: only the scheme of `Authorization`.
            let auth = s
                .header("authorization")
                .map(|a| a.split(' ').next().unwrap_or("").to_string());
            println!(
                "{} {} {} -> {}{}",
                s.listener,
                s.method,
                s.target,
                s.status,
                auth.map(|a| format!(" [authorization: {a} …]"))
                    .unwrap_or_default()
            );
        }
        seen = all.len();
        let violations = gh.violations();
        for v in violations.iter().skip(flagged) {
            println!("protocol violation by the client: {v}");
        }
        flagged = violations.len();
    }
}
