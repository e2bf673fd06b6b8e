//! The test exchange: the real router over a real engine and a fresh SQLite store in a
//! temporary directory, customers and API keys created as `ztx admin` creates them, a
//! clock the test sets, and two ways to send a request — in-process (`oneshot`) and over
//! a loopback socket — each signed like a Binance client signs it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey};
use http_body_util::BodyExt as _;
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tower::ServiceExt as _;
use ztx_api::state::secret_aad;
use ztx_api::{AppState, HmacSecret, RateLimits, StorePool};
use ztx_core::{
    Amount, Asset, AssetCode, Command, CustomerId, Deposit, MarketParams, MarketSpec, Order, Price,
    Trade, TransferId,
};
use ztx_engine::{AuditConfig, Clock, Engine, EngineHandle, Query, QueryReply};
use ztx_store::{ApiKeyCredential, NewApiKey, SqliteStore, Store, StoreFactory};
use ztx_vault::MasterKey;

/// The fixed time every test starts at: 20 s into a minute, at the start of a 10 s window.
pub const NOW: u64 = 1_700_000_000_000;
/// The one market, as in `config/default.toml`.
pub const SYMBOL: &str = "BTCUSDT";
/// The address requests come from unless a test says otherwise.
pub const CLIENT_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10));

fn amount(text: &str) -> Amount {
    Amount::parse_decimal(text, 8).unwrap()
}

fn code(text: &str) -> AssetCode {
    AssetCode::new(text).unwrap()
}

/// BTCUSDT exactly as the default configuration defines it: tick 0.01, step 0.00001,
/// minimum notional 5 USDT, 10 bps fees, both assets with 8 decimals.
pub fn market() -> MarketSpec {
    MarketSpec::new(MarketParams {
        symbol: SYMBOL.into(),
        base: Asset::new(code("BTC"), 8).unwrap(),
        quote: Asset::new(code("USDT"), 8).unwrap(),
        tick_size: Price::from_minor(amount("0.01").minor()),
        min_price: Price::from_minor(amount("0.01").minor()),
        max_price: Price::from_minor(amount("1000000").minor()),
        step_size: amount("0.00001"),
        min_qty: amount("0.00001"),
        max_qty: amount("9000"),
        min_notional: amount("5"),
        max_notional: amount("9000000"),
        maker_fee_bps: 10,
        taker_fee_bps: 10,
    })
    .unwrap()
}

/// How a key signs.
#[derive(Clone)]
pub enum Signer {
    Hmac(Vec<u8>),
    Ed25519(SigningKey),
}

/// An API key as a client holds it.
#[derive(Clone)]
pub struct Key {
    pub api_key: String,
    pub customer: CustomerId,
    pub signer: Signer,
}

impl Key {
    /// The signature of `payload` as the client sends it: lowercase hex for HMAC,
    /// percent-encoded base64 for Ed25519 (Binance `rest-api.md`, "SIGNED endpoints").
    pub fn sign(&self, payload: &str) -> String {
        match &self.signer {
            Signer::Hmac(secret) => HmacSecret::new(secret.clone()).sign_hex(payload.as_bytes()),
            Signer::Ed25519(key) => {
                let sig = key.sign(payload.as_bytes()).to_bytes();
                base64::engine::general_purpose::STANDARD
                    .encode(sig)
                    .replace('+', "%2B")
                    .replace('/', "%2F")
                    .replace('=', "%3D")
            }
        }
    }

    /// The same key string, signing with another key's material.
    pub fn signing_with(&self, other: &Key) -> Key {
        Key {
            signer: other.signer.clone(),
            ..self.clone()
        }
    }
}

/// One request, before it is sent.
#[derive(Clone, Debug)]
pub struct Req {
    pub method: Method,
    pub path: String,
    pub query: String,
    pub body: String,
    pub api_key: Option<String>,
    pub ip: IpAddr,
}

