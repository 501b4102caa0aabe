//! The scripts against a real `redis-server` (Debian's package; `cargo xtask test` installs
//! it), started by each test on a free port (never 6379) and killed by its process id.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use chat_core::cluster::Logged;
use chat_core::moderation::{Moderation, Sanction, SanctionKind};
use chat_core::{ConnId, LeaveReason};
use redis::Value;
use redis::aio::MultiplexedConnection;

use super::scripts::{self, Keys, Reply, Scripts};

const REDIS: &str = "/usr/bin/redis-server";

/// A `redis-server` of the test's own.
struct Redis {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    args: Vec<String>,
}

fn free_port() -> u16 {
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        if port != 6379 {
            return port;
        }
    }
}

impl Redis {
    async fn start(extra: &[&str]) -> Redis {
        assert!(
            PathBuf::from(REDIS).exists(),
            "{REDIS} is missing: run `cargo xtask test`, which installs Debian's redis-server"
        );
        let dir = tempfile::tempdir().expect("a temporary directory");
        let port = free_port();
        let args: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
        let child = Redis::spawn(port, dir.path(), &args);
        let redis = Redis {
            child,
            port,
            dir,
            args,
        };
        redis.wait_up().await;
        redis
    }

    fn spawn(port: u16, dir: &std::path::Path, args: &[String]) -> Child {
        let mut command = Command::new(REDIS);
        command
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .arg("--dir")
            .arg(dir)
            .args(if args.iter().any(|a| a == "--appendonly") {
                &[][..]
            } else {
                &["--appendonly", "no"][..]
            })
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        command.spawn().expect("start redis-server")
    }

    async fn wait_up(&self) {
        for _ in 0..100 {
            if let Ok(mut con) = self.try_connection().await
                && redis::cmd("PING")
                    .query_async::<String>(&mut con)
                    .await
                    .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("redis-server on port {} did not answer", self.port);
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    async fn try_connection(&self) -> redis::RedisResult<MultiplexedConnection> {
        let client = redis::Client::open(self.url())?;
        let config =
            redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(5)));
        client
            .get_multiplexed_async_connection_with_config(&config)
            .await
    }

