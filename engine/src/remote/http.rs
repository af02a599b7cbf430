//! A minimal HTTP/1.1 client on the shard's own executor, for S3 requests
//! and for the pushes the server passes through to git upstreams.
//!
//! One connection per request (keeps failure handling simple and is cheap
//! on loopback and in-datacenter), hyper's client state machine over
//! glommio's TcpStream, with bounded time to connect and to the response
//! head. URLs are presigned and carry credentials in their query string, so
//! this module never logs a URL.

use crate::remote::hyper_io::{HyperIo, RawSocket};
use crate::remote::RemoteError;
use bytes::Bytes;
use futures_lite::{AsyncRead, AsyncWrite};
use http::{Method, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use rustls_pki_types::ServerName;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use url::Url;

/// How the client reaches the store.
pub struct ClientOptions {
    pub connect: Duration,
    pub response: Duration,
    /// Set for https:// endpoints.
    pub tls: Option<Arc<futures_rustls::rustls::ClientConfig>>,
    /// The endpoint's name, resolved off the shard.
    pub resolver: crate::remote::resolve::Resolver,
    /// What to do when the TLS handshake fails (which flag adds a CA).
    pub ca_hint: &'static str,
}

/// A connection to the store: plain TCP or TLS over it.
enum Conn {
    Plain(glommio::net::TcpStream),
    Tls(Box<futures_rustls::client::TlsStream<glommio::net::TcpStream>>),
}

impl RawSocket for Conn {
    fn raw_socket(&self) -> Option<std::os::fd::RawFd> {
        match self {
            Conn::Plain(s) => s.raw_socket(),
            Conn::Tls(_) => None,
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_close(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_close(cx),
        }
    }
}

/// Sends one request and returns the response with its body unread.
pub async fn send(
    op: &'static str,
    method: Method,
    url: &Url,
    headers: &[(&str, String)],
    body: Bytes,
    timeouts: &ClientOptions,
) -> Result<Response<Incoming>, RemoteError> {
    let len = body.len();
    let headers: Vec<(&str, String)> = headers.iter().cloned().chain([("content-length", len.to_string())]).collect();
    send_body(op, method, url, &headers, Full::new(body), timeouts).await
}

/// [`send`] with a body of any kind, streamed as it comes (sent with its
/// exact length when it knows it, else chunked).
pub async fn send_body<B>(
    op: &'static str,
    method: Method,
    url: &Url,
    headers: &[(&str, String)],
    body: B,
    timeouts: &ClientOptions,
) -> Result<Response<Incoming>, RemoteError>
where
    B: hyper::body::Body<Data = Bytes> + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let host = url.host_str().ok_or_else(|| RemoteError::Config(format!("the URL of {op} has no host")))?;
    let port = url.port_or_known_default().unwrap_or(80);
    let addr = timeouts.resolver.resolve(host, port, timeouts.connect).await?;
    let stream = glommio::net::TcpStream::connect_timeout(addr, timeouts.connect).await.map_err(|e| {
        RemoteError::Connect { endpoint: addr.to_string(), reason: std::io::Error::from(e).to_string() }
    })?;
    let _ = stream.set_nodelay(true);
    let conn = match &timeouts.tls {
        None => Conn::Plain(stream),
        Some(config) => {
            let name = ServerName::try_from(host.to_owned())
                .map_err(|e| RemoteError::Config(format!("{host:?} is not a TLS server name: {e}")))?;
            let connector = futures_rustls::TlsConnector::from(config.clone());
            let handshake = async {
                connector.connect(name, stream).await.map_err(|e| RemoteError::Connect {
                    endpoint: addr.to_string(),
                    reason: format!("TLS handshake: {e}; {}", timeouts.ca_hint),
                })
            };
            let tls = futures_lite::future::or(handshake, async {
                glommio::timer::sleep(timeouts.connect).await;
                Err(RemoteError::Timeout { op: "TLS handshake", after: timeouts.connect })
            })
            .await?;
            Conn::Tls(Box::new(tls))
        }
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake::<_, B>(HyperIo::new(conn))
        .await
        .map_err(|e| RemoteError::Http { op, reason: e.to_string() })?;
    glommio::spawn_local(async move {
        let _ = conn.await;
    })
    .detach();

    let path_and_query = match url.query() {
        Some(q) => format!("{}?{}", url.path(), q),
        None => url.path().to_owned(),
    };
    let host_header = match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_owned(),
    };
    let mut req = Request::builder().method(method).uri(path_and_query).header(http::header::HOST, host_header);
    for (name, value) in headers {
        req = req.header(*name, value.as_str());
    }
    let req = req.body(body).map_err(|e| RemoteError::Protocol { op, what: e.to_string() })?;
    let response = futures_lite::future::or(
        async { sender.send_request(req).await.map_err(|e| RemoteError::Http { op, reason: e.to_string() }) },
        async {
            glommio::timer::sleep(timeouts.response).await;
            Err(RemoteError::Timeout { op, after: timeouts.response })
        },
    )
    .await?;
    Ok(response)
}

/// Reads a whole small body (an error document, an XML reply), bounded.
pub async fn read_small(op: &'static str, body: Incoming, max: usize, timeout: Duration) -> Result<Bytes, RemoteError> {
    let collect = async {
        let mut out = Vec::new();
        let mut body = body;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| RemoteError::Http { op, reason: e.to_string() })?;
            if let Some(data) = frame.data_ref() {
                if out.len() + data.len() > max {
                    return Err(RemoteError::Protocol { op, what: format!("reply over {max} bytes") });
                }
                out.extend_from_slice(data);
            }
        }
        Ok(Bytes::from(out))
    };
    futures_lite::future::or(collect, async {
        glommio::timer::sleep(timeout).await;
        Err(RemoteError::Timeout { op, after: timeout })
    })
    .await
}

/// Turns a non-success response into an error that quotes S3's message.
pub async fn status_error(op: &'static str, resp: Response<Incoming>, timeout: Duration) -> RemoteError {
    let status = resp.status().as_u16();
    let body = read_small(op, resp.into_body(), 4096, timeout).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&body);
    let code = text.split("<Code>").nth(1).and_then(|s| s.split("</Code>").next()).unwrap_or("").to_owned();
    RemoteError::Status { op, status, code }
}
