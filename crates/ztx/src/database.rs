//! `ztx database setup`: run once by the PostgreSQL database's owner (and again after an
//! upgrade), so that `ztx serve` can run as a role of its own that may only add to and
//! read the audit log ([`ztx_store::grant_service_role`]).

use anyhow::{Context, Result};

#[derive(Debug, clap::Args)]
pub struct DatabaseArgs {
    #[command(subcommand)]
    command: DatabaseCommand,
}

#[derive(Debug, clap::Subcommand)]
enum DatabaseCommand {
    /// As the database's owner: create or upgrade the schema, then grant the service role
    /// what running the exchange needs, with INSERT and SELECT only on the audit log.
    Setup {
        /// The database, connecting as its owner, e.g. postgres://owner@host/ztx.
        #[arg(long)]
        database_url: String,
        /// The role `ztx serve` will connect as (it must exist, and must be neither a
        /// superuser nor the owner).
        #[arg(long)]
        service_role: String,
        /// A read-only role for customer support: customers, their keys' settings and
        /// notifications, never a secret, orders, balances or the audit log.
        #[arg(long)]
        support_role: Option<String>,
    },
}

pub fn run(args: DatabaseArgs) -> Result<()> {
    match args.command {
        DatabaseCommand::Setup {
            database_url,
            service_role,
            support_role,
        } => {
            if !database_url.starts_with("postgres://")
                && !database_url.starts_with("postgresql://")
            {
                anyhow::bail!(
                    "--database-url must be a postgres:// URL: the embedded store has no roles"
                );
            }
            ztx_store::grant_service_role(&database_url, &service_role)
                .context("cannot set the database up")?;
            println!(
                "schema version {}; role {service_role} may run the exchange, and only add \
                 to and read the audit log",
                ztx_store::SCHEMA_VERSION
            );
            if let Some(support) = support_role {
                ztx_store::grant_support_role_beside(&database_url, &support, Some(&service_role))
                    .context("cannot grant the support role")?;
                println!(
                    "role {support} may read customers, their keys' settings and notifications"
                );
            }
            Ok(())
        }
    }
}
