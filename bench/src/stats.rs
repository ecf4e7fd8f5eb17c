//! Percentiles and summaries of samples (milliseconds unless said otherwise).

use serde_json::{json, Value};

/// Nearest-rank percentile of an ascending slice: the smallest sample such
/// that at least `p` percent of the samples are less than or equal to it.
pub fn nearest_rank(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let n = sorted.len();
    let rank = ((p / 100.0) * n as f64).ceil() as usize;
    let i = rank.clamp(1, n) - 1;
    Some(sorted[i])
}

/// Rounds to three decimals, which is plenty for milliseconds.
pub fn r3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// A set of samples with its order statistics computed once.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    sorted: Vec<f64>,
}

impl Summary {
    pub fn new(mut samples: Vec<f64>) -> Summary {
        samples.retain(|x| x.is_finite());
        samples.sort_by(|a, b| a.total_cmp(b));
        Summary { sorted: samples }
    }

    pub fn n(&self) -> usize {
        self.sorted.len()
    }

    pub fn pct(&self, p: f64) -> Option<f64> {
        nearest_rank(&self.sorted, p)
    }

    pub fn mean(&self) -> Option<f64> {
        if self.sorted.is_empty() {
            None
        } else {
            Some(self.sorted.iter().sum::<f64>() / self.sorted.len() as f64)
        }
    }

    pub fn sum(&self) -> f64 {
        self.sorted.iter().sum()
    }

    pub fn min(&self) -> Option<f64> {
        self.sorted.first().copied()
    }

    pub fn max(&self) -> Option<f64> {
        self.sorted.last().copied()
    }

    pub fn to_json(&self) -> Value {
        let f = |x: Option<f64>| x.map(r3);
        json!({
            "n": self.n(),
            "min": f(self.min()),
            "mean": f(self.mean()),
            "p50": f(self.pct(50.0)),
            "p90": f(self.pct(90.0)),
            "p95": f(self.pct(95.0)),
            "p99": f(self.pct(99.0)),
            "max": f(self.max()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_matches_definition() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(nearest_rank(&v, 50.0), Some(50.0));
        assert_eq!(nearest_rank(&v, 99.0), Some(99.0));
        assert_eq!(nearest_rank(&v, 100.0), Some(100.0));
        assert_eq!(nearest_rank(&v, 0.0), Some(1.0));
        assert_eq!(nearest_rank(&[7.0], 95.0), Some(7.0));
        assert_eq!(nearest_rank(&[], 50.0), None);
        let s = Summary::new(vec![3.0, 1.0, 2.0, f64::NAN]);
        assert_eq!(s.n(), 3);
        assert_eq!(s.pct(50.0), Some(2.0));
        assert_eq!(s.mean(), Some(2.0));
    }
}
