//! The network edge: accepting connections within a bound, HTTP/1 with hyper's header-read
//! timer, stalled bodies cut, optional TLS, graceful shutdown.
//!
//! Every timer is hyper's or tower-http's: hyper's `header_read_timeout` runs whenever a
//! connection waits for a request head, so it bounds a slow header, an idle new socket and an
//! idle keep-alive connection alike; tower-http's body timeouts cut a request or response
//! body that makes no progress. What this module adds is the accept loop: a connection past
//! `max_connections` is answered 503 with a ThreadFix envelope and closed.

use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// What the server accepts from the network, and how long it waits for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Edge {
    /// Connections open at once; one more is answered 503 and closed.
    pub max_connections: usize,
    /// Result uploads (completeTask) in flight at once; one more is answered 503.
    pub max_uploads: usize,
    /// How long a connection may take to send a request's head; also how long an idle
    /// connection (new or between requests) is kept.
    pub header_timeout: Duration,
    /// How long a request or response body may make no progress before it is cut.
    pub body_timeout: Duration,
    /// How long a call other than an upload may take, body included.
    pub request_timeout: Duration,
    /// The slowest an upload may arrive, in bytes per second on average, once it has gone on
    /// for `body_timeout` (a slow link is fine; a trickle is cut).
    pub min_upload_rate: u64,
    /// HTTPS: the certificate chain and private key (PEM files); `None` serves plain HTTP.
    pub tls: Option<TlsFiles>,
    /// Proxies (HAProxy, nginx) whose `X-Forwarded-For` names the client: for a connection
    /// from one of them, the client's address (for the throttle and the logs) is the last
    /// address in that header. Connections from anywhere else are taken at their word only.
    pub trusted_proxies: Vec<IpAddr>,
}

impl Default for Edge {
    /// 1 024 connections, 16 uploads, 30 s for a request head (and idle), 30 s without body
    /// progress, 60 s per call, uploads at least 8 KiB/s (100 MiB in 3.6 hours), plain HTTP.
    fn default() -> Edge {
        Edge {
            max_connections: 1024,
            max_uploads: 16,
            header_timeout: Duration::from_secs(30),
            body_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(60),
            min_upload_rate: 8 * 1024,
            tls: None,
            trusted_proxies: Vec::new(),
        }
    }
}

/// The PEM files HTTPS is served with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

impl TlsFiles {
    /// A rustls acceptor from the files; the error names the file and what is wrong.
    pub(crate) fn acceptor(&self) -> std::io::Result<tokio_rustls::TlsAcceptor> {
        use tokio_rustls::rustls::pki_types::pem::PemObject;
        use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let bad = |path: &PathBuf, what: String| {
            std::io::Error::other(format!("TLS: {}: {what}", path.display()))
        };
        let certs = CertificateDer::pem_file_iter(&self.cert)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| bad(&self.cert, format!("not a PEM certificate chain ({e})")))?;
        if certs.is_empty() {
            return Err(bad(&self.cert, "no certificate in it".into()));
        }
        let key = PrivateKeyDer::from_pem_file(&self.key)
            .map_err(|e| bad(&self.key, format!("not a PEM private key ({e})")))?;
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key))
            .map_err(|e| bad(&self.key, format!("does not go with the certificate ({e})")))?;
        Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
    }
}

/// Refused connections being answered at once, at most; past it they are just closed.
const MAX_REFUSING: usize = 64;

