//! The registry's seed: small synthetic images whose bytes (and so digests) are the same on
//! every run. Layers are real gzipped tar files (uncompressed deflate blocks), configs are valid
//! image configs whose `rootfs.diff_ids` are the digests of the uncompressed tars, and every
//! JSON document is written out as fixed text so that no serializer setting can change a digest.

use bytes::Bytes;

use super::{DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST, RegistryState};
use crate::sha256::{crc32, digest};
use crate::state::SEED_TIME;

/// The images the emulator's registry holds at start and after a reset, as image references
/// (`HOST/PATH:TAG`; the registry serves each as the repository `HOST/PATH`):
///
/// - `docker.io/library/busybox:1.36`: an OCI image index for `linux/amd64` and `linux/arm64`
///   (variant `v8`), each an OCI image manifest with one layer;
/// - `docker.io/library/nginx:1.27`: a Docker schema 2 manifest with two layers;
/// - `gcr.io/ml-pipeline/frontend:2.0.5`: an OCI image manifest with two layers, the first being
///   the same blob as nginx's first layer (a shared base layer);
/// - `quay.io/jetstack/cert-manager-controller:v1.14.5`: an OCI image manifest with one layer.
///
/// Their digests are the same on every run; the admin state (`registry.repositories`) lists
/// them.
pub const SEEDED_IMAGES: &[&str] = &[
    "docker.io/library/busybox:1.36",
    "docker.io/library/nginx:1.27",
    "gcr.io/ml-pipeline/frontend:2.0.5",
    "quay.io/jetstack/cert-manager-controller:v1.14.5",
];

const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
const PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Fills `reg` with [`SEEDED_IMAGES`].
pub(super) fn seed(reg: &mut RegistryState) {
    // busybox: an index of two platforms.
    let repo = "docker.io/library/busybox";
    let mut children = Vec::new();
    for (arch, variant) in [("amd64", None), ("arm64", Some("v8"))] {
        let layer = Layer::new(&[
            ("bin/", b""),
            (
                "bin/busybox",
                &filler(&format!("busybox 1.36 linux/{arch}"), 3000),
            ),
        ]);
        let (d, size) = image_of(reg, repo, None, false, arch, variant, &["sh"], &[layer]);
        let platform = match variant {
            Some(v) => format!(r#"{{"architecture":"{arch}","os":"linux","variant":"{v}"}}"#),
            None => format!(r#"{{"architecture":"{arch}","os":"linux"}}"#),
        };
        children.push(format!(
            r#"{{"mediaType":"{OCI_MANIFEST}","digest":"{d}","size":{size},"platform":{platform}}}"#
        ));
    }
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{}]}}"#,
        children.join(",")
    );
    reg.add_manifest(repo, Some("1.36"), OCI_INDEX, Bytes::from(index));

    // The base layer nginx and the pipelines frontend share.
    let base = Layer::new(&[
        ("etc/", b""),
        (
            "etc/os-release",
            b"NAME=\"kfsec-emulator base\"\nID=kfsec\nVERSION_ID=12\n",
        ),
        ("usr/lib/base.txt", &filler("shared base layer", 4000)),
    ]);
    let nginx = Layer::new(&[
        ("usr/sbin/nginx", &filler("nginx 1.27", 3500)),
        (
            "etc/nginx/nginx.conf",
            b"events {}\nhttp { server { listen 80; } }\n",
        ),
    ]);
    image_of(
        reg,
        "docker.io/library/nginx",
        Some("1.27"),
        true,
        "amd64",
        None,
        &["nginx", "-g", "daemon off;"],
        &[base.clone(), nginx],
    );
    let frontend = Layer::new(&[(
        "server/dist/index.js",
        &filler("ml-pipeline frontend 2.0.5", 3000),
    )]);
    image_of(
        reg,
        "gcr.io/ml-pipeline/frontend",
        Some("2.0.5"),
        false,
        "amd64",
        None,
        &["node", "dist/server.js"],
        &[base, frontend],
    );
    let controller = Layer::new(&[(
        "app/cmd/controller/controller",
        &filler("cert-manager controller v1.14.5", 3000),
    )]);
    image_of(
        reg,
        "quay.io/jetstack/cert-manager-controller",
        Some("v1.14.5"),
        false,
        "amd64",
        None,
        &["/app/cmd/controller/controller"],
        &[controller],
    );
}

