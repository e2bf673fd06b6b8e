//! Binance-style fixed-window rate limits: REQUEST_WEIGHT per IP per minute and ORDERS
//! per customer per 10 seconds and per UTC day. Time is passed in; nothing reads a clock.
//!
//! Windows are aligned to the Unix epoch (so the day window resets at 00:00 UTC, like
//! Binance's). Memory is bounded: when a new window starts, entries of older windows are
//! dropped, and each table holds at most `RateLimits::max_entries` keys. Past that cap a
//! key not already tracked is refused (as rate-limited until the window ends) rather
//! than let through untracked: failing closed keeps an attacker with many addresses from
//! switching the limiter off, at the cost of new clients waiting for the next window.
//! IPv6 addresses are counted per /64, the smallest block an end user typically holds.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::error::ApiError;

/// Response header with the weight used by this IP in the current minute.
pub const USED_WEIGHT_HEADER: &str = "X-MBX-USED-WEIGHT-1M";
/// Response header with the orders placed by this account in the current 10 s.
pub const ORDER_COUNT_10S_HEADER: &str = "X-MBX-ORDER-COUNT-10S";
/// Response header with the orders placed by this account today (UTC).
pub const ORDER_COUNT_1D_HEADER: &str = "X-MBX-ORDER-COUNT-1D";

const MINUTE_MS: u64 = 60_000;
const TEN_SECONDS_MS: u64 = 10_000;
const DAY_MS: u64 = 86_400_000;
const MINUTE: &str = "1 MINUTE";
const TEN_SECONDS: &str = "10 SECOND";
const DAY: &str = "1 DAY";

/// The limits, with Binance's spot defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimits {
    /// REQUEST_WEIGHT per IP per minute.
    pub weight_per_minute: u64,
    /// ORDERS per customer per 10 seconds.
    pub orders_per_10s: u64,
    /// ORDERS per customer per UTC day.
    pub orders_per_day: u64,
    /// Most keys each table tracks at once.
    pub max_entries: usize,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            weight_per_minute: 6_000,
            orders_per_10s: 100,
            orders_per_day: 200_000,
            max_entries: 1_000_000,
        }
    }
}

/// Which limit was hit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitKind {
    RequestWeight,
    Orders10s,
    Orders1d,
    /// The IP table is full of other addresses for this minute (see the module docs).
    WeightCapacity,
    /// The customer table is full of other customers for today (see the module docs).
    OrderCapacity,
}

/// A refusal: wait `retry_after_s` seconds (until the window resets).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("rate limited ({kind:?}, limit {limit} per {interval}); retry after {retry_after_s} s")]
pub struct Limited {
    pub kind: LimitKind,
    pub limit: u64,
    /// Binance's wording of the window, e.g. `"1 MINUTE"`, `"10 SECOND"`, `"1 DAY"`.
    pub interval: &'static str,
    pub retry_after_s: u64,
}

impl Limited {
    /// The Binance answer: -1003 (429 with `Retry-After`) for weight, -1015 (429, no
    /// `Retry-After`, as Binance) for orders.
    pub fn to_api_error(&self) -> ApiError {
        match self.kind {
            LimitKind::RequestWeight | LimitKind::WeightCapacity => {
                ApiError::too_much_weight(self.limit, self.interval, self.retry_after_s)
            }
            LimitKind::Orders10s | LimitKind::Orders1d | LimitKind::OrderCapacity => {
                ApiError::too_many_orders(self.limit, self.interval)
            }
        }
    }
}

impl From<Limited> for ApiError {
    fn from(limited: Limited) -> Self {
        limited.to_api_error()
    }
}

/// Weight used by the IP in the current minute, including this request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UsedWeight {
    pub used_1m: u64,
}

impl UsedWeight {
    /// `(header name, value)` for the response.
    pub fn header(&self) -> (&'static str, String) {
        (USED_WEIGHT_HEADER, self.used_1m.to_string())
    }
}

/// Orders placed by the customer in the current windows, including this one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrderCounts {
    pub count_10s: u64,
    pub count_1d: u64,
}