/// The answer to a connection past `max_connections`.
const OVERLOADED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: 144\r\n\r\n\
{\"message\":\"Too many connections: the server is at its --max-connections bound; retry shortly.\",\"success\":false,\"responseCode\":-1,\"object\":null}";

/// Serves `router` on `listener` until `stop` completes, then stops accepting and lets the
/// connections finish what they are doing (for up to `grace`).
pub(crate) async fn serve(
    listener: TcpListener,
    router: axum::Router,
    edge: &Edge,
    on_refused: impl Fn() + Send + Sync + 'static,
    stop: impl Future<Output = ()>,
    grace: Duration,
) -> std::io::Result<()> {
    let tls = edge.tls.as_ref().map(TlsFiles::acceptor).transpose()?;
    let connections = Arc::new(Semaphore::new(edge.max_connections.max(1)));
    let refusing = Arc::new(Semaphore::new(MAX_REFUSING));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(edge.header_timeout)
        .keep_alive(true);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let header_timeout = edge.header_timeout;
    tokio::pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let Ok(permit) = Arc::clone(&connections).try_acquire_owned() else {
            on_refused();
            if tls.is_none()
                && let Ok(slot) = Arc::clone(&refusing).try_acquire_owned()
            {
                tokio::spawn(async move {
                    let _slot = slot;
                    let _ = tokio::time::timeout(Duration::from_secs(1), refuse(stream)).await;
                });
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        let trusted = edge.trusted_proxies.contains(&peer.ip());
        let service = service(router.clone(), peer, trusted);
        let watcher = graceful.watcher();
        let http = http.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match tls {
                None => serve_connection(&http, watcher, stream, service).await,
                Some(acceptor) => {
                    match tokio::time::timeout(header_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => serve_connection(&http, watcher, stream, service).await,
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the shutdown grace period; closing them");
    }
    Ok(())
}

/// The client's address, when the request came through [`serve`] (not for a router driven
/// without a network).
pub(crate) fn peer(extensions: &axum::http::Extensions) -> Option<std::net::IpAddr> {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
}

/// The router as hyper's service, with the client's address as [`ConnectInfo`] on every
/// request.
fn service(
    router: axum::Router,
    peer: SocketAddr,
    trusted: bool,
) -> impl hyper::service::Service<
    hyper::Request<hyper::body::Incoming>,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future = impl Send,
> + Send
+ 'static {
    hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
        let client = if trusted {
            forwarded_for(request.headers()).map_or(peer, |ip| SocketAddr::new(ip, 0))
        } else {
            peer
        };
        request.extensions_mut().insert(ConnectInfo(client));
        tower::ServiceExt::oneshot(router.clone(), request.map(axum::body::Body::new))
    })
}

/// The address a trusted proxy appended to `X-Forwarded-For` (the last one).
fn forwarded_for(headers: &axum::http::HeaderMap) -> Option<IpAddr> {
    let last = headers.get_all("x-forwarded-for").into_iter().next_back()?;
    last.to_str().ok()?.rsplit(',').next()?.trim().parse().ok()
}

async fn serve_connection<I, S>(
    http: &hyper::server::conn::http1::Builder,
    watcher: hyper_util::server::graceful::Watcher,
    io: I,
    service: S,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<
            hyper::Request<hyper::body::Incoming>,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
        > + Send
        + 'static,
    S::Future: Send + 'static,
{
    let conn = http.serve_connection(TokioIo::new(io), service);
    if let Err(e) = watcher.watch(conn).await {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// Answers a connection past the bound and closes it, reading what the client sent first so
/// that closing does not reset the connection before the client reads the answer.
async fn refuse(mut stream: TcpStream) {
    let mut buf = [0u8; 4096];
    let _ = stream.try_read(&mut buf);
    if stream.write_all(OVERLOADED).await.is_ok() && stream.shutdown().await.is_ok() {
        use tokio::io::AsyncReadExt;
        while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trusted_proxy_names_the_client_last() {
        let mut headers = axum::http::HeaderMap::new();
        assert_eq!(forwarded_for(&headers), None);
        headers.append("x-forwarded-for", "10.0.0.9, 192.0.2.7".parse().unwrap());
        assert_eq!(forwarded_for(&headers), "192.0.2.7".parse().ok());
        headers.append("x-forwarded-for", " 2001:db8::1 ".parse().unwrap());
        assert_eq!(forwarded_for(&headers), "2001:db8::1".parse().ok());
        headers.append("x-forwarded-for", "garbage".parse().unwrap());
        assert_eq!(forwarded_for(&headers), None);
    }

    #[test]
    fn the_overload_answer_is_a_well_formed_envelope() {
        let text = std::str::from_utf8(OVERLOADED).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(length, body.len());
        let envelope: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(envelope["success"], false);
        assert_eq!(envelope["responseCode"], -1);
    }
}
