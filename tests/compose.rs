//! `docker-compose.yml` is not run in CI (no Docker engine there), so this checks what can be
//! checked without one: it parses, every service the README relies on is there with a pinned
//! image and a health check, every address the README's variables point at is a published port,
//! and Keycloak imports the realm file, which exists and is the demonstration's.

#![allow(clippy::unwrap_used)]

use serde_norway::Value;

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

#[test]
fn the_compose_file_has_what_the_readme_names() {
    let compose: Value = serde_norway::from_str(&read("docker-compose.yml")).unwrap();
    let services = compose["services"].as_mapping().unwrap();
    let mut published = Vec::new();
    for name in ["kafka", "rabbitmq", "nats", "keycloak"] {
        let service = &services[name];
        let image = service["image"].as_str().unwrap();
        let tag = image.rsplit_once(':').map(|(_, tag)| tag).unwrap_or_default();
        assert!(
            !tag.is_empty() && tag != "latest" && tag.chars().next().unwrap().is_ascii_digit(),
            "{name}: a pinned version, not {image}"
        );
        assert!(
            service["healthcheck"]["test"].is_sequence(),
            "{name} has a health check"
        );
        for port in service["ports"].as_sequence().unwrap() {
            let (host, _) = port.as_str().unwrap().split_once(':').unwrap();
            published.push(host.parse::<u16>().unwrap());
        }
    }
    assert!(published.contains(&15672), "the RabbitMQ management UI");

    // Every variable the README exports after `docker compose up` points at a published port,
    // and the compose file documents it too.
    let readme = read("README.md");
    let (_, after_up) = readme.split_once("docker compose up").unwrap();
    let block = after_up.split("```").next().unwrap();
    let exports: Vec<(&str, &str)> = block
        .lines()
        .filter_map(|l| l.trim().strip_prefix("export "))
        .map(|l| l.split_once('=').unwrap())
        .collect();
    let names: Vec<&str> = exports.iter().map(|(name, _)| *name).collect();
    assert_eq!(
        names,
        ["KAFKA_BROKERS", "AMQP_ADDR", "NATS_URL", "KEYCLOAK_ISSUER"]
    );
    let compose_text = read("docker-compose.yml");
    for (name, value) in exports {
        let authority = value.split("://").last().unwrap().split('/').next().unwrap();
        let port: u16 = authority.rsplit(':').next().unwrap().parse().unwrap();
        assert!(
            published.contains(&port),
            "{name}={value}: port {port} is published"
        );
        assert!(
            compose_text.contains(&format!("export {name}={value}")),
            "{name} in the compose file's notes"
        );
    }

    let keycloak = &services["keycloak"];
    let command: Vec<&str> = keycloak["command"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert!(command.contains(&"--import-realm"));
    let volume = keycloak["volumes"][0].as_str().unwrap();
    let (source, _) = volume.split_once(':').unwrap();
    let realm: serde_json::Value = serde_json::from_str(&read(source.trim_start_matches("./"))).unwrap();
    assert_eq!(realm["realm"], "jwt-relay");
    let clients: Vec<&str> = realm["clients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["clientId"].as_str().unwrap())
        .collect();
    for client in ["gateway", "billing", "shipping", "notifier", "fraud-check"] {
        assert!(clients.contains(&client), "the realm has the {client} client");
    }
}
