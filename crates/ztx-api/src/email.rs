//! E-mail notifications: the courier that sends each outbox `email` message over SMTP
//! to its customer's address, opened from its sealing for the sending only (see
//! [`crate::outbox`] for how messages are taken, logged and retried).
//!
//! The relay is reached over TLS — `smtps://` (TLS from the start) or `smtp://` with
//! STARTTLS required, so no credential or message goes out in the clear — trusting the
//! system's certificate authorities; plain SMTP is a development setting
//! ([`EmailConfig::allow_plaintext`]). Credentials come from the environment, never the
//! configuration file.

use std::time::Duration;

use axum::http::Uri;
use lettre::Address;
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport as _, Tokio1Executor};
use zeroize::Zeroizing;
use ztx_store::{Channel, Destination, OutboxMessage, StoredEmail};

use crate::accounting::SERVICE_EMAIL;
use crate::state::AppState;

/// How long one message may take to hand to the relay, connecting included.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(20);

/// Where e-mail goes out.
#[derive(Clone, PartialEq, Eq)]
pub struct EmailConfig {
    /// The relay: `smtps://host[:port]` (465 by default) or `smtp://host[:port]` (587,
    /// STARTTLS required; without TLS when [`EmailConfig::allow_plaintext`]).
    pub smtp: String,
    /// The sender, e.g. `ztx security <security@exchange.example>`.
    pub from: String,
    /// Development only: a relay that speaks plain SMTP (one on this machine).
    pub allow_plaintext: bool,
    /// The relay's login, if it wants one.
    pub credentials: Option<(String, Zeroizing<String>)>,
}

impl std::fmt::Debug for EmailConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailConfig")
            .field("smtp", &self.smtp)
            .field("from", &self.from)
            .field("allow_plaintext", &self.allow_plaintext)
            .field("user", &self.credentials.as_ref().map(|(user, _)| user))
            .finish_non_exhaustive()
    }
}

/// Sends the outbox's e-mail messages.
pub type Sender = crate::outbox::Sender<EmailCourier>;

/// Hands e-mail messages to an SMTP relay.
pub struct EmailCourier {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl std::fmt::Debug for EmailCourier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailCourier")
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}

impl Sender {
    /// A sender through the relay `config` names; an error names what is wrong with it.
    pub fn smtp(state: AppState, config: &EmailConfig) -> Result<Sender, String> {
        let courier = EmailCourier::new(config)?;
        Ok(crate::outbox::Sender::with_courier(state, courier))
    }
}

impl EmailCourier {
    pub fn new(config: &EmailConfig) -> Result<EmailCourier, String> {
        let from: Mailbox = config
            .from
            .parse()
            .map_err(|e| format!("from: {:?} is not a mailbox: {e}", config.from))?;
        // Before parsing, so that a login in the URL is never echoed in an error.
        if config.smtp.contains('@') {
            return Err(
                "smtp: put the relay's login in ZTX_SMTP_USER and ZTX_SMTP_PASSWORD, \
                        not in the URL"
                    .into(),
            );
        }
        if config.allow_plaintext && config.credentials.is_some() {
            return Err("smtp: a login is never sent to a relay without TLS; unset \
                        ZTX_SMTP_USER and ZTX_SMTP_PASSWORD or use smtps:// or STARTTLS"
                .into());
        }
        let uri: Uri = config
            .smtp
            .parse()
            .map_err(|_| format!("smtp: {:?} is not a URL", config.smtp))?;
        let authority = uri
            .authority()
            .ok_or_else(|| format!("smtp: {:?} names no host", config.smtp))?;
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(format!(
                "smtp: {:?} has a path or query; give scheme, host and port",
                config.smtp
            ));
        }
        let host = authority.host();
        let setup = |e: lettre::transport::smtp::Error| format!("smtp: {e}");
        let builder = match uri.scheme_str() {
            Some("smtps") => AsyncSmtpTransport::<Tokio1Executor>::relay(host)
                .map_err(setup)?
                .port(authority.port_u16().unwrap_or(465)),
            Some("smtp") if config.allow_plaintext => {
                AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
                    .port(authority.port_u16().unwrap_or(25))
            }
            Some("smtp") => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host)
                .map_err(setup)?
                .port(authority.port_u16().unwrap_or(587)),
            _ => {
                return Err(format!(
                    "smtp: {:?} must be smtps://host[:port] or smtp://host[:port]",
                    config.smtp
                ));
            }
        };
        let builder = builder.timeout(Some(SEND_TIMEOUT));
        let builder = match &config.credentials {
            Some((user, password)) => {
                builder.credentials(Credentials::new(user.clone(), password.to_string()))
            }
            None => builder,
        };
        Ok(EmailCourier {
            transport: builder.build(),
            from,
        })
    }

    /// Hands one message to the relay; an error names what went wrong without the
    /// relay's own words, which often repeat the recipient's address.
    pub async fn send(&self, to: &Address, subject: String, text: String) -> Result<(), String> {
        let email = Message::builder()
            .from(self.from.clone())
            .to(Mailbox::new(None, to.clone()))
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(text)
            .map_err(|e| format!("cannot build the message: {e}"))?;
        tokio::time::timeout(SEND_TIMEOUT, self.transport.send(email))
            .await
            .map_err(|_| format!("the relay took more than {} s", SEND_TIMEOUT.as_secs()))?
            .map(|_| ())
            .map_err(|e| relay_error(&e))
    }
}

