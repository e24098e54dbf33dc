//! The one duration grammar of vpsnap: every duration in the CRDs, the simulator's flags and
//! fault JSON, and the CLI. Hours, minutes, seconds and milliseconds, each at most once and in
//! that order, whole numbers, no spaces: `90s`, `5m`, `1h30m`, `250ms`, `0s`.
//!
//! [`PATTERN`] is both the CRDs' OpenAPI `pattern` (so the apiserver refuses anything else at
//! admission, naming the field) and the first check of [`parse`]; jiff's friendly-format parser
//! then does the arithmetic. jiff accepts more (`1.5h`, `2 hours`, days); the pattern keeps one
//! spelling per duration, which is what a GitOps diff wants.
use std::sync::LazyLock;
use std::time::Duration;

/// Up to 9 digits per unit: far beyond any sensible value, far below any overflow.
pub const PATTERN: &str = r"^([0-9]{1,9}h)?([0-9]{1,9}m)?([0-9]{1,9}s)?([0-9]{1,9}ms)?$";

/// What to tell someone whose duration was refused.
pub const EXPECTED: &str = "expected whole hours, minutes, seconds, milliseconds in that order, e.g. 90s, 5m, 1h30m or 250ms";

static GRAMMAR: LazyLock<regex::Regex> =
    LazyLock::new(|| regex::Regex::new(PATTERN).expect("PATTERN is a valid regex"));

/// Parses a duration of the grammar above.
pub fn parse(text: &str) -> Result<Duration, String> {
    if text.is_empty() || !GRAMMAR.is_match(text) {
        return Err(format!("{text:?} is not a duration: {EXPECTED}"));
    }
    jiff::fmt::friendly::SpanParser::new()
        .parse_unsigned_duration(text)
        .map_err(|e| format!("{text:?} is not a duration: {e}"))
}

/// The canonical spelling of `d` in this grammar (millisecond precision), e.g. `1h30m`.
pub fn format(d: Duration) -> String {
    let mut ms = d.as_millis();
    let mut out = String::new();
    for (unit, size) in [("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)] {
        if ms >= size {
            out.push_str(&format!("{}{unit}", ms / size));
            ms %= size;
        }
    }
    if out.is_empty() {
        out.push_str("0s");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_grammar() {
        let ok = [
            ("1h30m", 5_400_000),
            ("90s", 90_000),
            ("250ms", 250),
            ("0s", 0),
            ("1h1ms", 3_600_001),
            ("2h3m4s5ms", 7_384_005),
            ("000000001h", 3_600_000),
        ];
        for (text, ms) in ok {
            assert_eq!(parse(text), Ok(Duration::from_millis(ms)), "{text}");
        }
        for bad in [
            "",
            "0",
            "5",
            "m",
            "5d",
            "1.5s",
            "1m1h",
            "1h1h",
            "1 h",
            " 5s",
            "5s ",
            "-5s",
            "PT5S",
            "5 minutes",
            "1ms1s",
            "1234567890s",
        ] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains("e.g. 90s"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn format_is_canonical() {
        assert_eq!(format(Duration::ZERO), "0s");
        assert_eq!(format(Duration::from_millis(5_400_250)), "1h30m250ms");
        assert_eq!(format(Duration::from_secs(90)), "1m30s");
    }

    proptest! {
        /// Every string the pattern admits parses to the sum of its parts: jiff and the
        /// pattern agree, so nothing the apiserver admits is refused by the operator.
        #[test]
        fn what_the_pattern_admits_parses_exactly(
            h in proptest::option::of(0u64..1_000_000_000),
            m in proptest::option::of(0u64..1_000_000_000),
            s in proptest::option::of(0u64..1_000_000_000),
            ms in proptest::option::of(0u64..1_000_000_000),
        ) {
            prop_assume!(h.or(m).or(s).or(ms).is_some());
            let text = [(h, "h"), (m, "m"), (s, "s"), (ms, "ms")]
                .iter()
                .filter_map(|(v, u)| v.map(|v| format!("{v}{u}")))
                .collect::<String>();
            let want = Duration::from_secs(h.unwrap_or(0) * 3600 + m.unwrap_or(0) * 60 + s.unwrap_or(0))
                + Duration::from_millis(ms.unwrap_or(0));
            prop_assert_eq!(parse(&text), Ok(want));
        }

        /// And what it refuses, the parser refuses too.
        #[test]
        fn nothing_else_parses(text in "[0-9hms .dPT-]{0,12}") {
            prop_assert_eq!(parse(&text).is_ok(), GRAMMAR.is_match(&text) && !text.is_empty());
        }

        #[test]
        fn format_round_trips(ms in 0u64..10_000_000_000_000) {
            let d = Duration::from_millis(ms);
            prop_assert_eq!(parse(&format(d)), Ok(d));
        }
    }
}
