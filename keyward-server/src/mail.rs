//! Outgoing mail (sign-in codes) through lettre.
//!
//! Two transports: `outbox` (the default) writes each message as an `.eml` file under
//! `{data_dir}/outbox/`, for development, where an operator reads it with any mail reader
//! or `cat`; `smtp` sends through the relay named by `smtp_url` (`smtp://…` plain,
//! `smtp://…?tls=required` STARTTLS, `smtps://…` implicit TLS; lettre parses the URL).
//! Every send is bounded by `smtp_timeout_secs`, and the log says where a message went but
//! never what it says.

use std::path::PathBuf;
use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::settings::Settings;

enum Transport {
    Outbox {
        dir: PathBuf,
        transport: AsyncFileTransport<Tokio1Executor>,
    },
    Smtp {
        /// `host:port`, for the log (the URL may carry credentials).
        relay: String,
        transport: AsyncSmtpTransport<Tokio1Executor>,
    },
}

/// Sends mail with the configured transport and sender.
pub struct Mailer {
    transport: Transport,
    from: Mailbox,
    timeout: Duration,
}

/// Why a message was not sent. The text never contains the message.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("invalid recipient address")]
    Recipient,
    #[error("building the message: {0}")]
    Build(String),
    #[error("sending: {0}")]
    Send(String),
    #[error("sending timed out after {0:?}")]
    Timeout(Duration),
}

impl Mailer {
    /// The mailer the settings describe. Errors name the bad setting (for start-up).
    pub fn from_settings(settings: &Settings) -> Result<Self, String> {
        let timeout = Duration::from_secs(settings.smtp_timeout_secs.max(1));
        let from_text = match &settings.mail_from {
            Some(from) => from.clone(),
            None => format!("Keyward <no-reply@{}>", issuer_host(settings)),
        };
        let from: Mailbox = from_text
            .parse()
            .map_err(|e| format!("mail_from {from_text:?} is not a mail address: {e}"))?;
        let transport = match settings.mail_transport.as_str() {
            "outbox" => {
                // Created here when possible, and again before each write: a deployment
                // that never sends mail must not fail to start on a read-only data dir.
                let dir = settings.data_dir.join("outbox");
                if let Err(e) = std::fs::create_dir_all(&dir) {
                    tracing::warn!(dir = %dir.display(), error = %e, "could not create the mail outbox");
                }
                Transport::Outbox {
                    transport: AsyncFileTransport::<Tokio1Executor>::new(&dir),
                    dir,
                }
            }
            "smtp" => {
                let url = settings
                    .smtp_url
                    .as_deref()
                    .ok_or("mail_transport = \"smtp\" needs smtp_url")?;
                let parsed =
                    url::Url::parse(url).map_err(|e| format!("smtp_url is not a URL: {e}"))?;
                let relay = format!(
                    "{}:{}",
                    parsed.host_str().unwrap_or("?"),
                    parsed
                        .port()
                        .map(|p| p.to_string())
                        .unwrap_or_else(|| "default port".into())
                );
                let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
                    .map_err(|e| format!("smtp_url: {e}"))?
                    .timeout(Some(timeout))
                    .build();
                Transport::Smtp { relay, transport }
            }
            other => {
                return Err(format!(
                    "mail_transport {other:?}: expected \"outbox\" or \"smtp\""
                ))
            }
        };
        Ok(Self {
            transport,
            from,
            timeout,
        })
    }

    /// Where messages go, for the start-up log.
    pub fn describe(&self) -> String {
        match &self.transport {
            Transport::Outbox { dir, .. } => format!("outbox {}", dir.display()),
            Transport::Smtp { relay, .. } => format!("SMTP relay {relay}"),
        }
    }

