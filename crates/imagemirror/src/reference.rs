//! Image references: the Docker reference grammar (the distribution project's `reference`
//! package), normalized the way Docker normalizes them, and the mapping to a mirror.
//!
//! ```text
//! reference  := name [ ":" tag ] [ "@" digest ]
//! name       := [ domain "/" ] path-component ( "/" path-component )*
//! domain     := host [ ":" port ]          host: DNS name, IPv4, or [IPv6]
//! path-comp  := [a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*
//! tag        := [\w][\w.-]{0,127}
//! digest     := algorithm ":" hex          sha256 needs 64 lowercase hex digits
//! ```
//!
//! The first component is a domain when it holds a `.` or a `:`, is `localhost`, or has an
//! upper-case letter; otherwise the image is on `docker.io`, and a one-component Docker Hub
//! name gets `library/`. `index.docker.io` is `docker.io`. With neither tag nor digest the tag is
//! `latest`.

use std::fmt;
use std::str::FromStr;

/// The registry Docker Hub images live on, as references name it.
pub const DOCKER_HUB: &str = "docker.io";

/// Names (domain and path) are at most this long.
pub const MAX_NAME_LEN: usize = 255;

/// A reference that does not follow the grammar; says which part and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid image reference {input:?}: {reason}")]
pub struct ReferenceError {
    /// What was given.
    pub input: String,
    /// What is wrong, and how to write it.
    pub reason: String,
}

/// A content digest, `algorithm:hex`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(String);

impl Digest {
    /// The digest as written (`sha256:...`).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The algorithm (`sha256`).
    pub fn algorithm(&self) -> &str {
        self.0.split_once(':').map_or("", |(a, _)| a)
    }

    /// The hex part.
    pub fn hex(&self) -> &str {
        self.0.split_once(':').map_or("", |(_, h)| h)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Digest {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (algorithm, hex) = s.split_once(':').ok_or_else(|| {
            format!("digest {s:?} has no algorithm: write sha256:<64 hex digits>")
        })?;
        let algorithm_ok = !algorithm.is_empty()
            && algorithm.split(['+', '.', '-', '_']).all(|c| {
                c.starts_with(|ch: char| ch.is_ascii_alphabetic())
                    && c.chars().all(|ch| ch.is_ascii_alphanumeric())
            });
        if !algorithm_ok {
            return Err(format!("digest algorithm {algorithm:?} is not valid"));
        }
        if algorithm == "sha256" {
            if hex.len() != 64
                || !hex
                    .chars()
                    .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
            {
                return Err(format!(
                    "sha256 digest {s:?} needs exactly 64 lower-case hex digits"
                ));
            }
        } else if hex.len() < 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(format!(
                "digest {s:?} needs at least 32 hex digits after the algorithm"
            ));
        }
        Ok(Self(s.to_string()))
    }
}

