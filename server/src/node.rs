//! Starting a whole node: the server, then what runs beside it (JetStream, the system
//! account's request handlers, HTTP monitoring), then the client listener. The one place that
//! knows all of them; the server itself knows only the [`Subsystem`] hooks.

use std::sync::Arc;

use crate::jetstream::JetStream;
use crate::monitor::{claims, sysreq, Monitor};
use crate::server::{Server, ServerError, Subsystem};

/// Start `server` and everything its options ask for, in nats-server's order (the log lines
/// of each part come out as nats-server's do). Returns once the client listener is serving.
pub async fn start(server: &Arc<Server>) -> Result<(), ServerError> {
    let opts = server.options();
    server.announce();
    if opts.jetstream.is_some() {
        let js = JetStream::start(server).map_err(|e| ServerError::Config(e.to_string()))?;
        server.attach(js);
    }
    sysreq::install(server);
    claims::install(server);
    if opts.operator.is_some() {
        server.attach(crate::server::AccountExpiry::start(server));
    }
    if opts.http_port.is_some() || opts.metrics_port.is_some() {
        let monitor = Monitor::new(server.clone());
        let host = opts.http_host.clone().unwrap_or_else(|| opts.host.clone());
        if let Some(port) = opts.http_port {
            let addr = monitor
                .serve_http(&host, port, server.shutdown_signal())
                .await?;
            server.set_http_addr(addr);
        }
        if let Some(port) = opts.metrics_port {
            monitor
                .serve_metrics(&host, port, server.shutdown_signal())
                .await?;
        }
    }
    server.listen().await
}

impl Subsystem for JetStream {
    fn reloaded(&self, server: &Server) {
        self.sync_accounts(server);
    }

    /// Waiting pull requests hear `409 Server Shutdown` while their connections still stand.
    fn stopping(&self) {
        self.signal_pull_consumers();
    }

    fn shutdown(&self) {
        JetStream::shutdown(self);
    }
}
