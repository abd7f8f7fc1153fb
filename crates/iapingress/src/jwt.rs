//! Verification of the signed header that Google's Identity-Aware Proxy (IAP)
//! adds to every request it lets through.
//!
//! IAP puts an ES256-signed JWT in the [`IAP_JWT_HEADER`]
//! (`x-goog-iap-jwt-assertion`) request header. An app behind IAP must verify
//! it: if IAP is switched off by mistake, or a firewall rule lets traffic reach
//! the app around the load balancer, the unsigned `x-goog-authenticated-user-*`
//! headers can be forged, but this JWT cannot.
//!
//! What [`IapVerifier::verify`] checks, following Google's "Securing your app
//! with signed headers" page:
//!
//! * the header's `alg` is `ES256` (anything else, including `none`, `HS256`
//!   and `RS256`, is rejected before any key is looked at) and it names a `kid`;
//! * the signature, with the public key of that `kid` from Google's JWK set
//!   ([`GOOGLE_IAP_JWK_URL`]), fetched with `reqwest` and cached;
//! * `iss` is exactly [`GOOGLE_IAP_ISSUER`];
//! * `aud` is exactly the configured [`IapAudience`];
//! * `exp` is not in the past and `iat` (and `nbf`, if present) not in the
//!   future, both with a leeway for clock skew (30 s by default, as Google
//!   allows);
//! * `exp`, `iat`, `sub`, `aud` and `iss` are present.
//!
//! The verified claims come back as an [`IapIdentity`]. [`IapLayer`] does all
//! of this as a `tower` middleware: requests without a valid assertion get a
//! `401` and never reach the inner service; valid ones carry the
//! [`IapIdentity`] in their extensions.
//!
//! No error, log line or `Debug` output of this module contains the token
//! itself: it is a credential that a replaying attacker could use until it
//! expires.
//!
//! # Example
//!
//! ```no_run
//! use kfsec_iapingress::jwt::{IapAudience, IapVerifier};
//!
//! # async fn run(headers: http::HeaderMap) -> Result<(), kfsec_iapingress::jwt::JwtError> {
//! // The numbers come from `gcloud projects describe PROJECT` (projectNumber)
//! // and `gcloud compute backend-services describe NAME --global` (id).
//! let verifier = IapVerifier::new(IapAudience::backend_service(123456789012, 987654321));
//! let identity = verifier.verify_headers(&headers).await?;
//! println!("request from {}", identity.email.as_deref().unwrap_or(&identity.subject));
//! # Ok(())
//! # }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;

/// The request header in which IAP sends its signed JWT.
pub const IAP_JWT_HEADER: &str = "x-goog-iap-jwt-assertion";

/// Where Google publishes IAP's public keys, as a JWK set.
pub const GOOGLE_IAP_JWK_URL: &str = "https://www.gstatic.com/iap/verify/public_key-jwk";

/// The `iss` claim of every IAP JWT.
pub const GOOGLE_IAP_ISSUER: &str = "https://cloud.google.com/iap";

/// Default clock-skew allowance: Google documents 30 seconds.
const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);

/// How long fetched keys are kept when the response has no `max-age`.
const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(60 * 60);

/// Never keep keys longer than this, whatever `max-age` says.
const MAX_CACHE_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// At most one fetch of the key set per this interval (except the first), so
/// that a flood of tokens with made-up `kid`s cannot hammer the key server.
const MIN_REFETCH_INTERVAL: Duration = Duration::from_secs(30);

/// Timeout of one fetch of the key set.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Tokens longer than this are rejected without being parsed (IAP's are well
/// under 2 KiB).
const MAX_TOKEN_LEN: usize = 16 * 1024;

/// Attacker-controlled header fields (`alg`, `kid`) are cut to this many
/// characters before they go into an error message.
const MAX_ECHO_LEN: usize = 64;

// ---------------------------------------------------------------------------
// Audience
// ---------------------------------------------------------------------------

/// The audience (`aud` claim) that IAP JWTs for this app must carry.
///
/// IAP sets it to one of two shapes:
///
/// * `/projects/PROJECT_NUMBER/global/backendServices/SERVICE_ID` for apps
///   behind an external HTTP(S) load balancer (GKE Ingress, Compute Engine):
///   [`IapAudience::backend_service`]. `SERVICE_ID` is the numeric `id` shown
///   by `gcloud compute backend-services describe NAME --global`, not the name.
/// * `/projects/PROJECT_NUMBER/apps/PROJECT_ID` for App Engine:
///   [`IapAudience::app_engine`].
///
/// [`FromStr`] accepts exactly these two shapes, and [`fmt::Display`] gives
/// them back unchanged.
///
/// ```
/// use kfsec_iapingress::jwt::IapAudience;
///
/// let aud = IapAudience::backend_service(123456789012, 4567);
/// assert_eq!(aud.to_string(), "/projects/123456789012/global/backendServices/4567");
/// assert_eq!(aud, aud.to_string().parse().unwrap());
///
/// let app: IapAudience = "/projects/123/apps/my-project".parse().unwrap();
/// assert_eq!(app, IapAudience::app_engine(123, "my-project").unwrap());
///
/// assert!("my-backend".parse::<IapAudience>().is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct IapAudience(String);

impl IapAudience {
    /// The audience of a backend service of a global external load balancer
    /// (GKE Ingress, Compute Engine).
    pub fn backend_service(project_number: u64, service_id: u64) -> Self {
        Self(format!(
            "/projects/{project_number}/global/backendServices/{service_id}"
        ))
    }

    /// The audience of an App Engine app.
    ///
    /// `project_id` is the project's ID (`my-project`, or the legacy
    /// domain-scoped `example.com:my-project`); anything with other characters
    /// than lowercase letters, digits, `-`, `.` and `:` is refused with
    /// [`JwtError::InvalidAudienceFormat`].
    pub fn app_engine(project_number: u64, project_id: &str) -> Result<Self, JwtError> {
        let aud = format!("/projects/{project_number}/apps/{project_id}");
        if !is_project_id(project_id) {
            return Err(JwtError::InvalidAudienceFormat {
                input: echo(&aud),
                reason: "the project ID may only hold lowercase letters, digits, '-', '.' and ':'",
            });
        }
        Ok(Self(aud))
    }

    /// The audience as IAP writes it in the `aud` claim.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn is_project_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 100
        && s.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'.' | b':')
        })
}

/// A canonical decimal number: digits only, no sign, no leading zero.
fn parse_canonical_u64(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
    {
        return None;
    }
    s.parse().ok()
}

impl fmt::Display for IapAudience {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for IapAudience {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IapAudience({:?})", self.0)
    }
}

impl FromStr for IapAudience {
    type Err = JwtError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        const SHAPES: &str = "expected /projects/PROJECT_NUMBER/global/backendServices/SERVICE_ID \
             or /projects/PROJECT_NUMBER/apps/PROJECT_ID";
        let bad = |reason| JwtError::InvalidAudienceFormat {
            input: echo(s),
            reason,
        };
        let rest = s.strip_prefix("/projects/").ok_or_else(|| bad(SHAPES))?;
        let (number, rest) = rest.split_once('/').ok_or_else(|| bad(SHAPES))?;
        let number = parse_canonical_u64(number).ok_or_else(|| {
            bad("PROJECT_NUMBER must be the project's number (digits), not its ID")
        })?;
        if let Some(service) = rest.strip_prefix("global/backendServices/") {
            let service = parse_canonical_u64(service).ok_or_else(|| {
                bad("SERVICE_ID must be the backend service's numeric id, not its name")
            })?;
            Ok(Self::backend_service(number, service))
        } else if let Some(project_id) = rest.strip_prefix("apps/") {
            Self::app_engine(number, project_id).map_err(|_| {
                bad("the project ID may only hold lowercase letters, digits, '-', '.' and ':'")
            })
        } else {
            Err(bad(SHAPES))
        }
    }
}

// ---------------------------------------------------------------------------
// Identity
// ---------------------------------------------------------------------------

