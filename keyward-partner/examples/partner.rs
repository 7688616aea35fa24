//! The partner service and the create-db CLI without the `keyward` binary, for shell
//! scripts and manual tests:
//!
//! ```text
//! cargo run -p keyward-partner --example partner -- serve \
//!     --keyward-url http://127.0.0.1:8080 --client-id app_… --client-secret kws_…
//! cargo run -p keyward-partner --example partner -- create-db --ttl 2h --env .env
//! cargo run -p keyward-partner --example partner -- create-db regions
//! ```

use clap::{Parser, Subcommand};
use keyward_partner::{create_db, serve, CreateDbArgs, PartnerServeArgs};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the partner's create and claim service.
    Serve(PartnerServeArgs),
    /// Create a temporary database through a running partner service.
    CreateDb(CreateDbArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    match Cli::parse().command {
        Command::Serve(args) => serve(args).await,
        Command::CreateDb(args) => {
            let code = create_db(args).await?;
            std::process::exit(code)
        }
    }
}
