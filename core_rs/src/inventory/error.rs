//! Inventory errors and the per-order status codes used by the batch API.

use super::reservation::ReservationState;

/// Why an inventory operation was refused. The inventory is unchanged whenever one is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InventoryError {
    #[error("unknown SKU {sku}")]
    UnknownSku { sku: u32 },
    #[error("unknown warehouse {warehouse}")]
    UnknownWarehouse { warehouse: u32 },
    #[error("unknown region {region}: no warehouses are set to serve it")]
    UnknownRegion { region: u32 },
    #[error("invalid quantity: {message}")]
    InvalidQuantity { message: String },
    #[error("SKU {sku} appears more than once in one order")]
    DuplicateSku { sku: u32 },
    #[error("SKU {sku} is out of stock for this order")]
    OutOfStock { sku: u32 },
    #[error(
        "purchase limit of SKU {sku} is {limit} units per buyer: buyer {buyer} holds {held}, asked for {requested} more"
    )]
    PurchaseLimit {
        sku: u32,
        buyer: u64,
        limit: u64,
        held: u64,
        requested: u64,
    },
    #[error("unknown reservation {reservation}")]
    UnknownReservation { reservation: u64 },
    #[error("reservation {reservation} is already {}", state.as_str())]
    AlreadyResolved {
        reservation: u64,
        state: ReservationState,
    },
    #[error("invalid inventory state: {message}")]
    InvalidState { message: String },
    #[error("{message}")]
    InvalidArgument { message: String },
}

impl InventoryError {
    pub(crate) fn quantity(message: impl Into<String>) -> Self {
        Self::InvalidQuantity {
            message: message.into(),
        }
    }

    pub(crate) fn argument(message: impl Into<String>) -> Self {
        Self::InvalidArgument {
            message: message.into(),
        }
    }

    pub(crate) fn state(message: impl Into<String>) -> Self {
        Self::InvalidState {
            message: message.into(),
        }
    }

    /// The batch status code of this error.
    pub fn status(&self) -> u8 {
        match self {
            Self::OutOfStock { .. } => status::OUT_OF_STOCK,
            Self::PurchaseLimit { .. } => status::LIMIT_EXCEEDED,
            Self::UnknownSku { .. } => status::UNKNOWN_SKU,
            Self::InvalidQuantity { .. } => status::INVALID_QUANTITY,
            Self::DuplicateSku { .. } => status::DUPLICATE_SKU,
            Self::UnknownRegion { .. } => status::UNKNOWN_REGION,
            Self::UnknownReservation { .. } => status::UNKNOWN_RESERVATION,
            Self::AlreadyResolved { state, .. } => match state {
                ReservationState::Confirmed => status::ALREADY_CONFIRMED,
                ReservationState::Released => status::ALREADY_RELEASED,
                _ => status::ALREADY_EXPIRED,
            },
            Self::UnknownWarehouse { .. }
            | Self::InvalidState { .. }
            | Self::InvalidArgument { .. } => status::INVALID_ARGUMENT,
        }
    }
}

/// One status code per order (reserve) or per reservation (confirm/release) in batch calls.
pub mod status {
    pub const OK: u8 = 0;
    pub const OUT_OF_STOCK: u8 = 1;
    pub const LIMIT_EXCEEDED: u8 = 2;
    pub const UNKNOWN_SKU: u8 = 3;
    pub const INVALID_QUANTITY: u8 = 4;
    pub const DUPLICATE_SKU: u8 = 5;
    pub const UNKNOWN_REGION: u8 = 6;
    pub const UNKNOWN_RESERVATION: u8 = 7;
    pub const ALREADY_CONFIRMED: u8 = 8;
    pub const ALREADY_RELEASED: u8 = 9;
    pub const ALREADY_EXPIRED: u8 = 10;
    /// Not produced by per-order checks; kept so every error maps to a code.
    pub const INVALID_ARGUMENT: u8 = 11;
}
