//! Order-flow imbalance (OFI) of Cont, Kukanov & Stoikov (2014), "The price impact of order book
//! events", J. Financial Econometrics 12(1). Per book update n (best bid P^B, size q^B; best ask
//! P^A, size q^A):
//!
//! e_n = 1{P^B_n ≥ P^B_{n−1}} q^B_n − 1{P^B_n ≤ P^B_{n−1}} q^B_{n−1}
//!     − 1{P^A_n ≤ P^A_{n−1}} q^A_n + 1{P^A_n ≥ P^A_{n−1}} q^A_{n−1}
//!
//! Positive e_n is buying pressure (bid queue grows or bid price rises, ask queue shrinks or ask
//! price rises). OFI over an interval is the sum of e_n. Prices in ticks, sizes in lots.

/// Best level of one side: (price ticks, size lots).
pub type Touch = (i64, i64);

/// The CKS (2014) per-update OFI contribution e_n from the previous and current touches.
#[inline]
pub fn ofi_event(prev_bid: Touch, prev_ask: Touch, bid: Touch, ask: Touch) -> i64 {
    let mut e = 0;
    if bid.0 >= prev_bid.0 {
        e += bid.1;
    }
    if bid.0 <= prev_bid.0 {
        e -= prev_bid.1;
    }
    if ask.0 <= prev_ask.0 {
        e -= ask.1;
    }
    if ask.0 >= prev_ask.0 {
        e += prev_ask.1;
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The six bid/ask price-move cases of CKS (2014), Section 2.
    #[test]
    fn six_cases() {
        let pa = (101, 10);
        let pb = (99, 20);
        // Bid unchanged price: e = q_b(n) - q_b(n-1) (bid side); ask unchanged: e += q_a(n-1) - q_a(n).
        assert_eq!(ofi_event(pb, pa, (99, 25), pa), 5);
        // Bid price up: the whole new bid queue counts as buying.
        assert_eq!(ofi_event(pb, pa, (100, 3), pa), 3);
        // Bid price down: the whole old bid queue counts as selling.
        assert_eq!(ofi_event(pb, pa, (98, 50), pa), -20);
        // Ask unchanged, size down (ask liquidity consumed) is buying pressure.
        assert_eq!(ofi_event(pb, pa, pb, (101, 4)), 6);
        // Ask price down (new better offer): the new ask queue counts as selling.
        assert_eq!(ofi_event(pb, pa, pb, (100, 7)), -7);
        // Ask price up (ask queue depleted): the old ask queue counts as buying.
        assert_eq!(ofi_event(pb, pa, pb, (102, 30)), 10);
    }
}
