//! Whatever a server (or something pretending to be one) answers, decoding it ends in a value or
//! a typed error, never a panic: random text, and random JSON shaped almost like the real types.

use plum_sdk::ClientError;
use plum_sdk::controllers::decode;
use plum_types::{BatchResponse, ClusterStatus, DeploymentInfo, Endpoint, ErrorBody, KvItem, KvWritten};
use proptest::prelude::*;
use serde_json::Value;

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        // Keys from the real wire types, so objects get close to decoding.
        let key = prop::sample::select(vec![
            "serviceName",
            "instanceId",
            "nodeId",
            "ip",
            "port",
            "protocol",
            "version",
            "labels",
            "healthy",
            "lastSeen",
            "namespace",
            "key",
            "value",
            "type",
            "updatedAt",
            "modIndex",
            "replicaId",
            "leaderId",
            "term",
            "members",
            "count",
            "unknown",
            "error",
            "retryable",
            "outcomeUnknown",
            "x",
        ]);
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(key.prop_map(String::from), inner, 0..10)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn decode_all(text: &str) {
    fn one<T: serde::de::DeserializeOwned>(text: &str) {
        match decode::<T>(text) {
            Ok(_) | Err(ClientError::Decode(_)) => {}
            Err(e) => panic!("decoding gave a non-decode error: {e}"),
        }
    }
    one::<Vec<Endpoint>>(text);
    one::<Endpoint>(text);
    one::<KvItem>(text);
    one::<Vec<KvItem>>(text);
    one::<KvWritten>(text);
    one::<ClusterStatus>(text);
    one::<BatchResponse>(text);
    one::<ErrorBody>(text);
    one::<Vec<DeploymentInfo>>(text);
    one::<Value>(text);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_text_never_panics(text in ".{0,200}") {
        decode_all(&text);
    }

    #[test]
    fn random_json_never_panics(v in json_value()) {
        decode_all(&v.to_string());
    }

    #[test]
    fn truncated_real_answers_never_panic(cut in 0usize..400) {
        let real = r#"[{"serviceName":"web","instanceId":"i-1","nodeId":"n","ip":"127.0.0.1","port":8080,"protocol":"http","version":"1.0.0","labels":{"zone":"a"},"healthy":true,"lastSeen":1795912498}]"#;
        let cut = cut.min(real.len());
        decode_all(&real[..cut]);
    }
}

#[test]
fn a_real_answer_decodes() {
    let text = r#"[{"serviceName":"web","instanceId":"i-1","nodeId":"n","ip":"127.0.0.1","port":8080,"protocol":"http","version":"1.0.0","labels":{},"healthy":true,"lastSeen":1}]"#;
    let eps: Vec<Endpoint> = decode(text).expect("decodes");
    assert_eq!(eps[0].port, 8080);
    assert!(matches!(decode::<Vec<Endpoint>>(r#"[{"port": 70000}]"#), Err(ClientError::Decode(_))));
}
