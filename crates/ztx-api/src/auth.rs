//! Binance request authentication: which bytes are signed, HMAC-SHA256 and Ed25519
//! signature checks, the `timestamp`/`recvWindow` window and the `X-MBX-APIKEY` format.
//!
//! The signed payload is the raw query string concatenated, with no separator, with the
//! raw request body, after the `signature=…` parameter (in either) has been removed
//! together with its joining `&`. Nothing else is decoded or re-encoded: the client signs
//! exactly the bytes it sends (Binance `rest-api.md`, "SIGNED Endpoint Examples").
//! Every verification failure is the same opaque -1022.

use std::fmt;

use base64::Engine as _;
use ed25519_dalek::pkcs8::DecodePublicKey as _;
use ed25519_dalek::{Signature, VerifyingKey};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::error::ApiError;
use crate::params::{decode_name, percent_decode};

/// `recvWindow` when the request does not send one.
pub const DEFAULT_RECV_WINDOW_MS: u64 = 5_000;
/// Largest accepted `recvWindow`.
pub const MAX_RECV_WINDOW_MS: u64 = 60_000;
/// How far ahead of the server a timestamp may be (exclusive).
pub const MAX_CLOCK_AHEAD_MS: u64 = 1_000;
/// Longest accepted API key (ours are 64 alphanumerics, like Binance's).
pub const MAX_API_KEY_LEN: usize = 64;
/// The name of the signature parameter.
pub const SIGNATURE_PARAM: &str = "signature";
/// The API-key header.
pub const API_KEY_HEADER: &str = "X-MBX-APIKEY";

/// Why a customer's public key could not be registered. The customer's fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("not a PEM-encoded Ed25519 public key (SPKI, BEGIN PUBLIC KEY)")]
    NotEd25519Pem,
    #[error("Ed25519 public key is not a valid curve point")]
    InvalidPoint,
    #[error("Ed25519 public key is of small order (weak)")]
    WeakKey,
}

/// The signed bytes of a request and the raw (still percent-encoded) signature value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignaturePayload<'a> {
    payload: Vec<u8>,
    signature_raw: &'a [u8],
}

impl SignaturePayload<'_> {
    /// `query' ‖ body'`, the `signature` parameter removed.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }
    /// The signature parameter's value exactly as sent.
    pub fn signature_raw(&self) -> &[u8] {
        self.signature_raw
    }
}

/// Removes the `signature` parameter from one raw part; returns the rest and the raw
/// signature value if found. Parameter names are compared after decoding, like
/// [`crate::params::Params`] does, so `sig%6Eature=` cannot dodge removal.
fn strip_signature(raw: &[u8]) -> Result<(Vec<u8>, Option<&[u8]>), ApiError> {
    let mut kept: Vec<&[u8]> = Vec::new();
    let mut signature = None;
    for segment in raw.split(|&b| b == b'&') {
        let (name, value) = match segment.iter().position(|&b| b == b'=') {
            Some(i) => {
                let (n, rest) = segment.split_at(i);
                (n, rest.get(1..).unwrap_or_default())
            }
            None => (segment, &[][..]),
        };
        if decode_name(name).as_deref() == Some(SIGNATURE_PARAM) {
            if signature.replace(value).is_some() {
                return Err(ApiError::duplicate_parameter());
            }
        } else {
            kept.push(segment);
        }
    }
    Ok((kept.join(&b'&'), signature))
}

/// Splits a request into the signed payload and the signature. -1102 if no `signature`
/// was sent, -1101 if it was sent more than once.
pub fn signature_payload<'a>(
    query: &'a [u8],
    body: &'a [u8],
) -> Result<SignaturePayload<'a>, ApiError> {
    let (mut payload, in_query) = strip_signature(query)?;
    let (body_rest, in_body) = strip_signature(body)?;
    payload.extend_from_slice(&body_rest);
    let signature_raw = match (in_query, in_body) {
        (Some(_), Some(_)) => return Err(ApiError::duplicate_parameter()),
        (Some(s), None) | (None, Some(s)) => s,
        (None, None) => return Err(ApiError::mandatory_param(SIGNATURE_PARAM)),
    };
    if signature_raw.is_empty() {
        return Err(ApiError::mandatory_param(SIGNATURE_PARAM));
    }
    Ok(SignaturePayload {
        payload,
        signature_raw,
    })
}

