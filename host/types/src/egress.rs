//! Outbound HTTP: the destinations a workflow asks for and a policy grants, and the
//! addresses a request may reach. Pure: the host's connector resolves a name, then asks
//! [`address_allowed`] about every address before it connects to one of them (so there is
//! no window in which a name can be re-resolved to somewhere else).
//!
//! A destination is written `SCHEME://HOST[:PORT]`, in the spirit of Spin's
//! `allowed_outbound_hosts`: the scheme is `http`, `https` or `*` (any, written out); the
//! host a name (`api.example.com`), every name under a domain (`*.example.com`), an IP
//! address or a CIDR block (`10.0.0.0/8`), or `*` (any host, written out); the port a
//! number, a range (`8000-8100`) or `*`, and by default the scheme's own (80, 443).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

/// A request's scheme.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    /// Plain HTTP.
    Http,
    /// HTTP over TLS.
    Https,
}

impl Scheme {
    /// The port a URL of this scheme means when it names none.
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        })
    }
}

/// Where a request goes, as the guest asked for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Its scheme.
    pub scheme: Scheme,
    /// Its host, lower case: a name or an IP address (IPv6 without brackets).
    pub host: String,
    /// Its port (the scheme's default when the URL names none).
    pub port: u16,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        if self.port == self.scheme.default_port() {
            write!(f, "{}://{host}", self.scheme)
        } else {
            write!(f, "{}://{host}:{}", self.scheme, self.port)
        }
    }
}

/// A destination's scheme.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SchemeSpec {
    Any,
    Only(Scheme),
}

/// A destination's host.
#[derive(Clone, Debug, PartialEq, Eq)]
enum HostSpec {
    Any,
    Name(String),
    /// `*.example.com`: names under `example.com`, not `example.com` itself.
    Under(String),
    Net(IpNet),
}

/// A destination's port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PortSpec {
    /// The request's scheme's own port.
    Default,
    Any,
    Range(u16, u16),
}

/// A destination a workflow asks for or a policy grants, parsed from its text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Destination {
    text: String,
    scheme: SchemeSpec,
    host: HostSpec,
    port: PortSpec,
}

impl Destination {
    /// Whether a request to `target` goes where this destination allows.
    pub fn matches(&self, target: &Target) -> bool {
        self.matches_scheme_and_port(target) && self.matches_host(target)
    }

    fn matches_scheme_and_port(&self, target: &Target) -> bool {
        let scheme = match self.scheme {
            SchemeSpec::Any => true,
            SchemeSpec::Only(s) => s == target.scheme,
        };
        let port = match self.port {
            PortSpec::Default => target.port == target.scheme.default_port(),
            PortSpec::Any => true,
            PortSpec::Range(lo, hi) => (lo..=hi).contains(&target.port),
        };
        scheme && port
    }

    fn matches_host(&self, target: &Target) -> bool {
        match &self.host {
            HostSpec::Any => true,
            HostSpec::Name(name) => *name == target.host,
            HostSpec::Under(domain) => {
                target.host.len() > domain.len() + 1
                    && target.host.ends_with(domain.as_str())
                    && target.host.as_bytes()[target.host.len() - domain.len() - 1] == b'.'
            }
            HostSpec::Net(net) => target.host.parse::<IpAddr>().is_ok_and(|ip| net.contains(&ip)),
        }
    }

    /// The addresses outside the public internet this destination names explicitly (an
    /// IP address or CIDR block as its host): requests to it may reach them.
    pub fn network(&self) -> Option<IpNet> {
        match &self.host {
            HostSpec::Net(net) => Some(*net),
            _ => None,
        }
    }

    /// The destination as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for Destination {
    type Err = String;

