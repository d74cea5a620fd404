//! Every cookie portcullis sets goes through [`Cookies`]: one place decides names and attributes
//! (`__Host-` prefix when secure, `HttpOnly`, `SameSite=Lax`, `Path=/`, never `Domain`), how large
//! values are split into numbered chunks, and how they are read back and stripped for the upstream.

use std::time::Duration;

use thiserror::Error;

// How large a value the browser keeps for us, and what binds. Measured with Debian's Chromium 156:
// it keeps a cookie whose name and value are up to 4096 bytes (4097: dropped), and sends every
// cookie it keeps (50 of 3.9 KB went out as one 195 KB Cookie header). What binds is Envoy: a
// request whose headers pass its `max_request_headers_kb` (60 KiB by default) is answered 431. So
// a value is cut into chunks of CHUNK bytes (name and value well under 4096) and at most
// MAX_CHUNKS of them (about 46 KB), which leaves 14 KiB of Envoy's default to every other header.
// The writer and the reader hold to the same two numbers: a value written is a value read.
const CHUNK: usize = 3800;
const MAX_CHUNKS: usize = 12;
const CHUNKED: &str = "chunks:";

/// A value that would need more than [`MAX_CHUNKS`] cookies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("{len} bytes need more than {MAX_CHUNKS} cookies of {CHUNK}")]
pub struct TooLarge {
    pub len: usize,
}

#[derive(Debug, Clone)]
pub struct Cookies {
    /// The session cookie's name, prefix included.
    session: String,
    pass: String,
    secure: bool,
    /// The session cookie names of every provider (this one's among them): none of their
    /// cookies reaches the upstream, whichever provider's route the request took.
    family: Vec<String>,
}

impl Cookies {
    /// The largest value [`Cookies::set`] writes.
    pub const MAX_VALUE: usize = CHUNK * MAX_CHUNKS;

    pub fn new(base: &str, secure: bool) -> Self {
        Self::for_providers(base, secure, &[None]).remove(0)
    }

    /// The cookies of each provider in `providers` (their names; `None` for the first, whose
    /// cookies keep the names of a single-provider config): `<base>_<name>` for the others, so
    /// that no name of one (`<base>-login-...`, chunks `<base>-1`) is another's.
    pub fn for_providers(base: &str, secure: bool, providers: &[Option<&str>]) -> Vec<Self> {
        let base = if secure {
            format!("__Host-{base}")
        } else {
            base.to_owned()
        };
        let names: Vec<String> = providers
            .iter()
            .map(|p| match p {
                None => base.clone(),
                Some(name) => format!("{base}_{name}"),
            })
            .collect();
        names
            .iter()
            .map(|session| Self {
                pass: format!("{session}-pass"),
                session: session.clone(),
                secure,
                family: names.clone(),
            })
            .collect()
    }

    pub fn session_name(&self) -> &str {
        &self.session
    }

    /// The fast path's pass (`<session>-pass`): one of ours, stripped and cleared with the others.
    pub fn pass_name(&self) -> &str {
        &self.pass
    }

    /// The login-transaction cookie for one `state`: one per tab that is logging in.
    pub fn login_name(&self, id: &str) -> String {
        format!("{}-login-{id}", self.session)
    }

    /// Whether `name` is one of this provider's (session, chunks, login transactions, pass).
    pub fn is_ours(&self, name: &str) -> bool {
        is_under(&self.session, name)
    }

    /// Whether `name` is any provider's: never sent upstream.
    fn is_portcullis(&self, name: &str) -> bool {
        self.family.iter().any(|session| is_under(session, name))
    }

    /// `Set-Cookie` values storing `value` under `name`, chunked when large. `present` are the
    /// cookie names the browser sent, so chunks left over from a larger value are cleared. A value
    /// too large to be read back is refused rather than written.
    pub fn set(
        &self,
        name: &str,
        value: &str,
        max_age: Duration,
        present: &[&str],
    ) -> Result<Vec<String>, TooLarge> {
        if value.len() > Self::MAX_VALUE {
            return Err(TooLarge { len: value.len() });
        }
        let mut out = Vec::new();
        let chunks: Vec<&str> = if value.len() <= CHUNK {
            vec![value]
        } else {
            value
                .as_bytes()
                .chunks(CHUNK)
                .map(|c| std::str::from_utf8(c).expect("base64 is ASCII"))
                .collect()
        };
        if chunks.len() == 1 {
            out.push(self.line(name, value, Some(max_age)));
        } else {
            out.push(self.line(name, &format!("{CHUNKED}{}", chunks.len()), Some(max_age)));
            for (i, c) in chunks.iter().enumerate() {
                out.push(self.line(&format!("{name}-{}", i + 1), c, Some(max_age)));
            }
        }
        let used = if chunks.len() == 1 { 0 } else { chunks.len() };
        for i in used + 1..=MAX_CHUNKS {
            let chunk = format!("{name}-{i}");
            if present.contains(&chunk.as_str()) {
                out.push(self.clear(&chunk));
            }
        }
        Ok(out)
    }

    /// A `Set-Cookie` that deletes `name`.
    pub fn clear(&self, name: &str) -> String {
        self.line(name, "", None)
    }

