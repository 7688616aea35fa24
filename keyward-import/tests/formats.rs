//! Every source format end to end, on fixtures in `tests/fixtures/` (written by
//! `tests/fixtures/generate.py` from keyward-digest's library-made test vectors), plus the
//! streaming, broken-stream and diff rules.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::io::Read;
use std::ops::ControlFlow;
use std::path::PathBuf;

use keyward_digest::StoredDigest;
use keyward_import::{
    parse_csv_mapping, parse_firebase_hash_config, read_records, ImportRecord, RowError,
    SourceError, SourceFormat,
};
use serde_json::json;
use time::macros::datetime;

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// keyward-digest's vectors: id → password.
fn passwords() -> HashMap<String, String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../keyward-digest/tests/fixtures/vectors.json");
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    doc["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["id"].as_str().unwrap().to_owned(),
                v["password"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

struct Run {
    rows: Vec<Result<ImportRecord, RowError>>,
    outcome: Result<u64, SourceError>,
}

impl Run {
    fn record(&self, row: u64) -> &ImportRecord {
        self.rows
            .iter()
            .find_map(|r| r.as_ref().ok().filter(|rec| rec.row == row))
            .unwrap_or_else(|| panic!("no record for row {row}: {:#?}", self.rows))
    }

    fn error(&self, row: u64) -> &RowError {
        self.rows
            .iter()
            .find_map(|r| r.as_ref().err().filter(|e| e.row == row))
            .unwrap_or_else(|| panic!("no error for row {row}: {:#?}", self.rows))
    }

    fn seen(&self) -> u64 {
        *self.outcome.as_ref().expect("the stream reads")
    }
}

fn run(input: impl Read, format: &SourceFormat) -> Run {
    let mut rows = Vec::new();
    let outcome = read_records(input, format, &mut |r| {
        rows.push(r);
        ControlFlow::Continue(())
    });
    Run { rows, outcome }
}

/// The converted digest verifies the vector's password and refuses another.
fn assert_verifies(rec: &ImportRecord, vector: &str, algorithm: &str) {
    let passwords = passwords();
    let password = &passwords[vector];
    let stored = rec
        .password_digest
        .as_deref()
        .unwrap_or_else(|| panic!("row {} has no digest", rec.row));
    assert_eq!(
        rec.password_algorithm.as_deref(),
        Some(algorithm),
        "row {}",
        rec.row
    );
    let digest: StoredDigest = stored.parse().unwrap();
    assert!(
        digest.verify(password.as_bytes()).unwrap(),
        "row {} ({vector}) does not verify its password",
        rec.row
    );
    assert!(!digest.verify(b"not the password").unwrap());
}

fn assert_error(err: &RowError, code: &str, field: Option<&str>, external_id: Option<&str>) {
    assert_eq!(err.code, code, "{err:?}");
    assert_eq!(err.field.as_deref(), field, "{err:?}");
    assert_eq!(err.external_id.as_deref(), external_id, "{err:?}");
    assert!(!err.message.is_empty());
}

// ---------------------------------------------------------------------------------------------

#[test]
fn keyward_ndjson() {
    let run = run(&fixture("keyward.ndjson")[..], &SourceFormat::Keyward);
    assert_eq!(run.seen(), 9, "10 lines, one blank");
    assert_eq!(run.rows.len(), 9);

    let ann = run.record(1);
    assert_eq!(ann.id.as_deref(), Some("usr_ann"));
    assert_eq!(ann.external_id.as_deref(), Some("legacy-1"));
    assert_eq!(ann.username.as_deref(), Some("ann"));
    assert_eq!(ann.primary_email.as_deref(), Some("ann@example.com"));
    assert_eq!(ann.primary_phone.as_deref(), Some("+14155550101"));
    assert_eq!(ann.name.as_deref(), Some("Ann Example"));
    assert_eq!(
        ann.avatar.as_deref(),
        Some("https://cdn.example.com/ann.png")
    );
    assert_eq!(ann.profile, json!({"given_name": "Ann", "locale": "en-US"}));
    assert_eq!(ann.custom_data, json!({"plan": "pro", "seats": 5}));
    assert_eq!(ann.identities.len(), 1);
    assert_eq!(ann.identities["google"].user_id, "1093");
    assert_eq!(
        ann.identities["google"].details,
        json!({"email": "ann@gmail.com"})
    );
    assert_eq!(
        ann.identities_json(),
        json!({"google": {"user_id": "1093", "details": {"email": "ann@gmail.com"}}})
    );
    assert!(!ann.suspended);
    assert_eq!(ann.created_at, Some(datetime!(2021-04-05 06:07:08 UTC)));
    assert_eq!(
        ann.last_sign_in_at,
        Some(datetime!(2024-11-30 22:59:59.25 UTC))
    );
    assert_verifies(ann, "pyca-bcrypt-2b", "bcrypt");

    let bob = run.record(2);
    assert_eq!(bob.id, None);
    assert_eq!(bob.external_id.as_deref(), Some("legacy-2"));
    assert_eq!(bob.username, None);
    assert_eq!(bob.profile, json!({}));
    assert_eq!(bob.custom_data, json!({}));
    assert!(bob.identities.is_empty());
    assert_eq!(bob.created_at, None);
    assert_verifies(bob, "hashlib-sha256-after", "sha256");
    assert!(bob.password_digest.as_deref().unwrap().starts_with('{'));

    let carol = run.record(4);
    assert_eq!(carol.username.as_deref(), Some("carol"));
    assert!(carol.suspended);
    assert_verifies(
        carol,
        "django-00-django_pbkdf2_sha256",
        "django_pbkdf2_sha256",
    );

    assert_error(
        run.error(5),
        "invalid_field",
        Some("primary_email"),
        Some("legacy-4"),
    );
    assert_error(
        run.error(6),
        "unknown_digest_format",
        Some("password_digest"),
        Some("legacy-5"),
    );
    assert_error(run.error(7), "malformed_row", None, None);

    let phone_only = run.record(8);
    assert_eq!(phone_only.primary_phone.as_deref(), Some("+442079460958"));
    assert_verifies(phone_only, "passlib-ldap_salted_sha1-0", "ldap_ssha");

    assert_error(run.error(9), "missing_identifier", None, None);

    let gina = run.record(10);
    assert_eq!(gina.id.as_deref(), Some("usr_gina"));
    assert_verifies(gina, "hmac-sha1-0", "hmac_sha1");
}

#[test]
fn logto_users() {
    let run = run(&fixture("logto.json")[..], &SourceFormat::Logto);
    assert_eq!(run.seen(), 12);

    let ann = run.record(1);
    assert_eq!(
        ann.id.as_deref(),
        Some("u1a2b3c4d5e6"),
        "Logto ids are kept"
    );
    assert_eq!(ann.external_id.as_deref(), Some("u1a2b3c4d5e6"));
    assert_eq!(ann.username.as_deref(), Some("ann"));
    assert_eq!(ann.primary_email.as_deref(), Some("ann@example.com"));
    assert_eq!(
        ann.primary_phone.as_deref(),
        Some("+14155550101"),
        "+ added"
    );
    assert_eq!(ann.name.as_deref(), Some("Ann Example"));
    assert_eq!(
        ann.avatar.as_deref(),
        Some("https://cdn.example.com/ann.png")
    );
    assert_eq!(ann.custom_data, json!({"plan": "pro"}));
    assert_eq!(
        ann.profile,
        json!({"givenName": "Ann", "familyName": "Example"})
    );
    assert_eq!(ann.identities.len(), 2);
    assert_eq!(ann.identities["google"].user_id, "1093");
    assert_eq!(
        ann.identities["google"].details,
        json!({"id": "1093", "email": "ann@gmail.com", "name": "Ann"})
    );
    assert_eq!(ann.identities["github"].user_id, "4242");
    assert!(!ann.suspended);
    assert_eq!(ann.created_at, Some(datetime!(2023-11-14 22:13:20.123 UTC)));
    assert_eq!(
        ann.last_sign_in_at,
        Some(datetime!(2024-03-09 16:00:00 UTC))
    );
    assert_verifies(ann, "argon2-cffi-argon2id-m256", "argon2id");

    let bob = run.record(2);
    assert!(bob.suspended);
    assert_eq!(bob.primary_email, None);
    assert_eq!(bob.created_at, Some(datetime!(2023-11-14 22:13:20 UTC)));
    assert_eq!(bob.last_sign_in_at, None);
    assert_verifies(bob, "pyca-bcrypt-2a", "bcrypt");

    assert_verifies(run.record(3), "hashlib-sha256-unsalted", "sha256");
    assert_verifies(run.record(4), "django-14-django_unsalted_md5", "md5");
    assert_verifies(run.record(5), "hashlib-sha1-unsalted", "sha1");
    assert_verifies(run.record(6), "hashlib-md5-after", "md5");

    let gina = run.record(7);
    assert_eq!(gina.id.as_deref(), Some("u7"));
    assert_eq!(gina.primary_email.as_deref(), Some("gina@example.com"));
    assert_eq!(gina.primary_phone.as_deref(), Some("+4930123456"));
    assert_eq!(gina.custom_data, json!({"team": "b"}));
    assert_eq!(gina.created_at, Some(datetime!(2024-03-01 10:00:00.5 UTC)));
    assert_verifies(gina, "passlib-argon2-argon2i", "argon2i");

    assert_error(
        run.error(8),
        "invalid_field",
        Some("primary_email"),
        Some("u8bademail"),
    );
    assert_error(
        run.error(9),
        "unknown_digest_format",
        Some("password_digest"),
        Some("u9unknown"),
    );
    assert_error(run.error(10), "malformed_row", None, Some("u10shape"));
    assert_error(run.error(11), "malformed_row", None, None);

    let lee = run.record(12);
    assert_eq!(lee.id.as_deref(), Some("u12argon2d"));
    assert_verifies(lee, "argon2-cffi-argon2d-m256", "argon2d");
}

#[test]
fn auth0_users() {
    let run = run(&fixture("auth0_users.json")[..], &SourceFormat::Auth0);
    assert_eq!(run.seen(), 13);

    let ann = run.record(1);
    assert_eq!(ann.id, None, "Auth0 ids are not Keyward ids");
    assert_eq!(
        ann.external_id.as_deref(),
        Some("auth0|5f7c8ec7c33c6c004bbafe82")
    );
    assert_eq!(ann.username.as_deref(), Some("ann"));
    assert_eq!(ann.primary_email.as_deref(), Some("ann@example.com"));
    assert_eq!(ann.primary_phone, None);
    assert_eq!(ann.name.as_deref(), Some("Ann Example"));
    assert_eq!(
        ann.avatar.as_deref(),
        Some("https://s.gravatar.com/avatar/ann.png")
    );
    assert_eq!(
        ann.profile,
        json!({"given_name": "Ann", "family_name": "Example", "nickname": "annie", "email_verified": true})
    );
    assert_eq!(
        ann.custom_data,
        json!({"theme": "dark", "app_metadata": {"roles": ["admin"], "plan": "enterprise"}})
    );
    assert!(
        ann.identities.is_empty(),
        "the auth0 database identity is the user itself"
    );
    assert!(!ann.suspended);
    assert_eq!(ann.created_at, Some(datetime!(2020-10-06 15:32:55.234 UTC)));
    assert_eq!(
        ann.last_sign_in_at,
        Some(datetime!(2024-06-01 08:00:00 UTC))
    );
    assert_verifies(ann, "pyca-bcrypt-2a", "bcrypt");

    let bob = run.record(2);
    assert!(bob.suspended);
    assert_eq!(bob.password_digest, None);
    assert_eq!(bob.password_algorithm, None);
    assert_eq!(bob.identities.len(), 2);
    assert_eq!(bob.identities["google"].user_id, "109876543210");
    assert_eq!(
        bob.identities["google"].details,
        json!({"connection": "google-oauth2", "isSocial": true,
               "profileData": {"email": "bob@gmail.com", "locale": "en"}})
    );
    assert_eq!(bob.identities["github"].user_id, "1234567");
    assert_eq!(bob.profile, json!({"email_verified": true}));

    assert_verifies(run.record(3), "hashlib-md5-before", "md5");
    assert_verifies(run.record(4), "hashlib-sha512-binary-salt", "sha512");
    assert_verifies(run.record(5), "hmac-sha256-0", "hmac_sha256");
    assert_verifies(run.record(6), "passlib-argon2-argon2id", "argon2id");
    assert_verifies(
        run.record(7),
        "phc-pbkdf2-sha256-rustcrypto",
        "pbkdf2_sha256",
    );
    let hank = run.record(8);
    assert_eq!(hank.primary_phone.as_deref(), Some("+14155550102"));
    assert_eq!(hank.profile, json!({"phone_verified": false}));
    assert_verifies(hank, "passlib-ldap_salted_sha1-0", "ldap_ssha");

    assert_error(
        run.error(9),
        "invalid_field",
        Some("primary_email"),
        Some("auth0|bademail"),
    );
    assert_error(
        run.error(10),
        "unknown_digest_format",
        Some("password_digest"),
        Some("auth0|md4"),
    );
    assert_error(run.error(11), "malformed_row", None, Some("auth0|shape"));
    assert_verifies(run.record(12), "passlib-bcrypt-2b", "bcrypt");
    assert_verifies(run.record(13), "hashlib-sha256-hex-salt", "sha256");
}

#[test]
fn auth0_export_ndjson() {
    let input = concat!(
        r#"{"user_id":"auth0|1","email":"a@example.com","created_at":"2020-01-01T00:00:00.000Z"}"#,
        "\n",
        r#"{"user_id":"auth0|2","email":"b@example.com","blocked":true}"#,
        "\n"
    );
    let run = run(input.as_bytes(), &SourceFormat::Auth0);
    assert_eq!(run.seen(), 2);
    assert_eq!(run.record(1).external_id.as_deref(), Some("auth0|1"));
    assert!(run.record(2).suspended);
}

fn firebase_format() -> SourceFormat {
    let config = String::from_utf8(fixture("firebase_hash_config.txt")).unwrap();
    SourceFormat::Firebase(parse_firebase_hash_config(&config).unwrap())
}

#[test]
fn firebase_export() {
    let run = run(&fixture("firebase_users.json")[..], &firebase_format());
    assert_eq!(run.seen(), 5);

    let user1 = run.record(1);
    assert_eq!(user1.id, None);
    assert_eq!(
        user1.external_id.as_deref(),
        Some("0k3S8r2mXhQd8tA1cVwZ9yL4")
    );
    assert_eq!(user1.username, None);
    assert_eq!(user1.primary_email.as_deref(), Some("user1@example.com"));
    assert_eq!(user1.name.as_deref(), Some("User One"));
    assert_eq!(user1.profile, json!({"email_verified": true}));
    assert_eq!(user1.custom_data, json!({}));
    assert!(
        user1.identities.is_empty(),
        "the password provider is skipped"
    );
    assert!(!user1.suspended);
    assert_eq!(user1.created_at, Some(datetime!(2023-11-14 22:13:20 UTC)));
    assert_eq!(
        user1.last_sign_in_at,
        Some(datetime!(2024-03-09 16:00:00 UTC))
    );
    // Firebase's published sample: user1password under the sample project parameters.
    assert_verifies(user1, "firebase-scrypt-reference", "firebase_scrypt");

    let bob = run.record(2);
    assert_eq!(bob.primary_phone.as_deref(), Some("+14155550199"));
    assert_eq!(
        bob.avatar.as_deref(),
        Some("https://lh3.googleusercontent.com/a/bob")
    );
    assert!(bob.suspended);
    assert_eq!(bob.custom_data, json!({"admin": true, "tier": 2}));
    assert_eq!(bob.profile, json!({"email_verified": false}));
    assert_eq!(bob.identities.len(), 1, "the phone provider is skipped");
    assert_eq!(bob.identities["google"].user_id, "109876543210");
    assert_eq!(bob.identities["google"].details["email"], "bob@gmail.com");
    assert_eq!(bob.password_digest, None);

    assert_error(
        run.error(3),
        "invalid_field",
        Some("primary_email"),
        Some("bademail1"),
    );
    assert_error(
        run.error(4),
        "unknown_digest_format",
        Some("password_digest"),
        Some("badhash1"),
    );
    assert_error(run.error(5), "malformed_row", None, None);
}

#[test]
fn firebase_skips_other_members_and_needs_users() {
    let format = firebase_format();
    let input = r#"{"kind":"x","meta":{"users":1},"users":[{"localId":"a1"}],"next":null}"#;
    let run1 = run(input.as_bytes(), &format);
    assert_eq!(run1.seen(), 1);
    assert_eq!(run1.record(1).external_id.as_deref(), Some("a1"));

    let missing = run(r#"{"accounts":[]}"#.as_bytes(), &format);
    assert!(matches!(
        missing.outcome,
        Err(SourceError::Malformed { row: 0, .. })
    ));
    let empty = run(r#"{"users":[]}"#.as_bytes(), &format);
    assert_eq!(empty.seen(), 0);
}

#[test]
fn csv_with_mapping() {
    let mapping = parse_csv_mapping(
        "external_id=UID,username=Login,email=Email,name=Full Name,phone=Phone,password_digest=Hash,\
         created_at=Created,suspended=Blocked,custom_data.plan=Plan,profile.locale=Locale",
    )
    .unwrap();
    let run = run(&fixture("users.csv")[..], &SourceFormat::Csv(mapping));
    assert_eq!(run.seen(), 9);

    let ann = run.record(1);
    assert_eq!(ann.id, None);
    assert_eq!(ann.external_id.as_deref(), Some("1001"));
    assert_eq!(ann.username.as_deref(), Some("ann"));
    assert_eq!(ann.primary_email.as_deref(), Some("ann@example.com"));
    assert_eq!(ann.primary_phone.as_deref(), Some("+14155550101"));
    assert_eq!(ann.name.as_deref(), Some("Example, Ann"));
    assert_eq!(ann.avatar, None);
    assert_eq!(ann.custom_data, json!({"plan": "pro"}));
    assert_eq!(ann.profile, json!({"locale": "en-US"}));
    assert!(ann.identities.is_empty());
    assert!(!ann.suspended);
    assert_eq!(ann.created_at, Some(datetime!(2021-04-05 06:07:08 UTC)));
    assert_eq!(ann.last_sign_in_at, None);
    assert_verifies(ann, "passlib-bcrypt-2y", "bcrypt");

    let bob = run.record(2);
    assert_eq!(bob.username, None, "empty cells are absent");
    assert!(bob.suspended);
    assert_eq!(bob.created_at, Some(datetime!(2022-01-01 00:00:00 UTC)));
    assert_eq!(bob.custom_data, json!({}));
    assert_verifies(bob, "hashlib-sha256-after", "sha256");

    let carol = run.record(3);
    assert_eq!(carol.name.as_deref(), Some("Carol\nSecond Line"));
    assert_verifies(
        carol,
        "django-00-django_pbkdf2_sha256",
        "django_pbkdf2_sha256",
    );
    assert_verifies(
        run.record(4),
        "werkzeug-0-werkzeug_pbkdf2",
        "werkzeug_pbkdf2",
    );
    assert_verifies(run.record(5), "passlib-phpass-P-7", "phpass");

    assert_error(
        run.error(6),
        "invalid_field",
        Some("primary_email"),
        Some("1006"),
    );
    assert_error(
        run.error(7),
        "unknown_digest_format",
        Some("password_digest"),
        Some("1007"),
    );
    assert_error(run.error(8), "malformed_row", None, None);
    assert_error(
        run.error(9),
        "invalid_field",
        Some("suspended"),
        Some("1009"),
    );
}

#[test]
fn csv_bare_hash_column() {
    let mapping = parse_csv_mapping(
        "email=email,password_hash=hash,password_algorithm=sha256,password_salt=salt,password_salt_position=after",
    )
    .unwrap();
    let run = run(
        &fixture("users_sha256.csv")[..],
        &SourceFormat::Csv(mapping),
    );
    assert_eq!(run.seen(), 4);
    let ann = run.record(1);
    assert_eq!(ann.primary_email.as_deref(), Some("ann@example.com"));
    assert_verifies(ann, "hashlib-sha256-after", "sha256");
    assert_error(
        run.error(2),
        "unknown_digest_format",
        Some("password_digest"),
        None,
    );
    assert_error(
        run.error(3),
        "unknown_digest_format",
        Some("password_digest"),
        None,
    );
    let dave = run.record(4);
    assert_eq!(dave.password_digest, None, "no hash, no digest");
}

#[test]
fn csv_mapping_must_match_the_header() {
    let mapping = parse_csv_mapping("email=E-Mail").unwrap();
    let run = run(&fixture("users.csv")[..], &SourceFormat::Csv(mapping));
    assert!(matches!(
        run.outcome,
        Err(SourceError::Malformed { row: 0, .. })
    ));
    assert!(run.rows.is_empty());
}

// ---- streaming -------------------------------------------------------------------------------

/// Generates `rows` users lazily, as NDJSON or as one JSON array: the input never exists in
/// memory as a whole.
struct Generated {
    rows: u64,
    next: u64,
    array: bool,
    pending: Vec<u8>,
    at: usize,
    finished: bool,
}

impl Generated {
    fn new(rows: u64, array: bool) -> Self {
        Self {
            rows,
            next: 0,
            array,
            pending: Vec::new(),
            at: 0,
            finished: false,
        }
    }

    fn refill(&mut self) {
        use std::io::Write as _;
        self.pending.clear();
        self.at = 0;
        if self.finished {
            return;
        }
        if self.next == 0 && self.array {
            self.pending.push(b'[');
        }
        // A chunk of rows at a time.
        let end = (self.next + 64).min(self.rows);
        while self.next < end {
            let i = self.next;
            if self.array && i > 0 {
                self.pending.push(b',');
            }
            write!(
                self.pending,
                r#"{{"external_id":"ext-{i}","username":"user_{i}","primary_email":"user{i}@example.com","custom_data":{{"n":{i}}},"password_digest":"$2b$04$2nPC3w0K6z9nu5Fdr8HIO.1yf6dbeb1OGxGdBesjdI1bTVnAfj.Ja","created_at":"2024-01-01T00:00:00Z"}}"#
            )
            .unwrap();
            if !self.array {
                self.pending.push(b'\n');
            }
            self.next += 1;
        }
        if self.next == self.rows {
            if self.array {
                self.pending.push(b']');
            }
            self.finished = true;
        }
    }
}

impl Read for Generated {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.at == self.pending.len() {
            self.refill();
        }
        let n = buf.len().min(self.pending.len() - self.at);
        buf[..n].copy_from_slice(&self.pending[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// Peak resident memory of this process (nextest runs each test in its own process).
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn stream_count(array: bool) {
    const ROWS: u64 = 200_000;
    let mut ok = 0u64;
    let mut last_row = 0;
    let seen = read_records(
        Generated::new(ROWS, array),
        &SourceFormat::Keyward,
        &mut |r| {
            let rec = r.expect("every generated row is valid");
            assert_eq!(rec.row, last_row + 1);
            last_row = rec.row;
            ok += 1;
            ControlFlow::Continue(())
        },
    )
    .unwrap();
    assert_eq!(seen, ROWS);
    assert_eq!(ok, ROWS);
    // The generated input is about 50 MB and the records more: holding either would show.
    if let Some(kib) = peak_rss_kib() {
        assert!(kib < 32 * 1024, "peak RSS {kib} KiB");
    }
}

#[test]
fn streams_200k_ndjson_rows() {
    stream_count(false);
}

#[test]
fn streams_200k_array_rows() {
    stream_count(true);
}

#[test]
fn broken_json_mid_array_is_fatal_after_the_earlier_rows() {
    let input = r#"[{"username":"a"},{"username":"b"},{"username": "c" "oops"},{"username":"d"}]"#;
    let run = run(input.as_bytes(), &SourceFormat::Keyward);
    assert_eq!(run.rows.len(), 2);
    assert_eq!(run.record(2).username.as_deref(), Some("b"));
    match run.outcome {
        Err(SourceError::Malformed { row, .. }) => assert_eq!(row, 3),
        other => panic!("{other:?}"),
    }
    // Truncated input: the same.
    let run = run_str(r#"[{"username":"a"},{"userna"#);
    assert_eq!(run.rows.len(), 1);
    assert!(matches!(
        run.outcome,
        Err(SourceError::Malformed { row: 2, .. })
    ));
}

fn run_str(s: &str) -> Run {
    run(s.as_bytes(), &SourceFormat::Keyward)
}

#[test]
fn wrongly_shaped_elements_are_row_errors() {
    let run =
        run_str(r#"[{"username":"a"}, 5, {"username":"b","bogus":1}, null, {"username":"c"}]"#);
    assert_eq!(run.seen(), 5);
    assert_eq!(run.record(1).username.as_deref(), Some("a"));
    assert_error(run.error(2), "malformed_row", None, None);
    assert_error(run.error(3), "malformed_row", None, None);
    assert_error(run.error(4), "malformed_row", None, None);
    assert_eq!(run.record(5).username.as_deref(), Some("c"));
}

#[test]
fn sink_break_stops_reading() {
    for input in [
        "{\"username\":\"a\"}\n{\"username\":\"b\"}\n{\"username\":\"c\"}\n",
        r#"[{"username":"a"},{"username":"b"},{"username":"c"}]"#,
        // Stopping early never reads the broken tail.
        r#"[{"username":"a"},{"username":"b"},{"username":"c" garbage"#,
    ] {
        let mut got = Vec::new();
        let seen = read_records(input.as_bytes(), &SourceFormat::Keyward, &mut |r| {
            got.push(r.unwrap().username.unwrap());
            if got.len() == 2 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .unwrap();
        assert_eq!(seen, 2, "{input}");
        assert_eq!(got, ["a", "b"]);
    }
}

#[test]
fn bom_crlf_blank_lines_and_empty_input() {
    let input = "\u{feff}\r\n\r\n{\"username\":\"a\"}\r\n\r\n{\"username\":\"b\"}";
    let run1 = run_str(input);
    assert_eq!(run1.seen(), 2);
    assert_eq!(
        run1.record(3).username.as_deref(),
        Some("a"),
        "line numbers"
    );
    assert_eq!(run1.record(5).username.as_deref(), Some("b"));
    let run2 = run_str("\u{feff}  [ {\"username\":\"a\"} ]  \n");
    assert_eq!(run2.seen(), 1);
    assert_eq!(run_str("").seen(), 0);
    assert_eq!(run_str(" \n\n ").seen(), 0);
    let trailing = run_str("[{\"username\":\"a\"}] x");
    assert!(matches!(
        trailing.outcome,
        Err(SourceError::Malformed { .. })
    ));
}

#[test]
fn io_errors_are_fatal() {
    struct Failing(usize);
    impl Read for Failing {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.0 == 0 {
                return Err(std::io::Error::other("disk gone"));
            }
            self.0 -= 1;
            let line = b"{\"username\":\"a\"}\n";
            buf[..line.len()].copy_from_slice(line);
            Ok(line.len())
        }
    }
    let first = run(Failing(1), &SourceFormat::Keyward);
    assert!(
        matches!(first.outcome, Err(SourceError::Io(_))),
        "{:?}",
        first.outcome
    );
    let run = run(
        std::io::Read::chain(&b"[{\"username\":\"a\"},"[..], Failing(0)),
        &SourceFormat::Keyward,
    );
    assert_eq!(run.rows.len(), 1);
    assert!(
        matches!(run.outcome, Err(SourceError::Io(_))),
        "{:?}",
        run.outcome
    );
}
