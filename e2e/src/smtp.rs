//! A mail sink for a system's Email service: just enough SMTP for lettre
//! to deliver to it (greeting, EHLO, MAIL, RCPT, DATA, QUIT, all accepted),
//! counting the mails it takes, so a test sees the sender really send and
//! `smtp_refuse` really hold mail back. It keeps no content: what a mail
//! says is the Email service's own tests' business.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A running sink; dropping it stops accepting.
#[derive(Debug)]
pub struct MailSink {
    port: u16,
    accepted: Arc<AtomicUsize>,
    server: JoinHandle<()>,
}

impl MailSink {
    /// Listens on a free port of 127.0.0.1.
    pub(crate) async fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        let server = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(converse(stream, counter.clone()));
            }
        });
        Ok(Self {
            port,
            accepted,
            server,
        })
    }

    /// `smtp://127.0.0.1:<port>`, the Email service's `SMTP_URL`.
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// How many mails it has taken so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for MailSink {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// One SMTP session: every command is accepted; a mail counts once its
/// data is complete (the `.` line), as a server's `250` after DATA is
/// the point where the mail is the server's.
async fn converse(stream: TcpStream, accepted: Arc<AtomicUsize>) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    let mut in_data = false;
    let mut reply: Option<&[u8]> = Some(b"220 e2e mail sink\r\n");
    loop {
        if let Some(answer) = reply.take()
            && write.write_all(answer).await.is_err()
        {
            return;
        }
        let Ok(Some(line)) = lines.next_line().await else {
            return;
        };
        if in_data {
            if line == "." {
                in_data = false;
                accepted.fetch_add(1, Ordering::SeqCst);
                reply = Some(b"250 queued\r\n");
            }
            continue;
        }
        let verb = line.get(..4).unwrap_or_default().to_ascii_uppercase();
        reply = Some(match verb.as_str() {
            "DATA" => {
                in_data = true;
                b"354 go ahead\r\n"
            }
            "QUIT" => {
                let _ = write.write_all(b"221 bye\r\n").await;
                return;
            }
            _ => b"250 ok\r\n",
        });
    }
}