/// The verified claims of an IAP JWT: who IAP let through.
///
/// [`IapLayer`] puts it into the request's extensions; with axum, take it with
/// `axum::Extension<IapIdentity>`.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct IapIdentity {
    /// The `sub` claim: a stable, unique ID of the user, such as
    /// `accounts.google.com:118396627390218239423`.
    pub subject: String,
    /// The `email` claim: the user's email address. IAP sets it for Google
    /// identities; it can be absent for some external identities, so key
    /// authorization on [`subject`](Self::subject) where that matters.
    pub email: Option<String>,
    /// The `hd` claim: the user's hosted domain (Google Workspace / Cloud
    /// Identity organization), if any.
    pub hosted_domain: Option<String>,
    /// The `iat` claim.
    pub issued_at: SystemTime,
    /// The `exp` claim.
    pub expires_at: SystemTime,
    /// All claims of the token's payload, as sent (for `google`, `gcip`,
    /// `access_levels` and whatever IAP adds later).
    pub claims: Value,
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// Why an IAP JWT (or the verifier's configuration) was rejected.
///
/// No message or `Debug` output holds the token: it is a credential.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JwtError {
    /// The request has no `x-goog-iap-jwt-assertion` header.
    #[error(
        "missing the x-goog-iap-jwt-assertion header: the request did not come through \
         Identity-Aware Proxy; check that IAP is enabled on the backend service and that the \
         app is reachable only through the load balancer"
    )]
    MissingHeader,

    /// The header or token is not a well-formed JWT (three base64url parts,
    /// JSON header and payload).
    #[error(
        "the IAP JWT is malformed ({reason}); it was not produced by IAP, or was altered on \
         the way"
    )]
    Malformed {
        /// What is wrong with it.
        reason: &'static str,
    },

    /// The header's `alg` is not `ES256`, the only algorithm IAP uses. Tokens
    /// with `none`, `HS256`, `RS256` and so on are forgeries or are not from IAP.
    #[error(
        "the IAP JWT uses algorithm {alg:?}, but IAP signs only with ES256: the token was not \
         issued by IAP"
    )]
    UnsupportedAlgorithm {
        /// The `alg` the token names (cut to 64 characters).
        alg: String,
    },

    /// The header has no `kid`, so the signing key cannot be chosen.
    #[error("the IAP JWT header has no `kid` (key ID): the token was not issued by IAP")]
    MissingKeyId,

    /// No key of the JWK set has this `kid`, even after refreshing the set
    /// (the set is fetched again at most every 30 seconds).
    #[error(
        "no IAP public key has kid {kid:?} (key set from {source_url}): the token was not signed \
         by IAP, or the verifier's JWK URL does not serve IAP's keys"
    )]
    UnknownKeyId {
        /// The `kid` the token names (cut to 64 characters).
        kid: String,
        /// Where the keys came from (a URL, or `keys given offline`).
        source_url: String,
    },

    /// The signature does not match the key named by `kid`.
    #[error(
        "the IAP JWT's signature is invalid: the token was forged or altered (it names a known \
         kid but was not signed with that key)"
    )]
    InvalidSignature,

    /// A required claim is absent or has the wrong JSON type.
    #[error(
        "the IAP JWT's claim `{claim}` is missing or not a {expected}: the token was not issued \
         by IAP"
    )]
    InvalidClaim {
        /// The claim's name.
        claim: &'static str,
        /// What it should have been (`string`, `number`).
        expected: &'static str,
    },

    /// `iss` is not the expected issuer.
    #[error(
        "the IAP JWT has issuer {found:?} but {expected:?} was expected: it was not issued by \
         IAP (only change the expected issuer for tests)"
    )]
    WrongIssuer {
        /// The configured issuer.
        expected: String,
        /// The token's `iss`.
        found: String,
    },

    /// `aud` is not exactly the configured audience: the token was issued
    /// for another backend service or app.
    #[error(
        "the IAP JWT is for audience {found:?} but this app expects {expected:?}; set the \
         audience to /projects/PROJECT_NUMBER/global/backendServices/SERVICE_ID, where \
         SERVICE_ID is the numeric `id` from `gcloud compute backend-services describe NAME \
         --global` (or /projects/PROJECT_NUMBER/apps/PROJECT_ID on App Engine)"
    )]
    WrongAudience {
        /// The configured audience.
        expected: String,
        /// The token's `aud`, as JSON text.
        found: String,
    },

    /// `exp` is further in the past than the leeway allows.
    #[error(
        "the IAP JWT expired at {expired_at} (unix seconds), {ago} s ago, beyond the leeway of \
         {leeway} s; IAP tokens live 10 minutes: check this host's clock (NTP) and that requests \
         are not replayed or held in a queue"
    )]
    Expired {
        /// The token's `exp`, in seconds since the Unix epoch.
        expired_at: u64,
        /// How many seconds ago that was.
        ago: u64,
        /// The configured leeway, in seconds.
        leeway: u64,
    },

    /// `iat` (or `nbf`) is further in the future than the leeway allows.
    #[error(
        "the IAP JWT's `{claim}` is {ahead} s in the future, beyond the leeway of {leeway} s; \
         check this host's clock (NTP)"
    )]
    NotYetValid {
        /// `iat` or `nbf`.
        claim: &'static str,
        /// How many seconds ahead of this host's clock it is.
        ahead: u64,
        /// The configured leeway, in seconds.
        leeway: u64,
    },

    /// The JWK set could not be fetched.
    #[error(
        "could not fetch IAP's public keys from {url}: {reason}; check egress to that URL (proxy, \
         firewall, DNS) or give the keys with `with_keys`"
    )]
    KeyFetch {
        /// The JWK URL.
        url: String,
        /// What went wrong.
        reason: String,
    },

    /// The JWK set (fetched or given) is not usable.
    #[error(
        "the IAP key set from {source_url} is not usable: {reason}; it should be a JSON object \
         {{\"keys\": [...]}} of EC P-256 keys, as served at {GOOGLE_IAP_JWK_URL}"
    )]
    InvalidJwks {
        /// Where the keys came from.
        source_url: String,
        /// What is wrong with them.
        reason: String,
    },

    /// A string given as audience has neither of the two shapes IAP uses.
    #[error("{input:?} is not an IAP audience: {reason}")]
    InvalidAudienceFormat {
        /// The string (cut to 64 characters).
        input: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

impl JwtError {
    /// The HTTP status a server should answer with: `503 Service Unavailable`
    /// when the keys could not be had (not the caller's fault), `401
    /// Unauthorized` otherwise.
    pub fn status_code(&self) -> StatusCode {
        match self {
            Self::KeyFetch { .. } | Self::InvalidJwks { .. } => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::UNAUTHORIZED,
        }
    }
}

/// Cuts attacker-controlled text for error messages.
fn echo(s: &str) -> String {
    s.chars().take(MAX_ECHO_LEN).collect()
}

// ---------------------------------------------------------------------------
// Verifier
// ---------------------------------------------------------------------------

#[derive(Clone)]
struct Config {
    audience: IapAudience,
    issuer: String,
    leeway: Duration,
    jwk_url: String,
    cache_ttl: Option<Duration>,
    min_refetch_interval: Duration,
    /// Keys were given with `with_keys`: never fetch.
    offline: bool,
    http: Option<reqwest::Client>,
}

#[derive(Default)]
struct KeyCache {
    keys: HashMap<String, DecodingKey>,
    /// When the keys must be fetched again; `None` before the first fetch.
    expires_at: Option<Instant>,
    /// When the last fetch was tried, successful or not.
    last_attempt: Option<Instant>,
    /// Why the last fetch failed, if it did.
    last_error: Option<String>,
}

#[derive(Default)]
struct Shared {
    cache: RwLock<KeyCache>,
    /// Held while fetching, so concurrent verifications share one fetch.
    fetch: tokio::sync::Mutex<()>,
    /// The default HTTP client, built on first fetch.
    client: std::sync::OnceLock<reqwest::Client>,
}

/// Verifies IAP JWTs for one audience.
///
/// Cheap to clone: clones share the configuration and the key cache. Keys are
/// fetched from [`GOOGLE_IAP_JWK_URL`] on first use and kept for the
/// response's `Cache-Control: max-age` (1 hour without one, 24 hours at
/// most); a token whose `kid` is not cached makes the verifier fetch the set
/// again, but at most once per 30 seconds. Concurrent verifications wait for
/// the same fetch. If a refresh fails, keys already known are still used.
///
/// ```
/// use std::time::Duration;
/// use kfsec_iapingress::jwt::{IapAudience, IapVerifier};
///
/// let verifier = IapVerifier::new(IapAudience::backend_service(123456789012, 4567))
///     .with_leeway(Duration::from_secs(10))
///     .with_cache_ttl(Duration::from_secs(600));
/// assert_eq!(verifier.audience().as_str(), "/projects/123456789012/global/backendServices/4567");
/// ```
#[derive(Clone)]
pub struct IapVerifier {
    config: Arc<Config>,
    shared: Arc<Shared>,
}

impl fmt::Debug for IapVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IapVerifier")
            .field("audience", &self.config.audience)
            .field("issuer", &self.config.issuer)
            .field("leeway", &self.config.leeway)
            .field("jwk_url", &self.config.jwk_url)
            .field("cache_ttl", &self.config.cache_ttl)
            .field("offline", &self.config.offline)
            .finish_non_exhaustive()
    }
}