impl OrderCounts {
    /// `(header name, value)` pairs for the response.
    pub fn headers(&self) -> [(&'static str, String); 2] {
        [
            (ORDER_COUNT_10S_HEADER, self.count_10s.to_string()),
            (ORDER_COUNT_1D_HEADER, self.count_1d.to_string()),
        ]
    }
}

/// One fixed window's count.
#[derive(Clone, Copy, Debug, Default)]
struct Window {
    start_ms: u64,
    used: u64,
}

impl Window {
    /// The count in the window starting at `start_ms` (zero if this one is older).
    fn current(self, start_ms: u64) -> Window {
        if self.start_ms == start_ms {
            self
        } else {
            Window { start_ms, used: 0 }
        }
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct OrderWindows {
    ten_s: Window,
    day: Window,
}

/// A counter table with its sweep bookkeeping.
#[derive(Debug)]
struct Table<K, V> {
    entries: HashMap<K, V>,
    /// Start of the window in which stale entries were last dropped.
    swept_window_ms: u64,
}

impl<K, V> Default for Table<K, V> {
    fn default() -> Self {
        Self {
            entries: HashMap::new(),
            swept_window_ms: 0,
        }
    }
}

/// The key weights are counted under.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum IpKey {
    V4(u32),
    /// The first 64 bits of the address.
    V6Prefix(u64),
}

impl From<IpAddr> for IpKey {
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => IpKey::V4(u32::from(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpKey::V4(u32::from(v4)),
                None => IpKey::V6Prefix(prefix64(&v6)),
            },
        }
    }
}

fn prefix64(v6: &Ipv6Addr) -> u64 {
    // The top 64 bits; the shift keeps exactly them.
    u64::try_from(u128::from(*v6) >> 64).unwrap_or(u64::MAX)
}

/// The limiter. Share it (`Arc`) between request handlers; each call locks one table
/// briefly.
#[derive(Debug)]
pub struct RateLimiter {
    limits: RateLimits,
    weights: Mutex<Table<IpKey, Window>>,
    orders: Mutex<Table<u64, OrderWindows>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Counters stay consistent even if a holder panicked: every update is one store.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn window_start(now_ms: u64, len_ms: u64) -> u64 {
    now_ms - now_ms % len_ms
}

/// Whole seconds until the window that started at `start_ms` ends; at least 1.
fn seconds_until_reset(start_ms: u64, len_ms: u64, now_ms: u64) -> u64 {
    let end = start_ms.saturating_add(len_ms);
    end.saturating_sub(now_ms).div_ceil(1_000).max(1)
}

impl RateLimiter {
    pub fn new(limits: RateLimits) -> Self {
        Self {
            limits,
            weights: Mutex::new(Table::default()),
            orders: Mutex::new(Table::default()),
        }
    }

    pub fn limits(&self) -> &RateLimits {
        &self.limits
    }

    /// Adds `weight` to the IP's count for the current minute. A refused request is not
    /// counted, so the header never shows more than the limit.
    pub fn charge_weight(
        &self,
        ip: IpAddr,
        weight: u64,
        now_ms: u64,
    ) -> Result<UsedWeight, Limited> {
        let start = window_start(now_ms, MINUTE_MS);
        let limit = self.limits.weight_per_minute;
        let refuse = |kind| Limited {
            kind,
            limit,
            interval: MINUTE,
            retry_after_s: seconds_until_reset(start, MINUTE_MS, now_ms),
        };
        let key = IpKey::from(ip);
        let mut table = lock(&self.weights);
        if table.swept_window_ms != start {
            table.entries.retain(|_, w| w.start_ms >= start);
            table.swept_window_ms = start;
        }
        let window = match table.entries.get(&key) {
            Some(w) => w.current(start),
            None if table.entries.len() >= self.limits.max_entries => {
                return Err(refuse(LimitKind::WeightCapacity));
            }
            None => Window {
                start_ms: start,
                used: 0,
            },
        };
        let used = window.used.saturating_add(weight);
        if used > limit {
            return Err(refuse(LimitKind::RequestWeight));
        }
        table.entries.insert(
            key,
            Window {
                start_ms: start,
                used,
            },
        );
        Ok(UsedWeight { used_1m: used })
    }

