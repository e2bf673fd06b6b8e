//! Fuzzes the proof-of-liabilities proof decoder and verifier: any bytes either decode
//! to the one encoding they were read from or are refused, and verifying what decodes
//! never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ztx_por::{InclusionProof, verify};

fuzz_target!(|data: &[u8]| {
    if let Ok(proof) = InclusionProof::decode(data) {
        assert_eq!(proof.encode().as_deref(), Ok(data));
        let _ = verify(&proof, &[0; 32]);
    }
});
