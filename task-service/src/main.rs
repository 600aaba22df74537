//! The task-service binary: read the configuration, set up logging, bind, and serve until
//! SIGTERM or SIGINT. Everything else lives in the library, which tests start the same way.
//! `task-service healthcheck` instead checks a running service on the same configuration: exit
//! 0 when `/readyz` on TASK_SERVICE_LISTEN answers 200, 1 otherwise (the container's HEALTHCHECK).

use std::process::ExitCode;

use common::config::{Env, exit_on_error};
use common::tracing_export::TraceExport;
use task_service::Config;
use task_service::config::TASK_SERVICE_LISTEN;
use tokio::net::TcpListener;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let config = exit_on_error(Config::from_env(&Env::from_process()));
    if std::env::args().nth(1).as_deref() == Some("healthcheck") {
        return common::healthcheck::run(config.listen, "/readyz");
    }
    let export = exit_on_error(config.tracing.as_ref().map(TraceExport::start).transpose());
    common::telemetry::init(&config.log, export.as_ref());
    let listener = match TcpListener::bind(config.listen).await {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!(
                "error: {TASK_SERVICE_LISTEN}: cannot listen on {}: {err}",
                config.listen
            );
            return ExitCode::FAILURE;
        }
    };
    let served = task_service::run(listener, config, shutdown_signal()).await;
    // Every request has been answered: send the spans still queued. The exporter blocks, so off
    // the runtime's threads.
    if let Some(export) = export {
        let _ = tokio::task::spawn_blocking(move || export.shutdown()).await;
    }
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves on the first SIGTERM (how orchestrators stop a process) or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
    tracing::info!("shutdown requested: finishing in-flight requests");
}