/// A normalized image reference: registry, repository, and a tag and/or a digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageRef {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl ImageRef {
    /// Parses and normalizes a reference (`busybox` is `docker.io/library/busybox:latest`).
    pub fn parse(input: &str) -> Result<Self, ReferenceError> {
        let err = |reason: String| ReferenceError {
            input: input.to_string(),
            reason,
        };
        if input.is_empty() {
            return Err(err("it is empty".into()));
        }
        if input.trim() != input {
            return Err(err("it has leading or trailing spaces".into()));
        }
        let (rest, digest) = match input.split_once('@') {
            Some((rest, d)) => (rest, Some(d.parse::<Digest>().map_err(err)?)),
            None => (input, None),
        };
        // The tag is after the last ':' that follows the last '/' (a port's ':' comes before).
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(tag) = tag
            && !valid_tag(tag)
        {
            return Err(err(format!(
                "tag {tag:?} is not valid: 1-128 letters, digits, '_', '.' or '-', not starting with '.' or '-'"
            )));
        }
        if name.is_empty() {
            return Err(err("it has no repository name".into()));
        }
        let (registry, path) = split_domain(name);
        if let Some(registry) = &registry
            && !valid_domain(registry)
        {
            return Err(err(format!(
                "registry {registry:?} is not a valid host[:port]"
            )));
        }
        let mut registry = registry.unwrap_or(DOCKER_HUB).to_string();
        if registry == "index.docker.io" {
            registry = DOCKER_HUB.into();
        }
        // Upper case is the one mistake with a sure fix; offer it only when the fix parses
        // (for "Bad Ref:" it would not), and leave everything else to the component check.
        let lower = path.to_ascii_lowercase();
        if lower != path && lower.split('/').all(valid_path_component) {
            return Err(err(format!(
                "repository {path:?} must be lower-case: write {lower:?}"
            )));
        }
        if let Some(bad) = path.split('/').find(|c| !valid_path_component(c)) {
            return Err(err(format!(
                "path component {bad:?} is not valid: lower-case letters and digits, separated by '.', '_', '__' or dashes"
            )));
        }
        let repository = if registry == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path.to_string()
        };
        let len = registry.len() + 1 + repository.len();
        if len > MAX_NAME_LEN {
            return Err(err(format!(
                "the name is {len} characters long; the limit is {MAX_NAME_LEN}"
            )));
        }
        let tag = match (tag, &digest) {
            (None, None) => Some("latest".to_string()),
            (t, _) => t.map(str::to_string),
        };
        Ok(Self {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// The registry host (and port): `docker.io`, `quay.io`, `localhost:5000`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path within the registry: `library/busybox`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, if any (`latest` when the input had neither tag nor digest).
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if any.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// `registry/repository`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// What to ask the registry for: the digest when there is one, else the tag.
    pub fn manifest_reference(&self) -> &str {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.as_str(),
            (None, Some(t)) => t,
            (None, None) => "latest",
        }
    }

    /// `name[:tag]@digest`: what a manifest names to pin this image to `digest` (the tag is
    /// kept for readers; a digest the reference holds is replaced, never repeated).
    ///
    /// ```
    /// use kfsec_imagemirror::ImageRef;
    /// let d = format!("sha256:{}", "a".repeat(64));
    /// let tagged = ImageRef::parse("busybox:1.36").unwrap();
    /// assert_eq!(tagged.pinned(&d), format!("docker.io/library/busybox:1.36@{d}"));
    /// let by_digest = ImageRef::parse(&format!("gcr.io/knative/queue@{d}")).unwrap();
    /// assert_eq!(by_digest.pinned(&d), format!("gcr.io/knative/queue@{d}"));
    /// ```
    pub fn pinned(&self, digest: &str) -> String {
        match &self.tag {
            Some(t) => format!("{}/{}:{t}@{digest}", self.registry, self.repository),
            None => format!("{}/{}@{digest}", self.registry, self.repository),
        }
    }

    /// The same image pinned to `digest` (the tag is kept for readers).
    pub fn with_digest(&self, digest: Digest) -> Self {
        Self {
            digest: Some(digest),
            ..self.clone()
        }
    }

    /// The mirror of this image under `destination`: `<destination>/<registry as a path
    /// component>/<repository>`, same tag and digest (see [`registry_as_path`]: `localhost:5000`
    /// is `localhost-5000`, `[::1]:5000` is `ipv6-0-0-0-0-0-0-0-1-5000`).
    /// `docker.io/library/busybox:1.36` under `us-docker.pkg.dev/kf-dev/kubeflow-mirror` is
    /// `us-docker.pkg.dev/kf-dev/kubeflow-mirror/docker.io/library/busybox:1.36`.
    pub fn mirrored(&self, destination: &Destination) -> Result<Self, ReferenceError> {
        let repository = format!(
            "{}/{}/{}",
            destination.path,
            registry_as_path(&self.registry),
            self.repository
        );
        let repository = repository.trim_start_matches('/').to_string();
        let len = destination.registry.len() + 1 + repository.len();
        if len > MAX_NAME_LEN {
            return Err(ReferenceError {
                input: self.to_string(),
                reason: format!(
                    "its mirror name under {destination} would be {len} characters long; the limit is {MAX_NAME_LEN}: choose a shorter images.destination"
                ),
            });
        }
        Ok(Self {
            registry: destination.registry.clone(),
            repository,
            tag: self.tag.clone(),
            digest: self.digest.clone(),
        })
    }
}

