//! Orders and trades: the records the matching engine creates and the store keeps.

use crate::ledger::{CustomerId, TransferId};
use crate::money::{Amount, AssetCode, Price};

/// An order id, unique across all markets and increasing in placement order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OrderId(pub u64);

/// A trade id, unique across all markets and increasing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TradeId(pub u64);

/// Declares a fieldless enum with its Binance wire names, both ways.
macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),+ }

        impl $name {
            /// The Binance name, e.g. `"BUY"`.
            pub fn as_str(&self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
            /// Parses the Binance name; `None` for anything else.
            pub fn parse(text: &str) -> Option<Self> {
                match text { $($text => Some($name::$variant),)+ _ => None }
            }
        }
    };
}

wire_enum!(Side { Buy => "BUY", Sell => "SELL" });

wire_enum!(
    /// Order types. `LimitMaker` is refused if it would take liquidity.
    OrderType { Limit => "LIMIT", Market => "MARKET", LimitMaker => "LIMIT_MAKER" }
);

wire_enum!(
    /// How long an order stays working.
    TimeInForce { Gtc => "GTC", Ioc => "IOC", Fok => "FOK" }
);

wire_enum!(
    /// Binance's self-trade prevention: what happens when a taker would meet a maker of
    /// the same customer.
    StpMode {
        None => "NONE",
        ExpireTaker => "EXPIRE_TAKER",
        ExpireMaker => "EXPIRE_MAKER",
        ExpireBoth => "EXPIRE_BOTH",
    }
);

wire_enum!(
    /// Binance's order states.
    OrderStatus {
        New => "NEW",
        PartiallyFilled => "PARTIALLY_FILLED",
        Filled => "FILLED",
        Canceled => "CANCELED",
        Rejected => "REJECTED",
        Expired => "EXPIRED",
        ExpiredInMatch => "EXPIRED_IN_MATCH",
    }
);

impl Side {
    pub fn opposite(self) -> Side {
        match self {
            Side::Buy => Side::Sell,
            Side::Sell => Side::Buy,
        }
    }
}

impl OrderStatus {
    /// Whether the order can still trade.
    pub fn is_open(self) -> bool {
        matches!(self, OrderStatus::New | OrderStatus::PartiallyFilled)
    }
}

/// An order and its progress. Quantities are in the base asset's smallest units,
/// `cumulative_quote` in the quote asset's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Order {
    pub id: OrderId,
    pub symbol: String,
    pub customer: CustomerId,
    pub client_order_id: String,
    pub side: Side,
    pub order_type: OrderType,
    pub time_in_force: TimeInForce,
    pub stp_mode: StpMode,
    /// The limit price; `None` for market orders.
    pub price: Option<Price>,
    /// The base quantity asked for; zero for a market buy by quote amount.
    pub orig_qty: Amount,
    /// The quote amount asked for by a `quoteOrderQty` market order, else zero.
    pub orig_quote_qty: Amount,
    pub executed_qty: Amount,
    pub cumulative_quote: Amount,
    pub status: OrderStatus,
    /// The pending transfer that holds what this order may still spend.
    pub hold_id: TransferId,
    /// Time priority within a price level: lower trades first.
    pub priority: u64,
    pub created_ms: u64,
    pub updated_ms: u64,
}

/// One execution between a resting maker order and an incoming taker order. The buyer's
/// fee is in the base asset, the seller's in the quote asset (each pays in what it gets).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trade {
    pub id: TradeId,
    pub symbol: String,
    pub price: Price,
    pub qty: Amount,
    pub quote_qty: Amount,
    pub buy_order: OrderId,
    pub sell_order: OrderId,
    pub buyer: CustomerId,
    pub seller: CustomerId,
    /// Whether the buyer was the resting (maker) side.
    pub buyer_is_maker: bool,
    pub buyer_fee: Amount,
    pub buyer_fee_asset: AssetCode,
    pub seller_fee: Amount,
    pub seller_fee_asset: AssetCode,
    pub time_ms: u64,
}
