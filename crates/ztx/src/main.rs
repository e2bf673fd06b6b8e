//! `ztx`: the server (`ztx serve`) and the operator's commands (`ztx admin …`).
#![forbid(unsafe_code)]

mod admin;
mod audit;
mod config;
mod database;
mod fetch;
mod pki;
mod por;
mod serve;
mod site;
mod tls;
mod vault;
mod wallet;

/// jemalloc rather than glibc's allocator: a request's audit entry is built on an HTTP
/// thread and freed on the writer's, and glibc serializes such frees on the arena's
/// lock (its wake-ups showed in the profile). See ARCHITECTURE.md for the measurement
/// and why not mimalloc.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// ztx: a zero-trust custody and spot exchange.
#[derive(Debug, Parser)]
#[command(name = "ztx", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Top,
}

#[derive(Debug, Subcommand)]
enum Top {
    /// Run the exchange with its Binance-compatible API.
    Serve(serve::ServeArgs),
    /// Operator commands against a data directory or database.
    Admin(admin::AdminArgs),
    /// The audit log: its public key, an export, the offline check of an export, and the
    /// online check of a server's checkpoints and proofs.
    Audit(audit::AuditArgs),
    /// PostgreSQL: the schema, and the role the server runs as.
    Database(database::DatabaseArgs),
    /// The platform's certificate authority: workload and operator certificates,
    /// revocation.
    Pki(pki::PkiArgs),
    /// Proof of liabilities: publish an epoch's root, write a customer's proof, verify
    /// one offline.
    Por(por::PorArgs),
    /// Customers' contact data at rest: what it is sealed under, and the rotation of
    /// the key-encryption key.
    Vault(vault::VaultArgs),
    /// A customer's own checks with their API key: fetch and verify their proof of
    /// liabilities.
    Wallet(wallet::WalletArgs),
}

/// Where the data lives: the data directory (embedded store, master key, configuration)
/// and optionally a PostgreSQL URL for the store.
#[derive(Debug, Clone, clap::Args)]
pub struct Location {
    /// The data directory.
    #[arg(long, default_value = "ztx-data", global = true)]
    pub data_dir: PathBuf,
    /// Use PostgreSQL instead of the embedded store, e.g. postgres://user@host/db.
    #[arg(long, global = true)]
    pub database_url: Option<String>,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Top::Serve(args) => serve::run(args),
        Top::Admin(args) => admin::run(args),
        Top::Audit(args) => audit::run(args),
        Top::Database(args) => database::run(args),
        Top::Pki(args) => pki::run(args),
        Top::Por(args) => por::run(args),
        Top::Vault(args) => vault::run(args),
        Top::Wallet(args) => wallet::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ztx: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
