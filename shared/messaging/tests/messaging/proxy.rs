//! A TCP proxy in front of RabbitMQ, for the relay tests of a broker that
//! stops answering on a live connection.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::AbortHandle;

/// A TCP proxy in front of RabbitMQ that can hold back everything the
/// broker sends (confirms, replies), as a broker that stops answering on
/// a live connection would. What the client sends still goes through.
pub(crate) struct Proxy {
    /// An AMQP URL that connects through the proxy.
    pub(crate) url: String,
    hold: watch::Sender<bool>,
    opened: Arc<AtomicU64>,
    /// The copying tasks of every connection so far.
    forwards: Arc<Mutex<Vec<AbortHandle>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub(crate) async fn start() -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("local address").port();
        let (hold, held) = watch::channel(false);
        let opened = Arc::new(AtomicU64::new(0));
        let counter = opened.clone();
        let forwards = Arc::new(Mutex::new(Vec::new()));
        let spawned = forwards.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let broker = TcpStream::connect("127.0.0.1:5672")
                    .await
                    .expect("rabbitmq is up");
                let (client, broker) = (Arc::new(client), Arc::new(broker));
                let up = tokio::spawn(forward(
                    client.clone(),
                    broker.clone(),
                    None,
                    Some(counter.clone()),
                ));
                let down = tokio::spawn(forward(broker, client, Some(held.clone()), None));
                if let Ok(mut forwards) = spawned.lock() {
                    forwards.extend([up.abort_handle(), down.abort_handle()]);
                }
            }
        });
        Proxy {
            url: format!("amqp://guest:guest@127.0.0.1:{port}/%2f"),
            hold,
            opened,
            forwards,
            task,
        }
    }

    /// Cuts every connection made through the proxy, as a network failure
    /// would: both sockets close, whatever was held back is lost.
    pub(crate) fn sever(&self) {
        if let Ok(forwards) = self.forwards.lock() {
            forwards.iter().for_each(AbortHandle::abort);
        }
    }

    /// Holds back (`true`) or lets through (`false`) what the broker sends.
    pub(crate) fn hold(&self, on: bool) {
        self.hold.send_replace(on);
    }

    /// How many channels clients have asked to open through the proxy.
    pub(crate) fn channels_opened(&self) -> u64 {
        self.opened.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A `channel.open` method frame after its type and channel number: size
/// 5, class 20, method 10, an empty reserved short string, frame end.
const CHANNEL_OPEN: &[u8] = &[0, 0, 0, 5, 0, 20, 0, 10, 0, 0xCE];

/// Copies `from` to `to`, waiting while `held` says so; counts the
/// `channel.open` frames that pass into `opened`.
async fn forward(
    from: Arc<TcpStream>,
    to: Arc<TcpStream>,
    held: Option<watch::Receiver<bool>>,
    opened: Option<Arc<AtomicU64>>,
) {
    let mut buffer = vec![0u8; 64 * 1024];
    // The end of the previous read, so a frame split across reads is seen.
    let mut tail: Vec<u8> = Vec::new();
    loop {
        let n = match read(&from, &mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if let Some(opened) = &opened {
            let mut seen = std::mem::take(&mut tail);
            seen.extend_from_slice(&buffer[..n]);
            let found = seen
                .windows(CHANNEL_OPEN.len())
                .filter(|w| *w == CHANNEL_OPEN)
                .count();
            opened.fetch_add(found as u64, Ordering::SeqCst);
            tail = seen[seen.len().saturating_sub(CHANNEL_OPEN.len() - 1)..].to_vec();
        }
        if let Some(held) = &held {
            let mut held = held.clone();
            if held.wait_for(|on| !on).await.is_err() {
                return;
            }
        }
        if write_all(&to, &buffer[..n]).await.is_err() {
            return;
        }
    }
}

async fn read(stream: &TcpStream, buffer: &mut [u8]) -> std::io::Result<usize> {
    loop {
        stream.readable().await?;
        match stream.try_read(buffer) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            other => return other,
        }
    }
}

async fn write_all(stream: &TcpStream, mut bytes: &[u8]) -> std::io::Result<()> {
    while !bytes.is_empty() {
        stream.writable().await?;
        match stream.try_write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
