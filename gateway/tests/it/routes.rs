//! Defends the route table: the gateway lets through exactly the routes the task service
//! serves, by path and method. Parameter names aside: the OpenAPI document names the task
//! `{task_id}`, the metrics labels of both tiers `{id}`.

use std::collections::BTreeSet;

use gateway::path::RouteName;
use serde_json::Value;

use crate::support::servers::TaskService;

/// A path template with every parameter name left out: `/api/{}/tasks/{}`.
fn shape(template: &str) -> String {
    template
        .split('/')
        .map(|segment| {
            if segment.starts_with('{') {
                "{}"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test]
async fn the_route_table_is_the_task_services_openapi_paths() {
    let data = tempfile::tempdir().expect("temporary directory");
    let service = TaskService::start(data.path()).await;
    let document: Value = reqwest::get(format!("{}/openapi.json", service.url()))
        .await
        .expect("task service reachable")
        .json()
        .await
        .expect("OpenAPI JSON");
    let served: BTreeSet<(String, String)> = document["paths"]
        .as_object()
        .expect("paths object")
        .iter()
        .filter(|(path, _)| path.starts_with("/api/"))
        .flat_map(|(path, operations)| {
            operations
                .as_object()
                .expect("operations object")
                .keys()
                .map(|method| (method.to_ascii_uppercase(), shape(path)))
        })
        .collect();
    let routed: BTreeSet<(String, String)> = RouteName::ALL
        .iter()
        .map(|route| (route.method().to_string(), shape(route.template())))
        .collect();
    assert_eq!(routed, served);
    service.stop().await;
}
