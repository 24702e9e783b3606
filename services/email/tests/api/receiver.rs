//! A small SMTP server for the tests: it speaks just enough RFC 5321 for
//! lettre (greeting, EHLO, MAIL, RCPT, DATA, RSET, NOOP, QUIT), keeps every
//! mail it accepts, and can be told to refuse mails first.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// One accepted mail: the SMTP envelope and the message as sent.
#[derive(Debug, Clone, Default)]
pub(crate) struct Received {
    pub(crate) mail_from: String,
    pub(crate) rcpt_to: Vec<String>,
    pub(crate) data: String,
}

impl Received {
    /// The value of header `name` (unfolded), if present.
    pub(crate) fn header(&self, name: &str) -> Option<String> {
        let (head, _) = self.data.split_once("\r\n\r\n")?;
        let unfolded = head.replace("\r\n ", " ").replace("\r\n\t", " ");
        unfolded.split("\r\n").find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name)
                .then(|| value.trim().to_owned())
        })
    }

    /// The body with line endings as the service wrote them (`\n`).
    pub(crate) fn body(&self) -> String {
        let body = self.data.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        body.replace("\r\n", "\n")
    }
}

/// A running receiver on a free loopback port.
#[derive(Debug, Clone)]
pub(crate) struct Receiver {
    pub(crate) port: u16,
    mails: Arc<Mutex<Vec<Received>>>,
    /// Replies for the next MAIL commands, used up one by one; then `250`.
    refusals: Arc<Mutex<Vec<&'static str>>>,
}

impl Receiver {
    /// Starts a receiver that first answers `MAIL FROM` with each of
    /// `refusals` in turn (e.g. `"451 try again later"`), then accepts.
    pub(crate) async fn start(refusals: Vec<&'static str>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let receiver = Self {
            port: listener.local_addr().expect("address").port(),
            mails: Arc::default(),
            refusals: Arc::new(Mutex::new(refusals)),
        };
        let server = receiver.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(server.clone().session(stream));
            }
        });
        receiver
    }

    pub(crate) fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    pub(crate) fn mails(&self) -> Vec<Received> {
        self.mails.lock().expect("lock").clone()
    }

    /// Waits (polling, with a deadline) until `count` mails have arrived.
    pub(crate) async fn wait_for(&self, count: usize, deadline: Duration) -> Vec<Received> {
        let until = Instant::now() + deadline;
        loop {
            let mails = self.mails();
            if mails.len() >= count || Instant::now() >= until {
                return mails;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn session(self, stream: TcpStream) {
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read).lines();
        if write
            .write_all(b"220 test receiver ready\r\n")
            .await
            .is_err()
        {
            return;
        }
        let mut mail = Received::default();
        while let Ok(Some(line)) = lines.next_line().await {
            let upper = line.to_ascii_uppercase();
            let answer = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
                "250 test receiver".to_owned()
            } else if let Some(from) = upper.strip_prefix("MAIL FROM:") {
                let refusal = {
                    let mut refusals = self.refusals.lock().expect("lock");
                    (!refusals.is_empty()).then(|| refusals.remove(0))
                };
                match refusal {
                    Some(refusal) => refusal.to_owned(),
                    None => {
                        mail = Received {
                            mail_from: line[line.len() - from.len()..].trim().to_owned(),
                            ..Received::default()
                        };
                        "250 sender ok".to_owned()
                    }
                }
            } else if upper.starts_with("RCPT TO:") {
                mail.rcpt_to
                    .push(line["RCPT TO:".len()..].trim().to_owned());
                "250 recipient ok".to_owned()
            } else if upper == "DATA" {
                if write
                    .write_all(b"354 end with <CRLF>.<CRLF>\r\n")
                    .await
                    .is_err()
                {
                    return;
                }
                let mut data = Vec::new();
                while let Ok(Some(line)) = lines.next_line().await {
                    if line == "." {
                        break;
                    }
                    // Undo dot-stuffing (RFC 5321 4.5.2).
                    data.push(line.strip_prefix('.').map_or(line.clone(), str::to_owned));
                }
                mail.data = data.join("\r\n");
                self.mails
                    .lock()
                    .expect("lock")
                    .push(std::mem::take(&mut mail));
                "250 queued".to_owned()
            } else if upper == "QUIT" {
                let _ = write.write_all(b"221 bye\r\n").await;
                return;
            } else {
                // RSET, NOOP and anything else: fine.
                mail = Received::default();
                "250 ok".to_owned()
            };
            if write
                .write_all(format!("{answer}\r\n").as_bytes())
                .await
                .is_err()
            {
                return;
            }
        }
    }
}
