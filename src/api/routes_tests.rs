//! The route table, the router built from it and the OpenAPI document agree.

use super::*;
use serde_json::Value;
use std::collections::BTreeSet;

fn document() -> Value {
    serde_json::from_str(include_str!("openapi.json")).expect("openapi.json is JSON")
}

fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    for (path, methods) in doc["paths"].as_object().expect("paths") {
        for method in methods.as_object().expect("methods").keys() {
            ops.insert((method.to_uppercase(), path.clone()));
        }
    }
    ops
}

#[test]
fn every_served_route_is_documented_and_every_documented_one_served() {
    // Every declared route has its handler in the table; this builds them all.
    let _ = router();
    let served: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|r| (r.method.to_owned(), r.path.to_owned()))
        .collect();
    assert_eq!(served.len(), ROUTES.len(), "a route is declared twice");
    let documented = operations(&document());
    let undocumented: Vec<_> = served.difference(&documented).collect();
    let unserved: Vec<_> = documented.difference(&served).collect();
    assert!(
        undocumented.is_empty(),
        "served, not in openapi.json: {undocumented:?}"
    );
    assert!(
        unserved.is_empty(),
        "in openapi.json, not served: {unserved:?}"
    );
    for r in ROUTES {
        assert_eq!(find(r.method, r.path).map(|f| f.path), Some(r.path));
    }
    assert!(find("GET", "/api/v1/nope").is_none());
    assert!(find("DELETE", "/api/v1/node").is_none());
}

#[test]
fn the_document_declares_auth_parameters_bodies_and_every_answer() {
    let doc = document();
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert_eq!(doc["security"][0]["bearer"], serde_json::json!([]));
    let resolve = |v: &Value| -> Value {
        match v["$ref"].as_str() {
            Some(r) => {
                let name = r.rsplit('/').next().unwrap();
                doc["components"]["responses"][name].clone()
            }
            None => v.clone(),
        }
    };
    for r in ROUTES {
        let op = &doc["paths"][r.path][r.method.to_lowercase()];
        let responses = op["responses"].as_object().expect("responses");
        for (status, answer) in responses {
            let answer = resolve(answer);
            assert!(
                answer["content"]["application/json"]["schema"].is_object()
                    || answer["content"]["text/plain"]["schema"].is_object(),
                "{} {} {status} has no schema",
                r.method,
                r.path
            );
        }
        for status in ["400", "503"] {
            assert!(
                responses.contains_key(status),
                "{} {} lacks {status}",
                r.method,
                r.path
            );
        }
        if r.path == HEALTHZ {
            assert_eq!(
                op["security"],
                serde_json::json!([]),
                "/healthz needs no token"
            );
        } else {
            assert!(
                responses.contains_key("401"),
                "{} {} lacks 401",
                r.method,
                r.path
            );
        }
        if op.get("requestBody").is_some() {
            assert!(
                responses.contains_key("413"),
                "{} {} lacks 413",
                r.method,
                r.path
            );
        }
        let in_path: BTreeSet<&str> = r
            .path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .collect();
        let declared: BTreeSet<&str> = op["parameters"]
            .as_array()
            .map(|ps| {
                ps.iter()
                    .filter(|p| p["in"] == "path")
                    .filter_map(|p| p["name"].as_str())
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(
            in_path, declared,
            "{} {}: path parameters",
            r.method, r.path
        );
    }
}

#[test]
fn a_path_finds_its_template_without_routing() {
    assert_eq!(template_of("/api/v1/node"), Some("/api/v1/node"));
    assert_eq!(
        template_of("/api/v1/backups/b-1"),
        Some("/api/v1/backups/{id}")
    );
    assert_eq!(
        template_of("/api/v1/upgrades/r7/approve"),
        Some("/api/v1/upgrades/{id}/approve")
    );
    assert_eq!(
        template_of("/api/v1/upgrades/peer"),
        Some("/api/v1/upgrades/peer")
    );
    assert_eq!(template_of("/api/v1/backups/"), None);
    assert_eq!(template_of("/api/v1/node/x"), None);
    assert_eq!(template_of("/etc/passwd"), None);
}
