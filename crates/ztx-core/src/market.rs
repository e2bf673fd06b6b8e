//! A market's rules: its assets, Binance's PRICE_FILTER, LOT_SIZE and NOTIONAL filters,
//! and its maker and taker fees.

use thiserror::Error;

use crate::book::Sizing;
use crate::money::{Amount, Asset, Price};

/// Why a market definition is unusable. The operator's fault (configuration).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MarketSpecError {
    #[error("market {0}: symbol must be 2-20 characters A-Z0-9")]
    BadSymbol(String),
    #[error("market {0}: base and quote assets must differ")]
    SameAssets(String),
    #[error("market {0}: tick size and step size must be positive")]
    ZeroStep(String),
    #[error(
        "market {0}: tick size × step size must be a multiple of one whole base unit, so that \
         every price × quantity is a whole number of the quote's smallest unit"
    )]
    InexactNotional(String),
    #[error("market {0}: min/max bounds are inconsistent")]
    Bounds(String),
    #[error("market {0}: fees must be at most 10000 basis points")]
    Fee(String),
}

/// Why an order breaks a market's filters; Binance's filter names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum FilterError {
    #[error("Filter failure: PRICE_FILTER")]
    Price,
    #[error("Filter failure: LOT_SIZE")]
    LotSize,
    #[error("Filter failure: NOTIONAL")]
    Notional,
}

/// The definition of one spot market, checked on construction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MarketSpec {
    symbol: String,
    base: Asset,
    quote: Asset,
    tick_size: Price,
    min_price: Price,
    max_price: Price,
    step_size: Amount,
    min_qty: Amount,
    max_qty: Amount,
    min_notional: Amount,
    max_notional: Amount,
    maker_fee_bps: u32,
    taker_fee_bps: u32,
}

/// The plain values of a market definition, before checking.
#[derive(Clone, Debug)]
pub struct MarketParams {
    pub symbol: String,
    pub base: Asset,
    pub quote: Asset,
    pub tick_size: Price,
    pub min_price: Price,
    pub max_price: Price,
    pub step_size: Amount,
    pub min_qty: Amount,
    pub max_qty: Amount,
    pub min_notional: Amount,
    pub max_notional: Amount,
    pub maker_fee_bps: u32,
    pub taker_fee_bps: u32,
}

impl MarketSpec {
    pub fn new(p: MarketParams) -> Result<Self, MarketSpecError> {
        let s = p.symbol.clone();
        let ok_symbol = (2..=20).contains(&p.symbol.len())
            && p.symbol
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
        if !ok_symbol {
            return Err(MarketSpecError::BadSymbol(s));
        }
        if p.base.code() == p.quote.code() {
            return Err(MarketSpecError::SameAssets(s));
        }
        if p.tick_size.minor() == 0 || p.step_size.is_zero() {
            return Err(MarketSpecError::ZeroStep(s));
        }
        let product = p.tick_size.minor().checked_mul(p.step_size.minor());
        if product.is_none_or(|x| !x.is_multiple_of(p.base.unit().minor())) {
            return Err(MarketSpecError::InexactNotional(s));
        }
        let aligned = |v: u128, step: u128| v.is_multiple_of(step);
        if p.min_price > p.max_price
            || p.min_qty > p.max_qty
            || p.min_notional > p.max_notional
            || p.max_price.minor() == 0
            || p.max_qty.is_zero()
            || !aligned(p.min_price.minor(), p.tick_size.minor())
            || !aligned(p.max_price.minor(), p.tick_size.minor())
            || !aligned(p.min_qty.minor(), p.step_size.minor())
            || !aligned(p.max_qty.minor(), p.step_size.minor())
            || p.max_price.minor() > Amount::MAX.minor()
            || p.max_qty > Amount::MAX
        {
            return Err(MarketSpecError::Bounds(s));
        }
        if p.maker_fee_bps > 10_000 || p.taker_fee_bps > 10_000 {
            return Err(MarketSpecError::Fee(s));
        }
        Ok(Self {
            symbol: p.symbol,
            base: p.base,
            quote: p.quote,
            tick_size: p.tick_size,
            min_price: p.min_price,
            max_price: p.max_price,
            step_size: p.step_size,
            min_qty: p.min_qty,
            max_qty: p.max_qty,
            min_notional: p.min_notional,
            max_notional: p.max_notional,
            maker_fee_bps: p.maker_fee_bps,
            taker_fee_bps: p.taker_fee_bps,
        })
    }

    pub fn symbol(&self) -> &str {
        &self.symbol
    }
    pub fn base(&self) -> Asset {
        self.base
    }
    pub fn quote(&self) -> Asset {
        self.quote
    }
    pub fn tick_size(&self) -> Price {
        self.tick_size
    }
    pub fn min_price(&self) -> Price {
        self.min_price
    }
    pub fn max_price(&self) -> Price {
        self.max_price
    }
    pub fn step_size(&self) -> Amount {
        self.step_size
    }
    pub fn min_qty(&self) -> Amount {
        self.min_qty
    }
    pub fn max_qty(&self) -> Amount {
        self.max_qty
    }
    pub fn min_notional(&self) -> Amount {
        self.min_notional
    }
    pub fn max_notional(&self) -> Amount {
        self.max_notional
    }
    pub fn maker_fee_bps(&self) -> u32 {
        self.maker_fee_bps
    }
    pub fn taker_fee_bps(&self) -> u32 {
        self.taker_fee_bps
    }

    /// PRICE_FILTER: within bounds and on the tick.
    pub fn check_price(&self, price: Price) -> Result<(), FilterError> {
        if price < self.min_price
            || price > self.max_price
            || price.minor() == 0
            || !price.minor().is_multiple_of(self.tick_size.minor())
        {
            return Err(FilterError::Price);
        }
        Ok(())
    }

    /// LOT_SIZE: within bounds and on the step.
    pub fn check_qty(&self, qty: Amount) -> Result<(), FilterError> {
        if qty < self.min_qty
            || qty > self.max_qty
            || qty.is_zero()
            || !qty.minor().is_multiple_of(self.step_size.minor())
        {
            return Err(FilterError::LotSize);
        }
        Ok(())
    }

    /// NOTIONAL: price × quantity within bounds.
    pub fn check_notional(&self, notional: Amount) -> Result<(), FilterError> {
        if notional < self.min_notional || notional > self.max_notional {
            return Err(FilterError::Notional);
        }
        Ok(())
    }

    /// The quantities the book needs to compute notionals.
    pub fn sizing(&self) -> Sizing {
        Sizing {
            base_unit: self.base.unit().minor(),
            step: self.step_size.minor(),
        }
    }

    /// `price × qty` in the quote's smallest units. Exact for prices on the tick and
    /// quantities on the step (checked by [`MarketSpec::new`]); `None` on overflow.
    pub fn notional(&self, price: Price, qty: Amount) -> Option<Amount> {
        self.sizing().notional(price, qty)
    }
}

/// `ceil(amount × bps / 10000)`: fees round in the platform's favour, as exchanges do,
/// so that splitting an order cannot avoid them.
pub fn fee(amount: Amount, bps: u32) -> Option<Amount> {
    let product = amount.minor().checked_mul(u128::from(bps))?;
    Some(Amount::from_minor(product.div_ceil(10_000)))
}
