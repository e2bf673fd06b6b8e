//! The configuration file: mode, listen address, rate limits, assets and markets. Parsed
//! strictly (unknown keys are errors) and checked into core types, each error naming the
//! file and the entry at fault.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use serde::Deserialize;
use ztx_api::RateLimits;
use ztx_core::{Amount, Asset, AssetCode, MarketParams, MarketSpec, Price};
use ztx_monitor::{DetectionConfig, SinkConfig};
use ztx_store::Mode;

/// The default configuration, shipped with the binary.
pub const DEFAULT_CONFIG: &str = include_str!("../../../config/default.toml");

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    mode: String,
    listen: String,
    /// The operator's listener; loopback on a port of the system's choosing by default.
    #[serde(default)]
    admin_listen: Option<String>,
    rate_limits: RawLimits,
    #[serde(default)]
    detection: DetectionConfig,
    #[serde(default)]
    events: SinkConfig,
    #[serde(default)]
    webhooks: WebhookConfig,
    #[serde(default)]
    email: RawEmail,
    assets: Vec<RawAsset>,
    markets: Vec<RawMarket>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    weight_per_minute: u64,
    orders_per_10s: u64,
    orders_per_day: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAsset {
    code: String,
    decimals: u8,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMarket {
    symbol: String,
    base: String,
    quote: String,
    tick_size: String,
    min_price: String,
    max_price: String,
    step_size: String,
    min_qty: String,
    max_qty: String,
    min_notional: String,
    max_notional: String,
    maker_fee_bps: u32,
    taker_fee_bps: u32,
}

/// Customers' webhooks: whether the server delivers them, and where they may go.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Whether this server posts notifications to customers' webhooks (registering one
    /// works either way; messages wait in the outbox for a sender).
    #[serde(default = "yes")]
    pub deliver: bool,
    /// Development only: `http://` webhooks, and ones on this machine or a private
    /// network. Refused in production mode.
    #[serde(default)]
    pub allow_insecure: bool,
}

fn yes() -> bool {
    true
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            deliver: true,
            allow_insecure: false,
        }
    }
}

/// E-mail notifications, as written (see [`EmailConfig`]).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEmail {
    #[serde(default)]
    smtp: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    allow_plaintext: bool,
}

/// Where e-mail notifications go out: the SMTP relay and the sender's address; `None`
/// when no relay is configured (messages then wait in the outbox). The relay's login is
/// read from `ZTX_SMTP_USER` and `ZTX_SMTP_PASSWORD` when the server starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailConfig {
    pub smtp: String,
    pub from: String,
    pub allow_plaintext: bool,
}

/// A checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub mode: Mode,
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub rate_limits: RateLimits,
    pub detection: DetectionConfig,
    pub events: SinkConfig,
    pub webhooks: WebhookConfig,
    pub email: Option<EmailConfig>,
    pub markets: Vec<MarketSpec>,
}

impl Config {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the configuration file {}", path.display()))?;
        Config::parse(&text).with_context(|| format!("bad configuration file {}", path.display()))
    }

    /// Checks a configuration text.
    pub fn parse(text: &str) -> Result<Config> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| anyhow!("{e}"))?;
        let mode = Mode::parse(&raw.mode).ok_or_else(|| {
            anyhow!(
                "mode must be \"development\" or \"production\", not {:?}",
                raw.mode
            )
        })?;
        let listen = raw.listen.parse().map_err(|_| {
            anyhow!(
                "listen must be HOST:PORT with an IP address, not {:?}",
                raw.listen
            )
        })?;
        let admin_listen = match &raw.admin_listen {
            None => SocketAddr::from(([127, 0, 0, 1], 0)),
            Some(text) => text.parse().map_err(|_| {
                anyhow!("admin_listen must be HOST:PORT with an IP address, not {text:?}")
            })?,
        };
        raw.detection.validate().map_err(|e| anyhow!("{e}"))?;
        raw.events.validate().map_err(|e| anyhow!("{e}"))?;
        let email = email(&raw.email, mode)?;
        if raw.webhooks.allow_insecure && mode == Mode::Production {
            bail!(
                "webhooks.allow_insecure is for development: in production a webhook must be \
                 https:// on a public address"
            );
        }
        let mut assets: Vec<Asset> = Vec::new();
        for a in &raw.assets {
            let code = AssetCode::new(&a.code).ok_or_else(|| {
                anyhow!("asset {:?}: code must be 1-10 characters A-Z0-9", a.code)
            })?;
            let asset = Asset::new(code, a.decimals)
                .ok_or_else(|| anyhow!("asset {}: decimals must be at most 18", a.code))?;
            if assets.iter().any(|x| x.code() == code) {
                bail!("asset {} is listed twice", a.code);
            }
            assets.push(asset);
        }
        let markets = raw
            .markets
            .iter()
            .map(|m| market(m, &assets))
            .collect::<Result<Vec<_>>>()?;
        if markets.is_empty() {
            bail!("no markets are configured");
        }
        Ok(Config {
            mode,
            listen,
            admin_listen,
            detection: raw.detection,
            events: raw.events,
            webhooks: raw.webhooks,
            email,
            rate_limits: RateLimits {
                weight_per_minute: raw.rate_limits.weight_per_minute,
                orders_per_10s: raw.rate_limits.orders_per_10s,
                orders_per_day: raw.rate_limits.orders_per_day,
                ..RateLimits::default()
            },
            markets,
        })
    }
}