/// What went wrong with the relay, in words that name no address: the kind of failure
/// and the SMTP code, if it answered with one.
fn relay_error(e: &lettre::transport::smtp::Error) -> String {
    let what = if e.is_permanent() {
        "refused the message"
    } else if e.is_transient() {
        "refused the message for now"
    } else if e.is_tls() {
        "could not agree on TLS (or does not offer STARTTLS)"
    } else if e.is_client() {
        "does not offer what is required (STARTTLS, or a login mechanism we use)"
    } else if e.is_timeout() {
        "did not answer in time"
    } else if e.is_response() {
        "answered something unexpected"
    } else {
        "could not be reached"
    };
    match e.status() {
        Some(code) => format!("the relay {what} ({code})"),
        None => format!("the relay {what}"),
    }
}

/// The message's subject and text.
pub fn compose(message: &OutboxMessage) -> (String, String) {
    let n = &message.notification;
    let subject = if n.finding == crate::webhooks::ACCOUNT_CHANGE {
        "Your account settings changed".to_owned()
    } else {
        "Security notice about your account".to_owned()
    };
    let text = format!(
        "{}\r\n\r\nReference: notification {} ({}).\r\nYour notifications are also listed \
         at GET /ztx/v1/notifications.\r\n",
        n.message, n.id, n.finding
    );
    (subject, text)
}

impl crate::outbox::Courier for EmailCourier {
    const CHANNEL: Channel = Channel::Email;
    const SERVICE: &'static str = SERVICE_EMAIL;
    /// Relays limit connections per client; each message is one connection.
    const MAX_IN_FLIGHT: usize = 16;

