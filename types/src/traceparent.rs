//! The W3C Trace Context `traceparent` header (version `00`), parsed strictly and formatted:
//! `00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`, lowercase, neither id all zeros.
//!
//! Clients send one on every request (a new trace per logical call); a replica takes it from
//! the request (a malformed one is ignored, never an error: it starts a trace of its own), logs
//! the trace id on the request's span and passes it on to the leader with its own span id as
//! the parent. A tiny format: no OpenTelemetry dependency for it.

use std::fmt;

/// The header's name (lowercase, as HTTP/2 and the W3C spell it).
pub const HEADER: &str = "traceparent";

/// The only version this parser accepts.
const VERSION: &str = "00";
/// `00-` + 32 + `-` + 16 + `-` + 2.
const LEN: usize = 55;

/// "Sampled": the caller may have recorded the trace. Set on traces we start.
pub const SAMPLED: u8 = 0x01;

/// A 16-byte trace id, never zero in a parsed or generated header; shown as 32 lowercase hex.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TraceId(pub u128);

/// An 8-byte span (parent) id, never zero in a parsed or generated header; 16 lowercase hex.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpanId(pub u64);

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// One `traceparent` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceParent {
    pub trace_id: TraceId,
    /// The id of the caller's span: what the receiver's span names as its parent.
    pub parent_id: SpanId,
    pub flags: u8,
}

impl TraceParent {
    /// Parses a header value strictly; `None` for anything but a valid version-`00` value.
    pub fn parse(value: &str) -> Option<TraceParent> {
        let b = value.as_bytes();
        if b.len() != LEN || &b[..2] != VERSION.as_bytes() || b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
            return None;
        }
        let trace_id = hex(&b[3..35])?;
        let parent_id = hex(&b[36..52])? as u64;
        let flags = hex(&b[53..55])? as u8;
        if trace_id == 0 || parent_id == 0 {
            return None;
        }
        Some(TraceParent { trace_id: TraceId(trace_id), parent_id: SpanId(parent_id), flags })
    }

    /// A new trace: random trace and parent ids (never zero), sampled.
    pub fn random() -> TraceParent {
        TraceParent { trace_id: TraceId(nonzero(rand::random())), parent_id: SpanId::random(), flags: SAMPLED }
    }

    /// The same trace and flags, passed on by the span `span`: what a call made within a
    /// span sends.
    pub fn with_parent(self, span: SpanId) -> TraceParent {
        TraceParent { parent_id: span, ..self }
    }

    /// Whether the caller may have recorded the trace.
    pub fn sampled(&self) -> bool {
        self.flags & SAMPLED != 0
    }
}

impl SpanId {
    /// A random span id, never zero.
    pub fn random() -> SpanId {
        SpanId(nonzero(rand::random::<u64>() as u128) as u64)
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{VERSION}-{}-{}-{:02x}", self.trace_id, self.parent_id, self.flags)
    }
}

/// Lowercase hex digits only (no sign, no uppercase: `from_str_radix` would take `+` and `A`).
/// At most 32 digits, so the value fits.
fn hex(digits: &[u8]) -> Option<u128> {
    digits.iter().try_fold(0u128, |acc, &d| {
        let v = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            _ => return None,
        };
        Some(acc << 4 | u128::from(v))
    })
}

fn nonzero(x: u128) -> u128 {
    if x == 0 { 1 } else { x }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SPEC: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn the_spec_example_parses_and_formats_back() {
        let tp = TraceParent::parse(SPEC).unwrap();
        assert_eq!(tp.trace_id, TraceId(0x4bf92f3577b34da6a3ce929d0e0e4736));
        assert_eq!(tp.parent_id, SpanId(0x00f067aa0ba902b7));
        assert_eq!(tp.flags, 1);
        assert!(tp.sampled());
        assert_eq!(tp.to_string(), SPEC);
        assert_eq!(tp.trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(tp.parent_id.to_string(), "00f067aa0ba902b7");
    }

    #[test]
    fn anything_not_strictly_valid_is_refused() {
        let bad = [
            "",
            "00",
            // Zero ids.
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            // Other versions (ff is forbidden; future ones are not ours to guess).
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            // Uppercase, signs, non-hex.
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
            "00-4bf92f3577b34da6a3ce929d0e0e473x-00f067aa0ba902b7-01",
            // Wrong separators, lengths, trailing data, whitespace.
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            " 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 ",
            // Multi-byte characters that make up the right byte length.
            "00-4bf92f3577b34da6a3ce929d0e0e47é-00f067aa0ba902b7-01",
            "é0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
            "0é-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
        ];
        for value in bad {
            assert_eq!(TraceParent::parse(value), None, "{value:?}");
        }
    }

    #[test]
    fn generated_values_are_valid_and_distinct() {
        let (a, b) = (TraceParent::random(), TraceParent::random());
        assert_ne!(a.trace_id, b.trace_id);
        assert_eq!(TraceParent::parse(&a.to_string()), Some(a));
        let child = a.with_parent(SpanId::random());
        assert_eq!((child.trace_id, child.flags), (a.trace_id, a.flags));
        assert_ne!(child.parent_id, a.parent_id);
    }

    proptest! {
        #[test]
        fn parse_inverts_format(trace in 1u128.., parent in 1u64.., flags in any::<u8>()) {
            let tp = TraceParent { trace_id: TraceId(trace), parent_id: SpanId(parent), flags };
            let text = tp.to_string();
            prop_assert_eq!(text.len(), LEN);
            prop_assert_eq!(TraceParent::parse(&text), Some(tp));
        }

        #[test]
        fn random_strings_never_panic(s in ".{0,80}") {
            let _ = TraceParent::parse(&s);
        }

        #[test]
        fn near_misses_never_panic_and_reformat_exactly(s in "[0-9a-fA-F+ -]{2}-[0-9a-fA-F+é -]{30,33}-[0-9a-f-]{16}-[0-9a-fG]{2}") {
            if let Some(tp) = TraceParent::parse(&s) {
                prop_assert_eq!(tp.to_string(), s);
            }
        }
    }
}