    fn from_str(text: &str) -> Result<Destination, String> {
        let bad = |why: &str| format!("destination `{text}`: {why}");
        if text == "*" {
            return Err(bad("write the scheme and the host out, for example `https://*` or `*://*`"));
        }
        let Some((scheme, rest)) = text.split_once("://") else {
            return Err(bad("write it as SCHEME://HOST[:PORT], for example `https://api.example.com`"));
        };
        let scheme = match scheme {
            "http" => SchemeSpec::Only(Scheme::Http),
            "https" => SchemeSpec::Only(Scheme::Https),
            "*" => SchemeSpec::Any,
            other => return Err(bad(&format!("the scheme `{other}` is not one of `http`, `https` or `*`"))),
        };
        if rest.contains(['?', '#', '@']) {
            return Err(bad("a destination is a scheme, a host and a port: no query, fragment or user"));
        }
        let (host, port) = split_host_port(rest).map_err(|why| bad(&why))?;
        if host.contains('/') && host.parse::<IpNet>().is_err() {
            return Err(bad("a destination has no path: grant a path prefix with `path = \"/v1\"`"));
        }
        let host = parse_host(&host).map_err(|why| bad(&why))?;
        let port = match port {
            None => PortSpec::Default,
            Some("*") => PortSpec::Any,
            Some(p) => match p.split_once('-') {
                Some((lo, hi)) => {
                    let (lo, hi) = (parse_port(lo).map_err(|w| bad(&w))?, parse_port(hi).map_err(|w| bad(&w))?);
                    if lo > hi {
                        return Err(bad(&format!("the port range {lo}-{hi} is empty")));
                    }
                    PortSpec::Range(lo, hi)
                }
                None => {
                    let p = parse_port(p).map_err(|w| bad(&w))?;
                    PortSpec::Range(p, p)
                }
            },
        };
        Ok(Destination { text: text.to_string(), scheme, host, port })
    }
}

impl Serialize for Destination {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Destination {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Destination, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Outbound HTTP a workflow asks for (per step or tool) or a policy grants (per identity):
/// a destination, and optionally the methods and a path prefix requests to it may use.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpGrant {
    /// Where requests may go.
    pub url: Destination,
    /// The methods they may use, upper case; every method when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    /// A path prefix they must stay under (`/v1` allows `/v1` and `/v1/...`, not `/v10`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Whether the host adds an `Idempotency-Key` to requests whose method is not
    /// idempotent (default yes). A server that refuses the header gets none; such a
    /// request in flight at a crash is then not sent again (the attempt is `in_doubt`).
    #[serde(default = "yes", skip_serializing_if = "is_yes")]
    pub idempotency_key: bool,
    /// A secret the host adds to every request this grant allows, on the way out (policy
    /// grants only: the guest never holds it, and the journal names it, never its value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<Credential>,
}

/// A secret bound to a destination: the host writes it into a header of each request the
/// grant allows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credential {
    /// The variable of tether's own environment that holds it, read when a request
    /// leaves (so a rotated secret takes effect without restarting runs).
    pub secret: String,
    /// The header it goes in, lower case (default `authorization`).
    #[serde(default = "authorization")]
    pub header: String,
    /// How the header's value is written, `{secret}` standing for the secret (default
    /// `Bearer {secret}`).
    #[serde(default = "bearer")]
    pub format: String,
}

fn authorization() -> String {
    "authorization".into()
}

fn bearer() -> String {
    "Bearer {secret}".into()
}

/// Headers a credential may not name: the host sets them itself, or they change how the
/// request travels.
const HOST_HEADERS: [&str; 8] =
    ["host", "content-length", "transfer-encoding", "connection", "upgrade", "te", "trailer", "idempotency-key"];

impl Credential {
    /// Its problems, if any.
    pub fn check(&self) -> Result<(), String> {
        if !crate::names::is_env_name(&self.secret) {
            return Err(format!("credential secret `{}` is not an environment variable name", self.secret));
        }
        let header = &self.header;
        if header.is_empty() || !header.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(format!("credential header `{header}` is not a header name (letters, digits, `-`)"));
        }
        if HOST_HEADERS.contains(&header.to_ascii_lowercase().as_str()) {
            return Err(format!("credential header `{header}` is one the host sets itself"));
        }
        if self.format.matches("{secret}").count() != 1 {
            return Err(format!("credential format `{}` must hold `{{secret}}` exactly once", self.format));
        }
        Ok(())
    }

    /// The header's value with `value` in place of `{secret}`.
    pub fn header_value(&self, value: &str) -> String {
        self.format.replace("{secret}", value)
    }

    /// How the journal names it: `HEADER from SECRET`.
    pub fn describe(&self) -> String {
        format!("{} from {}", self.header.to_ascii_lowercase(), self.secret)
    }
}

fn yes() -> bool {
    true
}

fn is_yes(b: &bool) -> bool {
    *b
}

impl HttpGrant {
    /// Whether it allows a `method` request to `target` at `path` (the URL's path, without
    /// its query).
    pub fn allows(&self, method: &str, target: &Target, path: &str) -> bool {
        self.allows_anywhere(method, target, path) && self.url.matches_host(target)
    }

