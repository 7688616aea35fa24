//! Text encodings shared by the formats.

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;

/// The crypt(3) base64 alphabet ("hash64"), used by md5-crypt, sha-crypt, bcrypt (in another
/// order) and PHPass.
pub(crate) const CRYPT64: &[u8; 64] =
    b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Standard base64; padding optional (stored digests come both ways), trailing bits strict.
const STANDARD_ANY_PAD: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

pub(crate) fn base64_decode(s: &str) -> Option<Vec<u8>> {
    STANDARD_ANY_PAD.decode(s).ok()
}

/// passlib's "adapted base64" (`ab64`): standard base64 with `.` instead of `+`, no padding
/// (passlib.utils.binary.ab64_decode).
pub(crate) fn ab64_decode(s: &str) -> Option<Vec<u8>> {
    if s.contains('+') {
        return None;
    }
    base64_decode(&s.replace('.', "+"))
}

pub(crate) fn hex_decode(s: &str) -> Option<Vec<u8>> {
    hex::decode(s).ok()
}

pub(crate) fn is_crypt64(s: &str) -> bool {
    s.bytes().all(|b| CRYPT64.contains(&b))
}

/// Index of a character in [`CRYPT64`].
pub(crate) fn crypt64_index(c: u8) -> Option<u32> {
    CRYPT64
        .iter()
        .position(|&x| x == c)
        .and_then(|i| u32::try_from(i).ok())
}

/// Appends the `n` low 6-bit groups of `v`, least significant first (the `to64` helper of
/// md5-crypt and sha-crypt).
pub(crate) fn push_crypt64(out: &mut Vec<u8>, mut v: u32, n: usize) {
    for _ in 0..n {
        out.push(CRYPT64[(v & 0x3f) as usize]);
        v >>= 6;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_accepts_both_paddings_but_not_garbage() {
        assert_eq!(base64_decode("Bw==").as_deref(), Some(&[7u8][..]));
        assert_eq!(base64_decode("Bw").as_deref(), Some(&[7u8][..]));
        assert_eq!(base64_decode("B!=="), None);
        // Non-zero trailing bits: not a canonical encoding.
        assert_eq!(base64_decode("Bx=="), None);
    }

    #[test]
    fn ab64_maps_dot_to_plus() {
        assert_eq!(ab64_decode("..."), base64_decode("+++"));
        assert_eq!(ab64_decode("++++"), None);
    }

    #[test]
    fn crypt64_groups() {
        let mut out = Vec::new();
        push_crypt64(&mut out, 0, 2);
        push_crypt64(&mut out, 63 | (1 << 6), 2);
        assert_eq!(out, b"..z/");
        assert_eq!(crypt64_index(b'z'), Some(63));
        assert_eq!(crypt64_index(b'$'), None);
    }
}
