//! The scoring example (examples/plugins/scoring) ported to Rust: a
//! weighted, optionally logistic, scoring model over several properties,
//! matching when the score reaches a threshold.
//!
//! Params, as for the Go plugin:
//!
//! ```text
//! {"weights": {"amount": 0.01, "items": 0.3, "premium": 1.5},
//!  "bias": -2, "logistic": true, "threshold": 0.6,
//!  "caps": {"amount": 500}}        // optional: clamp a feature before weighting
//! ```
//!
//! A number counts as its value, `true` as 1, anything else as 0.
//! score = bias + sum(weight * feature); with logistic, 1/(1+exp(-score)).
//! Written with the batch API: one pass per feature over its column.

use segd::{Batch, Bits, Init, Json, Key, Plugin};

struct Feature {
    key: Key,
    name: String,
    weight: f64,
    cap: f64,
}

/// The scoring model.
pub struct Scoring {
    features: Vec<Feature>,
    bias: f64,
    /// The threshold on the raw score: with logistic, the sigmoid is
    /// increasing, so sigmoid(s) >= t exactly when s >= logit(t), and no
    /// item pays for an exp.
    cut: f64,
    scores: Vec<f64>,
}

fn number(v: &Json, what: &str) -> Result<f64, String> {
    v.as_f64().ok_or_else(|| format!("params: {} must be a number, not {}", what, v.kind()))
}

impl Scoring {
    fn judge(&mut self, b: &Batch, out: &mut Bits) -> Result<(), String> {
        self.scores.clear();
        self.scores.resize(b.len(), self.bias);
        for f in &self.features {
            let col = b.col(f.key);
            for ((s, tag), v) in self.scores.iter_mut().zip(col.tags()).zip(col.nums()) {
                match v {
                    Some(x) => *s += f.weight * x.min(f.cap),
                    None if *tag == 3 => *s += f.weight, // true
                    None => {}
                }
            }
        }
        for (i, s) in self.scores.iter().enumerate() {
            if *s >= self.cut {
                out.set(i);
            }
        }
        Ok(())
    }
}

impl Plugin for Scoring {
    const KINDS: u32 = segd::EVENTS | segd::PROFILES;

    fn init(init: &mut Init) -> Result<Self, String> {
        let p = init.params().clone();
        let weights = p.get("weights").as_object().unwrap_or(&[]);
        if weights.is_empty() {
            return Err("params: weights: need at least one weighted property".into());
        }
        let threshold = match p.get("threshold") {
            Json::Null => return Err("params: threshold is required".into()),
            t => number(t, "threshold")?,
        };
        let caps = match p.get("caps") {
            Json::Null => &[][..],
            c => c.as_object().ok_or("params: caps must be an object")?,
        };
        for (k, _) in caps {
            if p.get("weights").get(k).is_null() {
                return Err(format!("params: caps.{}: no weight for that property", k));
            }
        }
        let mut features = Vec::new();
        for (k, w) in weights {
            let cap = match p.get("caps").get(k) {
                Json::Null => f64::INFINITY,
                c => number(c, &format!("caps.{}", k))?,
            };
            features.push(Feature { key: init.prop(k), name: k.clone(), weight: number(w, &format!("weights.{}", k))?, cap });
        }
        // A fixed order makes the floating-point sum deterministic (and the
        // same as the Go plugin's).
        features.sort_by(|a, b| a.name.cmp(&b.name));
        init.send_only_keys(); // the host sends only the weighted properties
        let mut cut = threshold;
        if p.get("logistic").as_bool().unwrap_or(false) {
            cut = if threshold <= 0.0 {
                f64::NEG_INFINITY // every score
            } else if threshold >= 1.0 {
                f64::NAN // no score: every comparison with NaN is false
            } else {
                (threshold / (1.0 - threshold)).ln()
            };
        }
        let bias = match p.get("bias") {
            Json::Null => 0.0,
            b => number(b, "bias")?,
        };
        Ok(Scoring { features, bias, cut, scores: Vec::new() })
    }

    fn events(&mut self, b: &Batch, out: &mut Bits) -> Result<(), String> {
        self.judge(b, out)
    }

    fn profiles(&mut self, b: &Batch, out: &mut Bits) -> Result<(), String> {
        self.judge(b, out)
    }
}

segd::export!(Scoring);

#[cfg(test)]
mod tests {
    use super::Scoring;
    use segd::testing::{events, run, Value::*};

    const MODEL: &str = r#"{"weights": {"amount": 0.01, "items": 0.3, "premium": 1.5},
        "caps": {"amount": 100}, "bias": -2, "logistic": true, "threshold": 0.6}"#;

    #[test]
    fn scores_like_the_go_plugin() {
        let batch = events(
            0,
            &[
                ("a", "checkout", 0, &[("amount", Num(1000.0)), ("items", Num(5.0)), ("premium", Bool(true))]),
                ("b", "checkout", 0, &[("amount", Num(1000.0))]), // capped: -2+1 < logit(0.6)
                ("c", "checkout", 0, &[("premium", Bool(true)), ("items", Num(1.0))]), // -0.2
                ("d", "checkout", 0, &[("premium", Bool(true)), ("items", Num(3.0))]), // 0.4 < 0.405
                ("e", "checkout", 0, &[("premium", Bool(true)), ("items", Num(3.0)), ("amount", Str("9"))]),
                ("f", "checkout", 0, &[("premium", Bool(true)), ("items", Num(3.0)), ("amount", Num(1.0))]),
            ],
        );
        assert_eq!(run::<Scoring>(MODEL, &batch).unwrap(), [true, false, false, false, false, true]);
    }

    #[test]
    fn rejects_bad_models() {
        let b = events(0, &[]);
        for (params, want) in [
            ("{}", "params: weights: need at least one weighted property"),
            (r#"{"weights": {"a": 1}}"#, "params: threshold is required"),
            (r#"{"weights": {"a": 1}, "threshold": 1, "caps": {"b": 2}}"#, "params: caps.b: no weight for that property"),
            (r#"{"weights": {"a": "x"}, "threshold": 1}"#, "params: weights.a must be a number, not string"),
        ] {
            assert_eq!(run::<Scoring>(params, &b).unwrap_err(), want);
        }
    }
}
