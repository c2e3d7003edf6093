//! A tokenizer with a word list, in Rust: matches when a text property
//! (a search term, a page title, a user agent) contains any of a list of
//! words as a whole token. An expr condition can only split on one
//! separator and scan the list per token; this splits at every byte that is
//! not a letter or a digit, folds ASCII case, and looks each token up in a
//! hash set built once per instance, so lists of thousands of words cost
//! the same per event as lists of three.
//!
//! Params:
//!
//! ```text
//! {"prop": "term", "words": ["laptop", "iphone", "usb"]}
//! ```
//!
//! Tokens are maximal runs of ASCII letters and digits and of non-ASCII
//! bytes (so "plüsch" is one token); ASCII letters are lowercased before the
//! lookup, and so are the words. "usb-c cable" has the tokens usb, c and
//! cable.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};

use segd::{Init, Item, Key, Plugin};

/// FNV-1a: tokens are short, and std's SipHash is several times slower on
/// them (no flooding risk: the words come from the rule's author).
#[derive(Default)]
struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 { 0xcbf2_9ce4_8422_2325 } else { self.0 };
        for b in bytes {
            h = (h ^ *b as u64).wrapping_mul(0x100_0000_01b3);
        }
        self.0 = h;
    }
}

/// The word-list matcher.
pub struct Tokens {
    prop: Key,
    words: HashSet<Vec<u8>, BuildHasherDefault<Fnv>>,
    longest: usize,
    token: Vec<u8>,
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b >= 0x80
}

impl Tokens {
    /// Whether `text` has a token in the word list.
    fn any(&mut self, text: &[u8]) -> bool {
        let mut i = 0;
        while i < text.len() {
            if !is_token_byte(text[i]) {
                i += 1;
                continue;
            }
            let start = i;
            while i < text.len() && is_token_byte(text[i]) {
                i += 1;
            }
            if i - start > self.longest {
                continue; // longer than every word: cannot match
            }
            self.token.clear();
            self.token.extend(text[start..i].iter().map(|b| b.to_ascii_lowercase()));
            if self.words.contains(&self.token[..]) {
                return true;
            }
        }
        false
    }
}

impl Plugin for Tokens {
    const KINDS: u32 = segd::EVENTS | segd::PROFILES;

    fn init(init: &mut Init) -> Result<Self, String> {
        let p = init.params().clone();
        let prop = p.get("prop").as_str().ok_or("params: prop must name a string property")?;
        let list = p.get("words").as_array().ok_or("params: words must be a list of words")?;
        let mut words = HashSet::default();
        let mut longest = 0;
        for (i, w) in list.iter().enumerate() {
            let w = w.as_str().ok_or_else(|| format!("params: words[{}] is a {}, not a string", i, w.kind()))?;
            if w.is_empty() || !w.bytes().all(is_token_byte) {
                return Err(format!("params: words[{}] {:?} is not one token (letters and digits only)", i, w));
            }
            longest = longest.max(w.len());
            words.insert(w.to_ascii_lowercase().into_bytes());
        }
        if words.is_empty() {
            return Err("params: words: need at least one word".into());
        }
        let prop = init.prop(prop);
        init.send_only_keys();
        Ok(Tokens { prop, words, longest, token: Vec::new() })
    }

    // A per-event handler through a resolved key: in a Rust guest a call
    // per event costs next to nothing.
    fn event(&mut self, e: Item) -> bool {
        match e.bytes_of(self.prop) {
            Some(text) => self.any(text),
            None => false,
        }
    }
}

segd::export!(Tokens);

#[cfg(test)]
mod tests {
    use super::Tokens;
    use segd::testing::{events, run, Value::*};

    #[test]
    fn splits_folds_and_looks_up() {
        let terms = ["Cheap LAPTOP deals", "usb-c cable", "laptops", "lap top", "", "IPHONE", "ñandú plüsch", "iphone15"];
        let props: Vec<[(&str, segd::testing::Value); 1]> = terms.iter().map(|t| [("term", Str(t))]).collect();
        let mut evs: Vec<segd::testing::Event> = props.iter().map(|p| ("u", "search", 0, &p[..])).collect();
        let number = [("term", Num(1.0))];
        evs.push(("u", "search", 0, &number));
        let got = run::<Tokens>(r#"{"prop": "term", "words": ["laptop", "USB", "iphone", "plüsch"]}"#, &events(0, &evs)).unwrap();
        assert_eq!(got, [true, true, false, false, false, true, true, false, false]);
    }

    #[test]
    fn rejects_bad_params() {
        let b = events(0, &[]);
        for (params, want) in [
            ("{}", "params: prop must name a string property"),
            (r#"{"prop": "t"}"#, "params: words must be a list of words"),
            (r#"{"prop": "t", "words": []}"#, "params: words: need at least one word"),
            (r#"{"prop": "t", "words": ["a b"]}"#, "params: words[0] \"a b\" is not one token (letters and digits only)"),
            (r#"{"prop": "t", "words": [1]}"#, "params: words[0] is a number, not a string"),
        ] {
            assert_eq!(run::<Tokens>(params, &b).unwrap_err(), want);
        }
    }
}
