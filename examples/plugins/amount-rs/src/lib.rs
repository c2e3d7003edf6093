//! amount > params.min, for events and profiles: the smallest Rust plugin
//! (docs/plugins.md shows it), and the one the benchmarks compare with
//! native Go, the Go SDK, C and WebAssembly text.
//!
//! Params: `{"min": 100}`.

use segd::{Init, Item, Key, Plugin};

/// The predicate and its parameters.
pub struct Amount {
    min: f64,
    amount: Key,
}

impl Plugin for Amount {
    const KINDS: u32 = segd::EVENTS | segd::PROFILES;

    fn init(init: &mut Init) -> Result<Self, String> {
        let min = init.params().get("min").as_f64().ok_or("params: min must be a number")?;
        let amount = init.prop("amount"); // resolved once per batch
        init.send_only_keys(); // so the host sends only "amount"
        Ok(Amount { min, amount })
    }

    fn event(&mut self, e: Item) -> bool {
        e.num_of(self.amount).map_or(false, |a| a > self.min)
    }

    #[cfg(feature = "batch")]
    fn events(&mut self, b: &segd::Batch, out: &mut segd::Bits) -> Result<(), String> {
        for (i, a) in b.col(self.amount).nums().enumerate() {
            if a.map_or(false, |a| a > self.min) {
                out.set(i);
            }
        }
        Ok(())
    }
}

segd::export!(Amount);

#[cfg(test)]
mod tests {
    use super::Amount;
    use segd::testing::{events, run, Value::*};

    #[test]
    fn matches_numbers_over_min() {
        let batch = events(
            0,
            &[
                ("a", "checkout", 0, &[("amount", Num(150.0))]),
                ("b", "checkout", 0, &[("amount", Num(100.0))]),
                ("c", "checkout", 0, &[("amount", Str("150"))]),
                ("d", "checkout", 0, &[]),
            ],
        );
        assert_eq!(run::<Amount>(r#"{"min": 100}"#, &batch).unwrap(), [true, false, false, false]);
        assert_eq!(run::<Amount>("{}", &batch).unwrap_err(), "params: min must be a number");
    }
}
