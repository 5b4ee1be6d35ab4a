//! Session-ticket keys that rotate on the caller's schedule.
//!
//! Tickets are sealed with AES-256-GCM under the current key; the previous key still
//! opens tickets, so a ticket stays usable for between one and two rotation intervals.
//! Keys live in memory only and are never logged; a process restart invalidates every
//! ticket (clients fall back to a full handshake). The caller rotates (a timer in the
//! edge), so this module reads no clock.
//!
//! Ticket layout: `key id (16 bytes) | nonce (12 bytes) | ciphertext | tag (16 bytes)`,
//! with the key id as associated data.

use std::sync::RwLock;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use rustls::server::ProducesTickets;

use crate::TlsError;

const KEY_ID_LEN: usize = 16;
const TAG_LEN: usize = 16;
/// Tickets larger than this are not even tried (rustls's own tickets are far smaller).
const MAX_TICKET_LEN: usize = 8 * 1024;

struct TicketKey {
    id: [u8; KEY_ID_LEN],
    key: LessSafeKey,
}

impl TicketKey {
    fn generate(rng: &SystemRandom) -> Result<Self, TlsError> {
        let mut id = [0u8; KEY_ID_LEN];
        rng.fill(&mut id).map_err(|_| TlsError::Random)?;
        let mut bytes = [0u8; 32];
        rng.fill(&mut bytes).map_err(|_| TlsError::Random)?;
        let key = UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| TlsError::Random)?;
        Ok(Self {
            id,
            key: LessSafeKey::new(key),
        })
    }
}

struct Keys {
    current: TicketKey,
    previous: Option<TicketKey>,
}

/// A [`ProducesTickets`] whose keys the caller rotates with [`RotatingTicketer::rotate`].
pub struct RotatingTicketer {
    keys: RwLock<Keys>,
    rng: SystemRandom,
    lifetime_secs: u32,
}

impl std::fmt::Debug for RotatingTicketer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RotatingTicketer")
            .field("lifetime_secs", &self.lifetime_secs)
            .finish_non_exhaustive()
    }
}

impl RotatingTicketer {
    /// A ticketer with a fresh key. `rotation_secs` is how often the caller promises to
    /// call [`Self::rotate`]; it is also the lifetime advertised to clients.
    pub fn new(rotation_secs: u32) -> Result<Self, TlsError> {
        let rng = SystemRandom::new();
        Ok(Self {
            keys: RwLock::new(Keys {
                current: TicketKey::generate(&rng)?,
                previous: None,
            }),
            rng,
            lifetime_secs: rotation_secs.max(1),
        })
    }

    /// Makes a new current key; the current one becomes the previous one (still opens
    /// tickets) and the previous one is dropped.
    pub fn rotate(&self) -> Result<(), TlsError> {
        let next = TicketKey::generate(&self.rng)?;
        let mut keys = self.keys.write().map_err(|_| TlsError::Random)?;
        let old = std::mem::replace(&mut keys.current, next);
        keys.previous = Some(old);
        Ok(())
    }
}

impl ProducesTickets for RotatingTicketer {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        self.lifetime_secs
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).ok()?;
        let keys = self.keys.read().ok()?;
        let key = &keys.current;
        let mut out = Vec::with_capacity(KEY_ID_LEN + NONCE_LEN + plain.len() + TAG_LEN);
        out.extend_from_slice(&key.id);
        out.extend_from_slice(&nonce);
        let mut body = plain.to_vec();
        key.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&key.id),
                &mut body,
            )
            .ok()?;
        out.extend_from_slice(&body);
        Some(out)
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        if cipher.len() < KEY_ID_LEN + NONCE_LEN + TAG_LEN || cipher.len() > MAX_TICKET_LEN {
            return None;
        }
        let (id, rest) = cipher.split_at(KEY_ID_LEN);
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let keys = self.keys.read().ok()?;
        let key = if keys.current.id == id {
            &keys.current
        } else {
            match &keys.previous {
                Some(prev) if prev.id == id => prev,
                _ => return None,
            }
        };
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut body = sealed.to_vec();
        let plain = key
            .key
            .open_in_place(nonce, Aad::from(&key.id), &mut body)
            .ok()?;
        let len = plain.len();
        body.truncate(len);
        Some(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rotation_window() {
        let t = RotatingTicketer::new(3600).unwrap();
        let a = t.encrypt(b"session state").unwrap();
        assert_eq!(t.decrypt(&a).unwrap(), b"session state");
        t.rotate().unwrap();
        // Sealed under the previous key: still opens.
        assert_eq!(t.decrypt(&a).unwrap(), b"session state");
        let b = t.encrypt(b"newer").unwrap();
        t.rotate().unwrap();
        // Two rotations later the first key is gone.
        assert!(t.decrypt(&a).is_none());
        assert_eq!(t.decrypt(&b).unwrap(), b"newer");
    }

    #[test]
    fn tampered_or_short_tickets_are_refused() {
        let t = RotatingTicketer::new(60).unwrap();
        let mut a = t.encrypt(b"state").unwrap();
        let last = a.len() - 1;
        a[last] ^= 1;
        assert!(t.decrypt(&a).is_none());
        for len in 0..(KEY_ID_LEN + NONCE_LEN + TAG_LEN) {
            assert!(t.decrypt(&vec![0u8; len]).is_none());
        }
        assert!(t.decrypt(&vec![0u8; MAX_TICKET_LEN + 1]).is_none());
    }

    #[test]
    fn another_ticketer_cannot_open() {
        let a = RotatingTicketer::new(60).unwrap();
        let b = RotatingTicketer::new(60).unwrap();
        let ticket = a.encrypt(b"state").unwrap();
        assert!(b.decrypt(&ticket).is_none());
    }
}
