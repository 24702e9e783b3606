//! What one system borrows from the shared PostgreSQL and RabbitMQ: four
//! databases, a broker namespace and a broker user per service (and the
//! console's), all named
//! after the system's id, so parallel tests never meet, and all removed
//! when the system stops.

use crate::process::Service;
use checkout_events::{PUBLISHERS, SUBSCRIPTIONS};
use checkout_messaging::access::{self, BrokerUser};
use checkout_messaging::{RetryPolicy, Topology};
use lapin::types::ShortString;
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use std::collections::HashMap;
use uuid::Uuid;

/// The services' `RETRY_DELAYS`, set explicitly (rather than inherited from
/// the developer's shell) because the retry queues are named after the
/// delays, and cleanup must know their names to delete them.
pub(crate) const RETRY_DELAYS: &str = "200ms,1s,3s";

/// Closes every broker connection whose name mentions `namespace` (the
/// runtime names its connection `<binary> (<namespace>.events)`), as an
/// operator would with `rabbitmqctl close_connection`; other systems on the
/// same broker are untouched. Returns how many were closed.
pub(crate) async fn close_broker_connections(namespace: &str) -> anyhow::Result<usize> {
    let marker = format!("({namespace}.events)");
    let listing = rabbitmqctl(&["list_connections", "pid", "client_properties", "-q"]).await?;
    let pids: Vec<String> = listing
        .lines()
        .filter(|line| line.contains(&marker))
        .filter_map(|line| line.split('\t').next().map(str::to_owned))
        .collect();
    for pid in &pids {
        rabbitmqctl(&["close_connection", pid, "e2e: simulated connection loss"]).await?;
    }
    Ok(pids.len())
}

async fn rabbitmqctl(args: &[&str]) -> anyhow::Result<String> {
    rabbitmqctl_with(args, None, &[]).await
}

/// `rabbitmqctl args`, with `stdin` piped in; exit codes in `also_fine`
/// count as success (e.g. 67, "no such user", for a delete).
async fn rabbitmqctl_with(
    args: &[&str],
    stdin: Option<&str>,
    also_fine: &[i32],
) -> anyhow::Result<String> {
    use tokio::io::AsyncWriteExt as _;
    let mut child = tokio::process::Command::new("rabbitmqctl")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot run rabbitmqctl: {e}"))?;
    // The pipe is dropped at the end of this block: the end of input.
    if let (Some(mut pipe), Some(text)) = (child.stdin.take(), stdin) {
        pipe.write_all(text.as_bytes()).await?;
    }
    let output = child.wait_with_output().await?;
    let fine = output.status.success()
        || output
            .status
            .code()
            .is_some_and(|code| also_fine.contains(&code));
    anyhow::ensure!(
        fine,
        "rabbitmqctl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Provisions `namespace` as a deployment is provisioned before its
/// services start: the definitions the code makes (a user per service with
/// a fresh random password, its permissions and topic permissions, the
/// topology) imported with `rabbitmqctl import_definitions`, then the
/// topology declared over AMQP with the administrator's `amqp_url` — which
/// fails if what was imported differs from what the code declares, and
/// returns only once every name exists. Returns each service's password;
/// the console's user gets `console_password`.
pub(crate) async fn provision_broker(
    amqp_url: &str,
    namespace: &str,
    console_password: &str,
) -> anyhow::Result<HashMap<Service, String>> {
    let topology = Topology::new(namespace)?;
    let retries = RetryPolicy::parse(RETRY_DELAYS)?;
    let mut passwords = HashMap::new();
    let mut users: Vec<(BrokerUser, String)> = Vec::new();
    for (user, _variable) in access::deployment_users(&topology, None) {
        if user.name == access::console_user(&topology).name {
            users.push((user, console_password.to_owned()));
            continue;
        }
        let service = Service::ALL
            .into_iter()
            .find(|s| access::service_user_name(&topology, s.name()) == user.name)
            .ok_or_else(|| anyhow::anyhow!("no service for broker user {}", user.name))?;
        let password = Uuid::now_v7().simple().to_string();
        passwords.insert(service, password.clone());
        users.push((user, password));
    }
    let definitions = access::definitions(&topology.plan(SUBSCRIPTIONS, &retries), &users);
    rabbitmqctl_with(&["import_definitions"], Some(&definitions.to_string()), &[]).await?;
    let connection = checkout_messaging::connect(amqp_url, "e2e provision")
        .await
        .map_err(|e| anyhow::anyhow!("cannot connect to the broker at {amqp_url}: {e}"))?;
    let provisioned = topology
        .provision(&connection, SUBSCRIPTIONS, &retries)
        .await;
    let _ = connection
        .close(200, ShortString::from("provisioned"))
        .await;
    provisioned.map_err(|e| anyhow::anyhow!("cannot provision {namespace}: {e}"))?;
    Ok(passwords)
}

/// Deletes the broker users of `namespace` (one per service); a user that
/// was never created is no error.
pub(crate) async fn delete_broker_users(namespace: &str) -> anyhow::Result<()> {
    let topology = Topology::new(namespace)?;
    // Concurrently: each `rabbitmqctl` call takes ~0.3 s.
    let mut deletions = tokio::task::JoinSet::new();
    let console = access::console_user(&topology).name;
    for user in PUBLISHERS
        .iter()
        .map(|publisher| access::service_user_name(&topology, publisher.service))
        .chain([console])
    {
        deletions.spawn(async move {
            rabbitmqctl_with(&["delete_user", &user], None, &[EX_NOUSER]).await
        });
    }
    while let Some(deleted) = deletions.join_next().await {
        deleted??;
    }
    Ok(())
}

/// `rabbitmqctl`'s exit code for "no such user".
const EX_NOUSER: i32 = 67;

/// Terminates every backend connected to the databases whose names start
/// with `prefix`, as `pg_terminate_backend` by an operator would. Returns
/// how many were terminated.
pub(crate) async fn terminate_database_connections(
    server_url: &str,
    prefix: &str,
) -> anyhow::Result<i64> {
    let mut conn = PgConnection::connect(&format!("{server_url}/postgres")).await?;
    let terminated: i64 = sqlx::query_scalar(
        "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE datname LIKE $1 || '%' AND pid <> pg_backend_pid()",
    )
    .bind(prefix)
    .fetch_one(&mut conn)
    .await?;
    Ok(terminated)
}

/// Lets database `name` refuse new connections and terminates the open
/// ones (`refuse`), or accept connections again.
pub(crate) async fn refuse_connections(
    server_url: &str,
    name: &str,
    refuse: bool,
) -> anyhow::Result<()> {
    let allow = if refuse { "false" } else { "true" };
    admin(
        server_url,
        format!("ALTER DATABASE {} ALLOW_CONNECTIONS {allow}", quoted(name)?),
    )
    .await?;
    if refuse {
        let mut conn = PgConnection::connect(&format!("{server_url}/postgres")).await?;
        sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = $1 AND pid <> pg_backend_pid()",
        )
        .bind(name)
        .execute(&mut conn)
        .await?;
        let _ = conn.close().await;
    }
    Ok(())
}

/// Runs `sql` (one or more statements) in database `name`.
pub(crate) async fn execute_in(server_url: &str, name: &str, sql: &str) -> anyhow::Result<()> {
    let url = format!("{server_url}/{name}");
    let mut connection = PgConnection::connect(&url)
        .await
        .map_err(|e| anyhow::anyhow!("cannot connect to {url}: {e}"))?;
    let result = sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
        .execute(&mut connection)
        .await;
    let _ = connection.close().await;
    result.map_err(|e| anyhow::anyhow!("{sql}: {e}"))?;
    Ok(())
}

/// The one `bigint` that `sql` selects in database `name` (a count, say).
pub(crate) async fn count_in(server_url: &str, name: &str, sql: &str) -> anyhow::Result<i64> {
    let url = format!("{server_url}/{name}");
    let mut connection = PgConnection::connect(&url)
        .await
        .map_err(|e| anyhow::anyhow!("cannot connect to {url}: {e}"))?;
    let result: Result<i64, _> = sqlx::query_scalar(AssertSqlSafe(sql.to_owned()))
        .fetch_one(&mut connection)
        .await;
    let _ = connection.close().await;
    result.map_err(|e| anyhow::anyhow!("{sql}: {e}"))
}

/// How many messages are ready in `queue` (a passive declare).
pub(crate) async fn queue_depth(amqp_url: &str, queue: &str) -> anyhow::Result<u32> {
    let connection = checkout_messaging::connect(amqp_url, "e2e queue depth")
        .await
        .map_err(|e| anyhow::anyhow!("cannot connect to the broker at {amqp_url}: {e}"))?;
    let channel = connection.create_channel().await?;
    let depth = checkout_messaging::depth::ready(&channel, queue).await;
    let _ = connection.close(200, ShortString::from("done")).await;
    depth.map_err(|e| anyhow::anyhow!("queue {queue}: {e}"))
}

/// Creates database `name` on the server at `server_url`.
pub(crate) async fn create_database(server_url: &str, name: &str) -> anyhow::Result<()> {
    let sql = format!("CREATE DATABASE {}", quoted(name)?);
    admin(server_url, sql).await
}

/// Drops database `name`, disconnecting whoever is still connected.
pub(crate) async fn drop_database(server_url: &str, name: &str) -> anyhow::Result<()> {
    let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quoted(name)?);
    admin(server_url, sql).await
}