/// The tag a synthetic image standing in for an image reference by digest is stored under.
pub(crate) const STAND_IN_TAG: &str = "kfsec-seed";

/// Stores a small synthetic single-platform image (an OCI manifest, a config and one layer
/// whose content depends on `image`, so every reference has its own digests) for the image
/// reference `image` (`HOST/PATH:TAG`, a Docker Hub short name such as `mysql:8.0.29`, or
/// `HOST/PATH@sha256:...`). A reference by digest cannot be made (the content would have to
/// hash to it): its repository gets the image under [`STAND_IN_TAG`] instead, and its digest
/// is returned. Errors name a reference that does not parse.
pub(crate) fn seed_reference(
    reg: &mut RegistryState,
    image: &str,
) -> Result<Option<String>, String> {
    let r = super::ImageRef::parse(image).ok_or_else(|| {
        format!("{image:?} is not an image reference (HOST/PATH:TAG or HOST/PATH@sha256:...)")
    })?;
    let by_digest = r.reference.starts_with("sha256:");
    let tag = if by_digest {
        STAND_IN_TAG
    } else {
        r.reference.as_str()
    };
    let layer = Layer::new(&[(
        "kfsec-seed/image.txt",
        &filler(&format!("kfsec-emulator seed image {image}"), 2000),
    )]);
    let (d, _) = image_of(
        reg,
        &r.repo,
        Some(tag),
        false,
        "amd64",
        None,
        &["/bin/sh"],
        &[layer],
    );
    Ok(by_digest.then_some(d))
}

/// A layer: the gzipped tar and the digest of the uncompressed tar (its diff id).
#[derive(Debug, Clone)]
struct Layer {
    gzip: Bytes,
    diff_id: String,
}

impl Layer {
    fn new(entries: &[(&str, &[u8])]) -> Self {
        let tar = tar(entries);
        Self {
            diff_id: digest(&tar),
            gzip: Bytes::from(gzip_stored(&tar)),
        }
    }
}

