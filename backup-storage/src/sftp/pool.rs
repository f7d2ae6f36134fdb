//! A small pool of SFTP connections: requests go to the least busy live connection; a new
//! one is opened while every connection is busy and the pool is below its size.

use std::ops::Deref;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use super::builder::Settings;
use super::connection::Connection;
use crate::error::Result;

/// The connections of one store.
#[derive(Debug)]
pub(crate) struct Pool {
    settings: Arc<Settings>,
    state: Mutex<State>,
    connected: Notify,
}

#[derive(Debug, Default)]
struct State {
    connections: Vec<Arc<Connection>>,
    /// Connections being opened now.
    opening: usize,
}

/// A connection lent to one operation (counted as busy until dropped).
#[derive(Debug)]
pub(crate) struct Lease(Arc<Connection>);

impl Lease {
    fn new(connection: Arc<Connection>) -> Self {
        connection.begin();
        Self(connection)
    }

    /// The shared connection, for work that outlives the lease's borrow (streams).
    pub(crate) fn shared(&self) -> Arc<Connection> {
        self.0.clone()
    }
}

impl Deref for Lease {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        &self.0
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.0.end();
    }
}

enum Next {
    Use(Arc<Connection>),
    Open,
    Wait,
}

impl Pool {
    pub(crate) fn new(settings: Arc<Settings>) -> Self {
        Self {
            settings,
            state: Mutex::new(State::default()),
            connected: Notify::new(),
        }
    }

    pub(crate) fn settings(&self) -> &Settings {
        &self.settings
    }

    fn next(&self) -> Next {
        let Ok(mut state) = self.state.lock() else {
            // A panic while holding the lock cannot leave the list inconsistent.
            return Next::Open;
        };
        state.connections.retain(|c| !c.is_broken());
        let least = state
            .connections
            .iter()
            .min_by_key(|c| c.in_flight())
            .cloned();
        let room = state.connections.len() + state.opening < self.settings.max_connections;
        match least {
            Some(c) if c.in_flight() == 0 || !room => Next::Use(c),
            _ if room => {
                state.opening += 1;
                Next::Open
            }
            Some(c) => Next::Use(c),
            None => Next::Wait,
        }
    }

    /// A connection for one operation.
    pub(crate) async fn lease(&self) -> Result<Lease> {
        loop {
            match self.next() {
                Next::Use(c) => return Ok(Lease::new(c)),
                Next::Wait => {
                    let notified = self.connected.notified();
                    // Re-check: a connection may have arrived before we started waiting.
                    if let Next::Use(c) = self.next() {
                        return Ok(Lease::new(c));
                    }
                    notified.await;
                }
                Next::Open => {
                    let opened = Connection::open(&self.settings).await.map(Arc::new);
                    let fallback = {
                        let mut state = match self.state.lock() {
                            Ok(s) => s,
                            Err(poisoned) => poisoned.into_inner(),
                        };
                        state.opening = state.opening.saturating_sub(1);
                        match &opened {
                            Ok(c) => {
                                state.connections.push(c.clone());
                                None
                            }
                            Err(_) => state
                                .connections
                                .iter()
                                .filter(|c| !c.is_broken())
                                .min_by_key(|c| c.in_flight())
                                .cloned(),
                        }
                    };
                    self.connected.notify_waiters();
                    return match (opened, fallback) {
                        (Ok(c), _) => Ok(Lease::new(c)),
                        // An extra connection failed: the existing ones still serve.
                        (Err(_), Some(c)) => Ok(Lease::new(c)),
                        (Err(e), None) => Err(e),
                    };
                }
            }
        }
    }

    /// Connections open now (live ones).
    pub(crate) fn open_connections(&self) -> usize {
        self.state
            .lock()
            .map(|s| s.connections.iter().filter(|c| !c.is_broken()).count())
            .unwrap_or(0)
    }
}
