//! Access-token signing and verification cost per algorithm (criterion).
//!
//! `cargo bench -p keyward-core --bench jwt`
//!
//! - `mint_access_token/{EdDSA,ES256}`: claims + JSON + JWS signature with a pre-loaded
//!   key, as the token endpoint does per request.
//! - `verify_access_token/{EdDSA,ES256}`: header parse, key lookup, signature and claim
//!   checks, as the management API does per request.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use keyward_core::crypto::MasterKey;
use keyward_core::keys::{generate_signing_key, KeyAlgorithm, KeySet, LoadedKey};
use keyward_core::token::{mint_access_token, verify_access_token, TokenGrant};
use time::OffsetDateTime;

const ISSUER: &str = "https://auth.example.com";
const AUDIENCE: &str = "https://auth.example.com/api";
const ALGORITHMS: [KeyAlgorithm; 2] = [KeyAlgorithm::EdDsa, KeyAlgorithm::Es256];

fn key_set(algorithm: KeyAlgorithm) -> Result<KeySet, String> {
    let master =
        MasterKey::new("bench-master-secret-0123456789abcdef").map_err(|e| e.to_string())?;
    let activated = OffsetDateTime::now_utc() - time::Duration::hours(1);
    let stored = generate_signing_key(algorithm, &master, activated, activated)
        .map_err(|e| e.to_string())?;
    let loaded = LoadedKey::from_stored(&stored, &master).map_err(|e| e.to_string())?;
    Ok(KeySet::new(vec![loaded]))
}

/// A machine-to-machine grant like the token endpoint's for the management API.
fn grant() -> TokenGrant<'static> {
    TokenGrant {
        issuer: ISSUER,
        subject: "app_01JBENCHAPPLICATION0000000",
        audience: AUDIENCE,
        client_id: "app_01JBENCHAPPLICATION0000000",
        scope: "applications:read applications:write users:read users:write accounts:read accounts:write"
            .to_owned(),
        ttl_secs: 3600,
        user_id: None,
        application_id: Some("app_01JBENCHAPPLICATION0000000".to_owned()),
        account_id: None,
        role: None,
        grant_id: None,
    }
}

fn fail(what: &str, error: impl std::fmt::Display) -> ! {
    eprintln!("jwt bench setup failed ({what}): {error}");
    std::process::exit(1)
}

fn mint(c: &mut Criterion) {
    let mut group = c.benchmark_group("mint_access_token");
    for algorithm in ALGORITHMS {
        let keys = key_set(algorithm).unwrap_or_else(|e| fail("key set", e));
        group.bench_function(BenchmarkId::from_parameter(algorithm.as_str()), |b| {
            b.iter(|| {
                let minted =
                    mint_access_token(black_box(&keys), grant(), OffsetDateTime::now_utc());
                black_box(minted.is_ok())
            })
        });
    }
    group.finish();
}

fn verify(c: &mut Criterion) {
    let mut group = c.benchmark_group("verify_access_token");
    for algorithm in ALGORITHMS {
        let keys = key_set(algorithm).unwrap_or_else(|e| fail("key set", e));
        let (token, _) = mint_access_token(&keys, grant(), OffsetDateTime::now_utc())
            .unwrap_or_else(|e| fail("mint", e));
        if let Err(e) = verify_access_token(&keys, &token, ISSUER, AUDIENCE) {
            fail("verify", e);
        }
        group.bench_function(BenchmarkId::from_parameter(algorithm.as_str()), |b| {
            b.iter(|| {
                let verified = verify_access_token(&keys, black_box(&token), ISSUER, AUDIENCE);
                black_box(verified.is_ok())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, mint, verify);
criterion_main!(benches);
