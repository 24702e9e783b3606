//! Old published outbox rows and processed events are pruned, by the
//! relay too, each table with its own retention.

use crate::relay::*;
use crate::relay_refusals::unpublished;
use crate::support::{TestEnv, eventually};
use checkout_messaging::Relay;
use checkout_messaging::retention::{self, Pruned, Retention};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn pruning_deletes_only_published_rows_and_processed_events_past_their_retention() {
    let env = TestEnv::new().await;
    for seq in 0..4 {
        write(&env.pool, 0, seq).await;
    }
    // Published 8 and 6 days ago; written 30 days ago and still owed, one
    // of them parked.
    sqlx::raw_sql(
        "UPDATE outbox SET published_at = now() - interval '8 days' WHERE envelope->'data'->>'seq' = '0'; \
         UPDATE outbox SET published_at = now() - interval '6 days' WHERE envelope->'data'->>'seq' = '1'; \
         UPDATE outbox SET created_at = now() - interval '30 days' WHERE envelope->'data'->>'seq' IN ('2', '3'); \
         UPDATE outbox SET parked_at = now() - interval '20 days' WHERE envelope->'data'->>'seq' = '3';",
    )
    .execute(&env.pool)
    .await
    .expect("age the outbox");
    // More than two chunks of inbox rows handled 15 days ago, some 13 days
    // ago, an old event handled only yesterday (a late replay), and an id
    // that is not a UUID v7 (it must never be pruned early).
    sqlx::raw_sql(
        "CREATE FUNCTION pg_temp.v7(at timestamptz, n bigint) RETURNS uuid LANGUAGE sql AS \
             $$ SELECT (lpad(to_hex((extract(epoch FROM at) * 1000)::bigint), 12, '0') \
                        || '7' || substr(md5(n::text), 1, 3) || '8' || substr(md5(n::text), 4, 15))::uuid $$; \
         INSERT INTO processed_events (event_id, handler, processed_at) \
             SELECT pg_temp.v7(now() - interval '15 days' - g * interval '1 ms', g), 'probe', \
                    now() - interval '15 days' \
             FROM generate_series(1, 25000) g; \
         INSERT INTO processed_events (event_id, handler, processed_at) \
             SELECT pg_temp.v7(now() - interval '13 days', g), 'probe', now() - interval '13 days' \
             FROM generate_series(1, 10) g; \
         INSERT INTO processed_events (event_id, handler, processed_at) VALUES \
             (pg_temp.v7(now() - interval '30 days', 0), 'probe', now() - interval '1 day'), \
             ('ffffffff-ffff-4fff-bfff-ffffffffffff', 'probe', now() - interval '1 day');",
    )
    .execute(&env.pool)
    .await
    .expect("age the inbox");

    let started = Instant::now();
    let pruned = retention::prune(&env.pool, Retention::default())
        .await
        .expect("prune");
    println!("pruned {pruned:?} in {:?}", started.elapsed());
    assert_eq!(
        pruned,
        Pruned {
            outbox: 1,
            inbox: 25_000
        }
    );
    assert_eq!(env.count("SELECT count(*) FROM outbox").await, 3);
    assert_eq!(unpublished(&env).await, 2, "owed rows are never pruned");
    assert_eq!(
        env.count("SELECT count(*) FROM processed_events").await,
        12,
        "rows handled within 14 days are kept"
    );
    assert_eq!(
        retention::prune(&env.pool, Retention::default())
            .await
            .expect("prune"),
        Pruned::default(),
        "nothing left to prune"
    );
    env.cleanup().await;
}

#[tokio::test]
async fn the_relay_prunes_both_tables_with_its_retentions() {
    let env = TestEnv::new().await;
    write(&env.pool, 0, 0).await;
    sqlx::raw_sql(
        "UPDATE outbox SET published_at = now() - interval '2 hours'; \
         INSERT INTO processed_events (event_id, handler, processed_at) VALUES \
             ((lpad(to_hex((extract(epoch FROM now() - interval '3 hours') * 1000)::bigint), 12, '0') \
               || '70008000000000000000')::uuid, 'probe', now() - interval '3 hours'), \
             ($$00000000-0000-7000-8000-000000000001$$, 'probe', now() - interval '1 hour');",
    )
    .execute(&env.pool)
    .await
    .expect("old rows");
    let shutdown = CancellationToken::new();
    let relay = Relay::new(env.pool.clone(), env.topology.exchange())
        .with_retention(Duration::from_secs(3600))
        .with_inbox_retention(Duration::from_secs(2 * 3600));
    let task = tokio::spawn(relay.run(env.broker.clone(), shutdown.clone()));
    assert!(
        eventually(Duration::from_secs(10), || async {
            env.count("SELECT count(*) FROM outbox").await == 0
                && env.count("SELECT count(*) FROM processed_events").await == 1
        })
        .await,
        "pruned on the relay's first idle moment"
    );
    shutdown.cancel();
    task.await.expect("joined").expect("relay stopped cleanly");
    env.cleanup().await;
}