    async fn deliver(&self, state: &AppState, message: &OutboxMessage) -> Result<(), String> {
        let Destination::Email(stored) = &message.to else {
            return Err("not an e-mail message".into());
        };
        let customer = message.notification.customer;
        let address = match stored {
            StoredEmail::Sealed(row) => Zeroizing::new(
                state
                    .contacts_arc()
                    .open_email(customer.0, &crate::contacts::sealing(row))
                    .map_err(|e| format!("cannot open the address: {e}"))?,
            ),
            // An older release's, until `ztx serve` seals it at start.
            StoredEmail::Plain(address) => Zeroizing::new(address.clone()),
        };
        // A bare address, never a mailbox with a display name: the message goes to
        // the address stored, whatever text surrounds it.
        let to: Address = address
            .parse()
            .map_err(|_| format!("customer {}'s address is not an e-mail address", customer.0))?;
        let (subject, text) = compose(message);
        self.send(&to, subject, text).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(smtp: &str) -> EmailConfig {
        EmailConfig {
            smtp: smtp.into(),
            from: "ztx security <security@exchange.example>".into(),
            allow_plaintext: false,
            credentials: None,
        }
    }

    #[test]
    fn relays_over_tls_are_accepted() {
        assert!(EmailCourier::new(&config("smtps://smtp.example.com")).is_ok());
        assert!(EmailCourier::new(&config("smtp://smtp.example.com:2525")).is_ok());
    }

    #[test]
    fn each_bad_setting_is_named() {
        let refused = |c: EmailConfig| EmailCourier::new(&c).unwrap_err();
        assert!(refused(config("http://smtp.example.com")).contains("must be smtps://"));
        let login = refused(config("smtps://u:hunter2@smtp.example.com"));
        assert!(
            login.contains("ZTX_SMTP_USER") && !login.contains("hunter2"),
            "{login}"
        );
        let unparsable = refused(config("smtps://u:hunter 2@smtp.example.com"));
        assert!(!unparsable.contains("hunter"), "{unparsable}");
        let mut plain_login = config("smtp://127.0.0.1:2525");
        plain_login.allow_plaintext = true;
        plain_login.credentials = Some(("ops".into(), Zeroizing::new("pw".into())));
        assert!(refused(plain_login).contains("never sent to a relay without TLS"));
        assert!(refused(config("smtps://smtp.example.com/x")).contains("path or query"));
        assert!(refused(config("not a url")).contains("is not a URL"));
        let mut bad_from = config("smtps://smtp.example.com");
        bad_from.from = "nobody".into();
        assert!(refused(bad_from).starts_with("from:"));
    }

    /// A relay that does not offer STARTTLS, speaking just enough SMTP to say so; what
    /// the client sent it.
    async fn relay_without_starttls() -> (u16, std::sync::Arc<std::sync::Mutex<String>>) {
        use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let heard = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let kept = heard.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let (read, mut write) = socket.into_split();
                let mut lines = BufReader::new(read).lines();
                let _ = write.write_all(b"220 relay.test ESMTP\r\n").await;
                while let Ok(Some(line)) = lines.next_line().await {
                    kept.lock().unwrap().push_str(&format!("{line}\n"));
                    let answer: &[u8] = if line.starts_with("EHLO") {
                        b"250-relay.test\r\n250 AUTH PLAIN LOGIN\r\n"
                    } else if line.starts_with("QUIT") {
                        b"221 bye\r\n"
                    } else {
                        b"250 ok\r\n"
                    };
                    let _ = write.write_all(answer).await;
                }
            }
        });
        (port, heard)
    }

    #[tokio::test]
    async fn a_relay_that_does_not_offer_starttls_gets_no_login_and_no_message() {
        // A downgrade: someone between us and the relay strips STARTTLS from its
        // answer. With smtp:// (STARTTLS required) nothing is sent in the clear.
        let (port, heard) = relay_without_starttls().await;
        let mut c = config(&format!("smtp://127.0.0.1:{port}"));
        c.credentials = Some(("ops".into(), Zeroizing::new("hunter2".into())));
        let courier = EmailCourier::new(&c).unwrap();
        let to: Address = "dana@example.com".parse().unwrap();
        let refused = courier
            .send(&to, "s".into(), "the secret text".into())
            .await
            .unwrap_err();
        assert!(refused.contains("TLS"), "{refused}");
        assert!(!refused.contains("dana"), "{refused}");
        let heard = heard.lock().unwrap().clone();
        assert!(heard.contains("EHLO"), "{heard}");
        for never in ["AUTH", "MAIL FROM", "RCPT", "DATA", "secret"] {
            assert!(
                !heard.contains(never),
                "{never} went out in the clear: {heard}"
            );
        }
    }

    #[test]
    fn the_login_is_not_shown() {
        let mut c = config("smtps://smtp.example.com");
        c.credentials = Some(("ops".into(), Zeroizing::new("hunter2".into())));
        let shown = format!("{c:?}");
        assert!(
            shown.contains("ops") && !shown.contains("hunter2"),
            "{shown}"
        );
    }
}