impl ImageRef {
    /// The same image as served by a registry that hosts every registry under a path prefix
    /// (the emulator's `registry` endpoint, or a pull-through cache laid out the same way):
    /// `docker.io/library/busybox:1.36` through `127.0.0.1:5000` is
    /// `127.0.0.1:5000/docker.io/library/busybox:1.36` (the registry becomes one path component
    /// as in [`ImageRef::mirrored`]: see [`registry_as_path`]).
    ///
    /// ```
    /// use kfsec_imagemirror::ImageRef;
    /// let image = ImageRef::parse("busybox:1.36").unwrap();
    /// assert_eq!(
    ///     image.routed_through("127.0.0.1:5000").to_string(),
    ///     "127.0.0.1:5000/docker.io/library/busybox:1.36"
    /// );
    /// ```
    pub fn routed_through(&self, endpoint: &str) -> Self {
        Self {
            registry: endpoint.to_string(),
            repository: format!("{}/{}", registry_as_path(&self.registry), self.repository),
            tag: self.tag.clone(),
            digest: self.digest.clone(),
        }
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl FromStr for ImageRef {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, ReferenceError> {
        Self::parse(s)
    }
}

impl serde::Serialize for ImageRef {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for ImageRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Where mirrors go: a registry and a path prefix, such as
/// `us-docker.pkg.dev/kf-dev/kubeflow-mirror` (no tag, no digest).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Destination {
    registry: String,
    path: String,
}

impl Destination {
    /// Parses `host[:port]/path`; the host must be explicit.
    pub fn parse(input: &str) -> Result<Self, ReferenceError> {
        let err = |reason: &str| ReferenceError {
            input: input.to_string(),
            reason: reason.to_string(),
        };
        let trimmed = input.trim_end_matches('/');
        if trimmed.contains('@') {
            return Err(err("a destination has no digest: write host/path"));
        }
        let (Some(registry), path) = split_domain(trimmed) else {
            return Err(err(
                "a destination needs an explicit registry host, such as us-docker.pkg.dev/PROJECT/REPOSITORY",
            ));
        };
        if !valid_domain(registry) {
            return Err(err("the registry is not a valid host[:port]"));
        }
        if path.contains(':') {
            return Err(err("a destination has no tag: write host/path"));
        }
        if !path.is_empty() && !path.split('/').all(valid_path_component) {
            return Err(err(
                "the path must be lower-case components separated by '/', such as kf-dev/kubeflow-mirror",
            ));
        }
        Ok(Self {
            registry: registry.to_string(),
            path: path.to_string(),
        })
    }

    /// The registry host (and port).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The path prefix.
    pub fn path(&self) -> &str {
        &self.path
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.registry)
        } else {
            write!(f, "{}/{}", self.registry, self.path)
        }
    }
}

impl FromStr for Destination {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, ReferenceError> {
        Self::parse(s)
    }
}

