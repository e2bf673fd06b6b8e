//! Fuzzes the Binance parameter parser and its typed getters: `query 0xFF body`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ztx_api::fuzzing::request_params(data);
});
