//! Fuzzes the webhook address parser (both policies) and a receiver's signature check:
//! `url 0xFF header 0xFF body`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ztx_api::fuzzing::webhook_parse(data);
});
