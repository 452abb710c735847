//! The daemon's engine clients, each as the user its work needs: the daemon's own, the
//! restore user, the safety reader, and the same at each peer's engine.

use crate::config::{Config, Peer, Secrets};
use crate::engine::{Engine, EngineOptions, Secret, Target};

/// The engine as in-fleet restores use it: as `[backups] restore_user` when set, else
/// as the daemon's own user. Its commands may wait on a sync, so the timeout is longer.
pub(super) fn restore_engine_for(config: &Config, secrets: &Secrets) -> Engine {
    let restore = config.backups.as_ref().and_then(|b| b.restore_user.clone());
    let (user, password) = match restore {
        Some(user) => (Some(user), secrets.backups_restore_password.clone()),
        None => (config.engine.user.clone(), secrets.engine_password.clone()),
    };
    let mut engine = engine_options(config, password);
    engine.user = user;
    engine.command_timeout = engine
        .command_timeout
        .max(std::time::Duration::from_secs(10));
    Engine::new(engine)
}

/// A client of each peer's engine as the daemon's own user (every node has it): the
/// clock-skew check reads their `TIME`.
pub(super) fn peer_engines(config: &Config, password: Option<String>) -> Vec<(String, Engine)> {
    config
        .peers
        .iter()
        .map(|p| {
            let options = at_peer(engine_options(config, password.clone()), config, p);
            (p.name.clone(), Engine::new(options))
        })
        .collect()
}

/// The engine (or `peer`'s) as the safety checks read the user's keys: as `[safety]
/// reader_user` when set, else as the daemon's own user (`restore_engine_for` does the
/// same for restores).
pub(super) fn reader_engine_for(config: &Config, secrets: &Secrets, peer: Option<&Peer>) -> Engine {
    let (user, password) = match config.safety.reader_user.clone() {
        Some(user) => (Some(user), secrets.safety_reader_password.clone()),
        None => (config.engine.user.clone(), secrets.engine_password.clone()),
    };
    let mut engine = engine_options(config, password);
    engine.user = user;
    if let Some(p) = peer {
        engine = at_peer(engine, config, p);
    }
    Engine::new(engine)
}

/// `options` pointed at `peer`'s engine, each call bounded by `fleet.peer_timeout`.
fn at_peer(mut options: EngineOptions, config: &Config, peer: &Peer) -> EngineOptions {
    options.target = Target::Tcp {
        host: peer.address.clone(),
        port: peer.engine_port,
    };
    options.connect_timeout = config.fleet.peer_timeout;
    options.command_timeout = config.fleet.peer_timeout;
    options
}

pub(super) fn engine_for(config: &Config, password: Option<String>) -> Engine {
    Engine::new(engine_options(config, password))
}

fn engine_options(config: &Config, password: Option<String>) -> EngineOptions {
    let target = match &config.engine.unix_socket {
        Some(path) => Target::Unix(path.clone()),
        None => Target::Tcp {
            host: config.engine_host(),
            port: config.engine.port,
        },
    };
    EngineOptions {
        target,
        user: config.engine.user.clone(),
        password: password.map(Secret::new),
        connect_timeout: config.engine.connect_timeout,
        command_timeout: config.engine.command_timeout,
    }
}
