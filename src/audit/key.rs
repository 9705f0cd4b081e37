//! The audit key: 32 random bytes in a file outside the database, and HMAC-SHA256 with it.
//!
//! The key is what an attacker with write access to the database lacks: without it they cannot
//! compute the MAC of an edited row or of an anchor. So the file is created with mode 0600 and a
//! key file that others can read is refused rather than used.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rand::RngCore;
use sha2::{Digest, Sha256};

use super::AuditError;

/// SHA-256's block size: the HMAC pads the key to it.
const BLOCK: usize = 64;

/// A loaded audit key. Debug output never shows the bytes.
#[derive(Clone)]
pub struct AuditKey {
    bytes: [u8; 32],
}

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditKey(..)")
    }
}

impl AuditKey {
    #[cfg(test)]
    pub(crate) fn from_bytes(bytes: [u8; 32]) -> AuditKey {
        AuditKey { bytes }
    }

    /// HMAC-SHA256 (RFC 2104) of the concatenation of `parts`. Written here over `sha2` rather
    /// than adding a crate: the key is exactly 32 bytes, so no key hashing is needed, and the
    /// RFC 4231 vectors in the tests pin it down.
    pub fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        mac_with(&self.bytes, parts)
    }

    /// Reads the key at `path`, refusing one that others can read or that is not 64 hex digits.
    /// `Ok(None)` when there is no file.
    pub fn load(path: &Path) -> Result<Option<AuditKey>, AuditError> {
        let shown = || path.display().to_string();
        let metadata = match std::fs::metadata(path) {
            Ok(metadata) => metadata,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(AuditError::Io {
                    path: shown(),
                    doing: "read the audit key",
                    source,
                });
            }
        };
        // 64 hex digits and a newline; anything much longer is not a key (and is not read).
        if metadata.len() > 256 {
            return Err(AuditError::KeyMalformed { path: shown() });
        }
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(AuditError::KeyExposed {
                path: shown(),
                mode,
            });
        }
        let text = std::fs::read_to_string(path).map_err(|source| AuditError::Io {
            path: shown(),
            doing: "read the audit key",
            source,
        })?;
        let bytes = decode_hex(text.trim())
            .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
            .ok_or_else(|| AuditError::KeyMalformed { path: shown() })?;
        Ok(Some(AuditKey { bytes }))
    }

    /// Creates a new key file at `path` (mode 0600, never over an existing file) and returns the
    /// key. When another process created it first, that one is loaded instead.
    pub fn create(path: &Path) -> Result<AuditKey, AuditError> {
        let shown = || path.display().to_string();
        if let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(|source| AuditError::Io {
                path: parent.display().to_string(),
                doing: "create the directory of the audit key",
                source,
            })?;
        }
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path);
        let mut file = match file {
            Ok(file) => file,
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
                return AuditKey::load(path)?
                    .ok_or_else(|| AuditError::KeyMalformed { path: shown() });
            }
            Err(source) => {
                return Err(AuditError::Io {
                    path: shown(),
                    doing: "create the audit key",
                    source,
                });
            }
        };
        let written = file
            .write_all(format!("{}\n", hex(&bytes)).as_bytes())
            .and_then(|()| file.sync_all())
            .and_then(|()| sync_parent(path));
        if let Err(source) = written {
            // A half-written key would be refused as malformed on the next start: remove it.
            let _ = std::fs::remove_file(path);
            return Err(AuditError::Io {
                path: shown(),
                doing: "write the audit key",
                source,
            });
        }
        Ok(AuditKey { bytes })
    }
}

fn mac_with(key: &[u8; 32], parts: &[&[u8]]) -> [u8; 32] {
    let mut inner_pad = [0x36u8; BLOCK];
    let mut outer_pad = [0x5cu8; BLOCK];
    for (i, byte) in key.iter().enumerate() {
        inner_pad[i] ^= byte;
        outer_pad[i] ^= byte;
    }
    let mut inner = Sha256::new();
    inner.update(inner_pad);
    for part in parts {
        inner.update(part);
    }
    let mut outer = Sha256::new();
    outer.update(outer_pad);
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// Makes a rename or a new file in `path`'s directory durable.
pub(super) fn sync_parent(path: &Path) -> std::io::Result<()> {
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::File::open(parent)?.sync_all()
}

/// Lower-case hex.
pub(super) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    text.as_bytes()
        .chunks(2)
        .map(|pair| {
            let digit = |c: u8| char::from(c).to_digit(16);
            u8::try_from(digit(pair[0])? * 16 + digit(pair[1])?).ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4231 cases 1 and 2. Their keys are shorter than 32 bytes; HMAC zero-pads a short key
    /// to the block size, so the same keys zero-padded to 32 bytes give the published MACs.
    #[test]
    fn hmac_matches_rfc_4231() {
        let mut key = [0u8; 32];
        key[..20].copy_from_slice(&[0x0b; 20]);
        assert_eq!(
            hex(&mac_with(&key, &[b"Hi There"])),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
        // The message given in two parts is MACed as one.
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(b"Jefe");
        assert_eq!(
            hex(&mac_with(&key, &[b"what do ya want ", b"for nothing?"])),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn a_new_key_is_private_and_loads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/k");
        let key = AuditKey::create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let loaded = AuditKey::load(&path).unwrap().unwrap();
        assert_eq!(key.bytes, loaded.bytes);
        // A second create keeps the first key.
        assert_eq!(AuditKey::create(&path).unwrap().bytes, key.bytes);
    }

    #[test]
    fn a_key_others_can_read_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        AuditKey::create(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = AuditKey::load(&path).unwrap_err();
        assert!(err.to_string().contains("0644"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&path, "not hex\n").unwrap();
        assert!(matches!(
            AuditKey::load(&path),
            Err(AuditError::KeyMalformed { .. })
        ));
    }
}
