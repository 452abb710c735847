//! A fixed-bucket histogram of canary lag, in seconds, as Prometheus histograms count:
//! cumulative buckets, a sum and a count. Quantiles are read from the buckets (the
//! upper bound of the bucket the rank falls in), as `histogram_quantile` would.

/// Bucket upper bounds, seconds: from 0.1 ms (the loopback floor) to 10 s.
pub const BUCKETS: [f64; 15] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    10.0,
];

#[derive(Debug, Clone, Default)]
pub struct Histogram {
    /// Observations per bucket (not cumulative); the last slot is above every bound.
    counts: [u64; BUCKETS.len() + 1],
    sum: f64,
    count: u64,
}

impl Histogram {
    pub fn observe(&mut self, value: f64) {
        let i = BUCKETS
            .iter()
            .position(|b| value <= *b)
            .unwrap_or(BUCKETS.len());
        self.counts[i] += 1;
        self.sum += value;
        self.count += 1;
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn sum(&self) -> f64 {
        self.sum
    }

    /// (upper bound, cumulative count) per bucket, `+Inf` last.
    pub fn cumulative(&self) -> Vec<(f64, u64)> {
        let mut total = 0;
        let mut out = Vec::with_capacity(self.counts.len());
        for (i, n) in self.counts.iter().enumerate() {
            total += n;
            out.push((BUCKETS.get(i).copied().unwrap_or(f64::INFINITY), total));
        }
        out
    }

    /// The upper bound of the bucket holding quantile `q`; `None` without observations.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = (q * self.count as f64).ceil().max(1.0) as u64;
        self.cumulative()
            .into_iter()
            .find(|(_, c)| *c >= rank)
            .map(|(b, _)| b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_their_buckets() {
        let mut h = Histogram::default();
        for v in [0.00005, 0.0003, 0.0003, 0.02, 30.0] {
            h.observe(v);
        }
        assert_eq!(h.count(), 5);
        assert!((h.sum() - 30.02065).abs() < 1e-9);
        let c = h.cumulative();
        assert_eq!(c[0], (0.0001, 1));
        assert_eq!(c[2], (0.0005, 3));
        assert_eq!(c[7], (0.025, 4));
        assert_eq!(*c.last().unwrap(), (f64::INFINITY, 5));
        assert_eq!(h.quantile(0.5), Some(0.0005));
        assert_eq!(h.quantile(0.99), Some(f64::INFINITY));
        assert_eq!(Histogram::default().quantile(0.5), None);
    }
}
