//! AWS Signature Version 4 query presigning, with the conditions of a write
//! bound into the signature.
//!
//! A grant URL is the only way a miner can write to an S3 bucket, so it must
//! carry every condition the protocol relies on *inside its signature*: a
//! request that drops or changes one no longer matches the signature and the
//! store refuses it (`403 SignatureDoesNotMatch`) before it looks at the body.
//!
//! * `if-none-match: *` for objects written once (artifacts, receipts): the
//!   store refuses to replace an existing object (`412`).
//! * `content-length: N` for every grant PUT: the body must be exactly `N`
//!   bytes, so a grant cannot be used to upload more than its owner meant to
//!   read back. Writers pad their envelope to `N` (see
//!   [`crate::envelope::pad_to`]).
//!
//! object_store's `Signer` signs only `host` and refuses to sign
//! `content-length`, hence this module. It follows
//! <https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-query-string-auth.html>:
//! `UNSIGNED-PAYLOAD`, credential scope `date/region/s3/aws4_request`, the key
//! URI-encoded once with `/` kept, the query sorted by encoded name, and a
//! session token sent as `X-Amz-Security-Token`. For the `host`-only case its
//! URLs equal object_store's (see the tests).

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, KeyInit as _, Mac as _};
use sha2::{Digest as _, Sha256};

const ALGORITHM: &str = "AWS4-HMAC-SHA256";
const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";

/// The longest validity SigV4 allows for a presigned URL.
pub const MAX_EXPIRES: Duration = Duration::from_secs(7 * 24 * 3600);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PresignError {
    #[error("bad S3 endpoint {endpoint:?}: {reason}")]
    Endpoint { endpoint: String, reason: String },
    #[error("cannot presign method {0} (only GET and PUT)")]
    Method(String),
    #[error("conditions apply to PUT only, not {0}")]
    ConditionOnRead(String),
    #[error("a presigned URL is valid for 1 s to 7 days, not {0:?}")]
    Expiry(Duration),
}

/// What a presigned PUT requires of the request, as signed headers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Conditions {
    /// Sign `if-none-match: *`: the store refuses to replace an object.
    pub create_only: bool,
    /// Sign `content-length`: the body must be exactly this many bytes.
    pub exact_size: Option<u64>,
}

impl Conditions {
    /// No condition: only `host` is signed (GET URLs).
    pub const NONE: Conditions = Conditions {
        create_only: false,
        exact_size: None,
    };

    /// A create-only write of exactly `size` bytes.
    pub fn create_only(size: u64) -> Self {
        Conditions {
            create_only: true,
            exact_size: Some(size),
        }
    }

    /// A write (overwriting allowed) of exactly `size` bytes.
    pub fn exact_size(size: u64) -> Self {
        Conditions {
            create_only: false,
            exact_size: Some(size),
        }
    }

    /// The headers, besides `host`, that a request must send exactly as
    /// given, in canonical (sorted, lower-case) order.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut headers = Vec::new();
        if let Some(size) = self.exact_size {
            headers.push(("content-length", size.to_string()));
        }
        if self.create_only {
            headers.push(("if-none-match", "*".to_string()));
        }
        headers
    }
}

/// Signs URLs for one bucket with one set of credentials. Built when the
/// bucket is opened; cheap to clone.
#[derive(Clone)]
pub struct Presigner {
    access_key_id: String,
    secret_access_key: String,
    session_token: Option<String>,
    region: String,
    /// `http` or `https`.
    scheme: String,
    /// The `host` header: lower-case host with a non-default port.
    host: String,
    /// The URL path before the key (path-style: `/bucket`), already encoded,
    /// without a trailing `/`.
    base_path: String,
}

impl fmt::Debug for Presigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Presigner")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .field("region", &self.region)
            .field(
                "endpoint",
                &format!("{}://{}{}", self.scheme, self.host, self.base_path),
            )
            .finish()
    }
}

/// Where the bucket's objects are reached and with which credentials.
#[derive(Clone, Debug)]
pub struct PresignConfig<'a> {
    pub bucket: &'a str,
    /// A custom endpoint (MinIO, R2, the loopback server). With
    /// virtual-hosted style it must already name the bucket, as for
    /// object_store's client.
    pub endpoint: Option<&'a str>,
    pub region: &'a str,
    pub path_style: bool,
    pub access_key_id: &'a str,
    pub secret_access_key: &'a str,
    pub session_token: Option<&'a str>,
}

