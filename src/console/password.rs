//! Operator credentials: PBKDF2-HMAC-SHA256 hashes in the form
//! `pbkdf2-sha256$ITERATIONS$SALT$HASH` (salt and hash in unpadded base64). The scheme is named
//! in the string so another can be added without breaking configured hashes
//! (docs/decisions/0014-operator-console.md says why this scheme).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use sha2::{Digest, Sha256};

const SCHEME: &str = "pbkdf2-sha256";
/// OWASP's figure for PBKDF2-HMAC-SHA256.
pub const DEFAULT_ITERATIONS: u32 = 600_000;
const BLOCK: usize = 64;

/// Why a configured credential cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashError {
    #[error(
        "not a `pbkdf2-sha256$ITERATIONS$SALT$HASH` string (write one with `palisade console hash-password`)"
    )]
    Malformed,
    #[error("the iteration count must be at least 1")]
    NoIterations,
}

/// A parsed credential, checked once when the console starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordHash {
    iterations: u32,
    salt: Vec<u8>,
    hash: [u8; 32],
}

impl PasswordHash {
    pub fn parse(text: &str) -> Result<PasswordHash, HashError> {
        let mut parts = text.trim().split('$');
        let (Some(SCHEME), Some(iterations), Some(salt), Some(hash), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(HashError::Malformed);
        };
        let iterations: u32 = iterations.parse().map_err(|_| HashError::Malformed)?;
        if iterations == 0 {
            return Err(HashError::NoIterations);
        }
        let salt = STANDARD_NO_PAD
            .decode(salt)
            .map_err(|_| HashError::Malformed)?;
        let hash: [u8; 32] = STANDARD_NO_PAD
            .decode(hash)
            .ok()
            .and_then(|h| h.try_into().ok())
            .ok_or(HashError::Malformed)?;
        Ok(PasswordHash {
            iterations,
            salt,
            hash,
        })
    }

    /// Whether `password` is the one hashed; compared in constant time.
    pub fn verify(&self, password: &str) -> bool {
        let got = pbkdf2(password.as_bytes(), &self.salt, self.iterations);
        constant_time_eq(&got, &self.hash)
    }
}

/// A new hash of `password` with a random 16-byte salt.
pub fn hash(password: &str, iterations: u32) -> Result<String, HashError> {
    if iterations == 0 {
        return Err(HashError::NoIterations);
    }
    let mut salt = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut salt);
    let out = pbkdf2(password.as_bytes(), &salt, iterations);
    Ok(format!(
        "{SCHEME}${iterations}${}${}",
        STANDARD_NO_PAD.encode(salt),
        STANDARD_NO_PAD.encode(out)
    ))
}

/// Equal length and equal bytes, looking at every byte whatever the first difference.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// HMAC-SHA256 (RFC 2104) with the pads absorbed once, so each PBKDF2 round costs two
/// compressions of the message rather than four.
#[derive(Clone)]
struct Hmac {
    inner: Sha256,
    outer: Sha256,
}

impl Hmac {
    fn new(key: &[u8]) -> Hmac {
        let mut block = [0u8; BLOCK];
        if key.len() > BLOCK {
            block[..32].copy_from_slice(&Sha256::digest(key));
        } else {
            block[..key.len()].copy_from_slice(key);
        }
        let mut inner = Sha256::new();
        inner.update(block.map(|b| b ^ 0x36));
        let mut outer = Sha256::new();
        outer.update(block.map(|b| b ^ 0x5c));
        Hmac { inner, outer }
    }

    fn mac(&self, message: &[&[u8]]) -> [u8; 32] {
        let mut inner = self.inner.clone();
        for part in message {
            inner.update(part);
        }
        let mut outer = self.outer.clone();
        outer.update(inner.finalize());
        outer.finalize().into()
    }
}

/// PBKDF2 (RFC 8018) with HMAC-SHA256, one 32-byte block.
fn pbkdf2(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let prf = Hmac::new(password);
    let mut u = prf.mac(&[salt, &1u32.to_be_bytes()]);
    let mut out = u;
    for _ in 1..iterations {
        u = prf.mac(&[&u]);
        for (o, x) in out.iter_mut().zip(u) {
            *o ^= x;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Published PBKDF2-HMAC-SHA256 vectors (RFC 7914 section 11 and the widely used
    /// "password"/"salt" ones).
    #[test]
    fn pbkdf2_matches_published_vectors() {
        assert_eq!(
            hex(&pbkdf2(b"password", b"salt", 1)),
            "120fb6cffcf8b32c43e7225256c4f837a86548c92ccc35480805987cb70be17b"
        );
        assert_eq!(
            hex(&pbkdf2(b"password", b"salt", 4096)),
            "c5e478d59288c841aa530db6845c4c8d962893a001ce4e11a4963873aa98134a"
        );
        // A key longer than the block is hashed first.
        let long = [b'k'; 100];
        assert_ne!(pbkdf2(&long, b"salt", 1), pbkdf2(&long[..64], b"salt", 1));
    }

    #[test]
    fn a_hash_verifies_its_password_only() {
        let text = hash("correct horse", 10).unwrap_or_default();
        let parsed = PasswordHash::parse(&text);
        assert!(parsed.as_ref().is_ok_and(|h| h.verify("correct horse")));
        assert!(parsed.is_ok_and(|h| !h.verify("correct horsf")));
    }

    #[test]
    fn malformed_hashes_are_refused() {
        for bad in [
            "",
            "plaintext",
            "pbkdf2-sha256$0$c2FsdA$AAAA",
            "bcrypt$10$x$y",
            "pbkdf2-sha256$10$c2FsdA$c2hvcnQ",
        ] {
            assert!(PasswordHash::parse(bad).is_err(), "{bad}");
        }
    }
}