    /// The IP's weight used in the current minute, without charging.
    pub fn used_weight(&self, ip: IpAddr, now_ms: u64) -> UsedWeight {
        let start = window_start(now_ms, MINUTE_MS);
        let table = lock(&self.weights);
        let used = table
            .entries
            .get(&IpKey::from(ip))
            .map_or(0, |w| w.current(start).used);
        UsedWeight { used_1m: used }
    }

    /// Counts one new order for the customer in both windows, or refuses it (counting
    /// nothing) if either window is full.
    pub fn charge_order(&self, customer_id: u64, now_ms: u64) -> Result<OrderCounts, Limited> {
        let ten_start = window_start(now_ms, TEN_SECONDS_MS);
        let day_start = window_start(now_ms, DAY_MS);
        let mut table = lock(&self.orders);
        if table.swept_window_ms != day_start {
            table.entries.retain(|_, w| w.day.start_ms >= day_start);
            table.swept_window_ms = day_start;
        }
        let windows = match table.entries.get(&customer_id) {
            Some(w) => OrderWindows {
                ten_s: w.ten_s.current(ten_start),
                day: w.day.current(day_start),
            },
            None if table.entries.len() >= self.limits.max_entries => {
                return Err(Limited {
                    kind: LimitKind::OrderCapacity,
                    limit: self.limits.orders_per_10s,
                    interval: TEN_SECONDS,
                    retry_after_s: seconds_until_reset(ten_start, TEN_SECONDS_MS, now_ms),
                });
            }
            None => OrderWindows {
                ten_s: Window {
                    start_ms: ten_start,
                    used: 0,
                },
                day: Window {
                    start_ms: day_start,
                    used: 0,
                },
            },
        };
        let count_1d = windows.day.used.saturating_add(1);
        if count_1d > self.limits.orders_per_day {
            return Err(Limited {
                kind: LimitKind::Orders1d,
                limit: self.limits.orders_per_day,
                interval: DAY,
                retry_after_s: seconds_until_reset(day_start, DAY_MS, now_ms),
            });
        }
        let count_10s = windows.ten_s.used.saturating_add(1);
        if count_10s > self.limits.orders_per_10s {
            return Err(Limited {
                kind: LimitKind::Orders10s,
                limit: self.limits.orders_per_10s,
                interval: TEN_SECONDS,
                retry_after_s: seconds_until_reset(ten_start, TEN_SECONDS_MS, now_ms),
            });
        }
        table.entries.insert(
            customer_id,
            OrderWindows {
                ten_s: Window {
                    start_ms: ten_start,
                    used: count_10s,
                },
                day: Window {
                    start_ms: day_start,
                    used: count_1d,
                },
            },
        );
        Ok(OrderCounts {
            count_10s,
            count_1d,
        })
    }

    /// Number of IP keys currently tracked (for metrics and tests).
    pub fn tracked_ips(&self) -> usize {
        lock(&self.weights).entries.len()
    }

    /// Number of customers currently tracked.
    pub fn tracked_customers(&self) -> usize {
        lock(&self.orders).entries.len()
    }
}

impl Default for RateLimiter {
    fn default() -> Self {
        Self::new(RateLimits::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    // 2017-07-12T02:41:59.559Z: 59.559 s into its minute, 9.559 s into its 10 s window.
    const T0: u64 = 1_499_827_319_559;
    const MINUTE_START: u64 = T0 - 59_559;

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))
    }

    fn small() -> RateLimiter {
        RateLimiter::new(RateLimits {
            weight_per_minute: 10,
            orders_per_10s: 3,
            orders_per_day: 5,
            max_entries: 4,
        })
    }