/// Stores one image (config, layers, manifest) in `repo`, tagged when `tag` is given; returns
/// the manifest's digest and size.
#[allow(clippy::too_many_arguments)] // a private seed helper, called with literals
fn image_of(
    reg: &mut RegistryState,
    repo: &str,
    tag: Option<&str>,
    docker: bool,
    arch: &str,
    variant: Option<&str>,
    cmd: &[&str],
    layers: &[Layer],
) -> (String, usize) {
    let quoted = |items: &[&str]| {
        items
            .iter()
            .map(|s| format!("\"{s}\""))
            .collect::<Vec<_>>()
            .join(",")
    };
    let diff_ids: Vec<&str> = layers.iter().map(|l| l.diff_id.as_str()).collect();
    let history = vec![
        format!(r#"{{"created":"{SEED_TIME}","created_by":"kfsec-emulator seed"}}"#);
        layers.len()
    ];
    let variant = variant.map_or(String::new(), |v| format!(r#","variant":"{v}""#));
    let config = format!(
        r#"{{"architecture":"{arch}"{variant},"os":"linux","created":"{SEED_TIME}","config":{{"Env":["{PATH_ENV}"],"Cmd":[{}]}},"rootfs":{{"type":"layers","diff_ids":[{}]}},"history":[{}]}}"#,
        quoted(cmd),
        quoted(&diff_ids),
        history.join(",")
    );
    let (manifest_type, config_type, layer_type) = if docker {
        (DOCKER_MANIFEST, DOCKER_CONFIG, DOCKER_LAYER)
    } else {
        (OCI_MANIFEST, OCI_CONFIG, OCI_LAYER)
    };
    let config_size = config.len();
    let config_digest = reg.add_blob(repo, Bytes::from(config));
    let layer_descs: Vec<String> = layers
        .iter()
        .map(|l| {
            let size = l.gzip.len();
            let d = reg.add_blob(repo, l.gzip.clone());
            format!(r#"{{"mediaType":"{layer_type}","digest":"{d}","size":{size}}}"#)
        })
        .collect();
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{manifest_type}","config":{{"mediaType":"{config_type}","digest":"{config_digest}","size":{config_size}}},"layers":[{}]}}"#,
        layer_descs.join(",")
    );
    let size = manifest.len();
    let d = reg.add_manifest(repo, tag, manifest_type, Bytes::from(manifest));
    (d, size)
}

/// About `len` bytes of deterministic text about `label`.
fn filler(label: &str, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 80);
    let mut x: u32 = crc32(label.as_bytes());
    let mut line = 0;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        out.extend_from_slice(format!("{label} line {line:04} {x:08x}\n").as_bytes());
        line += 1;
    }
    out
}

/// A ustar archive of `entries` (a name ending in `/` is a directory), owned by root, mode 0644
/// (0755 for directories), modified at the epoch.
fn tar(entries: &[(&str, &[u8])]) -> Vec<u8> {
    fn octal(field: &mut [u8], value: usize) {
        let digits = format!("{value:0width$o}", width = field.len() - 1);
        field[..digits.len()].copy_from_slice(digits.as_bytes());
        field[digits.len()] = 0;
    }
    let mut out = Vec::new();
    for (name, data) in entries {
        let dir = name.ends_with('/');
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        octal(&mut h[100..108], if dir { 0o755 } else { 0o644 });
        octal(&mut h[108..116], 0);
        octal(&mut h[116..124], 0);
        octal(&mut h[124..136], data.len());
        octal(&mut h[136..148], 0);
        h[156] = if dir { b'5' } else { b'0' };
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[265..269].copy_from_slice(b"root");
        h[297..301].copy_from_slice(b"root");
        h[148..156].copy_from_slice(b"        ");
        let sum: usize = h.iter().map(|b| usize::from(*b)).sum();
        let digits = format!("{sum:06o}");
        h[148..154].copy_from_slice(digits.as_bytes());
        h[154] = 0;
        h[155] = b' ';
        out.extend_from_slice(&h);
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

/// A gzip member holding `data` in stored (uncompressed) deflate blocks, with no name and a zero
/// modification time.
fn gzip_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    let mut chunks = data.chunks(0xffff).peekable();
    if chunks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(chunk) = chunks.next() {
        out.push(u8::from(chunks.peek().is_none()));
        let len = u16::try_from(chunk.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    out.extend_from_slice(&crc32(data).to_le_bytes());
    out.extend_from_slice(&u32::try_from(data.len()).unwrap_or(u32::MAX).to_le_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_is_deterministic() {
        let (a, b) = (RegistryState::seed(), RegistryState::seed());
        assert_eq!(a.blobs, b.blobs);
        for image in SEEDED_IMAGES {
            let d = a.image_digest(image);
            assert!(d.is_some(), "{image}");
            assert_eq!(d, b.image_digest(image));
        }
        // nginx and the pipelines frontend share their first layer.
        let nginx = &a.repos["docker.io/library/nginx"].blobs;
        let frontend = &a.repos["gcr.io/ml-pipeline/frontend"].blobs;
        assert_eq!(nginx.intersection(frontend).count(), 1);
    }

    #[test]
    fn layers_are_gzipped_tars_readable_by_the_system_tools() {
        let Ok(dir) = std::env::temp_dir().canonicalize() else {
            return;
        };
        let layer = Layer::new(&[("bin/", b""), ("bin/x", b"hello\n")]);
        let path = dir.join(format!("kfsec-emulator-seed-{}.tar.gz", std::process::id()));
        std::fs::write(&path, &layer.gzip).unwrap();
        let out = std::process::Command::new("tar")
            .arg("-tzvf")
            .arg(&path)
            .output()
            .expect("tar is installed");
        std::fs::remove_file(&path).unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let listing = String::from_utf8_lossy(&out.stdout);
        assert!(listing.contains("bin/x"), "{listing}");
        assert!(listing.contains("root/root"), "{listing}");
    }
}
