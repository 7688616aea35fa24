//! The one error type. Messages never contain the digest, the salt or the password: they may end
//! up in logs, and a digest is as sensitive as the password it protects.

/// Why a digest could not be checked. A wrong password is not an error: [`crate::verify`]
/// answers `Ok(false)` for it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DigestError {
    /// The string matches none of the supported formats.
    #[error("unrecognised password digest format")]
    UnknownFormat,
    /// The format was recognised but the string does not follow it (truncated, bad
    /// base64/hex, missing field, wrong length, ...).
    #[error("malformed {format} digest: {reason}")]
    Malformed {
        /// The format the digest claims to be.
        format: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A recognised format, but a variant or option this crate does not implement (for example
    /// bcrypt `$2x$` or an Argon2 hash that used a secret key).
    #[error("unsupported {format} digest: {reason}")]
    Unsupported {
        /// The format the digest claims to be.
        format: &'static str,
        /// What is not supported.
        reason: &'static str,
    },
    /// A cost parameter is above the cap in [`crate::limits`]: computing it would hang or
    /// allocate absurd amounts of memory.
    #[error("{parameter} {value} is above the maximum {max}")]
    CostTooHigh {
        /// Which parameter (for example `"bcrypt cost"`).
        parameter: &'static str,
        /// The value found in the digest.
        value: u64,
        /// The largest value accepted.
        max: u64,
    },
    /// The password is longer than [`crate::limits::MAX_PASSWORD_LEN`] bytes (some legacy
    /// algorithms are quadratic in the password length).
    #[error("password of {len} bytes is longer than the maximum {max}")]
    PasswordTooLong {
        /// Length of the password given.
        len: usize,
        /// The maximum.
        max: usize,
    },
}

impl DigestError {
    pub(crate) const fn malformed(format: &'static str, reason: &'static str) -> Self {
        Self::Malformed { format, reason }
    }

    pub(crate) const fn unsupported(format: &'static str, reason: &'static str) -> Self {
        Self::Unsupported { format, reason }
    }

    /// `Err(CostTooHigh)` when `value > max`.
    pub(crate) fn cap(parameter: &'static str, value: u64, max: u64) -> Result<(), Self> {
        if value > max {
            Err(Self::CostTooHigh {
                parameter,
                value,
                max,
            })
        } else {
            Ok(())
        }
    }
}
