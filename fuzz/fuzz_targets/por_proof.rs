//! Fuzzes the proof-of-liabilities proof decoder and verifier of both variants (the
//! plain sum tree's and the zero-knowledge one's, told apart by the version byte): any
//! bytes either decode to the one encoding they were read from or are refused, and
//! verifying what decodes — range proofs included — never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ztx_por::{Proof, verify_proof};

fuzz_target!(|data: &[u8]| {
    if let Ok(proof) = Proof::decode(data) {
        assert_eq!(proof.encode().as_deref(), Ok(data));
        let _ = verify_proof(&proof, &[0; 32]);
    }
});
