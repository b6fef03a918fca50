//! TLS: the real binary serves HTTPS with a throwaway certificate made here (rcgen), and a
//! rustls client that trusts only that certificate talks to it: TLS 1.2 and 1.3 both work,
//! every answer carries HSTS, plain HTTP to the TLS port gets no HTTP answer, and a client
//! that does not trust the certificate cannot connect.

mod common;

use common::*;
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{self, ClientConfig, ProtocolVersion, RootCertStore};

struct Tls {
    cert_der: rustls::pki_types::CertificateDer<'static>,
}

/// A self-signed certificate for `localhost` and 127.0.0.1, written next to the sandbox.
fn throwaway_certificate(sb: &Sandbox) -> (Tls, String, String) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("generate a certificate");
    let cert = sb.cwd().join("cert.pem");
    let key = sb.cwd().join("key.pem");
    std::fs::write(&cert, ck.cert.pem()).expect("write cert.pem");
    std::fs::write(&key, ck.signing_key.serialize_pem()).expect("write key.pem");
    (
        Tls {
            cert_der: ck.cert.der().clone(),
        },
        cert.display().to_string(),
        key.display().to_string(),
    )
}

fn client_config(
    roots: RootCertStore,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> ClientConfig {
    ClientConfig::builder_with_protocol_versions(versions)
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// One HTTPS GET over a fresh connection: (negotiated version, raw response).
async fn https_get(
    port: u16,
    config: ClientConfig,
    path: &str,
) -> std::io::Result<(ProtocolVersion, String)> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let connector = TlsConnector::from(Arc::new(config));
    let name = ServerName::try_from("localhost").expect("server name");
    let mut tls = connector.connect(name, tcp).await?;
    let version = tls.get_ref().1.protocol_version().expect("negotiated");
    tls.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut buf = Vec::new();
    // A peer that closes without close_notify is an error to rustls; what was read counts.
    let _ = tls.read_to_end(&mut buf).await;
    Ok((version, String::from_utf8_lossy(&buf).into_owned()))
}

#[test]
fn serve_speaks_tls_with_hsts_and_refuses_plain_http() {
    let sb = Sandbox::new();
    sb.run_ok(&["init"]);
    let (tls, cert, key) = throwaway_certificate(&sb);
    let server = sb.serve(&["--tls-cert", &cert, "--tls-key", &key]);
    assert!(
        server.base.starts_with("https://127.0.0.1:"),
        "the banner names https: {}",
        server.base
    );
    let port: u16 = server
        .base
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port in the banner");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut roots = RootCertStore::empty();
    roots.add(tls.cert_der.clone()).expect("trust the cert");

    for (versions, expect) in [
        (&[&rustls::version::TLS13][..], ProtocolVersion::TLSv1_3),
        (&[&rustls::version::TLS12][..], ProtocolVersion::TLSv1_2),
    ] {
        let (version, response) = rt
            .block_on(https_get(
                port,
                client_config(roots.clone(), versions),
                "/healthz",
            ))
            .expect("HTTPS request");
        assert_eq!(version, expect);
        assert!(
            response.starts_with("HTTP/1.1 200"),
            "{version:?}: {response}"
        );
        let lower = response.to_ascii_lowercase();
        assert!(
            lower.contains("\r\nstrict-transport-security: max-age="),
            "HSTS on {version:?}: {response}"
        );
        assert!(response.ends_with("ok"), "{response}");
    }
    // HSTS on errors too.
    let (_, response) = rt
        .block_on(https_get(
            port,
            client_config(roots.clone(), rustls::DEFAULT_VERSIONS),
            "/v1/controllers",
        ))
        .expect("HTTPS request");
    assert!(response.starts_with("HTTP/1.1 401"), "{response}");
    assert!(
        response
            .to_ascii_lowercase()
            .contains("strict-transport-security"),
        "{response}"
    );

    // A client that does not trust the certificate cannot complete the handshake.
    let untrusted = rt.block_on(https_get(
        port,
        client_config(RootCertStore::empty(), rustls::DEFAULT_VERSIONS),
        "/healthz",
    ));
    assert!(untrusted.is_err(), "an untrusted certificate was accepted");

    // Plain HTTP to the TLS port gets no HTTP answer.
    let mut plain = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    plain
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let _ = plain.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let mut buf = Vec::new();
    let _ = plain.read_to_end(&mut buf);
    assert!(
        !String::from_utf8_lossy(&buf).contains("HTTP/1.1 200"),
        "plain HTTP was served: {}",
        String::from_utf8_lossy(&buf)
    );

    // Still serving after all that.
    let (_, response) = rt
        .block_on(https_get(
            port,
            client_config(roots, rustls::DEFAULT_VERSIONS),
            "/healthz",
        ))
        .expect("HTTPS request");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    server.stop();
}
