//! Helpers shared by the command-line tests: running `ztx`, a served instance, plain
//! HTTP requests.
#![allow(dead_code, reason = "each test binary uses some of the helpers")]

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

pub const ZTX: &str = env!("CARGO_BIN_EXE_ztx");

pub fn ztx(args: &[&str]) -> Output {
    Command::new(ZTX).args(args).output().unwrap()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Polls `f` for up to 20 s.
pub fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs `ztx` and requires it to succeed.
pub fn succeeds(args: &[&str]) -> Output {
    let out = ztx(args);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    out
}

/// Asserts a command failed and said `expected` on stderr.
pub fn fails_with(out: &Output, expected: &str) {
    assert!(
        !out.status.success(),
        "succeeded; expected an error about {expected:?}"
    );
    assert!(stderr(out).contains(expected), "{}", stderr(out));
}

pub fn default_config() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../config/default.toml"
    ))
    .unwrap()
}

/// Starts `ztx serve` and waits until it says it is serving; killed on drop.
pub struct Server(pub std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn serve(data: &Path, extra: &[&str]) -> (Server, String) {
    serve_logging(data, extra, Stdio::null(), "info")
}

/// `serve`, with the server's log (stderr) going to `log` at level `level`.
pub fn serve_logging(data: &Path, extra: &[&str], log: Stdio, level: &str) -> (Server, String) {
    let mut child = Command::new(ZTX)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .args(extra)
        .env("RUST_LOG", level)
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if let Some(addr) = line.split("http://").nth(1) {
                let _ = tx.send(addr.trim().to_string());
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("server did not start");
    (Server(child), addr)
}

/// One HTTP/1.1 request on a fresh connection; returns (status, body).
pub fn http(addr: &str, method: &str, target: &str, api_key: Option<&str>) -> (u16, String) {
    http_with_body(addr, method, target, api_key, "")
}

/// [`http`] with a form body.
pub fn http_with_body(
    addr: &str,
    method: &str,
    target: &str,
    api_key: Option<&str>,
    body: &str,
) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let key = api_key
        .map(|k| format!("X-MBX-APIKEY: {k}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {target} HTTP/1.1\r\nHost: x\r\n{key}\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let status = answer.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = answer
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    (status, body)
}

pub fn now_ms() -> u64 {
    u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

/// A signed request target: the query plus timestamp and HMAC signature.
pub fn signed(path: &str, query: &str, secret: &str) -> String {
    let q = format!("{query}&timestamp={}", now_ms());
    let sig = ztx_api::HmacSecret::new(secret.as_bytes().to_vec()).sign_hex(q.as_bytes());
    format!("{path}?{q}&signature={sig}")
}

/// `ztx admin --data-dir d customer create --email email [extra…]`.
pub fn admin_create_customer(d: &str, email: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "admin",
        "--data-dir",
        d,
        "customer",
        "create",
        "--email",
        email,
    ];
    args.extend_from_slice(extra);
    ztx(&args)
}

/// A customer with a read+trade HMAC key and development funds, made with `ztx admin`
/// while the server runs; returns the key and its secret.
pub fn customer_with_key(d: &str, email: &str) -> (String, String) {
    let out = admin_create_customer(d, email, &["--json"]);
    let c: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = c["customer_id"].to_string();
    let out = ztx(&[
        "admin",
        "--data-dir",
        d,
        "api-key",
        "create",
        "--customer",
        &id,
        "--permissions",
        "read,trade",
        "--json",
    ]);
    let k: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for (asset, amount) in [("USDT", "1000000"), ("BTC", "100")] {
        let out = ztx(&[
            "admin",
            "--data-dir",
            d,
            "faucet",
            "--customer",
            &id,
            "--asset",
            asset,
            "--amount",
            amount,
            "--json",
        ]);
        assert!(String::from_utf8_lossy(&out.stdout).contains("credited"));
    }
    (
        k["api_key"].as_str().unwrap().to_string(),
        k["secret"].as_str().unwrap().to_string(),
    )
}

/// Copies a stopped server's data directory: its files (the store, the keys, the
/// configuration); the `events/` files are derived from the log and left behind.
pub fn copy_data_dir(from: &Path, to: &Path) {
    std::fs::create_dir(to).unwrap();
    for file in std::fs::read_dir(from).unwrap() {
        let file = file.unwrap();
        if file.file_type().unwrap().is_file() {
            std::fs::copy(file.path(), to.join(file.file_name())).unwrap();
        }
    }
}

/// `ztx admin customer create` as the operator of `cert` (its key beside it, `.key`).
pub fn create_customer_as(d: &str, cert: &std::path::Path, email: &str) -> std::process::Output {
    let cert_key = cert.with_extension("key");
    ztx(&[
        "admin",
        "--data-dir",
        d,
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        cert_key.to_str().unwrap(),
        "customer",
        "create",
        "--email",
        email,
    ])
}

/// A fresh database on the shared test cluster, set up as an operator does it: the owner
/// (the cluster's superuser) runs `ztx database setup`, and the server is to connect as a
/// role of its own that may only add to and read the audit log. The owner's URL and the
/// service role's; `None` when the harness has no cluster (it said loudly why, and fails
/// under CI=true).
pub fn postgres_for_serving() -> Option<(&'static ztx_store::testing::PgCluster, String, String)> {
    let cluster = ztx_store::testing::PgCluster::shared().unwrap()?;
    let owner = cluster.fresh_database().unwrap();
    let (role, url) = cluster.new_role(&owner).unwrap();
    succeeds(&[
        "database",
        "setup",
        "--database-url",
        &owner,
        "--service-role",
        &role,
    ]);
    Some((cluster, owner, url))
}
