//! Entry points shared by the cargo-fuzz targets in `/fuzz` and by the proptests here,
//! so the ordinary test suite exercises the same code paths. Each takes arbitrary bytes
//! and must never panic.

use crate::auth::{
    Ed25519Key, HmacSecret, check_api_key_format, check_timestamp, signature_payload,
};
use crate::params::Params;

/// Splits `data` into `n` parts at `0xFF` bytes (which never occur in UTF-8, so the
/// fuzzer can still produce any valid text in every part). Missing parts are empty.
fn split_parts<const N: usize>(data: &[u8]) -> [&[u8]; N] {
    let mut parts: [&[u8]; N] = [&[]; N];
    let mut rest = data;
    for part in parts.iter_mut() {
        match rest.iter().position(|&b| b == 0xFF) {
            Some(i) => {
                let (head, tail) = rest.split_at(i);
                *part = head;
                rest = tail.get(1..).unwrap_or_default();
            }
            None => {
                *part = rest;
                rest = &[];
            }
        }
    }
    parts
}

/// Parses `query 0xFF body` and calls every typed getter on every parameter name sent
/// plus the well-known ones.
pub fn request_params(data: &[u8]) {
    let [query, body] = split_parts::<2>(data);
    let Ok(params) = Params::parse(query, body) else {
        return;
    };
    let mut names: Vec<String> = params.iter().map(|p| p.name().to_owned()).collect();
    names.extend(
        [
            "symbol",
            "quantity",
            "price",
            "timestamp",
            "recvWindow",
            "newClientOrderId",
        ]
        .map(String::from),
    );
    for name in &names {
        let _ = params.required_str(name);
        let _ = params.optional_str(name);
        for decimals in [0, 2, 8, 18] {
            let _ = params.decimal(name, decimals);
        }
        let _ = params.optional_decimal(name, 8);
        let _ = params.u64(name);
        let _ = params.optional_u64(name);
        let _ = params.i64(name);
        let _ = params.optional_i64(name);
        let _ = params.symbol(name);
        let _ = params.optional_symbol(name);
        let _ = params.optional_client_order_id(name);
        let _ = params.refuse(name);
    }
    let _ = params.side();
    let _ = params.order_type();
    let _ = params.optional_time_in_force();
    let _ = params.optional_stp_mode();
    let _ = params.ensure_all_read();
    if let (Ok(ts), Ok(rw)) = (params.u64("timestamp"), params.optional_u64("recvWindow")) {
        let _ = check_timestamp(ts, rw, 1_499_827_319_559);
    }
}

/// Feeds `query 0xFF body 0xFF secret 0xFF signature 0xFF key` to the payload
/// extraction, the HMAC verifier, the Ed25519 verifier (with a fixed key and with a key
/// made from the input) and the PEM and API-key parsers.
pub fn signature_verify(data: &[u8]) {
    let [query, body, secret, signature, key] = split_parts::<5>(data);
    let hmac = HmacSecret::new(secret.to_vec());
    let fixed = Ed25519Key::from_bytes(&[
        0xd7, 0x5a, 0x98, 0x01, 0x82, 0xb1, 0x0a, 0xb7, 0xd5, 0x4b, 0xfe, 0xd3, 0xc9, 0x64, 0x07,
        0x3a, 0x0e, 0xe1, 0x72, 0xf3, 0xda, 0xa6, 0x23, 0x25, 0xaf, 0x02, 0x1a, 0x68, 0xf7, 0x07,
        0x51, 0x1a,
    ]);
    let mut raw_key = [0u8; 32];
    for (dst, src) in raw_key.iter_mut().zip(key) {
        *dst = *src;
    }
    let from_input = Ed25519Key::from_bytes(&raw_key);
    let pem = Ed25519Key::from_public_key_pem(&String::from_utf8_lossy(key));
    let keys: Vec<Ed25519Key> = [fixed, from_input, pem].into_iter().flatten().collect();

    // Direct verification of the raw parts.
    let _ = hmac.verify(query, signature);
    for k in &keys {
        let _ = k.verify(query, signature);
    }
    // Through the request path: extraction then verification.
    if let Ok(signed) = signature_payload(query, body) {
        let _ = hmac.verify(signed.payload(), signed.signature_raw());
        for k in &keys {
            let _ = k.verify(signed.payload(), signed.signature_raw());
        }
        // A correct HMAC over the extracted payload must verify.
        let good = hmac.sign_hex(signed.payload());
        if hmac.verify(signed.payload(), good.as_bytes()).is_err() {
            // Reaching this is a bug; fuzzers report aborts, so make it one.
            std::process::abort();
        }
    }
    let _ = check_api_key_format(secret);
}