impl IapVerifier {
    /// A verifier for tokens issued for `audience`, with Google's key URL and
    /// issuer, a 30 s leeway, and keys cached as their response says.
    pub fn new(audience: IapAudience) -> Self {
        Self {
            config: Arc::new(Config {
                audience,
                issuer: GOOGLE_IAP_ISSUER.to_owned(),
                leeway: DEFAULT_LEEWAY,
                jwk_url: GOOGLE_IAP_JWK_URL.to_owned(),
                cache_ttl: None,
                min_refetch_interval: MIN_REFETCH_INTERVAL,
                offline: false,
                http: None,
            }),
            shared: Arc::default(),
        }
    }

    /// Fetches the JWK set from `url` instead of [`GOOGLE_IAP_JWK_URL`] (a
    /// mirror, or a local server in tests). Drops keys cached so far.
    pub fn with_jwk_url(mut self, url: impl Into<String>) -> Self {
        let config = Arc::make_mut(&mut self.config);
        config.jwk_url = url.into();
        config.offline = false;
        self.shared = Arc::default();
        self
    }

    /// Allowed clock skew, applied to `exp`, `iat` and `nbf` (default 30 s).
    pub fn with_leeway(mut self, leeway: Duration) -> Self {
        Arc::make_mut(&mut self.config).leeway = leeway;
        self
    }

    /// The expected `iss` (default [`GOOGLE_IAP_ISSUER`]). Only tests should
    /// need another.
    pub fn with_issuer(mut self, issuer: impl Into<String>) -> Self {
        Arc::make_mut(&mut self.config).issuer = issuer.into();
        self
    }

    /// Keeps fetched keys this long, whatever the response's `Cache-Control`
    /// says (by default: its `max-age`, else 1 hour).
    pub fn with_cache_ttl(mut self, ttl: Duration) -> Self {
        Arc::make_mut(&mut self.config).cache_ttl = Some(ttl);
        self
    }

    /// Uses this HTTP client to fetch keys (for a proxy, or custom roots). By
    /// default a client with a 10 s timeout is built on first fetch.
    pub fn with_http_client(mut self, client: reqwest::Client) -> Self {
        Arc::make_mut(&mut self.config).http = Some(client);
        self
    }

    /// Uses exactly these keys and never fetches any: `jwk_set_json` is a JWK
    /// set as served at [`GOOGLE_IAP_JWK_URL`] (`{"keys": [...]}`). For hosts
    /// without egress; such a verifier starts to refuse tokens once IAP
    /// rotates its keys, so refresh the set yourself.
    ///
    /// ```
    /// use kfsec_iapingress::jwt::{IapAudience, IapVerifier};
    ///
    /// let err = IapVerifier::new(IapAudience::backend_service(1, 2))
    ///     .with_keys(r#"{"keys": []}"#)
    ///     .unwrap_err();
    /// assert!(err.to_string().contains("no usable"));
    /// ```
    pub fn with_keys(mut self, jwk_set_json: &str) -> Result<Self, JwtError> {
        let keys = parse_jwk_set(jwk_set_json.as_bytes(), "keys given offline")?;
        let config = Arc::make_mut(&mut self.config);
        config.offline = true;
        let cache = KeyCache {
            keys,
            ..KeyCache::default()
        };
        self.shared = Arc::new(Shared {
            cache: RwLock::new(cache),
            ..Shared::default()
        });
        Ok(self)
    }

    /// The audience tokens must carry.
    pub fn audience(&self) -> &IapAudience {
        &self.config.audience
    }

    /// Verifies the [`IAP_JWT_HEADER`] of a request.
    ///
    /// A missing header is [`JwtError::MissingHeader`]; more than one such
    /// header, or one that is not ASCII, is [`JwtError::Malformed`].
    pub async fn verify_headers(&self, headers: &HeaderMap) -> Result<IapIdentity, JwtError> {
        let mut values = headers.get_all(IAP_JWT_HEADER).iter();
        let value: &HeaderValue = values.next().ok_or(JwtError::MissingHeader)?;
        if values.next().is_some() {
            return Err(JwtError::Malformed {
                reason: "the request has more than one x-goog-iap-jwt-assertion header",
            });
        }
        let token = value.to_str().map_err(|_| JwtError::Malformed {
            reason: "the x-goog-iap-jwt-assertion header is not ASCII text",
        })?;
        self.verify(token).await
    }

    /// Verifies one IAP JWT (the value of the [`IAP_JWT_HEADER`]) and returns
    /// its claims.
    pub async fn verify(&self, token: &str) -> Result<IapIdentity, JwtError> {
        let token = token.trim();
        if token.len() > MAX_TOKEN_LEN {
            return Err(JwtError::Malformed {
                reason: "longer than 16 KiB",
            });
        }
        let header = parse_header(token)?;
        // Before any key is looked at: only ES256.
        match header.alg {
            Some(Value::String(alg)) if alg == "ES256" => {}
            Some(Value::String(alg)) => {
                return Err(JwtError::UnsupportedAlgorithm { alg: echo(&alg) });
            }
            Some(other) => {
                return Err(JwtError::UnsupportedAlgorithm {
                    alg: echo(&other.to_string()),
                });
            }
            None => {
                return Err(JwtError::Malformed {
                    reason: "the header has no `alg`",
                });
            }
        }
        let kid = match header.kid {
            Some(Value::String(kid)) if !kid.is_empty() => kid,
            _ => return Err(JwtError::MissingKeyId),
        };

        let key = self.key_for(&kid).await?;

        let mut validation = Validation::new(Algorithm::ES256);
        // The claims are checked below, with clearer errors.
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        let data =
            jsonwebtoken::decode::<Value>(token, &key, &validation).map_err(map_jwt_error)?;
        self.check_claims(data.claims)
    }

