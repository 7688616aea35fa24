//! Caps on cost parameters and input sizes.
//!
//! A digest carries its own cost, so a corrupt or hostile import row could ask for bcrypt cost 31
//! (days of CPU), scrypt N = 2^40 (a petabyte of memory) or a billion sha-crypt rounds. Every
//! parser rejects such values with [`crate::DigestError::CostTooHigh`] before any work is done.
//! The caps sit well above every library default we know of (noted beside each) and keep one
//! verification to a few seconds and at most 1 GiB of memory.

/// Longest password accepted, in bytes. sha-crypt and md5-crypt are quadratic in the password
/// length; no real password is longer.
pub const MAX_PASSWORD_LEN: usize = 4096;

/// Longest digest string accepted, in bytes (the longest real ones, Firebase and PBKDF2-SHA512
/// with long salts, are a few hundred).
pub const MAX_DIGEST_LEN: usize = 2048;

/// bcrypt cost (log2 of the rounds). Defaults: 10–12 (Python bcrypt, Django, passlib: 12).
pub const MAX_BCRYPT_COST: u32 = 16;

/// sha-crypt (`$5$`, `$6$`) rounds. Defaults: 5 000 (glibc), 535 000 / 656 000 (passlib).
pub const MAX_SHA_CRYPT_ROUNDS: u64 = 10_000_000;

/// PBKDF2 iterations. Defaults: 600 000 (Django 4.2), 1 000 000 (Django 5.2, Werkzeug 3.1).
pub const MAX_PBKDF2_ITERATIONS: u64 = 10_000_000;

/// PHPass log2 of the MD5 iterations. Defaults: 8 (WordPress), 19 (passlib). phpass itself
/// allows up to 30.
pub const MAX_PHPASS_LOG2_ROUNDS: u32 = 24;

/// Memory for one scrypt or Argon2 computation, in bytes (scrypt uses 128·r·N, Argon2 m KiB).
/// Defaults: scrypt 16 MiB (Django), 32 MiB (Werkzeug); Argon2 64 MiB (argon2-cffi), 100 MiB
/// (Django).
pub const MAX_MEMORY_BYTES: u64 = 1 << 30;

/// Total memory traffic of one scrypt (128·r·N·p) or Argon2 (m·t KiB) computation, in bytes:
/// bounds the time when the memory alone is under [`MAX_MEMORY_BYTES`].
pub const MAX_MEMORY_WORK_BYTES: u64 = 4 << 30;

/// Argon2 parallelism (lanes). Defaults: 1–8.
pub const MAX_ARGON2_LANES: u32 = 255;