    /// Clears the session cookie and every chunk and login cookie the browser sent.
    pub fn clear_all(&self, present: &[&str]) -> Vec<String> {
        let mut out = vec![self.clear(&self.session)];
        out.extend(
            present
                .iter()
                .filter(|n| **n != self.session && self.is_ours(n))
                .map(|n| self.clear(n)),
        );
        out
    }

    fn line(&self, name: &str, value: &str, max_age: Option<Duration>) -> String {
        let age = max_age.map_or(0, |d| d.as_secs());
        let secure = if self.secure { "; Secure" } else { "" };
        format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={age}{secure}")
    }

    /// The value stored under `name`, reassembled from chunks; `None` when absent or inconsistent.
    pub fn read(&self, jar: &Jar<'_>, name: &str) -> Option<String> {
        let pairs = &jar.pairs;
        let mut heads = pairs.iter().filter(|(n, _)| *n == name);
        let head = heads.next()?.1;
        if heads.next().is_some() {
            return None; // two cookies of one name: ambiguous, so neither
        }
        let Some(count) = head.strip_prefix(CHUNKED) else {
            return Some(head.to_owned());
        };
        let count: usize = count
            .parse()
            .ok()
            .filter(|n| (2..=MAX_CHUNKS).contains(n))?;
        let mut value = String::new();
        for i in 1..=count {
            let chunk = format!("{name}-{i}");
            let mut found = pairs.iter().filter(|(n, _)| *n == chunk);
            let part = found.next()?.1;
            if found.next().is_some() {
                return None;
            }
            value.push_str(part);
        }
        Some(value)
    }

    /// The `Cookie` header without any of our cookies: what the upstream may see. Every other
    /// cookie goes on byte for byte, commas in its value included (`prefs={"a":1,"b":2}`); a comma
    /// splits a `;`-separated part only where one of ours follows it (two Cookie headers that
    /// Envoy joined with a comma).
    pub fn strip(&self, jar: &Jar<'_>) -> Stripped {
        if !jar.pairs.iter().any(|(n, _)| self.is_portcullis(n)) {
            return Stripped::Unchanged;
        }
        let mut kept: Vec<String> = Vec::new();
        for part in jar.header.split(';').map(str::trim) {
            if part.is_empty() || self.is_portcullis(name(part)) && !part.contains(',') {
                continue;
            }
            let pieces: Vec<&str> = part.split(',').collect();
            if !pieces.iter().any(|p| self.is_portcullis(name(p))) {
                kept.push(part.to_owned());
                continue;
            }
            let rest: Vec<&str> = pieces
                .into_iter()
                .filter(|p| !self.is_portcullis(name(p)))
                .collect();
            if !rest.is_empty() {
                kept.push(rest.join(","));
            }
        }
        if kept.is_empty() {
            Stripped::Empty
        } else {
            Stripped::Rest(kept.join("; "))
        }
    }
}

/// `name` is the cookie `session` or one of its family (`<session>-...`).
fn is_under(session: &str, name: &str) -> bool {
    name == session
        || name
            .strip_prefix(session)
            .is_some_and(|rest| rest.starts_with('-'))
}

/// The name of a `name=value` piece of a Cookie header (empty when it has no `=`).
fn name(piece: &str) -> &str {
    piece.split_once('=').map_or("", |(n, _)| n.trim())
}

/// A `Cookie` header with portcullis's cookies taken out.
#[derive(Debug, PartialEq, Eq)]
pub enum Stripped {
    /// None of ours was in it: the header goes upstream as it came.
    Unchanged,
    /// Only ours were in it: the header is removed.
    Empty,
    Rest(String),
}

/// A `Cookie` header split into its name-value pairs, once per request: a session request reads
/// the session, the names present and what goes upstream from the same 3-4 KB header.
#[derive(Debug, Default)]
pub struct Jar<'a> {
    header: &'a str,
    /// Split on `;` and `,` alike: what finds a cookie by name.
    pairs: Vec<(&'a str, &'a str)>,
}

impl<'a> Jar<'a> {
    /// `a=1; b=2` -> [(a, 1), (b, 2)]. Envoy joins several Cookie headers with ", " or "; ".
    /// Split on one character at a time: `str::split(char)` searches with memchr, a split on a set
    /// of characters goes character by character.
    pub fn parse(header: &'a str) -> Self {
        let pairs = header
            .split(';')
            .flat_map(|part| part.split(','))
            .filter_map(|part| {
                let (n, v) = part.trim().split_once('=')?;
                let n = n.trim();
                (!n.is_empty()).then_some((n, v.trim()))
            })
            .collect();
        Self { header, pairs }
    }

    /// The cookie names present.
    pub fn names(&self) -> Vec<&'a str> {
        self.pairs.iter().map(|(n, _)| *n).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jar(set: &[String]) -> String {
        set.iter()
            .map(|l| l.split(';').next().unwrap().to_owned())
            .filter(|kv| !kv.ends_with('='))
            .collect::<Vec<_>>()
            .join("; ")
    }

