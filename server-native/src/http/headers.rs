//! Reading request headers: a header's text, and the tokens of a comma-separated one.

use hyper::header::{AsHeaderName, HeaderMap};

/// The first value of header `name`, if it is text.
pub fn text<K: AsHeaderName>(headers: &HeaderMap, name: K) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The tokens of the comma-separated header `name`, over all its lines, trimmed.
pub fn tokens<'a, K: AsHeaderName>(
    headers: &'a HeaderMap,
    name: K,
) -> impl Iterator<Item = &'a str> + 'a {
    headers
        .get_all(name)
        .into_iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
}

/// Whether the comma-separated header `name` lists `token` (any case).
pub fn has_token<K: AsHeaderName>(headers: &HeaderMap, name: K, token: &str) -> bool {
    tokens(headers, name).any(|t| t.eq_ignore_ascii_case(token))
}

/// Whether `Accept-Encoding` takes gzip (and not with `q=0`).
pub fn accepts_gzip(headers: &HeaderMap) -> bool {
    tokens(headers, hyper::header::ACCEPT_ENCODING).any(|token| {
        let mut parts = token.split(';');
        let coding = parts.next().unwrap_or_default().trim();
        let refused = parts.any(|p| {
            p.trim()
                .strip_prefix("q=")
                .and_then(|q| q.trim().parse::<f32>().ok())
                .is_some_and(|q| q <= 0.0)
        });
        coding.eq_ignore_ascii_case("gzip") && !refused
    })
}

#[cfg(test)]
mod tests {
    use hyper::header::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for &(name, value) in pairs {
            map.append(name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn headers_are_read_as_tokens_and_gzip_as_accepted() {
        let h = headers(&[
            ("connection", "keep-alive"),
            ("connection", " Upgrade "),
            ("accept-encoding", "br, GZIP;q=0.5"),
        ]);
        assert!(has_token(&h, "CONNECTION", "upgrade"));
        assert!(!has_token(&h, "connection", "close"));
        assert!(accepts_gzip(&h));
        let h = headers(&[("accept-encoding", "deflate, gzip;q=0")]);
        assert!(!accepts_gzip(&h));
        assert!(!accepts_gzip(&headers(&[])));
    }
}
