//! A small HTTP/1.1 client: for the log's public endpoints plain `http://`, for the admin
//! API mutual TLS ([`Client::mtls`]); one request per connection, bounded in time and in
//! size, its answers treated as untrusted text.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Bytes;
use hyper::{Method, Uri};

/// No answer of the log's endpoints is near this; a larger one is refused unread.
const MAX_BODY: usize = 256 * 1024;
/// The largest proof-of-liabilities root (or publication) answer read: it carries the
/// epoch's cap in hex, about 264 KB for two assets and 1 MB for ten.
pub(crate) const POR_MAX_BODY: usize = 8 * 1024 * 1024;
/// How long one request may take, connecting included.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(15);
/// How much of an error answer is shown.
const EXCERPT: usize = 200;

/// A server to ask, and the runtime the asking runs on.
#[derive(Debug)]
pub struct Client {
    runtime: tokio::runtime::Runtime,
    /// `host:port` as given, for the Host header and messages.
    authority: String,
    host: String,
    port: u16,
    /// The URL's path, without a trailing slash, put before every endpoint's.
    prefix: String,
    /// The longest answer read.
    max_body: usize,
    /// Mutual TLS, for the admin API.
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl Client {
    /// A client for `url`, e.g. `http://127.0.0.1:8080`.
    pub fn new(url: &str) -> Result<Client> {
        let uri: Uri = url
            .parse()
            .with_context(|| format!("{url:?} is not a URL"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => bail!(
                "{url}: https is not supported yet; give the server's plain http:// address \
                 (the answers are checked against the log's key either way)"
            ),
            _ => bail!("{url:?} is not an http:// URL"),
        }
        let authority = uri
            .authority()
            .ok_or_else(|| anyhow!("{url:?} names no host"))?;
        if uri.query().is_some() {
            bail!("{url:?}: the server's URL has no query");
        }
        let host = authority.host();
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host)
            .to_owned();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        Ok(Client {
            runtime,
            authority: authority.as_str().to_owned(),
            host,
            port: authority.port_u16().unwrap_or(80),
            prefix: uri.path().trim_end_matches('/').to_owned(),
            max_body: MAX_BODY,
            tls: None,
        })
    }

    /// A client for the admin API at `addr`, over mutual TLS with `config` (which checks
    /// the server's certificate for the address dialled and its SPIFFE id).
    pub fn mtls(addr: std::net::SocketAddr, config: Arc<rustls::ClientConfig>) -> Result<Client> {
        let mut client = Client::new(&format!("http://{addr}"))?;
        client.tls = Some(config);
        Ok(client)
    }

    fn url(&self, target: &str) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}{}{target}", self.authority, self.prefix)
    }

    /// Reads answers up to `bytes` long (pages of events are larger than proofs).
    pub fn with_max_body(mut self, bytes: usize) -> Client {
        self.max_body = bytes;
        self
    }

    /// `GET target` (a path and query); the body of a 200 answer, as text.
    pub fn get(&self, target: &str) -> Result<String> {
        self.get_with(target, &[])
    }

    /// `GET target` with extra headers (an operator's `authorization`).
    pub fn get_with(&self, target: &str, headers: &[(&str, &str)]) -> Result<String> {
        let url = self.url(target);
        let asked = self.runtime.block_on(async {
            tokio::time::timeout(TIMEOUT, self.ask(Method::GET, target, headers, None))
                .await
                .map_err(|_| anyhow!("no answer within {} s", TIMEOUT.as_secs()))?
        });
        asked.with_context(|| format!("GET {url}"))
    }

    /// POSTs `json` to `target` with extra headers, waiting up to `timeout` for the
    /// answer ([`TIMEOUT`] but for work longer than a look-up, such as building an
    /// epoch's tree); the answer's body, if a success.
    pub fn post_json_within(
        &self,
        target: &str,
        headers: &[(&str, &str)],
        json: &str,
        timeout: Duration,
    ) -> Result<String> {
        let url = self.url(target);
        let asked = self.runtime.block_on(async {
            tokio::time::timeout(timeout, self.ask(Method::POST, target, headers, Some(json)))
                .await
                .map_err(|_| anyhow!("no answer within {} s", timeout.as_secs()))?
        });
        asked.with_context(|| format!("POST {url}"))
    }

    async fn ask(
        &self,
        method: Method,
        target: &str,
        headers: &[(&str, &str)],
        json: Option<&str>,
    ) -> Result<String> {
        let stream = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
            .await
            .context("cannot connect")?;
        match &self.tls {
            None => self.exchange(stream, method, target, headers, json).await,
            Some(config) => {
                let name = rustls::pki_types::ServerName::try_from(self.host.clone())
                    .with_context(|| format!("{:?} is not a server name", self.host))?;
                let tls = tokio_rustls::TlsConnector::from(config.clone())
                    .connect(name, stream)
                    .await
                    .map_err(|e| anyhow!("TLS: {}", chain(&e)))?;
                self.exchange(tls, method, target, headers, json).await
            }
        }
    }

    async fn exchange<Io>(
        &self,
        stream: Io,
        method: Method,
        target: &str,
        headers: &[(&str, &str)],
        json: Option<&str>,
    ) -> Result<String>
    where
        Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let io = hyper_util::rt::TokioIo::new(stream);
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake::<_, Full<Bytes>>(io).await?;
        tokio::spawn(connection);
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(format!("{}{target}", self.prefix))
            .header("host", &self.authority)
            .header("connection", "close");
        if json.is_some() {
            request = request.header("content-type", "application/json");
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let body = Full::new(Bytes::from(json.unwrap_or_default().to_owned()));
        let request = request.body(body)?;
        let response = sender.send_request(request).await?;
        let status = response.status();
        let max_body = self.max_body;
        let body = Limited::new(response.into_body(), max_body)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<LengthLimitError>() {
                    anyhow!("the answer is longer than {max_body} bytes")
                } else {
                    anyhow!("cannot read the answer: {}", chain(&*e))
                }
            })?
            .to_bytes();
        if !status.is_success() {
            bail!(
                "the server answered {status}: {}",
                excerpt(&String::from_utf8_lossy(&body))
            );
        }
        String::from_utf8(body.to_vec()).map_err(|_| anyhow!("the answer is not UTF-8 text"))
    }
}

/// An error and its causes, as one line (hyper's own message alone is vague).
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    for _ in 0..8 {
        let Some(c) = cause else { break };
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// The start of an answer, safe to print: no control characters reach the terminal.
fn excerpt(text: &str) -> String {
    let mut out: String = text
        .chars()
        .take(EXCERPT)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().nth(EXCERPT).is_some() {
        out.push('…');
    }
    out
}
