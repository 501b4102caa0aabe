//! `chat-server`: parses flags, binds, prints where it listens, serves until Ctrl-C or
//! SIGTERM; SIGHUP reopens the message log.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use chat_server::{Config, Listeners};
use clap::Parser;
use tracing_subscriber::EnvFilter;

/// How long, once the server has stopped, the process waits for blocking work still running
/// (reads of files whose answers shutdown cut short, an open on a file system that hangs):
/// none of it matters any more, and none may keep the process past its shutdown bound (the
/// README's: five seconds for the connections, then this).
const BLOCKING_GRACE: Duration = Duration::from_secs(1);

fn main() -> ExitCode {
    let config = Config::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(chat_server::config::diagnostics_in_colour(
            std::io::stderr().is_terminal(),
            std::env::var_os("NO_COLOR").as_deref(),
        ))
        // A closed standard error (`chat-server 2>&1 | tee`, the tee gone on Ctrl-C) loses the
        // diagnostics only: tracing would otherwise report it with eprintln!, which panics,
        // before the clients are told the server is shutting down.
        .log_internal_errors(false)
        .init();
    raise_fd_limit();
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    give_back_freed_memory();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let served = runtime.block_on(serve(config));
    // Dropping the runtime would wait for the blocking pool's work however long it takes.
    runtime.shutdown_timeout(BLOCKING_GRACE);
    match served {
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
    let tls = listeners.tls();
    // Once the server accepts: at once alone; with --redis, once in the room or given up
    // waiting for it. Scripts read these two lines to find the ports when they asked for 0.
    let ready = move || {
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "tcp listening on {tcp}");
        let _ = writeln!(stdout, "http listening on {http}");
        let _ = stdout.flush();
        drop(stdout);
        if tls {
            tracing::info!(%tcp, %http, "chat-server ready over TLS; chat with: \
                openssl s_client -quiet -connect {tcp}, or in a browser: https://{http}/");
        } else {
            tracing::info!(%tcp, %http, "chat-server ready; chat with: nc {} {}, or in a \
                browser: http://{http}/", tcp.ip(), tcp.port());
        }
    };
    chat_server::run_when_ready(config, listeners, shutdown, reopen, ready).await
}

/// Raises the soft limit on open files to the hard one, so that the defaults (1024 users and
/// their HTTP connections) fit even where the soft limit is 1024, and logs the result. Every
/// connection takes one descriptor; should they run out anyway, newcomers are refused and
/// connected users keep chatting.
fn raise_fd_limit() {
    let before = rlimit::Resource::NOFILE.get().ok();
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => match before {
            Some((soft, hard)) if soft < limit => {
                tracing::info!(limit, hard, "open file limit raised from {soft}");
            }
            _ => tracing::info!(limit, "open file limit"),
        },
        Err(err) => tracing::warn!(%err, ?before, "cannot raise the open file limit"),
    }
}

/// glibc keeps what is freed after a burst (a crowd joining, each join announced to everyone;
/// a flood of messages) in its per-thread arenas: an idle server with 10 000 WebSocket
/// connections held about twice the memory it used. A thread looks once a second and, when
/// more than 16 MiB and more than a third of the heap are free, hands the free pages back
/// (`malloc_trim`). Looking costs microseconds; trimming happens after bursts only.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn give_back_freed_memory() {
    const AT_LEAST: usize = 16 << 20;
    let spawned = std::thread::Builder::new()
        .name("malloc-trim".into())
        .spawn(|| {
            loop {
                std::thread::sleep(std::time::Duration::from_secs(1));
                // SAFETY: both only read or tidy glibc's own allocator state, under its locks.
                let info = unsafe { libc::mallinfo2() };
                if info.fordblks > AT_LEAST && info.fordblks > info.uordblks / 2 {
                    unsafe { libc::malloc_trim(0) };
                }
            }
        });
    if let Err(err) = spawned {
        tracing::warn!(%err, "cannot start the thread that gives freed memory back");
    }
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