/// Deletes every exchange and queue of `namespace` (what was provisioned
/// and what each service declared at start), messages included.
pub(crate) async fn delete_topology(amqp_url: &str, namespace: &str) -> anyhow::Result<()> {
    let topology = Topology::new(namespace)?;
    let retries = RetryPolicy::parse(RETRY_DELAYS)?;
    let connection = checkout_messaging::connect(amqp_url, "e2e cleanup")
        .await
        .map_err(|e| anyhow::anyhow!("cannot connect to the broker at {amqp_url}: {e}"))?;
    let channel = connection.create_channel().await?;
    let deleted = topology.delete(&channel, SUBSCRIPTIONS, &retries).await;
    let _ = connection
        .close(200, ShortString::from("e2e cleanup done"))
        .await;
    deleted.map_err(|e| anyhow::anyhow!("cannot delete the broker names of {namespace}: {e}"))
}

/// Runs one statement on the server's maintenance database (`postgres`).
async fn admin(server_url: &str, sql: String) -> anyhow::Result<()> {
    let url = format!("{server_url}/postgres");
    let mut connection = PgConnection::connect(&url)
        .await
        .map_err(|e| anyhow::anyhow!("cannot connect to PostgreSQL at {url}: {e}"))?;
    let result = sqlx::raw_sql(AssertSqlSafe(sql.clone()))
        .execute(&mut connection)
        .await;
    let _ = connection.close().await;
    result.map_err(|e| anyhow::anyhow!("{sql}: {e}"))?;
    Ok(())
}

/// A database name as an SQL identifier. DDL cannot take bind parameters,
/// so the name is spliced into the statement; it is one the harness made,
/// and this refuses anything but `[a-z0-9_]` to keep it that way.
fn quoted(name: &str) -> anyhow::Result<String> {
    let plain = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    anyhow::ensure!(plain, "refusing the database name {name:?}");
    Ok(format!("\"{name}\""))
}