fn market(m: &RawMarket, assets: &[Asset]) -> Result<MarketSpec> {
    let find = |code: &str| {
        assets
            .iter()
            .copied()
            .find(|a| a.code().as_str() == code)
            .ok_or_else(|| anyhow!("market {}: asset {code} is not in [[assets]]", m.symbol))
    };
    let base = find(&m.base)?;
    let quote = find(&m.quote)?;
    let amount = |field: &str, text: &str, asset: Asset| {
        Amount::parse_decimal(text, asset.decimals())
            .map_err(|e| anyhow!("market {}: {field} {text:?}: {e}", m.symbol))
    };
    let price =
        |field: &str, text: &str| amount(field, text, quote).map(|a| Price::from_minor(a.minor()));
    MarketSpec::new(MarketParams {
        symbol: m.symbol.clone(),
        base,
        quote,
        tick_size: price("tick_size", &m.tick_size)?,
        min_price: price("min_price", &m.min_price)?,
        max_price: price("max_price", &m.max_price)?,
        step_size: amount("step_size", &m.step_size, base)?,
        min_qty: amount("min_qty", &m.min_qty, base)?,
        max_qty: amount("max_qty", &m.max_qty, base)?,
        min_notional: amount("min_notional", &m.min_notional, quote)?,
        max_notional: amount("max_notional", &m.max_notional, quote)?,
        maker_fee_bps: m.maker_fee_bps,
        taker_fee_bps: m.taker_fee_bps,
    })
    .map_err(|e| anyhow!("{e}"))
}

fn email(raw: &RawEmail, mode: Mode) -> Result<Option<EmailConfig>> {
    if raw.smtp.is_empty() {
        return Ok(None);
    }
    if raw.from.is_empty() {
        bail!("email.from is needed with email.smtp: the address notifications come from");
    }
    if raw.allow_plaintext && mode == Mode::Production {
        bail!(
            "email.allow_plaintext is for development: in production the relay is reached \
             over TLS (smtps://, or smtp:// with STARTTLS)"
        );
    }
    let config = EmailConfig {
        smtp: raw.smtp.clone(),
        from: raw.from.clone(),
        allow_plaintext: raw.allow_plaintext,
    };
    // Checked now, so that a bad relay address stops the start with its name.
    ztx_api::email::EmailCourier::new(&config.for_api(None)).map_err(|e| anyhow!("email.{e}"))?;
    Ok(Some(config))
}