/// Feeds `url 0xFF header 0xFF body` to the webhook address parser under both policies
/// and to a receiver's signature check. What the production policy accepts, the
/// development one accepts too, alike; and it is `https://` on a public address or a
/// name other than `localhost`.
pub fn webhook_parse(data: &[u8]) {
    use crate::webhooks::{WebhookPolicy, is_public, parse_url, signature, verify_signature};
    let [url, header, body] = split_parts::<3>(data);
    let url = String::from_utf8_lossy(url);
    let strict = parse_url(&url, WebhookPolicy::default());
    let insecure = parse_url(
        &url,
        WebhookPolicy {
            allow_insecure: true,
        },
    );
    if let Ok(parsed) = &strict {
        let host = parsed.host();
        let broken = insecure.as_ref() != Ok(parsed)
            || !parsed.as_str().to_ascii_lowercase().starts_with("https://")
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| !is_public(ip))
            || host.trim_end_matches('.') == "localhost";
        if broken {
            // Reaching this is a bug; fuzzers report aborts, so make it one.
            std::process::abort();
        }
    }
    let header = String::from_utf8_lossy(header);
    let _ = verify_signature(b"whsec_fuzz", &header, body, 1_000, 300_000);
    let good = signature(b"whsec_fuzz", 1_000, body);
    if verify_signature(b"whsec_fuzz", &good, body, 1_000, 0) != Ok(1_000) {
        std::process::abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn split_parts_handles_missing_parts() {
        assert_eq!(split_parts::<3>(b"a\xFFb"), [&b"a"[..], b"b", b""]);
        assert_eq!(split_parts::<2>(b""), [&b""[..], b""]);
        assert_eq!(split_parts::<2>(b"a\xFFb\xFFc"), [&b"a"[..], b"b"]);
    }

    fn query_like() -> impl Strategy<Value = Vec<u8>> {
        // Mostly well-formed parameters, with some raw noise, so the getters are reached.
        let name = prop::sample::select(vec![
            "symbol",
            "side",
            "type",
            "timeInForce",
            "quantity",
            "price",
            "timestamp",
            "recvWindow",
            "newClientOrderId",
            "signature",
            "selfTradePreventionMode",
            "x",
        ]);
        let value = "[A-Za-z0-9.%+:/_\\-]{0,24}";
        prop::collection::vec((name, value), 0..10).prop_map(|pairs| {
            pairs
                .into_iter()
                .map(|(n, v)| format!("{n}={v}"))
                .collect::<Vec<_>>()
                .join("&")
                .into_bytes()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn request_params_never_panics_on_bytes(data in prop::collection::vec(any::<u8>(), 0..400)) {
            request_params(&data);
        }

        #[test]
        fn request_params_never_panics_on_query_like_input(q in query_like(), b in query_like()) {
            let mut data = q;
            data.push(0xFF);
            data.extend(b);
            request_params(&data);
        }

        #[test]
        fn webhook_parse_never_panics(data in prop::collection::vec(any::<u8>(), 0..300)) {
            webhook_parse(&data);
        }

        #[test]
        fn webhook_parse_never_panics_on_url_like_input(
            scheme in "(https?|ftp|)",
            host in "([a-z0-9.\\-]{0,20}|\\[[0-9a-f:.]{0,30}\\]|[0-9.]{0,15})",
            port in "(:[0-9]{0,6})?",
            path in "[/A-Za-z0-9?=&%@#.\\-]{0,30}",
        ) {
            webhook_parse(format!("{scheme}://{host}{port}{path}").as_bytes());
        }

        #[test]
        fn signature_verify_never_panics(data in prop::collection::vec(any::<u8>(), 0..400)) {
            signature_verify(&data);
        }

        #[test]
        fn signature_verify_never_panics_on_query_like_input(
            q in query_like(),
            b in query_like(),
            sig in "[A-Za-z0-9+/=%]{0,100}",
        ) {
            let mut data = q;
            data.push(0xFF);
            data.extend(b);
            data.extend_from_slice(b"\xFFsecret\xFF");
            data.extend(sig.into_bytes());
            signature_verify(&data);
        }

        #[test]
        fn hmac_signed_request_always_verifies(q in query_like(), b in query_like()) {
            let secret = HmacSecret::new(b"k".to_vec());
            let payload = [q.as_slice(), b.as_slice()].concat();
            prop_assume!(!String::from_utf8_lossy(&payload).contains("signature="));
            let sig = secret.sign_hex(&payload);
            let mut body = b;
            if !body.is_empty() { body.push(b'&'); }
            body.extend_from_slice(format!("signature={sig}").as_bytes());
            let signed = signature_payload(&q, &body).unwrap();
            prop_assert_eq!(signed.payload(), payload.as_slice());
            prop_assert!(secret.verify(signed.payload(), signed.signature_raw()).is_ok());
        }
    }
}
