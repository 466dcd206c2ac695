//! Image names as trust policies, caches and credentials see them:
//! `registry/repository`, in one canonical spelling. References and
//! policy patterns are both made canonical here, by the same functions,
//! so that no other spelling of a registry or repository can escape a
//! scope written in another.

/// Docker Hub's canonical registry name.
pub const DOCKER_HUB: &str = "docker.io";

/// Splits `host[:port]`, `[v6]:port` included.
pub fn split_port(registry: &str) -> (&str, Option<&str>) {
    if let Some(rest) = registry.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((host, port)) => (&registry[..host.len() + 2], port.strip_prefix(':')),
            None => (registry, None),
        };
    }
    match registry.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => (host, Some(port)),
        _ => (registry, None),
    }
}

fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The canonical spelling of a registry `host[:port]`: the host in
/// lowercase, Docker Hub's aliases (`index.docker.io`,
/// `registry-1.docker.io`) as `docker.io`, a numeric port without leading
/// zeros, and `:443` (HTTPS's port) dropped except on loopback hosts,
/// where plain HTTP may be spoken. Globs (`*`) pass through.
pub fn canonical_registry(registry: &str) -> String {
    let (host, port) = split_port(registry);
    let host = host.to_ascii_lowercase();
    let host = match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB.to_string(),
        _ => host,
    };
    let port = port.map(|p| match p.parse::<u16>() {
        Ok(n) if p.bytes().all(|b| b.is_ascii_digit()) => n.to_string(),
        _ => p.to_string(),
    });
    match port {
        Some(p) if p == "443" && !is_loopback(&host) => host,
        Some(p) => format!("{host}:{p}"),
        None => host,
    }
}

/// Whether the first component of a name is a registry, by Docker's
/// rule (it has a `.` or a `:`, or is `localhost`), or, in a pattern, a
/// glob over registries (it has a `*`).
pub fn is_registry_component(first: &str) -> bool {
    first.contains('.') || first.contains(':') || first.contains('*') || first == "localhost"
}

/// Splits a name `[registry/]repository` and makes it canonical: the
/// registry as [`canonical_registry`] spells it (Docker Hub when none is
/// given), and a one-component Docker Hub repository under `library/`.
/// The registry alone (`quay.io`) gives an empty repository.
pub fn canonical_name(name: &str) -> (String, String) {
    let (registry, repository) = match name.split_once('/') {
        Some((first, rest)) if is_registry_component(first) => (canonical_registry(first), rest),
        None if is_registry_component(name) => (canonical_registry(name), ""),
        _ => (DOCKER_HUB.to_string(), name),
    };
    let repository =
        if registry == DOCKER_HUB && !repository.is_empty() && !repository.contains(['/', '*']) {
            format!("library/{repository}")
        } else {
            repository.to_string()
        };
    (registry, repository)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registries_have_one_spelling() {
        for (given, canonical) in [
            ("127.0.0.1:05123", "127.0.0.1:5123"),
            ("127.0.0.1:5123", "127.0.0.1:5123"),
            ("127.0.0.1:443", "127.0.0.1:443"),
            ("localhost:0443", "localhost:443"),
            ("docker.io:443", "docker.io"),
            ("Quay.IO", "quay.io"),
            ("quay.io:443", "quay.io"),
            ("index.docker.io", "docker.io"),
            ("registry-1.docker.io:443", "docker.io"),
            ("[::1]:05000", "[::1]:5000"),
            ("127.0.0.1:*", "127.0.0.1:*"),
            ("*.example.com", "*.example.com"),
        ] {
            assert_eq!(canonical_registry(given), canonical, "{given}");
        }
    }

    #[test]
    fn docker_hub_names_have_one_spelling() {
        let want = (DOCKER_HUB.to_string(), "library/x".to_string());
        for given in [
            "x",
            "library/x",
            "docker.io/x",
            "docker.io/library/x",
            "DOCKER.IO/library/x",
            "docker.io:443/library/x",
            "index.docker.io/library/x",
            "registry-1.docker.io/x",
        ] {
            assert_eq!(canonical_name(given), want, "{given}");
        }
        assert_eq!(
            canonical_name("quay.io"),
            ("quay.io".to_string(), String::new())
        );
        assert_eq!(
            canonical_name("docker.io/*"),
            (DOCKER_HUB.to_string(), "*".to_string())
        );
        assert_eq!(
            canonical_name("user/x"),
            (DOCKER_HUB.to_string(), "user/x".to_string())
        );
    }
}
