//! TLS to the broker for `rabbitmq:` sockets with the `tls` parameter.
//!
//! amqprs is built without its `tls` feature (that feature pulls in
//! `webpki-roots`, which this build does not carry), so the sink opens the
//! TLS session itself with tokio-rustls and hands amqprs a loopback port
//! bridged into it: [`tunnel`] connects and completes the TLS handshake
//! (server certificate verified against `[events] amqp_tls_ca_file`, or the
//! platform's trust store, for the socket's host name), then listens on an
//! ephemeral 127.0.0.1 port, accepts exactly one connection (amqprs's, within
//! the connect timeout) and copies bytes both ways until either side closes.
//! The bridge lives only as long as that one AMQP connection.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;

/// The client TLS settings: trust `ca_file`'s certificates (PEM) when given,
/// else the platform's verifier.
///
/// # Errors
/// An unreadable CA file, one without a certificate, or a TLS setup failure.
pub(crate) fn client_config(ca_file: Option<&str>) -> Result<Arc<ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?;
    let config = match ca_file {
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| format!("events.amqp_tls_ca_file {path}: {e}"))?;
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| format!("events.amqp_tls_ca_file {path}: {e}"))?;
                roots.add(cert).map_err(|e| format!("events.amqp_tls_ca_file {path}: {e}"))?;
            }
            if roots.is_empty() {
                return Err(format!("events.amqp_tls_ca_file {path}: no PEM certificate in it"));
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        None => {
            let verifier = rustls_platform_verifier::Verifier::new(provider).map_err(|e| format!("TLS setup: {e}"))?;
            builder.dangerous().with_custom_certificate_verifier(Arc::new(verifier)).with_no_client_auth()
        }
    };
    Ok(Arc::new(config))
}

/// Opens a TLS session to `broker` verified for `host`, and returns the
/// loopback address amqprs should connect to instead (see the module docs).
pub(crate) async fn tunnel(
    config: Arc<ClientConfig>,
    host: &str,
    broker: SocketAddr,
    accept_within: Duration,
) -> Result<SocketAddr, String> {
    let name = ServerName::try_from(host.to_owned()).map_err(|e| format!("TLS server name {host}: {e}"))?;
    let tcp = TcpStream::connect(broker).await.map_err(|e| format!("connect {broker}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let mut tls =
        TlsConnector::from(config).connect(name, tcp).await.map_err(|e| format!("TLS handshake with {host}: {e}"))?;
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.map_err(|e| format!("TLS bridge: {e}"))?;
    let local = listener.local_addr().map_err(|e| format!("TLS bridge: {e}"))?;
    tokio::spawn(async move {
        let Ok(Ok((mut plain, _))) = tokio::time::timeout(accept_within, listener.accept()).await else {
            return;
        };
        drop(listener);
        let _ = plain.set_nodelay(true);
        if let Err(e) = tokio::io::copy_bidirectional(&mut plain, &mut tls).await {
            tracing::debug!(error = %e, "AMQP TLS bridge closed");
        }
    });
    Ok(local)
}