    /// [`HttpGrant::allows`] for any host: whether its scheme, port, methods and path
    /// allow the request.
    fn allows_anywhere(&self, method: &str, target: &Target, path: &str) -> bool {
        let method_ok = self.methods.is_empty() || self.methods.iter().any(|m| m.eq_ignore_ascii_case(method));
        let path_ok = match self.path.as_deref() {
            None | Some("/") => true,
            Some(prefix) => {
                let prefix = prefix.trim_end_matches('/');
                path == prefix || path.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('/'))
            }
        };
        method_ok && path_ok && self.url.matches_scheme_and_port(target)
    }

    /// Its problems, if any: methods that are not HTTP methods, a path that is not one, a
    /// credential that cannot be written.
    pub fn check(&self) -> Result<(), String> {
        if let Some(c) = &self.credential {
            c.check()?;
            if self.url.scheme == SchemeSpec::Any {
                return Err(format!(
                    "a credential is bound to `{}`, which allows any scheme: write the destination with \
                     https:// (or http:// where plain HTTP is meant) so it never goes out unencrypted by accident",
                    self.url
                ));
            }
        }
        const METHODS: [&str; 9] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"];
        for m in &self.methods {
            if !METHODS.contains(&m.as_str()) {
                return Err(format!("`{m}` is not an HTTP method: write one of {} (upper case)", METHODS.join(", ")));
            }
        }
        match self.path.as_deref() {
            Some(p) if !p.starts_with('/') || p.contains(['?', '#']) => {
                Err(format!("path `{p}` is not a path prefix: write it from `/`, without a query, like `/v1`"))
            }
            Some(p) if p.split('/').any(|seg| seg == ".." || seg == ".") => {
                Err(format!("path `{p}` has `.` or `..` segments: write the prefix as the server sees it"))
            }
            _ => Ok(()),
        }
    }
}

/// A request as the grants see it.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// Its method, as the guest wrote it.
    pub method: &'a str,
    /// Where it goes.
    pub target: &'a Target,
    /// The URL's path, without its query.
    pub path: &'a str,
}

impl Request<'_> {
    /// The grant that would allow this request, written as a manifest or policy takes it.
    pub fn grant_for_it(&self) -> String {
        let first = self.path.split('/').find(|s| !s.is_empty());
        let path = first.map(|seg| format!(", path = \"/{seg}\"")).unwrap_or_default();
        format!("{{ url = \"{}\", methods = [\"{}\"]{path} }}", self.target, self.method.to_ascii_uppercase())
    }
}

impl fmt::Display for Request<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}{}", self.method.to_ascii_uppercase(), self.target, self.path)
    }
}

/// Headers that make some servers act on another method or path than the request line's,
/// which the grants checked: refused on every request.
const OVERRIDE_HEADERS: [&str; 7] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-original-url",
    "x-rewrite-url",
    "x-forwarded-host",
    "forwarded",
];

/// Why a request's path or headers could reach something other than what the grants
/// were checked against: `.` or `..` segments (also percent-encoded), an encoded `/` or
/// `\`, a backslash, or a header that overrides the method or path.
pub fn evasion<'a>(path: &str, mut header_names: impl Iterator<Item = &'a str>) -> Option<String> {
    let lower = path.to_ascii_lowercase();
    if lower.contains("%2f") || lower.contains("%5c") || path.contains('\\') {
        return Some(format!("path `{path}` holds an encoded `/` or a `\\`; write it plainly"));
    }
    let decoded = lower.replace("%2e", ".");
    if decoded.split('/').any(|seg| seg == "." || seg == "..") {
        return Some(format!("path `{path}` has `.` or `..` segments; write the path the server should see"));
    }
    header_names
        .find(|n| OVERRIDE_HEADERS.contains(&n.to_ascii_lowercase().as_str()))
        .map(|n| format!("header `{n}` would make the server act on another method or path; it is refused"))
}

/// Whether `request` may leave the host: the step or tool (`whose`) must ask for it, and
/// when the run's policy has identities, its identity must be granted it too. The error
/// names the request and the grant that would allow it, and where to write it.
pub fn check_request(
    request: Request<'_>,
    whose: &str,
    asked: &[HttpGrant],
    identity: Option<(&str, &[HttpGrant])>,
) -> Result<(), String> {
    let allows = |g: &HttpGrant| g.allows(request.method, request.target, request.path);
    if !asked.iter().any(allows) {
        return Err(format!(
            "{request} is not among the requests {whose} asks for; to allow it, add http = [{}] to {whose}",
            request.grant_for_it()
        ));
    }
    if let Some((name, granted)) = identity {
        if !granted.iter().any(allows) {
            return Err(format!(
                "{request}: identity `{name}` is not granted it; to allow it, add http = [{}] under \
                 [identities.{name}] in the policy",
                request.grant_for_it()
            ));
        }
    }
    Ok(())
}