impl EmailConfig {
    /// The sender's settings, with the relay's login if there is one.
    pub fn for_api(
        &self,
        credentials: Option<(String, zeroize::Zeroizing<String>)>,
    ) -> ztx_api::email::EmailConfig {
        ztx_api::email::EmailConfig {
            smtp: self.smtp.clone(),
            from: self.from.clone(),
            allow_plaintext: self.allow_plaintext,
            credentials,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_configuration_is_valid() {
        let c = Config::parse(DEFAULT_CONFIG).unwrap();
        assert_eq!(c.mode, Mode::Development);
        let symbols: Vec<&str> = c.markets.iter().map(|m| m.symbol()).collect();
        assert_eq!(symbols, ["BTCUSDT", "ETHUSDT", "ETHBTC"]);
    }

    #[test]
    fn errors_name_the_market_and_field() {
        let bad = DEFAULT_CONFIG.replace("tick_size = \"0.01\"", "tick_size = \"0.001x\"");
        let e = format!("{:#}", Config::parse(&bad).unwrap_err());
        assert!(e.contains("BTCUSDT") && e.contains("tick_size"), "{e}");
    }

    #[test]
    fn inexact_markets_are_refused() {
        let bad =
            DEFAULT_CONFIG.replacen("step_size = \"0.00001\"", "step_size = \"0.00000001\"", 1);
        let e = format!("{:#}", Config::parse(&bad).unwrap_err());
        assert!(e.contains("tick size × step size"), "{e}");
    }

    #[test]
    fn detection_rules_are_configurable_and_checked() {
        let c = Config::parse(DEFAULT_CONFIG).unwrap();
        assert_eq!(
            c.detection,
            DetectionConfig::default(),
            "the shipped file says what the defaults are"
        );
        let tuned = DEFAULT_CONFIG.replace(
            "[detection.new_ip]\n",
            "[detection.new_ip]\nenabled = false\n",
        );
        assert!(!Config::parse(&tuned).unwrap().detection.new_ip.enabled);
        let bad = DEFAULT_CONFIG.replace("respond = [\"notify\"]", "respond = [\"shout\"]");
        let e = format!("{:#}", Config::parse(&bad).unwrap_err());
        assert!(e.contains("shout"), "{e}");
        let bad = DEFAULT_CONFIG.replace(
            "threshold = 40\nwindow_s = 10\nrespond = [\"ban_ip\", \"notify\"]",
            "threshold = 40\nwindow_s = 10\nrespond = [\"freeze_key\"]",
        );
        let e = format!("{:#}", Config::parse(&bad).unwrap_err());
        assert!(
            e.contains("account_query_burst") && e.contains("freeze_key"),
            "{e}"
        );
        // A configuration written before detection existed still loads, with defaults.
        let old = DEFAULT_CONFIG
            .split("\n[detection]")
            .next()
            .unwrap()
            .replace("admin_listen = \"127.0.0.1:0\"\n", "");
        assert_eq!(
            Config::parse(&old).unwrap().detection,
            DetectionConfig::default()
        );
    }

    #[test]
    fn insecure_webhooks_are_for_development_only() {
        let c = Config::parse(DEFAULT_CONFIG).unwrap();
        assert_eq!(c.webhooks, WebhookConfig::default());
        let dev = DEFAULT_CONFIG.replace("allow_insecure = false", "allow_insecure = true");
        assert!(Config::parse(&dev).unwrap().webhooks.allow_insecure);
        let production = dev.replace("mode = \"development\"", "mode = \"production\"");
        let e = format!("{:#}", Config::parse(&production).unwrap_err());
        assert!(e.contains("webhooks.allow_insecure"), "{e}");
        let production = DEFAULT_CONFIG.replace("mode = \"development\"", "mode = \"production\"");
        assert!(!Config::parse(&production).unwrap().webhooks.allow_insecure);
    }

    #[test]
    fn email_needs_a_sender_and_tls_in_production() {
        assert_eq!(Config::parse(DEFAULT_CONFIG).unwrap().email, None);
        let with = |smtp: &str, extra: &str| {
            DEFAULT_CONFIG.replace("smtp = \"\"", &format!("smtp = \"{smtp}\"\n{extra}"))
        };
        let relay = with("smtps://smtp.example.com", "");
        let c = Config::parse(&relay).unwrap().email.unwrap();
        assert_eq!(c.smtp, "smtps://smtp.example.com");
        let e = format!(
            "{:#}",
            Config::parse(&relay.replace("from = \"ztx security <security@localhost>\"", ""))
                .unwrap_err()
        );
        assert!(e.contains("email.from"), "{e}");
        let e = format!("{:#}", Config::parse(&with("ftp://x", "")).unwrap_err());
        assert!(e.contains("email.smtp"), "{e}");
        let plain = with("smtp://127.0.0.1:2525", "")
            .replace("allow_plaintext = false", "allow_plaintext = true");
        assert!(
            Config::parse(&plain)
                .unwrap()
                .email
                .unwrap()
                .allow_plaintext
        );
        let production = plain.replace("mode = \"development\"", "mode = \"production\"");
        let e = format!("{:#}", Config::parse(&production).unwrap_err());
        assert!(e.contains("email.allow_plaintext"), "{e}");
    }

    #[test]
    fn unknown_keys_and_bad_modes_are_refused() {
        assert!(Config::parse(&format!("colour = 1\n{DEFAULT_CONFIG}")).is_err());
        let bad = DEFAULT_CONFIG.replace("mode = \"development\"", "mode = \"dev\"");
        assert!(format!("{:#}", Config::parse(&bad).unwrap_err()).contains("mode"));
    }
}
