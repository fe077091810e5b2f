//! The archive object format: one zstd skippable frame holding a small header (the original size
//! and its sha256), followed by one ordinary zstd frame with zstd's content checksum, so that
//! `zstd -d` alone can still read an archived file and `wal-fetch` can prove what it returns.

use sha2::{Digest, Sha256};

use crate::error::{Damage, Error, WalError};
use crate::settings::Compression;

/// Skippable-frame magic number used for pgkeep's header (zstd reserves 0x184D2A50..=0x184D2A5F).
const HEADER_MAGIC: u32 = 0x184D_2A5E;
const HEADER_TAG: &[u8; 8] = b"PGKWAL01";
const HEADER_LEN: usize = 8 + 8 + 8 + 32;

/// Compresses `raw` into an archive object: header frame (size, sha256), then a zstd frame.
pub(super) fn encode(raw: &[u8], compression: Compression) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(raw.len() / 4 + HEADER_LEN);
    out.extend_from_slice(&HEADER_MAGIC.to_le_bytes());
    out.extend_from_slice(&((HEADER_LEN - 8) as u32).to_le_bytes());
    out.extend_from_slice(HEADER_TAG);
    out.extend_from_slice(&(raw.len() as u64).to_le_bytes());
    out.extend_from_slice(&Sha256::digest(raw));
    let mut encoder = zstd::stream::Encoder::new(out, compression.level)?;
    encoder.include_checksum(true)?;
    encoder.include_contentsize(true)?;
    encoder.set_pledged_src_size(Some(raw.len() as u64))?;
    std::io::Write::write_all(&mut encoder, raw)?;
    encoder.finish()
}

/// Decodes an archive object, checking the size and sha256 recorded in its header.
pub(super) fn decode(key: &str, stored: &[u8]) -> Result<Vec<u8>, Error> {
    let damaged = |damage| {
        Error::Wal(WalError::Damaged {
            key: key.to_string(),
            damage,
        })
    };
    if stored.len() < HEADER_LEN
        || stored[..4] != HEADER_MAGIC.to_le_bytes()
        || &stored[8..16] != HEADER_TAG
    {
        return Err(damaged(Damage::NoHeader));
    }
    let size = u64::from_le_bytes(stored[16..24].try_into().expect("8 bytes"));
    let expected = hex::encode(&stored[24..56]);
    let raw = zstd::stream::decode_all(&stored[HEADER_LEN..])
        .map_err(|e| damaged(Damage::Undecodable(e)))?;
    let actual = hex::encode(Sha256::digest(&raw));
    if raw.len() as u64 != size || actual != expected {
        return Err(Error::ChecksumMismatch {
            key: key.to_string(),
            expected,
            actual,
            expected_size: size,
            actual_size: raw.len() as u64,
        });
    }
    Ok(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_decode_and_damage() {
        let raw: Vec<u8> = (0..100_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let stored = encode(&raw, Compression::default()).unwrap();
        assert!(stored.len() < raw.len());
        assert_eq!(decode("k", &stored).unwrap(), raw);
        // zstd itself reads it (the header is a skippable frame).
        assert_eq!(zstd::stream::decode_all(&stored[..]).unwrap(), raw);
        let mut flipped = stored.clone();
        flipped[30] ^= 1; // inside the recorded sha256
        assert!(matches!(
            decode("k", &flipped),
            Err(Error::ChecksumMismatch { .. })
        ));
        assert!(decode("k", &stored[..stored.len() - 5]).is_err());
    }
}