    #[test]
    fn weight_accumulates_and_refuses_past_the_limit() {
        let rl = small();
        assert_eq!(rl.charge_weight(ip(1), 4, MINUTE_START).unwrap().used_1m, 4);
        assert_eq!(
            rl.charge_weight(ip(1), 6, MINUTE_START + 1)
                .unwrap()
                .used_1m,
            10
        );
        let limited = rl
            .charge_weight(ip(1), 1, MINUTE_START + 20_000)
            .unwrap_err();
        assert_eq!(limited.kind, LimitKind::RequestWeight);
        assert_eq!(limited.retry_after_s, 40);
        // The refused request was not counted; another IP is unaffected.
        assert_eq!(rl.used_weight(ip(1), MINUTE_START + 20_000).used_1m, 10);
        assert_eq!(
            rl.charge_weight(ip(2), 10, MINUTE_START).unwrap().used_1m,
            10
        );
    }

    #[test]
    fn weight_resets_with_the_next_minute() {
        let rl = small();
        rl.charge_weight(ip(1), 10, MINUTE_START + 59_999).unwrap();
        assert!(rl.charge_weight(ip(1), 1, MINUTE_START + 59_999).is_err());
        assert_eq!(
            rl.charge_weight(ip(1), 1, MINUTE_START + 60_000)
                .unwrap()
                .used_1m,
            1
        );
    }

    #[test]
    fn retry_after_rounds_up_and_is_at_least_one_second() {
        let rl = small();
        rl.charge_weight(ip(1), 10, T0).unwrap();
        // 441 ms left in the minute → 1 s.
        assert_eq!(rl.charge_weight(ip(1), 1, T0).unwrap_err().retry_after_s, 1);
        assert_eq!(
            rl.charge_weight(ip(1), 1, MINUTE_START + 58_001)
                .unwrap_err()
                .retry_after_s,
            2
        );
    }

    #[test]
    fn a_single_request_heavier_than_the_limit_is_refused() {
        let rl = small();
        assert!(rl.charge_weight(ip(1), 11, T0).is_err());
        assert!(rl.charge_weight(ip(1), u64::MAX, T0).is_err());
    }

