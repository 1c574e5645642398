//! The feature catalogue's order (`docs/risk.md`, "Features: the catalogue").

/// How many features an order or a payment has.
pub const FEATURE_COUNT: usize = 40;

/// One feature vector: NaN where a feature is missing (its field was not given).
pub type Features = [f64; FEATURE_COUNT];

/// The features' names, in the catalogue's order.
pub const FEATURE_NAMES: [&str; FEATURE_COUNT] = [
    "buyer_orders_1m",
    "buyer_orders_1h",
    "buyer_orders_24h",
    "device_orders_1m",
    "device_orders_1h",
    "device_orders_24h",
    "ip_orders_1m",
    "ip_orders_1h",
    "ip_orders_24h",
    "address_orders_1m",
    "address_orders_1h",
    "address_orders_24h",
    "instrument_attempts_1m",
    "instrument_attempts_1h",
    "instrument_attempts_24h",
    "buyer_amount_1h",
    "buyer_amount_24h",
    "device_buyers_24h",
    "ip_buyers_24h",
    "address_buyers_24h",
    "email_buyers_24h",
    "phone_buyers_24h",
    "buyer_devices_24h",
    "buyer_addresses_24h",
    "buyer_instruments_24h",
    "instrument_buyers_24h",
    "account_age_s",
    "buyer_orders_total",
    "amount",
    "amount_vs_buyer_mean",
    "quantity",
    "ip_region_mismatch",
    "instrument_declines_1h",
    "device_declines_1h",
    "ip_declines_1h",
    "buyer_declines_24h",
    "seconds_since_release",
    "device_sku_orders_1h",
    "ip_sku_orders_1h",
    "agent_class",
];

// The index of each feature (the tracker writes them by name, not by number).
pub(crate) const BUYER_ORDERS: usize = 0;
pub(crate) const DEVICE_ORDERS: usize = 3;
pub(crate) const IP_ORDERS: usize = 6;
pub(crate) const ADDRESS_ORDERS: usize = 9;
pub(crate) const INSTRUMENT_ATTEMPTS: usize = 12;
pub(crate) const BUYER_AMOUNT_1H: usize = 15;
pub(crate) const BUYER_AMOUNT_24H: usize = 16;
pub(crate) const DEVICE_BUYERS: usize = 17;
pub(crate) const IP_BUYERS: usize = 18;
pub(crate) const ADDRESS_BUYERS: usize = 19;
pub(crate) const EMAIL_BUYERS: usize = 20;
pub(crate) const PHONE_BUYERS: usize = 21;
pub(crate) const BUYER_DEVICES: usize = 22;
pub(crate) const BUYER_ADDRESSES: usize = 23;
pub(crate) const BUYER_INSTRUMENTS: usize = 24;
pub(crate) const INSTRUMENT_BUYERS: usize = 25;
pub(crate) const ACCOUNT_AGE_S: usize = 26;
pub(crate) const BUYER_ORDERS_TOTAL: usize = 27;
pub(crate) const AMOUNT: usize = 28;
pub(crate) const AMOUNT_VS_BUYER_MEAN: usize = 29;
pub(crate) const QUANTITY: usize = 30;
pub(crate) const IP_REGION_MISMATCH: usize = 31;
pub(crate) const INSTRUMENT_DECLINES_1H: usize = 32;
pub(crate) const DEVICE_DECLINES_1H: usize = 33;
pub(crate) const IP_DECLINES_1H: usize = 34;
pub(crate) const BUYER_DECLINES_24H: usize = 35;
pub(crate) const SECONDS_SINCE_RELEASE: usize = 36;
pub(crate) const DEVICE_SKU_ORDERS_1H: usize = 37;
pub(crate) const IP_SKU_ORDERS_1H: usize = 38;
pub(crate) const AGENT_CLASS: usize = 39;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_indices_name_their_features() {
        let named = [
            (BUYER_ORDERS, "buyer_orders_1m"),
            (DEVICE_ORDERS, "device_orders_1m"),
            (IP_ORDERS, "ip_orders_1m"),
            (ADDRESS_ORDERS, "address_orders_1m"),
            (INSTRUMENT_ATTEMPTS, "instrument_attempts_1m"),
            (BUYER_AMOUNT_1H, "buyer_amount_1h"),
            (BUYER_AMOUNT_24H, "buyer_amount_24h"),
            (DEVICE_BUYERS, "device_buyers_24h"),
            (IP_BUYERS, "ip_buyers_24h"),
            (ADDRESS_BUYERS, "address_buyers_24h"),
            (EMAIL_BUYERS, "email_buyers_24h"),
            (PHONE_BUYERS, "phone_buyers_24h"),
            (BUYER_DEVICES, "buyer_devices_24h"),
            (BUYER_ADDRESSES, "buyer_addresses_24h"),
            (BUYER_INSTRUMENTS, "buyer_instruments_24h"),
            (INSTRUMENT_BUYERS, "instrument_buyers_24h"),
            (ACCOUNT_AGE_S, "account_age_s"),
            (BUYER_ORDERS_TOTAL, "buyer_orders_total"),
            (AMOUNT, "amount"),
            (AMOUNT_VS_BUYER_MEAN, "amount_vs_buyer_mean"),
            (QUANTITY, "quantity"),
            (IP_REGION_MISMATCH, "ip_region_mismatch"),
            (INSTRUMENT_DECLINES_1H, "instrument_declines_1h"),
            (DEVICE_DECLINES_1H, "device_declines_1h"),
            (IP_DECLINES_1H, "ip_declines_1h"),
            (BUYER_DECLINES_24H, "buyer_declines_24h"),
            (SECONDS_SINCE_RELEASE, "seconds_since_release"),
            (DEVICE_SKU_ORDERS_1H, "device_sku_orders_1h"),
            (IP_SKU_ORDERS_1H, "ip_sku_orders_1h"),
            (AGENT_CLASS, "agent_class"),
        ];
        for (i, name) in named {
            assert_eq!(FEATURE_NAMES[i], name);
        }
    }
}
