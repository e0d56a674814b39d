use super::*;

fn target(url: &str) -> Target {
    let (scheme, rest) = url.split_once("://").unwrap();
    let scheme = if scheme == "https" { Scheme::Https } else { Scheme::Http };
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, _)) if !h.ends_with(']') && h.contains(':') => (rest.to_string(), scheme.default_port()),
        Some((h, p)) => (h.trim_matches(['[', ']']).to_string(), p.parse().unwrap()),
        None => (rest.trim_matches(['[', ']']).to_string(), scheme.default_port()),
    };
    Target { scheme, host, port }
}

fn d(text: &str) -> Destination {
    text.parse().unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn a_name_matches_itself_on_its_schemes_own_port_only() {
    let api = d("https://api.example.com");
    assert!(api.matches(&target("https://api.example.com")));
    assert!(api.matches(&target("https://API.example.com".to_lowercase().as_str())));
    assert!(!api.matches(&target("http://api.example.com")), "another scheme");
    assert!(!api.matches(&target("https://api.example.com:8443")), "another port");
    assert!(!api.matches(&target("https://api.example.com.evil.test")), "a longer name");
    assert!(!api.matches(&target("https://evilapi.example.com")));
}

#[test]
fn a_wildcard_covers_names_under_a_domain_but_not_the_domain() {
    let any = d("https://*.example.com");
    assert!(any.matches(&target("https://a.example.com")));
    assert!(any.matches(&target("https://a.b.example.com")));
    assert!(!any.matches(&target("https://example.com")));
    assert!(!any.matches(&target("https://badexample.com")), "not on a label boundary");
    assert!(!any.matches(&target("https://example.com.evil.test")));
}

#[test]
fn ports_schemes_and_hosts_can_be_widened_only_when_written_out() {
    assert!(d("http://localhost:*").matches(&target("http://localhost:9999")));
    let range = d("http://localhost:8000-8100");
    assert!(range.matches(&target("http://localhost:8000")) && range.matches(&target("http://localhost:8100")));
    assert!(!range.matches(&target("http://localhost:8101")));
    let both = d("*://api.example.com");
    assert!(both.matches(&target("http://api.example.com")) && both.matches(&target("https://api.example.com")));
    assert!(!both.matches(&target("https://api.example.com:80")), "each scheme's own port");
    assert!(d("https://*").matches(&target("https://anything.test")));
    assert!(!d("https://*").matches(&target("http://anything.test")));
}

#[test]
fn addresses_and_blocks_match_literal_hosts() {
    let block = d("http://10.0.0.0/8:8080");
    assert!(block.matches(&target("http://10.1.2.3:8080")));
    assert!(!block.matches(&target("http://11.1.2.3:8080")));
    assert!(!block.matches(&target("http://ten.example:8080")), "a name is not an address");
    assert_eq!(block.network(), Some("10.0.0.0/8".parse().unwrap()));
    let v6 = d("http://[::1]:3000");
    assert!(v6.matches(&target("http://[::1]:3000")));
    assert_eq!(d("https://api.example.com").network(), None);
}

#[test]
fn bad_destinations_say_what_to_write() {
    for (text, says) in [
        ("*", "write the scheme and the host out"),
        ("api.example.com", "SCHEME://HOST[:PORT]"),
        ("ftp://files.example.com", "`ftp` is not one of"),
        ("https://api.example.com/v1", "grant a path prefix with `path"),
        ("https://api.example.com?x=1", "no query"),
        ("https://user@api.example.com", "no query, fragment or user"),
        ("https://", "the host is empty"),
        ("https://a*.example.com", "`*` may only stand for"),
        ("https://bücher.example", "punycode"),
        ("https://-bad.example", "is not a host name"),
        ("https://api.example.com:0", "is not a port"),
        ("https://api.example.com:70000", "is not a port"),
        ("https://api.example.com:90-80", "is empty"),
        ("http://::1:80", "in brackets"),
        ("http://[::1:80", "missing its `]`"),
    ] {
        let err = text.parse::<Destination>().unwrap_err();
        assert!(err.contains(says) && err.contains(text), "{text}: {err}");
    }
}

#[test]
fn destinations_round_trip_as_their_text() {
    let grant: Vec<Destination> =
        serde_json::from_str(r#"["https://*.example.com", "http://127.0.0.1:8080"]"#).unwrap();
    assert_eq!(serde_json::to_string(&grant).unwrap(), r#"["https://*.example.com","http://127.0.0.1:8080"]"#);
    let err = serde_json::from_str::<Vec<Destination>>(r#"["nope"]"#).unwrap_err();
    assert!(err.to_string().contains("SCHEME://HOST"), "{err}");
}

#[test]
fn every_address_outside_the_public_internet_is_classed() {
    for (ip, class) in [
        ("8.8.8.8", AddressClass::Public),
        ("0.1.2.3", AddressClass::Unspecified),
        ("10.9.8.7", AddressClass::Private),
        ("100.64.0.1", AddressClass::SharedNat),
        ("100.128.0.1", AddressClass::Public),
        ("127.0.0.1", AddressClass::Loopback),
        ("127.255.255.254", AddressClass::Loopback),
        ("169.254.169.254", AddressClass::LinkLocal),
        ("172.16.0.1", AddressClass::Private),
        ("172.31.255.255", AddressClass::Private),
        ("172.32.0.1", AddressClass::Public),
        ("192.168.1.1", AddressClass::Private),
        ("224.0.0.1", AddressClass::Multicast),
        ("255.255.255.255", AddressClass::Reserved),
        ("2606:4700::1111", AddressClass::Public),
        ("::", AddressClass::Unspecified),
        ("::1", AddressClass::Loopback),
        ("fd12:3456::1", AddressClass::UniqueLocal),
        ("fe80::1", AddressClass::LinkLocal),
        ("ff02::1", AddressClass::Multicast),
        // IPv4 inside IPv6 is the IPv4 address it carries.
        ("::ffff:127.0.0.1", AddressClass::Loopback),
        ("::ffff:169.254.169.254", AddressClass::LinkLocal),
        ("64:ff9b::10.0.0.1", AddressClass::Private),
        ("64:ff9b:1::a9fe:a9fe", AddressClass::LinkLocal),
        ("::ffff:8.8.8.8", AddressClass::Public),
    ] {
        assert_eq!(AddressClass::of(ip.parse().unwrap()), class, "{ip}");
    }
}

#[test]
fn a_non_public_address_is_refused_unless_a_grant_names_it() {
    let t = target("http://api.internal.test:8080");
    let lo: IpAddr = "127.0.0.1".parse().unwrap();
    let err = address_allowed(&t, lo, &[]).unwrap_err();
    assert_eq!(err.class, AddressClass::Loopback);
    let msg = err.to_string();
    assert!(msg.contains("http://api.internal.test:8080 resolved to 127.0.0.1, a loopback address"), "{msg}");
    assert!(msg.contains("`http://127.0.0.1`"), "{msg}");
    assert!(address_allowed(&t, lo, &["127.0.0.0/8".parse().unwrap()]).is_ok());
    assert!(address_allowed(&t, lo, &["10.0.0.0/8".parse().unwrap()]).is_err());
    // A mapped form of a named address is the same address.
    let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
    assert!(address_allowed(&t, mapped, &["127.0.0.1/32".parse().unwrap()]).is_ok());
    assert!(address_allowed(&t, mapped, &[]).is_err());
    assert!(address_allowed(&t, "93.184.216.34".parse().unwrap(), &[]).is_ok());
    let meta = address_allowed(&t, "169.254.169.254".parse().unwrap(), &[]).unwrap_err();
    assert!(meta.to_string().contains("cloud metadata"), "{meta}");
}

fn grant(toml_text: &str) -> HttpGrant {
    toml::from_str(toml_text).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn a_grant_narrows_methods_and_the_path_on_segment_boundaries() {
    let g = grant("url = \"https://api.pay.test\"\nmethods = [\"GET\", \"POST\"]\npath = \"/v1\"\n");
    g.check().unwrap();
    let t = target("https://api.pay.test");
    assert!(g.allows("GET", &t, "/v1"));
    assert!(g.allows("post", &t, "/v1/refunds"));
    assert!(!g.allows("DELETE", &t, "/v1/refunds"), "a method not granted");
    assert!(!g.allows("GET", &t, "/v10/refunds"), "not on a segment boundary");
    assert!(!g.allows("GET", &t, "/v2"));
    assert!(!g.allows("GET", &target("https://api.pay.test:8443"), "/v1"), "the destination still applies");
    let open = grant("url = \"https://api.pay.test\"\n");
    assert!(open.allows("DELETE", &t, "/anything"), "no methods or path: every one");
    let slash = grant("url = \"https://api.pay.test\"\npath = \"/v1/\"\n");
    assert!(slash.allows("GET", &t, "/v1/x") && !slash.allows("GET", &t, "/v10"));
}

#[test]
fn a_bad_grant_says_what_is_wrong() {
    let e = grant("url = \"https://a.test\"\nmethods = [\"get\"]\n").check().unwrap_err();
    assert!(e.contains("`get` is not an HTTP method") && e.contains("upper case"), "{e}");
    let e = grant("url = \"https://a.test\"\npath = \"v1\"\n").check().unwrap_err();
    assert!(e.contains("write it from `/`"), "{e}");
    let e = grant("url = \"https://a.test\"\npath = \"/v1/../admin\"\n").check().unwrap_err();
    assert!(e.contains("`..` segments"), "{e}");
    let e = toml::from_str::<HttpGrant>("url = \"https://a.test\"\nmethod = [\"GET\"]\n").unwrap_err();
    assert!(e.to_string().contains("unknown field `method`"), "{e}");
    let e = toml::from_str::<HttpGrant>("url = \"a.test\"\n").unwrap_err();
    assert!(e.to_string().contains("SCHEME://HOST"), "{e}");
}

#[test]
fn a_request_needs_the_steps_ask_and_the_identitys_grant_and_a_refusal_says_which() {
    let t = target("https://api.pay.test");
    let post = Request { method: "post", target: &t, path: "/v1/refunds" };
    let asked = [grant("url = \"https://api.pay.test\"\nmethods = [\"POST\"]\npath = \"/v1\"\n")];
    let granted = [grant("url = \"https://*.pay.test\"\n")];
    assert!(check_request(post, "step `pay`", &asked, None).is_ok(), "no identities: the ask is enough");
    assert!(check_request(post, "step `pay`", &asked, Some(("bot", &granted))).is_ok());
    let e = check_request(post, "step `pay`", &asked, Some(("intern", &[]))).unwrap_err();
    assert!(e.starts_with("POST https://api.pay.test/v1/refunds: identity `intern` is not granted it"), "{e}");
    assert!(
        e.contains(r#"add http = [{ url = "https://api.pay.test", methods = ["POST"], path = "/v1" }] under [identities.intern]"#),
        "{e}"
    );
    let get = Request { method: "GET", target: &t, path: "/v1/refunds" };
    let e = check_request(get, "step `pay`", &asked, Some(("bot", &granted))).unwrap_err();
    assert!(e.contains("is not among the requests step `pay` asks for"), "{e}");
    assert!(e.contains(r#"methods = ["GET"]"#) && e.ends_with("to step `pay`"), "{e}");
    let other = target("http://127.0.0.1:9000");
    let root = Request { method: "GET", target: &other, path: "/" };
    let e = check_request(root, "tool `lookup`", &[], None).unwrap_err();
    assert!(e.contains(r#"{ url = "http://127.0.0.1:9000", methods = ["GET"] }"#), "{e}");
}

#[test]
fn networks_are_lent_by_grants_for_the_same_scheme_port_method_and_path_whatever_the_host() {
    let t = target("http://api.test:9000");
    let grants = [
        grant("url = \"http://127.0.0.1:9000\"\nmethods = [\"GET\"]\n"),
        grant("url = \"http://10.0.0.0/8:9000\"\npath = \"/x\"\n"),
        grant("url = \"http://192.168.0.0/16:9001\"\n"),
        grant("url = \"https://172.16.0.0/12:9000\"\n"),
        grant("url = \"http://api.test:9000\"\n"),
    ];
    let net = |text: &str| text.parse::<IpNet>().unwrap();
    // A name may resolve into a block a grant names for requests like it.
    let get = Request { method: "GET", target: &t, path: "/x" };
    assert_eq!(named_networks(get, &grants), vec![net("127.0.0.1/32"), net("10.0.0.0/8")]);
    let post = Request { method: "POST", target: &t, path: "/x" };
    assert_eq!(named_networks(post, &grants), vec![net("10.0.0.0/8")], "the GET-only grant lends nothing to a POST");
    let elsewhere = Request { method: "GET", target: &t, path: "/y" };
    assert_eq!(named_networks(elsewhere, &grants), vec![net("127.0.0.1/32")], "the /x grant lends nothing to /y");
}

#[test]
fn paths_and_headers_that_would_reach_around_a_grant_are_named() {
    let none = |path: &str| evasion(path, std::iter::empty());
    assert!(none("/v1/customers/42").is_none());
    assert!(none("/v1/../admin").unwrap().contains("`..` segments"));
    assert!(none("/v1/%2E%2e/admin").is_some());
    assert!(none("/v1/./x").is_some());
    assert!(none("/v1%2fadmin").unwrap().contains("encoded `/`"));
    assert!(none("/v1\\admin").is_some());
    let headers = ["content-type", "X-HTTP-Method-Override"];
    assert!(evasion("/v1", headers.iter().copied()).unwrap().contains("X-HTTP-Method-Override"));
}

#[test]
fn metadata_and_transition_addresses_are_not_public() {
    for (ip, class) in [
        ("192.0.0.192", AddressClass::Reserved),
        ("::7f00:1", AddressClass::Reserved),
        ("2001:0:4136:e378::1", AddressClass::Reserved),
        ("fec0::1", AddressClass::Reserved),
        ("2002:7f00:1::1", AddressClass::Loopback),
        ("2002:a9fe:a9fe::1", AddressClass::LinkLocal),
        ("2002:0808:0808::1", AddressClass::Public),
    ] {
        assert_eq!(AddressClass::of(ip.parse().unwrap()), class, "{ip}");
    }
}

#[test]
fn a_credential_needs_a_destination_with_its_scheme_written_out() {
    let g = grant("url = \"*://api.example.com\"\ncredential = { secret = \"K\" }\n");
    assert!(g.check().unwrap_err().contains("allows any scheme"));
    let g = grant("url = \"https://api.example.com\"\ncredential = { secret = \"K\" }\n");
    assert!(g.check().is_ok());
}
