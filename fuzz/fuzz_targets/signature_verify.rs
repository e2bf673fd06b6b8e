//! Fuzzes signature payload extraction and the HMAC / Ed25519 verifiers:
//! `query 0xFF body 0xFF secret 0xFF signature 0xFF key`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ztx_api::fuzzing::signature_verify(data);
});