impl Req {
    pub fn new(method: Method, path: &str, query: &str) -> Self {
        Self {
            method,
            path: path.into(),
            query: query.into(),
            body: String::new(),
            api_key: None,
            ip: CLIENT_IP,
        }
    }

    pub fn get(path: &str, query: &str) -> Self {
        Self::new(Method::GET, path, query)
    }

    pub fn body(mut self, body: &str) -> Self {
        self.body = body.into();
        self
    }

    pub fn sent_from(mut self, ip: IpAddr) -> Self {
        self.ip = ip;
        self
    }

    pub fn api_key(mut self, api_key: &str) -> Self {
        self.api_key = Some(api_key.into());
        self
    }

    /// Signs query ‖ body with `key` and appends the signature to the query (or to the
    /// body when the body is not empty), with the key's header.
    pub fn signed_by(mut self, key: &Key) -> Self {
        let signature = key.sign(&format!("{}{}", self.query, self.body));
        let target = if self.body.is_empty() {
            &mut self.query
        } else {
            &mut self.body
        };
        if !target.is_empty() {
            target.push('&');
        }
        target.push_str("signature=");
        target.push_str(&signature);
        self.api_key(&key.api_key)
    }

    fn uri(&self) -> String {
        if self.query.is_empty() {
            self.path.clone()
        } else {
            format!("{}?{}", self.path, self.query)
        }
    }
}

/// An answer: status, headers and the body (parsed as JSON when it is JSON).
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
    pub json: Value,
}

