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
        let uri: Uri = config
            .smtp
            .parse()
            .map_err(|_| format!("smtp: {:?} is not a URL", config.smtp))?;
        let authority = uri
            .authority()
            .ok_or_else(|| format!("smtp: {:?} names no host", config.smtp))?;
        if authority.as_str().contains('@') {
            return Err(
                "smtp: put the relay's login in ZTX_SMTP_USER and ZTX_SMTP_PASSWORD, \
                        not in the URL"
                    .into(),
            );
        }
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(format!(
                "smtp: {:?} has a path or query; give scheme, host and port",
                config.smtp
            ));
        }
        let host = authority.host();
        let relay_error = |e: lettre::transport::smtp::Error| format!("smtp: {e}");
        let builder = match uri.scheme_str() {
            Some("smtps") => AsyncSmtpTransport::<Tokio1Executor>::relay(host)
                .map_err(relay_error)?
                .port(authority.port_u16().unwrap_or(465)),
            Some("smtp") if config.allow_plaintext => {
                AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
                    .port(authority.port_u16().unwrap_or(25))
            }
            Some("smtp") => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host)
                .map_err(relay_error)?
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
        let to: Mailbox = address
            .parse()
            .map_err(|e| format!("customer {}'s address is not a mailbox: {e}", customer.0))?;
        let (subject, text) = compose(message);
        let email = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(text)
            .map_err(|e| format!("cannot build the message: {e}"))?;
        tokio::time::timeout(SEND_TIMEOUT, self.transport.send(email))
            .await
            .map_err(|_| format!("the relay took more than {} s", SEND_TIMEOUT.as_secs()))?
            .map(|_| ())
            .map_err(|e| format!("the relay: {e}"))
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
        assert!(refused(config("smtps://u:p@smtp.example.com")).contains("ZTX_SMTP_USER"));
        assert!(refused(config("smtps://smtp.example.com/x")).contains("path or query"));
        assert!(refused(config("not a url")).contains("is not a URL"));
        let mut bad_from = config("smtps://smtp.example.com");
        bad_from.from = "nobody".into();
        assert!(refused(bad_from).starts_with("from:"));
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
