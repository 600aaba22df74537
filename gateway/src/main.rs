//! The `gateway` binary: serve (the default), mint a development token, or check the health of
//! a running gateway.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use common::config::{Env, exit_on_error};
use common::healthcheck;
use common::telemetry::{self, LogSettings};
use common::tracing_export::TraceExport;
use gateway::mint::{MintRequest, mint_token, parse_ttl};
use gateway::upgrade_socket;
use gateway::{Config, Gateway};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(version, about = "The public gateway in front of the task service")]
struct Cli {
    /// Take over the listening sockets of a running gateway (graceful upgrade: start the new
    /// binary with this flag, then send SIGQUIT to the old one).
    #[arg(short, long)]
    upgrade: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Print an HS256 token signed with BETTER_AUTH_SECRET, for trying the API without a frontend.
    MintToken {
        /// The user id (`sub`).
        #[arg(long)]
        sub: String,
        /// The user's email.
        #[arg(long)]
        email: Option<String>,
        /// Lifetime, e.g. 90s, 15m, 1h, 2d.
        #[arg(long, default_value = "1h", value_parser = parse_ttl)]
        ttl: std::time::Duration,
    },
    /// Exit 0 when the gateway configured by the same environment answers `/readyz` with 200 on
    /// GATEWAY_ADMIN_LISTEN, 1 otherwise: the container's HEALTHCHECK.
    Healthcheck,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let env = Env::from_process();
    match cli.command {
        Some(Command::MintToken { sub, email, ttl }) => {
            let token = exit_on_error(mint_token(&env, &MintRequest { sub, email, ttl }));
            println!("{token}");
            return ExitCode::SUCCESS;
        }
        Some(Command::Healthcheck) => {
            let config = exit_on_error(Config::from_env(&env));
            return healthcheck::run(config.admin_listen, "/readyz");
        }
        None => {}
    }
    let config = exit_on_error(Config::from_env(&env));
    exit_on_error(upgrade_socket::prepare(
        config.upgrade_sock.as_deref(),
        cli.upgrade,
    ));
    let export = exit_on_error(config.tracing.as_ref().map(TraceExport::start).transpose());
    telemetry::init(&exit_on_error(LogSettings::from_env(&env)), export.as_ref());
    let result =
        Gateway::build(&config).and_then(|gateway| gateway.run_server(&config, cli.upgrade));
    // The server has stopped (SIGTERM, SIGINT or an upgrade): send the spans still queued.
    if let Some(export) = export {
        export.shutdown();
    }
    if let Err(err) = result {
        eprintln!("error: gateway failed: {err}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
