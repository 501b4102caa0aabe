//! The Redis harness itself (`chat_tests::RedisServer`), against Debian's `redis-server`: it
//! starts on a port of its own, answers, pauses and resumes, comes back on the same port after
//! a kill (empty, or with what its AOF kept), and leaves no process behind.

use std::path::Path;
use std::time::{Duration, Instant};

use chat_tests::{RedisServer, RespValue, redis_installed, require};

/// A process with this pid exists (and is not a zombie: those were waited for).
fn process_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

fn bulk(text: &str) -> RespValue {
    RespValue::Bulk(text.as_bytes().to_vec())
}

#[test]
fn a_redis_of_its_own_answers_commands() {
    require!(redis_installed("a_redis_of_its_own_answers_commands"));
    let redis = RedisServer::start();
    assert_ne!(redis.port(), 6379);
    assert_eq!(redis.url(), format!("redis://127.0.0.1:{}/0", redis.port()));
    assert_eq!(redis.command(&["PING"]), RespValue::Simple("PONG".into()));
    assert!(
        redis
            .command(&["SET", "greeting", "hello\r\nworld"])
            .is_ok()
    );
    assert_eq!(redis.command(&["GET", "greeting"]), bulk("hello\r\nworld"));
    assert!(redis.command(&["GET", "nothing"]).is_nil());
    assert_eq!(
        redis.command(&["XADD", "chat:{chat}:log", "1-0", "t", "m"]),
        bulk("1-0")
    );
    assert_eq!(
        redis.command(&["XLEN", "chat:{chat}:log"]),
        RespValue::Integer(1)
    );
    // The server's own check at start: nothing may be evicted.
    assert_eq!(
        redis.command(&["CONFIG", "GET", "maxmemory-policy"]),
        RespValue::Array(vec![bulk("maxmemory-policy"), bulk("noeviction")])
    );
    assert!(
        redis
            .command(&["NO-SUCH-COMMAND"])
            .error()
            .is_some_and(|e| e.starts_with("ERR"))
    );
    assert!(redis.info("commandstats").contains("cmdstat_xadd:calls=1"));
    // Nothing persisted: no RDB and no AOF in its directory.
    let files: Vec<_> = std::fs::read_dir(redis.dir())
        .expect("its directory")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files, ["redis.out"], "{files:?}");
}

#[test]
fn debug_sleep_holds_every_client_for_its_length() {
    require!(redis_installed(
        "debug_sleep_holds_every_client_for_its_length"
    ));
    let redis = RedisServer::start();
    let mut sleeper = redis.connect(Duration::from_secs(5)).expect("connect");
    sleeper.send(&["DEBUG", "SLEEP", "0.5"]).expect("send");
    std::thread::sleep(Duration::from_millis(100));
    let asked = Instant::now();
    assert_eq!(redis.command(&["PING"]), RespValue::Simple("PONG".into()));
    assert!(
        asked.elapsed() >= Duration::from_millis(300),
        "{:?}",
        asked.elapsed()
    );
    assert!(sleeper.read().expect("DEBUG SLEEP's answer").is_ok());
}

#[test]
fn a_paused_redis_answers_nothing_until_resumed() {
    require!(redis_installed(
        "a_paused_redis_answers_nothing_until_resumed"
    ));
    let redis = RedisServer::start();
    let mut held = redis.connect(Duration::from_secs(5)).expect("connect");
    assert!(held.command(&["SET", "k", "1"]).expect("SET").is_ok());
    redis.pause();
    let asked = Instant::now();
    let answer = redis.try_command(&["PING"], Duration::from_millis(300));
    assert!(answer.is_err(), "a paused Redis answered {answer:?}");
    assert!(asked.elapsed() >= Duration::from_millis(250));
    // A command sent meanwhile on a connection held across the pause...
    held.send(&["INCR", "k"]).expect("send during the pause");
    std::thread::sleep(Duration::from_millis(200));
    redis.resume();
    // ... is answered once it runs again.
    assert_eq!(held.read().expect("INCR's answer"), RespValue::Integer(2));
    assert_eq!(redis.command(&["PING"]), RespValue::Simple("PONG".into()));
}

#[test]
fn a_killed_redis_restarts_empty_on_the_same_port() {
    require!(redis_installed(
        "a_killed_redis_restarts_empty_on_the_same_port"
    ));
    let mut redis = RedisServer::start();
    let (port, pid) = (redis.port(), redis.pid());
    assert!(redis.command(&["SET", "k", "v"]).is_ok());
    redis.kill();
    assert!(!redis.is_running());
    assert!(!process_exists(pid), "redis-server {pid} still exists");
    assert!(
        redis
            .try_command(&["PING"], Duration::from_millis(300))
            .is_err()
    );
    redis.restart();
    assert_eq!(redis.port(), port);
    assert_ne!(redis.pid(), pid);
    assert!(
        redis.command(&["GET", "k"]).is_nil(),
        "nothing was persisted"
    );
    // A paused one is killed too.
    redis.pause();
    redis.restart();
    assert_eq!(redis.command(&["PING"]), RespValue::Simple("PONG".into()));
}

#[test]
fn with_an_aof_a_restart_keeps_what_was_written() {
    require!(redis_installed(
        "with_an_aof_a_restart_keeps_what_was_written"
    ));
    let mut redis = RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"]);
    assert_eq!(
        redis.command(&["CONFIG", "GET", "appendfsync"]),
        RespValue::Array(vec![bulk("appendfsync"), bulk("always")])
    );
    for i in 1..=3 {
        let id = format!("{i}-0");
        redis.command(&["XADD", "chat:{chat}:log", &id, "t", "m"]);
    }
    redis.kill();
    redis.restart();
    assert_eq!(
        redis.command(&["XLEN", "chat:{chat}:log"]),
        RespValue::Integer(3)
    );
    assert!(
        redis
            .command(&["CONFIG", "SET", "appendfsync", "everysec"])
            .is_ok()
    );
}

#[test]
fn dropping_it_kills_redis_also_when_a_test_panics() {
    require!(redis_installed(
        "dropping_it_kills_redis_also_when_a_test_panics"
    ));
    let redis = RedisServer::start();
    let pid = redis.pid();
    drop(redis);
    assert!(
        !process_exists(pid),
        "redis-server {pid} outlived its handle"
    );

    let (tx, rx) = std::sync::mpsc::channel();
    let panicked = std::thread::spawn(move || {
        let redis = RedisServer::start();
        redis.pause();
        tx.send(redis.pid()).unwrap();
        panic!("a failing test, with its Redis paused");
    })
    .join();
    assert!(panicked.is_err());
    let pid = rx.recv().expect("the pid");
    assert!(!process_exists(pid), "redis-server {pid} outlived a panic");
}
