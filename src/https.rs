//! Outbound HTTPS, for every command that calls out (the platform, `check`, `ship`'s sinks,
//! NATS over TLS): one agent built one way, the built-in Mozilla roots plus `RINGHOOK_CA_FILE`,
//! and one description of a failed call.

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};

/// Root certificates for outbound HTTPS: the built-in Mozilla set, plus any from a CA file.
#[derive(Debug, Clone, Default)]
pub struct TrustRoots {
    extra: Option<Arc<Vec<Certificate<'static>>>>,
}

impl TrustRoots {
    /// Every certificate of a PEM file's bytes; it is an error when there is none.
    pub fn from_pem(pem: &[u8]) -> Result<TrustRoots, String> {
        let mut certs = Vec::new();
        for item in ureq::tls::parse_pem(pem) {
            // A key in the same file is not ours to use; skip it like any other section.
            if let PemItem::Certificate(c) = item.map_err(|e| format!("not valid PEM: {e}"))? {
                certs.push(c);
            }
        }
        if certs.is_empty() {
            return Err("no PEM certificate (-----BEGIN CERTIFICATE-----) in it".into());
        }
        Ok(TrustRoots {
            extra: Some(Arc::new(certs)),
        })
    }

    /// The CA file's certificates (DER), for TLS outside the HTTP client (`ship`'s NATS).
    pub fn der_certificates(&self) -> Option<Vec<&[u8]>> {
        self.extra
            .as_ref()
            .map(|c| c.iter().map(|c| c.der()).collect())
    }

    fn root_certs(&self) -> RootCerts {
        match &self.extra {
            None => RootCerts::WebPki,
            // Like curl's --cacert: the file replaces the built-in roots. Behind a TLS-inspecting
            // proxy its CA is the only one that can verify anything; adding Mozilla's set as
            // whole certificates would cost ~200 KB of binary for no such user.
            Some(extra) => RootCerts::Specific(extra.clone()),
        }
    }
}

/// An HTTP agent as every outbound call uses it: our user agent, the roots, no redirects, and
/// error statuses handed back as answers so their bodies can be read.
pub(crate) fn agent(roots: &TrustRoots, connect: Duration, overall: Duration) -> ureq::Agent {
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_connect(Some(connect))
        .timeout_global(Some(overall))
        .user_agent(concat!("ringhook/", env!("CARGO_PKG_VERSION")))
        .tls_config(TlsConfig::builder().root_certs(roots.root_certs()).build())
        .build();
    ureq::Agent::with_parts(
        config,
        ureq::unversioned::transport::DefaultConnector::new(),
        Resolver::default(),
    )
}

/// How long a host name's addresses are reused before it is looked up again.
const RESOLVED_FOR: Duration = Duration::from_secs(30);

/// ureq looks the host up for every call, even one that goes over a kept-alive connection, and
/// with a timeout set each lookup runs on a thread of its own: `ship` into an HTTP sink paid a
/// thread and a DNS query per event (130 µs of CPU each). This resolver answers an address in
/// the URL at once and keeps a name's addresses for [`RESOLVED_FOR`].
#[derive(Default)]
struct Resolver {
    last: Mutex<Option<(String, Instant, ResolvedAddrs)>>,
}

type ResolvedAddrs = ureq::unversioned::resolver::ResolvedSocketAddrs;

impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Resolver")
    }
}

impl ureq::unversioned::resolver::Resolver for Resolver {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: ureq::unversioned::transport::NextTimeout,
    ) -> Result<ResolvedAddrs, ureq::Error> {
        use ureq::unversioned::resolver::DefaultResolver;
        let (Some(scheme), Some(authority)) = (uri.scheme(), uri.authority()) else {
            return DefaultResolver::default().resolve(uri, config, timeout);
        };
        // "host:port", the port filled in from the scheme as ureq does it.
        let Some(key) = DefaultResolver::host_and_port(scheme, authority) else {
            return DefaultResolver::default().resolve(uri, config, timeout);
        };
        if let Ok(addr) = key.parse::<SocketAddr>() {
            let mut addrs = self.empty();
            addrs.push(addr);
            return Ok(addrs);
        }
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((k, at, addrs)) = &*last {
            if *k == key && at.elapsed() < RESOLVED_FOR {
                return Ok(addrs.clone());
            }
        }
        let addrs = DefaultResolver::default().resolve(uri, config, timeout)?;
        *last = Some((key, Instant::now(), addrs.clone()));
        Ok(addrs)
    }
}

/// Describes a failed call of the HTTP client; `tls` is true for certificate trouble.
pub(crate) fn describe_transport(e: &ureq::Error) -> (String, bool) {
    match e {
        ureq::Error::Rustls(r) => (format!("TLS: {r}"), true),
        ureq::Error::Tls(t) => (format!("TLS: {t}"), true),
        ureq::Error::Timeout(t) => (format!("timed out ({t})"), false),
        ureq::Error::HostNotFound => ("host not found".into(), false),
        // rustls reports handshake and certificate failures through the stream as InvalidData.
        ureq::Error::Io(io)
            if io.kind() == std::io::ErrorKind::InvalidData && io.get_ref().is_some() =>
        {
            (format!("TLS: {io}"), true)
        }
        ureq::Error::Io(io) => (io.to_string(), false),
        other => (other.to_string(), false),
    }
}

/// rustls's client settings for TLS outside the HTTP agent (`tls://` NATS, `wss://`): the
/// built-in Mozilla roots, or `RINGHOOK_CA_FILE`'s alone, as the agent trusts.
#[cfg_attr(not(any(feature = "ship", feature = "connect")), allow(dead_code))]
pub(crate) fn tls_config(roots: &TrustRoots) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut store = rustls::RootCertStore::empty();
    match roots.der_certificates() {
        Some(certs) => {
            for c in certs {
                store
                    .add(rustls::pki_types::CertificateDer::from(c.to_vec()))
                    .map_err(|e| format!("RINGHOOK_CA_FILE: {e}"))?;
            }
        }
        None => store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(store)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}