/// An HMAC-SHA256 API secret. Zeroed on drop; `Debug` redacts.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct HmacSecret {
    key: Vec<u8>,
}

impl fmt::Debug for HmacSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HmacSecret(**redacted**)")
    }
}

impl HmacSecret {
    /// Takes the secret bytes (Binance secrets are used as their ASCII text).
    pub fn new(key: Vec<u8>) -> Self {
        Self { key }
    }

    fn mac(&self, payload: &[u8]) -> [u8; 32] {
        // HMAC accepts keys of any length, so this never takes the error branch; an
        // all-zero tag would then simply never match a real signature.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.key) else {
            return [0; 32];
        };
        mac.update(payload);
        mac.finalize().into_bytes().into()
    }

    /// The lowercase hex signature of `payload`, as a client computes it.
    pub fn sign_hex(&self, payload: &[u8]) -> String {
        hex::encode(self.mac(payload))
    }

    /// Checks a hex signature (either case, as Binance allows) in constant time.
    pub fn verify(&self, payload: &[u8], signature_raw: &[u8]) -> Result<(), ApiError> {
        let mut sent = [0u8; 32];
        hex::decode_to_slice(signature_raw, &mut sent)
            .map_err(|_| ApiError::invalid_signature())?;
        let expected = self.mac(payload);
        if bool::from(expected.ct_eq(&sent)) {
            Ok(())
        } else {
            Err(ApiError::invalid_signature())
        }
    }
}

/// A customer's Ed25519 public key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ed25519Key {
    key: VerifyingKey,
}

impl Ed25519Key {
    /// Parses `-----BEGIN PUBLIC KEY-----` (SPKI) PEM, refusing weak keys.
    pub fn from_public_key_pem(pem: &str) -> Result<Self, KeyError> {
        let key =
            VerifyingKey::from_public_key_pem(pem.trim()).map_err(|_| KeyError::NotEd25519Pem)?;
        Self::checked(key)
    }

    /// From the 32 raw key bytes.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, KeyError> {
        let key = VerifyingKey::from_bytes(bytes).map_err(|_| KeyError::InvalidPoint)?;
        Self::checked(key)
    }

    fn checked(key: VerifyingKey) -> Result<Self, KeyError> {
        if key.is_weak() {
            return Err(KeyError::WeakKey);
        }
        Ok(Self { key })
    }

    pub fn to_bytes(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// Checks a base64 signature as sent (percent-encoded or not). Base64 never contains
    /// a space, so a `+` that a careless client left unencoded is kept as `+` rather than
    /// read as a form-encoded space. Uses strict verification (no malleable signatures).
    pub fn verify(&self, payload: &[u8], signature_raw: &[u8]) -> Result<(), ApiError> {
        let invalid = ApiError::invalid_signature;
        let text = percent_decode(signature_raw, false).ok_or_else(invalid)?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&text)
            .map_err(|_| invalid())?;
        let bytes: [u8; 64] = bytes.as_slice().try_into().map_err(|_| invalid())?;
        let signature = Signature::from_bytes(&bytes);
        self.key
            .verify_strict(payload, &signature)
            .map_err(|_| invalid())
    }
}

/// The key an API key is registered with.
#[derive(Clone, Debug)]
pub enum ClientKey {
    Hmac(HmacSecret),
    Ed25519(Ed25519Key),
}

impl ClientKey {
    /// Verifies a request's signature with this key. -1022 on any failure.
    pub fn verify(&self, signed: &SignaturePayload<'_>) -> Result<(), ApiError> {
        match self {
            ClientKey::Hmac(secret) => secret.verify(signed.payload(), signed.signature_raw()),
            ClientKey::Ed25519(key) => key.verify(signed.payload(), signed.signature_raw()),
        }
    }
}

/// Binance's timing rule: accept iff `timestamp < now + 1000` and
/// `now - timestamp <= recvWindow`; `recvWindow` defaults to 5000 and may not exceed
/// 60000 (-1131).
pub fn check_timestamp(
    timestamp_ms: u64,
    recv_window_ms: Option<u64>,
    server_now_ms: u64,
) -> Result<(), ApiError> {
    let recv_window_ms = recv_window_ms.unwrap_or(DEFAULT_RECV_WINDOW_MS);
    if recv_window_ms > MAX_RECV_WINDOW_MS {
        return Err(ApiError::bad_recv_window());
    }
    let ahead_ms = timestamp_ms.checked_sub(server_now_ms);
    if ahead_ms.is_some_and(|ahead| ahead >= MAX_CLOCK_AHEAD_MS) {
        return Err(ApiError::timestamp_ahead());
    }
    if server_now_ms.saturating_sub(timestamp_ms) > recv_window_ms {
        return Err(ApiError::timestamp_outside_recv_window());
    }
    Ok(())
}

