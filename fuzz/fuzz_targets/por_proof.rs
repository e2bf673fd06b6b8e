//! Fuzzes the proof-of-liabilities proof decoder and verifier of both variants (the
//! plain sum tree's and the zero-knowledge one's, told apart by the version byte): any
//! bytes either decode to the one encoding they were read from or are refused, and
//! verifying what decodes never panics — a zero-knowledge proof also against the root
//! its own path leads to, so that its range proofs are read and checked too (a capped
//! one is refused without its cap: `por_cap` fuzzes caps).
#![no_main]

use libfuzzer_sys::fuzz_target;
use ztx_por::{Proof, verify_proof};

fuzz_target!(|data: &[u8]| {
    if let Ok(proof) = Proof::decode(data) {
        assert_eq!(proof.encode().as_deref(), Ok(data));
        let _ = verify_proof(&proof, &[0; 32], None);
        if let Proof::ZeroKnowledge(zk) = &proof
            && let Ok(root) = zk.implied_root()
        {
            let _ = verify_proof(&proof, &root, None);
        }
    }
});
