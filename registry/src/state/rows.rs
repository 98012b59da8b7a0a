//! How records are stored in RocksDB: MessagePack maps keyed by field name.
//!
//! Names, not positions: reordering two fields of the same type cannot silently swap stored
//! data, and a field added with `#[serde(default)]` decodes as its default from older rows.
//! Rows written by the first layout (positional arrays) still decode: MessagePack's serde
//! decoder accepts a struct as an array too, in declaration order, which is why fields added
//! since then stand at the end of their structs.

use serde::Serialize;
use serde::de::DeserializeOwned;

pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Records are plain structs of strings, integers and maps: encoding cannot fail.
    rmp_serde::to_vec_named(value).expect("registry records always encode")
}

pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, rmp_serde::decode::Error> {
    rmp_serde::from_slice(bytes)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use plum_types::KvType;
    use serde::{Deserialize, Serialize};

    use super::*;
    use crate::state::records::{
        DeploymentRecord, EndpointRecord, InstanceRecord, KvRecord, NodeRecord, RequestRecord,
    };

    // The layouts of the first release, written positionally (`rmp_serde::to_vec`).
    #[derive(Serialize)]
    struct NodeV1 {
        node_id: String,
        ip: String,
        labels: BTreeMap<String, String>,
        can_run: bool,
        alive: bool,
        last_seen_ms: u64,
        registered_ms: u64,
    }

    #[derive(Serialize)]
    struct EndpointV1 {
        service_name: String,
        port: u16,
        protocol: String,
        version: String,
        labels: BTreeMap<String, String>,
        healthy: bool,
    }

    #[derive(Serialize)]
    struct InstanceV1 {
        instance_id: String,
        node_id: String,
        ip: String,
        endpoints: Vec<EndpointV1>,
        alive: bool,
        last_seen_ms: u64,
        registered_ms: u64,
    }

    #[derive(Serialize)]
    struct KvV1 {
        value: String,
        kind: KvType,
        updated_ms: u64,
        version: u64,
        create_index: u64,
        mod_index: u64,
    }

    #[derive(Serialize)]
    struct RequestV1 {
        at_ms: u64,
        ns: String,
        key: String,
        kind: KvType,
        updated_ms: u64,
        version: u64,
        create_index: u64,
        mod_index: u64,
    }

    fn v1<T: Serialize>(value: &T) -> Vec<u8> {
        rmp_serde::to_vec(value).unwrap()
    }

    fn labels() -> BTreeMap<String, String> {
        BTreeMap::from([("zone".to_string(), "a".to_string())])
    }

    #[test]
    fn rows_of_the_first_layout_still_decode() {
        let node = NodeV1 {
            node_id: "n1".into(),
            ip: "10.0.0.1".into(),
            labels: labels(),
            can_run: true,
            alive: false,
            last_seen_ms: 7,
            registered_ms: 3,
        };
        let got: NodeRecord = decode(&v1(&node)).unwrap();
        assert_eq!((got.node_id.as_str(), got.ip.as_str(), &got.labels), ("n1", "10.0.0.1", &labels()));
        assert_eq!((got.can_run, got.alive), (true, false));
        assert_eq!((got.last_seen_ms, got.registered_ms, got.ttl_ms), (7, 3, 0), "a field added later defaults");

        let ep = EndpointV1 {
            service_name: "web".into(),
            port: 8080,
            protocol: "http".into(),
            version: "v1".into(),
            labels: labels(),
            healthy: true,
        };
        let inst = InstanceV1 {
            instance_id: "i1".into(),
            node_id: "n1".into(),
            ip: "10.0.0.1".into(),
            endpoints: vec![ep],
            alive: true,
            last_seen_ms: 9,
            registered_ms: 2,
        };
        let got: InstanceRecord = decode(&v1(&inst)).unwrap();
        assert_eq!(got.endpoints[0].port, 8080);
        assert_eq!(got.endpoints[0].version, "v1");
        assert_eq!(got.endpoints[0].ip, "", "an old endpoint row has no address of its own");
        assert_eq!((got.last_seen_ms, got.registered_ms, got.ttl_ms), (9, 2, 0));

        let kv = KvV1 {
            value: "red".into(),
            kind: KvType::String,
            updated_ms: 5,
            version: 2,
            create_index: 10,
            mod_index: 12,
        };
        let got: KvRecord = decode(&v1(&kv)).unwrap();
        assert_eq!((got.version, got.create_index, got.mod_index, got.updated_ms), (2, 10, 12, 5));

        let req = RequestV1 {
            at_ms: 1,
            ns: "app".into(),
            key: "k".into(),
            kind: KvType::Int,
            updated_ms: 2,
            version: 3,
            create_index: 4,
            mod_index: 5,
        };
        let got: RequestRecord = decode(&v1(&req)).unwrap();
        assert_eq!((got.at_ms, got.updated_ms, got.version, got.create_index, got.mod_index), (1, 2, 3, 4, 5));
    }

    #[test]
    fn rows_are_stored_with_field_names() {
        let ep = EndpointRecord {
            service_name: "web".into(),
            port: 1,
            protocol: "http".into(),
            version: "v1".into(),
            labels: BTreeMap::new(),
            healthy: true,
            ip: "10.0.0.2".into(),
        };
        let bytes = encode(&ep);
        let as_map: BTreeMap<String, serde::de::IgnoredAny> = rmp_serde::from_slice(&bytes).unwrap();
        assert!(as_map.contains_key("service_name") && as_map.contains_key("ip"));
        assert_eq!(decode::<EndpointRecord>(&bytes).unwrap(), ep);
    }

    #[test]
    fn a_deployment_row_from_before_rollbacks_were_kept_decodes_with_none() {
        // The record as it was before `rollback` (named fields, as rows are written since).
        #[derive(Serialize)]
        struct DeploymentBefore {
            deployment_id: String,
            spec: plum_types::DeploymentRequest,
            created_ms: u64,
            generation: u64,
            previous: Option<plum_types::DeploymentRequest>,
            rollout: String,
        }
        let spec = plum_types::DeploymentRequest { name: "web".into(), version: "2".into(), ..Default::default() };
        let row = DeploymentBefore {
            deployment_id: "web".into(),
            spec: spec.clone(),
            created_ms: 1,
            generation: 2,
            previous: None,
            rollout: "Done".into(),
        };
        let got: DeploymentRecord = decode(&encode(&row)).unwrap();
        assert_eq!((got.spec, got.generation, got.rollout.as_str(), got.rollback), (spec, 2, "Done", None));
    }

    #[test]
    fn reordering_fields_of_one_type_does_not_swap_stored_values() {
        #[derive(Serialize)]
        struct Before {
            created_ms: u64,
            updated_ms: u64,
        }
        #[derive(Deserialize, Debug)]
        struct After {
            updated_ms: u64,
            created_ms: u64,
        }
        let after: After = decode(&encode(&Before { created_ms: 1, updated_ms: 2 })).unwrap();
        assert_eq!((after.created_ms, after.updated_ms), (1, 2));
    }
}
