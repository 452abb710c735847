//! Every route the daemon serves, in one table: its method, its path template and the
//! class whose concurrency limit it counts against. The router is built from this table
//! and nothing else, so the table, the router and the OpenAPI document can be compared
//! (`openapi_tests.rs`): a route cannot be served without being declared here.

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
}

const fn r(method: &'static str, path: &'static str, class: Class) -> Route {
    Route {
        method,
        path,
        class,
    }
}

use Class::{Cheap, Fanout, Heavy};

/// The one route a token-guarded daemon answers without the token.
pub const HEALTHZ: &str = "/healthz";

pub const ROUTES: &[Route] = &[
    r("GET", HEALTHZ, Cheap),
    r("GET", "/readyz", Cheap),
    r("GET", "/api/v1/node", Cheap),
    r("GET", "/api/v1/fleet", Fanout),
    r("GET", "/api/v1/safety", Cheap),
    r("POST", "/api/v1/safety/repair", Heavy),
    r("GET", "/api/v1/safety/diff", Cheap),
    r("POST", "/api/v1/safety/diff", Heavy),
    r("GET", "/api/v1/openapi.json", Cheap),
    r("GET", "/metrics", Heavy),
    r("GET", "/api/v1/logs", Cheap),
    r("POST", "/api/v1/logs/flush", Heavy),
    r("GET", "/api/v1/backups", Heavy),
    r("POST", "/api/v1/backups", Heavy),
    r("GET", "/api/v1/backups/{id}", Heavy),
    r("POST", "/api/v1/backups/{id}/restore", Heavy),
    r("GET", "/api/v1/restores", Cheap),
    r("POST", "/api/v1/restores", Heavy),
    r("POST", "/api/v1/restores/steps", Heavy),
    // With `?fleet=true` it asks every peer.
    r("GET", "/api/v1/upgrades", Fanout),
    r("GET", "/api/v1/upgrades/peer", Cheap),
    r("GET", "/api/v1/upgrades/preflight", Fanout),
    r("POST", "/api/v1/upgrades/plan", Heavy),
    r("POST", "/api/v1/upgrades/confirm", Heavy),
    r("POST", "/api/v1/upgrades/rollback", Heavy),
    r("POST", "/api/v1/upgrades/lease", Heavy),
    r("POST", "/api/v1/upgrades/lease/release", Heavy),
    r("POST", "/api/v1/upgrades/attempts/{id}/events", Heavy),
    r("GET", "/api/v1/upgrades/attempts/{id}/gate", Fanout),
    r("POST", "/api/v1/upgrades/{id}/approve", Heavy),
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

/// The handler of one declared route. A route in `ROUTES` without a handler here is a
/// programming error, caught by every test that builds the router.
fn endpoint(route: &Route) -> MethodRouter<Arc<State>> {
    use super::handlers as h;
    match (route.method, route.path) {
        ("GET", HEALTHZ) => get(h::healthz),
        ("GET", "/readyz") => get(h::readyz),
        ("GET", "/api/v1/node") => get(h::node),
        ("GET", "/api/v1/fleet") => get(h::fleet_view),
        ("GET", "/api/v1/safety") => get(h::safety),
        ("POST", "/api/v1/safety/repair") => post(h::safety_repair),
        ("GET", "/api/v1/safety/diff") => get(h::diff_show),
        ("POST", "/api/v1/safety/diff") => post(h::diff_start),
        ("GET", "/api/v1/openapi.json") => get(h::openapi),
        ("GET", "/metrics") => get(h::metrics),
        ("GET", "/api/v1/logs") => get(logs::status),
        ("POST", "/api/v1/logs/flush") => post(logs::flush),
        ("GET", "/api/v1/backups") => get(backups::list),
        ("POST", "/api/v1/backups") => post(backups::create),
        ("GET", "/api/v1/backups/{id}") => get(backups::show),
        ("POST", "/api/v1/backups/{id}/restore") => post(restores::start),
        ("GET", "/api/v1/restores") => get(restores::list),
        ("POST", "/api/v1/restores") => post(restores::create),
        ("POST", "/api/v1/restores/steps") => post(restores::step),
        ("GET", "/api/v1/upgrades") => get(upgrades::show),
        ("GET", "/api/v1/upgrades/peer") => get(upgrades::peer),
        ("GET", "/api/v1/upgrades/preflight") => get(upgrades::preflight),
        ("POST", "/api/v1/upgrades/plan") => post(upgrades::plan),
        ("POST", "/api/v1/upgrades/confirm") => post(upgrades::confirm),
        ("POST", "/api/v1/upgrades/rollback") => post(upgrades::rollback),
        ("POST", "/api/v1/upgrades/lease") => post(upgrades::lease_take),
        ("POST", "/api/v1/upgrades/lease/release") => post(upgrades::lease_give_back),
        ("POST", "/api/v1/upgrades/attempts/{id}/events") => post(upgrades::event),
        ("GET", "/api/v1/upgrades/attempts/{id}/gate") => get(upgrades::gate_check),
        ("POST", "/api/v1/upgrades/{id}/approve") => post(upgrades::approve),
        (method, path) => panic!("routes::ROUTES declares {method} {path} but no handler"),
    }
}

/// The routes of `ROUTES`, each path with all its methods.
pub fn router() -> Router<Arc<State>> {
    let mut paths: Vec<(&'static str, MethodRouter<Arc<State>>)> = Vec::new();
    for route in ROUTES {
        let handler = endpoint(route);
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