impl serde::Serialize for Destination {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Destination {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Splits off the domain the way Docker does: the first component is a domain when it holds
/// a `.` or `:`, is `localhost`, or has an upper-case letter.
/// Whether a registry host is Google's (Artifact Registry's `*.pkg.dev`, and `gcr.io` with its
/// regional hosts, which Artifact Registry serves): they take an OAuth access token as the
/// password of user `oauth2accesstoken`.
pub fn is_google_registry(registry: &str) -> bool {
    let host = registry.split(':').next().unwrap_or(registry);
    host == "gcr.io" || host.ends_with(".gcr.io") || host == "pkg.dev" || host.ends_with(".pkg.dev")
}

/// A registry host (and port) as one repository path component, the way mirrors name the
/// registry an image came from: a host name is lower-cased (a domain may have upper case, a
/// repository may not) and a port's `:` becomes `-` (`localhost:5000` is `localhost-5000`,
/// `docker.io` stays `docker.io`); an IPv6 address is written out in full, its groups in
/// lower-case hex joined by `-` after `ipv6-`, so that every spelling of one address gives one
/// path (`[::1]:5000` and `[0:0:0:0:0:0:0:1]:5000` are `ipv6-0-0-0-0-0-0-0-1-5000`).
///
/// For every registry [`ImageRef::parse`] accepts, the result is a valid path component.
pub fn registry_as_path(registry: &str) -> String {
    if let Some(rest) = registry.strip_prefix('[')
        && let Some((v6, after)) = rest.split_once(']')
        && let Ok(addr) = v6.parse::<std::net::Ipv6Addr>()
    {
        let mut out = String::from("ipv6");
        for group in addr.segments() {
            out.push_str(&format!("-{group:x}"));
        }
        if let Some(port) = after.strip_prefix(':') {
            out.push('-');
            out.push_str(port);
        }
        return out;
    }
    registry.to_ascii_lowercase().replace(':', "-")
}

fn split_domain(name: &str) -> (Option<&str>, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.chars().any(|c| c.is_ascii_uppercase()) =>
        {
            (Some(first), rest)
        }
        _ => (None, name),
    }
}

fn valid_tag(tag: &str) -> bool {
    (1..=128).contains(&tag.len())
        && tag
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

fn valid_path_component(c: &str) -> bool {
    let bytes = c.as_bytes();
    if bytes.is_empty() || !is_alnum(bytes[0]) || !is_alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if is_alnum(bytes[i]) {
            i += 1;
            continue;
        }
        // A separator: ".", "_", "__", or one or more "-", between alphanumerics.
        let start = i;
        match bytes[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < bytes.len() && bytes[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < bytes.len() && bytes[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
        if i == start || i >= bytes.len() || !is_alnum(bytes[i]) {
            return false;
        }
    }
    true
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

fn valid_domain(domain: &str) -> bool {
    let (host, port) = if let Some(rest) = domain.strip_prefix('[') {
        // [IPv6]:port
        let Some((v6, after)) = rest.split_once(']') else {
            return false;
        };
        if v6.parse::<std::net::Ipv6Addr>().is_err() {
            return false;
        }
        match after {
            "" => return true,
            p => match p.strip_prefix(':') {
                Some(port) => ("", Some(port)),
                None => return false,
            },
        }
    } else {
        match domain.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (domain, None),
        }
    };
    if let Some(port) = port
        && (port.is_empty() || !port.chars().all(|c| c.is_ascii_digit()))
    {
        return false;
    }
    if domain.starts_with('[') {
        return true;
    }
    !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn docker_normalization() {
        for (input, normalized) in [
            ("busybox", "docker.io/library/busybox:latest"),
            ("busybox:1.36", "docker.io/library/busybox:1.36"),
            ("library/busybox", "docker.io/library/busybox:latest"),
            (
                "index.docker.io/library/busybox:1",
                "docker.io/library/busybox:1",
            ),
            (
                "kubeflow/notebook-server",
                "docker.io/kubeflow/notebook-server:latest",
            ),
            (
                "gcr.io/kubeflow-images-public/tf:v1.0",
                "gcr.io/kubeflow-images-public/tf:v1.0",
            ),
            ("localhost:5000/a/b", "localhost:5000/a/b:latest"),
            ("localhost/a", "localhost/a:latest"),
            (
                "127.0.0.1:5000/x__y.z--w:t_1.2-3",
                "127.0.0.1:5000/x__y.z--w:t_1.2-3",
            ),
            ("[::1]:5000/a:b", "[::1]:5000/a:b"),
        ] {
            assert_eq!(
                ImageRef::parse(input).unwrap().to_string(),
                normalized,
                "{input}"
            );
        }
        let pinned = ImageRef::parse(&format!(
            "quay.io/jetstack/cert-manager-controller:v1.5@{SHA}"
        ))
        .unwrap();
        assert_eq!(pinned.registry(), "quay.io");
        assert_eq!(pinned.tag(), Some("v1.5"));
        assert_eq!(pinned.manifest_reference(), SHA);
        let only_digest = ImageRef::parse(&format!("busybox@{SHA}")).unwrap();
        assert_eq!(only_digest.tag(), None);
        assert_eq!(
            only_digest.to_string(),
            format!("docker.io/library/busybox@{SHA}")
        );
    }

    #[test]
    fn errors_say_what_is_wrong() {
        for (input, says) in [
            ("", "empty"),
            ("Busybox", "must be lower-case"),
            ("busybox:", "tag \"\""),
            ("busybox:-x", "tag \"-x\""),
            ("a//b", "path component \"\""),
            ("a/b-", "path component \"b-\""),
            ("busybox@sha256:abc", "64 lower-case"),
            ("busybox@md5", "no algorithm"),
            ("exa_mple.com/a", "registry"),
            ("localhost:port/a", "registry"),
            (" busybox", "spaces"),
            ("Bad Ref::x", "path component \"Bad Ref:\" is not valid"),
        ] {
            let e = ImageRef::parse(input).unwrap_err();
            assert!(e.to_string().contains(says), "{input}: {e}");
        }
        let long = format!("quay.io/{}", "a".repeat(250));
        assert!(ImageRef::parse(&long).unwrap_err().reason.contains("255"));
    }

    #[test]
    fn the_lower_case_fix_is_offered_only_when_it_parses() {
        for (input, fixed) in [
            ("Busybox", Some("busybox")),
            ("quay.io/Team/App:v1", Some("quay.io/team/app:v1")),
            ("Bad Ref::x", None),
            ("quay.io/Team/a--", None),
        ] {
            let e = ImageRef::parse(input).unwrap_err().to_string();
            match fixed {
                Some(fixed) => {
                    assert!(e.contains("must be lower-case: write"), "{input}: {e}");
                    ImageRef::parse(fixed).unwrap();
                }
                None => assert!(!e.contains("write"), "{input}: {e}"),
            }
        }
    }

    #[test]
    fn mirrors_keep_the_source_host_in_the_path() {
        let dest = Destination::parse("us-docker.pkg.dev/kf-dev/kubeflow-mirror").unwrap();
        let m = ImageRef::parse("docker.io/library/busybox:1.36")
            .unwrap()
            .mirrored(&dest)
            .unwrap();
        assert_eq!(
            m.to_string(),
            "us-docker.pkg.dev/kf-dev/kubeflow-mirror/docker.io/library/busybox:1.36"
        );
        let m = ImageRef::parse("localhost:5000/team/app:v2")
            .unwrap()
            .mirrored(&dest)
            .unwrap();
        assert_eq!(
            m.to_string(),
            "us-docker.pkg.dev/kf-dev/kubeflow-mirror/localhost-5000/team/app:v2"
        );
        assert!(Destination::parse("kubeflow-mirror").is_err());
        assert!(Destination::parse("gcr.io/kf-dev:tag").is_err());
        assert_eq!(
            Destination::parse("gcr.io/kf-dev/").unwrap().to_string(),
            "gcr.io/kf-dev"
        );
    }

    #[test]
    fn every_registry_maps_to_one_valid_path_component() {
        let dest = Destination::parse("mirror.example/m").unwrap();
        for (image, path) in [
            ("[::1]:5000/x:tag", "ipv6-0-0-0-0-0-0-0-1-5000"),
            ("[0:0:0:0:0:0:0:1]:5000/x:tag", "ipv6-0-0-0-0-0-0-0-1-5000"),
            ("[::1]/x", "ipv6-0-0-0-0-0-0-0-1"),
            ("[2001:db8::1]/a/b", "ipv6-2001-db8-0-0-0-0-0-1"),
            ("[2001:DB8:0::0:1]:443/a/b", "ipv6-2001-db8-0-0-0-0-0-1-443"),
            ("[::ffff:10.0.0.1]:5000/a", "ipv6-0-0-0-0-0-ffff-a00-1-5000"),
            ("10.0.0.1:5000/a", "10.0.0.1-5000"),
            ("10.0.0.1/a", "10.0.0.1"),
            ("Registry.Example.COM:8443/a", "registry.example.com-8443"),
            ("MyRegistry/a", "myregistry"),
            ("localhost:5000/a", "localhost-5000"),
            ("localhost/a", "localhost"),
            ("docker.io/a/b", "docker.io"),
            ("busybox", "docker.io"),
            ("xn--bcher-kva.example/a", "xn--bcher-kva.example"),
            ("my--host.example:5000/a", "my--host.example-5000"),
        ] {
            let r = ImageRef::parse(image).unwrap_or_else(|e| panic!("{image}: {e}"));
            assert_eq!(registry_as_path(r.registry()), path, "{image}");
            assert!(valid_path_component(path), "{image}: {path}");
            let m = r.mirrored(&dest).unwrap();
            let again = ImageRef::parse(&m.to_string()).unwrap_or_else(|e| panic!("{image}: {e}"));
            assert_eq!(again, m);
            assert!(m.repository().starts_with(&format!("m/{path}/")), "{m}");
            let routed = r.routed_through("[::1]:5000");
            let again =
                ImageRef::parse(&routed.to_string()).unwrap_or_else(|e| panic!("{image}: {e}"));
            assert_eq!(again, routed);
            assert!(
                routed.repository().starts_with(&format!("{path}/")),
                "{routed}"
            );
        }
        let r = ImageRef::parse("[::1]:5000/x:tag").unwrap();
        assert_eq!(
            (r.registry(), r.repository(), r.tag()),
            ("[::1]:5000", "x", Some("tag"))
        );
        let r = ImageRef::parse("[2001:db8::1]/a/b").unwrap();
        assert_eq!(
            (r.registry(), r.repository(), r.tag()),
            ("[2001:db8::1]", "a/b", Some("latest"))
        );
    }

    proptest::proptest! {
        /// Whatever the input, parsing never panics, and what parses prints a normalized form
        /// that parses back to the same reference.
        #[test]
        fn normalized_forms_round_trip(s in "[a-zA-Z0-9._:/@-]{0,60}") {
            if let Ok(r) = ImageRef::parse(&s) {
                let again = ImageRef::parse(&r.to_string()).unwrap();
                proptest::prop_assert_eq!(again, r);
            }
        }

        /// References built from the grammar always parse, to what they say.
        #[test]
        fn grammar_references_parse(
            host in "[a-z][a-z0-9]{0,8}(\\.[a-z][a-z0-9]{0,8}){1,2}",
            port in proptest::option::of(1u16..65535),
            path in proptest::collection::vec("[a-z0-9]{1,6}([._-][a-z0-9]{1,6}){0,2}", 1..4),
            tag in proptest::option::of("[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}"),
        ) {
            proptest::prop_assume!(host != "docker.io" && host != "index.docker.io");
            let registry = match port { Some(p) => format!("{host}:{p}"), None => host };
            let mut input = format!("{registry}/{}", path.join("/"));
            if let Some(t) = &tag {
                input.push(':');
                input.push_str(t);
            }
            let r = ImageRef::parse(&input).unwrap();
            proptest::prop_assert_eq!(r.registry(), registry.as_str());
            proptest::prop_assert_eq!(r.repository(), path.join("/"));
            proptest::prop_assert_eq!(r.tag(), Some(tag.as_deref().unwrap_or("latest")));
        }
    }
}
