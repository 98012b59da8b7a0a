//! The transport over HTTPS: a loopback server presenting a certificate from a generated CA.
//! With that CA the client gets its answers; without it, or when the certificate does not name
//! the address, or when the scheme does not match the server, the error says why.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use plum_sdk::client::ClientOptions;
use plum_sdk::{Client, ClientError, Controllers, Options, Request};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const BODY: &str = r#"{"ok":true}"#;

/// A CA: its PEM and what signs with it.
fn ca() -> (String, Issuer<'static, KeyPair>) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let pem = params.self_signed(&key).unwrap().pem();
    (pem, Issuer::new(params, key))
}

/// Answers every request on the connection with `BODY` (one request per connection).
async fn answer<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(mut stream: S) {
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    let response = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{BODY}",
        BODY.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// An HTTPS server on 127.0.0.1 whose certificate, signed by `issuer`, names `names`; its port.
async fn https_server(issuer: &Issuer<'static, KeyPair>, names: &[&str]) -> u16 {
    let key = KeyPair::generate().unwrap();
    let params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    let cert = params.signed_by(&key, issuer).unwrap();
    let chain = vec![CertificateDer::from(cert.der().to_vec())];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let mut config = rustls::ServerConfig::builder_with_provider(plum_sdk::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(tcp).await {
                    answer(tls).await;
                }
            });
        }
    });
    port
}

/// A plain HTTP server on 127.0.0.1 (hyper, as the controller's: it answers bytes that are not
/// HTTP with a 400); its port.
async fn http_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = axum::Router::new().fallback(|| async { ([("content-type", "application/json")], BODY) });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    port
}

fn options(ca_file: Option<&Path>) -> Options {
    let options = Options { deadline: Duration::from_secs(5), ..Options::default() };
    match ca_file {
        Some(f) => options.with_ca_file(f).unwrap(),
        None => options,
    }
}

async fn get(url: String, options: Options) -> Result<Value, ClientError> {
    Controllers::with_options(vec![url], options).send::<Value>(Request::get("/v1/cluster")).await.map(|a| a.body)
}

fn unreachable_message(result: Result<Value, ClientError>) -> String {
    match result {
        Err(ClientError::Unreachable(m)) => m,
        other => panic!("expected Unreachable, got {other:?}"),
    }
}

#[tokio::test]
async fn https_controllers_are_reached_through_the_clusters_ca_only() {
    let dir = tempfile::tempdir().unwrap();
    let (ca_pem, issuer) = ca();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca_pem).unwrap();
    let port = https_server(&issuer, &["127.0.0.1", "localhost"]).await;
    let url = format!("https://127.0.0.1:{port}");

    let body = get(url.clone(), options(Some(&ca_file))).await.unwrap();
    assert_eq!(body, serde_json::json!({"ok": true}));
    let body = get(format!("https://localhost:{port}"), options(Some(&ca_file))).await.unwrap();
    assert_eq!(body["ok"], true);

    // A bare address is HTTPS once a CA is given.
    let sdk =
        Client::new(&[&format!("127.0.0.1:{port}")], ClientOptions::default().with_ca_file(&ca_file).unwrap()).unwrap();
    assert_eq!(sdk.controllers().urls(), vec![url.clone()]);
    sdk.controllers().send::<Value>(Request::get("/v1/cluster")).await.unwrap();

    // Without the cluster's CA (the system's roots, or another CA) the handshake fails, and the
    // error says so.
    let e = get(url.clone(), options(None)).await.unwrap_err();
    assert!(e.is_tls(), "{e}");
    let m = unreachable_message(Err(e));
    assert!(m.contains("TLS handshake failed") && m.contains("certificate"), "{m}");
    let other = dir.path().join("other.pem");
    std::fs::write(&other, ca().0).unwrap();
    let m = unreachable_message(get(url.clone(), options(Some(&other))).await);
    assert!(m.contains("TLS handshake failed") && m.contains("not signed by a CA in the CA file"), "{m}");
}

#[tokio::test]
async fn a_certificate_for_another_name_or_a_scheme_mismatch_is_explained() {
    let dir = tempfile::tempdir().unwrap();
    let (ca_pem, issuer) = ca();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca_pem).unwrap();

    let port = https_server(&issuer, &["controller.example"]).await;
    let m = unreachable_message(get(format!("https://127.0.0.1:{port}"), options(Some(&ca_file))).await);
    assert!(m.contains("TLS handshake failed") && m.contains("does not name this address"), "{m}");

    // HTTPS spoken to a plain HTTP server.
    let plain = http_server().await;
    let m = unreachable_message(get(format!("https://127.0.0.1:{plain}"), options(Some(&ca_file))).await);
    assert!(m.contains("TLS handshake failed") && m.contains("serving HTTPS?"), "{m}");
    // The same server over http:// with the CA loaded: TLS settings do not get in the way.
    get(format!("http://127.0.0.1:{plain}"), options(Some(&ca_file))).await.unwrap();

    // Plain HTTP spoken to an HTTPS server.
    let port = https_server(&issuer, &["127.0.0.1"]).await;
    let m = unreachable_message(get(format!("http://127.0.0.1:{port}"), options(Some(&ca_file))).await);
    assert!(m.contains("not an HTTP answer: the controller may serve HTTPS only (use https://"), "{m}");
    // The server read no request: a write that must not be sent twice is not left in doubt.
    let c = Controllers::with_options(vec![format!("http://127.0.0.1:{port}")], options(None));
    let write = Request::write(reqwest::Method::POST, "/v1/tokens", Some(&serde_json::json!({})), false).unwrap();
    assert!(matches!(c.send::<Value>(write).await, Err(ClientError::Unreachable(_))));
}

#[test]
fn a_bad_ca_file_is_a_configuration_error() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.pem");
    std::fs::write(&bad, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n").unwrap();
    for path in [bad, dir.path().join("missing.pem")] {
        match Options::default().with_ca_file(&path) {
            Err(ClientError::Config(m)) => assert!(m.starts_with("CA file ") && m.contains(".pem"), "{m}"),
            other => panic!("expected a configuration error, got {other:?}"),
        }
    }
}
