//! The partner service's settings: command-line arguments and the resolved configuration.

use std::fmt;
use std::net::SocketAddr;

use anyhow::{bail, Context};
use keyward_client::provisioning_audience;
use url::Url;

/// `keyward partner serve`: runs the partner's create and claim service.
#[derive(Clone, clap::Args)]
pub struct PartnerServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8787")]
    pub listen: SocketAddr,
    /// The URL browsers and the CLI reach this service at; the OAuth redirect URI is
    /// `{public-url}/claim/callback` and the application's claim URI `{public-url}/claim`.
    #[arg(long, default_value = "http://127.0.0.1:8787")]
    pub public_url: String,
    /// Keyward's issuer URL, for example `http://127.0.0.1:8080`.
    #[arg(long = "keyward-url", env = "KEYWARD_PARTNER_ISSUER")]
    pub issuer: String,
    /// The partner application's client id.
    #[arg(long, env = "KEYWARD_PARTNER_CLIENT_ID")]
    pub client_id: String,
    /// The partner application's client secret.
    #[arg(long, env = "KEYWARD_PARTNER_CLIENT_SECRET", hide_env_values = true)]
    pub client_secret: String,
    /// The provisioning API's audience (default `{keyward-url}/v1`).
    #[arg(long)]
    pub audience: Option<String>,
    /// `POST /create` requests allowed per minute and client address (0: no limit).
    #[arg(long, default_value_t = 5)]
    pub create_limit: u32,
    /// Take the client address from the first `X-Forwarded-For` entry (only behind a
    /// proxy that sets it).
    #[arg(long)]
    pub trust_forwarded_for: bool,
}

impl fmt::Debug for PartnerServeArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PartnerServeArgs")
            .field("listen", &self.listen)
            .field("public_url", &self.public_url)
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("audience", &self.audience)
            .field("create_limit", &self.create_limit)
            .field("trust_forwarded_for", &self.trust_forwarded_for)
            .finish_non_exhaustive()
    }
}

impl PartnerServeArgs {
    /// The configuration these arguments describe, with the URLs checked.
    pub fn config(&self) -> anyhow::Result<PartnerConfig> {
        let mut config = PartnerConfig::new(
            &self.issuer,
            &self.client_id,
            &self.client_secret,
            &self.public_url,
        );
        if let Some(audience) = &self.audience {
            config.audience.clone_from(audience);
        }
        config.create_limit = self.create_limit;
        config.trust_forwarded_for = self.trust_forwarded_for;
        config.validate()?;
        Ok(config)
    }
}

/// Everything the partner service needs.
#[derive(Clone)]
pub struct PartnerConfig {
    /// Keyward's issuer, without a trailing slash.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
    /// The provisioning API's audience.
    pub audience: String,
    /// This service's public URL, without a trailing slash.
    pub public_url: String,
    /// `POST /create` requests per minute and client address; 0 disables the limit.
    pub create_limit: u32,
    pub trust_forwarded_for: bool,
}

impl fmt::Debug for PartnerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PartnerConfig")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("audience", &self.audience)
            .field("public_url", &self.public_url)
            .field("create_limit", &self.create_limit)
            .field("trust_forwarded_for", &self.trust_forwarded_for)
            .finish_non_exhaustive()
    }
}

impl PartnerConfig {
    /// The defaults: audience `{issuer}/v1`, 5 creates per minute and address, the socket
    /// peer as the client address.
    pub fn new(
        issuer: impl AsRef<str>,
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
        public_url: impl AsRef<str>,
    ) -> Self {
        let issuer = issuer.as_ref().trim_end_matches('/').to_owned();
        Self {
            audience: provisioning_audience(&issuer),
            issuer,
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            public_url: public_url.as_ref().trim_end_matches('/').to_owned(),
            create_limit: 5,
            trust_forwarded_for: false,
        }
    }

    /// The OAuth redirect URI registered on the partner application.
    pub fn redirect_uri(&self) -> String {
        format!("{}/claim/callback", self.public_url)
    }

    /// The claim page URL to register as the application's claim URI.
    pub fn claim_uri(&self) -> String {
        format!("{}/claim", self.public_url)
    }

    pub(crate) fn token_url(&self) -> String {
        format!("{}/oauth2/token", self.issuer)
    }

    pub(crate) fn authorize_url(&self) -> String {
        format!("{}/oauth2/authorize", self.issuer)
    }

    /// Checks that the URLs are absolute http(s) URLs and the credentials are present.
    pub fn validate(&self) -> anyhow::Result<()> {
        for (name, value) in [
            ("keyward-url", &self.issuer),
            ("public-url", &self.public_url),
        ] {
            let url = Url::parse(value).with_context(|| format!("--{name} {value:?}"))?;
            if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                bail!("--{name} must be an http(s) URL, got {value:?}");
            }
            if url.query().is_some() || url.fragment().is_some() {
                bail!("--{name} must not have a query or fragment, got {value:?}");
            }
        }
        if self.client_id.is_empty() || self.client_secret.is_empty() {
            bail!("the partner application's client id and secret are required");
        }
        Ok(())
    }

    /// Cookies get the `Secure` attribute when the service is public over https.
    pub(crate) fn secure_cookies(&self) -> bool {
        self.public_url.starts_with("https://")
    }

    /// The issuer's origin, for the CSP `form-action` (the claim form redirects there).
    pub(crate) fn issuer_origin(&self) -> String {
        Url::parse(&self.issuer)
            .map(|u| u.origin().ascii_serialization())
            .unwrap_or_else(|_| self.issuer.clone())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: PartnerServeArgs,
    }

    #[test]
    fn defaults_and_derived_urls() {
        let cli = Cli::try_parse_from([
            "x",
            "--keyward-url",
            "http://127.0.0.1:8080/",
            "--client-id",
            "app_1",
            "--client-secret",
            "kws_secret",
        ])
        .unwrap();
        assert_eq!(cli.args.listen.to_string(), "127.0.0.1:8787");
        assert!(!cli.args.trust_forwarded_for);
        let config = cli.args.config().unwrap();
        assert_eq!(config.issuer, "http://127.0.0.1:8080");
        assert_eq!(config.audience, "http://127.0.0.1:8080/v1");
        assert_eq!(config.create_limit, 5);
        assert_eq!(
            config.redirect_uri(),
            "http://127.0.0.1:8787/claim/callback"
        );
        assert_eq!(config.claim_uri(), "http://127.0.0.1:8787/claim");
        assert_eq!(config.issuer_origin(), "http://127.0.0.1:8080");
        assert!(!format!("{config:?}").contains("kws_secret"));
        assert!(!format!("{:?}", cli.args).contains("kws_secret"));
    }

    #[test]
    fn bad_urls_are_refused() {
        let mut config = PartnerConfig::new("ftp://h", "a", "b", "http://127.0.0.1:1");
        assert!(config.validate().is_err());
        config.issuer = "http://h".into();
        assert!(config.validate().is_ok());
        config.public_url = "not a url".into();
        assert!(config.validate().is_err());
    }
}
