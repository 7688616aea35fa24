//! Test vectors made by the libraries that define each format (tests/fixtures/generate.py), plus
//! malformed and hostile inputs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;

use keyward_digest::{
    identify, limits, verify, verify_legacy, Algorithm, DigestError, LegacyDigest, StoredDigest,
};
use serde::Deserialize;

#[derive(Deserialize)]
struct Fixtures {
    vectors: Vec<Vector>,
}

#[derive(Deserialize)]
struct Vector {
    id: String,
    algorithm: Algorithm,
    source: String,
    password: String,
    wrong_password: String,
    digest: Option<String>,
    legacy: Option<LegacyDigest>,
}

fn vectors() -> Vec<Vector> {
    let f: Fixtures =
        serde_json::from_str(include_str!("fixtures/vectors.json")).expect("vectors.json parses");
    f.vectors
}

fn family(a: Algorithm) -> &'static str {
    let name = a.name();
    if name.starts_with("argon2") {
        "argon2"
    } else if name.starts_with("django_") {
        "django"
    } else if name.starts_with("werkzeug_") {
        "werkzeug"
    } else if name.starts_with("ldap_") {
        "ldap"
    } else if name == "bcrypt" {
        "bcrypt"
    } else if name == "scrypt" || name.starts_with("pbkdf2_") {
        "phc_kdf"
    } else if name.ends_with("_crypt") || name == "phpass" {
        "crypt"
    } else {
        "legacy"
    }
}

/// Checks every vector of one family; reports all failures at once.
fn run_family(name: &str) {
    let mut failures = Vec::new();
    let mut count = 0;
    for v in vectors()
        .into_iter()
        .filter(|v| family(v.algorithm) == name)
    {
        count += 1;
        let stored = match (&v.digest, &v.legacy) {
            (Some(d), None) => StoredDigest::Encoded(d.clone()),
            (None, Some(l)) => StoredDigest::Legacy(l.clone()),
            _ => panic!("{}: needs exactly one of digest and legacy", v.id),
        };
        let mut fail = |what: String| failures.push(format!("{} ({}): {what}", v.id, v.source));
        match stored.algorithm() {
            Ok(a) if a == v.algorithm => {}
            other => fail(format!(
                "identified as {other:?}, expected {:?}",
                v.algorithm
            )),
        }
        if let Some(d) = &v.digest {
            if identify(d) != Ok(v.algorithm) {
                fail(format!("identify() = {:?}", identify(d)));
            }
        }
        // The storage string form round-trips.
        match stored.to_string().parse::<StoredDigest>() {
            Ok(back) if back == stored => {}
            other => fail(format!("string form does not round-trip: {other:?}")),
        }
        match stored.verify(v.password.as_bytes()) {
            Ok(true) => {}
            other => fail(format!("right password: {other:?}")),
        }
        match stored.verify(v.wrong_password.as_bytes()) {
            Ok(false) => {}
            other => fail(format!("wrong password: {other:?}")),
        }
    }
    assert!(count > 0, "no vectors for family {name}");
    assert!(
        failures.is_empty(),
        "{} of {count} {name} vectors failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn argon2_vectors() {
    run_family("argon2");
}

#[test]
fn scrypt_and_pbkdf2_vectors() {
    run_family("phc_kdf");
}

#[test]
fn bcrypt_vectors() {
    run_family("bcrypt");
}

#[test]
fn crypt_vectors() {
    run_family("crypt");
}

#[test]
fn ldap_vectors() {
    run_family("ldap");
}

#[test]
fn django_vectors() {
    run_family("django");
}

#[test]
fn werkzeug_vectors() {
    run_family("werkzeug");
}

#[test]
fn legacy_vectors() {
    run_family("legacy");
}

#[test]
fn every_algorithm_has_vectors_from_its_library() {
    let all = [
        "argon2i",
        "argon2d",
        "argon2id",
        "scrypt",
        "pbkdf2_sha1",
        "pbkdf2_sha256",
        "pbkdf2_sha512",
        "bcrypt",
        "sha256_crypt",
        "sha512_crypt",
        "md5_crypt",
        "apr_md5_crypt",
        "phpass",
        "django_pbkdf2_sha256",
        "django_pbkdf2_sha1",
        "django_argon2",
        "django_bcrypt",
        "django_bcrypt_sha256",
        "django_scrypt",
        "django_sha1",
        "django_md5",
        "django_unsalted_sha1",
        "django_unsalted_md5",
        "werkzeug_pbkdf2",
        "werkzeug_scrypt",
        "ldap_sha",
        "ldap_ssha",
        "ldap_ssha256",
        "ldap_ssha512",
        "ldap_md5",
        "ldap_smd5",
        "md5",
        "sha1",
        "sha256",
        "sha512",
        "hmac_md5",
        "hmac_sha1",
        "hmac_sha256",
        "hmac_sha512",
        "firebase_scrypt",
    ];
    let covered: BTreeSet<&str> = vectors().iter().map(|v| v.algorithm.name()).collect();
    let missing: Vec<_> = all.iter().filter(|a| !covered.contains(*a)).collect();
    assert!(missing.is_empty(), "no vectors for {missing:?}");
    // Each cost-bearing family has at least one vector at its library's default cost.
    let vs = vectors();
    let defaults: BTreeSet<&str> = vs
        .iter()
        .filter(|v| v.source.contains("default cost"))
        .map(|v| family(v.algorithm))
        .collect();
    for fam in ["argon2", "phc_kdf", "bcrypt", "crypt", "django", "werkzeug"] {
        assert!(defaults.contains(fam), "no default-cost vector for {fam}");
    }
}

// ---------------------------------------------------------------------------------------------
// Malformed and hostile inputs: typed errors, at once, without hashing or allocating.

const BCRYPT_TAIL: &str = "......................21jzCB1r6pN6rp5O2Ev0ejjTAboskKm";
const SALT: &str = "c2FsdHNhbHRzYWx0";
const HASH32: &str = "xeR41ZKIyEGqUw22hFxMjZYok6ABzk4RpJY4c6qYE0o";

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Unknown,
    Malformed,
    Unsupported,
    TooCostly,
}

