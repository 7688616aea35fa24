//! Settings from an optional TOML file, overridden by `KEYWARD_<SETTING>` variables.

use std::path::Path;

use anyhow::Context;
use figment::providers::{Env, Format, Toml};
use figment::Figment;
use keyward_server::Settings;

/// Every setting that may come from the environment (`KEYWARD_` + upper case).
const ENV_SETTINGS: &[&str] = &[
    "issuer",
    "listen",
    "data_dir",
    "database_url",
    "database_max_connections",
    "master_secret",
    "previous_master_secrets",
    "management_audience",
    "signing_algorithm",
    "access_token_ttl_secs",
    "bootstrap_client_id",
    "bootstrap_client_secret",
    "client_cache_ttl_secs",
    "key_refresh_interval_secs",
    "log_json",
    "session_ttl_secs",
    "session_idle_secs",
    "interaction_ttl_secs",
    "authorization_code_ttl_secs",
    "refresh_token_idle_secs",
    "refresh_token_absolute_secs",
    "id_token_ttl_secs",
    "argon2_memory_kib",
    "argon2_iterations",
    "argon2_parallelism",
    "signin_max_failures_per_account",
    "signin_max_failures_per_address",
    "signin_throttle_window_secs",
    "secure_cookies",
    "regions",
    "local_region_url",
    "provisioning_audience",
    "reaper_interval_secs",
    "mail_transport",
    "smtp_url",
    "mail_from",
    "smtp_timeout_secs",
    "external_timeout_secs",
];

pub fn load(config_file: Option<&Path>) -> anyhow::Result<Settings> {
    // Settings not given anywhere take `Settings::default()` (`#[serde(default)]`).
    let mut figment = Figment::new();
    if let Some(path) = config_file {
        anyhow::ensure!(
            path.exists(),
            "config file {} does not exist",
            path.display()
        );
        figment = figment.merge(Toml::file(path));
    }
    // Only known names: other KEYWARD_* variables (test harness settings) are not errors.
    let figment = figment.merge(Env::prefixed("KEYWARD_").only(ENV_SETTINGS));
    figment
        .extract::<Settings>()
        .context("invalid configuration")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::result_large_err)] // figment::Jail fixes the closure signature
    use super::*;

    #[test]
    fn toml_file_and_environment_are_merged() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "keyward.toml",
                "issuer = \"https://auth.example.com\"\nlisten = \"0.0.0.0:9000\"\n",
            )?;
            jail.set_env("KEYWARD_LISTEN", "127.0.0.1:7000");
            jail.set_env("KEYWARD_DATABASE_URL", "postgres://u@h/db");
            jail.set_env("KEYWARD_CLIENT_CACHE_TTL_SECS", "0");
            jail.set_env("KEYWARD_TEST_SOMETHING_ELSE", "ignored");
            let settings = load(Some(Path::new("keyward.toml"))).unwrap();
            assert_eq!(settings.issuer, "https://auth.example.com");
            assert_eq!(settings.listen, "127.0.0.1:7000");
            assert_eq!(settings.database_url.as_deref(), Some("postgres://u@h/db"));
            assert_eq!(settings.client_cache_ttl_secs, 0);
            assert_eq!(
                settings.management_audience(),
                "https://auth.example.com/api"
            );
            Ok(())
        });
    }

    #[test]
    fn regions_come_from_the_file_or_the_environment() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "keyward.toml",
                "[[regions]]\nid = \"eu\"\nadmin_url = \"postgres://admin@db.eu/postgres\"\n\
                 public_host = \"eu.db.example.com\"\n",
            )?;
            let settings = load(Some(Path::new("keyward.toml"))).unwrap();
            assert_eq!(settings.regions.len(), 1);
            assert_eq!(settings.regions[0].id, "eu");
            assert_eq!(settings.regions[0].connection_limit, 10);
            jail.set_env(
                "KEYWARD_REGIONS",
                r#"[{id="us", name="US East", admin_url="postgres://admin@db.us/postgres", public_port=6432}]"#,
            );
            let settings = load(Some(Path::new("keyward.toml"))).unwrap();
            assert_eq!(settings.regions.len(), 1);
            assert_eq!(settings.regions[0].id, "us");
            assert_eq!(settings.regions[0].public_port, Some(6432));
            Ok(())
        });
    }

    #[test]
    fn mail_settings_come_from_the_file_or_the_environment() {
        figment::Jail::expect_with(|jail| {
            let settings = load(None).unwrap();
            assert_eq!(settings.mail_transport, "outbox");
            assert_eq!(settings.smtp_url, None);
            jail.create_file(
                "keyward.toml",
                "mail_transport = \"smtp\"\nsmtp_url = \"smtps://u:p@mail.example.com\"\n",
            )?;
            jail.set_env("KEYWARD_MAIL_FROM", "Auth <auth@example.com>");
            jail.set_env("KEYWARD_SMTP_TIMEOUT_SECS", "3");
            let settings = load(Some(Path::new("keyward.toml"))).unwrap();
            assert_eq!(settings.mail_transport, "smtp");
            assert_eq!(
                settings.smtp_url.as_deref(),
                Some("smtps://u:p@mail.example.com")
            );
            assert_eq!(
                settings.mail_from.as_deref(),
                Some("Auth <auth@example.com>")
            );
            assert_eq!(settings.smtp_timeout_secs, 3);
            jail.set_env("KEYWARD_SMTP_URL", "smtp://relay.internal:25");
            let settings = load(Some(Path::new("keyward.toml"))).unwrap();
            assert_eq!(
                settings.smtp_url.as_deref(),
                Some("smtp://relay.internal:25")
            );
            Ok(())
        });
    }

    #[test]
    fn unknown_file_settings_are_errors() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("keyward.toml", "isuer = \"typo\"\n")?;
            assert!(load(Some(Path::new("keyward.toml"))).is_err());
            Ok(())
        });
    }
}
