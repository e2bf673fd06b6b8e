//! Money: assets with a fixed number of decimals and amounts as integer counts of an
//! asset's smallest unit. No floating point: decimal strings are parsed digit by digit.

use std::fmt;

use crate::error::ParseAmountError;

/// The largest number of decimals an asset may have (ETH's wei).
pub const MAX_DECIMALS: u8 = 18;

/// A ticker such as `BTC` or `USDT`: 1 to 10 upper-case ASCII letters or digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AssetCode {
    len: u8,
    bytes: [u8; 10],
}

impl AssetCode {
    /// Checks and builds an asset code; `None` unless 1–10 characters of `A-Z0-9`.
    pub fn new(code: &str) -> Option<Self> {
        let raw = code.as_bytes();
        if raw.is_empty() || raw.len() > 10 {
            return None;
        }
        if !raw
            .iter()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        {
            return None;
        }
        let mut bytes = [0u8; 10];
        bytes.get_mut(..raw.len())?.copy_from_slice(raw);
        Some(Self {
            len: u8::try_from(raw.len()).ok()?,
            bytes,
        })
    }

    pub fn as_str(&self) -> &str {
        let raw = self.bytes.get(..usize::from(self.len)).unwrap_or_default();
        // Only ASCII is ever stored, so this cannot fail; an empty string is the fallback.
        std::str::from_utf8(raw).unwrap_or_default()
    }
}

impl fmt::Debug for AssetCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.as_str())
    }
}

impl fmt::Display for AssetCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An asset and the number of decimals of its smallest unit (BTC: 8, USDT: 6 on most chains).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Asset {
    code: AssetCode,
    decimals: u8,
}

impl Asset {
    pub fn new(code: AssetCode, decimals: u8) -> Option<Self> {
        (decimals <= MAX_DECIMALS).then_some(Self { code, decimals })
    }
    pub fn code(&self) -> AssetCode {
        self.code
    }
    pub fn decimals(&self) -> u8 {
        self.decimals
    }
    /// `10^decimals`, the number of smallest units in one whole unit.
    pub fn unit(&self) -> Amount {
        Amount(pow10(self.decimals))
    }
}

/// `10^exp` for `exp <= 38`.
pub(crate) const fn pow10(exp: u8) -> u128 {
    let mut value = 1u128;
    let mut i = 0;
    while i < exp {
        value *= 10;
        i += 1;
    }
    value
}

/// A non-negative count of an asset's smallest unit. Arithmetic is checked: it returns
/// `None` instead of wrapping or panicking.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Amount(u128);

impl Amount {
    pub const ZERO: Amount = Amount(0);
    /// The largest amount the platform accepts: 10^36 smallest units, far above any real
    /// supply, so that `amount * 10^decimals` products stay inside `u128`.
    pub const MAX: Amount = Amount(pow10(36));

    pub const fn from_minor(minor: u128) -> Self {
        Self(minor)
    }
    pub const fn minor(self) -> u128 {
        self.0
    }
    pub fn is_zero(self) -> bool {
        self.0 == 0
    }
    pub fn checked_add(self, rhs: Amount) -> Option<Amount> {
        self.0.checked_add(rhs.0).map(Amount)
    }
    pub fn checked_sub(self, rhs: Amount) -> Option<Amount> {
        self.0.checked_sub(rhs.0).map(Amount)
    }
    pub fn saturating_sub(self, rhs: Amount) -> Amount {
        Amount(self.0.saturating_sub(rhs.0))
    }
    pub fn min(self, rhs: Amount) -> Amount {
        Amount(self.0.min(rhs.0))
    }