    fn check_claims(&self, claims: Value) -> Result<IapIdentity, JwtError> {
        let config = &self.config;
        let leeway = config.leeway.as_secs();
        let now = unix_now();

        let iss = string_claim(&claims, "iss")?;
        if iss != config.issuer {
            return Err(JwtError::WrongIssuer {
                expected: config.issuer.clone(),
                found: echo(iss),
            });
        }
        match claims.get("aud") {
            Some(Value::String(aud)) if aud == config.audience.as_str() => {}
            Some(found) => {
                let found = match found {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                return Err(JwtError::WrongAudience {
                    expected: config.audience.to_string(),
                    found: found.chars().take(256).collect(),
                });
            }
            None => {
                return Err(JwtError::InvalidClaim {
                    claim: "aud",
                    expected: "string",
                });
            }
        }

        let exp = numeric_claim(&claims, "exp")?;
        let iat = numeric_claim(&claims, "iat")?;
        if now > exp.saturating_add(leeway) {
            return Err(JwtError::Expired {
                expired_at: exp,
                ago: now - exp,
                leeway,
            });
        }
        if iat > now.saturating_add(leeway) {
            return Err(JwtError::NotYetValid {
                claim: "iat",
                ahead: iat - now,
                leeway,
            });
        }
        if claims.get("nbf").is_some() {
            let nbf = numeric_claim(&claims, "nbf")?;
            if nbf > now.saturating_add(leeway) {
                return Err(JwtError::NotYetValid {
                    claim: "nbf",
                    ahead: nbf - now,
                    leeway,
                });
            }
        }

        let subject = string_claim(&claims, "sub")?.to_owned();
        if subject.is_empty() {
            return Err(JwtError::InvalidClaim {
                claim: "sub",
                expected: "non-empty string",
            });
        }
        let email = optional_string_claim(&claims, "email")?;
        let hosted_domain = optional_string_claim(&claims, "hd")?;
        Ok(IapIdentity {
            subject,
            email,
            hosted_domain,
            issued_at: UNIX_EPOCH + Duration::from_secs(iat),
            expires_at: UNIX_EPOCH + Duration::from_secs(exp),
            claims,
        })
    }

    /// The key for `kid`: from the cache, else after (at most) one fetch.
    async fn key_for(&self, kid: &str) -> Result<DecodingKey, JwtError> {
        let config = &self.config;
        let unknown = || JwtError::UnknownKeyId {
            kid: echo(kid),
            source_url: if config.offline {
                "keys given offline".to_owned()
            } else {
                config.jwk_url.clone()
            },
        };

        // Fast path: a fresh cache that has the key.
        {
            let cache = read(&self.shared.cache);
            let fresh = config.offline || cache.expires_at.is_some_and(|t| Instant::now() < t);
            if let Some(key) = cache.keys.get(kid)
                && fresh
            {
                return Ok(key.clone());
            }
            if config.offline {
                return Err(unknown());
            }
        }

        // Slow path: one fetch at a time; whoever waited re-checks first.
        let _fetching = self.shared.fetch.lock().await;
        {
            let cache = read(&self.shared.cache);
            let now = Instant::now();
            let fresh = cache.expires_at.is_some_and(|t| now < t);
            let cached = cache.keys.get(kid);
            if let Some(key) = cached
                && fresh
            {
                return Ok(key.clone());
            }
            let may_fetch = cache
                .last_attempt
                .is_none_or(|t| now.duration_since(t) >= config.min_refetch_interval);
            if !may_fetch {
                // Fetched (or tried) a moment ago: do not ask again yet.
                return match (cached, &cache.last_error) {
                    (Some(key), _) => Ok(key.clone()),
                    (None, Some(reason)) => Err(JwtError::KeyFetch {
                        url: config.jwk_url.clone(),
                        reason: format!("{reason} (retried at most every 30 s)"),
                    }),
                    (None, None) => Err(unknown()),
                };
            }
        }

        let result = self.fetch_keys().await;
        let mut cache = write(&self.shared.cache);
        let now = Instant::now();
        cache.last_attempt = Some(now);
        match result {
            Ok((keys, ttl)) => {
                tracing::debug!(url = %config.jwk_url, keys = keys.len(), ?ttl, "fetched IAP public keys");
                cache.keys = keys;
                cache.expires_at = Some(now + ttl);
                cache.last_error = None;
                cache.keys.get(kid).cloned().ok_or_else(unknown)
            }
            Err(err) => {
                cache.last_error = Some(match &err {
                    JwtError::KeyFetch { reason, .. } | JwtError::InvalidJwks { reason, .. } => {
                        reason.clone()
                    }
                    other => other.to_string(),
                });
                match cache.keys.get(kid) {
                    Some(key) => {
                        tracing::warn!(error = %err, "refreshing IAP public keys failed; using the keys fetched before");
                        Ok(key.clone())
                    }
                    None => Err(err),
                }
            }
        }
    }

    /// Fetches and parses the JWK set; returns the keys and how long to keep them.
    async fn fetch_keys(&self) -> Result<(HashMap<String, DecodingKey>, Duration), JwtError> {
        let config = &self.config;
        let url = &config.jwk_url;
        let fetch_error = |reason: String| JwtError::KeyFetch {
            url: url.clone(),
            reason,
        };
        let client = match (&config.http, self.shared.client.get()) {
            (Some(client), _) | (None, Some(client)) => client.clone(),
            (None, None) => {
                let client = reqwest::Client::builder()
                    .timeout(FETCH_TIMEOUT)
                    .build()
                    .map_err(|e| {
                        fetch_error(format!("cannot build an HTTP client: {}", chain(&e)))
                    })?;
                self.shared.client.get_or_init(|| client).clone()
            }
        };
        let response = client
            .get(url)
            .send()
            .await
            .map_err(|e| fetch_error(chain(&e.without_url())))?;
        let status = response.status();
        if !status.is_success() {
            return Err(fetch_error(format!("the server answered {status}")));
        }
        let max_age = response
            .headers()
            .get_all(http::header::CACHE_CONTROL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(cache_control_max_age);
        let body = response
            .bytes()
            .await
            .map_err(|e| fetch_error(chain(&e.without_url())))?;
        let keys = parse_jwk_set(&body, url)?;
        let ttl = config
            .cache_ttl
            .or(max_age)
            .unwrap_or(DEFAULT_CACHE_TTL)
            .min(MAX_CACHE_TTL);
        Ok((keys, ttl))
    }
}

fn read(lock: &RwLock<KeyCache>) -> std::sync::RwLockReadGuard<'_, KeyCache> {
    // The cache stays consistent even if a holder panicked: every write is a
    // few plain assignments.
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write(lock: &RwLock<KeyCache>) -> std::sync::RwLockWriteGuard<'_, KeyCache> {
    lock.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// An error and its causes, as one line (reqwest's own message is terse:
/// "error sending request").
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `max-age=N` of one `Cache-Control` value.
fn cache_control_max_age(value: &str) -> Option<Duration> {
    value.split(',').find_map(|directive| {
        let (name, arg) = directive.trim().split_once('=')?;
        if name.trim().eq_ignore_ascii_case("max-age") {
            arg.trim()
                .trim_matches('"')
                .parse()
                .ok()
                .map(Duration::from_secs)
        } else {
            None
        }
    })
}

fn map_jwt_error(err: jsonwebtoken::errors::Error) -> JwtError {
    use jsonwebtoken::errors::ErrorKind;
    // The messages are our own: none of the library's text is passed on.
    match err.into_kind() {
        ErrorKind::InvalidSignature | ErrorKind::InvalidEcdsaKey => JwtError::InvalidSignature,
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
            JwtError::UnsupportedAlgorithm {
                alg: "(not ES256)".to_owned(),
            }
        }
        ErrorKind::Base64(_) => JwtError::Malformed {
            reason: "a part is not valid base64url",
        },
        ErrorKind::Json(_) | ErrorKind::Utf8(_) => JwtError::Malformed {
            reason: "the payload is not a JSON object",
        },
        _ => JwtError::Malformed {
            reason: "the token could not be decoded",
        },
    }
}

#[derive(Deserialize)]
struct RawHeader {
    alg: Option<Value>,
    kid: Option<Value>,
}

/// Splits the token and reads its header, without trusting anything yet.
fn parse_header(token: &str) -> Result<RawHeader, JwtError> {
    let mut parts = token.split('.');
    let (Some(header), Some(_payload), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed {
            reason: "a JWT has three dot-separated parts",
        });
    };
    let bytes = b64url_decode(header).ok_or(JwtError::Malformed {
        reason: "the header is not valid base64url",
    })?;
    serde_json::from_slice(&bytes).map_err(|_| JwtError::Malformed {
        reason: "the header is not a JSON object",
    })
}

/// Base64url without padding (RFC 7515 section 2).
fn b64url_decode(s: &str) -> Option<Vec<u8>> {
    if s.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

fn string_claim<'a>(claims: &'a Value, claim: &'static str) -> Result<&'a str, JwtError> {
    claims
        .get(claim)
        .and_then(Value::as_str)
        .ok_or(JwtError::InvalidClaim {
            claim,
            expected: "string",
        })
}

fn optional_string_claim(claims: &Value, claim: &'static str) -> Result<Option<String>, JwtError> {
    match claims.get(claim) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(JwtError::InvalidClaim {
            claim,
            expected: "string",
        }),
    }
}

/// A NumericDate: seconds since the epoch, an integer (or a non-negative
/// finite number, cut to whole seconds).
fn numeric_claim(claims: &Value, claim: &'static str) -> Result<u64, JwtError> {
    let value = claims.get(claim).ok_or(JwtError::InvalidClaim {
        claim,
        expected: "number",
    })?;
    value
        .as_u64()
        .or_else(|| {
            value
                .as_f64()
                .filter(|f| f.is_finite() && *f >= 0.0 && *f < 1e15)
                .map(|f| f as u64)
        })
        .ok_or(JwtError::InvalidClaim {
            claim,
            expected: "number",
        })
}