impl Resp {
    fn new(status: StatusCode, headers: HeaderMap, bytes: &[u8]) -> Self {
        let text = String::from_utf8_lossy(bytes).into_owned();
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Self {
            status,
            headers,
            text,
            json,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    pub fn header_u64(&self, name: &str) -> Option<u64> {
        self.header(name).map(|v| v.parse().unwrap())
    }

    /// Asserts a Binance error answer: status, code and message, in the JSON shape.
    #[track_caller]
    pub fn assert_error(&self, status: StatusCode, code: i64, msg: &str) {
        assert_eq!(
            (self.status, &self.json),
            (status, &serde_json::json!({ "code": code, "msg": msg })),
            "body: {}",
            self.text
        );
        assert_eq!(
            self.header("content-type"),
            Some("application/json;charset=UTF-8")
        );
    }

    #[track_caller]
    pub fn assert_ok(&self) -> &Value {
        assert_eq!(self.status, StatusCode::OK, "body: {}", self.text);
        &self.json
    }
}

/// What a refused request must leave exactly as it was.
#[derive(Debug, PartialEq, Eq)]
pub struct Snapshot {
    balances: Vec<QueryReply>,
    open_orders: Vec<QueryReply>,
    order_history: Vec<Vec<Order>>,
    trades: Vec<Vec<Trade>>,
}

/// A running test exchange. Dropping it stops the engine and removes the directory.
pub struct Exchange {
    pub handle: EngineHandle,
    pub router: Router,
    pub state: AppState,
    clock_ms: Arc<AtomicU64>,
    master: Arc<MasterKey>,
    contacts: Arc<ztx_vault::contact::ContactKeys>,
    path: PathBuf,
    customers: Vec<CustomerId>,
    next_transfer: u128,
    next_key: u64,
    /// The rows the engine's writer hands over, until a monitor follows them.
    feed: std::sync::Mutex<Option<tokio::sync::mpsc::Receiver<Vec<ztx_engine::Committed>>>>,
    _engine: Engine,
    _dir: tempfile::TempDir,
}

/// How many commits' audit rows the feed holds.
pub const FEED_COMMITS: usize = 4;

impl Exchange {
    pub fn new() -> Self {
        Self::with_limits(RateLimits::default())
    }

    pub fn with_limits(limits: RateLimits) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ztx.sqlite");
        let open_path = path.clone();
        let factory: StoreFactory =
            Arc::new(move || SqliteStore::open(&open_path).map(|s| Box::new(s) as Box<dyn Store>));
        let clock_ms = Arc::new(AtomicU64::new(NOW));
        let reading = clock_ms.clone();
        let clock: Clock = Arc::new(move || reading.load(Ordering::SeqCst));
        // As `ztx serve` runs it: every request in the audit log.
        // A short queue, so that tests see the writer drop rows the monitor was slow for.
        let (feed, followed) = tokio::sync::mpsc::channel(FEED_COMMITS);
        let audit = AuditConfig {
            key: ztx_audit::LogKey::from_seed("ztx.test/audit", &[3; 32]).unwrap(),
            checkpoint_every: std::time::Duration::from_secs(1),
            feed: Some(feed),
        };
        let (engine, handle) =
            Engine::start_with(factory.clone(), vec![market()], clock.clone(), Some(audit))
                .expect("engine starts");
        let master = Arc::new(MasterKey::generate());
        let contacts = Arc::new(ztx_vault::contact::ContactKeys::generate());
        let state = AppState::new(
            handle.clone(),
            StorePool::new(factory),
            master.clone(),
            contacts.clone(),
            limits,
            clock,
        )
        .audited(true);
        let router = ztx_api::router(state.clone());
        Self {
            handle,
            router,
            state,
            clock_ms,
            master,
            contacts,
            path,
            customers: Vec::new(),
            next_transfer: 1,
            next_key: 1,
            feed: std::sync::Mutex::new(Some(followed)),
            _engine: engine,
            _dir: dir,
        }
    }

    /// The security monitor over this exchange, with the default rules and no file;
    /// tests step it by hand.
    pub async fn monitor(&self) -> ztx_api::monitor::Monitor {
        self.monitor_with(ztx_monitor::DetectionConfig::default(), None)
            .await
    }

    pub async fn monitor_with(
        &self,
        detection: ztx_monitor::DetectionConfig,
        file: Option<ztx_api::monitor::FileSink>,
    ) -> ztx_api::monitor::Monitor {
        ztx_api::monitor::Monitor::start(
            self.state.clone(),
            ztx_api::monitor::MonitorConfig {
                detection,
                file,
                product: ztx_monitor::Product {
                    name: "ztx".into(),
                    version: "test".into(),
                    log_name: "ztx.test/audit".into(),
                },
            },
        )
        .await
        .unwrap()
    }

    /// Lets webhooks go to `http://` and this machine (the development setting), so
    /// that a test's own receiver can take them.
    pub fn allow_insecure_webhooks(&mut self) {
        self.state = self
            .state
            .clone()
            .with_webhook_policy(ztx_api::webhooks::WebhookPolicy {
                allow_insecure: true,
            });
        self.router = ztx_api::router(self.state.clone());
    }

    /// The webhook sender over this exchange; tests step it by hand.
    pub fn webhook_sender(&self) -> ztx_api::webhooks::Sender {
        ztx_api::webhooks::Sender::trusting(self.state.clone(), rustls::RootCertStore::empty())
    }

    /// What `ztx vault rotate` does to webhooks: a new KEK version, their data keys
    /// re-wrapped under it (the harness's customers' keys are stand-ins, which only
    /// `ztx admin` would seal for real). The new version, and how many it re-wrapped.
    pub fn rotate_webhook_keys(&self) -> (u32, u64) {
        let version = self.contacts.add_kek_version().unwrap();
        let done =
            ztx_api::contacts::rotate_webhooks(&mut self.store(), &self.contacts, version).unwrap();
        (version, done)
    }

    /// The engine's feed of committed audit rows, for one monitor to follow.
    pub fn take_feed(&self) -> tokio::sync::mpsc::Receiver<Vec<ztx_engine::Committed>> {
        self.feed
            .lock()
            .unwrap()
            .take()
            .expect("the feed is followed once")
    }

    /// From now on the store refuses to insert an order (a trigger, as its owner could
    /// add one): every commit with an order in it fails.
    pub fn break_order_inserts(&self) {
        self.refuse_inserts_into("orders");
    }

    /// From now on the store refuses to append to the audit log: every commit fails.
    pub fn break_audit_appends(&self) {
        self.refuse_inserts_into("audit_entries");
    }

    fn refuse_inserts_into(&self, table: &str) {
        rusqlite::Connection::open(&self.path)
            .unwrap()
            .execute_batch(&format!(
                "CREATE TRIGGER fail_{table} BEFORE INSERT ON {table} \
                 BEGIN SELECT RAISE(ABORT, 'injected'); END;"
            ))
            .unwrap();
    }

    pub fn store(&self) -> SqliteStore {
        SqliteStore::open(&self.path).unwrap()
    }

    /// The audit log, decoded, oldest first.
    pub fn audit_log(&self) -> Vec<ztx_audit::Entry> {
        let rows = self.store().audit_entries(0, 100_000).unwrap();
        rows.iter()
            .map(|r| ztx_audit::Entry::decode(&r.entry).unwrap())
            .collect()
    }

    /// The audit log without the entries of store calls: what requests, commands and
    /// responses themselves left, oldest first.
    pub fn request_log(&self) -> Vec<ztx_audit::Entry> {
        self.audit_log()
            .into_iter()
            .filter(|e| e.kind != ztx_audit::Kind::DataAccess)
            .collect()
    }

    /// The number the store gave a key.
    pub fn key_id(&self, key: &Key) -> u64 {
        self.store()
            .api_key_by_key(&key.api_key)
            .unwrap()
            .unwrap()
            .id
            .0
    }

    pub fn now(&self) -> u64 {
        self.clock_ms.load(Ordering::SeqCst)
    }

    pub fn advance_ms(&self, ms: u64) {
        self.clock_ms.fetch_add(ms, Ordering::SeqCst);
    }

    /// A customer, as `ztx admin customer create` makes one.
    pub fn customer(&mut self) -> CustomerId {
        let n = self.customers.len() + 1;
        let id = ztx_store::testing::create_customer(
            &mut self.store(),
            &format!("c{n}@test.example"),
            NOW,
        )
        .unwrap();
        self.customers.push(id);
        id
    }

    fn new_key_string(&mut self) -> String {
        let n = self.next_key;
        self.next_key += 1;
        // 64 alphanumerics, like `ztx admin`'s hex keys.
        format!("{:064x}", u128::from(n) * 0x9e37_79b9_7f4a_7c15)
    }

    /// An HMAC key, as `ztx admin` makes one: the secret sealed under a data key of the
    /// key's own, stored wrapped beside it.
    pub fn hmac_key(&mut self, customer: CustomerId, permissions: &str, ips: &str) -> Key {
        self.hmac_key_sealed(customer, permissions, ips, false)
    }

    /// What `ztx serve` does at start: secrets under the master key re-sealed under data
    /// keys of their own, data keys under an older KEK version re-wrapped.
    pub fn reseal_secrets(&self) -> (u64, u64) {
        ztx_api::contacts::rotate_secrets(&mut self.store(), &self.contacts, &self.master).unwrap()
    }

    /// An HMAC key as an older release stored it: the secret sealed under the master key.
    pub fn legacy_hmac_key(&mut self, customer: CustomerId, permissions: &str) -> Key {
        self.hmac_key_sealed(customer, permissions, "", true)
    }

    fn hmac_key_sealed(
        &mut self,
        customer: CustomerId,
        permissions: &str,
        ips: &str,
        legacy: bool,
    ) -> Key {
        let api_key = self.new_key_string();
        let secret = format!("secret{api_key}").into_bytes();
        let credential = if legacy {
            ApiKeyCredential::Hmac {
                secret_sealed: self.master.seal(&secret, &secret_aad(&api_key)),
                data_key: None,
            }
        } else {
            let sealed = self.contacts.seal_secret(&api_key, &secret).unwrap();
            ApiKeyCredential::Hmac {
                secret_sealed: sealed.sealed,
                data_key: Some(ztx_api::contacts::stored_key(sealed.key)),
            }
        };
        self.register(&api_key, customer, credential, permissions, ips);
        Key {
            api_key,
            customer,
            signer: Signer::Hmac(secret),
        }
    }

    /// An Ed25519 key: only the public key is stored.
    pub fn ed25519_key(&mut self, customer: CustomerId, permissions: &str) -> Key {
        let api_key = self.new_key_string();
        let seed = u8::try_from(self.next_key).unwrap();
        let signing = SigningKey::from_bytes(&[seed; 32]);
        self.register(
            &api_key,
            customer,
            ApiKeyCredential::Ed25519 {
                public_key: signing.verifying_key().to_bytes(),
            },
            permissions,
            "",
        );
        Key {
            api_key,
            customer,
            signer: Signer::Ed25519(signing),
        }
    }

    fn register(
        &mut self,
        api_key: &str,
        customer: CustomerId,
        credential: ApiKeyCredential,
        permissions: &str,
        ips: &str,
    ) {
        self.store()
            .create_api_key(&NewApiKey {
                api_key: api_key.into(),
                customer,
                credential,
                permissions: permissions.into(),
                ip_allowlist: ips.into(),
                enabled: true,
                created_ms: NOW,
            })
            .unwrap();
    }

    /// A customer with a read+trade HMAC key, funded with `usdt` USDT and `btc` BTC.
    pub async fn trader(&mut self, usdt: &str, btc: &str) -> Key {
        let customer = self.customer();
        let key = self.hmac_key(customer, "read,trade", "");
        self.fund(customer, "USDT", usdt).await;
        self.fund(customer, "BTC", btc).await;
        key
    }

    /// Credits a deposit through the engine, unlogged (the faucet's own path is tested
    /// with its audit entry).
    pub async fn fund(&mut self, customer: CustomerId, asset: &str, whole: &str) {
        if amount(whole).is_zero() {
            return;
        }
        let transfer_id = TransferId(self.next_transfer);
        self.next_transfer += 1;
        self.handle
            .execute(Command::Deposit(Deposit {
                transfer_id,
                customer,
                asset: code(asset),
                amount: amount(whole),
            }))
            .await
            .unwrap();
    }

    /// Balances, open orders, order history and trades of every customer.
    pub async fn snapshot(&self) -> Snapshot {
        let mut snap = Snapshot {
            balances: Vec::new(),
            open_orders: Vec::new(),
            order_history: Vec::new(),
            trades: Vec::new(),
        };
        let mut store = self.store();
        for &customer in &self.customers {
            snap.balances
                .push(self.handle.query(Query::Balances(customer)).await.unwrap());
            snap.open_orders.push(
                self.handle
                    .query(Query::OpenOrders {
                        customer,
                        symbol: None,
                    })
                    .await
                    .unwrap(),
            );
            snap.order_history.push(
                store
                    .customer_scope(customer)
                    .unwrap()
                    .orders(SYMBOL, None, None, None, 1_000)
                    .unwrap(),
            );
            snap.trades.push(
                store
                    .customer_scope(customer)
                    .unwrap()
                    .my_trades(SYMBOL, None, None, None, 1_000)
                    .unwrap(),
            );
        }
        snap
    }

    /// The customer's open orders, from the engine.
    pub async fn open_orders(&self, customer: CustomerId) -> Vec<Order> {
        let reply = self
            .handle
            .query(Query::OpenOrders {
                customer,
                symbol: None,
            })
            .await
            .unwrap();
        let QueryReply::OpenOrders(orders) = reply else {
            panic!("unexpected reply {reply:?}")
        };
        orders
    }

    /// Sends a request in-process, as if from `req.ip`.
    pub async fn send(&self, req: Req) -> Resp {
        let mut builder = Request::builder()
            .method(req.method.clone())
            .uri(req.uri())
            .header("content-type", "application/x-www-form-urlencoded");
        if let Some(key) = &req.api_key {
            builder = builder.header("X-MBX-APIKEY", key);
        }
        let mut request = builder.body(Body::from(req.body.clone())).unwrap();
        request
            .extensions_mut()
            .insert(ConnectInfo(SocketAddr::new(req.ip, 50_000)));
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        Resp::new(status, headers, &bytes)
    }

    /// A signed request with `timestamp` (the current time) appended to the query.
    pub async fn signed(&self, method: Method, path: &str, params: &str, key: &Key) -> Resp {
        self.send(self.signed_req(method, path, params, key)).await
    }

    pub fn signed_req(&self, method: Method, path: &str, params: &str, key: &Key) -> Req {
        let sep = if params.is_empty() { "" } else { "&" };
        let query = format!("{params}{sep}timestamp={}", self.now());
        Req::new(method, path, &query).signed_by(key)
    }

    /// Places an order with the given parameters (symbol BTCUSDT is added).
    pub async fn order(&self, key: &Key, params: &str) -> Resp {
        let params = format!("symbol={SYMBOL}&{params}");
        self.signed(Method::POST, "/api/v3/order", &params, key)
            .await
    }

    /// Places a resting limit order and returns its order id.
    pub async fn rest(&self, key: &Key, side: &str, price: &str, qty: &str) -> u64 {
        let resp = self
            .order(
                key,
                &format!("side={side}&type=LIMIT&timeInForce=GTC&price={price}&quantity={qty}"),
            )
            .await;
        let body = resp.assert_ok();
        assert_eq!(body["status"], "NEW", "{body}");
        body["orderId"].as_u64().unwrap()
    }

    /// Serves the router on a loopback port; the server stops with the runtime.
    pub async fn serve(&self) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = self
            .router
            .clone()
            .into_make_service_with_connect_info::<SocketAddr>();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        addr
    }
}