    async fn connection(&self) -> MultiplexedConnection {
        self.try_connection().await.expect("a connection to Redis")
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Killed outright, then started again on the same port with the same files.
    async fn kill_and_restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = Redis::spawn(self.port, self.dir.path(), &self.args);
        self.wait_up().await;
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn scripts() -> Scripts {
    Scripts::new(Keys::new("t"), 2500)
}

async fn load(con: &mut MultiplexedConnection, s: &Scripts) {
    let mut pipe = redis::pipe();
    for cmd in s.load_commands() {
        pipe.add_command(cmd).ignore();
    }
    pipe.query_async::<()>(con).await.expect("scripts load");
}

async fn call(con: &mut MultiplexedConnection, cmd: redis::Cmd) -> Value {
    cmd.query_async::<Value>(con)
        .await
        .expect("a script's reply")
}

async fn claim(
    con: &mut MultiplexedConnection,
    s: &Scripts,
    node: &str,
    conn: u64,
    name: &str,
) -> Reply {
    let key = chat_core::name_key(name);
    let look = chat_core::look_key(name);
    let v = call(con, s.claim(node, ConnId(conn), &key, &look, name)).await;
    scripts::reply(&v).expect("a claim's reply")
}

async fn say(
    con: &mut MultiplexedConnection,
    s: &Scripts,
    node: &str,
    conn: u64,
    name: &str,
    origin: u64,
) -> Reply {
    let key = chat_core::name_key(name);
    let v = call(con, s.say(node, ConnId(conn), &key, name, "hi", origin)).await;
    scripts::reply(&v).expect("a message's reply")
}

/// A room with an epoch and the nodes `nodes` alive for `lease`.
async fn room(con: &mut MultiplexedConnection, s: &Scripts, nodes: &[&str], lease: Duration) {
    load(con, s).await;
    let taken = scripts::snapshot(&call(con, s.snapshot(0, 0, 50)).await).expect("a snapshot");
    assert_eq!(taken.snapshot.seq, 0);
    for node in nodes {
        call(con, s.beat(node, lease.as_millis() as u64)).await;
    }
}

/// Every entry of the log.
async fn log(con: &mut MultiplexedConnection) -> Vec<Logged> {
    let v: Value = redis::cmd("XRANGE")
        .arg(Keys::new("t").log)
        .arg("-")
        .arg("+")
        .query_async(con)
        .await
        .expect("XRANGE");
    // An XRANGE reply is an XREAD reply's entries: wrapped as one stream.
    let wrapped = Value::Array(vec![Value::Array(vec![Value::Nil, v])]);
    scripts::read(&wrapped)
        .into_iter()
        .filter_map(|(_, e)| e)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_names_claimed_by_two_nodes_at_once_each_have_exactly_one_winner() {
    let redis = Redis::start(&[]).await;
    let s = scripts();
    let mut con = redis.connection().await;
    room(&mut con, &s, &["a", "b"], Duration::from_secs(60)).await;
    let names: Vec<String> = (0..1000).map(|i| format!("user{i}")).collect();
    let race = |node: &'static str, spelled: fn(&str) -> String| {
        let names = names.clone();
        let url = redis.url();
        tokio::spawn(async move {
            let client = redis::Client::open(url).expect("client");
            let mut con = client
                .get_multiplexed_async_connection()
                .await
                .expect("connection");
            let s = scripts();
            let mut won = Vec::new();
            for (i, name) in names.iter().enumerate() {
                let name = spelled(name);
                if claim(&mut con, &s, node, i as u64, &name).await == Reply::Ok(None) {
                    won.push(i);
                }
            }
            won
        })
    };
    let (a, b) = (race("a", str::to_owned), race("b", str::to_uppercase));
    let (a, b) = (a.await.expect("a"), b.await.expect("b"));
    let mut winners = [0u32; 1000];
    for i in a.iter().chain(&b) {
        winners[*i] += 1;
    }
    assert!(
        winners.iter().all(|&w| w == 1),
        "every name has exactly one winner"
    );
    let joins = log(&mut con)
        .await
        .into_iter()
        .filter(|e| matches!(e, Logged::Joined { .. }))
        .count();
    assert_eq!(joins, 1000, "one logged join per name");
    eprintln!("name races: node a won {}, node b won {}", a.len(), b.len());
}

#[tokio::test]
async fn only_a_live_member_speaks_once_per_origin_and_only_its_own_connection_leaves() {
    let redis = Redis::start(&[]).await;
    let s = scripts();
    let mut con = redis.connection().await;
    room(&mut con, &s, &["a"], Duration::from_secs(60)).await;
    assert_eq!(claim(&mut con, &s, "a", 1, "ann").await, Reply::Ok(None));
    // The same connection asking again appends nothing; another is refused.
    assert_eq!(claim(&mut con, &s, "a", 1, "ann").await, Reply::Ok(None));
    assert_eq!(claim(&mut con, &s, "a", 2, "ANN").await, Reply::Taken);
    // A look-alike of a name online is refused with the holder's name.
    assert_eq!(
        claim(&mut con, &s, "a", 3, "аnn").await,
        Reply::LooksLike("ann".into())
    );
    assert_eq!(
        say(&mut con, &s, "a", 1, "ann", 1).await,
        Reply::Ok(Some(1))
    );
    assert_eq!(say(&mut con, &s, "a", 1, "ann", 1).await, Reply::Duplicate);
    assert_eq!(
        say(&mut con, &s, "a", 1, "ann", 2).await,
        Reply::Ok(Some(2))
    );
    assert_eq!(say(&mut con, &s, "a", 2, "ann", 3).await, Reply::NotMember);
    // A node without a lease speaks for nobody.
    assert_eq!(say(&mut con, &s, "z", 1, "ann", 4).await, Reply::Lapsed);
    assert_eq!(claim(&mut con, &s, "z", 1, "zed").await, Reply::Lapsed);
    let key = chat_core::name_key("ann");
    let wrong = call(&mut con, s.release("a", ConnId(2), &key, LeaveReason::Quit)).await;
    assert_eq!(wrong, Value::Int(0));
    let right = call(&mut con, s.release("a", ConnId(1), &key, LeaveReason::Quit)).await;
    assert_eq!(right, Value::Int(1));
    let entries = log(&mut con).await;
    assert_eq!(entries.len(), 4, "{entries:?}");
    assert!(matches!(
        &entries[3],
        Logged::Left { reason: LeaveReason::Quit, name, .. } if name == "ann"
    ));
    // The name is free again, and its look.
    assert_eq!(claim(&mut con, &s, "a", 3, "аnn").await, Reply::Ok(None));
}

#[tokio::test]
async fn a_node_whose_lease_ran_out_is_reaped_and_must_join_again() {
    let redis = Redis::start(&[]).await;
    let s = scripts();
    let mut con = redis.connection().await;
    room(&mut con, &s, &["a"], Duration::from_secs(60)).await;
    call(&mut con, s.beat("dead", 200)).await;
    for (i, name) in ["x", "y", "z"].iter().enumerate() {
        assert_eq!(
            claim(&mut con, &s, "dead", i as u64, name).await,
            Reply::Ok(None)
        );
    }
    assert_eq!(call(&mut con, s.reap()).await, Value::Int(0), "not yet");
    tokio::time::sleep(Duration::from_millis(400)).await;
    // A claim of a name held by a lapsed node's user reaps that node first.
    assert_eq!(claim(&mut con, &s, "a", 9, "x").await, Reply::Ok(None));
    let lost = log(&mut con)
        .await
        .into_iter()
        .filter(|e| {
            matches!(
                e,
                Logged::Left {
                    reason: LeaveReason::Lost,
                    ..
                }
            )
        })
        .count();
    assert_eq!(lost, 3, "each of the dead node's users left, once");
    assert_eq!(
        call(&mut con, s.reap()).await,
        Value::Int(0),
        "reaping is idempotent"
    );
    let beat = scripts::beat(&call(&mut con, s.beat("dead", 200)).await).expect("a beat");
    assert!(beat.lapsed, "the node learns it was written out");
    assert_eq!(say(&mut con, &s, "dead", 1, "y", 1).await, Reply::NotMember);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_for_three_leases_makes_nobody_leave() {
    let redis = Redis::start(&[]).await;
    let s = scripts();
    let mut con = redis.connection().await;
    let lease = Duration::from_secs(1);
    room(&mut con, &s, &["a", "b"], lease).await;
    assert_eq!(claim(&mut con, &s, "a", 1, "ann").await, Reply::Ok(None));
    assert_eq!(claim(&mut con, &s, "b", 1, "bob").await, Reply::Ok(None));
    redis.signal("-STOP");
    tokio::time::sleep(lease * 3).await;
    redis.signal("-CONT");
    assert_eq!(call(&mut con, s.reap()).await, Value::Int(0), "no leaves");
    let leaves = log(&mut con)
        .await
        .into_iter()
        .filter(|e| matches!(e, Logged::Left { .. }))
        .count();
    assert_eq!(leaves, 0);
    // Leases still run out when the nodes really are gone.
    tokio::time::sleep(lease + Duration::from_millis(300)).await;
    assert_eq!(call(&mut con, s.reap()).await, Value::Int(2));
}

#[tokio::test]
async fn a_log_that_lost_its_tail_starts_a_new_epoch_and_never_reuses_a_seq() {
    let mut redis = Redis::start(&["--appendonly", "yes", "--appendfsync", "everysec"]).await;
    let s = scripts();
    let mut con = redis.connection().await;
    room(&mut con, &s, &["a"], Duration::from_secs(60)).await;
    assert_eq!(claim(&mut con, &s, "a", 1, "ann").await, Reply::Ok(None));
    for origin in 1..=5 {
        say(&mut con, &s, "a", 1, "ann", origin).await;
    }
    let first = scripts::snapshot(&call(&mut con, s.snapshot(0, 0, 50)).await).expect("snapshot");
    assert_eq!(first.snapshot.seq, 5);
    assert_eq!(first.snapshot.recent.len(), 5);
    // What `everysec` may lose: the last writes. Here made certain: the log says 3, while a
    // node saw 5.
    redis::cmd("HSET")
        .arg(Keys::new("t").meta)
        .arg("s")
        .arg(3)
        .query_async::<()>(&mut con)
        .await
        .expect("HSET");
    // Past `everysec`'s second, so that the file holds it, then killed.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    redis.kill_and_restart().await;
    let mut con = redis.connection().await;
    load(&mut con, &s).await;
    let after = scripts::snapshot(&call(&mut con, s.snapshot(first.snapshot.epoch, 5, 50)).await)
        .expect("snapshot");
    assert!(after.snapshot.epoch > first.snapshot.epoch, "a new epoch");
    assert_eq!(
        after.snapshot.seq, 5,
        "numbering goes on after what was seen"
    );
    call(&mut con, s.beat("a", 60_000)).await;
    assert_eq!(
        say(&mut con, &s, "a", 1, "ann", 6).await,
        Reply::Ok(Some(6))
    );
}

#[tokio::test]
async fn a_redis_that_came_back_empty_starts_a_new_epoch_with_nobody_in() {
    let mut redis = Redis::start(&[]).await;
    let s = scripts();
    let mut con = redis.connection().await;
    room(&mut con, &s, &["a"], Duration::from_secs(60)).await;
    assert_eq!(claim(&mut con, &s, "a", 1, "ann").await, Reply::Ok(None));
    say(&mut con, &s, "a", 1, "ann", 1).await;
    let before = scripts::snapshot(&call(&mut con, s.snapshot(0, 0, 50)).await).expect("snapshot");
    redis.kill_and_restart().await;
    let mut con = redis.connection().await;
    load(&mut con, &s).await;
    // Before any snapshot, nobody may speak: the log has no epoch.
    assert_eq!(say(&mut con, &s, "a", 1, "ann", 2).await, Reply::NoEpoch);
    let beat = scripts::beat(&call(&mut con, s.beat("a", 60_000)).await).expect("beat");
    assert!(beat.lapsed);
    let after = scripts::snapshot(&call(&mut con, s.snapshot(before.snapshot.epoch, 1, 50)).await)
        .expect("snapshot");
    assert_ne!(after.snapshot.epoch, before.snapshot.epoch);
    assert_eq!((after.snapshot.seq, after.snapshot.members.len()), (0, 0));
}

/// Redis's own time, in Unix ms: what the scripts compare a sanction's end with.
async fn redis_ms(con: &mut MultiplexedConnection) -> u64 {
    let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(con).await.expect("TIME");
    secs * 1000 + micros / 1000
}

fn sanction(kind: SanctionKind, name: &str, until: u64) -> Sanction {
    Sanction {
        kind,
        name: name.into(),
        address: (kind == SanctionKind::Ban).then(|| "203.0.113.7".into()),
        until,
        by: "op".into(),
        reason: (kind == SanctionKind::Ban).then(|| "flood".into()),
    }
}

async fn moderate(
    con: &mut MultiplexedConnection,
    s: &Scripts,
    node: &str,
    moderation: &Moderation,
) -> Reply {
    let v = call(con, s.moderate(node, moderation)).await;
    scripts::reply(&v).expect("a moderation's reply")
}

/// The sanctions hash's fields, sorted, and how many ends are kept beside it.
async fn kept(con: &mut MultiplexedConnection) -> (Vec<String>, u64) {
    let keys = Keys::new("t");
    let mut fields: Vec<String> = redis::cmd("HKEYS")
        .arg(&keys.sanctions)
        .query_async(con)
        .await
        .expect("HKEYS");
    fields.sort();
    let ends: u64 = redis::cmd("ZCARD")
        .arg(&keys.sanction_ends)
        .query_async(con)
        .await
        .expect("ZCARD");
    (fields, ends)
}

async fn sanctions_in_snapshot(con: &mut MultiplexedConnection, s: &Scripts) -> Vec<Sanction> {
    let taken = scripts::snapshot(&call(con, s.snapshot(0, 0, 50)).await).expect("a snapshot");
    let mut all = taken.snapshot.sanctions;
    all.sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
    all
}

#[tokio::test]
async fn an_operators_action_is_logged_for_every_node_and_a_ban_or_mute_kept_until_lifted() {
    let redis = Redis::start(&[]).await;
    let s = scripts();
    let mut con = redis.connection().await;
    room(&mut con, &s, &["a"], Duration::from_secs(60)).await;
    let hour = redis_ms(&mut con).await + 3_600_000;
    let ban = sanction(SanctionKind::Ban, "Carol", hour);
    let mute = sanction(SanctionKind::Mute, "dave", hour);
    let actions = [
        Moderation::Operator { name: "op".into() },
        Moderation::Kick {
            name: "bob".into(),
            by: "op".into(),
            reason: Some("spam".into()),
        },
        Moderation::Sanction(ban.clone()),
        Moderation::Sanction(mute.clone()),
        Moderation::Notice {
            text: "be kind".into(),
            by: "admin".into(),
        },
    ];
    for action in &actions {
        assert_eq!(moderate(&mut con, &s, "a", action).await, Reply::Ok(None));
    }
    // Every entry reads back as the action it was, in order.
    assert_eq!(
        log(&mut con).await,
        actions
            .iter()
            .cloned()
            .map(Logged::Moderated)
            .collect::<Vec<_>>()
    );
    // Only the ban and the mute are kept, by kind and name key.
    assert_eq!(
        kept(&mut con).await,
        (vec!["ban:carol".to_owned(), "mute:dave".to_owned()], 2)
    );
    assert_eq!(
        sanctions_in_snapshot(&mut con, &s).await,
        [ban.clone(), mute.clone()]
    );
    // A ban made again on the name in another spelling replaces the one before.
    let again = Sanction {
        name: "CAROL".into(),
        until: hour + 60_000,
        ..ban.clone()
    };
    let again_action = Moderation::Sanction(again.clone());
    assert_eq!(
        moderate(&mut con, &s, "a", &again_action).await,
        Reply::Ok(None)
    );
    assert_eq!(
        sanctions_in_snapshot(&mut con, &s).await,
        [again, mute.clone()]
    );
    // A lift (in any spelling) drops it; a second one, of nothing held, is logged all the
    // same and drops nothing.
    let lift = Moderation::Lift {
        kind: SanctionKind::Ban,
        name: "carol".into(),
        by: "op".into(),
    };
    assert_eq!(moderate(&mut con, &s, "a", &lift).await, Reply::Ok(None));
    assert_eq!(moderate(&mut con, &s, "a", &lift).await, Reply::Ok(None));
    assert_eq!(kept(&mut con).await, (vec!["mute:dave".to_owned()], 1));
    assert_eq!(sanctions_in_snapshot(&mut con, &s).await, [mute]);
    let entries = log(&mut con).await;
    assert_eq!(entries.len(), actions.len() + 3);
    assert_eq!(entries.last(), Some(&Logged::Moderated(lift)));
}

#[tokio::test]
async fn a_ban_or_mute_that_is_over_is_dropped_from_redis() {
    let redis = Redis::start(&[]).await;
    let s = scripts();
    let mut con = redis.connection().await;
    room(&mut con, &s, &["a"], Duration::from_secs(60)).await;
    let now = redis_ms(&mut con).await;
    let short = sanction(SanctionKind::Ban, "carol", now + 300);
    let long = sanction(SanctionKind::Mute, "dave", now + 3_600_000);
    for s_ in [&short, &long] {
        let action = Moderation::Sanction(s_.clone());
        assert_eq!(moderate(&mut con, &s, "a", &action).await, Reply::Ok(None));
    }
    assert_eq!(
        sanctions_in_snapshot(&mut con, &s).await,
        [short, long.clone()]
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    // Over by Redis's clock: the snapshot no longer has it, nor does the hash.
    assert_eq!(
        sanctions_in_snapshot(&mut con, &s).await,
        std::slice::from_ref(&long)
    );
    assert_eq!(kept(&mut con).await, (vec!["mute:dave".to_owned()], 1));
    // The next action drops what ended meanwhile, too: the hash does not grow with time.
    let gone = sanction(SanctionKind::Ban, "eve", redis_ms(&mut con).await + 200);
    let action = Moderation::Sanction(gone);
    assert_eq!(moderate(&mut con, &s, "a", &action).await, Reply::Ok(None));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let notice = Moderation::Notice {
        text: "hello".into(),
        by: "admin".into(),
    };
    assert_eq!(moderate(&mut con, &s, "a", &notice).await, Reply::Ok(None));
    assert_eq!(kept(&mut con).await, (vec!["mute:dave".to_owned()], 1));
}

#[tokio::test]
async fn a_node_whose_lease_ran_out_moderates_nothing() {
    let mut redis = Redis::start(&[]).await;
    let s = scripts();
    let mut con = redis.connection().await;
    room(&mut con, &s, &["a"], Duration::from_secs(60)).await;
    call(&mut con, s.beat("late", 200)).await;
    let ban = Moderation::Sanction(sanction(
        SanctionKind::Ban,
        "carol",
        redis_ms(&mut con).await + 3_600_000,
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(moderate(&mut con, &s, "late", &ban).await, Reply::Lapsed);
    assert_eq!(moderate(&mut con, &s, "never", &ban).await, Reply::Lapsed);
    assert!(log(&mut con).await.is_empty(), "nothing appended");
    assert_eq!(kept(&mut con).await, (Vec::new(), 0), "nothing kept");
    // A Redis come back empty has no epoch: nothing is taken before a snapshot.
    redis.kill_and_restart().await;
    let mut con = redis.connection().await;
    load(&mut con, &s).await;
    call(&mut con, s.beat("a", 60_000)).await;
    assert_eq!(moderate(&mut con, &s, "a", &ban).await, Reply::NoEpoch);
    assert_eq!(kept(&mut con).await, (Vec::new(), 0));
}

#[tokio::test]
async fn bans_outlive_a_new_epoch_in_a_redis_that_kept_them() {
    let mut redis = Redis::start(&["--appendonly", "yes", "--appendfsync", "always"]).await;
    let s = scripts();
    let mut con = redis.connection().await;
    room(&mut con, &s, &["a"], Duration::from_secs(60)).await;
    let ban = sanction(
        SanctionKind::Ban,
        "carol",
        redis_ms(&mut con).await + 3_600_000,
    );
    let action = Moderation::Sanction(ban.clone());
    assert_eq!(moderate(&mut con, &s, "a", &action).await, Reply::Ok(None));
    let first = scripts::snapshot(&call(&mut con, s.snapshot(0, 0, 50)).await).expect("snapshot");
    redis.kill_and_restart().await;
    let mut con = redis.connection().await;
    load(&mut con, &s).await;
    // Killed with its file synced: the ban is there, also under a new epoch (a lost tail).
    let after = scripts::snapshot(&call(&mut con, s.snapshot(first.snapshot.epoch, 9, 50)).await)
        .expect("snapshot");
    assert!(after.snapshot.epoch > first.snapshot.epoch);
    assert_eq!(after.snapshot.sanctions, [ban]);
}

#[tokio::test]
async fn a_muted_member_s_line_is_refused_and_a_kick_writes_its_user_out() {
    let redis = Redis::start(&[]).await;
    let s = scripts();
    let mut con = redis.connection().await;
    room(&mut con, &s, &["a", "b"], Duration::from_secs(60)).await;
    assert_eq!(claim(&mut con, &s, "a", 1, "Dave").await, Reply::Ok(None));
    assert_eq!(claim(&mut con, &s, "b", 1, "bob").await, Reply::Ok(None));
    assert_eq!(
        say(&mut con, &s, "a", 1, "Dave", 1).await,
        Reply::Ok(Some(1))
    );
    // Muted on node b: a line of dave's on its way is refused, and no number is used up.
    let mute = sanction(SanctionKind::Mute, "DAVE", redis_ms(&mut con).await + 400);
    let action = Moderation::Sanction(mute);
    assert_eq!(moderate(&mut con, &s, "b", &action).await, Reply::Ok(None));
    assert_eq!(say(&mut con, &s, "a", 1, "Dave", 2).await, Reply::Muted);
    // Once it has ended, dave is heard again, under the next number.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        say(&mut con, &s, "a", 1, "Dave", 3).await,
        Reply::Ok(Some(2))
    );
    // A kick: logged, and bob written out of the room right after it.
    let kick = Moderation::Kick {
        name: "BOB".into(),
        by: "Dave".into(),
        reason: Some("spam".into()),
    };
    assert_eq!(moderate(&mut con, &s, "a", &kick).await, Reply::Ok(None));
    let entries = log(&mut con).await;
    let tail = &entries[entries.len() - 2..];
    assert_eq!(tail[0], Logged::Moderated(kick.clone()));
    assert!(
        matches!(
            &tail[1],
            Logged::Left { key, name, reason: LeaveReason::Kicked } if key == "bob" && name == "bob"
        ),
        "{tail:?}"
    );
    // Nothing left of bob in the room: his node's release appends nothing, the name is free.
    let key = chat_core::name_key("bob");
    let gone = call(
        &mut con,
        s.release("b", ConnId(1), &key, LeaveReason::Kicked),
    )
    .await;
    assert_eq!(gone, Value::Int(0));
    assert_eq!(say(&mut con, &s, "b", 1, "bob", 1).await, Reply::NotMember);
    assert_eq!(claim(&mut con, &s, "a", 2, "bob").await, Reply::Ok(None));
    // A kick of someone not in appends the entry only.
    let before = log(&mut con).await.len();
    let nobody = Moderation::Kick {
        name: "nobody".into(),
        by: "Dave".into(),
        reason: None,
    };
    assert_eq!(moderate(&mut con, &s, "a", &nobody).await, Reply::Ok(None));
    assert_eq!(log(&mut con).await.len(), before + 1);
}