/// The networks outside the public internet that `grants` name explicitly (an address
/// or a block as a destination's host) for requests like `request` (scheme, port,
/// method and path): a name that resolves into one of them may be connected to.
pub fn named_networks(request: Request<'_>, grants: &[HttpGrant]) -> Vec<IpNet> {
    grants
        .iter()
        .filter(|g| g.allows_anywhere(request.method, request.target, request.path))
        .filter_map(|g| g.url.network())
        .collect()
}

/// `HOST[:PORT]` apart, with IPv6 literals in brackets (`[::1]:8080`).
fn split_host_port(rest: &str) -> Result<(String, Option<&str>), String> {
    if let Some(inner) = rest.strip_prefix('[') {
        let Some((host, after)) = inner.split_once(']') else {
            return Err("an IPv6 address in brackets is missing its `]`".into());
        };
        return match after {
            "" => Ok((host.to_string(), None)),
            _ => match after.strip_prefix(':') {
                Some(port) => Ok((host.to_string(), Some(port))),
                None => Err(format!("`{after}` after the address is not a port")),
            },
        };
    }
    // A CIDR block's `/` comes before any port: `10.0.0.0/8:8080`.
    match rest.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => Ok((host.to_string(), Some(port))),
        Some(_) => Err("write an IPv6 address in brackets, for example `http://[::1]:8080`".into()),
        None => Ok((rest.to_string(), None)),
    }
}

fn parse_host(host: &str) -> Result<HostSpec, String> {
    if host.is_empty() {
        return Err("the host is empty".into());
    }
    if host == "*" {
        return Ok(HostSpec::Any);
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(HostSpec::Net(IpNet::from(ip)));
    }
    if let Ok(net) = host.parse::<IpNet>() {
        return Ok(HostSpec::Net(net.trunc()));
    }
    let (under, name) = match host.strip_prefix("*.") {
        Some(domain) => (true, domain),
        None => (false, host),
    };
    if name.contains('*') {
        return Err("`*` may only stand for the whole host (`*`) or its first labels (`*.example.com`)".into());
    }
    if !name.is_ascii() {
        return Err("write an international name in its ASCII (punycode) form".into());
    }
    let valid_label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if name.len() > 253 || !name.split('.').all(valid_label) {
        return Err(format!("`{name}` is not a host name"));
    }
    let name = name.to_ascii_lowercase();
    Ok(if under { HostSpec::Under(name) } else { HostSpec::Name(name) })
}

fn parse_port(p: &str) -> Result<u16, String> {
    match p.parse::<u16>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("`{p}` is not a port (1-65535, a range `8000-8100`, or `*`)")),
    }
}

/// What kind of address an address is, for the operator's protection: everything but
/// [`AddressClass::Public`] is refused unless a grant names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AddressClass {
    /// The public internet.
    Public,
    /// This machine: 127.0.0.0/8, ::1.
    Loopback,
    /// A private network: 10/8, 172.16/12, 192.168/16.
    Private,
    /// Link-local, where cloud metadata services live: 169.254/16 (169.254.169.254), fe80::/10.
    LinkLocal,
    /// Carrier-grade NAT: 100.64/10.
    SharedNat,
    /// IPv6 unique-local: fc00::/7.
    UniqueLocal,
    /// Multicast: 224/4, ff00::/8.
    Multicast,
    /// "This network" and unspecified: 0/8, ::.
    Unspecified,
    /// Reserved for future use, broadcast, protocol assignments (192.0.0/24, where some
    /// clouds' metadata lives), and IPv6 transition forms tether does not look inside
    /// (Teredo 2001::/32, the deprecated IPv4-compatible ::/96 and site-local fec0::/10).
    Reserved,
}

impl AddressClass {
    /// The class of `ip`. IPv4 addresses inside IPv6 (mapped `::ffff:a.b.c.d`, NAT64
    /// `64:ff9b::a.b.c.d`) are classed as the IPv4 address they carry.
    pub fn of(ip: IpAddr) -> AddressClass {
        match ip {
            IpAddr::V4(v4) => class_v4(v4),
            IpAddr::V6(v6) => match embedded_v4(v6) {
                Some(v4) => class_v4(v4),
                None => class_v6(v6),
            },
        }
    }

