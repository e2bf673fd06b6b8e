//! Security monitoring: every audit-log entry as an OCSF 1.x event for a SIEM
//! ([`ocsf`]), written as JSON lines to a rotating file ([`sink`]), and the detection
//! rules that watch the entries as they arrive and decide how the platform responds
//! ([`rules`]).
//!
//! Pure but for [`sink`], which writes files: the server reads the log, feeds the
//! entries in, and carries out the responses (each of them itself an audit entry).

pub mod ocsf;
pub mod rules;
pub mod sink;

pub use ocsf::{OCSF_VERSION, Product};
pub use rules::{DetectionConfig, Detector, Finding, Response, Rule, RuleConfig};
pub use sink::{RotatingFile, SinkConfig};
