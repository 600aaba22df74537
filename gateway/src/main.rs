//! The `gateway` binary: serve (the default), or mint a development token.

use clap::{Parser, Subcommand};
use common::config::{Env, exit_on_error};
use common::telemetry::{self, LogSettings};
use gateway::mint::{MintRequest, mint_token, parse_ttl};
use gateway::{Config, Gateway};

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
}

fn main() {
    let cli = Cli::parse();
    let env = Env::from_process();
    if let Some(Command::MintToken { sub, email, ttl }) = cli.command {
        let token = exit_on_error(mint_token(&env, &MintRequest { sub, email, ttl }));
        println!("{token}");
        return;
    }
    let config = exit_on_error(Config::from_env(&env));
    telemetry::init(&exit_on_error(LogSettings::from_env(&env)));
    let result =
        Gateway::build(&config).and_then(|gateway| gateway.run_server(&config, cli.upgrade));
    if let Err(err) = result {
        eprintln!("error: gateway failed: {err}");
        std::process::exit(1);
    }
}