    #[test]
    fn attributes_and_host_prefix() {
        let c = Cookies::new("portcullis", true);
        let line = &c
            .set("__Host-portcullis", "v", Duration::from_secs(60), &[])
            .unwrap()[0];
        assert_eq!(
            line,
            "__Host-portcullis=v; Path=/; HttpOnly; SameSite=Lax; Max-Age=60; Secure"
        );
        assert!(!line.contains("Domain"));
        let plain = Cookies::new("portcullis", false);
        assert_eq!(plain.session_name(), "portcullis");
        assert!(!plain.clear("portcullis").contains("Secure"));
        assert!(plain.clear("portcullis").contains("Max-Age=0"));
    }

    #[test]
    fn large_values_round_trip_through_chunks() {
        let c = Cookies::new("p", false);
        let value = "x".repeat(9000);
        let set = c.set("p", &value, Duration::from_secs(60), &[]).unwrap();
        assert_eq!(set.len(), 4, "head + 3 chunks");
        assert_eq!(c.read(&Jar::parse(&jar(&set)), "p").unwrap(), value);
    }

    #[test]
    fn the_largest_value_written_is_read_back_and_a_larger_one_is_refused() {
        let c = Cookies::new("portcullis", true);
        let largest = "x".repeat(CHUNK * MAX_CHUNKS);
        let set = c
            .set("__Host-portcullis", &largest, Duration::from_secs(60), &[])
            .unwrap();
        assert_eq!(set.len(), 1 + MAX_CHUNKS);
        assert!(
            set.iter()
                .all(|l| l.split(';').next().unwrap().len() <= 4096),
            "Chromium keeps name and value up to 4096 bytes"
        );
        let read = c.read(&Jar::parse(&jar(&set)), "__Host-portcullis");
        assert_eq!(read.as_deref(), Some(largest.as_str()));
        let larger = format!("{largest}x");
        assert_eq!(
            c.set("__Host-portcullis", &larger, Duration::from_secs(60), &[]),
            Err(TooLarge { len: larger.len() })
        );
    }

    #[test]
    fn missing_duplicated_or_reordered_chunks_are_refused() {
        let c = Cookies::new("p", false);
        let value: String = (0..9000)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        let set = c.set("p", &value, Duration::from_secs(60), &[]).unwrap();
        let full = jar(&set);
        let without_2: String = full
            .split("; ")
            .filter(|kv| !kv.starts_with("p-2="))
            .collect::<Vec<_>>()
            .join("; ");
        assert_eq!(c.read(&Jar::parse(&without_2), "p"), None);
        assert_eq!(c.read(&Jar::parse(&format!("{full}; p-2=zzz")), "p"), None);
        assert_eq!(c.read(&Jar::parse("p=chunks:13; p-1=a"), "p"), None);
        assert_eq!(c.read(&Jar::parse("p=chunks:1; p-1=a"), "p"), None);
        assert_eq!(c.read(&Jar::parse("p=a; p=b"), "p"), None);
        // Swapping two chunks yields a different value, which the AEAD then refuses.
        let swapped = full
            .replace("p-1=", "p-X=")
            .replace("p-2=", "p-1=")
            .replace("p-X=", "p-2=");
        assert_ne!(c.read(&Jar::parse(&swapped), "p").unwrap(), value);
    }

    #[test]
    fn shrinking_clears_old_chunks() {
        let c = Cookies::new("p", false);
        let set = c
            .set(
                "p",
                "small",
                Duration::from_secs(60),
                &["p", "p-1", "p-2", "p-3"],
            )
            .unwrap();
        assert_eq!(set.len(), 4);
        assert!(set[1].starts_with("p-1=;") && set[1].contains("Max-Age=0"));
    }

    #[test]
    fn strip_keeps_only_foreign_cookies() {
        let c = Cookies::new("portcullis", true);
        let header = "a=1; __Host-portcullis=s; __Host-portcullis-1=c; __Host-portcullis-login-abc=t; portcullisX=2; _session=o";
        assert_eq!(
            c.strip(&Jar::parse(header)),
            Stripped::Rest("a=1; portcullisX=2; _session=o".into())
        );
        assert_eq!(c.strip(&Jar::parse("__Host-portcullis=s")), Stripped::Empty);
        assert_eq!(c.strip(&Jar::parse("a=1, b=2")), Stripped::Unchanged);
        // Envoy may join two Cookie headers with a comma: ours is found in either.
        assert_eq!(
            c.strip(&Jar::parse("a=1, __Host-portcullis=s")),
            Stripped::Rest("a=1".into())
        );
        assert_eq!(
            c.strip(&Jar::parse("__Host-portcullis=s,a=1; b=2")),
            Stripped::Rest("a=1; b=2".into())
        );
    }

    #[test]
    fn strip_keeps_other_cookies_byte_for_byte() {
        let c = Cookies::new("portcullis", true);
        let header = r#"prefs={"a":1,"b":2}; __Host-portcullis=s; q="x, y"; list=a=1,b=2"#;
        assert_eq!(
            c.strip(&Jar::parse(header)),
            Stripped::Rest(r#"prefs={"a":1,"b":2}; q="x, y"; list=a=1,b=2"#.into())
        );
    }
}
