//! One connection: the connection limit, TLS negotiation, then the protocol loop with this
//! connection's own login and statement handlers.
//!
//! The loop is ours rather than `pgwire::tokio::process_socket` for what the trust boundary needs
//! and pgwire does not do: a client that has not logged in may send only a few kilobytes in all
//! (pgwire would buffer a message of up to 1 GiB for it), a login must finish within the startup
//! timeout, and an idle logged-in connection is closed after the idle timeout.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use pgwire::api::{ClientInfo, PgWireConnectionState, PgWireServerHandlers};
use pgwire::error::{ErrorInfo, PgWireError};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use pgwire::tokio::server::{negotiate_tls, process_error, process_message};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::codec::{Framed, FramedParts};

use crate::Shared;
use crate::auth::{Cancels, Login};
use crate::query::Statements;

/// What a client may send in all before it has logged in: a startup packet (pgwire caps it at
/// 10 000 bytes), the two SCRAM messages and some slack. PostgreSQL's own limits are of this size.
pub(crate) const BEFORE_LOGIN_BYTES: usize = 32 * 1024;

/// The handlers of one connection (each is asked for once per connection, so the login's state
/// and the session it opens belong to this connection alone).
struct Handlers {
    login: Arc<Login>,
    statements: Arc<Statements>,
    cancels: Arc<Cancels>,
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl pgwire::api::query::SimpleQueryHandler> {
        self.statements.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl pgwire::api::query::ExtendedQueryHandler> {
        self.statements.clone()
    }

    fn startup_handler(&self) -> Arc<impl pgwire::api::auth::StartupHandler> {
        self.login.clone()
    }

    fn cancel_handler(&self) -> Arc<impl pgwire::api::cancel::CancelHandler> {
        self.cancels.clone()
    }
}

/// The client's stream, counting what an unauthenticated client sends: past
/// [`BEFORE_LOGIN_BYTES`] the read fails and the connection closes.
struct Capped<S> {
    io: S,
    read: usize,
    logged_in: Arc<AtomicBool>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Capped<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.io).poll_read(cx, buf);
        if !this.logged_in.load(Ordering::Acquire) {
            this.read += buf.filled().len() - before;
            if this.read > BEFORE_LOGIN_BYTES {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("more than {BEFORE_LOGIN_BYTES} bytes before logging in"),
                )));
            }
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Capped<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

pub(crate) async fn serve(
    mut socket: TcpStream,
    peer: SocketAddr,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    shared: Arc<Shared>,
    open: usize,
    pending: Result<crate::door::Pending, String>,
) {
    if open > shared.limits.max_connections {
        tracing::warn!(%peer, open, limit = shared.limits.max_connections, "server: connection refused, too many connections");
        // An ErrorResponse in the clear, as PostgreSQL sends before TLS: a message, no data.
        let message = format!(
            "sorry, too many clients already (the server's limit is {})",
            shared.limits.max_connections
        );
        let _ = socket.write_all(&refusal(&message)).await;
        return;
    }
    let pending = match pending {
        Ok(p) => p,
        Err(message) => {
            tracing::warn!(%peer, "server: connection refused: {message}");
            let _ = socket.write_all(&refusal(&message)).await;
            return;
        }
    };
    match session(socket, acceptor, shared, pending).await {
        Ok(()) => tracing::debug!(%peer, "server: connection closed"),
        Err(e) => tracing::info!(%peer, error = %e, "server: connection ended with an error"),
    }
}