    /// Sends a plain-text message to `to`, giving up after the timeout.
    pub async fn send(&self, to: &str, subject: &str, body: String) -> Result<(), MailError> {
        let to: Mailbox = to.parse().map_err(|_| MailError::Recipient)?;
        // A Message-ID in the sender's domain (relays and spam filters expect one).
        let message_id = format!(
            "<{}@{}>",
            keyward_core::secret::random_token(18),
            self.from.email.domain()
        );
        let message = Message::builder()
            .message_id(Some(message_id))
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .map_err(|e| MailError::Build(e.to_string()))?;
        let sent = match &self.transport {
            Transport::Outbox { dir, transport } => {
                tokio::fs::create_dir_all(dir)
                    .await
                    .map_err(|e| MailError::Send(format!("outbox {}: {e}", dir.display())))?;
                tokio::time::timeout(self.timeout, transport.send(message))
                    .await
                    .map_err(|_| MailError::Timeout(self.timeout))?
                    .map(|id| {
                        let file = dir.join(format!("{id}.eml"));
                        tracing::info!(file = %file.display(), "mail written to the outbox");
                    })
                    .map_err(|e| MailError::Send(e.to_string()))
            }
            Transport::Smtp { relay, transport } => {
                tokio::time::timeout(self.timeout, transport.send(message))
                    .await
                    .map_err(|_| MailError::Timeout(self.timeout))?
                    .map(|_| tracing::info!(relay = %relay, "mail handed to the SMTP relay"))
                    .map_err(|e| MailError::Send(e.to_string()))
            }
        };
        sent
    }
}

/// The issuer's host name, for the default sender address.
fn issuer_host(settings: &Settings) -> String {
    url::Url::parse(settings.issuer())
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .map(|h| h.trim_matches(['[', ']']).to_owned())
        .unwrap_or_else(|| "localhost".into())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn settings(dir: &std::path::Path) -> Settings {
        Settings {
            data_dir: dir.to_path_buf(),
            issuer: "https://auth.example.com".into(),
            ..Settings::default()
        }
    }

    #[test]
    fn settings_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = settings(dir.path());
        let mailer = Mailer::from_settings(&s).unwrap();
        assert_eq!(
            mailer.from.to_string(),
            "Keyward <no-reply@auth.example.com>"
        );
        assert!(dir.path().join("outbox").is_dir());
        s.mail_transport = "pigeon".into();
        assert!(Mailer::from_settings(&s).is_err());
        s.mail_transport = "smtp".into();
        assert!(Mailer::from_settings(&s)
            .err()
            .is_some_and(|e| e.contains("smtp_url")));
        s.smtp_url = Some("ftp://example.com".into());
        assert!(Mailer::from_settings(&s).is_err());
        for url in [
            "smtp://user:pa%20ss@mail.example.com:2525",
            "smtp://mail.example.com?tls=required",
            "smtps://user:pass@mail.example.com",
        ] {
            s.smtp_url = Some(url.into());
            let mailer = Mailer::from_settings(&s).unwrap();
            assert!(!mailer.describe().contains("pass"), "{}", mailer.describe());
        }
        s.mail_from = Some("not an address".into());
        assert!(Mailer::from_settings(&s).is_err());
    }

    #[tokio::test]
    async fn the_outbox_holds_one_eml_per_message() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = settings(dir.path());
        s.mail_from = Some("Keyward <auth@example.com>".into());
        let mailer = Mailer::from_settings(&s).unwrap();
        // Gone since start (cleaned up by hand): made again.
        std::fs::remove_dir(dir.path().join("outbox")).unwrap();
        mailer
            .send("ada@example.com", "Hello", "Body 1234".into())
            .await
            .unwrap();
        assert!(matches!(
            mailer.send("not an address", "x", "y".into()).await,
            Err(MailError::Recipient)
        ));
        let files: Vec<_> = std::fs::read_dir(dir.path().join("outbox"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].extension().unwrap(), "eml");
        let text = std::fs::read_to_string(&files[0]).unwrap();
        assert!(text.contains("To: ada@example.com"), "{text}");
        assert!(text.contains("From: Keyward <auth@example.com>"), "{text}");
        assert!(text.contains("Body 1234"), "{text}");
        assert!(text.contains("Message-ID: <"), "{text}");
        assert!(text.contains("@example.com>"), "{text}");
    }
}