#[derive(Deserialize)]
struct RawJwkSet {
    keys: Vec<Value>,
}

#[derive(Deserialize)]
struct RawEcJwk {
    kty: String,
    crv: Option<String>,
    kid: Option<String>,
    alg: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

/// The usable (EC P-256, ES256) keys of a JWK set, by `kid`. Other keys are
/// skipped; a set without any usable key is an error.
fn parse_jwk_set(json: &[u8], source_url: &str) -> Result<HashMap<String, DecodingKey>, JwtError> {
    let invalid = |reason: String| JwtError::InvalidJwks {
        source_url: source_url.to_owned(),
        reason,
    };
    let set: RawJwkSet = serde_json::from_slice(json)
        .map_err(|e| invalid(format!("not a JSON object with a `keys` array ({e})")))?;
    let mut keys = HashMap::new();
    for raw in set.keys {
        let Ok(jwk) = serde_json::from_value::<RawEcJwk>(raw) else {
            tracing::debug!("skipping a JWK without `kty`");
            continue;
        };
        let usable = jwk.kty == "EC"
            && jwk.crv.as_deref() == Some("P-256")
            && jwk.alg.as_deref().is_none_or(|a| a == "ES256");
        let (Some(kid), Some(x), Some(y), true) = (jwk.kid, jwk.x, jwk.y, usable) else {
            tracing::debug!("skipping a JWK that is not an ES256 key with a kid");
            continue;
        };
        let coordinate_ok = |c: &str| b64url_decode(c).is_some_and(|b| b.len() == 32);
        if !coordinate_ok(&x) || !coordinate_ok(&y) {
            return Err(invalid(format!(
                "key {:?} does not have 32-byte x and y coordinates",
                echo(&kid)
            )));
        }
        let key = DecodingKey::from_ec_components(&x, &y)
            .map_err(|_| invalid(format!("key {:?} is not a valid EC key", echo(&kid))))?;
        keys.insert(kid, key);
    }
    if keys.is_empty() {
        return Err(invalid(
            "it has no usable ES256 (EC P-256) key with a kid".to_owned(),
        ));
    }
    Ok(keys)
}

// ---------------------------------------------------------------------------
// Tower middleware
// ---------------------------------------------------------------------------

/// A `tower` layer that lets through only requests with a valid IAP JWT.
///
/// Requests without a valid [`IAP_JWT_HEADER`] get a plain-text response
/// saying why (status from [`JwtError::status_code`]: `401`, or `503` when
/// the keys cannot be fetched) and never reach the inner service. Valid ones
/// reach it with the [`IapIdentity`] in their extensions.
///
/// The layer works for any inner service of `http::Request<B>` whose response
/// body type can be built `From<String>`: axum's `Body`, `String`,
/// `http_body_util::Full<Bytes>` and so on. So it needs no web framework
/// itself, and the rejection has the inner service's own response type (no
/// boxing or mapping of bodies).
///
/// ```no_run
/// use axum::{Extension, Router, routing::get};
/// use kfsec_iapingress::jwt::{IapAudience, IapIdentity, IapLayer, IapVerifier};
///
/// async fn whoami(Extension(id): Extension<IapIdentity>) -> String {
///     id.email.unwrap_or(id.subject)
/// }
///
/// let verifier = IapVerifier::new(IapAudience::backend_service(123456789012, 4567));
/// let app: Router = Router::new()
///     .route("/", get(whoami))
///     .layer(IapLayer::new(verifier));
/// ```
///
/// Load-balancer health checks carry no IAP header: serve them from a route
/// outside the layer (for example with axum's `route_layer` on the other
/// routes only).
#[derive(Clone, Debug)]
pub struct IapLayer {
    verifier: IapVerifier,
}

impl IapLayer {
    /// A layer that verifies with `verifier`.
    pub fn new(verifier: IapVerifier) -> Self {
        Self { verifier }
    }
}

impl<S> tower::Layer<S> for IapLayer {
    type Service = IapService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        IapService {
            inner,
            verifier: self.verifier.clone(),
        }
    }
}

/// The service made by [`IapLayer`].
#[derive(Clone, Debug)]
pub struct IapService<S> {
    inner: S,
    verifier: IapVerifier,
}

impl<S, ReqBody, ResBody> tower::Service<Request<ReqBody>> for IapService<S>
where
    S: tower::Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: From<String> + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        // The clone that was not polled ready stays here; the ready one goes.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let verifier = self.verifier.clone();
        Box::pin(async move {
            match verifier.verify_headers(request.headers()).await {
                Ok(identity) => {
                    request.extensions_mut().insert(identity);
                    inner.call(request).await
                }
                Err(err) => {
                    tracing::info!(error = %err, path = request.uri().path(), "rejected a request without a valid IAP JWT");
                    Ok(rejection(&err))
                }
            }
        })
    }
}