async fn session(
    socket: TcpStream,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    shared: Arc<Shared>,
    pending: crate::door::Pending,
) -> io::Result<()> {
    let startup = tokio::time::sleep(shared.limits.login_timeout);
    tokio::pin!(startup);
    let logged_in = Arc::new(AtomicBool::new(false));
    let handlers = Handlers {
        login: Arc::new(Login::new(shared.clone(), logged_in.clone(), pending)),
        statements: Arc::new(Statements::new(shared.clone())),
        cancels: Arc::new(Cancels { shared: shared.clone() }),
    };
    let negotiated = tokio::select! {
        () = &mut startup => return Ok(()),
        n = negotiate_tls(socket, acceptor) => n?,
    };
    // a direct TLS hello to a server without TLS: nothing to talk about
    let Some(framed) = negotiated else { return Ok(()) };
    let old = framed.into_parts();
    // Bytes that came in clear behind the SSLRequest must not be taken as sent over TLS (a
    // man in the middle could append them: PostgreSQL's CVE-2021-23214).
    if old.codec.client_info.is_secure() && !old.read_buf.is_empty() {
        tracing::info!(peer = %old.codec.client_info.socket_addr(), "plaintext bytes after the SSLRequest: closing");
        return Ok(());
    }
    let mut parts = FramedParts::new(
        Capped {
            io: old.io,
            read: old.read_buf.len(),
            logged_in: logged_in.clone(),
        },
        old.codec,
    );
    parts.read_buf = old.read_buf;
    parts.write_buf = old.write_buf;
    let mut socket = Framed::from_parts(parts);

    let login = handlers.startup_handler();
    let simple = handlers.simple_query_handler();
    let extended = handlers.extended_query_handler();
    let copy = handlers.copy_handler();
    let cancel = handlers.cancel_handler();
    loop {
        let logging_in = matches!(
            socket.state(),
            PgWireConnectionState::AwaitingStartup | PgWireConnectionState::AuthenticationInProgress
        );
        let idle = shared.limits.idle_timeout;
        let next = tokio::select! {
            biased;
            () = shared.stopping.cancelled() => Next::Stopping,
            n = async {
                if logging_in {
                    tokio::select! {
                        () = &mut startup => Next::LoginTimedOut,
                        m = socket.next() => Next::Message(m),
                    }
                } else if let Some(idle) = idle {
                    match tokio::time::timeout(idle, socket.next()).await {
                        Ok(m) => Next::Message(m),
                        Err(_) => Next::Idle(idle),
                    }
                } else {
                    Next::Message(socket.next().await)
                }
            } => n,
        };
        let next = match next {
            Next::Message(m) => m,
            Next::LoginTimedOut => {
                tracing::info!(peer = %socket.socket_addr(), "login timed out");
                return Ok(());
            }
            Next::Idle(idle) => {
                let info = ErrorInfo::new(
                    "FATAL".into(),
                    "57P05".into(),
                    format!("terminating connection: idle for {}", humantime(idle)),
                );
                let _ = socket.send(PgWireBackendMessage::ErrorResponse(info.into())).await;
                let _ = socket.close().await;
                return Ok(());
            }
            Next::Stopping => {
                if !logging_in {
                    let info = ErrorInfo::new(
                        "FATAL".into(),
                        "57P01".into(),
                        "terminating connection due to administrator command: the server is shutting down".into(),
                    );
                    let _ = socket.send(PgWireBackendMessage::ErrorResponse(info.into())).await;
                }
                let _ = socket.close().await;
                return Ok(());
            }
        };
        let msg = match next {
            Some(Ok(m)) => m,
            Some(Err(e)) => {
                // an undecodable message or a read error (including the cap above)
                tracing::info!(peer = %socket.socket_addr(), error = %e, "server: closing the connection");
                return Ok(());
            }
            None => return Ok(()),
        };
        if matches!(msg, PgWireFrontendMessage::Terminate(_)) {
            return Ok(());
        }
        // a cancel request is the whole of its connection
        let cancel_request = matches!(msg, PgWireFrontendMessage::CancelRequest(_));
        let extended_query = match socket.state() {
            PgWireConnectionState::CopyInProgress(e) => e,
            _ => msg.is_extended_query(),
        };
        if let Err(e) = process_message(
            msg,
            &mut socket,
            login.clone(),
            simple.clone(),
            extended.clone(),
            copy.clone(),
            cancel.clone(),
        )
        .await
        {
            let fatal = fatal(&e);
            process_error(&mut socket, e, extended_query).await?;
            // any failure during the login ends the connection: pgwire would otherwise go on to
            // "ready for query" after a non-fatal one
            if fatal || logging_in {
                return Ok(());
            }
        }
        if cancel_request {
            return Ok(());
        }
    }
}

/// What ended the wait for a client's next message.
enum Next<M> {
    Message(M),
    LoginTimedOut,
    Idle(Duration),
    Stopping,
}

fn fatal(e: &PgWireError) -> bool {
    match e {
        PgWireError::UserError(info) => info.is_fatal(),
        // protocol errors of the client: pgwire answers them as errors; a login that went wrong
        // this way ends the connection
        _ => false,
    }
}

fn humantime(d: Duration) -> String {
    if d.as_secs() > 0 && d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{} ms", d.as_millis())
    }
}

/// A protocol-level ErrorResponse (FATAL 53300) for a client turned away before startup.
fn refusal(message: &str) -> Vec<u8> {
    let mut body = Vec::new();
    for (field, value) in [(b'S', "FATAL"), (b'V', "FATAL"), (b'C', "53300"), (b'M', message)] {
        body.push(field);
        body.extend_from_slice(value.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut msg = vec![b'E'];
    msg.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    msg.extend_from_slice(&body);
    msg
}