impl Presigner {
    /// Resolves the bucket's base URL the way object_store's S3 client does,
    /// so that presigned URLs address the same objects as its requests.
    pub fn new(config: &PresignConfig<'_>) -> Result<Self, PresignError> {
        let PresignConfig { bucket, region, .. } = *config;
        let base = match (config.endpoint, config.path_style) {
            (Some(endpoint), false) => endpoint.to_string(),
            (Some(endpoint), true) => format!("{}/{bucket}", endpoint.trim_end_matches('/')),
            (None, false) => format!("https://{bucket}.s3.{region}.amazonaws.com"),
            (None, true) => format!("https://s3.{region}.amazonaws.com/{bucket}"),
        };
        let bad = |reason: &str| PresignError::Endpoint {
            endpoint: base.clone(),
            reason: reason.to_string(),
        };
        let (scheme, rest) = base
            .split_once("://")
            .ok_or_else(|| bad("no scheme (http:// or https://)"))?;
        let scheme = scheme.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "http" => ":80",
            "https" => ":443",
            _ => return Err(bad("the scheme must be http or https")),
        };
        let (authority, path) = match rest.find(['/', '?', '#']) {
            Some(i) if rest[i..].starts_with('/') => (&rest[..i], &rest[i..]),
            Some(_) => return Err(bad("a query or fragment in the endpoint")),
            None => (rest, ""),
        };
        if authority.is_empty() || authority.contains('@') {
            return Err(bad("no host (or user information in it)"));
        }
        if path.contains(['?', '#']) {
            return Err(bad("a query or fragment in the endpoint"));
        }
        let mut host = authority.to_ascii_lowercase();
        if host.ends_with(default_port) {
            host.truncate(host.len() - default_port.len());
        }
        Ok(Presigner {
            access_key_id: config.access_key_id.to_string(),
            secret_access_key: config.secret_access_key.to_string(),
            session_token: config.session_token.map(str::to_string),
            region: region.to_string(),
            scheme,
            host,
            base_path: path.trim_end_matches('/').to_string(),
        })
    }

    /// A URL for `method` on `key`, valid for `expires_in` from now, that the
    /// store honours only for a request that meets `conditions`.
    pub fn url(
        &self,
        method: &str,
        key: &str,
        conditions: Conditions,
        expires_in: Duration,
    ) -> Result<String, PresignError> {
        self.url_at(method, key, conditions, expires_in, SystemTime::now())
    }

    /// [`Presigner::url`] signed as of `at` (tests pin the time).
    pub fn url_at(
        &self,
        method: &str,
        key: &str,
        conditions: Conditions,
        expires_in: Duration,
        at: SystemTime,
    ) -> Result<String, PresignError> {
        match method {
            "PUT" => {}
            "GET" if conditions == Conditions::NONE => {}
            "GET" => return Err(PresignError::ConditionOnRead(method.into())),
            other => return Err(PresignError::Method(other.into())),
        }
        let expires = expires_in.as_secs();
        if expires == 0 || expires_in > MAX_EXPIRES {
            return Err(PresignError::Expiry(expires_in));
        }
        let secs = at
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let (date, timestamp) = amz_date(secs);
        let scope = format!("{date}/{}/s3/aws4_request", self.region);

        let mut headers = vec![("host", self.host.clone())];
        headers.extend(conditions.headers());
        headers.sort();
        let signed_headers = headers
            .iter()
            .map(|(name, _)| *name)
            .collect::<Vec<_>>()
            .join(";");
        let canonical_headers: String = headers
            .iter()
            .map(|(name, value)| format!("{name}:{}\n", value.trim()))
            .collect();

        // In the order object_store writes them; the canonical form sorts.
        let mut query = vec![
            ("X-Amz-Algorithm", ALGORITHM.to_string()),
            (
                "X-Amz-Credential",
                format!("{}/{scope}", self.access_key_id),
            ),
            ("X-Amz-Date", timestamp.clone()),
            ("X-Amz-Expires", expires.to_string()),
            ("X-Amz-SignedHeaders", signed_headers.clone()),
        ];
        if let Some(token) = &self.session_token {
            query.push(("X-Amz-Security-Token", token.clone()));
        }
        let encoded: Vec<(String, String)> = query
            .iter()
            .map(|(name, value)| (uri_encode(name, true), uri_encode(value, true)))
            .collect();
        let mut sorted = encoded.clone();
        sorted.sort();
        let join = |pairs: &[(String, String)]| {
            pairs
                .iter()
                .map(|(n, v)| format!("{n}={v}"))
                .collect::<Vec<_>>()
                .join("&")
        };

        let path = format!("{}/{}", self.base_path, uri_encode(key, false));
        let canonical_request = format!(
            "{method}\n{path}\n{}\n{canonical_headers}\n{signed_headers}\n{UNSIGNED_PAYLOAD}",
            join(&sorted)
        );
        let string_to_sign = format!(
            "{ALGORITHM}\n{timestamp}\n{scope}\n{}",
            hex::encode(Sha256::digest(canonical_request.as_bytes()))
        );
        let signing_key = [date.as_str(), &self.region, "s3", "aws4_request"]
            .iter()
            .fold(
                format!("AWS4{}", self.secret_access_key).into_bytes(),
                |key, part| hmac(&key, part.as_bytes()),
            );
        let signature = hex::encode(hmac(&signing_key, string_to_sign.as_bytes()));
        Ok(format!(
            "{}://{}{path}?{}&X-Amz-Signature={signature}",
            self.scheme,
            self.host,
            join(&encoded)
        ))
    }
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// SigV4's URI encoding: every byte but `A-Za-z0-9-._~` as `%XX` (upper-case
/// hex); `/` too unless `slash` is false (object key paths keep it).
fn uri_encode(text: &str, slash: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'.' | b'_' | b'~')
            || (b == b'/' && !slash)
        {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `(YYYYMMDD, YYYYMMDDTHHMMSSZ)` for Unix seconds, in UTC.
fn amz_date(secs: u64) -> (String, String) {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let date = format!("{year:04}{month:02}{day:02}");
    let time = format!(
        "{date}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
    (date, time)
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::aws::AmazonS3Builder;
    use object_store::path::Path;
    use object_store::signer::{HeaderName, HeaderValue, SignedUrlOptions, Signer as _};

    const ID: &str = "AKIAIOSFODNN7EXAMPLE";
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

    fn config<'a>(endpoint: Option<&'a str>, path_style: bool) -> PresignConfig<'a> {
        PresignConfig {
            bucket: "locus-test",
            endpoint,
            region: "eu-central-1",
            path_style,
            access_key_id: ID,
            secret_access_key: SECRET,
            session_token: None,
        }
    }

    fn query(url: &str) -> Vec<(String, String)> {
        let (_, q) = url.split_once('?').unwrap();
        let mut pairs: Vec<(String, String)> = q
            .split('&')
            .map(|p| {
                let (n, v) = p.split_once('=').unwrap();
                (n.to_string(), decode(v))
            })
            .collect();
        pairs.sort();
        pairs
    }

    fn decode(v: &str) -> String {
        let bytes = v.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' {
                out.push(u8::from_str_radix(&v[i + 1..i + 3], 16).unwrap());
                i += 3;
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        String::from_utf8(out).unwrap()
    }

    fn param<'a>(pairs: &'a [(String, String)], name: &str) -> &'a str {
        &pairs.iter().find(|(n, _)| n == name).unwrap().1
    }

    /// The time object_store signed at, from its URL.
    fn signed_at(pairs: &[(String, String)]) -> SystemTime {
        let t = param(pairs, "X-Amz-Date");
        let n = |r: std::ops::Range<usize>| t[r].parse::<u64>().unwrap();
        let secs_of_day = n(9..11) * 3600 + n(11..13) * 60 + n(13..15);
        // From 2020-01-01 on.
        let days = (18_262..)
            .find(|d| amz_date(d * 86_400).0 == t[..8])
            .unwrap();
        UNIX_EPOCH + Duration::from_secs(days * 86_400 + secs_of_day)
    }

    /// Same inputs and timestamp as object_store's signer → the same URL,
    /// path-style and virtual-hosted, GET and PUT, with and without a
    /// session token, including keys that need encoding.
    #[tokio::test]
    async fn host_only_urls_equal_object_stores() {
        let keys = [
            "v1/netuid=3/runs/r-1/artifacts/s00000-forward/a001.pb",
            "plain",
            "odd key/a+(1)=,&.pb",
        ];
        let cases: [(Option<&str>, bool, Option<&str>); 5] = [
            (Some("http://127.0.0.1:9000"), true, None),
            (
                Some("https://minio.example:9443/"),
                true,
                Some("FwoGZXIvYXdzE+/a=b"),
            ),
            (Some("https://locus-test.r2.example"), false, None),
            (None, false, Some("token/with+odd=chars")),
            (None, true, None),
        ];
        crate::tls::install_crypto_provider();
        for (endpoint, path_style, token) in cases {
            let mut builder = AmazonS3Builder::new()
                .with_bucket_name("locus-test")
                .with_region("eu-central-1")
                .with_access_key_id(ID)
                .with_secret_access_key(SECRET)
                .with_virtual_hosted_style_request(!path_style);
            if let Some(endpoint) = endpoint {
                builder = builder.with_endpoint(endpoint).with_allow_http(true);
            }
            if let Some(token) = token {
                builder = builder.with_token(token);
            }
            let store = builder.build().unwrap();
            let mut cfg = config(endpoint, path_style);
            cfg.session_token = token;
            let ours = Presigner::new(&cfg).unwrap();
            for key in keys {
                for method in [http::Method::GET, http::Method::PUT] {
                    let theirs = store
                        .signed_url(method.clone(), &Path::from(key), Duration::from_secs(3600))
                        .await
                        .unwrap()
                        .to_string();
                    let pairs = query(&theirs);
                    let mine = ours
                        .url_at(
                            method.as_str(),
                            key,
                            Conditions::NONE,
                            Duration::from_secs(3600),
                            signed_at(&pairs),
                        )
                        .unwrap();
                    assert_eq!(
                        mine.split_once('?').unwrap().0,
                        theirs.split_once('?').unwrap().0,
                        "{endpoint:?} {key}"
                    );
                    assert_eq!(query(&mine), pairs, "{endpoint:?} {path_style} {key}");
                    assert_eq!(param(&pairs, "X-Amz-SignedHeaders"), "host");
                }
            }
        }
    }

    /// object_store can sign `if-none-match` (not `content-length`): a
    /// create-only condition without a size gives its signature too.
    #[tokio::test]
    async fn if_none_match_equals_object_stores() {
        crate::tls::install_crypto_provider();
        let store = AmazonS3Builder::new()
            .with_bucket_name("locus-test")
            .with_region("eu-central-1")
            .with_access_key_id(ID)
            .with_secret_access_key(SECRET)
            .with_endpoint("http://127.0.0.1:9000")
            .with_allow_http(true)
            .with_virtual_hosted_style_request(false)
            .build()
            .unwrap();
        let opts = SignedUrlOptions::default().with_signed_header(
            HeaderName::from_static("if-none-match"),
            HeaderValue::from_static("*"),
        );
        let key = "v1/netuid=3/runs/r/receipts/s00000/j/a001.pb";
        let theirs = store
            .signed_url_opts(
                http::Method::PUT,
                &Path::from(key),
                Duration::from_secs(600),
                &opts,
            )
            .await
            .unwrap()
            .to_string();
        let pairs = query(&theirs);
        let ours = Presigner::new(&config(Some("http://127.0.0.1:9000"), true)).unwrap();
        let create_only = Conditions {
            create_only: true,
            exact_size: None,
        };
        let mine = ours
            .url_at(
                "PUT",
                key,
                create_only,
                Duration::from_secs(600),
                signed_at(&pairs),
            )
            .unwrap();
        assert_eq!(query(&mine), pairs);
        assert_eq!(param(&pairs, "X-Amz-SignedHeaders"), "host;if-none-match");
    }

    /// The presigned GET example of AWS's SigV4 query-string documentation.
    #[test]
    fn aws_documentation_example() {
        let signer = Presigner::new(&PresignConfig {
            bucket: "examplebucket",
            endpoint: Some("https://examplebucket.s3.amazonaws.com"),
            region: "us-east-1",
            path_style: false,
            access_key_id: ID,
            secret_access_key: SECRET,
            session_token: None,
        })
        .unwrap();
        let url = signer
            .url_at(
                "GET",
                "test.txt",
                Conditions::NONE,
                Duration::from_secs(86_400),
                UNIX_EPOCH + Duration::from_secs(1_369_353_600),
            )
            .unwrap();
        assert_eq!(
            url,
            "https://examplebucket.s3.amazonaws.com/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256\
             &X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request\
             &X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host\
             &X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
        );
    }

    #[test]
    fn conditions_are_signed_headers() {
        let signer = Presigner::new(&config(Some("http://127.0.0.1:9000"), true)).unwrap();
        let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let ttl = Duration::from_secs(60);
        let url = |c| signer.url_at("PUT", "k/a.pb", c, ttl, at).unwrap();
        let signed = |c| param(&query(&url(c)), "X-Amz-SignedHeaders").to_string();
        assert_eq!(
            signed(Conditions::create_only(4096)),
            "content-length;host;if-none-match"
        );
        assert_eq!(signed(Conditions::exact_size(1024)), "content-length;host");
        assert_eq!(signed(Conditions::NONE), "host");
        // Each condition changes the signature.
        let sig = |c| param(&query(&url(c)), "X-Amz-Signature").to_string();
        assert_ne!(
            sig(Conditions::create_only(4096)),
            sig(Conditions::create_only(4097))
        );
        assert_ne!(
            sig(Conditions::create_only(4096)),
            sig(Conditions::exact_size(4096))
        );
        assert!(url(Conditions::NONE).starts_with("http://127.0.0.1:9000/locus-test/k/a.pb?"));
        // Conditions on a read, other methods and bad lifetimes are refused.
        assert!(matches!(
            signer.url_at("GET", "k", Conditions::exact_size(1), ttl, at),
            Err(PresignError::ConditionOnRead(_))
        ));
        assert!(matches!(
            signer.url_at("DELETE", "k", Conditions::NONE, ttl, at),
            Err(PresignError::Method(_))
        ));
        for bad in [Duration::ZERO, MAX_EXPIRES + Duration::from_secs(1)] {
            assert!(matches!(
                signer.url_at("PUT", "k", Conditions::NONE, bad, at),
                Err(PresignError::Expiry(_))
            ));
        }
    }

    #[test]
    fn endpoints() {
        let host = |endpoint, path_style| {
            let p = Presigner::new(&config(endpoint, path_style)).unwrap();
            (p.scheme, p.host, p.base_path)
        };
        let s = |a: &str, b: &str, c: &str| (a.to_string(), b.to_string(), c.to_string());
        assert_eq!(
            host(Some("HTTPS://Minio.Example:443/base/"), true),
            s("https", "minio.example", "/base/locus-test")
        );
        assert_eq!(
            host(Some("http://127.0.0.1:80"), true),
            s("http", "127.0.0.1", "/locus-test")
        );
        assert_eq!(
            host(None, false),
            s("https", "locus-test.s3.eu-central-1.amazonaws.com", "")
        );
        for bad in [
            "127.0.0.1:9000",
            "ftp://x",
            "http://",
            "http://u@h",
            "http://h?x=1",
        ] {
            assert!(Presigner::new(&config(Some(bad), false)).is_err(), "{bad}");
        }
        let debug = format!("{:?}", Presigner::new(&config(None, true)).unwrap());
        assert!(!debug.contains(SECRET), "{debug}");
    }

    #[test]
    fn dates() {
        for (secs, expected) in [
            (0, "19700101T000000Z"),
            (1_369_353_600, "20130524T000000Z"),
            (951_782_400, "20000229T000000Z"),
            (1_709_251_199, "20240229T235959Z"),
            (1_709_251_200, "20240301T000000Z"),
            (4_102_444_800, "21000101T000000Z"),
        ] {
            let (date, time) = amz_date(secs);
            assert_eq!(time, expected, "{secs}");
            assert_eq!(date, &expected[..8]);
        }
    }
}
