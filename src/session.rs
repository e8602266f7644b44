//! The login session: what we remember about a user, sealed into the session cookie, and a
//! small per-VM cache so a cookie already opened is not decrypted again on every request.

use crate::seal;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    #[serde(rename = "u")]
    pub user: String,
    #[serde(rename = "e", default)]
    pub email: String,
    #[serde(rename = "p", default)]
    pub preferred_username: String,
    #[serde(rename = "g", default)]
    pub groups: Vec<String>,
    #[serde(rename = "a", default)]
    pub access_token: String,
    #[serde(rename = "i", default)]
    pub id_token: String,
    #[serde(rename = "r", default)]
    pub refresh_token: String,
    #[serde(rename = "c")]
    pub created_at: u64,
    #[serde(rename = "x")]
    pub expires_at: u64,
}

fn aad(cookie_name: &str) -> Vec<u8> {
    format!("session:{cookie_name}").into_bytes()
}

pub fn seal(
    key: &[u8; 32],
    cookie_name: &str,
    session: &Session,
    nonce: [u8; 12],
) -> Option<String> {
    let json = serde_json::to_vec(session).ok()?;
    seal::seal(key, &aad(cookie_name), nonce, &json)
}

/// `None` for a tampered, foreign or expired cookie: all of them mean "not logged in".
pub fn open(key: &[u8; 32], cookie_name: &str, value: &str, now: u64) -> Option<Session> {
    let json = seal::open(key, &aad(cookie_name), value)?;
    let session: Session = serde_json::from_slice(&json).ok()?;
    (session.expires_at > now).then_some(session)
}

/// Sessions already opened, keyed by the exact cookie value, so AES-GCM and JSON parsing
/// stay off the per-request path. The key is the full sealed value: a cookie differing in
/// any byte is a miss and gets fully authenticated.
pub struct SessionCache {
    entries: HashMap<String, Rc<Session>>,
    order: VecDeque<String>,
    capacity: usize,
}

impl SessionCache {
    pub fn new(capacity: usize) -> Self {
        SessionCache {
            entries: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    pub fn get(&mut self, value: &str, now: u64) -> Option<Rc<Session>> {
        let hit = self.entries.get(value)?;
        if hit.expires_at > now {
            return Some(Rc::clone(hit));
        }
        self.entries.remove(value);
        None
    }

    pub fn insert(&mut self, value: String, session: Rc<Session>) {
        if self.entries.contains_key(&value) {
            return;
        }
        // FIFO eviction keeps memory bounded; `order` may hold keys already dropped as
        // expired, which is harmless.
        while self.entries.len() >= self.capacity {
            match self.order.pop_front() {
                Some(old) => {
                    self.entries.remove(&old);
                }
                None => self.entries.clear(),
            }
        }
        self.order.push_back(value.clone());
        self.entries.insert(value, session);
    }

    pub fn remove(&mut self, value: &str) {
        self.entries.remove(value);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Session {
        Session {
            user: "john".into(),
            email: "john@example.com".into(),
            preferred_username: "john".into(),
            groups: vec!["developers".into()],
            access_token: "at".into(),
            id_token: "it".into(),
            refresh_token: String::new(),
            created_at: 100,
            expires_at: 200,
        }
    }

    #[test]
    fn seal_open_round_trip() {
        let v = seal(&[1; 32], "_oauth2_proxy", &sample(), [3; 12]).unwrap();
        assert_eq!(open(&[1; 32], "_oauth2_proxy", &v, 150).unwrap(), sample());
    }

    #[test]
    fn expired_tampered_and_renamed_cookies_are_no_session() {
        let v = seal(&[1; 32], "_oauth2_proxy", &sample(), [3; 12]).unwrap();
        assert!(open(&[1; 32], "_oauth2_proxy", &v, 200).is_none());
        assert!(open(&[1; 32], "other", &v, 150).is_none());
        assert!(open(&[2; 32], "_oauth2_proxy", &v, 150).is_none());
        let mut t = v.clone().into_bytes();
        let mid = t.len() / 2;
        t[mid] = if t[mid] == b'A' { b'B' } else { b'A' };
        assert!(open(
            &[1; 32],
            "_oauth2_proxy",
            std::str::from_utf8(&t).unwrap(),
            150
        )
        .is_none());
        assert!(open(&[1; 32], "_oauth2_proxy", &v[..v.len() - 4], 150).is_none());
    }

    #[test]
    fn cache_honours_expiry_and_bound() {
        let mut c = SessionCache::new(2);
        c.insert("a".into(), Rc::new(sample()));
        assert!(c.get("a", 150).is_some());
        assert!(c.get("a", 200).is_none());
        assert!(c.is_empty());
        c.insert("a".into(), Rc::new(sample()));
        c.insert("b".into(), Rc::new(sample()));
        c.insert("c".into(), Rc::new(sample()));
        assert_eq!(c.len(), 2);
        assert!(c.get("a", 150).is_none());
        assert!(c.get("c", 150).is_some());
        assert!(c.get("c ", 150).is_none());
    }
}
