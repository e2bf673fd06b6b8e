//! Request parameters the Binance way: the raw query string and an
//! `application/x-www-form-urlencoded` body merged into one ordered list, checked once
//! (encoding, duplicates, size), then read through typed getters that answer with the
//! Binance error naming the offending parameter.

use std::sync::atomic::{AtomicU64, Ordering};

use ztx_core::{Amount, OrderType, ParseAmountError, Side, StpMode, TimeInForce};

use crate::error::{
    ApiError, CLIENT_ORDER_ID_LEGAL_RANGE, DECIMAL_LEGAL_RANGE, INTEGER_LEGAL_RANGE,
};

/// At most this many parameters per request (query and body together). Also the width of
/// the read-tracking bit set.
pub const MAX_PARAMS: usize = 64;
/// Longest parameter name, in bytes after decoding.
pub const MAX_NAME_LEN: usize = 64;
/// Longest parameter value, in bytes after decoding.
pub const MAX_VALUE_LEN: usize = 4096;
/// Legal range quoted for symbols. Narrower than Binance's (`-_.` are not used here).
pub const SYMBOL_LEGAL_RANGE: &str = "^[A-Z0-9]{1,20}$";
const SYMBOL_MAX_LEN: usize = 20;
const STP_LEGAL_RANGE: &str = "^(NONE|EXPIRE_TAKER|EXPIRE_MAKER|EXPIRE_BOTH)$";

/// Where a parameter was sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Query,
    Body,
}

/// One decoded parameter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Param {
    name: String,
    value: String,
    source: Source,
}

impl Param {
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn value(&self) -> &str {
        &self.value
    }
    pub fn source(&self) -> Source {
        self.source
    }
}

/// The parameters of one request, in the order sent (query first, then body). Remembers
/// which were read so that [`Params::ensure_all_read`] can refuse unexpected ones.
#[derive(Debug)]
pub struct Params {
    entries: Vec<Param>,
    /// Bit `i` set once `entries[i]` was read. `MAX_PARAMS` ≤ 64 keeps it in one word.
    read: AtomicU64,
}

/// Decodes `%XX` escapes (and `+` as a space when `plus_as_space`). `None` for a `%` not
/// followed by two hex digits.
pub fn percent_decode(raw: &[u8], plus_as_space: bool) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(raw.len());
    let mut bytes = raw.iter();
    while let Some(&b) = bytes.next() {
        match b {
            b'%' => {
                let hi = hex_value(*bytes.next()?)?;
                let lo = hex_value(*bytes.next()?)?;
                out.push(hi << 4 | lo);
            }
            b'+' if plus_as_space => out.push(b' '),
            other => out.push(other),
        }
    }
    Some(out)
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn legal_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Decodes a parameter name; `None` if it is not a legal name.
pub(crate) fn decode_name(raw: &[u8]) -> Option<String> {
    let bytes = percent_decode(raw, true)?;
    let name = String::from_utf8(bytes).ok()?;
    legal_name(&name).then_some(name)
}

fn decode_value(name: &str, raw: &[u8]) -> Result<String, ApiError> {
    let illegal = || ApiError::illegal_chars(name, "UTF-8 without control characters");
    let bytes = percent_decode(raw, true).ok_or_else(illegal)?;
    if bytes.len() > MAX_VALUE_LEN {
        return Err(ApiError::illegal_chars(
            name,
            &format!("at most {MAX_VALUE_LEN} bytes"),
        ));
    }
    let value = String::from_utf8(bytes).map_err(|_| illegal())?;
    if value.chars().any(char::is_control) {
        return Err(illegal());
    }
    Ok(value)
}

impl Params {
    /// Parses the raw query string (without `?`) and the raw form body. Empty segments
    /// (`a=1&&b=2`) are skipped; a segment without `=` is a parameter with an empty value.
    pub fn parse(query: &[u8], body: &[u8]) -> Result<Params, ApiError> {
        let mut entries: Vec<Param> = Vec::new();
        for (raw, source) in [(query, Source::Query), (body, Source::Body)] {
            for segment in raw.split(|&b| b == b'&').filter(|s| !s.is_empty()) {
                if entries.len() >= MAX_PARAMS {
                    return Err(ApiError::too_many_parameters());
                }
                let (raw_name, raw_value) = split_segment(segment);
                let name = decode_name(raw_name).ok_or_else(ApiError::illegal_chars_anywhere)?;
                if entries.iter().any(|p| p.name == name) {
                    return Err(ApiError::duplicate_parameter());
                }
                let value = decode_value(&name, raw_value)?;
                entries.push(Param {
                    name,
                    value,
                    source,
                });
            }
        }
        Ok(Params {
            entries,
            read: AtomicU64::new(0),
        })
    }

