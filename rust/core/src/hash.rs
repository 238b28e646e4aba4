//! Streaming SHA-256.
//!
//! `sha2` selects the SHA-NI (x86) / SHA2 (aarch64) instructions at run time,
//! so one portable build is fast on every CPU that has them.

use std::fs::File;
use std::io::{ErrorKind, Read};
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Read size for file hashing. Large enough that per-call overhead vanishes,
/// small enough to stay in L2 cache.
pub const CHUNK_SIZE: usize = 256 * 1024;

/// Incremental SHA-256 hasher.
#[derive(Clone, Default)]
pub struct Hasher {
    inner: Sha256,
}

impl Hasher {
    /// A fresh hasher.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed bytes.
    pub fn update(&mut self, data: &[u8]) {
        self.inner.update(data);
    }

    /// The digest of everything fed so far; the hasher stays usable.
    pub fn digest(&self) -> [u8; 32] {
        self.inner.clone().finalize().into()
    }

    /// The digest as lowercase hex.
    pub fn hexdigest(&self) -> String {
        to_hex(&self.digest())
    }
}

/// Lowercase hex of a byte slice.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 0x0f) as usize] as char);
    }
    out
}

/// SHA-256 of a file, read in [`CHUNK_SIZE`] chunks (constant memory).
pub fn sha256_file(path: &Path) -> Result<[u8; 32]> {
    let io_err = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(io_err)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK_SIZE];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_err(e)),
        }
    }
    Ok(hasher.finalize().into())
}

/// SHA-256 of a file as lowercase hex.
pub fn sha256_file_hex(path: &Path) -> Result<String> {
    sha256_file(path).map(|d| to_hex(&d))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    const ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    #[test]
    fn known_answers() {
        assert_eq!(Hasher::new().hexdigest(), EMPTY);
        let mut h = Hasher::new();
        h.update(b"a");
        h.update(b"bc");
        assert_eq!(h.hexdigest(), ABC);
    }

    #[test]
    fn file_matches_buffer_across_chunk_boundaries() {
        let dir = std::env::temp_dir().join(format!("rb-hash-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for size in [
            0,
            1,
            CHUNK_SIZE - 1,
            CHUNK_SIZE,
            CHUNK_SIZE + 1,
            3 * CHUNK_SIZE + 7,
        ] {
            let data: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
            let path = dir.join(format!("f{size}"));
            std::fs::File::create(&path)
                .unwrap()
                .write_all(&data)
                .unwrap();
            let mut h = Hasher::new();
            h.update(&data);
            assert_eq!(
                sha256_file_hex(&path).unwrap(),
                h.hexdigest(),
                "size {size}"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn missing_file_keeps_kind_and_path() {
        let err = sha256_file(Path::new("/nonexistent/reelbench")).unwrap_err();
        match err {
            Error::Io { path, source } => {
                assert_eq!(source.kind(), ErrorKind::NotFound);
                assert!(path.ends_with("reelbench"));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
