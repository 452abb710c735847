//! Every route the daemon serves, in one table: its method, its path template and the
//! class whose concurrency limit it counts against. The router is built from this table
//! and nothing else, so the table, the router and the OpenAPI document can be compared
//! (`routes_tests.rs`): a route cannot be served without being declared here.

use super::{backups, logs, restores, upgrades};
use crate::daemon::State;
use axum::Router;
use axum::routing::{MethodRouter, get, post};
use std::sync::Arc;

/// What a request costs, for the per-class concurrency limits (`[api.limits]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Answered from memory or one local engine read: health, readiness, node status.
    Cheap,
    /// Asks every peer's daemon: the fleet view.
    Fanout,
    /// Renders much, reads S3 or changes state: metrics, logs, backups, restores,
    /// safety jobs and upgrade steps.
    Heavy,
}

impl Class {
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Cheap => "cheap",
            Class::Fanout => "fanout",
            Class::Heavy => "heavy",
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub class: Class,
    /// The route's handler, as a method router for its one method.
    endpoint: fn() -> MethodRouter<Arc<State>>,
}

/// One route of the table: its method (`GET` also answers HEAD), path template, class
/// and handler.
macro_rules! route {
    (GET, $($rest:tt)*) => { route!(@ "GET", get, $($rest)*) };
    (POST, $($rest:tt)*) => { route!(@ "POST", post, $($rest)*) };
    (@ $method:literal, $make:ident, $path:expr, $class:expr, $handler:path) => {
        Route {
            method: $method,
            path: $path,
            class: $class,
            endpoint: || $make($handler),
        }
    };
}

use super::handlers as h;
use Class::{Cheap, Fanout, Heavy};

/// The one route a token-guarded daemon answers without the token.
pub const HEALTHZ: &str = "/healthz";

pub const ROUTES: &[Route] = &[
    route!(GET, HEALTHZ, Cheap, h::healthz),
    route!(GET, "/readyz", Cheap, h::readyz),
    route!(GET, "/api/v1/node", Cheap, h::node),
    route!(GET, "/api/v1/fleet", Fanout, h::fleet_view),
    route!(GET, "/api/v1/safety", Cheap, h::safety),
    route!(POST, "/api/v1/safety/repair", Heavy, h::safety_repair),
    route!(GET, "/api/v1/safety/diff", Cheap, h::diff_show),
    route!(POST, "/api/v1/safety/diff", Heavy, h::diff_start),
    route!(GET, "/api/v1/openapi.json", Cheap, h::openapi),
    route!(GET, "/metrics", Heavy, h::metrics),
    route!(GET, "/api/v1/logs", Cheap, logs::status),
    route!(POST, "/api/v1/logs/flush", Heavy, logs::flush),
    route!(GET, "/api/v1/backups", Heavy, backups::list),
    route!(POST, "/api/v1/backups", Heavy, backups::create),
    route!(GET, "/api/v1/backups/{id}", Heavy, backups::show),
    route!(POST, "/api/v1/backups/{id}/restore", Heavy, restores::start),
    route!(GET, "/api/v1/restores", Cheap, restores::list),
    route!(POST, "/api/v1/restores", Heavy, restores::create),
    route!(POST, "/api/v1/restores/steps", Heavy, restores::step),
    // With `?fleet=true` it asks every peer.
    route!(GET, "/api/v1/upgrades", Fanout, upgrades::show),
    route!(GET, "/api/v1/upgrades/peer", Cheap, upgrades::peer),
    route!(
        GET,
        "/api/v1/upgrades/preflight",
        Fanout,
        upgrades::preflight
    ),
    route!(POST, "/api/v1/upgrades/plan", Heavy, upgrades::plan),
    route!(POST, "/api/v1/upgrades/confirm", Heavy, upgrades::confirm),
    route!(POST, "/api/v1/upgrades/rollback", Heavy, upgrades::rollback),
    route!(POST, "/api/v1/upgrades/lease", Heavy, upgrades::lease_take),
    route!(
        POST,
        "/api/v1/upgrades/lease/release",
        Heavy,
        upgrades::lease_give_back
    ),
    route!(
        POST,
        "/api/v1/upgrades/attempts/{id}/events",
        Heavy,
        upgrades::event
    ),
    route!(
        GET,
        "/api/v1/upgrades/attempts/{id}/gate",
        Fanout,
        upgrades::gate_check
    ),
    route!(
        POST,
        "/api/v1/upgrades/{id}/approve",
        Heavy,
        upgrades::approve
    ),
];

/// The declared route a matched path template and method belong to.
pub fn find(method: &str, path: &str) -> Option<&'static Route> {
    ROUTES.iter().find(|r| r.path == path && r.method == method)
}

/// The template of the declared route `path` matches, whatever the method: the label
/// of a request turned away before routing (no token, say).
pub fn template_of(path: &str) -> Option<&'static str> {
    ROUTES.iter().map(|r| r.path).find(|template| {
        let (mut t, mut p) = (template.split('/'), path.split('/'));
        loop {
            match (t.next(), p.next()) {
                (None, None) => return true,
                (Some(t), Some(p)) if t == p || (t.starts_with('{') && !p.is_empty()) => {}
                _ => return false,
            }
        }
    })
}

/// The routes of `ROUTES`, each path with all its methods.
pub fn router() -> Router<Arc<State>> {
    let mut paths: Vec<(&'static str, MethodRouter<Arc<State>>)> = Vec::new();
    for route in ROUTES {
        let handler = (route.endpoint)();
        match paths.iter_mut().find(|(p, _)| *p == route.path) {
            Some((_, methods)) => *methods = std::mem::take(methods).merge(handler),
            None => paths.push((route.path, handler)),
        }
    }
    paths
        .into_iter()
        .fold(Router::new(), |router, (path, methods)| {
            router.route(path, methods)
        })
}

#[cfg(test)]
#[path = "routes_tests.rs"]
mod tests;
