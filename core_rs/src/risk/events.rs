//! The events features are computed from (`pyorder/risk/events.py`), with their string fields
//! hashed to `u64` keys.

use std::hash::Hasher;

use rustc_hash::FxHasher;

/// A string key (device id, IP, address, email or phone hash, region, instrument) as a `u64`.
///
/// FxHash with its fixed seed: the same string gives the same key on every run and 64-bit
/// platform (a replay for training and the server agree, and the tests reproduce), and it costs a
/// few ns per key on the hot path. The features depend only on which keys are equal, never on
/// their values, so a 64-bit hash changes a feature only on a collision (about 2^-64 per pair of
/// strings); the tables' own index hashes these keys again with a per-process random key, so
/// that chosen strings cannot pile up in one bucket chain.
#[inline]
pub fn key_hash(s: &str) -> u64 {
    let mut h = FxHasher::default();
    h.write(s.as_bytes());
    // The length too, as `str`'s own Hash does (with its 0xff terminator): "ab" + "" and "a" +
    // "b" differ only by where the bytes end.
    h.write_usize(s.len());
    h.finish()
}

/// The key of a (client, SKU) pair: a device's or IP's key with the SKU.
#[inline]
pub fn pair_hash(client: u64, sku: u64) -> u64 {
    let mut h = FxHasher::default();
    h.write_u64(client);
    h.write_u64(sku);
    h.finish()
}

/// One order placed: `pyorder.risk.events.OrderAttempt` with its strings hashed by [`key_hash`].
/// Times are ms since the Unix epoch (UTC); amounts are minor units.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct OrderEvent {
    pub at_ms: i64,
    pub buyer: u64,
    /// When the buyer's account was made; None when the caller does not know.
    pub account_created_ms: Option<i64>,
    pub amount: i64,
    pub sku: u64,
    pub quantity: i64,
    pub sku_release_ms: Option<i64>,
    pub device: Option<u64>,
    pub ip: Option<u64>,
    pub ip_region: Option<u64>,
    pub email: Option<u64>,
    pub phone: Option<u64>,
    /// `AgentClass`: 0 unknown, 1 browser, 2 app, 3 headless or HTTP library.
    pub agent: u8,
    pub address: Option<u64>,
    pub ship_region: Option<u64>,
}

/// One authorisation of a payment: `pyorder.risk.events.PaymentAttempt`, strings hashed.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PaymentEvent {
    pub at_ms: i64,
    pub buyer: u64,
    pub amount: i64,
    pub instrument: u64,
    pub authorised: bool,
    pub device: Option<u64>,
    pub ip: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_hash_is_fixed_and_separates_strings() {
        // Fixed across runs and platforms: training data and a server agree.
        assert_eq!(key_hash("device-1"), key_hash("device-1"));
        assert_ne!(key_hash("device-1"), key_hash("device-2"));
        assert_ne!(key_hash(""), key_hash("\0"));
        assert_ne!(pair_hash(1, 2), pair_hash(2, 1));
    }
}