    #[test]
    fn ipv6_addresses_share_their_slash_64() {
        let rl = small();
        let a = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 2, 0, 0, 0, 1));
        let b = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 2, 0xffff, 1, 2, 3));
        let c = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 3, 0, 0, 0, 1));
        rl.charge_weight(a, 6, T0).unwrap();
        assert!(rl.charge_weight(b, 6, T0).is_err());
        rl.charge_weight(c, 6, T0).unwrap();
        // IPv4-mapped IPv6 counts as the IPv4 address.
        let mapped = IpAddr::V6(Ipv4Addr::new(192, 0, 2, 9).to_ipv6_mapped());
        rl.charge_weight(mapped, 6, T0).unwrap();
        assert!(rl.charge_weight(ip(9), 6, T0).is_err());
    }

    #[test]
    fn stale_windows_are_evicted() {
        let rl = small();
        for i in 0..4 {
            rl.charge_weight(ip(i), 1, T0).unwrap();
        }
        assert_eq!(rl.tracked_ips(), 4);
        rl.charge_weight(ip(100), 1, T0 + MINUTE_MS).unwrap();
        assert_eq!(rl.tracked_ips(), 1);
    }

    #[test]
    fn full_table_refuses_new_keys_until_the_window_ends() {
        let rl = small();
        for i in 0..4 {
            rl.charge_weight(ip(i), 1, MINUTE_START).unwrap();
        }
        let limited = rl
            .charge_weight(ip(200), 1, MINUTE_START + 30_000)
            .unwrap_err();
        assert_eq!(limited.kind, LimitKind::WeightCapacity);
        assert_eq!(limited.retry_after_s, 30);
        assert_eq!(limited.to_api_error().code(), -1003);
        // Known keys continue to work.
        rl.charge_weight(ip(0), 1, MINUTE_START + 30_000).unwrap();
        // Next minute the table is swept and the newcomer gets in.
        rl.charge_weight(ip(200), 1, MINUTE_START + MINUTE_MS)
            .unwrap();
    }

    #[test]
    fn orders_limited_per_10_seconds() {
        let rl = small();
        let start = T0 - T0 % TEN_SECONDS_MS;
        for n in 1..=3 {
            assert_eq!(
                rl.charge_order(7, start + 100).unwrap(),
                OrderCounts {
                    count_10s: n,
                    count_1d: n
                }
            );
        }
        let limited = rl.charge_order(7, start + 2_500).unwrap_err();
        assert_eq!(limited.kind, LimitKind::Orders10s);
        assert_eq!(limited.retry_after_s, 8);
        let e = limited.to_api_error();
        assert_eq!(e.code(), -1015);
        assert_eq!(
            e.msg(),
            "Too many new orders; current limit is 3 orders per 10 SECOND."
        );
        assert_eq!(e.retry_after_s(), None);
        // Other customers are independent; the next window opens again.
        rl.charge_order(8, start + 2_500).unwrap();
        assert_eq!(
            rl.charge_order(7, start + TEN_SECONDS_MS).unwrap(),
            OrderCounts {
                count_10s: 1,
                count_1d: 4
            }
        );
    }

    #[test]
    fn orders_limited_per_day_and_reset_at_midnight_utc() {
        let rl = small();
        let day = T0 - T0 % DAY_MS;
        for i in 0..5 {
            rl.charge_order(7, day + i * TEN_SECONDS_MS).unwrap();
        }
        let limited = rl.charge_order(7, day + DAY_MS - 1_500).unwrap_err();
        assert_eq!(limited.kind, LimitKind::Orders1d);
        assert_eq!(limited.retry_after_s, 2);
        assert_eq!(
            limited.to_api_error().msg(),
            "Too many new orders; current limit is 5 orders per 1 DAY."
        );
        assert_eq!(rl.charge_order(7, day + DAY_MS).unwrap().count_1d, 1);
    }

    #[test]
    fn order_table_is_bounded_and_swept_daily() {
        let rl = small();
        let day = T0 - T0 % DAY_MS;
        for c in 0..4 {
            rl.charge_order(c, day).unwrap();
        }
        let limited = rl.charge_order(99, day + 1).unwrap_err();
        assert_eq!(limited.kind, LimitKind::OrderCapacity);
        assert_eq!(limited.to_api_error().code(), -1015);
        rl.charge_order(99, day + DAY_MS).unwrap();
        assert_eq!(rl.tracked_customers(), 1);
    }

    #[test]
    fn weight_limit_maps_to_binance_answer() {
        let rl = RateLimiter::default();
        rl.charge_weight(ip(1), 6_000, MINUTE_START).unwrap();
        let e = ApiError::from(
            rl.charge_weight(ip(1), 1, MINUTE_START + 45_000)
                .unwrap_err(),
        );
        assert_eq!(e.code(), -1003);
        assert_eq!(e.status(), axum::http::StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(e.retry_after_s(), Some(15));
        assert!(
            e.msg()
                .contains("current limit is 6000 request weight per 1 MINUTE")
        );
    }

    #[test]
    fn headers_are_named_like_binance() {
        assert_eq!(
            UsedWeight { used_1m: 3 }.header(),
            ("X-MBX-USED-WEIGHT-1M", "3".into())
        );
        let [a, b] = OrderCounts {
            count_10s: 1,
            count_1d: 2,
        }
        .headers();
        assert_eq!(a, ("X-MBX-ORDER-COUNT-10S", "1".into()));
        assert_eq!(b, ("X-MBX-ORDER-COUNT-1D", "2".into()));
    }

    #[test]
    fn concurrent_charges_never_exceed_the_limit() {
        let rl = std::sync::Arc::new(RateLimiter::new(RateLimits {
            weight_per_minute: 1_000,
            ..RateLimits::default()
        }));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let rl = rl.clone();
                std::thread::spawn(move || {
                    (0..500)
                        .filter(|_| rl.charge_weight(ip(1), 1, T0).is_ok())
                        .count()
                })
            })
            .collect();
        let accepted: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(accepted, 1_000);
    }
}