fn rejection<B: From<String>>(err: &JwtError) -> Response<B> {
    let mut response = Response::new(B::from(format!("{err}\n")));
    *response.status_mut() = err.status_code();
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::Router;
    use axum::routing::get;
    use http_body_util::BodyExt;
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::json;
    use tower::{Layer, Service, ServiceExt};

    const PROJECT: u64 = 123_456_789_012;
    const SERVICE: u64 = 4_567_890;

    fn audience() -> IapAudience {
        IapAudience::backend_service(PROJECT, SERVICE)
    }

    fn b64url(bytes: &[u8]) -> String {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
            for i in 0..=chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out
    }

    /// A locally generated P-256 key standing in for one of IAP's.
    struct TestKey {
        kid: String,
        encoding: EncodingKey,
        public_raw: Vec<u8>,
    }

    impl TestKey {
        fn new(kid: &str) -> Self {
            let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
            Self {
                kid: kid.to_owned(),
                encoding: EncodingKey::from_ec_der(&pair.serialize_der()),
                public_raw: pair.public_key_raw().to_vec(),
            }
        }

        /// The key as Google's JWK endpoint lists it.
        fn jwk(&self) -> Value {
            assert_eq!(self.public_raw.len(), 65);
            assert_eq!(self.public_raw[0], 4);
            json!({
                "alg": "ES256",
                "crv": "P-256",
                "kid": self.kid,
                "kty": "EC",
                "use": "sig",
                "x": b64url(&self.public_raw[1..33]),
                "y": b64url(&self.public_raw[33..]),
            })
        }

        fn sign(&self, claims: &Value) -> String {
            self.sign_as(&self.kid, claims)
        }

        fn sign_as(&self, kid: &str, claims: &Value) -> String {
            let mut header = Header::new(Algorithm::ES256);
            header.kid = Some(kid.to_owned());
            encode(&header, claims, &self.encoding).unwrap()
        }
    }

    fn jwk_set(keys: &[&TestKey]) -> String {
        json!({ "keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>() }).to_string()
    }

    fn claims() -> Value {
        let now = unix_now();
        json!({
            "aud": audience().to_string(),
            "email": "alice@example.com",
            "exp": now + 600,
            "hd": "example.com",
            "iat": now,
            "iss": GOOGLE_IAP_ISSUER,
            "sub": "accounts.google.com:118396627390218239423",
            "google": { "access_levels": ["accessPolicies/1/accessLevels/corp"] },
        })
    }

    fn claims_with(key: &str, value: Value) -> Value {
        let mut c = claims();
        c[key] = value;
        c
    }

    fn offline(keys: &[&TestKey]) -> IapVerifier {
        IapVerifier::new(audience())
            .with_keys(&jwk_set(keys))
            .unwrap()
    }

    /// Asserts that neither the message nor `Debug` holds the token or its
    /// signature.
    fn assert_no_token(err: &JwtError, token: &str) {
        let signature = token.rsplit('.').next().unwrap();
        for text in [err.to_string(), format!("{err:?}")] {
            if token.len() > 8 {
                assert!(!text.contains(token), "token leaked: {text}");
            }
            if signature.len() > 8 {
                assert!(!text.contains(signature), "signature leaked: {text}");
            }
        }
    }

    async fn rejects(verifier: &IapVerifier, token: &str) -> JwtError {
        let err = verifier.verify(token).await.unwrap_err();
        assert_no_token(&err, token);
        err
    }

    /// A local JWK server that counts its requests; its key set can be changed.
    struct JwkServer {
        url: String,
        hits: Arc<AtomicUsize>,
        body: Arc<Mutex<String>>,
    }

    impl JwkServer {
        async fn start(body: String, cache_control: Option<&'static str>) -> Self {
            let hits = Arc::new(AtomicUsize::new(0));
            let body = Arc::new(Mutex::new(body));
            let (h, b) = (hits.clone(), body.clone());
            let app = Router::new().route(
                "/jwk",
                get(move || {
                    let (h, b) = (h.clone(), b.clone());
                    async move {
                        h.fetch_add(1, Ordering::SeqCst);
                        // Slow enough that concurrent verifications overlap.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        let mut response =
                            Response::new(axum::body::Body::from(b.lock().unwrap().clone()));
                        response.headers_mut().insert(
                            http::header::CONTENT_TYPE,
                            HeaderValue::from_static("application/json"),
                        );
                        if let Some(cc) = cache_control {
                            response
                                .headers_mut()
                                .insert(http::header::CACHE_CONTROL, HeaderValue::from_static(cc));
                        }
                        response
                    }
                }),
            );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}/jwk", listener.local_addr().unwrap());
            tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
            Self { url, hits, body }
        }

        fn hits(&self) -> usize {
            self.hits.load(Ordering::SeqCst)
        }

        fn set(&self, body: String) {
            *self.body.lock().unwrap() = body;
        }
    }

    #[test]
    fn verifier_is_send_sync_and_cheap_to_clone() {
        fn assert_send_sync<T: Send + Sync + Clone + 'static>() {}
        assert_send_sync::<IapVerifier>();
        assert_send_sync::<IapLayer>();
        assert_send_sync::<JwtError>();
        let v = IapVerifier::new(audience());
        let c = v.clone();
        assert!(Arc::ptr_eq(&v.config, &c.config) && Arc::ptr_eq(&v.shared, &c.shared));
    }

    #[test]
    fn audience_shapes() {
        let aud = audience();
        assert_eq!(
            aud.to_string(),
            "/projects/123456789012/global/backendServices/4567890"
        );
        assert_eq!(aud.to_string().parse::<IapAudience>().unwrap(), aud);
        let app = IapAudience::app_engine(42, "example.com:my-app").unwrap();
        assert_eq!(app.as_str(), "/projects/42/apps/example.com:my-app");
        assert_eq!(app.to_string().parse::<IapAudience>().unwrap(), app);
        for bad in [
            "",
            "my-backend",
            "/projects/123/global/backendServices/my-backend",
            "/projects/my-project/global/backendServices/1",
            "/projects/0123/global/backendServices/1",
            "/projects/+1/global/backendServices/1",
            "/projects/1/global/backendServices/",
            "/projects/1/global/backendServices/1/extra",
            "/projects/1/regions/x/backendServices/1",
            "/projects/1/apps/",
            "/projects/1/apps/My_Project",
            "/projects/1/apps/a/b",
            "projects/1/apps/a",
        ] {
            let err = bad.parse::<IapAudience>().unwrap_err();
            assert!(
                matches!(err, JwtError::InvalidAudienceFormat { .. }),
                "{bad}: {err}"
            );
        }
        assert!(IapAudience::app_engine(1, "a/b").is_err());
    }

    #[test]
    fn cache_control_parsing() {
        assert_eq!(
            cache_control_max_age("public, max-age=22466, must-revalidate, no-transform"),
            Some(Duration::from_secs(22466))
        );
        assert_eq!(
            cache_control_max_age("Max-Age = 5"),
            Some(Duration::from_secs(5))
        );
        assert_eq!(cache_control_max_age("no-cache"), None);
        assert_eq!(cache_control_max_age("max-age=abc"), None);
    }

    #[test]
    fn base64url_round_trip() {
        for len in 0..20 {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            assert_eq!(b64url_decode(&b64url(&bytes)).unwrap(), bytes);
        }
        assert!(b64url_decode("a").is_none());
        assert!(b64url_decode("ab+c").is_none());
        assert!(b64url_decode("ab==").is_none());
    }

    #[tokio::test]
    async fn valid_token_is_accepted() {
        let key = TestKey::new("key-1");
        let verifier = offline(&[&key]);
        let claims = claims();
        let id = verifier.verify(&key.sign(&claims)).await.unwrap();
        assert_eq!(id.subject, "accounts.google.com:118396627390218239423");
        assert_eq!(id.email.as_deref(), Some("alice@example.com"));
        assert_eq!(id.hosted_domain.as_deref(), Some("example.com"));
        let exp = claims["exp"].as_u64().unwrap();
        let iat = claims["iat"].as_u64().unwrap();
        assert_eq!(id.expires_at, UNIX_EPOCH + Duration::from_secs(exp));
        assert_eq!(id.issued_at, UNIX_EPOCH + Duration::from_secs(iat));
        assert_eq!(id.claims, claims);

        // Without the optional claims.
        let mut minimal = claims.clone();
        for k in ["email", "hd", "google"] {
            minimal.as_object_mut().unwrap().remove(k);
        }
        let id = verifier.verify(&key.sign(&minimal)).await.unwrap();
        assert_eq!((id.email, id.hosted_domain), (None, None));
    }

    #[tokio::test]
    async fn wrong_audience_is_rejected() {
        let key = TestKey::new("key-1");
        let verifier = offline(&[&key]);
        let other = IapAudience::backend_service(PROJECT, SERVICE + 1).to_string();
        for aud in [
            json!(other),
            json!(format!("{}/", audience())),
            json!([audience().to_string()]),
            json!(""),
        ] {
            let token = key.sign(&claims_with("aud", aud));
            let err = rejects(&verifier, &token).await;
            assert!(matches!(err, JwtError::WrongAudience { .. }), "{err}");
            let msg = err.to_string();
            assert!(msg.contains(audience().as_str()), "{msg}");
            assert!(
                msg.contains("gcloud compute backend-services describe"),
                "{msg}"
            );
        }
        let token = key.sign(&claims_with("aud", json!(other)));
        assert!(
            rejects(&verifier, &token)
                .await
                .to_string()
                .contains(&other)
        );
    }

    #[tokio::test]
    async fn expiry_respects_the_leeway() {
        let key = TestKey::new("key-1");
        let verifier = offline(&[&key]);
        let now = unix_now();

        let expired = key.sign(&claims_with("exp", json!(now - 120)));
        let err = rejects(&verifier, &expired).await;
        assert!(matches!(err, JwtError::Expired { leeway: 30, .. }), "{err}");

        // Expired 10 s ago: within the default 30 s leeway.
        let recent = key.sign(&claims_with("exp", json!(now - 10)));
        verifier.verify(&recent).await.unwrap();

        // ...but not with no leeway.
        let strict = verifier.clone().with_leeway(Duration::ZERO);
        let err = rejects(&strict, &recent).await;
        assert!(matches!(err, JwtError::Expired { .. }), "{err}");

        // A longer leeway accepts the older token.
        let lax = verifier.with_leeway(Duration::from_secs(300));
        lax.verify(&expired).await.unwrap();
    }

    #[tokio::test]
    async fn issued_in_the_future_is_rejected() {
        let key = TestKey::new("key-1");
        let verifier = offline(&[&key]);
        let now = unix_now();
        let future = key.sign(&claims_with("iat", json!(now + 300)));
        let err = rejects(&verifier, &future).await;
        assert!(
            matches!(err, JwtError::NotYetValid { claim: "iat", .. }),
            "{err}"
        );
        // A little ahead (clock skew) is fine.
        verifier
            .verify(&key.sign(&claims_with("iat", json!(now + 10))))
            .await
            .unwrap();
        // nbf, when present, gets the same treatment.
        let nbf = key.sign(&claims_with("nbf", json!(now + 300)));
        let err = rejects(&verifier, &nbf).await;
        assert!(
            matches!(err, JwtError::NotYetValid { claim: "nbf", .. }),
            "{err}"
        );
    }

    #[tokio::test]
    async fn wrong_issuer_is_rejected() {
        let key = TestKey::new("key-1");
        let verifier = offline(&[&key]);
        let token = key.sign(&claims_with("iss", json!("https://accounts.google.com")));
        let err = rejects(&verifier, &token).await;
        assert!(matches!(err, JwtError::WrongIssuer { .. }), "{err}");
        // A configured issuer is honoured.
        let custom = verifier.with_issuer("https://accounts.google.com");
        custom.verify(&token).await.unwrap();
    }

    #[tokio::test]
    async fn required_claims_are_required() {
        let key = TestKey::new("key-1");
        let verifier = offline(&[&key]);
        for claim in ["exp", "iat", "sub", "aud", "iss"] {
            let mut c = claims();
            c.as_object_mut().unwrap().remove(claim);
            let err = rejects(&verifier, &key.sign(&c)).await;
            assert!(
                matches!(err, JwtError::InvalidClaim { claim: c, .. } if c == claim),
                "{claim}: {err}"
            );
        }
        let err = rejects(&verifier, &key.sign(&claims_with("exp", json!("soon")))).await;
        assert!(
            matches!(err, JwtError::InvalidClaim { claim: "exp", .. }),
            "{err}"
        );
    }

    #[tokio::test]
    async fn signature_by_another_key_under_the_same_kid_is_rejected() {
        let key = TestKey::new("key-1");
        let impostor = TestKey::new("key-1");
        let verifier = offline(&[&key]);
        let token = impostor.sign(&claims());
        let err = rejects(&verifier, &token).await;
        assert!(matches!(err, JwtError::InvalidSignature), "{err}");

        // A tampered payload under a genuine signature, too.
        let genuine = key.sign(&claims());
        let mut parts: Vec<&str> = genuine.split('.').collect();
        let forged_payload = b64url(
            claims_with("email", json!("mallory@example.com"))
                .to_string()
                .as_bytes(),
        );
        parts[1] = &forged_payload;
        let err = rejects(&verifier, &parts.join(".")).await;
        assert!(matches!(err, JwtError::InvalidSignature), "{err}");
    }

    #[tokio::test]
    async fn other_algorithms_are_rejected_before_keys_are_fetched() {
        let key = TestKey::new("key-1");
        let server = JwkServer::start(jwk_set(&[&key]), None).await;
        let verifier = IapVerifier::new(audience()).with_jwk_url(&server.url);

        // HS256 with secrets an attacker could know: the JWK's bytes.
        for secret in [
            jwk_set(&[&key]).into_bytes(),
            key.public_raw.clone(),
            b"secret".to_vec(),
        ] {
            let mut header = Header::new(Algorithm::HS256);
            header.kid = Some(key.kid.clone());
            let token = encode(&header, &claims(), &EncodingKey::from_secret(&secret)).unwrap();
            let err = rejects(&verifier, &token).await;
            assert!(
                matches!(&err, JwtError::UnsupportedAlgorithm { alg } if alg == "HS256"),
                "{err}"
            );
        }

        // alg: none, with and without a signature part.
        let payload = b64url(claims().to_string().as_bytes());
        for header in [
            json!({"alg": "none", "typ": "JWT", "kid": key.kid}),
            json!({"alg": "None", "typ": "JWT"}),
        ] {
            let header = b64url(header.to_string().as_bytes());
            for token in [
                format!("{header}.{payload}."),
                format!("{header}.{payload}.c2ln"),
            ] {
                let err = rejects(&verifier, &token).await;
                assert!(
                    matches!(err, JwtError::UnsupportedAlgorithm { .. }),
                    "{err}"
                );
                assert!(err.to_string().contains("ES256"));
            }
        }

        // RS256 and a non-string alg.
        for header in [
            json!({"alg": "RS256", "kid": key.kid}),
            json!({"alg": 7, "kid": key.kid}),
        ] {
            let token = format!("{}.{payload}.c2ln", b64url(header.to_string().as_bytes()));
            let err = rejects(&verifier, &token).await;
            assert!(
                matches!(err, JwtError::UnsupportedAlgorithm { .. }),
                "{err}"
            );
        }

        assert_eq!(
            server.hits(),
            0,
            "keys were fetched for a token with the wrong alg"
        );

        // The same verifier accepts a real token (and only then fetches).
        verifier.verify(&key.sign(&claims())).await.unwrap();
        assert_eq!(server.hits(), 1);
    }

    #[tokio::test]
    async fn token_without_kid_or_malformed_is_rejected() {
        let key = TestKey::new("key-1");
        let verifier = offline(&[&key]);
        let token = encode(&Header::new(Algorithm::ES256), &claims(), &key.encoding).unwrap();
        assert!(matches!(
            rejects(&verifier, &token).await,
            JwtError::MissingKeyId
        ));

        let valid = key.sign(&claims());
        for bad in [
            String::new(),
            "not a jwt".to_owned(),
            format!("{valid}.extra"),
            valid.replacen('.', "", 1),
            format!("!{valid}"),
            "a".repeat(MAX_TOKEN_LEN + 1),
        ] {
            let err = rejects(&verifier, &bad).await;
            assert!(matches!(err, JwtError::Malformed { .. }), "{err}");
        }
    }

    #[tokio::test]
    async fn unknown_kid_refetches_and_is_then_accepted() {
        let old = TestKey::new("old");
        let new = TestKey::new("new");
        let server = JwkServer::start(jwk_set(&[&old]), Some("public, max-age=3600")).await;
        let mut verifier = IapVerifier::new(audience()).with_jwk_url(&server.url);
        Arc::make_mut(&mut verifier.config).min_refetch_interval = Duration::ZERO;

        verifier.verify(&old.sign(&claims())).await.unwrap();
        assert_eq!(server.hits(), 1);

        // IAP rotates: the new kid is not cached yet.
        server.set(jwk_set(&[&old, &new]));
        let id = verifier.verify(&new.sign(&claims())).await.unwrap();
        assert_eq!(id.email.as_deref(), Some("alice@example.com"));
        assert_eq!(server.hits(), 2);

        // Both are cached now.
        verifier.verify(&old.sign(&claims())).await.unwrap();
        verifier.verify(&new.sign(&claims())).await.unwrap();
        assert_eq!(server.hits(), 2);

        // A kid that the server does not have either.
        let stranger = TestKey::new("stranger");
        let token = stranger.sign(&claims());
        let err = rejects(&verifier, &token).await;
        assert!(
            matches!(&err, JwtError::UnknownKeyId { kid, .. } if kid == "stranger"),
            "{err}"
        );
        assert_eq!(server.hits(), 3);
    }

    #[tokio::test]
    async fn unknown_kids_refetch_at_most_once_per_interval() {
        let key = TestKey::new("key-1");
        let server = JwkServer::start(jwk_set(&[&key]), None).await;
        let verifier = IapVerifier::new(audience()).with_jwk_url(&server.url);
        verifier.verify(&key.sign(&claims())).await.unwrap();
        assert_eq!(server.hits(), 1);
        let stranger = TestKey::new("x");
        for i in 0..20 {
            let token = stranger.sign_as(&format!("made-up-{i}"), &claims());
            let err = rejects(&verifier, &token).await;
            assert!(matches!(err, JwtError::UnknownKeyId { .. }), "{err}");
        }
        // Fetched less than 30 s ago: no refetch for any of them.
        assert_eq!(server.hits(), 1);
        verifier.verify(&key.sign(&claims())).await.unwrap();
        assert_eq!(server.hits(), 1);
    }

    #[tokio::test]
    async fn jwk_url_is_configurable_and_keys_are_cached() {
        let key = TestKey::new("key-1");
        let server = JwkServer::start(jwk_set(&[&key]), Some("public, max-age=22466")).await;
        let verifier = IapVerifier::new(audience()).with_jwk_url(&server.url);
        assert_eq!(
            server.hits(),
            0,
            "nothing is fetched before the first token"
        );
        for _ in 0..5 {
            verifier.verify(&key.sign(&claims())).await.unwrap();
        }
        // Clones share the cache.
        verifier.clone().verify(&key.sign(&claims())).await.unwrap();
        assert_eq!(server.hits(), 1);
        let ttl = {
            let cache = read(&verifier.shared.cache);
            cache.expires_at.unwrap() - cache.last_attempt.unwrap()
        };
        assert_eq!(
            ttl,
            Duration::from_secs(22466),
            "max-age is the cache's lifetime"
        );

        // with_cache_ttl overrides max-age; an expired cache is fetched again.
        let mut short = IapVerifier::new(audience())
            .with_jwk_url(&server.url)
            .with_cache_ttl(Duration::ZERO);
        Arc::make_mut(&mut short.config).min_refetch_interval = Duration::ZERO;
        short.verify(&key.sign(&claims())).await.unwrap();
        short.verify(&key.sign(&claims())).await.unwrap();
        assert_eq!(server.hits(), 3);
    }

    #[tokio::test]
    async fn concurrent_verifications_share_one_fetch() {
        let key = TestKey::new("key-1");
        let server = JwkServer::start(jwk_set(&[&key]), None).await;
        let verifier = IapVerifier::new(audience()).with_jwk_url(&server.url);
        let token = key.sign(&claims());
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let (v, t) = (verifier.clone(), token.clone());
                tokio::spawn(async move { v.verify(&t).await })
            })
            .collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        assert_eq!(server.hits(), 1);
    }

    #[tokio::test]
    async fn key_fetch_failures_are_reported_and_stale_keys_kept() {
        let key = TestKey::new("key-1");
        let server = JwkServer::start("not json".to_owned(), None).await;
        let mut verifier = IapVerifier::new(audience()).with_jwk_url(&server.url);
        Arc::make_mut(&mut verifier.config).min_refetch_interval = Duration::ZERO;
        let token = key.sign(&claims());
        let err = rejects(&verifier, &token).await;
        assert!(matches!(err, JwtError::InvalidJwks { .. }), "{err}");
        assert_eq!(err.status_code(), StatusCode::SERVICE_UNAVAILABLE);

        // Nothing listens on this port.
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            format!("http://{}/jwk", l.local_addr().unwrap())
        };
        let unreachable = IapVerifier::new(audience()).with_jwk_url(&closed);
        let err = rejects(&unreachable, &token).await;
        assert!(matches!(err, JwtError::KeyFetch { .. }), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains(&closed) && msg.to_lowercase().contains("connect"),
            "{msg}"
        );
        // Within the retry interval the failure is remembered, not retried.
        let err = rejects(&unreachable, &token).await;
        assert!(matches!(err, JwtError::KeyFetch { .. }), "{err}");

        // Keys fetched before survive a failed refresh.
        server.set(jwk_set(&[&key]));
        let stale = verifier.clone().with_cache_ttl(Duration::ZERO);
        stale.verify(&token).await.unwrap();
        server.set("{\"keys\": []}".to_owned());
        stale.verify(&token).await.unwrap();
    }

    #[tokio::test]
    async fn jwk_sets_are_filtered() {
        let key = TestKey::new("key-1");
        let mut set: Value = serde_json::from_str(&jwk_set(&[&key])).unwrap();
        let keys = set["keys"].as_array_mut().unwrap();
        keys.push(json!({"kty": "RSA", "kid": "rsa", "n": "AQAB", "e": "AQAB"}));
        keys.push(json!({"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"}));
        keys.push(json!({"kty": "EC", "crv": "P-384", "kid": "p384", "x": "AA", "y": "AA"}));
        let verifier = IapVerifier::new(audience())
            .with_keys(&set.to_string())
            .unwrap();
        assert_eq!(read(&verifier.shared.cache).keys.len(), 1);
        verifier.verify(&key.sign(&claims())).await.unwrap();

        // An HMAC "key" in the set cannot be used either.
        let hmac = {
            let mut header = Header::new(Algorithm::HS256);
            header.kid = Some("hmac".to_owned());
            encode(&header, &claims(), &EncodingKey::from_secret(b"secret")).unwrap()
        };
        assert!(matches!(
            rejects(&verifier, &hmac).await,
            JwtError::UnsupportedAlgorithm { .. }
        ));

        for bad in ["", "{}", "[]", r#"{"keys": [{"kty": "RSA"}]}"#] {
            let err = IapVerifier::new(audience()).with_keys(bad).unwrap_err();
            assert!(matches!(err, JwtError::InvalidJwks { .. }), "{err}");
        }
        let mut short = key.jwk();
        short["x"] = json!("AAAA");
        let err = IapVerifier::new(audience())
            .with_keys(&json!({ "keys": [short] }).to_string())
            .unwrap_err();
        assert!(err.to_string().contains("32-byte"), "{err}");
    }

    #[tokio::test]
    async fn verify_from_header_map() {
        let key = TestKey::new("key-1");
        let verifier = offline(&[&key]);
        let token = key.sign(&claims());
        let mut headers = HeaderMap::new();
        assert!(matches!(
            verifier.verify_headers(&headers).await,
            Err(JwtError::MissingHeader)
        ));
        headers.insert(IAP_JWT_HEADER, token.parse().unwrap());
        verifier.verify_headers(&headers).await.unwrap();
        headers.append(IAP_JWT_HEADER, token.parse().unwrap());
        let err = verifier.verify_headers(&headers).await.unwrap_err();
        assert!(matches!(err, JwtError::Malformed { .. }), "{err}");
        assert_no_token(&err, &token);
    }

    /// An inner service that counts its calls and echoes the identity it sees.
    fn echo_service(
        calls: Arc<AtomicUsize>,
    ) -> impl Service<
        Request<String>,
        Response = Response<String>,
        Error = std::convert::Infallible,
        Future: Send,
    > + Clone
    + Send
    + 'static {
        tower::service_fn(move |req: Request<String>| {
            let calls = calls.clone();
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                let id = req.extensions().get::<IapIdentity>().cloned();
                Ok(Response::new(
                    id.map_or("no identity".to_owned(), |id| id.subject),
                ))
            }
        })
    }

    fn request(token: Option<&str>) -> Request<String> {
        let mut builder = Request::builder().uri("/private");
        if let Some(token) = token {
            builder = builder.header(IAP_JWT_HEADER, token);
        }
        builder.body(String::new()).unwrap()
    }

    #[tokio::test]
    async fn layer_lets_through_only_valid_tokens() {
        let key = TestKey::new("key-1");
        let calls = Arc::new(AtomicUsize::new(0));
        let service = IapLayer::new(offline(&[&key])).layer(echo_service(calls.clone()));

        // No header.
        let response = service.clone().oneshot(request(None)).await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            response.headers()[http::header::CONTENT_TYPE],
            "text/plain; charset=utf-8"
        );
        assert!(
            response.body().contains("x-goog-iap-jwt-assertion"),
            "{}",
            response.body()
        );
        assert_eq!(calls.load(Ordering::SeqCst), 0);

        // Invalid: expired, wrong signature.
        let expired = key.sign(&claims_with("exp", json!(unix_now() - 3600)));
        let forged = TestKey::new("key-1").sign(&claims());
        for token in [&expired, &forged] {
            let response = service.clone().oneshot(request(Some(token))).await.unwrap();
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
            let body = response.into_body();
            assert!(!body.contains(token.as_str()), "{body}");
            assert!(!body.contains(token.rsplit('.').next().unwrap()), "{body}");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 0);

        // Valid: the inner service sees the identity.
        let response = service
            .oneshot(request(Some(&key.sign(&claims()))))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.body(), "accounts.google.com:118396627390218239423");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn layer_works_with_axum() {
        async fn whoami(axum::Extension(id): axum::Extension<IapIdentity>) -> String {
            id.email.unwrap_or(id.subject)
        }
        let key = TestKey::new("key-1");
        let app: Router = Router::new()
            .route("/", get(whoami))
            .layer(IapLayer::new(offline(&[&key])));

        let call = |token: Option<String>| {
            let app = app.clone();
            async move {
                let mut builder = Request::builder().uri("/");
                if let Some(token) = token {
                    builder = builder.header(IAP_JWT_HEADER, token);
                }
                let response = app
                    .oneshot(builder.body(axum::body::Body::empty()).unwrap())
                    .await
                    .unwrap();
                let status = response.status();
                let body = response.into_body().collect().await.unwrap().to_bytes();
                (status, String::from_utf8(body.to_vec()).unwrap())
            }
        };
        assert_eq!(
            call(Some(key.sign(&claims()))).await,
            (StatusCode::OK, "alice@example.com".to_owned())
        );
        let (status, body) = call(None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(body.contains("missing"), "{body}");
        let token = key.sign(&claims_with("aud", json!("/projects/1/apps/other")));
        let (status, body) = call(Some(token.clone())).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(
            body.contains("/projects/1/apps/other") && !body.contains(&token),
            "{body}"
        );
    }
}
