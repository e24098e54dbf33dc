//! Decoding of BILLmanager request bodies: `application/x-www-form-urlencoded` (what clients
//! normally send) and simple `multipart/form-data` (text fields only), without extra crates.

use std::collections::HashMap;

/// Fields of a form body; a repeated field keeps its last value, as BILLmanager does.
pub fn parse(content_type: &str, body: &[u8]) -> Result<HashMap<String, String>, String> {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if essence == "multipart/form-data" {
        let boundary = content_type
            .split(';')
            .skip(1)
            .filter_map(|p| p.trim().split_once('='))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("boundary"))
            .map(|(_, v)| v.trim().trim_matches('"').to_string())
            .ok_or("multipart body without boundary")?;
        parse_multipart(&boundary, body)
    } else {
        Ok(parse_urlencoded(body))
    }
}

pub fn parse_urlencoded(body: &[u8]) -> HashMap<String, String> {
    body.split(|b| *b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let mut it = pair.splitn(2, |b| *b == b'=');
            let key = decode(it.next().unwrap_or_default());
            let value = decode(it.next().unwrap_or_default());
            (key, value)
        })
        .collect()
}

fn decode(raw: &[u8]) -> String {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < raw.len() => match (hex(raw[i + 1]), hex(raw[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn parse_multipart(boundary: &str, body: &[u8]) -> Result<HashMap<String, String>, String> {
    let delimiter = format!("--{boundary}");
    let delimiter = delimiter.as_bytes();
    let mut fields = HashMap::new();
    let mut rest = body;
    let start = find(rest, delimiter).ok_or("multipart body without its boundary")?;
    rest = &rest[start + delimiter.len()..];
    loop {
        if rest.starts_with(b"--") {
            return Ok(fields);
        }
        let rest_after_crlf = rest
            .strip_prefix(b"\r\n")
            .ok_or("malformed multipart body")?;
        let end = find(rest_after_crlf, delimiter).ok_or("unterminated multipart body")?;
        let part = &rest_after_crlf[..end];
        let part = part.strip_suffix(b"\r\n").unwrap_or(part);
        let split = find(part, b"\r\n\r\n").ok_or("multipart part without headers")?;
        let headers = String::from_utf8_lossy(&part[..split]);
        let value = &part[split + 4..];
        let name = headers
            .lines()
            .filter(|l| l.to_ascii_lowercase().starts_with("content-disposition:"))
            .flat_map(|l| l.split(';').skip(1))
            .filter_map(|p| p.trim().split_once('='))
            .find(|(k, _)| k.trim() == "name")
            .map(|(_, v)| v.trim().trim_matches('"').to_string())
            .ok_or("multipart part without a name")?;
        fields.insert(name, String::from_utf8_lossy(value).into_owned());
        rest = &rest_after_crlf[end + delimiter.len()..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urlencoded_decodes_plus_percent_and_utf8() {
        let f = parse(
            "application/x-www-form-urlencoded",
            b"func=auth&username=a%40b.c&password=p+w%3D%26&name=%D0%BF&flag&bad=%zz",
        )
        .expect("parse");
        assert_eq!(f["func"], "auth");
        assert_eq!(f["username"], "a@b.c");
        assert_eq!(f["password"], "p w=&");
        assert_eq!(f["name"], "п");
        assert_eq!(f["flag"], "");
        assert_eq!(f["bad"], "%zz");
    }

    #[test]
    fn multipart_text_fields() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"func\"\r\n\r\nauth\r\n\
--XyZ\r\nContent-Disposition: form-data; name=\"password\"\r\n\r\nline1\r\nline2\r\n--XyZ--\r\n";
        let f = parse("multipart/form-data; boundary=XyZ", body).expect("parse");
        assert_eq!(f["func"], "auth");
        assert_eq!(f["password"], "line1\r\nline2");
        assert!(parse("multipart/form-data", body).is_err());
    }
}
