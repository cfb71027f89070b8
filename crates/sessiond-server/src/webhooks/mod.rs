//! Lifecycle webhooks: every audit event, POSTed to each configured endpoint, signed as
//! the Standard Webhooks specification describes ([`sign`]), at least once and in audit
//! order per endpoint, by one node of the cluster at a time ([`deliver`]).

pub mod deliver;
pub mod sign;
