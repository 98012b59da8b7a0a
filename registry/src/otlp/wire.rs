//! The OTLP trace request (`opentelemetry/proto/collector/trace/v1`, protobuf), encoded by hand.
//!
//! Why not `opentelemetry-otlp`/`opentelemetry-proto`: their messages are `prost` derives, and
//! building the proc-macro `prost-derive` gives the host's `either` the `use_std` feature, which
//! changes the build of `bindgen`, hence of `librocksdb-sys`: the feature build would compile
//! RocksDB's C++ a second time (~15-20 minutes here). The part of OTLP we send is small and
//! stable (field numbers below are the `.proto`'s); `tests/otlp.rs` decodes it independently.

use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{SpanKind, Status};
use opentelemetry::{Array, KeyValue, Value};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SpanData;

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const FIXED32: u8 = 5;

/// A protobuf message being written.
#[derive(Default)]
struct Message(Vec<u8>);

impl Message {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push(v as u8 | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    fn key(&mut self, field: u32, wire: u8) {
        self.varint(u64::from(field) << 3 | u64::from(wire));
    }

    fn uint(&mut self, field: u32, v: u64) {
        if v != 0 {
            self.key(field, VARINT);
            self.varint(v);
        }
    }

    fn fixed64(&mut self, field: u32, v: u64) {
        self.key(field, FIXED64);
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    fn fixed32(&mut self, field: u32, v: u32) {
        self.key(field, FIXED32);
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    fn bytes(&mut self, field: u32, b: &[u8]) {
        self.key(field, LEN);
        self.varint(b.len() as u64);
        self.0.extend_from_slice(b);
    }

    fn string(&mut self, field: u32, s: &str) {
        if !s.is_empty() {
            self.bytes(field, s.as_bytes());
        }
    }

    fn message(&mut self, field: u32, m: Message) {
        self.bytes(field, &m.0);
    }
}

/// `AnyValue`: string 1, bool 2, int 3, double 4, array 5 (`ArrayValue { values 1 }`).
fn any_value(v: &Value) -> Message {
    let mut m = Message::default();
    match v {
        Value::Bool(b) => {
            m.key(2, VARINT);
            m.varint(u64::from(*b));
        }
        Value::I64(i) => {
            m.key(3, VARINT);
            m.varint(*i as u64);
        }
        Value::F64(f) => m.fixed64(4, f.to_bits()),
        Value::String(s) => m.bytes(1, s.as_str().as_bytes()),
        Value::Array(a) => {
            let values: Vec<Value> = match a {
                Array::Bool(v) => v.iter().copied().map(Value::Bool).collect(),
                Array::I64(v) => v.iter().copied().map(Value::I64).collect(),
                Array::F64(v) => v.iter().copied().map(Value::F64).collect(),
                Array::String(v) => v.iter().cloned().map(Value::String).collect(),
                other => vec![Value::from(other.to_string())],
            };
            let mut array = Message::default();
            for v in &values {
                array.message(1, any_value(v));
            }
            m.message(5, array);
        }
        other => m.bytes(1, other.as_str().as_bytes()),
    }
    m
}

/// `KeyValue`: key 1, value 2.
fn key_value(key: &str, value: &Value) -> Message {
    let mut m = Message::default();
    m.string(1, key);
    m.message(2, any_value(value));
    m
}

fn attributes(m: &mut Message, field: u32, attributes: &[KeyValue]) {
    for kv in attributes {
        m.message(field, key_value(kv.key.as_str(), &kv.value));
    }
}

fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// `Resource`: attributes 1.
pub fn resource(resource: &Resource) -> Vec<u8> {
    let mut m = Message::default();
    for (key, value) in resource.iter() {
        m.message(1, key_value(key.as_str(), value));
    }
    m.0
}

/// `Span`: trace_id 1, span_id 2, trace_state 3, parent_span_id 4, name 5, kind 6, start 7,
/// end 8, attributes 9, dropped attributes 10, events 11, dropped events 12, status 15,
/// flags 16.
fn span(s: &SpanData) -> Message {
    let mut m = Message::default();
    m.bytes(1, &s.span_context.trace_id().to_bytes());
    m.bytes(2, &s.span_context.span_id().to_bytes());
    m.string(3, &s.span_context.trace_state().header());
    if s.parent_span_id != opentelemetry::trace::SpanId::INVALID {
        m.bytes(4, &s.parent_span_id.to_bytes());
    }
    m.string(5, &s.name);
    let kind = match s.span_kind {
        SpanKind::Internal => 1,
        SpanKind::Server => 2,
        SpanKind::Client => 3,
        SpanKind::Producer => 4,
        SpanKind::Consumer => 5,
    };
    m.uint(6, kind);
    m.fixed64(7, unix_nanos(s.start_time));
    m.fixed64(8, unix_nanos(s.end_time));
    attributes(&mut m, 9, &s.attributes);
    m.uint(10, u64::from(s.dropped_attributes_count));
    for event in s.events.iter() {
        // `Span.Event`: time 1, name 2, attributes 3, dropped attributes 4.
        let mut e = Message::default();
        e.fixed64(1, unix_nanos(event.timestamp));
        e.string(2, &event.name);
        attributes(&mut e, 3, &event.attributes);
        e.uint(4, u64::from(event.dropped_attributes_count));
        m.message(11, e);
    }
    m.uint(12, u64::from(s.events.dropped_count));
    // `Status`: message 2, code 3 (unset 0, ok 1, error 2).
    let mut status = Message::default();
    match &s.status {
        Status::Unset => {}
        Status::Ok => status.uint(3, 1),
        Status::Error { description } => {
            status.string(2, description);
            status.uint(3, 2);
        }
    }
    m.message(15, status);
    // The W3C flags (sampled), and "the parent is remote" known (0x100) and its value (0x200).
    let remote = if s.parent_span_is_remote { 0x300 } else { 0x100 };
    m.fixed32(16, u32::from(s.span_context.trace_flags().to_u8()) | remote);
    m
}

/// `ExportTraceServiceRequest { resource_spans 1 }` of one `ResourceSpans { resource 1,
/// scope_spans 2 }`, one `ScopeSpans { scope 1, spans 2 }` per instrumentation scope
/// (`InstrumentationScope { name 1, version 2 }`). `resource` is [`resource`]'s encoding.
pub fn request(resource: &[u8], batch: &[SpanData]) -> Vec<u8> {
    let mut resource_spans = Message::default();
    resource_spans.bytes(1, resource);
    let mut rest: Vec<&SpanData> = batch.iter().collect();
    while let Some(first) = rest.first() {
        let scope = first.instrumentation_scope.clone();
        let (same, others): (Vec<&SpanData>, Vec<&SpanData>) =
            rest.into_iter().partition(|s| s.instrumentation_scope == scope);
        let mut scope_spans = Message::default();
        let mut name = Message::default();
        name.string(1, scope.name());
        name.string(2, scope.version().unwrap_or_default());
        scope_spans.message(1, name);
        for s in same {
            scope_spans.message(2, span(s));
        }
        resource_spans.message(2, scope_spans);
        rest = others;
    }
    let mut request = Message::default();
    request.message(1, resource_spans);
    request.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_and_keys_are_protobufs() {
        let mut m = Message::default();
        m.uint(1, 150);
        assert_eq!(m.0, [0x08, 0x96, 0x01], "the protobuf guide's example");
        let mut m = Message::default();
        m.string(2, "testing");
        assert_eq!(m.0, [0x12, 0x07, b't', b'e', b's', b't', b'i', b'n', b'g']);
        let mut m = Message::default();
        m.key(3, VARINT);
        m.varint(-1i64 as u64);
        assert_eq!(m.0.len(), 11, "a negative int64 takes ten bytes");
    }

    #[test]
    fn a_resource_is_its_attributes_as_key_values() {
        let r = Resource::builder_empty().with_service_name("plum-controller").build();
        let bytes = resource(&r);
        // attributes (1, LEN) { key (1, LEN) "service.name", value (2, LEN) { string (1, LEN) … } }
        let mut expected = vec![0x0a, 2 + 12 + 2 + 2 + 15, 0x0a, 12];
        expected.extend_from_slice(b"service.name");
        expected.extend_from_slice(&[0x12, 2 + 15, 0x0a, 15]);
        expected.extend_from_slice(b"plum-controller");
        assert_eq!(bytes, expected);
    }
}