fn kind(e: &DigestError) -> Kind {
    match e {
        DigestError::UnknownFormat => Kind::Unknown,
        DigestError::Malformed { .. } => Kind::Malformed,
        DigestError::Unsupported { .. } => Kind::Unsupported,
        DigestError::CostTooHigh { .. } => Kind::TooCostly,
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn malformed_and_absurd_digests_are_typed_errors() {
    use Kind::*;
    let cases: Vec<(String, Kind)> = vec![
        (String::new(), Unknown),
        ("hello".into(), Unknown),
        ("$unknown$abc".into(), Unknown),
        ("{FOO}abc".into(), Unknown),
        ("$".into(), Unknown),
        ("{".into(), Unknown),
        ("notdjango$salt$hash".into(), Unknown),
        // bcrypt
        (format!("$2b$31${BCRYPT_TAIL}"), TooCostly),
        (format!("$2b$17${BCRYPT_TAIL}"), TooCostly),
        (format!("$2b$03${BCRYPT_TAIL}"), Malformed),
        (format!("$2b$4${BCRYPT_TAIL}"), Malformed),
        ("$2b$12$short".into(), Malformed),
        (format!("$2b$12${}", &BCRYPT_TAIL[..40]), Malformed),
        (format!("$2b$12${BCRYPT_TAIL}$"), Malformed),
        (format!("$2x$12${BCRYPT_TAIL}"), Unsupported),
        (format!("$2c$12${BCRYPT_TAIL}"), Unknown),
        (format!("bcrypt_sha256$$2b$31${BCRYPT_TAIL}"), TooCostly),
        // Argon2
        (
            format!("$argon2id$v=19$m=4294967295,t=3,p=4${SALT}${HASH32}"),
            TooCostly,
        ),
        (
            format!("$argon2id$v=19$m=1048577,t=1,p=1${SALT}${HASH32}"),
            TooCostly,
        ),
        (
            format!("$argon2id$v=19$m=65536,t=4294967295,p=1${SALT}${HASH32}"),
            TooCostly,
        ),
        (
            format!("$argon2id$v=19$m=65536,t=3,p=1000${SALT}${HASH32}"),
            TooCostly,
        ),
        (
            format!("$argon2id$v=19$m=99999999999,t=3,p=4${SALT}${HASH32}"),
            Malformed,
        ),
        (
            format!("$argon2id$v=19$m=65536,t=3,p=4,keyid=YWJj${SALT}${HASH32}"),
            Unsupported,
        ),
        (
            format!("$argon2id$v=42$m=65536,t=3,p=4${SALT}${HASH32}"),
            Unsupported,
        ),
        (
            format!("$argon2id$v=19$m=65536,t=3${SALT}${HASH32}"),
            Malformed,
        ),
        (
            format!("$argon2id$v=19$m=65536,t=0,p=1${SALT}${HASH32}"),
            Malformed,
        ),
        (format!("$argon2id$v=19$m=65536,t=3,p=4${SALT}"), Malformed),
        (
            format!("$argon2id$v=19$m=65536,t=3,p=4$!!!!${HASH32}"),
            Malformed,
        ),
        (
            "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$AAAA".into(),
            Malformed,
        ),
        (
            "$argon2x$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$AAAA".into(),
            Unknown,
        ),
        // scrypt
        (format!("$scrypt$ln=40,r=8,p=1${SALT}${HASH32}"), TooCostly),
        (format!("$scrypt$ln=21,r=8,p=1${SALT}${HASH32}"), TooCostly),
        (
            format!("$scrypt$ln=14,r=8,p=99999${SALT}${HASH32}"),
            TooCostly,
        ),
        (
            format!("$scrypt$ln=14,r=4294967295,p=1${SALT}${HASH32}"),
            TooCostly,
        ),
        (format!("$scrypt$ln=14,r=0,p=1${SALT}${HASH32}"), Malformed),
        (format!("$scrypt$ln=14,r=8${SALT}${HASH32}"), Malformed),
        (
            format!("$scrypt$ln=14,r=8,p=1,x=1${SALT}${HASH32}"),
            Unsupported,
        ),
        // PBKDF2
        (
            format!("$pbkdf2-sha256$4294967295${SALT}${HASH32}"),
            TooCostly,
        ),
        (
            format!("$pbkdf2-sha256$99999999999999999999999${SALT}${HASH32}"),
            TooCostly,
        ),
        (format!("$pbkdf2-sha256$0${SALT}${HASH32}"), Malformed),
        (format!("$pbkdf2-sha256$29000$!!!${HASH32}"), Malformed),
        (format!("$pbkdf2-sha256$29000${SALT}"), Malformed),
        (
            format!("$pbkdf2-sha256$i=20000000,l=32${SALT}${HASH32}"),
            TooCostly,
        ),
        (
            format!("$pbkdf2-sha256$i=1000,l=31${SALT}${HASH32}"),
            Malformed,
        ),
        (format!("$pbkdf2-sha256$l=32${SALT}${HASH32}"), Malformed),
        (format!("$pbkdf2-sha3$i=1000${SALT}${HASH32}"), Unknown),
        // crypt
        (
            "$6$rounds=999999999$salt$Un/5jzAHMgOGZ5.mWJpuVolil07guHPvOW8mGRcvxa5".into(),
            TooCostly,
        ),
        (
            "$5$rounds=abc$salt$Un/5jzAHMgOGZ5.mWJpuVolil07guHPvOW8mGRcvxa5".into(),
            Malformed,
        ),
        ("$5$salt$tooshort".into(), Malformed),
        ("$1$toolongsalt$qQY4WxjABChYG1ccLpfkz/".into(), Malformed),
        ("$1$saltstri$qQY4WxjABChYG1ccLpfkz".into(), Malformed),
        ("$apr1$saltstri".into(), Malformed),
        ("$P$SIQRaTwmfeRo7ud9Fh4E2PdI0S3r.L0".into(), TooCostly),
        ("$P$9IQRaTwmfeRo7ud9Fh4E2PdI0S3r.L".into(), Malformed),
        ("$P$9IQRaTwmfeRo7ud9Fh4E2PdI0S3r.L$".into(), Malformed),
        // Django
        (
            format!("pbkdf2_sha256$99999999999${SALT}${HASH32}="),
            TooCostly,
        ),
        (format!("pbkdf2_sha256$abc${SALT}${HASH32}="), Malformed),
        ("pbkdf2_sha256$1000$salt$not base64!".into(), Malformed),
        ("pbkdf2_sha256$1000$salt".into(), Malformed),
        ("scrypt$1099511627776$salt$8$1$AAAA".into(), TooCostly),
        ("scrypt$1000$salt$8$1$AAAA".into(), Malformed),
        ("scrypt$16384$salt$8$AAAA".into(), Malformed),
        ("argon2$argon2id$garbage".into(), Malformed),
        ("sha1$salt$nothex".into(), Malformed),
        ("md5$salt$abcd".into(), Malformed),
        ("5f4dcc3b5aa765d61d8327deb882cf9g".into(), Unknown),
        // Werkzeug
        ("pbkdf2:sha256$salt$00".into(), Unsupported),
        ("pbkdf2$salt$00".into(), Unsupported),
        ("pbkdf2:md4:1000$salt$00".into(), Unsupported),
        ("pbkdf2:sha256:99999999999$salt$00".into(), TooCostly),
        ("pbkdf2:sha256:1000$salt$zz".into(), Malformed),
        ("pbkdf2:sha256:1000$salt".into(), Malformed),
        ("scrypt:1099511627776:8:1$salt$00".into(), TooCostly),
        ("scrypt:32768:8$salt$00".into(), Unsupported),
        // LDAP
        ("{SSHA}!!!!".into(), Malformed),
        ("{SSHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=".into(), Malformed),
        ("{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9gA".into(), Malformed),
        ("{CRYPT}abJnggxhB/yWI".into(), Unsupported),
        (
            "{CRYPT}$2b$31$......................21jzCB1r6pN6rp5O2Ev0ejjTAboskKm".into(),
            TooCostly,
        ),
        // Too long overall
        (
            format!("$pbkdf2-sha256$1000${}$AAAA", "A".repeat(5000)),
            Malformed,
        ),
    ];
    let mut failures = Vec::new();
    for (input, expected) in &cases {
        for result in [
            identify(input).map(|_| ()),
            verify(b"password", input).map(|_| ()),
        ] {
            match result {
                Err(e) if kind(&e) == *expected => {}
                other => failures.push(format!("{input:?}: expected {expected:?}, got {other:?}")),
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn truncated_vectors_never_panic_and_never_verify() {
    // Every prefix of every self-describing vector must parse without panicking; cut to half or
    // short of its last few characters, none may verify the right password. (PBKDF2 and scrypt
    // keys are prefix-stable, so a cut-off key would verify if its length were not enforced.)
    for v in vectors() {
        let Some(d) = v.digest else { continue };
        let boundaries: Vec<usize> = d.char_indices().map(|(i, _)| i).skip(1).collect();
        for &i in &boundaries {
            let _ = identify(&d[..i]);
        }
        let n = boundaries.len();
        for &i in [
            boundaries[n / 2],
            boundaries[n - 1],
            boundaries[n - 2],
            boundaries[n - 4],
        ]
        .iter()
        {
            let cut = &d[..i];
            if d[i..].bytes().all(|b| b == b'=') {
                continue; // only base64 padding removed: the same bytes
            }
            assert!(
                !verify(v.password.as_bytes(), cut).unwrap_or(false),
                "{}: {cut:?} verifies",
                v.id
            );
        }
    }
}

#[test]
fn legacy_digest_errors_are_typed() {
    let base = || -> LegacyDigest {
        serde_json::from_str(
            r#"{"algorithm":"firebase-scrypt","hash":"lSrfV15cpx95/sZS2W9c9Kp6i/LVgQNDNC/qzrCnh1SAyZvqmZqAjTdn3aoItz+VHjoZilo78198JAdRuid5lQ==",
                "encoding":"base64","salt":"42xEC+ixf3L2lw==","salt_encoding":"base64",
                "firebase":{"signer_key":"jxspr8Ki0RYycVU8zykbdLGjFQ3McFUH0uiiTvC8pVMXAn210wjLNmdZJzxUECKbm0QsEmYUSDzZvpjeJ9WmXA==","salt_separator":"Bw==","rounds":8,"mem_cost":14}}"#,
        )
        .unwrap()
    };
    assert_eq!(verify_legacy(b"user1password", &base()), Ok(true));

    let mut d = base();
    d.firebase.as_mut().unwrap().mem_cost = 40;
    assert!(matches!(
        verify_legacy(b"user1password", &d),
        Err(DigestError::CostTooHigh { .. })
    ));
    let mut d = base();
    d.firebase.as_mut().unwrap().rounds = 1 << 30;
    assert!(matches!(
        verify_legacy(b"user1password", &d),
        Err(DigestError::CostTooHigh { .. })
    ));
    let mut d = base();
    d.firebase.as_mut().unwrap().signer_key = "not base64!".into();
    assert!(matches!(
        verify_legacy(b"user1password", &d),
        Err(DigestError::Malformed { .. })
    ));
    let mut d = base();
    d.firebase = None;
    assert!(matches!(
        verify_legacy(b"user1password", &d),
        Err(DigestError::Malformed { .. })
    ));
    let mut d = base();
    d.hash = d.hash[..20].to_owned();
    assert!(verify_legacy(b"user1password", &d).is_err());
    let mut d = base();
    d.encoding = keyward_digest::HashEncoding::Hex;
    assert!(matches!(
        verify_legacy(b"user1password", &d),
        Err(DigestError::Malformed { .. })
    ));

    assert!(serde_json::from_str::<LegacyDigest>(r#"{"algorithm":"crc32","hash":"00"}"#).is_err());
    assert!("{\"algorithm\":\"sha1\",\"hash\":\"zz\"}"
        .parse::<StoredDigest>()
        .is_err());
}

#[test]
fn password_length_is_capped() {
    let pw = vec![b'a'; limits::MAX_PASSWORD_LEN + 1];
    assert!(matches!(
        verify(&pw, "$1$saltstri$qQY4WxjABChYG1ccLpfkz/"),
        Err(DigestError::PasswordTooLong { .. })
    ));
    let pw = vec![b'a'; limits::MAX_PASSWORD_LEN];
    assert_eq!(verify(&pw, "$1$saltstri$qQY4WxjABChYG1ccLpfkz/"), Ok(false));
}

#[test]
fn errors_do_not_echo_the_digest() {
    let secret_salt = "SECRETSALTVALUE1";
    let e = identify(&format!("$5$rounds=999999999${secret_salt}$abc")).unwrap_err();
    assert!(!e.to_string().contains(secret_salt), "{e}");
    let e = identify(&format!("pbkdf2_sha256$1000${secret_salt}$not base64!")).unwrap_err();
    assert!(!e.to_string().contains(secret_salt), "{e}");
}
