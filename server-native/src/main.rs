//! `chat-server`: parses flags, binds, prints where it listens, serves until Ctrl-C or
//! SIGTERM; SIGHUP reopens the message log.

use std::io::Write;
use std::process::ExitCode;

use chat_server::{Config, Listeners};
use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let config = Config::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> std::io::Result<()> {
    // Before the address lines, so that a signal right after them is handled, never fatal.
    let reopen = reopen_signal();
    let shutdown = shutdown_signal();
    let listeners = Listeners::bind(&config).await?;
    let (tcp, http) = listeners.local_addrs()?;
    // Scripts read these two lines to find the ports when they asked for port 0.
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "tcp listening on {tcp}")?;
    writeln!(stdout, "http listening on {http}")?;
    stdout.flush()?;
    drop(stdout);
    tracing::info!(%tcp, %http, "chat-server ready; chat with: nc {} {}, or in a browser: http://{http}/",
        tcp.ip(), tcp.port());
    chat_server::run_with_reopen(config, listeners, shutdown, reopen).await
}

/// Yields on every SIGHUP: the message log is reopened (logrotate renames the file, then
/// signals). Nothing else listens for it, so it no longer ends the server.
#[cfg(unix)]
fn reopen_signal() -> impl futures_util::Stream<Item = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let hangup = signal(SignalKind::hangup()).map_err(|err| {
        tracing::error!(%err, "cannot listen for SIGHUP; the log cannot be reopened");
    });
    futures_util::stream::unfold(hangup.ok(), |hangup| async move {
        let mut hangup = hangup?;
        hangup.recv().await?;
        tracing::info!("SIGHUP: reopening the message log");
        Some(((), Some(hangup)))
    })
}

#[cfg(not(unix))]
fn reopen_signal() -> impl futures_util::Stream<Item = ()> {
    futures_util::stream::pending()
}

/// Completes on Ctrl-C (SIGINT) or SIGTERM. SIGTERM is listened for from the call on, so one
/// that comes while the message log is read back at start still shuts down gracefully.
fn shutdown_signal() -> impl Future<Output = ()> {
    #[cfg(unix)]
    let sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
    async move {
        let ctrl_c = async {
            if let Err(err) = tokio::signal::ctrl_c().await {
                tracing::error!(%err, "cannot listen for Ctrl-C");
                std::future::pending::<()>().await;
            }
        };
        #[cfg(unix)]
        let terminate = async {
            match sigterm {
                Ok(mut sigterm) => {
                    sigterm.recv().await;
                }
                Err(err) => {
                    tracing::error!(%err, "cannot listen for SIGTERM");
                    std::future::pending::<()>().await;
                }
            }
        };
        #[cfg(not(unix))]
        let terminate = std::future::pending::<()>();
        tokio::select! {
            () = ctrl_c => {}
            () = terminate => {}
        }
    }
}