/// Sends `req` over a real HTTP/1.1 connection to `addr` (`req.ip` is ignored: the peer
/// address is the socket's) and reads the whole answer.
pub async fn send_tcp(addr: SocketAddr, req: &Req) -> Resp {
    let mut head = format!(
        "{} {} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n",
        req.method,
        req.uri()
    );
    if let Some(key) = &req.api_key {
        head.push_str(&format!("X-MBX-APIKEY: {key}\r\n"));
    }
    if !req.body.is_empty() {
        head.push_str(&format!(
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
            req.body.len()
        ));
    }
    head.push_str("\r\n");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(req.body.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let read = stream.read_to_end(&mut raw);
    tokio::time::timeout(std::time::Duration::from_secs(10), read)
        .await
        .expect("the server answers within 10 s")
        .unwrap();
    parse_http(&raw)
}

fn parse_http(raw: &[u8]) -> Resp {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete head");
    let head = std::str::from_utf8(&raw[..split]).unwrap();
    let body = &raw[split + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status: u16 = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    let mut headers = HeaderMap::new();
    for line in lines {
        let (name, value) = line.split_once(':').unwrap();
        headers.append(
            axum::http::HeaderName::from_bytes(name.trim().as_bytes()).unwrap(),
            value.trim().parse().unwrap(),
        );
    }
    assert!(
        headers.get("transfer-encoding").is_none(),
        "chunked answers are not expected here"
    );
    if let Some(len) = headers.get("content-length") {
        let len: usize = len.to_str().unwrap().parse().unwrap();
        assert_eq!(body.len(), len, "the body is as long as announced");
    }
    Resp::new(StatusCode::from_u16(status).unwrap(), headers, body)
}