    /// All parameters, in the order sent.
    pub fn iter(&self) -> impl Iterator<Item = &Param> {
        self.entries.iter()
    }
    pub fn len(&self) -> usize {
        self.entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Looks a parameter up and marks it read.
    fn get(&self, name: &str) -> Option<&Param> {
        let (index, param) = self
            .entries
            .iter()
            .enumerate()
            .find(|(_, p)| p.name == name)?;
        // index < MAX_PARAMS ≤ 64, so the shift is in range.
        let bit = 1u64.checked_shl(u32::try_from(index).ok()?).unwrap_or(0);
        self.read.fetch_or(bit, Ordering::Relaxed);
        Some(param)
    }

    /// Whether `name` was sent (marks it read).
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Marks a parameter read without using it (e.g. `signature`, checked elsewhere).
    pub fn mark_read(&self, name: &str) {
        let _ = self.get(name);
    }

    /// -1104 unless every parameter sent was read by the endpoint.
    pub fn ensure_all_read(&self) -> Result<(), ApiError> {
        let read =
            usize::try_from(self.read.load(Ordering::Relaxed).count_ones()).unwrap_or(usize::MAX);
        if read == self.entries.len() {
            Ok(())
        } else {
            Err(ApiError::unread_parameters(read, self.entries.len()))
        }
    }

    /// -1106 if `name` was sent (for parameters that the chosen order type forbids).
    pub fn refuse(&self, name: &str) -> Result<(), ApiError> {
        match self.get(name) {
            Some(_) => Err(ApiError::param_not_required(name)),
            None => Ok(()),
        }
    }

    /// A non-empty value, or -1102.
    pub fn required_str(&self, name: &str) -> Result<&str, ApiError> {
        self.optional_str(name)?
            .ok_or_else(|| ApiError::mandatory_param(name))
    }

    /// The value if sent and non-empty. An empty value counts as not sent.
    pub fn optional_str(&self, name: &str) -> Result<Option<&str>, ApiError> {
        Ok(self
            .get(name)
            .map(|p| p.value.as_str())
            .filter(|v| !v.is_empty()))
    }

    /// A decimal amount with `decimals` places, e.g. `quantity`.
    pub fn decimal(&self, name: &str, decimals: u8) -> Result<Amount, ApiError> {
        parse_decimal(name, self.required_str(name)?, decimals)
    }

    pub fn optional_decimal(&self, name: &str, decimals: u8) -> Result<Option<Amount>, ApiError> {
        self.optional_str(name)?
            .map(|v| parse_decimal(name, v, decimals))
            .transpose()
    }

    /// An unsigned integer such as `timestamp` or `orderId`.
    pub fn u64(&self, name: &str) -> Result<u64, ApiError> {
        parse_u64(name, self.required_str(name)?)
    }

    pub fn optional_u64(&self, name: &str) -> Result<Option<u64>, ApiError> {
        self.optional_str(name)?
            .map(|v| parse_u64(name, v))
            .transpose()
    }

    /// A signed integer.
    pub fn i64(&self, name: &str) -> Result<i64, ApiError> {
        parse_i64(name, self.required_str(name)?)
    }

    pub fn optional_i64(&self, name: &str) -> Result<Option<i64>, ApiError> {
        self.optional_str(name)?
            .map(|v| parse_i64(name, v))
            .transpose()
    }

    /// `side`: required; -1117 unless `BUY` or `SELL`.
    pub fn side(&self) -> Result<Side, ApiError> {
        Side::parse(self.required_str("side")?).ok_or_else(ApiError::invalid_side)
    }

    /// `type`: required; -1116 unless a supported order type.
    pub fn order_type(&self) -> Result<OrderType, ApiError> {
        OrderType::parse(self.required_str("type")?).ok_or_else(ApiError::invalid_order_type)
    }

    /// `timeInForce`: optional; -1115 unless `GTC`, `IOC` or `FOK`.
    pub fn optional_time_in_force(&self) -> Result<Option<TimeInForce>, ApiError> {
        self.optional_str("timeInForce")?
            .map(|v| TimeInForce::parse(v).ok_or_else(ApiError::invalid_tif))
            .transpose()
    }

    /// `selfTradePreventionMode`: optional; -1100 with the legal values otherwise.
    pub fn optional_stp_mode(&self) -> Result<Option<StpMode>, ApiError> {
        const NAME: &str = "selfTradePreventionMode";
        self.optional_str(NAME)?
            .map(|v| {
                StpMode::parse(v).ok_or_else(|| ApiError::illegal_chars(NAME, STP_LEGAL_RANGE))
            })
            .transpose()
    }

    /// A symbol such as `BTCUSDT`: -1100 for characters outside `A-Z0-9`, -1121 when
    /// longer than 20. Whether the market exists is the caller's check (-1121 as well).
    pub fn symbol(&self, name: &str) -> Result<&str, ApiError> {
        let value = self.required_str(name)?;
        check_symbol(name, value)?;
        Ok(value)
    }

    pub fn optional_symbol(&self, name: &str) -> Result<Option<&str>, ApiError> {
        let value = self.optional_str(name)?;
        if let Some(v) = value {
            check_symbol(name, v)?;
        }
        Ok(value)
    }

    /// A client order id (`newClientOrderId`, `origClientOrderId`, …), validated against
    /// `^[\.A-Z\:/a-z0-9_\-]{1,36}$`.
    pub fn optional_client_order_id(&self, name: &str) -> Result<Option<&str>, ApiError> {
        let value = self.optional_str(name)?;
        if let Some(v) = value
            && !is_client_order_id(v)
        {
            return Err(ApiError::illegal_chars(name, CLIENT_ORDER_ID_LEGAL_RANGE));
        }
        Ok(value)
    }
}

fn split_segment(segment: &[u8]) -> (&[u8], &[u8]) {
    match segment.iter().position(|&b| b == b'=') {
        Some(i) => {
            let (name, rest) = segment.split_at(i);
            (name, rest.get(1..).unwrap_or_default())
        }
        None => (segment, &[]),
    }
}

/// Binance's decimal grammar, then the asset's precision.
pub fn parse_decimal(name: &str, value: &str, decimals: u8) -> Result<Amount, ApiError> {
    // Binance's legal range allows at most 20 integer and 20 fractional digits.
    let (int_part, frac_part) = value.split_once('.').unwrap_or((value, ""));
    if int_part.len() > 20 || frac_part.len() > 20 {
        return Err(ApiError::illegal_chars(name, DECIMAL_LEGAL_RANGE));
    }
    Amount::parse_decimal(value, decimals).map_err(|e| match e {
        ParseAmountError::Malformed | ParseAmountError::TooLarge => {
            ApiError::illegal_chars(name, DECIMAL_LEGAL_RANGE)
        }
        ParseAmountError::TooPrecise { .. } => ApiError::bad_precision(name),
    })
}

fn parse_u64(name: &str, value: &str) -> Result<u64, ApiError> {
    if value.is_empty() || value.len() > 20 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::illegal_chars(name, INTEGER_LEGAL_RANGE));
    }
    value
        .parse()
        .map_err(|_| ApiError::illegal_chars(name, INTEGER_LEGAL_RANGE))
}