    /// Parses a decimal string such as `"0.1"` or `"1000.50000000"` into smallest units of
    /// an asset with `decimals` decimals. Digits beyond `decimals` are accepted only when
    /// they are zeros (Binance clients pad to 8 places). No sign, exponent or spaces.
    pub fn parse_decimal(text: &str, decimals: u8) -> Result<Amount, ParseAmountError> {
        let (int_part, frac_part) = match text.split_once('.') {
            Some((i, f)) => (i, f),
            None => (text, ""),
        };
        let digits_only = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if text.is_empty()
            || int_part.is_empty()
            || !digits_only(int_part)
            || !digits_only(frac_part)
            || (text.contains('.') && frac_part.is_empty())
            || int_part.len() > 38
            || frac_part.len() > 38
        {
            return Err(ParseAmountError::Malformed);
        }
        let keep = usize::from(decimals).min(frac_part.len());
        let (kept, dropped) = frac_part.split_at(keep);
        if dropped.bytes().any(|b| b != b'0') {
            return Err(ParseAmountError::TooPrecise { decimals });
        }
        let mut value: u128 = 0;
        for b in int_part.bytes().chain(kept.bytes()) {
            value = value
                .checked_mul(10)
                .and_then(|v| v.checked_add(u128::from(b - b'0')))
                .ok_or(ParseAmountError::TooLarge)?;
        }
        let missing = decimals.saturating_sub(u8::try_from(kept.len()).unwrap_or(decimals));
        value = value
            .checked_mul(pow10(missing))
            .ok_or(ParseAmountError::TooLarge)?;
        if value > Amount::MAX.0 {
            return Err(ParseAmountError::TooLarge);
        }
        Ok(Amount(value))
    }

    /// Formats as a decimal string with exactly `decimals` places, e.g. `"0.10000000"`.
    pub fn to_decimal(self, decimals: u8) -> String {
        let unit = pow10(decimals);
        let int = self.0 / unit;
        let frac = self.0 % unit;
        if decimals == 0 {
            return int.to_string();
        }
        format!("{int}.{frac:0width$}", width = usize::from(decimals))
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A limit price: smallest units of the quote asset per one whole unit of the base asset.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Price(u128);

impl Price {
    pub const fn from_minor(minor: u128) -> Self {
        Self(minor)
    }
    pub const fn minor(self) -> u128 {
        self.0
    }
    pub fn as_amount(self) -> Amount {
        Amount(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_binance_style_decimals() {
        assert_eq!(Amount::parse_decimal("0.1", 8), Ok(Amount(10_000_000)));
        assert_eq!(
            Amount::parse_decimal("1000.5", 6),
            Ok(Amount(1_000_500_000))
        );
        assert_eq!(
            Amount::parse_decimal("1.00000000", 6),
            Ok(Amount(1_000_000))
        );
        assert_eq!(Amount::parse_decimal("7", 0), Ok(Amount(7)));
        assert_eq!(Amount::parse_decimal("0", 8), Ok(Amount(0)));
    }

    #[test]
    fn refuses_too_many_decimals() {
        assert_eq!(
            Amount::parse_decimal("0.0000001", 6),
            Err(ParseAmountError::TooPrecise { decimals: 6 })
        );
    }

    #[test]
    fn refuses_malformed_numbers() {
        for bad in [
            "", ".", "1.", ".5", "-1", "+1", "1e5", "1,5", " 1", "0x10", "1.2.3", "NaN", "inf",
        ] {
            assert_eq!(
                Amount::parse_decimal(bad, 8),
                Err(ParseAmountError::Malformed),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn refuses_amounts_past_the_maximum() {
        let huge = "9".repeat(38);
        assert_eq!(
            Amount::parse_decimal(&huge, 8),
            Err(ParseAmountError::TooLarge)
        );
    }

    #[test]
    fn formats_with_fixed_places() {
        assert_eq!(Amount(10_000_000).to_decimal(8), "0.10000000");
        assert_eq!(Amount(1_000_500_000).to_decimal(6), "1000.500000");
        assert_eq!(Amount(5).to_decimal(0), "5");
    }

    #[test]
    fn asset_codes_are_checked() {
        assert!(AssetCode::new("BTC").is_some());
        assert!(AssetCode::new("USDT").is_some());
        assert!(AssetCode::new("btc").is_none());
        assert!(AssetCode::new("").is_none());
        assert!(AssetCode::new("ABCDEFGHIJK").is_none());
        assert_eq!(
            AssetCode::new("ETH").map(|c| c.to_string()),
            Some("ETH".into())
        );
    }

    proptest! {
        #[test]
        fn format_then_parse_is_identity(minor in 0u128..10u128.pow(30), decimals in 0u8..=18) {
            let text = Amount(minor).to_decimal(decimals);
            prop_assert_eq!(Amount::parse_decimal(&text, decimals), Ok(Amount(minor)));
        }

        #[test]
        fn parsing_never_panics(text in ".{0,50}", decimals in 0u8..=18) {
            let _ = Amount::parse_decimal(&text, decimals);
        }
    }
}