/// -2014 unless the `X-MBX-APIKEY` value is 1–64 ASCII letters and digits.
pub fn check_api_key_format(api_key: &[u8]) -> Result<(), ApiError> {
    if api_key.is_empty()
        || api_key.len() > MAX_API_KEY_LEN
        || !api_key.iter().all(u8::is_ascii_alphanumeric)
    {
        return Err(ApiError::bad_api_key_format());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    // Binance spot API docs, rest-api.md → "SIGNED Endpoint Examples for POST /api/v3/order",
    // HMAC Keys (github.com/binance/binance-spot-api-docs/blob/master/rest-api.md and
    // https://developers.binance.com/docs/binance-spot-api-docs/rest-api/request-security).
    const DOC_API_KEY: &str = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A";
    const DOC_SECRET: &str = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j";
    const DOC_PARAMS: &str = "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559";
    const DOC_SIG_1: &str = "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71";
    const DOC_QUERY_3: &str = "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC";
    const DOC_BODY_3: &str = "quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559";
    const DOC_SIG_3: &str = "0fd168b8ddb4876a0358a8d14d0c9f3da0e9b20c5d52b2a00fcf7d1c602f9a77";
    // Same docs, current version: the non-ASCII example (symbol １２３４５６ percent-encoded).
    const DOC_QUERY_UNICODE: &str = "symbol=%EF%BC%91%EF%BC%92%EF%BC%93%EF%BC%94%EF%BC%95%EF%BC%96&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559";
    const DOC_SIG_UNICODE: &str =
        "e1353ec6b14d888f1164ae9af8228a3dbd508bc82eb867db8ab6046442f33ef3";

    fn doc_secret() -> HmacSecret {
        HmacSecret::new(DOC_SECRET.as_bytes().to_vec())
    }

    fn verify_hmac(query: &str, body: &str) -> Result<(), ApiError> {
        let signed = signature_payload(query.as_bytes(), body.as_bytes())?;
        ClientKey::Hmac(doc_secret()).verify(&signed)
    }

    #[test]
    fn binance_doc_example_1_and_2_query_or_body() {
        assert_eq!(doc_secret().sign_hex(DOC_PARAMS.as_bytes()), DOC_SIG_1);
        let signed = format!("{DOC_PARAMS}&signature={DOC_SIG_1}");
        verify_hmac(&signed, "").unwrap();
        verify_hmac("", &signed).unwrap();
        assert!(check_api_key_format(DOC_API_KEY.as_bytes()).is_ok());
    }

    #[test]
    fn binance_doc_example_3_mixed_query_and_body() {
        let payload = format!("{DOC_QUERY_3}{DOC_BODY_3}");
        assert_eq!(doc_secret().sign_hex(payload.as_bytes()), DOC_SIG_3);
        verify_hmac(DOC_QUERY_3, &format!("{DOC_BODY_3}&signature={DOC_SIG_3}")).unwrap();
    }

    #[test]
    fn binance_doc_example_non_ascii_is_signed_percent_encoded() {
        verify_hmac(
            &format!("{DOC_QUERY_UNICODE}&signature={DOC_SIG_UNICODE}"),
            "",
        )
        .unwrap();
    }

    #[test]
    fn hmac_signature_is_case_insensitive() {
        verify_hmac(
            &format!("{DOC_PARAMS}&signature={}", DOC_SIG_1.to_uppercase()),
            "",
        )
        .unwrap();
    }

    #[test]
    fn signature_position_does_not_matter() {
        let rest = DOC_PARAMS.split_once('&').unwrap().1;
        // `signature` first in the query: removed with the `&` after it.
        let q = format!("signature={DOC_SIG_1}&{DOC_PARAMS}");
        verify_hmac(&q, "").unwrap();
        // In the middle.
        let q = format!("symbol=LTCBTC&signature={DOC_SIG_1}&{rest}");
        verify_hmac(&q, "").unwrap();
    }

    #[test]
    fn tampered_parameter_is_refused() {
        let tampered = DOC_PARAMS.replace("quantity=1", "quantity=100");
        let e = verify_hmac(&format!("{tampered}&signature={DOC_SIG_1}"), "").unwrap_err();
        assert_eq!(
            (e.code(), e.msg()),
            (-1022, "Signature for this request is not valid.")
        );
        // Added parameter.
        assert!(verify_hmac(&format!("{DOC_PARAMS}&price=1&signature={DOC_SIG_1}"), "").is_err());
        // Reordered parameters.
        let reordered = DOC_PARAMS.replace("side=BUY&type=LIMIT", "type=LIMIT&side=BUY");
        assert!(verify_hmac(&format!("{reordered}&signature={DOC_SIG_1}"), "").is_err());
        // Re-encoded but equivalent value: the raw bytes are signed, not the meaning.
        let reencoded = DOC_PARAMS.replace("LTCBTC", "LTC%42TC");
        assert!(verify_hmac(&format!("{reencoded}&signature={DOC_SIG_1}"), "").is_err());
    }

    #[test]
    fn signature_moved_to_body_still_covers_query() {
        // Signed as example 3; the signature sits in the body but the query is covered.
        let body = format!("{DOC_BODY_3}&signature={DOC_SIG_3}");
        verify_hmac(DOC_QUERY_3, &body).unwrap();
        let evil_query = DOC_QUERY_3.replace("side=BUY", "side=SELL");
        assert_eq!(verify_hmac(&evil_query, &body).unwrap_err().code(), -1022);
        // Dropping the query entirely is refused too.
        assert_eq!(verify_hmac("", &body).unwrap_err().code(), -1022);
    }

    #[test]
    fn signature_from_other_key_is_refused() {
        let other = HmacSecret::new(b"another-secret".to_vec());
        let sig = other.sign_hex(DOC_PARAMS.as_bytes());
        assert_eq!(
            verify_hmac(&format!("{DOC_PARAMS}&signature={sig}"), "")
                .unwrap_err()
                .code(),
            -1022
        );
    }

    #[test]
    fn malformed_hmac_signatures_are_refused() {
        for sig in [
            "",
            "zz",
            &DOC_SIG_1[..63],
            &format!("{DOC_SIG_1}00"),
            &DOC_SIG_1.replace('c', "g"),
        ] {
            let r = verify_hmac(&format!("{DOC_PARAMS}&signature={sig}"), "");
            assert!(matches!(r.unwrap_err().code(), -1022 | -1102), "{sig}");
        }
    }

    #[test]
    fn missing_or_duplicate_signature_is_refused() {
        assert_eq!(verify_hmac(DOC_PARAMS, "").unwrap_err().code(), -1102);
        let q = format!("{DOC_PARAMS}&signature={DOC_SIG_1}");
        assert_eq!(
            verify_hmac(&q, &format!("signature={DOC_SIG_1}"))
                .unwrap_err()
                .code(),
            -1101
        );
        assert_eq!(
            verify_hmac(&format!("{q}&signature={DOC_SIG_1}"), "")
                .unwrap_err()
                .code(),
            -1101
        );
    }

    #[test]
    fn encoded_signature_name_cannot_smuggle_a_second_signature() {
        let q = format!("{DOC_PARAMS}&signature={DOC_SIG_1}&sig%6Eature=00");
        assert_eq!(verify_hmac(&q, "").unwrap_err().code(), -1101);
    }

    #[test]
    fn payload_extraction_keeps_other_bytes_verbatim() {
        let s = signature_payload(b"a=%41&signature=xx&b=+", b"c=1").unwrap();
        assert_eq!(s.payload(), b"a=%41&b=+c=1");
        assert_eq!(s.signature_raw(), b"xx");
        let s = signature_payload(b"signature=xx", b"").unwrap();
        assert_eq!(s.payload(), b"");
    }

    #[test]
    fn hmac_secret_debug_is_redacted() {
        let shown = format!("{:?} {:?}", doc_secret(), ClientKey::Hmac(doc_secret()));
        assert!(!shown.contains(DOC_SECRET));
        assert!(!shown.contains("Nhq"));
        assert!(shown.contains("redacted"));
    }

    // ---- Ed25519 ---------------------------------------------------------------------

    // RFC 8032 §7.1 TEST 1: secret key, public key, empty message and its signature.
    const RFC8032_SECRET: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
    const RFC8032_PUBLIC: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
    const RFC8032_SIG: &str = "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b";

    fn rfc_signing_key() -> SigningKey {
        let mut secret = [0u8; 32];
        hex::decode_to_slice(RFC8032_SECRET, &mut secret).unwrap();
        SigningKey::from_bytes(&secret)
    }

    fn rfc_key() -> Ed25519Key {
        let mut public = [0u8; 32];
        hex::decode_to_slice(RFC8032_PUBLIC, &mut public).unwrap();
        Ed25519Key::from_bytes(&public).unwrap()
    }

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    /// Percent-encodes a base64 string as Binance's docs do.
    fn pct(b64: &str) -> String {
        b64.replace('+', "%2B")
            .replace('/', "%2F")
            .replace('=', "%3D")
    }

    #[test]
    fn ed25519_rfc8032_known_answer() {
        let sig = hex::decode(RFC8032_SIG).unwrap();
        let key = rfc_key();
        assert_eq!(rfc_signing_key().verifying_key().to_bytes(), key.to_bytes());
        key.verify(b"", b64(&sig).as_bytes()).unwrap();
        key.verify(pct(&b64(&sig)).as_bytes(), b"").unwrap_err();
        key.verify(b"", pct(&b64(&sig)).as_bytes()).unwrap();
    }

    #[test]
    fn ed25519_signed_request_verifies_via_pem() {
        // The public key of the RFC 8032 test key, SPKI PEM (what `openssl pkey -pubout`
        // prints for it).
        let pem = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\n-----END PUBLIC KEY-----\n";
        let key = Ed25519Key::from_public_key_pem(pem).unwrap();
        assert_eq!(key, rfc_key());
        let payload = "symbol=BTCUSDT&side=SELL&type=LIMIT&timeInForce=GTC&quantity=1&price=0.2&timestamp=1668481559918&recvWindow=5000";
        let sig = pct(&b64(&rfc_signing_key().sign(payload.as_bytes()).to_bytes()));
        let query = format!("{payload}&signature={sig}");
        let signed = signature_payload(query.as_bytes(), b"").unwrap();
        ClientKey::Ed25519(key.clone()).verify(&signed).unwrap();
        // Sent without percent-encoding works as well (`+` is not taken for a space).
        let raw_sig = b64(&rfc_signing_key().sign(payload.as_bytes()).to_bytes());
        key.verify(payload.as_bytes(), raw_sig.as_bytes()).unwrap();
    }

    #[test]
    fn ed25519_known_answer_from_openssl() {
        // Binance's Ed25519 example has no public key to check against, so this vector is
        // Binance's example payload signed with the RFC 8032 TEST 1 key by OpenSSL 3:
        // `openssl pkeyutl -sign -inkey rfc8032.pem -rawin -in payload | base64 -A`.
        let payload = "symbol=BTCUSDT&side=SELL&type=LIMIT&timeInForce=GTC&quantity=1&price=0.2&timestamp=1668481559918&recvWindow=5000";
        let sig = "XtZirsmmi0noRzUfkqktvkVfxpkq/WtbLg2UOL3QGYdUBZVlqOBEMuEVw8zioY93N54NcKj9UuAXQEa9zgTDBg==";
        rfc_key()
            .verify(payload.as_bytes(), pct(sig).as_bytes())
            .unwrap();
        assert_eq!(
            b64(&rfc_signing_key().sign(payload.as_bytes()).to_bytes()),
            sig
        );
    }

    #[test]
    fn ed25519_tampered_parameter_is_refused() {
        let payload = b"symbol=BTCUSDT&quantity=1&timestamp=1";
        let sig = b64(&rfc_signing_key().sign(payload).to_bytes());
        let e = rfc_key()
            .verify(b"symbol=BTCUSDT&quantity=9&timestamp=1", sig.as_bytes())
            .unwrap_err();
        assert_eq!(e.code(), -1022);
    }

    #[test]
    fn ed25519_signature_from_other_key_is_refused() {
        let other = SigningKey::from_bytes(&[7u8; 32]);
        let payload = b"symbol=BTCUSDT&timestamp=1";
        let sig = b64(&other.sign(payload).to_bytes());
        assert_eq!(
            rfc_key()
                .verify(payload, sig.as_bytes())
                .unwrap_err()
                .code(),
            -1022
        );
    }

    #[test]
    fn ed25519_malformed_signatures_are_refused() {
        let sig = b64(&rfc_signing_key().sign(b"x").to_bytes());
        for bad in [
            String::new(),
            "%".into(),
            "!!!!".into(),
            sig[..sig.len() - 4].to_string(),
            format!("{sig}AAAA"),
            hex::encode([0u8; 64]),
        ] {
            assert_eq!(
                rfc_key().verify(b"x", bad.as_bytes()).unwrap_err().code(),
                -1022,
                "{bad}"
            );
        }
    }

    #[test]
    fn bad_public_keys_are_refused() {
        assert_eq!(
            Ed25519Key::from_public_key_pem("not a key"),
            Err(KeyError::NotEd25519Pem)
        );
        // An RSA/other SPKI is refused: this one is an X25519 key (OID 1.3.101.110).
        let x25519 = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VuAyEA11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\n-----END PUBLIC KEY-----\n";
        assert_eq!(
            Ed25519Key::from_public_key_pem(x25519),
            Err(KeyError::NotEd25519Pem)
        );
        // The identity point is a weak (small-order) key.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(Ed25519Key::from_bytes(&identity), Err(KeyError::WeakKey));
    }

    // ---- timing ------------------------------------------------------------------------

    const NOW: u64 = 1_499_827_319_559;

    #[test]
    fn fresh_request_is_accepted() {
        check_timestamp(NOW, None, NOW).unwrap();
        check_timestamp(NOW - 5_000, None, NOW).unwrap();
        check_timestamp(NOW + 999, None, NOW).unwrap();
        check_timestamp(NOW - 60_000, Some(60_000), NOW).unwrap();
    }

    #[test]
    fn replayed_request_outside_recv_window_is_refused() {
        let e = check_timestamp(NOW - 5_001, None, NOW).unwrap_err();
        assert_eq!(
            (e.code(), e.msg()),
            (
                -1021,
                "Timestamp for this request is outside of the recvWindow."
            )
        );
        assert_eq!(
            check_timestamp(NOW - 101, Some(100), NOW)
                .unwrap_err()
                .code(),
            -1021
        );
        assert_eq!(
            check_timestamp(0, Some(60_000), NOW).unwrap_err().code(),
            -1021
        );
    }

    #[test]
    fn timestamp_from_the_future_is_refused() {
        let e = check_timestamp(NOW + 1_000, None, NOW).unwrap_err();
        assert_eq!(
            (e.code(), e.msg()),
            (
                -1021,
                "Timestamp for this request was 1000ms ahead of the server's time."
            )
        );
        assert_eq!(
            check_timestamp(u64::MAX, None, NOW).unwrap_err().code(),
            -1021
        );
        // A huge recvWindow cannot widen the future side either.
        assert_eq!(
            check_timestamp(NOW + 5_000, Some(60_000), NOW)
                .unwrap_err()
                .code(),
            -1021
        );
    }

    #[test]
    fn recv_window_above_60000_is_refused() {
        let e = check_timestamp(NOW, Some(60_001), NOW).unwrap_err();
        assert_eq!(
            (e.code(), e.msg()),
            (-1131, "recvWindow must be less than 60000")
        );
        assert_eq!(
            check_timestamp(NOW, Some(u64::MAX), NOW)
                .unwrap_err()
                .code(),
            -1131
        );
    }

    #[test]
    fn clock_edge_cases_do_not_overflow() {
        assert!(check_timestamp(0, None, 0).is_ok());
        assert!(check_timestamp(u64::MAX, None, u64::MAX).is_ok());
        assert!(check_timestamp(u64::MAX - 1_000, Some(0), u64::MAX).is_err());
    }

    #[test]
    fn malformed_api_keys_are_refused() {
        for bad in [
            &b""[..],
            b"abc def",
            b"abc\0",
            "é".as_bytes(),
            &[b'a'; MAX_API_KEY_LEN + 1],
        ] {
            let e = check_api_key_format(bad).unwrap_err();
            assert_eq!((e.code(), e.msg()), (-2014, "API-key format invalid."));
        }
        assert!(check_api_key_format(&[b'a'; MAX_API_KEY_LEN]).is_ok());
    }
}