    /// Its name in messages and in the journal.
    pub fn name(self) -> &'static str {
        match self {
            AddressClass::Public => "public",
            AddressClass::Loopback => "loopback",
            AddressClass::Private => "private",
            AddressClass::LinkLocal => "link-local (cloud metadata)",
            AddressClass::SharedNat => "carrier-grade NAT",
            AddressClass::UniqueLocal => "unique-local",
            AddressClass::Multicast => "multicast",
            AddressClass::Unspecified => "unspecified",
            AddressClass::Reserved => "reserved",
        }
    }
}

fn in4(ip: Ipv4Addr, net: &str) -> bool {
    net.parse::<Ipv4Net>().is_ok_and(|n| n.contains(&ip))
}

fn in6(ip: Ipv6Addr, net: &str) -> bool {
    net.parse::<Ipv6Net>().is_ok_and(|n| n.contains(&ip))
}

fn class_v4(ip: Ipv4Addr) -> AddressClass {
    const CLASSES: [(&str, AddressClass); 10] = [
        ("0.0.0.0/8", AddressClass::Unspecified),
        ("10.0.0.0/8", AddressClass::Private),
        ("100.64.0.0/10", AddressClass::SharedNat),
        ("127.0.0.0/8", AddressClass::Loopback),
        ("169.254.0.0/16", AddressClass::LinkLocal),
        ("172.16.0.0/12", AddressClass::Private),
        ("192.0.0.0/24", AddressClass::Reserved),
        ("192.168.0.0/16", AddressClass::Private),
        ("224.0.0.0/4", AddressClass::Multicast),
        ("240.0.0.0/4", AddressClass::Reserved),
    ];
    CLASSES.iter().find(|(net, _)| in4(ip, net)).map_or(AddressClass::Public, |(_, class)| *class)
}

fn class_v6(ip: Ipv6Addr) -> AddressClass {
    if ip.is_unspecified() {
        return AddressClass::Unspecified;
    }
    if ip.is_loopback() {
        return AddressClass::Loopback;
    }
    const CLASSES: [(&str, AddressClass); 7] = [
        ("::/96", AddressClass::Reserved),
        ("::ffff:0:0:0/96", AddressClass::Reserved),
        ("2001::/32", AddressClass::Reserved),
        ("fc00::/7", AddressClass::UniqueLocal),
        ("fe80::/10", AddressClass::LinkLocal),
        ("fec0::/10", AddressClass::Reserved),
        ("ff00::/8", AddressClass::Multicast),
    ];
    CLASSES.iter().find(|(net, _)| in6(ip, net)).map_or(AddressClass::Public, |(_, class)| *class)
}

/// The IPv4 address an IPv6 address carries: mapped (`::ffff:0:0/96`), NAT64
/// (`64:ff9b::/96`; the local-use `64:ff9b:1::/48` is classed by the IPv4 address in its
/// last 32 bits, as a /96 prefix there would carry it) or 6to4 (`2002:AABB:CCDD::/48`).
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    let s = ip.segments();
    let octets = |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    if s[0] == 0x2002 {
        return Some(octets(s[1], s[2]));
    }
    let nat64 = (s[0], s[1]) == (0x64, 0xff9b) && (s[2..6] == [0, 0, 0, 0] || s[2] == 1);
    nat64.then(|| octets(s[6], s[7]))
}

/// Why a resolved address may not be connected to.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "{target} resolved to {address}, a {} address; such addresses are refused unless a grant \
     names them (a destination whose host is the address or a CIDR block holding it, for \
     example `{}://{address}`)",
    class.name(),
    target.scheme
)]
pub struct AddressRefused {
    /// Where the request was going.
    pub target: Target,
    /// The address it resolved to.
    pub address: IpAddr,
    /// What kind of address that is.
    pub class: AddressClass,
}

/// Whether a request to `target` may connect to `address` (one of the addresses its host
/// resolved to): a public address may; any other only if one of `networks` (those the
/// granted destinations name explicitly) holds it.
pub fn address_allowed(target: &Target, address: IpAddr, networks: &[IpNet]) -> Result<(), AddressRefused> {
    let class = AddressClass::of(address);
    let named = || {
        let v4 = match address {
            IpAddr::V6(v6) => embedded_v4(v6).map(IpAddr::V4),
            IpAddr::V4(_) => None,
        };
        networks.iter().any(|n| n.contains(&address) || v4.is_some_and(|v4| n.contains(&v4)))
    };
    if class == AddressClass::Public || named() {
        Ok(())
    } else {
        Err(AddressRefused { target: target.clone(), address, class })
    }
}

#[cfg(test)]
mod tests;