fn parse_i64(name: &str, value: &str) -> Result<i64, ApiError> {
    const RANGE: &str = "^-?[0-9]{1,19}$";
    let digits = value.strip_prefix('-').unwrap_or(value);
    if digits.is_empty() || digits.len() > 19 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::illegal_chars(name, RANGE));
    }
    value
        .parse()
        .map_err(|_| ApiError::illegal_chars(name, RANGE))
}

fn check_symbol(name: &str, value: &str) -> Result<(), ApiError> {
    if !value
        .bytes()
        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
    {
        return Err(ApiError::illegal_chars(name, SYMBOL_LEGAL_RANGE));
    }
    if value.len() > SYMBOL_MAX_LEN {
        return Err(ApiError::bad_symbol());
    }
    Ok(())
}

/// `^[\.A-Z\:/a-z0-9_\-]{1,36}$`.
pub fn is_client_order_id(value: &str) -> bool {
    (1..=36).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b':' | b'/' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(q: &str, b: &str) -> Result<Params, ApiError> {
        Params::parse(q.as_bytes(), b.as_bytes())
    }

    fn code(r: Result<impl std::fmt::Debug, ApiError>) -> i32 {
        r.unwrap_err().code()
    }

    #[test]
    fn merges_query_and_body_in_order() {
        let p = parse("symbol=LTCBTC&side=BUY", "quantity=1&price=0.1").unwrap();
        let names: Vec<_> = p.iter().map(|p| (p.name(), p.source())).collect();
        assert_eq!(
            names,
            [
                ("symbol", Source::Query),
                ("side", Source::Query),
                ("quantity", Source::Body),
                ("price", Source::Body)
            ]
        );
    }

    #[test]
    fn percent_decoding_and_plus_as_space() {
        let p = parse("a=%41b+c&b=%2B", "").unwrap();
        assert_eq!(p.required_str("a").unwrap(), "Ab c");
        assert_eq!(p.required_str("b").unwrap(), "+");
    }

    #[test]
    fn duplicate_across_query_and_body_is_refused() {
        assert_eq!(code(parse("quantity=1", "quantity=100")), -1101);
        assert_eq!(code(parse("a=1&a=1", "")), -1101);
        // Encoded names are compared after decoding.
        assert_eq!(code(parse("side=BUY&sid%65=SELL", "")), -1101);
    }

    #[test]
    fn too_many_parameters_are_refused() {
        let q: Vec<String> = (0..=MAX_PARAMS).map(|i| format!("p{i}=1")).collect();
        assert_eq!(code(parse(&q.join("&"), "")), -1101);
        let q: Vec<String> = (0..MAX_PARAMS).map(|i| format!("p{i}=1")).collect();
        assert!(parse(&q.join("&"), "").is_ok());
    }

    #[test]
    fn control_characters_and_bad_utf8_are_refused() {
        for bad in [
            "a=%00", "a=%0A", "a=%FF", "a=%C3", "a=%", "a=%4", "a=%zz", "a=\x07",
        ] {
            assert_eq!(code(parse(bad, "")), -1100, "{bad}");
        }
        for bad in ["=1", "a%20b=1", "a-b=1", "%FF=1"] {
            assert_eq!(code(parse(bad, "")), -1100, "{bad}");
        }
        let long_name = "a".repeat(MAX_NAME_LEN + 1);
        assert_eq!(code(parse(&format!("{long_name}=1"), "")), -1100);
        let long_value = "1".repeat(MAX_VALUE_LEN + 1);
        assert_eq!(code(parse(&format!("a={long_value}"), "")), -1100);
        // Unicode that is not a control character is allowed (getters decide later).
        assert!(parse("a=%EF%BC%91", "").is_ok());
    }

    #[test]
    fn required_and_optional() {
        let p = parse("a=1&empty=&bare", "").unwrap();
        assert_eq!(p.required_str("a").unwrap(), "1");
        let e = p.required_str("missing").unwrap_err();
        assert_eq!(e.code(), -1102);
        assert_eq!(
            e.msg(),
            "Mandatory parameter 'missing' was not sent, was empty/null, or malformed."
        );
        assert_eq!(code(p.required_str("empty")), -1102);
        assert_eq!(code(p.required_str("bare")), -1102);
        assert_eq!(p.optional_str("empty").unwrap(), None);
        assert_eq!(p.optional_str("missing").unwrap(), None);
    }

    #[test]
    fn decimals_map_to_binance_errors() {
        let p = parse("q=0.1&tooprecise=0.123456789&bad=1e5&neg=-1&big=1", "").unwrap();
        assert_eq!(p.decimal("q", 8).unwrap(), Amount::from_minor(10_000_000));
        let e = p.decimal("tooprecise", 8).unwrap_err();
        assert_eq!(
            (e.code(), e.msg()),
            (-1111, "Parameter 'tooprecise' has too much precision.")
        );
        let e = p.decimal("bad", 8).unwrap_err();
        assert_eq!(
            (e.code(), e.msg()),
            (
                -1100,
                r"Illegal characters found in parameter 'bad'; legal range is '^([0-9]{1,20})(\.[0-9]{1,20})?$'."
            )
        );
        assert_eq!(code(p.decimal("neg", 8)), -1100);
        assert_eq!(code(p.decimal("missing", 8)), -1102);
        // Trailing zeros beyond the precision are fine (clients pad).
        let p = parse("q=1.000000000000", "").unwrap();
        assert!(p.decimal("q", 8).is_ok());
        // More than 20 integer digits is outside Binance's range; within 20 but above
        // the platform maximum is too large; both -1100.
        let p = parse(&format!("a={}&b={}", "9".repeat(21), "9".repeat(20)), "").unwrap();
        assert_eq!(code(p.decimal("a", 0)), -1100);
        assert_eq!(code(p.decimal("b", 18)), -1100);
    }

    #[test]
    fn integers() {
        let p = parse(
            "t=1499827319559&neg=-5&bad=12a&huge=99999999999999999999&sp=+1",
            "",
        )
        .unwrap();
        assert_eq!(p.u64("t").unwrap(), 1_499_827_319_559);
        assert_eq!(p.i64("neg").unwrap(), -5);
        assert_eq!(code(p.u64("neg")), -1100);
        assert_eq!(code(p.u64("bad")), -1100);
        assert_eq!(code(p.u64("huge")), -1100);
        assert_eq!(code(p.i64("huge")), -1100);
        assert_eq!(code(p.u64("sp")), -1100);
        assert_eq!(p.optional_u64("missing").unwrap(), None);
    }

    #[test]
    fn enums_use_their_binance_codes() {
        let p = parse(
            "side=BUY&type=LIMIT&timeInForce=GTC&selfTradePreventionMode=EXPIRE_BOTH",
            "",
        )
        .unwrap();
        assert_eq!(p.side().unwrap(), Side::Buy);
        assert_eq!(p.order_type().unwrap(), OrderType::Limit);
        assert_eq!(p.optional_time_in_force().unwrap(), Some(TimeInForce::Gtc));
        assert_eq!(p.optional_stp_mode().unwrap(), Some(StpMode::ExpireBoth));

        let p = parse(
            "side=buy&type=STOP&timeInForce=GTX&selfTradePreventionMode=X",
            "",
        )
        .unwrap();
        assert_eq!(p.side().unwrap_err().msg(), "Invalid side.");
        assert_eq!(code(p.side()), -1117);
        assert_eq!(code(p.order_type()), -1116);
        assert_eq!(code(p.optional_time_in_force()), -1115);
        assert_eq!(code(p.optional_stp_mode()), -1100);
        assert_eq!(code(parse("", "").unwrap().side()), -1102);
    }

    #[test]
    fn symbols() {
        let p = parse(
            &format!("a=BTCUSDT&b=btcusdt&c=BTC-USDT&d={}", "A".repeat(21)),
            "",
        )
        .unwrap();
        assert_eq!(p.symbol("a").unwrap(), "BTCUSDT");
        assert_eq!(code(p.symbol("b")), -1100);
        assert_eq!(code(p.symbol("c")), -1100);
        assert_eq!(code(p.symbol("d")), -1121);
    }

    #[test]
    fn client_order_ids() {
        let ok = "my_order-1.2:3/x";
        let p = parse(&format!("a={ok}&b={}&c=a%20b&d=%C3%A9", "x".repeat(37)), "").unwrap();
        assert_eq!(p.optional_client_order_id("a").unwrap(), Some(ok));
        let e = p.optional_client_order_id("b").unwrap_err();
        assert_eq!(
            e.msg(),
            r"Illegal characters found in parameter 'b'; legal range is '^[\.A-Z\:/a-z0-9_\-]{1,36}$'."
        );
        assert_eq!(code(p.optional_client_order_id("c")), -1100);
        assert_eq!(code(p.optional_client_order_id("d")), -1100);
    }

    #[test]
    fn unread_parameters_are_reported() {
        let p = parse("symbol=BTCUSDT&extra=1", "signature=ab").unwrap();
        p.symbol("symbol").unwrap();
        p.mark_read("signature");
        let e = p.ensure_all_read().unwrap_err();
        assert_eq!(e.code(), -1104);
        assert_eq!(
            e.msg(),
            "Not all sent parameters were read; read '2' parameter(s) but was sent '3'."
        );
        assert!(p.contains("extra"));
        assert!(p.ensure_all_read().is_ok());
    }

    #[test]
    fn refuse_names_forbidden_parameter() {
        let p = parse("price=1", "").unwrap();
        let e = p.refuse("price").unwrap_err();
        assert_eq!(
            (e.code(), e.msg()),
            (-1106, "Parameter 'price' sent when not required.")
        );
        assert!(p.refuse("stopPrice").is_ok());
    }

    #[test]
    fn empty_segments_are_skipped() {
        let p = parse("&a=1&&b=2&", "&").unwrap();
        assert_eq!(p.len(), 2);
    }
}
